"""Real worker processes, killed, frozen and stopped: nothing is lost, nothing completes twice.

Workers run with a 1 s lease so that lease expiry is quick to observe.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from offload import Job, JobStatus, Offload
from tests.apps import chaos
from tests.conftest import wait_until
from tests.integration.workers import WorkerProcesses

pytestmark = pytest.mark.slow


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[Offload]:
    """Submits the chaos jobs; the workers are separate processes."""
    offload = Offload(database_url, registry=chaos.app.registry)
    await offload.store()
    yield offload
    await offload.close()


async def _job(app: Offload, job_id: Any) -> Job:
    job = await app.get_job(job_id)
    assert job is not None
    return job


def _pid_of(job: Job) -> int | None:
    return int(job.worker_id.split(":")[1]) if job.worker_id else None


async def test_a_killed_worker_s_job_resumes_from_its_checkpoint_elsewhere_and_completes_once(
    app: Offload, workers: WorkerProcesses, tmp_path: Path
) -> None:
    log = tmp_path / "count.log"
    first = workers.start()
    job = await app.submit("chaos.count", {"steps": 30, "log": str(log), "step_seconds": 0.05})

    async def a_third_done() -> Job | None:
        j = await _job(app, job.id)
        return j if j.progress.percent >= 30 else None

    running = await wait_until(a_third_done)
    assert _pid_of(running) == first.pid
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    second = workers.start()

    async def done() -> Job | None:
        j = await _job(app, job.id)
        return j if j.is_terminal else None

    final = await wait_until(done, timeout=60)
    assert final.status is JobStatus.SUCCEEDED
    assert final.attempt == 2
    assert final.result["resumed_from"] >= 9  # not from scratch
    lines = log.read_text().splitlines()
    assert sum(line.startswith("done") for line in lines) == 1
    assert f"start pid={second.pid} attempt=2 from={final.result['resumed_from']}" in lines
    events = [e.type for e in await app.events(job.id)]
    assert events.count("job.succeeded") == 1
    assert "job.retrying" in events  # the reaper returned the dead attempt's job


async def test_a_job_that_kills_its_worker_every_time_is_dead_lettered_after_max_attempts(
    app: Offload, workers: WorkerProcesses, tmp_path: Path
) -> None:
    log = tmp_path / "suicide.log"
    workers.start("--processes", "2")  # the supervisor restarts children that die
    job = await app.submit("chaos.suicide", {"log": str(log)})

    async def done() -> Job | None:
        j = await _job(app, job.id)
        return j if j.is_terminal else None

    final = await wait_until(done, timeout=90)
    assert final.status is JobStatus.FAILED
    assert final.attempt == final.max_attempts == 3
    assert final.error is not None and final.error.code == "lease_expired"
    assert len(log.read_text().splitlines()) == 3
    # The pool survived the poison pill and still runs healthy jobs.
    ok = await app.submit("chaos.noop", {"log": str(tmp_path / "noop.log")})

    async def ok_done() -> Job | None:
        j = await _job(app, ok.id)
        return j if j.status is JobStatus.SUCCEEDED else None

    await wait_until(ok_done, timeout=60)


async def test_a_frozen_worker_that_wakes_up_after_losing_its_lease_cannot_overwrite_anything(
    app: Offload, workers: WorkerProcesses, tmp_path: Path
) -> None:
    log = tmp_path / "count.log"
    stale = workers.start()
    job = await app.submit("chaos.count", {"steps": 20, "log": str(log), "step_seconds": 0.05})

    async def started() -> Job | None:
        j = await _job(app, job.id)
        return j if j.progress.percent >= 20 and _pid_of(j) == stale.pid else None

    await wait_until(started)
    os.killpg(stale.pid, signal.SIGSTOP)  # frozen: no heartbeats, the lease runs out
    try:
        fresh = workers.start()

        async def taken_over_and_done() -> Job | None:
            j = await _job(app, job.id)
            return j if j.status is JobStatus.SUCCEEDED else None

        final = await wait_until(taken_over_and_done, timeout=60)
        assert final.attempt == 2
    finally:
        os.killpg(stale.pid, signal.SIGCONT)
    # The stale attempt resumes, tries to write, is fenced off and gives up.
    await wait_until(lambda: asyncio.sleep(0, "lost its lease" in workers.logs()), timeout=30)
    after = await _job(app, job.id)
    assert after.status is JobStatus.SUCCEEDED
    assert after.result == final.result and after.event_seq == final.event_seq
    assert after.checkpoint == 20
    assert fresh.poll() is None


async def test_sigterm_lets_short_jobs_finish_and_hands_long_ones_back_without_spending_an_attempt(
    app: Offload, workers: WorkerProcesses, tmp_path: Path
) -> None:
    worker = workers.start("--grace", "1.5")
    short = await app.submit(
        "chaos.count", {"steps": 6, "log": str(tmp_path / "s.log"), "step_seconds": 0.1}
    )
    long = await app.submit(
        "chaos.count_sync", {"steps": 200, "log": str(tmp_path / "l.log"), "step_seconds": 0.05}
    )

    async def both_running() -> bool:
        jobs = [await _job(app, short.id), await _job(app, long.id)]
        return all(j.status is JobStatus.RUNNING for j in jobs)

    await wait_until(both_running)
    stopped_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    await asyncio.to_thread(worker.wait, 20)
    assert time.monotonic() - stopped_at < 10
    assert worker.returncode == 0
    assert (await _job(app, short.id)).status is JobStatus.SUCCEEDED
    handed_back = await _job(app, long.id)
    assert handed_back.status is JobStatus.QUEUED
    assert handed_back.attempt == 1 and handed_back.max_attempts == 6  # 5 + the one handed back
    assert handed_back.checkpoint and handed_back.checkpoint > 0
    reasons = [e.data.get("reason") for e in await app.events(long.id) if e.type == "job.queued"]
    assert reasons[-1] == "worker shutdown"

    workers.start()

    async def resumed_and_done() -> Job | None:
        j = await _job(app, long.id)
        return j if j.status is JobStatus.SUCCEEDED else None

    final = await wait_until(resumed_and_done, timeout=60)
    assert final.result["resumed_from"] >= handed_back.checkpoint
    assert final.attempt == 2
