"""Following the event log: one job's events (by their ``seq``) or the global feed (by its
cursor), replayed from a position and then followed live. Shared by SSE and WebSocket.

The generators yield :class:`Item` for each public event and ``None`` when ``heartbeat``
seconds passed without one (the caller sends a keep-alive; an idle stream reads nothing). The
watch is taken before the first read, so nothing written between the read and the wait can be
missed; a lost announcement is caught by the hub's own periodic read of the log."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..store import EventFilter, Store
from .bus import EventHub
from .payload import event_data, is_public

FOLLOW_UPS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0)
"""Re-reads after a wake-up that found nothing new in the global feed: PostgreSQL holds an
event back while any older transaction is still open, and nobody announces that ending."""


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    """SSE ``id:``: the event's seq in its job's log, or its global feed cursor."""
    type: str
    data: dict[str, Any]


async def follow_job(
    store: Store, hub: EventHub, job_id: uuid.UUID, after: int, heartbeat: float
) -> AsyncIterator[Item | None]:
    """Events of one job after seq ``after``; ends after a terminal event that is the job's
    latest state (a replayed job goes on), or when the job is gone."""
    with hub.watch(job_id) as watch:
        while True:
            # The log, then the row: a row newer than the events read means more are coming,
            # and their wake-up is already pending on the watch (taken before the first read).
            events = await store.job_events(job_id, after)
            job = await store.job_get(job_id)
            if job is None:
                return
            for event in events:
                after = event.seq
                if is_public(event):
                    yield Item(str(event.seq), event.type, event_data(job, event))
            if job.is_terminal and after >= job.event_seq:
                return  # its end was sent (now or before a resume): nothing more will come
            if hub.ending:
                return
            while not await watch.wait(heartbeat):
                yield None  # idle: no read (the hub re-reads the log for everyone)


async def follow_feed(
    store: Store,
    hub: EventHub,
    cursor: str | None,
    where: EventFilter,
    heartbeat: float,
    *,
    page: int = 500,
) -> AsyncIterator[Item | None]:
    """Every event matching ``where`` after ``cursor`` (None: from now on), forever."""
    with hub.watch(None) as watch:
        if cursor is None:
            cursor = await store.events_head()
        follow_ups: list[float] = []
        while not hub.ending:
            found = await store.events_after(cursor, where, limit=page)
            cursor = found.cursor
            for fe in found.events:
                if is_public(fe.event):
                    yield Item(fe.cursor, fe.event.type, event_data(fe.job, fe.event))
            if len(found.events) == page:
                continue
            if found.events:
                follow_ups = []
            if follow_ups:
                await watch.wait(follow_ups.pop(0))
                continue
            while not await watch.wait(heartbeat):
                yield None  # idle: no read (the hub re-reads the log for everyone)
            # Only PostgreSQL holds events back (SQLite's feed is commit order at once).
            follow_ups = list(FOLLOW_UPS) if store.supports_push else []
