"""The database goes away in the middle of a run and comes back: workers wait it out, and
every job still completes exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from offload import JobStatus, Offload
from tests.apps import chaos
from tests.conftest import wait_until
from tests.integration.private_postgres import PrivatePostgres
from tests.integration.workers import ROOT

pytestmark = pytest.mark.slow


async def test_workers_ride_out_a_database_restart_and_finish_every_job_once(
    private_postgres: PrivatePostgres,
    tmp_path: Path,
) -> None:
    app = Offload(private_postgres.url, registry=chaos.app.registry)
    await app.upgrade_schema()
    log = tmp_path / "noop.log"
    env = {
        **os.environ,
        "OFFLOAD_DATABASE_URL": private_postgres.url,
        "PYTHONPATH": str(ROOT),
        "OFFLOAD_LEASE_SECONDS": "5",
        "OFFLOAD_REAP_INTERVAL": "0.5",
    }
    with (tmp_path / "worker.log").open("ab") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "offload.worker",
                "--app",
                "tests.apps.chaos:app",
                "--processes",
                "2",
                "--concurrency",
                "5",
            ],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        first = await app.submit_many("chaos.noop", [{"log": str(log)}] * 200)
        await app.close()
        private_postgres.stop("immediate")  # a crash, not a clean shutdown
        await asyncio.sleep(1.0)  # the outage itself: workers must notice and keep retrying
        private_postgres.start()
        second = await app.submit_many("chaos.noop", [{"log": str(log)}] * 200)
        jobs = [*first, *second]

        async def all_done() -> bool:
            states = [(await app.get_job(j.id)) for j in jobs]
            return all(j is not None and j.status is JobStatus.SUCCEEDED for j in states)

        await wait_until(all_done, timeout=90, interval=0.2)
        assert worker.poll() is None, "the worker pool must survive the outage"
        for job in jobs:
            events = [e.type for e in await app.events(job.id)]
            assert events.count("job.succeeded") == 1
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        await app.close()
