"""The event bus: tells processes that some jobs have new events, nothing more.

Writers (workers, API processes) announce the ids of jobs whose events they just committed;
every API process runs one :class:`EventHub` that listens once and wakes its in-process
watchers (one per SSE or WebSocket connection) for those jobs. Readers then read the event log
from their own cursor, so a lost announcement only delays them until the next one or their
periodic re-read (``safety``): the log is the truth.

Transports, picked by :func:`transport_for`:

- ``OFFLOAD_EVENTS_URL=redis://…``: Redis pub/sub on ``<prefix>:events``.
- PostgreSQL store (default there): ``NOTIFY offload_events`` sent after the write, outside its
  transaction (NOTIFY inside a transaction takes a global lock until its commit), coalesced to
  at most one per event-loop turn per process.
- SQLite store: no push; the hub reads the global feed every ``OFFLOAD_POLL_INTERVAL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from ..store import Store

log = logging.getLogger(__name__)

CHANNEL = "offload_events"
EVERYTHING = "*"
"""Payload meaning "any job": sent when a batch names too many jobs, or after a reconnect."""
MAX_IDS = 100
"""At most this many job ids per announcement (NOTIFY payloads must stay under 8 kB)."""


def redis_channel(prefix: str) -> str:
    return f"{prefix}:events"


class Announcer:
    """Collects the ids of jobs with new events and sends them as few announcements: one per
    event-loop turn, whatever the number of writes in it. A failed send is logged and
    dropped: listeners re-read the log periodically anyway.

    The send starts one loop turn after the write is announced, so that whatever the writer
    does next (a worker starting the jobs it just claimed, a submit publishing to the
    broker) is not queued behind it."""

    def __init__(self, send: Callable[[str], Awaitable[Any]]) -> None:
        self._send = send
        self._pending: set[str] = set()
        self._everything = False
        """More than MAX_IDS jobs are waiting: announce "any job" (and stop naming them)."""
        self._task: asyncio.Task[None] | None = None
        self._scheduled = False

    def __call__(self, job_ids: Sequence[uuid.UUID]) -> None:
        if not self._everything:
            if len(self._pending) + len(job_ids) > MAX_IDS:
                self._everything = True  # a bulk write: 10,000 ids need not become strings
                self._pending.clear()
            else:
                self._pending.update(str(i) for i in job_ids)
        if self._task is None and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending or self._everything:
                payload = EVERYTHING if self._everything else payload_of(self._pending)
                self._pending, self._everything = set(), False
                try:
                    await self._send(payload)
                except Exception as exc:
                    log.debug("event announcement lost: %s", exc)
        finally:
            self._task = None

    async def drain(self) -> None:
        """Wait for announcements in flight (before closing the connection they use)."""
        while self._scheduled or self._task is not None:
            if self._task is None:
                await asyncio.sleep(0)  # the send starts on the next loop turn
                continue
            with contextlib.suppress(Exception):
                await self._task


def payload_of(job_ids: set[str]) -> str:
    return EVERYTHING if len(job_ids) > MAX_IDS else ",".join(sorted(job_ids))


def parse_payload(payload: str) -> set[uuid.UUID] | None:
    """The jobs named, or None for "any job" (also for a payload that cannot be read)."""
    if not payload or payload == EVERYTHING:
        return None
    try:
        return {uuid.UUID(part) for part in payload.split(",")}
    except ValueError:
        return None


class Watch:
    """One watcher's wake-up flag: set when the jobs it follows may have new events."""

    def __init__(self, job_id: uuid.UUID | None) -> None:
        self.job_id = job_id
        self._flag = asyncio.Event()

    def wake(self) -> None:
        self._flag.set()

    async def wait(self, timeout: float) -> bool:
        """Wait for a wake-up (True) or ``timeout`` seconds (False); then re-arm."""
        try:
            await asyncio.wait_for(self._flag.wait(), timeout)
        except TimeoutError:
            return False
        self._flag.clear()
        return True


