"""The event bus under faults and on Redis: a stream keeps following its job after the API's
LISTEN connection is killed; Redis pub/sub carries the wake-ups when OFFLOAD_EVENTS_URL is set;
an unreachable bus is a clear 503. Heartbeats are set far apart, so only a wake-up can deliver
an event in time (the periodic re-read would come too late to pass)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis
from httpx_sse import aconnect_sse

from offload import Offload
from offload.api import create_app
from offload.config import Settings
from offload.events.bus import CHANNEL
from offload.jobs import JobStatus
from offload.store import Outcome, open_store
from tests.api.conftest import FAST, Api, ServerThread, _make_keys
from tests.broker.private_redis import PrivateRedis, private_redis
from tests.conftest import service_missing, wait_until
from tests.integration.workers import WorkerProcesses

__all__ = ["private_redis"]  # the fixture, used by name

APP = "tests.apps.api_jobs:app"
QUIET = dataclasses.replace(FAST, events_heartbeat_seconds=120)
DONE = ["job.queued", "job.running", "job.progress", "job.progress", "job.succeeded"]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """``serve(settings)``: an API on its own Offload with these core settings."""
    from tests.apps.api_jobs import app as jobs_app

    servers: list[ServerThread] = []

    def start(settings: Settings) -> Api:
        with ThreadPoolExecutor(1) as thread:  # callable from async tests too
            keys, ids = thread.submit(asyncio.run, _make_keys(settings.database_url)).result()
        offload = Offload(settings=settings, registry=jobs_app.registry)
        server = ServerThread(create_app(offload, QUIET))
        server.start()
        servers.append(server)
        return Api(server.url, settings.database_url, keys, ids)

    yield start
    for server in servers:
        server.stop()


async def follow(api: Api, job_id: str) -> list[str]:
    async with (
        api.client("client_a") as c,
        aconnect_sse(c, "GET", f"/v1/jobs/{job_id}/events") as source,
    ):
        return [sse.event async for sse in source.aiter_sse() if sse.data]


async def submit(api: Api) -> str:
    async with api.client("client_a") as c:
        r = await c.post(
            "/v1/jobs", json={"type": "api.slow", "input": {"steps": 2, "step_seconds": 0.2}}
        )
        return r.json()["id"]


async def test_a_stream_survives_the_loss_of_the_listen_connection(
    serve: Any, pg_url: str, tmp_path: Path
) -> None:
    api = serve(Settings(database_url=pg_url))
    job_id = await submit(api)
    stream = asyncio.create_task(follow(api, job_id))

    async def listener_pid() -> int | None:
        conn = await asyncpg.connect(pg_url)
        try:
            return await conn.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'LISTEN%offload_events%'"
            )
        finally:
            await conn.close()

    pid = await wait_until(listener_pid)
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    new_pid = await wait_until(listener_pid)  # it listens again, on a new connection
    assert new_pid != pid
    workers = WorkerProcesses(pg_url, tmp_path, lease_seconds=5.0)
    workers.start(app=APP, concurrency=2)
    try:
        assert await asyncio.wait_for(stream, 60) == DONE
    finally:
        workers.stop_all()


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = "redis://127.0.0.1:6379/0"

    async def ping() -> None:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except (OSError, redis.RedisError) as exc:
        service_missing("Redis at 127.0.0.1:6379", str(exc))
    yield url


async def test_redis_pub_sub_carries_the_wake_ups(
    serve: Any, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    prefix = f"offload_test_{uuid.uuid4().hex[:8]}"  # pub/sub keeps no keys: nothing to clean
    settings = Settings(database_url=sqlite_url, events_url=redis_url, broker_prefix=prefix)
    api = serve(settings)
    job_id = await submit(api)
    listener = redis.Redis.from_url(redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{prefix}:events")
    stream = asyncio.create_task(follow(api, job_id))
    workers = WorkerProcesses(sqlite_url, tmp_path, lease_seconds=5.0)
    workers.env |= {"OFFLOAD_EVENTS_URL": redis_url, "OFFLOAD_BROKER_PREFIX": prefix}
    workers.start(app=APP, concurrency=2)
    try:
        assert await asyncio.wait_for(stream, 60) == DONE

        async def announced() -> bool:  # the workers' writes went out on the channel
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            return message is not None and job_id.encode() in message["data"]

        await wait_until(announced, timeout=10)
    finally:
        workers.stop_all()
        await pubsub.aclose()
        await listener.aclose()


async def test_an_unreachable_event_bus_is_a_clear_503(
    serve: Any, sqlite_url: str, unused_tcp_port: int
) -> None:
    settings = Settings(database_url=sqlite_url, events_url=f"redis://127.0.0.1:{unused_tcp_port}")
    api = serve(settings)
    job_id = await submit(api)  # writes still work: announcements are best effort
    async with api.client("client_a") as c:
        r = await c.get(f"/v1/jobs/{job_id}/events")
        assert r.status_code == 503 and r.json()["code"] == "events_unavailable"
        assert r.headers["retry-after"] == "5"
        assert (await c.get(f"/v1/jobs/{job_id}")).json()["status"] == "queued"


def test_an_unknown_events_url_scheme_is_refused_at_start(sqlite_url: str) -> None:
    offload = Offload(settings=Settings(database_url=sqlite_url, events_url="kafka://x"))
    with pytest.raises(ValueError, match="OFFLOAD_EVENTS_URL"):
        asyncio.run(offload.store())


async def test_a_stream_survives_a_redis_restart(
    serve: Any, sqlite_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    prefix = f"offload_test_{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=sqlite_url, events_url=private_redis.url, broker_prefix=prefix)
    api = serve(settings)
    job_id = await submit(api)
    stream = asyncio.create_task(follow(api, job_id))

    async def subscribed() -> bool:
        client = redis.Redis.from_url(private_redis.url, socket_connect_timeout=1)
        try:
            [(_, count)] = await client.pubsub_numsub(f"{prefix}:events")
            return count == 1
        except (OSError, redis.RedisError):
            return False
        finally:
            await client.aclose()

    await wait_until(subscribed)
    private_redis.restart_empty()  # subscriptions are gone with it
    await wait_until(subscribed)  # the API subscribed again by itself
    workers = WorkerProcesses(sqlite_url, tmp_path, lease_seconds=5.0)
    workers.env |= {"OFFLOAD_EVENTS_URL": private_redis.url, "OFFLOAD_BROKER_PREFIX": prefix}
    workers.start(app=APP, concurrency=2)
    try:
        assert await asyncio.wait_for(stream, 60) == DONE
    finally:
        workers.stop_all()


async def test_a_lost_announcement_is_caught_by_the_hubs_periodic_read(
    serve: Any, database_url: str
) -> None:
    """A writer killed between its commit and its NOTIFY: written here by a bare store, which
    announces nothing. Heartbeats are far apart; only the hub's own read can deliver."""
    api = serve(Settings(database_url=database_url, events_sweep_interval=0.2))
    job_id = await submit(api)
    seen: list[str] = []
    first = asyncio.Event()

    async def follow_it() -> None:
        async with (
            api.client("client_a") as c,
            aconnect_sse(c, "GET", f"/v1/jobs/{job_id}/events") as source,
        ):
            async for sse in source.aiter_sse():
                if sse.data:
                    seen.append(sse.event)
                    first.set()

    stream = asyncio.create_task(follow_it())
    await asyncio.wait_for(first.wait(), 30)
    store = open_store(database_url)
    await store.connect()
    try:
        [job] = await store.job_claim(
            types=["api.slow"], queues=None, limit=1, worker_id="w", lease_seconds=30
        )
        done = Outcome(job.id, job.attempt, JobStatus.SUCCEEDED, result='{"steps": 2}')
        await store.job_finish_many([done])
    finally:
        await store.close()
    await asyncio.wait_for(stream, 30)
    assert seen == ["job.queued", "job.running", "job.succeeded"]


