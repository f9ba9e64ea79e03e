"""The store contract for message brokers: the transactional outbox and the reconciler's reads.

With ``store.outbox`` on, every change that makes a job runnable writes an outbox row in the
same transaction; with it off (the table queue) nothing is written. Runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import uuid

import pytest

from offload.jobs import JobStatus
from offload.store import Lease, OutboxEntry, Outcome, Store
from tests.conftest import wait_until
from tests.contract.helpers import claim_one, insert, new_job


@pytest.fixture
def outbox_store(store: Store) -> Store:
    store.outbox = True
    return store


async def pending(store: Store) -> list[OutboxEntry]:
    return await store.outbox_pending(older_than=0, limit=1000)


async def test_an_inserted_job_writes_its_outbox_row_in_the_same_transaction(
    outbox_store: Store,
):
    job = await insert(outbox_store, queue="reports", priority=4)

    assert await pending(outbox_store) == [OutboxEntry(job.id, 1, "reports", 4)]


async def test_a_delayed_job_is_not_in_the_outbox_until_it_is_promoted(outbox_store: Store):
    job = await insert(outbox_store, delay=0.2)
    assert await pending(outbox_store) == []

    assert await wait_until(outbox_store.jobs_promote_due) == 1

    [entry] = await pending(outbox_store)
    assert (entry.job_id, entry.seq) == (job.id, 2)


async def test_a_bulk_insert_writes_one_outbox_row_per_queued_job(outbox_store: Store):
    jobs = await outbox_store.job_insert_many(
        [new_job(), new_job(queue="other", priority=2), new_job(delay=60)]
    )

    entries = await pending(outbox_store)
    assert sorted((e.job_id, e.seq, e.queue, e.priority) for e in entries) == sorted(
        [(jobs[0].id, 1, "default", 0), (jobs[1].id, 1, "other", 2)]
    )


async def test_a_job_handed_back_on_shutdown_goes_to_the_outbox_again(outbox_store: Store):
    await insert(outbox_store)
    await outbox_store.outbox_delete(await pending(outbox_store))
    running = await claim_one(outbox_store)

    assert await outbox_store.job_release(Lease(running.id, 1, "worker-1"), "shutdown")

    [entry] = await pending(outbox_store)
    assert entry.job_id == running.id


async def test_a_replayed_dead_letter_goes_to_the_outbox_again(outbox_store: Store):
    job = await insert(outbox_store, max_attempts=1)
    await claim_one(outbox_store)
    await outbox_store.job_finish_many([Outcome(job.id, 1, JobStatus.FAILED, error_code="x")])
    await outbox_store.outbox_delete(await pending(outbox_store))

    await outbox_store.job_replay(job.id, None, 1, "admin")

    assert [e.job_id for e in await pending(outbox_store)] == [job.id]


async def test_resuming_a_queue_puts_its_waiting_jobs_in_the_outbox(outbox_store: Store):
    await outbox_store.queue_set_paused("held", True, "admin")
    held = [await insert(outbox_store, queue="held") for _ in range(2)]
    await insert(outbox_store, queue="other")
    await outbox_store.outbox_delete(await pending(outbox_store))

    await outbox_store.queue_set_paused("held", False, "admin")

    assert sorted(e.job_id for e in await pending(outbox_store)) == sorted(j.id for j in held)


async def test_deleting_published_rows_removes_exactly_those(outbox_store: Store):
    a = await insert(outbox_store)
    b = await insert(outbox_store)
    [first, second] = sorted(await pending(outbox_store), key=lambda e: e.job_id == b.id)

    await outbox_store.outbox_delete([first, OutboxEntry(uuid.uuid4(), 1, "default", 0)])

    assert await pending(outbox_store) == [second]
    assert first.job_id == a.id


async def test_fresh_outbox_rows_are_not_pending_for_an_older_than_window(outbox_store: Store):
    await insert(outbox_store)

    assert await outbox_store.outbox_pending(older_than=60, limit=10) == []


async def test_without_the_outbox_nothing_is_written(store: Store):
    job = await insert(store, max_attempts=1)
    await insert(store, delay=0.01)
    await wait_until(store.jobs_promote_due)
    await claim_one(store)
    await store.job_finish_many([Outcome(job.id, 1, JobStatus.FAILED, error_code="x")])
    await store.job_replay(job.id, None, 1, "admin")
    await store.queue_set_paused("default", False, "admin")

    assert await pending(store) == []


async def test_due_jobs_by_queue_count_waiting_jobs_of_unpaused_queues_only(store: Store):
    await insert(store, queue="a")
    await insert(store, queue="a")
    await insert(store, queue="b")
    await insert(store, queue="later", delay=60)
    await insert(store, queue="held")
    await store.queue_set_paused("held", True, "admin")
    await insert(store, queue="busy")
    await claim_one(store, queues=["busy"])

    assert await store.jobs_due_by_queue(older_than=0) == {"a": 2, "b": 1}
    assert await store.jobs_due_by_queue(older_than=60) == {}


async def test_due_jobs_of_a_queue_come_in_pages_by_id(store: Store):
    inserted = [await insert(store, queue="a", priority=i) for i in range(5)]
    jobs = sorted(inserted, key=lambda j: j.id)
    await insert(store, queue="b")

    first = await store.jobs_due("a", older_than=0, limit=3)
    rest = await store.jobs_due("a", older_than=0, limit=3, after=first[-1].job_id)

    assert [e.job_id for e in first + rest] == [j.id for j in jobs]
    assert [e.priority for e in first + rest] == [j.priority for j in jobs]
    assert {e.queue for e in first + rest} == {"a"}