class EventHub:
    """One listener per process fanning out to in-process watchers (cheap when idle: a watcher
    is an :class:`asyncio.Event`, not a connection)."""

    def __init__(self, listen: Callable[[EventHub], Awaitable[Callable[[], Awaitable[None]]]]):
        self._listen = listen
        self._by_job: dict[uuid.UUID, set[Watch]] = {}
        self._everything: set[Watch] = set()
        self._stop: Callable[[], Awaitable[None]] | None = None
        self._starting: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ending = False
        """The server is stopping: every stream of this process ends at its next wake-up."""
        _HUBS.add(self)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._stop is None:
                self._stop = await self._listen(self)

    async def close(self) -> None:
        if self._stop is not None:
            stop, self._stop = self._stop, None
            await stop()

    @contextlib.contextmanager
    def watch(self, job_id: uuid.UUID | None) -> Iterator[Watch]:
        """Wake-ups for one job, or for every job with None."""
        w = Watch(job_id)
        group = self._everything if job_id is None else self._by_job.setdefault(job_id, set())
        group.add(w)
        try:
            yield w
        finally:
            group.discard(w)
            if job_id is not None and not group:
                self._by_job.pop(job_id, None)

    @property
    def watchers(self) -> int:
        return len(self._everything) + sum(len(g) for g in self._by_job.values())

    def announce(self, payload: str) -> None:
        """Wake the watchers of the jobs an announcement names."""
        jobs = parse_payload(payload)
        for w in self._everything:
            w.wake()
        if jobs is None:
            for group in self._by_job.values():
                for w in group:
                    w.wake()
            return
        for job_id in jobs:
            for w in self._by_job.get(job_id, ()):
                w.wake()

    def wake_all(self) -> None:
        self.announce(EVERYTHING)

    def end_streams(self) -> None:
        self.ending = True
        self.wake_all()


_HUBS: weakref.WeakSet[EventHub] = weakref.WeakSet()


def end_all_streams() -> None:
    """End every event stream of this process (the server is stopping: a stream never ends by
    itself, and uvicorn waits for every response). Clients resume elsewhere with
    ``Last-Event-ID``. Safe to call from a signal handler or another thread."""
    for hub in list(_HUBS):
        if hub._loop is not None and not hub._loop.is_closed():
            hub._loop.call_soon_threadsafe(hub.end_streams)


# -- transports --------------------------------------------------------------------------------


SWEEP_SECONDS = 5.0
"""How often push transports re-read the log anyway (a lost announcement costs at most this)."""


def transport_for(
    store: Store,
    events_url: str | None,
    prefix: str,
    poll_interval: float = 0.05,
    sweep_interval: float = SWEEP_SECONDS,
) -> Transport:
    if events_url:
        if not events_url.startswith(("redis://", "rediss://", "unix://")):
            scheme = events_url.split(":", 1)[0]
            raise ValueError(
                f"unsupported OFFLOAD_EVENTS_URL scheme {scheme!r}: use redis://host:port/db"
            )
        from .redis_bus import RedisTransport

        return RedisTransport(events_url, redis_channel(prefix), store, sweep_interval)
    if store.supports_push:
        from .pg_bus import PostgresTransport

        return PostgresTransport(store, sweep_interval)
    return PollingTransport(store, poll_interval)


class Transport:
    """How announcements travel between processes."""

    async def announcer(self) -> Announcer | None:
        """The sending side, or None when readers poll the log instead."""
        return None

    async def listen(self, hub: EventHub) -> Callable[[], Awaitable[None]]:
        """Start feeding ``hub``; return the coroutine function that stops it."""
        raise NotImplementedError

    async def close(self) -> None:
        return None


async def read_the_log(
    store: Store, hub: EventHub, interval: float
) -> Callable[[], Awaitable[None]]:
    """Every ``interval`` seconds read the global feed from where the last read ended and wake
    the watchers of the jobs found there: SQLite's only wake-up, and on the push transports the
    safety net for a lost announcement (one read per process, never one per stream). Returns
    the coroutine function that stops it."""
    cursor = await store.events_head()

    async def loop() -> None:
        nonlocal cursor
        while True:
            await asyncio.sleep(interval)
            try:
                if not hub.watchers:
                    # Keep the position current (a cheap read), so a watcher that arrives
                    # between two reads is woken for anything after its own first read.
                    cursor = await store.events_head()
                    continue
                page = await store.events_after(cursor, limit=1000)
            except Exception as exc:  # a locked file, a dropped connection: next turn
                log.debug("reading the event log failed: %s", exc)
                continue
            cursor = page.cursor
            if page.events:
                hub.announce(payload_of({str(e.event.job_id) for e in page.events}))

    task = asyncio.get_running_loop().create_task(loop())

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop


class PollingTransport(Transport):
    """SQLite: nothing to send; the hub reads the global feed every ``interval`` seconds and
    wakes the watchers of the jobs it finds there."""

    def __init__(self, store: Store, interval: float = 0.05) -> None:
        self.store = store
        self.interval = interval

    async def listen(self, hub: EventHub) -> Callable[[], Awaitable[None]]:
        return await read_the_log(self.store, hub, self.interval)
