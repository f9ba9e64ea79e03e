"""The two broker fault scenarios every message broker must survive, with real worker
processes (``WorkerProcesses``) running ``tests.apps.broker_jobs``; each broker's test module
supplies the fault itself and checks what is particular to its broker.
"""

from __future__ import annotations

import collections
import os
import signal
from collections.abc import Callable
from pathlib import Path

from offload import Job, JobStatus, Offload
from offload.store import JobFilter
from tests.conftest import wait_until
from tests.integration.workers import WorkerProcesses

APP = "tests.apps.broker_jobs:app"


def runs(log: Path) -> collections.Counter[tuple[str, str]]:
    """(event, job id) → how many times it was logged."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            event, job_id, *_ = line.split()
            counts[(event, job_id)] += 1
    return counts


async def count(app: Offload, status: JobStatus) -> int:
    return await (await app.store()).job_count(JobFilter(status=[status]))


async def broker_fails_mid_run(
    app: Offload, workers: WorkerProcesses, log: Path, fail: Callable[[], None]
) -> list[Job]:
    """Two workers run 5,000 jobs; ``fail()`` hits the broker once a fifth of them is done.
    Every job must still succeed exactly once, at attempt 1. The jobs, for more checks."""
    total = 5_000
    # No worker dies here: a lease long enough that no heartbeat delayed by a busy machine
    # lets one expire, so "attempt 1, one run each" holds for a broker failure alone.
    workers.env["OFFLOAD_LEASE_SECONDS"] = "30"
    for _ in range(2):
        workers.start("--prefetch", "10", app=APP, concurrency=20)
    for start in range(0, total, 1_000):
        await app.submit_many(
            "broker.work", [{"log": str(log), "seconds": 0.01}] * min(1_000, total - start)
        )

    async def a_fifth_done() -> bool:
        return await count(app, JobStatus.SUCCEEDED) >= total // 5

    await wait_until(a_fifth_done, timeout=120)
    fail()
    assert await count(app, JobStatus.SUCCEEDED) < total  # it really was mid-run

    async def all_done() -> bool:
        return await count(app, JobStatus.SUCCEEDED) == total

    await wait_until(all_done, timeout=240, interval=0.5)
    jobs = await (await app.store()).job_list(JobFilter(), limit=total + 1)
    assert len(jobs) == total
    assert {j.status for j in jobs} == {JobStatus.SUCCEEDED}
    assert {j.attempt for j in jobs} == {1}  # no attempt was lost, none repeated
    counts = runs(log)
    assert all(counts[("start", str(j.id))] == 1 for j in jobs), "a job ran twice"
    assert sum(1 for (event, _), _n in counts.items() if event == "done") == total
    return jobs


async def sigkilled_holder_is_taken_over(app: Offload, workers: WorkerProcesses, log: Path) -> None:
    """A worker holding 12 unacknowledged jobs (4 running, 8 held under lease) is SIGKILLed;
    a new one completes each of them once, at attempt 2, and the broker ends up empty."""
    doomed = workers.start("--prefetch", "20", app=APP, concurrency=4)
    jobs = await app.submit_many("broker.work", [{"log": str(log), "seconds": 0.5}] * 12)

    async def holding_them_all() -> bool:
        running = await (await app.store()).job_list(
            JobFilter(status=[JobStatus.RUNNING]), limit=100
        )
        return len(running) == len(jobs) and all(
            j.worker_id and f":{doomed.pid}:" in j.worker_id for j in running
        )

    await wait_until(holding_them_all)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    survivor = workers.start(app=APP, concurrency=12)

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

    async def nothing_waiting() -> bool:
        return await broker.backlog("default") == 0

    assert await wait_until(nothing_waiting)
