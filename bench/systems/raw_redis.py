"""raw_redis: a bare Redis Streams queue, the physical-limit reference for Redis systems.

Submit: ``XADD`` one at a time (redis-py); bulk: a non-transactional pipeline of 1000 XADDs.
2 worker processes (redis.asyncio), each in a consumer group: ``XREADGROUP COUNT 100 BLOCK 1000``,
run the batch (at most 10 handlers at a time), then one ``XACK`` for the batch: at-least-once,
like the consumer-group broker offload's design names.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from bench.systems import _raw
from bench.systems.base import BenchEnv, Job, System

GROUP = "workers"


class RawRedisSystem(System):
    name = "raw_redis"
    backend = "redis"
    reference = True
    has_bulk = True
    config = f"2 processes, XREADGROUP batches of {_raw.BATCH}, {_raw.CONCURRENCY} concurrent"

    def check(self) -> None:
        import redis  # noqa: F401

    def setup(self) -> None:
        import redis

        self.redis: Any = redis.Redis.from_url(self.env.redis_url)
        self.purge()

    def purge(self) -> None:
        self.redis.flushdb()
        self.redis.xgroup_create(self.env.queue, GROUP, id="0", mkstream=True)

    def enqueue(self, job: Job) -> None:
        self.redis.xadd(self.env.queue, {"j": job.encode()})

    def enqueue_many(self, jobs_: Sequence[Job]) -> None:
        for start in range(0, len(jobs_), 1000):
            pipe = self.redis.pipeline(transaction=False)
            for j in jobs_[start : start + 1000]:
                pipe.xadd(self.env.queue, {"j": j.encode()})
            pipe.execute()

    def teardown(self) -> None:
        client = getattr(self, "redis", None)
        if client is not None:
            client.close()

    @classmethod
    def worker_main(cls, env: BenchEnv, index: int) -> None:
        asyncio.run(_work(env))


async def _work(env: BenchEnv) -> None:
    import redis.asyncio as aredis

    stop = _raw.stop_event()
    client = aredis.Redis.from_url(env.redis_url)
    sem = asyncio.Semaphore(_raw.CONCURRENCY)
    consumer = f"c{os.getpid()}"
    while not stop.is_set():
        reply = await client.xreadgroup(
            GROUP, consumer, {env.queue: ">"}, count=_raw.BATCH, block=1000
        )
        if not reply:
            continue
        entries = reply[0][1]
        await _raw.run_batch(sem, (fields[b"j"] for _, fields in entries))
        await client.xack(env.queue, GROUP, *(eid for eid, _ in entries))
    await client.aclose()
