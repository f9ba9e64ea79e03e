"""The store methods the HTTP API adds: API keys, discarding dead letters, counts and depth."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from offload.errors import IllegalTransition
from offload.jobs import JobStatus
from offload.store import JobFilter, NewJob, Outcome


def new_job(queue: str = "q") -> NewJob:
    return NewJob(id=uuid.uuid4(), type="t", queue=queue, priority=0, input={}, max_attempts=1)


async def test_keys_are_found_by_hash_listed_and_revoked(store: Any) -> None:
    key_id = f"key_{uuid.uuid4().hex[:8]}"
    created = await store.key_insert(key_id, "h" * 64, "acme", "client", "ci")
    found = await store.key_get_by_hash("h" * 64)
    assert found == created and found.active and found.tenant == "acme"
    assert key_id in {k.id for k in await store.key_list()}
    revoked = await store.key_revoke(key_id)
    assert revoked is not None and not revoked.active
    assert (await store.key_get_by_hash("h" * 64)).revoked_at == revoked.revoked_at
    assert await store.key_revoke("key_missing") is None
    assert await store.key_get_by_hash("nope") is None


async def test_a_discarded_dead_letter_leaves_the_list_until_it_fails_again(store: Any) -> None:
    job = new_job()
    await store.job_insert(job, 60)
    dead = JobFilter(status=[JobStatus.FAILED], discarded=False)

    async def fail() -> None:
        [claimed] = await store.job_claim(
            types=["t"], queues=None, limit=1, worker_id="w", lease_seconds=30
        )
        out = Outcome(
            claimed.id, claimed.attempt, JobStatus.FAILED, error_code="e", error_message="m"
        )
        assert await store.job_finish_many([out]) == [claimed.id]

    with pytest.raises(IllegalTransition):
        await store.job_discard(job.id, "key:a")  # not failed yet
    await fail()
    assert await store.job_count(dead) == 1
    discarded = await store.job_discard(job.id, "key:a")
    assert discarded is not None and discarded.status is JobStatus.FAILED
    assert await store.job_count(dead) == 0
    assert await store.job_count(JobFilter(status=[JobStatus.FAILED], discarded=True)) == 1
    with pytest.raises(IllegalTransition):
        await store.job_discard(job.id, "key:a")
    events = await store.job_events(job.id)
    assert events[-1].type == "job.discarded" and events[-1].data["actor"] == "key:a"
    await store.job_replay(job.id, None, 1, "key:a")
    await fail()
    assert await store.job_count(dead) == 1  # failed again after the discard: back in the list
    assert await store.job_discard(uuid.uuid4(), None) is None


async def test_queue_depth_counts_waiting_jobs_of_one_queue(store: Any) -> None:
    for queue in ("a", "a", "b"):
        await store.job_insert(new_job(queue), 60)
    assert await store.queue_depth("a") == 2
    assert await store.queue_depth("b") == 1
    assert await store.queue_depth("c") == 0
