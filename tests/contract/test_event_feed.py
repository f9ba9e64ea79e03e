"""The global event feed (``Store.events_after``): every job's events in commit order, resumable
from an opaque cursor, never skipping an event that commits late. Runs on every store."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import asyncpg
import pytest

from offload.jobs import JobStatus
from offload.store import EventFilter, FeedEvent, Lease, Outcome, Store
from offload.store.notify import Notify
from tests.conftest import wait_until
from tests.contract.helpers import claim_one, insert, new_job


async def settled(store: Store, count: int, where: EventFilter | None = None, **kw: Any):
    """Read the whole feed until it holds ``count`` events (see :func:`read_all`)."""

    async def full() -> list[FeedEvent] | None:
        events, _ = await read_all(store, None, where, **kw)
        assert len(events) <= count, seen(events)
        return events if len(events) == count else None

    return await wait_until(full, timeout=10)


def seen(events: list[FeedEvent]) -> list[tuple[uuid.UUID, int, str]]:
    return [(f.event.job_id, f.event.seq, f.event.type) for f in events]


async def read_all(store: Store, cursor: str | None, where: EventFilter | None = None, **kw: Any):
    """The feed from ``cursor`` to its end now. On PostgreSQL the end may trail the last commit
    while an older transaction anywhere on the server is still open: callers wait for what
    they expect (``settled``)."""
    events: list[FeedEvent] = []
    while True:
        page = await store.events_after(cursor, where, **kw)
        events += page.events
        if page.cursor == cursor:
            return events, cursor
        cursor = page.cursor


async def test_the_feed_returns_every_event_once_in_order_with_its_job(store: Store) -> None:
    a = await insert(store, owner="acme", queue="mail", type="test.job")
    b = await insert(store, owner="zeta", queue="reports", type="test.job")
    running = await claim_one(store)  # a: the oldest
    assert running.id == a.id
    await store.job_progress(a.id, running.attempt, 50.0, "half", running.worker_id)
    outcome = Outcome(a.id, running.attempt, JobStatus.SUCCEEDED, result='{"ok":true}')
    assert await store.job_finish_many([outcome]) == [a.id]

    await settled(store, 5)
    page = await store.events_after(None)
    assert seen(page.events) == [
        (a.id, 1, "job.queued"),
        (b.id, 1, "job.queued"),
        (a.id, 2, "job.running"),
        (a.id, 3, "job.progress"),
        (a.id, 4, "job.succeeded"),
    ]
    progress = page.events[3]
    assert progress.event.data == {"percent": 50.0, "message": "half"}
    assert progress.job.owner == "acme" and progress.job.queue == "mail"
    assert progress.job.type == "test.job" and page.events[1].job.owner == "zeta"
    assert page.events[-1].job.status is JobStatus.SUCCEEDED and page.events[-1].job.result
    # Cursors are strictly increasing strings in feed order and resume exactly after one.
    for i, event in enumerate(page.events):
        rest = await store.events_after(event.cursor)
        assert seen(rest.events) == seen(page.events[i + 1 :])
    # Nothing new: the same position again (or further), never an event twice.
    again = await store.events_after(page.cursor)
    assert again.events == []


async def test_pages_of_a_limit_cover_the_feed_without_gap_or_duplicate(store: Store) -> None:
    jobs = [await insert(store) for _ in range(7)]
    events = await settled(store, 7, limit=3)
    assert [e.event.job_id for e in events] == [j.id for j in jobs]


async def test_filters_by_owner_event_type_job_type_and_queue(store: Store) -> None:
    a = await insert(store, owner="acme", queue="mail", type="test.job")
    b = await insert(store, owner="zeta", queue="reports", type="test.job")
    c = await insert(store, owner="acme", queue="reports", type="other.job")
    running = await claim_one(store)
    assert running.id == a.id

    await settled(store, 4)

    async def ids(where: EventFilter) -> list[tuple[uuid.UUID, str]]:
        events, _ = await read_all(store, None, where, limit=2)
        return [(e.event.job_id, e.event.type) for e in events]

    acme = [(a.id, "job.queued"), (c.id, "job.queued"), (a.id, "job.running")]
    assert await ids(EventFilter(owner="acme")) == acme
    assert await ids(EventFilter(event_types=["job.running"])) == [(a.id, "job.running")]
    assert await ids(EventFilter(job_types=["other.job"])) == [(c.id, "job.queued")]
    reports = [(b.id, "job.queued"), (c.id, "job.queued")]
    assert await ids(EventFilter(queues=["reports"])) == reports
    both = EventFilter(owner="acme", queues=["reports", "mail"], event_types=["job.queued"])
    assert await ids(both) == [(a.id, "job.queued"), (c.id, "job.queued")]
    assert await ids(EventFilter(owner="nobody")) == []


async def test_filters_to_the_jobs_someone_is_to_be_told_about(store: Store) -> None:
    # The dispatcher's filter: jobs with notify targets of their own, or of tenants with
    # webhook endpoints; nobody else's events are read.
    plain = await insert(store, owner="zeta")
    own = new_job(owner="zeta")
    own = dataclasses.replace(own, notify=Notify(webhook="https://example.com/hook"))
    await store.job_insert(own, 60)
    tenant = await insert(store, owner="acme")
    await settled(store, 3)

    async def ids(owners: list[str] | None) -> set[uuid.UUID]:
        events, _ = await read_all(store, None, EventFilter(notify_owners=owners), limit=2)
        return {e.event.job_id for e in events}

    assert await ids([]) == {own.id}
    assert await ids(["acme"]) == {own.id, tenant.id}
    assert await ids(None) == {plain.id, own.id, tenant.id}


async def test_a_filtered_page_moves_the_cursor_past_what_it_read(store: Store) -> None:
    await insert(store, owner="zeta")
    await settled(store, 1)
    page = await store.events_after(None, EventFilter(owner="acme"))
    assert page.events == []
    mine = await insert(store, owner="acme")
    await settled(store, 2)
    later = await store.events_after(page.cursor, EventFilter(owner="acme"))
    assert [e.event.job_id for e in later.events] == [mine.id]


async def test_the_head_is_the_end_of_the_feed_now(store: Store) -> None:
    await insert(store)
    await settled(store, 1)
    head = await store.events_head()
    assert (await store.events_after(head)).events == []
    new = await insert(store)
    await settled(store, 2)
    assert [e.event.job_id for e in (await store.events_after(head)).events] == [new.id]


@pytest.mark.parametrize("cursor", ["x", "1.2.3", "-1", "1e3", "99999999999999999999999"])
async def test_a_cursor_this_store_did_not_make_is_refused(store: Store, cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await store.events_after(cursor)


async def test_bulk_submits_are_in_the_feed(store: Store) -> None:
    jobs = await store.job_insert_many([new_job() for _ in range(5)])
    events = await settled(store, 5)
    assert {e.event.job_id for e in events} == {j.id for j in jobs}


async def test_an_event_committed_late_is_not_skipped(pg_url: str) -> None:
    """PostgreSQL: a transaction that wrote an event earlier but commits after a later one must
    not be passed over by a reader that already saw the later one."""
    from offload.store.postgres import PostgresStore

    store = PostgresStore(pg_url)
    await store.connect()
    slow = await asyncpg.connect(pg_url)
    try:
        before = await store.events_head()
        tx = slow.transaction()
        await tx.start()
        early = new_job()
        await slow.execute(
            "INSERT INTO offload_jobs (id, type, queue, status, input, max_attempts, run_at, "
            "created_at, updated_at) VALUES ($1, 'test.job', 'default', 'queued', '{}', 1, "
            "now(), now(), now())",
            early.id,
        )
        await slow.execute(
            "INSERT INTO offload_job_events (job_id, seq, type, status, attempt, created_at) "
            "VALUES ($1, 1, 'job.queued', 'queued', 0, now())",
            early.id,
        )
        late = await insert(store)  # commits first, with a later transaction id
        page = await store.events_after(before)
        assert page.events == []  # held back until the older transaction ends
        await tx.commit()
        await settled(store, 2)
        events, _ = await read_all(store, page.cursor)
        assert [e.event.job_id for e in events] == [early.id, late.id]
    finally:
        await slow.close()
        await store.close()


async def test_each_event_carries_the_job_as_of_that_event(store: Store) -> None:
    from offload.events.payload import event_data

    job = await insert(store)
    running = await claim_one(store)
    await store.job_progress(job.id, running.attempt, 40.0, "reading", running.worker_id)
    outcome = Outcome(job.id, running.attempt, JobStatus.SUCCEEDED, result='{"n":2}')
    await store.job_finish_many([outcome])
    events = await settled(store, 4)
    queued, started, progress, done = (event_data(e.job, e.event) for e in events)
    assert queued["status"] == "queued" and "result" not in queued and queued["attempt"] == 0
    assert queued["finished_at"] is None and queued["id"] == str(job.id)
    assert started["status"] == "running" and started["attempt"] == 1
    assert progress["progress"] == {"percent": 40.0, "message": "reading"}
    assert done["status"] == "succeeded" and done["result"] == {"n": 2}
    assert done["finished_at"] is not None and done["progress"]["percent"] == 100


async def test_every_write_that_logs_events_announces_its_jobs(store: Store) -> None:
    """The event bus hears of every committed event: each writing method names its jobs."""
    heard: list[set[uuid.UUID]] = []
    store.on_events_written(lambda ids: heard.append(set(ids)))

    async def announced(step: Any) -> set[uuid.UUID]:
        heard.clear()
        await step
        return set().union(*heard)

    a = new_job()
    assert await announced(store.job_insert(a, 60)) == {a.id}
    keyed = new_job(idempotency_key="k", request_hash="h")
    assert await announced(store.job_insert(keyed, 60)) == {keyed.id}
    assert await announced(store.job_insert(keyed, 60)) == set()  # nothing new written
    many = [new_job() for _ in range(3)]
    assert await announced(store.job_insert_many(many)) == {j.id for j in many}
    claimed = await store.job_claim(
        types=["test.job"], queues=None, limit=2, worker_id="w", lease_seconds=30
    )
    assert heard and set().union(*heard) >= {j.id for j in claimed}
    one, two = claimed
    progress = store.job_progress(one.id, one.attempt, 10.0, None, "w")
    assert await announced(progress) == {one.id}
    finish = store.job_finish_many([Outcome(one.id, one.attempt, JobStatus.FAILED, error_code="x")])
    assert await announced(finish) == {one.id}
    assert await announced(store.job_replay(one.id, None, 1, "admin")) == {one.id}
    assert await announced(store.job_release(Lease(two.id, two.attempt, "w"), "stop")) == {two.id}
    assert await announced(store.job_cancel(two.id, "admin")) == {two.id}
    [three] = await store.job_claim_ids(
        [many[0].id], types=["test.job"], worker_id="w", lease_seconds=30
    )
    assert three.id == many[0].id
    assert await announced(store.job_cancel(three.id, "admin")) == {three.id}  # a request
    dead = Outcome(three.id, three.attempt, JobStatus.FAILED, error_code="x", worker_id="w")
    await store.job_finish_many([dead])
    assert await announced(store.job_discard(three.id, "admin")) == {three.id}
    # Lease expiry and delayed jobs coming due, both done by the maintenance calls.
    [four] = await store.job_claim_ids(
        [many[1].id], types=["test.job"], worker_id="w", lease_seconds=0.01
    )
    later = new_job(delay=0.01)
    await store.job_insert(later, 60)

    async def reaped() -> bool:
        return await announced(store.jobs_reap_expired()) == {four.id}

    async def promoted() -> bool:
        return later.id in await announced(store.jobs_promote_due())

    await wait_until(reaped, timeout=10)
    await wait_until(promoted, timeout=10)
