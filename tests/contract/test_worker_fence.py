"""Writes fenced on the worker id as well as the attempt: if a claim is forgotten (claims may be
committed asynchronously) and the same attempt number is handed to another worker, the first
holder still cannot write."""

from __future__ import annotations

from offload.jobs import JobStatus
from offload.store import Lease, Outcome, Store
from tests.contract.helpers import TTL, new_job


async def _claimed_by(store: Store, worker: str):
    job, _ = await store.job_insert(new_job(), TTL)
    [claimed] = await store.job_claim(
        types=["test.job"], queues=None, limit=1, worker_id=worker, lease_seconds=30
    )
    assert claimed.id == job.id and claimed.worker_id == worker
    return claimed


async def test_another_worker_with_the_same_attempt_number_cannot_write_anything(
    store: Store,
) -> None:
    job = await _claimed_by(store, "worker-b")
    impostor = "worker-a"
    assert not await store.job_progress(job.id, job.attempt, 50, "x", impostor)
    assert not await store.job_checkpoint(job.id, job.attempt, {"at": 1}, impostor)
    outcome = Outcome(job.id, job.attempt, JobStatus.SUCCEEDED, result="1", worker_id=impostor)
    assert await store.job_finish_many([outcome]) == []
    assert not await store.job_release(Lease(job.id, job.attempt, impostor), "test")
    beat = await store.job_heartbeat([Lease(job.id, job.attempt, impostor)], 30)
    assert beat.lost == {job.id}
    after = await store.job_get(job.id)
    assert after is not None
    assert (after.status, after.progress.percent, after.checkpoint) == (JobStatus.RUNNING, 0, None)


async def test_the_holding_worker_writes_normally_when_it_names_itself(store: Store) -> None:
    job = await _claimed_by(store, "worker-b")
    assert await store.job_progress(job.id, job.attempt, 50, "half", "worker-b")
    assert await store.job_checkpoint(job.id, job.attempt, {"at": 1}, "worker-b")
    beat = await store.job_heartbeat([Lease(job.id, job.attempt, "worker-b")], 30)
    assert beat.lost == frozenset()
    outcome = Outcome(job.id, job.attempt, JobStatus.SUCCEEDED, result="2", worker_id="worker-b")
    assert await store.job_finish_many([outcome]) == [job.id]
    done = await store.job_get(job.id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.result == 2
