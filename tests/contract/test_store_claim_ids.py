"""The store contract for brokers: claiming exactly the job ids a broker delivered.

A broker is transit only; ``job_claim_ids`` is where the store decides. Every test runs against
SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid

from offload.jobs import JobStatus
from offload.store import Outcome, Store
from tests.conftest import wait_until
from tests.contract.helpers import claim_one, get, insert, more_stores, new_job


async def claim_ids(
    store: Store,
    ids: list[uuid.UUID],
    *,
    types: tuple[str, ...] = ("test.job",),
    worker_id: str = "worker-1",
    lease_seconds: float = 30.0,
) -> list[uuid.UUID]:
    jobs = await store.job_claim_ids(
        ids, types=types, worker_id=worker_id, lease_seconds=lease_seconds
    )
    return [j.id for j in jobs]


async def test_claiming_ids_takes_those_jobs_only_and_makes_them_running(store: Store):
    a = await insert(store)
    b = await insert(store)
    untouched = await insert(store)

    jobs = await store.job_claim_ids(
        [a.id, b.id], types=["test.job"], worker_id="w-3", lease_seconds=30
    )

    assert {j.id for j in jobs} == {a.id, b.id}
    for job in jobs:
        assert (job.status, job.attempt, job.worker_id) == (JobStatus.RUNNING, 1, "w-3")
        assert job.lease_expires_at is not None
        assert await get(store, job) == job
        assert [e.type for e in await store.job_events(job.id)] == ["job.queued", "job.running"]
    assert (await get(store, untouched)).status is JobStatus.QUEUED


async def test_claiming_ids_returns_higher_priority_first(store: Store):
    low = await insert(store, priority=0)
    high = await insert(store, priority=9)
    mid = await insert(store, priority=5)

    assert await claim_ids(store, [low.id, mid.id, high.id]) == [high.id, mid.id, low.id]


async def test_a_duplicate_delivery_claims_nothing_once_the_job_is_running(store: Store):
    job = await insert(store)
    assert await claim_ids(store, [job.id]) == [job.id]

    assert await claim_ids(store, [job.id], worker_id="worker-2") == []
    stored = await get(store, job)
    assert (stored.attempt, stored.worker_id) == (1, "worker-1")


async def test_the_same_id_twice_in_one_call_is_claimed_once(store: Store):
    job = await insert(store)

    assert await claim_ids(store, [job.id, job.id]) == [job.id]
    assert (await get(store, job)).attempt == 1


async def test_canceled_finished_and_unknown_ids_claim_nothing(store: Store):
    canceled = await insert(store)
    await store.job_cancel(canceled.id, "someone")
    finished = await insert(store)
    running = await claim_one(store)
    assert running.id == finished.id
    await store.job_finish_many([Outcome(finished.id, 1, JobStatus.SUCCEEDED, result="1")])

    assert await claim_ids(store, [canceled.id, finished.id, uuid.uuid4()]) == []
    assert (await get(store, finished)).status is JobStatus.SUCCEEDED
    assert (await get(store, canceled)).status is JobStatus.CANCELED


async def test_claiming_ids_skips_jobs_not_yet_due(store: Store):
    later = await insert(store, delay=60)

    assert await claim_ids(store, [later.id]) == []
    assert (await get(store, later)).status is JobStatus.SCHEDULED


async def test_claiming_ids_skips_paused_queues_until_resumed(store: Store):
    job = await insert(store, queue="held")
    await store.queue_set_paused("held", True, "admin")

    assert await claim_ids(store, [job.id]) == []
    await store.queue_set_paused("held", False, "admin")
    assert await claim_ids(store, [job.id]) == [job.id]


async def test_claiming_ids_skips_types_the_worker_does_not_run(store: Store):
    other = await insert(store, type="other.job")

    assert await claim_ids(store, [other.id]) == []
    assert await claim_ids(store, [other.id], types=("other.job",)) == [other.id]


async def test_a_retrying_job_that_is_due_is_claimed_with_the_next_attempt(store: Store):
    job = await insert(store)
    await claim_ids(store, [job.id])
    await store.job_finish_many([Outcome(job.id, 1, JobStatus.RETRYING, error_code="x")])

    assert await claim_ids(store, [job.id], worker_id="worker-2") == [job.id]
    stored = await get(store, job)
    assert (stored.attempt, stored.worker_id) == (2, "worker-2")


async def test_a_stale_attempt_cannot_write_after_its_job_was_claimed_again_by_id(store: Store):
    job = await insert(store)
    await claim_ids(store, [job.id], lease_seconds=0.01)
    assert await wait_until(store.jobs_reap_expired) == 1  # the lease ran out: reaped
    assert await claim_ids(store, [job.id], worker_id="worker-2") == [job.id]

    written = await store.job_finish_many(
        [Outcome(job.id, 1, JobStatus.SUCCEEDED, result="1", worker_id="worker-1")]
    )

    assert written == []
    assert (await get(store, job)).attempt == 2


async def test_concurrent_claims_of_the_same_ids_claim_each_job_exactly_once(store: Store):
    jobs = await store.job_insert_many([new_job() for _ in range(60)])
    ids = [j.id for j in jobs]

    async with more_stores(store.url, 4) as claimers:
        # Every claimer gets every id (duplicate deliveries), in a different order.
        results = await asyncio.gather(
            *(
                s.job_claim_ids(
                    ids[i:] + ids[:i], types=["test.job"], worker_id=f"w{i}", lease_seconds=30
                )
                for i, s in enumerate(claimers)
            )
        )

    claimed = [j.id for got in results for j in got]
    assert sorted(claimed) == sorted(ids)
    for job in jobs:
        assert (await get(store, job)).attempt == 1


async def test_claiming_no_ids_is_a_no_op(store: Store):
    assert await claim_ids(store, []) == []
