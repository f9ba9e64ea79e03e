"""Following the event log: one job's events (by their ``seq``) or the global feed (by its
cursor), replayed from a position and then followed live. Shared by SSE and WebSocket.

The generators yield :class:`Item` for each public event and ``None`` when ``heartbeat``
seconds passed without one (the caller sends a keep-alive). The watch is taken before the
first read, so nothing written between the read and the wait can be missed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..store import EventFilter, Store
from .bus import EventHub
from .payload import TERMINAL_EVENT_TYPES, event_data, is_public

FOLLOW_UPS = (0.01, 0.03, 0.1, 0.3, 1.0)
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
            events = await store.job_events(job_id, after)
            if events:
                job = await store.job_get(job_id)
                if job is None:
                    return
                last_type = None
                for event in events:
                    after = event.seq
                    if is_public(event):
                        last_type = event.type
                        yield Item(str(event.seq), event.type, event_data(job, event))
                if last_type in TERMINAL_EVENT_TYPES and job.is_terminal and after >= job.event_seq:
                    return
                continue  # read again at once: more may have come meanwhile
            job = await store.job_get(job_id)
            if job is None or (job.is_terminal and after >= job.event_seq):
                return  # resumed after the end (or gone): nothing more will come
            if not await watch.wait(heartbeat):
                yield None


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
        while True:
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
            if await watch.wait(heartbeat):
                follow_ups = list(FOLLOW_UPS)
            else:
                yield None
