"""Shared fixtures: a fresh PostgreSQL database per run on the shared server, a fresh SQLite
file per test, and ``wait_until`` for condition-based waits (never bare sleeps)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

PG_ADMIN_URL = os.environ.get("OFFLOAD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI") == "true"


def service_missing(what: str, reason: str) -> None:
    """Skip with a clear reason; under CI=true a missing service is a failure."""
    message = f"{what} is not reachable ({reason})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of our own on the shared server for this test run, dropped afterwards."""
    name = f"offload_test_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        service_missing("PostgreSQL at 127.0.0.1:5432", str(exc) or type(exc).__name__)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    from offload.store.postgres import PostgresStore

    async def migrate() -> None:
        store = PostgresStore(url)
        await store.connect()
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(migrate())
    yield url
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """The run's PostgreSQL database, emptied before each test."""

    async def truncate() -> None:
        conn = await asyncpg.connect(pg_database)
        try:
            await conn.execute(
                "TRUNCATE offload_jobs, offload_job_events, offload_queues, "
                "offload_idempotency_keys, offload_outbox, offload_webhook_endpoints, "
                "offload_tenant_secrets, offload_job_notify, offload_deliveries, "
                "offload_delivery_attempts, offload_feed_cursors"
            )
        finally:
            await conn.close()

    asyncio.run(truncate())
    yield pg_database


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'offload.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once per store."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


async def wait_until(
    condition: Callable[[], Awaitable[Any]], *, timeout: float = 30.0, interval: float = 0.02
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")
        await asyncio.sleep(interval)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Any]:
    """A connected store with the schema in place, once per backend."""
    from offload.store import open_store

    s = open_store(database_url)
    await s.connect()
    await s.migrate()
    yield s
    await s.close()
