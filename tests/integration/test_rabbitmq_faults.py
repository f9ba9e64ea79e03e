"""RabbitMQ under faults, with real worker processes against a private RabbitMQ node: the node
crashes (SIGKILL) and comes back in the middle of a 5,000-job run, and a worker holding
unacknowledged messages is SIGKILLed. Every job still completes, exactly once: RabbitMQ only
carries job ids, the store's claim decides.

PostgreSQL only: the production pairing, and one 5,000-job run is enough time spent.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from offload import Offload, Settings
from tests.apps import broker_jobs
from tests.broker.fault_scenarios import broker_fails_mid_run, sigkilled_holder_is_taken_over
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
    def crash_and_restart() -> None:
        private_rabbitmq.kill()  # unacked deliveries and every channel die with the node
        private_rabbitmq.start()  # same data dir: the quorum queues and their messages are back

    await broker_fails_mid_run(app, rabbit_workers, tmp_path / "runs.log", crash_and_restart)
    assert all(p.poll() is None for p in rabbit_workers.procs)  # the workers rode it out
    assert "Reconnecting" in rabbit_workers.logs()  # they lost the node and came back


async def test_messages_held_by_a_sigkilled_worker_are_redelivered_and_completed(
    app: Offload, rabbit_workers: WorkerProcesses, tmp_path: Path
) -> None:
    # RabbitMQ requeues the dead worker's 12 unacked messages.
    await sigkilled_holder_is_taken_over(app, rabbit_workers, tmp_path / "runs.log")
