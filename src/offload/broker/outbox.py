"""The outbox relay: publish what the store's outbox holds, after the commit, then forget it.

The store writes an outbox row in the same transaction as every change that makes a job
runnable (with a message broker). This relay publishes those rows and deletes them:

- rows this process just wrote and knows (a submit): :meth:`Relay.publish_soon`, no read back;
- rows written by a statement that did not return them (promote, release, replay, resume):
  :meth:`Relay.kick` drains the outbox table;
- rows another process wrote and never published (it died between commit and publish):
  :meth:`Relay.sweep` with an age, run by the reconciler.

Publishing runs in one background task that takes everything waiting at each wake-up, so a
burst of submits becomes a few batched publishes. A failed publish leaves the rows in the
outbox; the next sweep publishes them. A row published twice only means a duplicate message,
which claims nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from ..store import OutboxEntry, Store
from .base import Broker, Message

log = logging.getLogger("offload.broker")

BATCH = 1000
"""Most messages published (and outbox rows deleted) at once."""

DELETE_AFTER = 0.05
"""Seconds published rows may wait to be deleted together: one DELETE per burst of submits
instead of one per submit. A row still there when a sweep runs is published twice, which only
makes a duplicate message (it claims nothing)."""


class Relay:
    """One per process with a message broker (:meth:`offload.Offload.broker` makes it).

    >>> relay = Relay(store, broker)
    >>> relay.publish_soon([OutboxEntry(job.id, 1, job.queue, job.priority)])
    >>> await relay.flush()   # everything handed over so far is published (or kept)
    """

    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker
        self._known: list[OutboxEntry] = []
        self._published: list[OutboxEntry] = []
        """Published, not yet deleted from the outbox."""
        self._delete_timer: asyncio.TimerHandle | None = None
        self._drain_table = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def publish_soon(self, entries: Sequence[OutboxEntry]) -> None:
        """Publish these rows (just committed by this process) in the background."""
        self._known.extend(entries)
        self._start()

    def kick(self) -> None:
        """Some statement wrote outbox rows it did not return: drain the outbox table."""
        self._drain_table = True
        self._start()

    async def flush(self) -> None:
        """Wait until everything handed over before this call was published or kept."""
        while self._known or self._drain_table or not self._idle.is_set():
            self._start()
            await self._idle.wait()
            await asyncio.sleep(0)

    async def sweep(self, *, older_than: float) -> int:
        """Publish outbox rows at least ``older_than`` seconds old; return how many."""
        await self._delete_published()
        total = 0
        while True:
            entries = await self.store.outbox_pending(older_than=older_than, limit=BATCH)
            if not entries:
                return total
            await self.broker.publish([Message(e.job_id, e.queue, e.priority) for e in entries])
            await self.store.outbox_delete(entries)
            total += len(entries)
            if len(entries) < BATCH:
                return total

    async def close(self) -> None:
        """Publish what is waiting, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 10)
        with contextlib.suppress(Exception):
            await self._delete_published()
        if self._delete_timer is not None:
            self._delete_timer.cancel()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    def _start(self) -> None:
        self._idle.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-relay")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while self._known:
                    batch, self._known = self._known[:BATCH], self._known[BATCH:]
                    await self._publish(batch)
                if self._published and (
                    self._delete_timer is None or len(self._published) >= BATCH
                ):
                    await self._delete_published()
                if self._drain_table:
                    self._drain_table = False
                    await self.sweep(older_than=0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The rows stay in the outbox table: the reconciler's sweep publishes them once
                # the broker is back. Nothing is kept in memory meanwhile.
                self._known.clear()
                log.warning("publishing from the outbox failed (%s); the sweep will retry", exc)
            if not self._wake.is_set():
                self._idle.set()

    async def _publish(self, entries: Sequence[OutboxEntry]) -> None:
        await self.broker.publish([Message(e.job_id, e.queue, e.priority) for e in entries])
        self._published.extend(entries)
        if self._delete_timer is None:
            # Delete once the burst is over (or BATCH rows are waiting), not row by row.
            self._delete_timer = asyncio.get_running_loop().call_later(
                DELETE_AFTER, self._delete_due
            )

    def _delete_due(self) -> None:
        self._delete_timer = None
        self._start()

    async def _delete_published(self) -> None:
        if self._delete_timer is not None:
            self._delete_timer.cancel()
            self._delete_timer = None
        while self._published:
            batch, self._published = self._published[:BATCH], self._published[BATCH:]
            await self.store.outbox_delete(batch)
