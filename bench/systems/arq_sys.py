"""arq (asyncio, Redis).

Configuration: 2 worker processes, each an arq ``Worker`` with ``max_jobs = 10`` concurrent jobs
(the default; handlers are async, ``sleep50`` uses ``asyncio.sleep``). arq has no push: each
worker polls its sorted set every ``poll_delay`` (default 0.5 s) and reads up to
``queue_read_limit`` (default 100) job ids per poll. The defaults are kept because that is what
users run; it shows in ``pickup`` (latency up to the poll delay) and caps ``drain``. Results are
kept for ``keep_result`` (default 1 h) as arq always does. No bulk enqueue API, so n/a.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench import jobs
from bench.systems.base import AsyncSystem, BenchEnv, Job

MAX_JOBS = 10


async def bench_arq_job(ctx: dict[str, Any], phase: str, kind: str, submitted_at: float) -> None:
    await jobs.arun_job(phase, kind, submitted_at)


def _settings(env: BenchEnv) -> Any:
    from arq.connections import RedisSettings

    return RedisSettings.from_dsn(env.redis_url)


class ArqSystem(AsyncSystem):
    name = "arq"
    backend = "redis"
    config = f"2 processes x {MAX_JOBS} async jobs, poll 0.5 s (default)"

    def check(self) -> None:
        import arq  # noqa: F401

    async def aopen(self) -> None:
        from arq import create_pool

        self.pool = await create_pool(_settings(self.env), default_queue_name=self.env.queue)

    async def aclose(self) -> None:
        await self.pool.aclose()

    def purge(self) -> None:
        self.run(self.pool.flushdb())

    async def aenqueue(self, job: Job) -> None:
        await self.pool.enqueue_job("bench_arq_job", *job.args())

    @classmethod
    def worker_main(cls, env: BenchEnv, index: int) -> None:
        from arq.worker import Worker

        asyncio.set_event_loop(asyncio.new_event_loop())
        # arq installs its own SIGINT/SIGTERM handlers and shuts down cleanly on them.
        Worker(
            functions=[bench_arq_job],  # type: ignore[list-item]
            queue_name=env.queue,
            redis_settings=_settings(env),
            max_jobs=MAX_JOBS,
        ).run()
