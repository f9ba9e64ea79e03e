"""RabbitMQ faults with real worker processes against a private RabbitMQ node: the broker
crashes and comes back mid-run, a worker holding unacknowledged messages is SIGKILLed. Every job
still completes, and exactly once (the store's claim decides; RabbitMQ only carries ids).

PostgreSQL only: the production pairing, and one 5,000-job run is enough time spent.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from offload import Job, JobStatus, Offload
from offload.broker import Message
from offload.config import Settings
from offload.store import JobFilter
from tests.apps import chaos
from tests.conftest import wait_until
from tests.integration.private_rabbitmq import PrivateRabbitMQ
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.slow

JOBS = 5000


@pytest.fixture
def broker_url(private_rabbitmq: PrivateRabbitMQ) -> str:
    # Reconnect quickly after the node comes back (aio-pika's default waits 5 s).
    return f"{private_rabbitmq.url}?reconnect_interval=0.3"


@pytest.fixture
async def app(pg_url: str, broker_url: str) -> AsyncIterator[Offload]:
    settings = Settings(
        database_url=pg_url,
        broker_url=broker_url,
        broker_prefix=f"offload-fault-{uuid.uuid4().hex[:8]}",
    )
    offload = Offload(settings=settings, registry=chaos.app.registry)
    await offload.store()
    yield offload
    await offload.close()


@pytest.fixture
def rabbit_workers(app: Offload, tmp_path: Path) -> Iterator[WorkerProcesses]:
    pool = WorkerProcesses(app.settings.database_url, tmp_path, lease_seconds=3.0)
    assert app.settings.broker_url is not None
    pool.env["OFFLOAD_BROKER_URL"] = app.settings.broker_url
    pool.env["OFFLOAD_BROKER_PREFIX"] = app.settings.broker_prefix
    yield pool
    pool.stop_all()


async def _publish(app: Offload, jobs: list[Job]) -> None:
    """What the outbox does after the insert (a harmless duplicate once it publishes too)."""
    broker = await app.broker()
    for start in range(0, len(jobs), 1000):
        await broker.publish([Message.of(j) for j in jobs[start : start + 1000]])


async def _succeeded(app: Offload) -> int:
    store = await app.store()
    return await store.job_count(JobFilter(status=[JobStatus.SUCCEEDED]))


async def test_every_job_completes_exactly_once_when_rabbitmq_crashes_and_restarts_mid_run(
    app: Offload,
    rabbit_workers: WorkerProcesses,
    private_rabbitmq: PrivateRabbitMQ,
    tmp_path: Path,
) -> None:
    log = tmp_path / "marks.log"
    jobs = await app.submit_many("chaos.mark", [{"log": str(log)}] * JOBS)
    await _publish(app, jobs)
    for _ in range(2):
        rabbit_workers.start("--concurrency", "20")

    await wait_until(lambda: _at_least(app, JOBS // 5), timeout=120)
    private_rabbitmq.kill()  # a crash: unacked deliveries and open channels die with it
    done_before_restart = await _succeeded(app)
    private_rabbitmq.start()

    await wait_until(lambda: _at_least(app, JOBS), timeout=180)
    assert done_before_restart < JOBS  # the crash really was mid-run
    store = await app.store()
    assert await store.job_count(JobFilter(status=[JobStatus.SUCCEEDED])) == JOBS
    lines = [line.split() for line in log.read_text().splitlines()]
    runs = collections.Counter(words[0] for words in lines)
    assert len(runs) == JOBS
    assert set(runs.values()) == {1}  # no job's handler ran twice
    assert {words[1] for words in lines} == {"attempt=1"}  # nor was any claimed twice
    assert all(p.poll() is None for p in rabbit_workers.procs)  # the workers rode it out


async def _at_least(app: Offload, count: int) -> bool:
    return await _succeeded(app) >= count