def test_the_sweep_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="OFFLOAD_EVENTS_SWEEP_INTERVAL"):
        Settings.from_env({"OFFLOAD_EVENTS_SWEEP_INTERVAL": "0"})


async def test_submits_on_postgresql_announce_their_jobs_from_their_own_statement(
    pg_url: str,
) -> None:
    """A key-less submit names its job on the bus from the insert's commit, once, and not
    through the after-commit announcer; a delayed job, whose insert notifies no worker, is
    announced after the commit. Concurrent submits that share a statement are all named."""
    from tests.apps.api_jobs import app as jobs_app

    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(pg_url)
    await listener.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[3]))
    app = Offload(settings=Settings(database_url=pg_url), registry=jobs_app.registry)
    try:
        store = await app.store()
        after_commit: list[uuid.UUID] = []
        store.on_events_written(after_commit.extend)

        async def announced_until(wanted: set[str]) -> set[str]:
            named: set[str] = set()
            while not wanted <= named:
                named |= set((await asyncio.wait_for(heard.get(), 30)).split(","))
            return named

        job = await app.submit("api.echo", {"text": "hi"})
        assert await announced_until({str(job.id)}) == {str(job.id)}
        assert after_commit == []

        jobs = await asyncio.gather(*(app.submit("api.echo", {"text": str(i)}) for i in range(20)))
        assert await announced_until({str(j.id) for j in jobs}) == {str(j.id) for j in jobs}
        assert after_commit == []

        later = await app.submit("api.echo", {"text": "later"}, delay=60)
        assert await announced_until({str(later.id)}) == {str(later.id)}
        assert after_commit == [later.id]
        await app.close()  # sends whatever the announcer still holds
        # Notifications arrive in commit order: a second announcement of any job above would
        # come before this marker.
        await listener.execute("SELECT pg_notify($1, 'marker')", CHANNEL)
        assert await asyncio.wait_for(heard.get(), 30) == "marker"
    finally:
        await app.close()
        await listener.close()
