"""Small builders shared by the store contract suite (the same calls on every backend)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from offload.ids import uuid7
from offload.jobs import Job
from offload.store import NewJob, Store, open_store

TTL = 3600.0
"""Idempotency TTL for tests that do not care about expiry."""


def new_job(
    type: str = "test.job",
    *,
    queue: str = "default",
    priority: int = 0,
    input: Any = None,
    max_attempts: int = 3,
    delay: float = 0.0,
    owner: str = "default",
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> NewJob:
    return NewJob(
        id=uuid7(),
        type=type,
        queue=queue,
        priority=priority,
        input={"n": 1} if input is None else input,
        max_attempts=max_attempts,
        delay=delay,
        owner=owner,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )


async def insert(store: Store, **options: Any) -> Job:
    job, created = await store.job_insert(new_job(**options), TTL)
    assert created
    return job


async def claim(
    store: Store,
    *,
    types: Sequence[str] = ("test.job",),
    queues: Sequence[str] | None = None,
    limit: int = 10,
    lease_seconds: float = 30.0,
    worker_id: str = "worker-1",
) -> list[Job]:
    return await store.job_claim(
        types=types, queues=queues, limit=limit, worker_id=worker_id, lease_seconds=lease_seconds
    )


async def claim_one(store: Store, **options: Any) -> Job:
    jobs = await claim(store, limit=1, **options)
    assert len(jobs) == 1, jobs
    return jobs[0]


async def get(store: Store, job: Job) -> Job:
    found = await store.job_get(job.id)
    assert found is not None
    return found


@contextlib.asynccontextmanager
async def more_stores(url: str, count: int) -> AsyncIterator[list[Store]]:
    """``count`` more store instances on the same database (own connections), closed after."""
    stores: list[Store] = []
    try:
        for _ in range(count):
            s = open_store(url)
            await s.connect()
            stores.append(s)
        yield stores
    finally:
        for s in stores:
            await s.close()
