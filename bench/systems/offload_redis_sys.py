"""offload on Redis Streams: the job rows in PostgreSQL, their ids carried by Redis.

Configuration: as ``offload`` (2 worker processes, ``concurrency = 10``, ``prefetch = 90``),
with ``OFFLOAD_BROKER_URL`` set to the run's private redis-server. A submit writes the job row
and its outbox row in one statement; the process's outbox relay publishes (``XADD``, batched)
after the commit and deletes the outbox row. Workers read with ``XREADGROUP COUNT 100 BLOCK``,
claim exactly the delivered ids in PostgreSQL in one statement, run them, write outcomes in
batches and then ``XACK`` + ``XDEL``. So every figure pays for the durable row, its events,
the outbox and the broker round trips; ``raw_redis`` (bare streams, nothing durable per job) is
the reference it is compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.systems.base import BenchEnv, Job
from bench.systems.offload_sys import CONCURRENCY, PREFETCH, OffloadSystem


class OffloadRedisSystem(OffloadSystem):
    name = "offload-redis"
    backend = "redis"
    config = (
        f"2 processes x {CONCURRENCY} async, prefetch {PREFETCH}; Redis Streams broker, "
        "PostgreSQL store, transactional outbox"
    )

    @classmethod
    def app_settings(cls, env: BenchEnv) -> dict[str, Any]:
        return {"broker_url": env.redis_url, "broker_prefix": f"offload-bench-{env.queue}"}

    async def _published(self) -> None:
        # The relay publishes in the background on this client loop, which only runs while the
        # runner is inside a call: hand everything to Redis before returning.
        relay = await self.app.relay()
        await relay.flush()

    async def aenqueue_many(self, jobs_: Sequence[Job]) -> None:
        await super().aenqueue_many(jobs_)
        await self._published()

    def submit_each(self, jobs: Sequence[Job], gap: float = 0.0) -> None:
        super().submit_each(jobs, gap)
        self.run(self._published())

    def purge(self) -> None:
        async def clear() -> None:
            store = await self.app.store()
            await store.pool.execute("TRUNCATE offload_jobs, offload_job_events, offload_outbox")
            await (await self.app.broker()).destroy()

        self.run(clear())
