"""Procrastinate 3 (PostgreSQL, psycopg 3 connector).

Configuration: 2 worker processes, each ``app.run_worker(concurrency=10)`` running async
handlers (``sleep50`` uses ``asyncio.sleep``). Procrastinate fetches one job per free slot with
its stored procedure (``FOR UPDATE SKIP LOCKED``) and wakes on ``LISTEN/NOTIFY``, polling every
5 s as a fallback (default). Jobs are kept after completion (default ``delete_jobs="never"``).
Bulk: ``Task.batch_defer_async`` (one multi-row insert).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench import jobs
from bench.systems.base import AsyncSystem, BenchEnv, Job

CONCURRENCY = 10
CHUNK = 1000  # bound one bulk statement


def _make_app(env: BenchEnv) -> tuple[Any, Any]:
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=env.pg_url))

    @app.task(name="bench_procrastinate_job", queue=env.queue)
    async def job(phase: str, kind: str, submitted_at: float) -> None:
        await jobs.arun_job(phase, kind, submitted_at)

    return app, job


def _kwargs(job: Job) -> dict[str, Any]:
    return {"phase": job.phase, "kind": job.kind, "submitted_at": job.submitted_at}


class ProcrastinateSystem(AsyncSystem):
    name = "procrastinate"
    backend = "postgres"
    has_bulk = True
    config = f"2 processes x {CONCURRENCY} async jobs, LISTEN/NOTIFY"

    def check(self) -> None:
        import procrastinate  # noqa: F401

    async def aopen(self) -> None:
        self.app, self.task = _make_app(self.env)
        await self.app.open_async()
        await self.app.schema_manager.apply_schema_async()

    async def aclose(self) -> None:
        await self.app.close_async()

    def purge(self) -> None:
        import psycopg

        with psycopg.connect(self.env.pg_url, autocommit=True) as conn:
            conn.execute("TRUNCATE procrastinate_jobs CASCADE")

    async def aenqueue(self, job: Job) -> None:
        await self.task.defer_async(**_kwargs(job))

    async def aenqueue_many(self, jobs_: Sequence[Job]) -> None:
        for start in range(0, len(jobs_), CHUNK):
            await self.task.batch_defer_async(*(_kwargs(j) for j in jobs_[start : start + CHUNK]))

    @classmethod
    def worker_main(cls, env: BenchEnv, index: int) -> None:
        app, _ = _make_app(env)
        # Procrastinate handles SIGINT/SIGTERM itself (graceful stop).
        app.run_worker(
            queues=[env.queue], concurrency=CONCURRENCY, name=f"bench-{index}", wait=True
        )
