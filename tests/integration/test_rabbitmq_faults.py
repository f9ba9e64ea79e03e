"""RabbitMQ under faults, with real worker processes against a private RabbitMQ node: the node
crashes (SIGKILL) and comes back in the middle of a 5,000-job run, and a worker holding
unacknowledged messages is SIGKILLed. Every job still completes, exactly once: RabbitMQ only
carries job ids, the store's claim decides.

PostgreSQL only: the production pairing, and one 5,000-job run is enough time spent.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from offload import JobStatus, Offload, Settings
from offload.store import JobFilter
from tests.apps import broker_jobs
from tests.broker.test_broker_faults import count, runs
from tests.conftest import wait_until
from tests.integration.private_rabbitmq import PrivateRabbitMQ
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.slow

APP = "tests.apps.broker_jobs:app"


@pytest.fixture
def broker_url(private_rabbitmq: PrivateRabbitMQ) -> str:
    # Reconnect quickly once the node is back (aio-pika waits 5 s by default).
    return f"{private_rabbitmq.url}?reconnect_interval=0.3"


@pytest.fixture
def prefix() -> str:
    return f"offload-fault-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def app(pg_url: str, broker_url: str, prefix: str) -> AsyncIterator[Offload]:
    """Submits ``broker.work`` jobs through the outbox; the workers are separate processes."""
    settings = Settings(database_url=pg_url, broker_url=broker_url, broker_prefix=prefix)
    offload = Offload(settings=settings, registry=broker_jobs.app.registry)
    await offload.broker()
    yield offload
    await offload.close()


@pytest.fixture
def rabbit_workers(
    pg_url: str, broker_url: str, prefix: str, tmp_path: Path
) -> Iterator[WorkerProcesses]:
    pool = WorkerProcesses(pg_url, tmp_path, lease_seconds=1.0)
    pool.env.update(
        {
            "OFFLOAD_BROKER_URL": broker_url,
            "OFFLOAD_BROKER_PREFIX": prefix,
            "OFFLOAD_RECONCILE_INTERVAL": "0.5",
            "OFFLOAD_DISPATCH": "0",
        }
    )
    yield pool
    pool.stop_all()


async def test_rabbitmq_crashing_and_restarting_mid_run_loses_nothing_and_runs_nothing_twice(
    app: Offload,
    rabbit_workers: WorkerProcesses,
    private_rabbitmq: PrivateRabbitMQ,
    tmp_path: Path,
) -> None:
    log = tmp_path / "runs.log"
    total = 5_000
    # No worker dies here: a lease long enough that no heartbeat delayed by a busy machine
    # lets one expire, so "attempt 1, one run each" holds for a broker failure alone.
    rabbit_workers.env["OFFLOAD_LEASE_SECONDS"] = "30"
    for _ in range(2):
        rabbit_workers.start("--prefetch", "10", app=APP, concurrency=20)
    for start in range(0, total, 1_000):
        await app.submit_many(
            "broker.work", [{"log": str(log), "seconds": 0.01}] * min(1_000, total - start)
        )

    async def a_fifth_done() -> bool:
        return await count(app, JobStatus.SUCCEEDED) >= total // 5

    await wait_until(a_fifth_done, timeout=120)
    private_rabbitmq.kill()  # unacked deliveries and every channel die with the node
    assert await count(app, JobStatus.SUCCEEDED) < total  # it really was mid-run
    private_rabbitmq.start()  # same data dir: the quorum queues and their messages are back

    async def all_done() -> bool:
        return await count(app, JobStatus.SUCCEEDED) == total

    await wait_until(all_done, timeout=240, interval=0.5)
    store = await app.store()
    jobs = await store.job_list(JobFilter(), limit=total + 1)
    assert len(jobs) == total
    assert {j.status for j in jobs} == {JobStatus.SUCCEEDED}
    assert {j.attempt for j in jobs} == {1}  # no attempt was lost, none repeated
    counts = runs(log)
    assert all(counts[("start", str(j.id))] == 1 for j in jobs), "a job ran twice"
    assert sum(1 for (event, _), _n in counts.items() if event == "done") == total
    assert all(p.poll() is None for p in rabbit_workers.procs)  # the workers rode it out
    assert "Reconnecting" in rabbit_workers.logs()  # they lost the node and came back


async def test_messages_held_by_a_sigkilled_worker_are_redelivered_and_completed(
    app: Offload, rabbit_workers: WorkerProcesses, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    doomed = rabbit_workers.start("--prefetch", "20", app=APP, concurrency=4)
    jobs = await app.submit_many("broker.work", [{"log": str(log), "seconds": 0.5}] * 12)

    async def holding_them_all() -> bool:
        running = await (await app.store()).job_list(
            JobFilter(status=[JobStatus.RUNNING]), limit=100
        )
        return len(running) == len(jobs) and all(
            j.worker_id and f":{doomed.pid}:" in j.worker_id for j in running
        )

    await wait_until(holding_them_all)  # 4 running, 8 held under lease, none acknowledged
    os.killpg(doomed.pid, signal.SIGKILL)  # RabbitMQ requeues its 12 unacked messages
    doomed.wait(10)
    survivor = rabbit_workers.start(app=APP, concurrency=12)

    async def all_done() -> bool:
        return await count(app, JobStatus.SUCCEEDED) == len(jobs)

    await wait_until(all_done, timeout=60)
    counts = runs(log)
    for job in jobs:
        final = await app.get_job(job.id)
        assert final is not None and final.status is JobStatus.SUCCEEDED
        assert final.attempt == 2  # the dead worker's attempt was counted, then fenced off
        assert counts[("done", str(job.id))] == 1
    lines = log.read_text().splitlines()
    assert sum(f" 2 {survivor.pid}" in line and line.startswith("done") for line in lines) == 12
    broker = await app.broker()
    assert await wait_until(lambda: _nothing_waiting(broker))


async def _nothing_waiting(broker) -> bool:  # type: ignore[no-untyped-def]
    return await broker.backlog("default") == 0
