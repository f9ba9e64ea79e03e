"""offload on PostgreSQL: the store's own table queue (no broker).

Configuration: 2 worker processes (``Worker`` in each, as ``offload worker --processes 2``
runs them), each with ``concurrency = 10`` async handlers and ``prefetch = 90``: a worker
claims up to 100 due jobs in one ``FOR UPDATE SKIP LOCKED`` statement and holds the extra ones
under lease until a slot frees — the same batch size and concurrency as ``raw_pg``. Finished
attempts are written in batches; idle workers wake on ``LISTEN/NOTIFY``. Every job is a durable
row with its event log (queued, running, succeeded), an attempt number and a lease, so the
figures include what makes offload reliable. Submit: ``await app.submit`` (one statement per
job); bulk: ``await app.submit_many`` (one statement per 10,000 jobs).
"""

# No `from __future__ import annotations` here: the handler below is defined inside a function
# and its input model is a local, which only eagerly evaluated annotations can see.

import asyncio
import os
import signal
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from bench import jobs
from bench.systems.base import AsyncSystem, BenchEnv, Job, Unavailable

CONCURRENCY = 10
PREFETCH = 90
CHUNK = 10_000


def make_app(database_url: str, queue: str, **settings: Any) -> Any:
    """``settings``: further :class:`offload.Settings` fields (a broker, for instance)."""
    from offload import Context, Offload, Settings
    from pydantic import BaseModel

    class BenchInput(BaseModel):
        phase: str
        kind: str
        submitted_at: float

    app = Offload(settings=Settings.from_env(database_url=database_url, **settings))

    @app.job("bench.job", queue=queue)
    async def bench_job(ctx: Context, inp: BenchInput) -> None:
        await jobs.arun_job(inp.phase, inp.kind, inp.submitted_at)

    return app


def _input(job: Job) -> dict[str, Any]:
    return {"phase": job.phase, "kind": job.kind, "submitted_at": job.submitted_at}


class OffloadSystem(AsyncSystem):
    name = "offload"
    backend = "postgres"
    has_bulk = True
    config = f"2 processes x {CONCURRENCY} async, prefetch {PREFETCH} (claims of 100)"
    database: ClassVar[str] = "postgres"

    @classmethod
    def database_url(cls, env: BenchEnv) -> str:
        return env.pg_url

    def check(self) -> None:
        try:
            import offload  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"import offload failed: {exc}") from exc

    @classmethod
    def app_settings(cls, env: BenchEnv) -> dict[str, Any]:
        """Settings beyond the database (none: the store's own table queue)."""
        return {}

    async def aopen(self) -> None:
        self.app = make_app(
            self.database_url(self.env), self.env.queue, **self.app_settings(self.env)
        )
        await self.app.upgrade_schema()
        await self.app.store()

    async def aclose(self) -> None:
        await self.app.close()

    def purge(self) -> None:
        async def clear() -> None:
            store = await self.app.store()
            if self.database == "postgres":
                await store.pool.execute("TRUNCATE offload_jobs, offload_job_events")
            else:
                await store._run(_sqlite_clear, store)

        self.run(clear())

    def durable_end(self) -> float | None:
        """``max(finished_at)`` once no job is waiting or running: the store stamps it in the
        statement that writes the outcome, so this is when the last completion was durable."""

        async def state() -> tuple[int, float | None]:
            store = await self.app.store()
            if self.database == "postgres":
                row = await store.pool.fetchrow(_PG_FINISHED)
                return row[0], row[1]
            return await store._run(_sqlite_finished, store)

        while True:
            unfinished, last = self.run(state())
            if unfinished == 0:
                return last
            time.sleep(0.01)

    async def aenqueue(self, job: Job) -> None:
        await self.app.submit("bench.job", _input(job))

    async def aenqueue_many(self, jobs_: Sequence[Job]) -> None:
        for start in range(0, len(jobs_), CHUNK):
            await self.app.submit_many(
                "bench.job", [_input(j) for j in jobs_[start : start + CHUNK]]
            )

    @classmethod
    def worker_main(cls, env: BenchEnv, index: int) -> None:
        from offload import Worker

        async def main() -> None:
            app = make_app(cls.database_url(env), env.queue, **cls.app_settings(env))
            worker = Worker(app, concurrency=CONCURRENCY, prefetch=PREFETCH, grace=1)
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, worker.stop)
            try:
                await worker.run()
            finally:
                await app.close()

        asyncio.run(main())
        os._exit(0)


_UNFINISHED = "count(*) FILTER (WHERE finished_at IS NULL)"
_PG_FINISHED = (
    f"SELECT {_UNFINISHED}, extract(epoch FROM max(finished_at))::float8 FROM offload_jobs"
)


def _sqlite_finished(store: Any) -> tuple[int, float | None]:
    row = (
        store._require()
        .execute(f"SELECT {_UNFINISHED}, max(finished_at) FROM offload_jobs")
        .fetchone()
    )
    return row[0], row[1]


def _sqlite_clear(store: Any) -> None:
    conn = store._require()
    conn.execute("DELETE FROM offload_jobs")
    conn.execute("DELETE FROM offload_job_events")
