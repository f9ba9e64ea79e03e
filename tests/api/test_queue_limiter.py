"""QueueLimiter: one depth reading at a time per queue, stale while it refreshes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from offload.api.limits import QueueLimiter
from offload.api.problems import Problem
from offload.store import NewJob, open_store

from ..conftest import wait_until


class CountingStore:
    """A real SQLite store whose depth readings are counted and can be held open."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.readings = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def queue_depth(self, queue: str) -> int:
        self.readings += 1
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("store down")
        return await self.store.queue_depth(queue)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def counting(sqlite_url: str) -> Any:
    store = open_store(sqlite_url)
    await store.connect()
    await store.migrate()
    for _ in range(3):
        job = NewJob(id=uuid.uuid4(), type="t", queue="q", priority=0, input={}, max_attempts=1)
        await store.job_insert(job, 60)
    yield CountingStore(store)
    await store.close()


async def test_a_herd_of_submits_reads_the_depth_once(counting: CountingStore) -> None:
    limiter = QueueLimiter(limit=10, cache_seconds=0.5, clock=Clock())
    counting.gate.clear()
    herd = [asyncio.ensure_future(limiter.admit(counting, "q", 1)) for _ in range(50)]
    await asyncio.sleep(0)
    counting.gate.set()
    await asyncio.wait_for(asyncio.gather(*herd), 10)
    assert counting.readings == 1


async def test_the_last_reading_serves_while_one_refresh_runs(counting: CountingStore) -> None:
    clock = Clock()
    limiter = QueueLimiter(limit=4, cache_seconds=0.5, clock=clock)
    await limiter.admit(counting, "q", 1)  # reads 3
    limiter.added("q")  # this process accepted one more: 4, the limit
    with pytest.raises(Problem) as full:
        await limiter.admit(counting, "q", 1)
    assert full.value.status == 503
    clock.now = 1.0  # the reading is due: a refresh starts, the others use the last one
    counting.gate.clear()
    stale = [asyncio.ensure_future(limiter.admit(counting, "q", 1)) for _ in range(5)]
    results = await asyncio.gather(*stale, return_exceptions=True)
    assert all(isinstance(r, Problem) and r.status == 503 for r in results)
    assert counting.readings == 2
    counting.gate.set()

    async def admitted() -> bool:  # once the refresh lands: the real depth, 3 < 4
        try:
            await limiter.admit(counting, "q", 1)
        except Problem:
            return False
        return True

    await wait_until(admitted, timeout=10)
    assert counting.readings == 2


async def test_a_failed_refresh_fails_only_those_that_had_no_reading(
    counting: CountingStore,
) -> None:
    clock = Clock()
    limiter = QueueLimiter(limit=10, cache_seconds=0.5, clock=clock)
    counting.fail = True
    with pytest.raises(ConnectionError):
        await limiter.admit(counting, "fresh", 1)
    counting.fail = False
    await limiter.admit(counting, "q", 1)
    clock.now = 1.0
    counting.fail = True
    await limiter.admit(counting, "q", 1)  # the last reading serves; the refresh fails quietly
    await wait_until(lambda: _done(limiter), timeout=10)
    counting.fail = False
    await limiter.admit(counting, "q", 1)  # and the next one tries again
    await wait_until(lambda: _done(limiter), timeout=10)
    assert counting.readings == 4


async def _done(limiter: QueueLimiter) -> bool:
    return not limiter._refreshing  # no reading in flight
