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
        total = 0
        while True:
            entries = await self.store.outbox_pending(older_than=older_than, limit=BATCH)
            if not entries:
                return total
            await self._publish(entries)
            total += len(entries)
            if len(entries) < BATCH:
                return total

    async def close(self) -> None:
        """Publish what is waiting, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 10)
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
        await self.store.outbox_delete(entries)
