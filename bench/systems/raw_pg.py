"""raw_pg: the bare PostgreSQL queue, the physical-limit reference for PostgreSQL systems.

One table; 2 worker processes (asyncpg), each looping: claim up to 100 rows with
``UPDATE .. SET status='running' WHERE id IN (SELECT .. FOR UPDATE SKIP LOCKED LIMIT 100)
RETURNING``, run them (at most 10 handlers at a time, async), then one
``UPDATE .. SET status='done' WHERE id = ANY(..)``. When the table is empty a worker waits for a
``LISTEN/NOTIFY`` wake-up (a statement-level insert trigger notifies) or 1 s, whichever first.
Submit: one autocommit ``INSERT`` per job (psycopg 3); bulk: ``INSERT .. SELECT unnest(..)`` of
1000 rows per statement. Rows are kept (status 'done') like a durable store would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from bench.systems import _raw
from bench.systems.base import BenchEnv, Job, System


def _sql(table: str) -> dict[str, str]:
    return {
        "schema": f"""
            CREATE TABLE {table} (
                id bigserial PRIMARY KEY,
                status text NOT NULL DEFAULT 'queued',
                payload text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz
            );
            CREATE INDEX {table}_queued ON {table} (id) WHERE status = 'queued';
            CREATE FUNCTION {table}_notify() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN PERFORM pg_notify('{table}', ''); RETURN NULL; END $$;
            CREATE TRIGGER {table}_notify AFTER INSERT ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION {table}_notify();
        """,
        "insert": f"INSERT INTO {table} (payload) VALUES (%s)",
        "insert_many": f"INSERT INTO {table} (payload) SELECT unnest(%s::text[])",
        "claim": f"""
            UPDATE {table} SET status = 'running', updated_at = now()
            WHERE id IN (
                SELECT id FROM {table} WHERE status = 'queued'
                ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
            RETURNING id, payload
        """,
        "done": f"UPDATE {table} SET status = 'done', updated_at = now() WHERE id = ANY($1)",
        "purge": f"TRUNCATE {table}",
    }


class RawPgSystem(System):
    name = "raw_pg"
    backend = "postgres"
    reference = True
    has_bulk = True
    config = f"2 processes, SKIP LOCKED batches of {_raw.BATCH}, {_raw.CONCURRENCY} concurrent"

    def check(self) -> None:
        import asyncpg  # noqa: F401
        import psycopg  # noqa: F401

    def setup(self) -> None:
        import psycopg

        self.sql = _sql(self.env.queue)
        self.conn: Any = psycopg.connect(self.env.pg_url, autocommit=True)
        self.conn.execute(self.sql["schema"])

    def purge(self) -> None:
        self.conn.execute(self.sql["purge"])

    def enqueue(self, job: Job) -> None:
        self.conn.execute(self.sql["insert"], (job.encode(),), prepare=True)

    def enqueue_many(self, jobs_: Sequence[Job]) -> None:
        for start in range(0, len(jobs_), 1000):
            chunk = [j.encode() for j in jobs_[start : start + 1000]]
            self.conn.execute(self.sql["insert_many"], (chunk,))

    def teardown(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()

    @classmethod
    def worker_main(cls, env: BenchEnv, index: int) -> None:
        asyncio.run(_work(env))


async def _work(env: BenchEnv) -> None:
    import asyncpg

    sql = _sql(env.queue)
    stop = _raw.stop_event()
    conn = await asyncpg.connect(env.pg_url)
    wake = asyncio.Event()
    await conn.add_listener(env.queue, lambda *_: wake.set())
    sem = asyncio.Semaphore(_raw.CONCURRENCY)
    claim = await conn.prepare(sql["claim"])
    done = await conn.prepare(sql["done"])
    while not stop.is_set():
        wake.clear()  # before the claim, so a NOTIFY racing with it is not lost
        rows = await claim.fetch(_raw.BATCH)
        if not rows:
            waiter = asyncio.ensure_future(wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=1.0, return_when="FIRST_COMPLETED")
            waiter.cancel()
            stopper.cancel()
            continue
        await _raw.run_batch(sem, (r["payload"] for r in rows))
        await done.fetch([r["id"] for r in rows])
    await conn.close()
