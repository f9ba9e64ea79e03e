"""Redis Streams under faults, with real worker processes and a private redis-server: Redis
restarted empty in the middle of a run, a worker SIGKILLed holding unacknowledged messages, a
submitter killed between its commit and its publish. The store decides: every job completes
exactly once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from offload import JobStatus, Offload, Settings
from tests.apps import broker_jobs
from tests.broker.fault_scenarios import (
    APP,
    broker_fails_mid_run,
    runs,
    sigkilled_holder_is_taken_over,
)
from tests.broker.private_redis import PrivateRedis, private_redis
from tests.conftest import wait_until
from tests.integration.workers import ROOT, WorkerProcesses

pytestmark = pytest.mark.slow

__all__ = ["private_redis"]


@pytest.fixture
def prefix() -> str:
    return f"offload-fault-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def app(pg_url: str, private_redis: PrivateRedis, prefix: str) -> AsyncIterator[Offload]:
    """Submits ``broker.work`` jobs through the outbox; the workers are separate processes."""
    settings = Settings(database_url=pg_url, broker_url=private_redis.url, broker_prefix=prefix)
    offload = Offload(settings=settings, registry=broker_jobs.app.registry)
    await offload.broker()
    yield offload
    await offload.close()


@pytest.fixture
def workers(
    pg_url: str, private_redis: PrivateRedis, prefix: str, tmp_path: Path
) -> Iterator[WorkerProcesses]:
    pool = WorkerProcesses(pg_url, tmp_path, lease_seconds=1.0)
    pool.env.update(
        {
            "OFFLOAD_BROKER_URL": f"{private_redis.url}?claim_idle=1",
            "OFFLOAD_BROKER_PREFIX": prefix,
            "OFFLOAD_RECONCILE_INTERVAL": "0.5",
            "OFFLOAD_DISPATCH": "0",
        }
    )
    yield pool
    pool.stop_all()


async def test_redis_restarted_empty_mid_run_loses_nothing_and_runs_nothing_twice(
    app: Offload, workers: WorkerProcesses, private_redis: PrivateRedis, tmp_path: Path
):
    # Every stream, group and pending entry is gone at once.
    jobs = await broker_fails_mid_run(
        app, workers, tmp_path / "runs.log", private_redis.restart_empty
    )
    assert {j.result["job"] for j in jobs} == {str(j.id) for j in jobs}  # type: ignore[index]
    store = await app.store()
    for job in jobs[:50]:  # one success event each (spot check)
        events = [e.type for e in await store.job_events(job.id)]
        assert events.count("job.succeeded") == 1
    assert "republished" in workers.logs()  # the reconciler brought the lost messages back


async def test_messages_held_by_a_sigkilled_worker_are_taken_over_and_completed(
    app: Offload, workers: WorkerProcesses, tmp_path: Path
):
    await sigkilled_holder_is_taken_over(app, workers, tmp_path / "runs.log")


async def test_a_job_whose_submitter_died_before_publishing_is_published_by_the_reconciler(
    app: Offload, workers: WorkerProcesses, pg_url: str, private_redis: PrivateRedis, prefix: str,
    tmp_path: Path,
):  # fmt: skip
    log = tmp_path / "runs.log"
    # A submitting process that commits the job (and its outbox row) and is SIGKILLed before
    # its relay gets a chance to publish: nothing awaits between the two.
    script = (
        "import asyncio, os, signal, sys\n"
        "from tests.apps.broker_jobs import app\n"
        "async def main():\n"
        f"    job = await app.submit('broker.work', {{'log': {str(log)!r}}})\n"
        "    sys.stdout.write(str(job.id) + '\\n'); sys.stdout.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n"
    )
    env = {
        **workers.env,
        "OFFLOAD_BROKER_URL": private_redis.url,
        "OFFLOAD_BROKER_PREFIX": prefix,
        "PYTHONPATH": str(ROOT),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env=env, cwd=ROOT, stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    job_id = uuid.UUID(out.decode().strip())
    store = await app.store()
    assert [e.job_id for e in await store.outbox_pending(older_than=0, limit=10)] == [job_id]
    broker = await app.broker()
    assert await broker.backlog("default") == 0  # never published

    workers.start(app=APP)

    async def done() -> bool:
        job = await app.get_job(job_id)
        return job is not None and job.status is JobStatus.SUCCEEDED

    await wait_until(done, timeout=60)
    assert runs(log)[("done", str(job_id))] == 1

    async def outbox_empty() -> bool:  # deleted after the publish, maybe after the job ran
        return await store.outbox_pending(older_than=0, limit=10) == []

    await wait_until(outbox_empty)


async def test_a_submit_while_redis_is_down_is_kept_and_published_once_it_is_back(
    app: Offload, workers: WorkerProcesses, private_redis: PrivateRedis, tmp_path: Path
):
    log = tmp_path / "runs.log"
    private_redis.kill()

    job = await app.submit("broker.work", {"log": str(log)})  # accepted: the row is the truth
    relay = await app.relay()
    assert relay is not None
    await relay.flush()  # the publish failed; the outbox row stays
    store = await app.store()
    assert [e.job_id for e in await store.outbox_pending(older_than=0, limit=10)] == [job.id]

    private_redis.start()  # back, empty
    workers.start(app=APP)

    async def done() -> bool:
        current = await app.get_job(job.id)
        return current is not None and current.status is JobStatus.SUCCEEDED

    await wait_until(done, timeout=60)
    assert runs(log)[("done", str(job.id))] == 1


def test_a_worker_that_cannot_reach_redis_exits_with_a_clear_error(
    workers: WorkerProcesses, private_redis: PrivateRedis
):
    private_redis.kill()

    proc = workers.start(app=APP)

    assert proc.wait(30) == 1
    assert f"cannot connect to Redis at redis://127.0.0.1:{private_redis.port}" in workers.logs()
