"""Many submits at once (a busy API): each is stored once, whole, as its own job.

On PostgreSQL concurrent key-less inserts share statements (``Batcher``); what each caller
gets back, and what is stored, must be exactly what it would have been alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from offload.jobs import JobStatus
from offload.store import NewJob


def job(n: int, *, delay: float = 0.0, queue: str = "q") -> NewJob:
    return NewJob(
        id=uuid.uuid4(),
        type="t",
        queue=queue,
        priority=n % 3,
        input={"n": n, "nested": [n, {"x": "é\\u0000"}]},
        max_attempts=1 + n % 4,
        delay=delay,
        owner=f"tenant{n % 2}",
        trace_context={"traceparent": f"00-{n:032x}-{n:016x}-01"} if n % 2 else None,
    )


async def test_concurrent_inserts_each_come_back_as_their_own_job(store: Any) -> None:
    jobs = [job(n, delay=60.0 if n % 5 == 0 else 0.0) for n in range(300)]
    results = await asyncio.gather(*(store.job_insert(j, 60) for j in jobs))
    for new, (stored, created) in zip(jobs, results, strict=True):
        assert created
        assert stored.id == new.id and stored.input == new.input
        assert (stored.priority, stored.max_attempts, stored.owner) == (
            new.priority,
            new.max_attempts,
            new.owner,
        )
        assert stored.status is (JobStatus.SCHEDULED if new.delay else JobStatus.QUEUED)
        again = await store.job_get(new.id)
        assert again == stored
        [event] = await store.job_events(new.id)
        assert event.type == f"job.{stored.status.value}"


async def test_one_bad_insert_fails_alone(store: Any) -> None:
    good = [job(n) for n in range(20)]
    bad = dataclasses.replace(job(99), input={"not json": object()})
    results = await asyncio.gather(
        *(store.job_insert(j, 60) for j in [*good[:10], bad, *good[10:]]),
        return_exceptions=True,
    )
    assert isinstance(results[10], Exception)
    assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != 10)
    for new in good:
        assert (await store.job_get(new.id)) is not None
    assert await store.job_get(bad.id) is None


async def test_concurrent_reads_each_get_their_own_job_or_none(store: Any) -> None:
    jobs = [job(n) for n in range(40)]
    for new in jobs:
        await store.job_insert(new, 60)
    missing = [uuid.uuid4() for _ in range(10)]
    asked = [j.id for j in jobs] * 3 + missing  # the same job asked for several times at once
    found = await asyncio.gather(*(store.job_get(job_id) for job_id in asked))
    for job_id, got in zip(asked, found, strict=True):
        if job_id in missing:
            assert got is None
        else:
            assert (
                got is not None
                and got.id == job_id
                and got.input["n"] == jobs[asked.index(job_id) % len(jobs)].input["n"]
            )
