"""Start real worker processes for tests and always clean them up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcesses:
    def __init__(self, database_url: str, folder: Path, lease_seconds: float) -> None:
        self.env = {
            **os.environ,
            "OFFLOAD_DATABASE_URL": database_url,
            "OFFLOAD_LEASE_SECONDS": str(lease_seconds),
            "OFFLOAD_REAP_INTERVAL": "0.2",
            "OFFLOAD_POLL_INTERVAL": "0.02",
            "PYTHONPATH": str(ROOT),
        }
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, *extra: str, app: str = "tests.apps.chaos:app", concurrency: int = 4
    ) -> subprocess.Popen[bytes]:
        with (self.folder / f"worker-{len(self.procs)}.log").open("ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "offload.worker",
                    "--app",
                    app,
                    "--concurrency",
                    str(concurrency),
                    *extra,
                ],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.folder.glob("worker-*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(timeout=10)


@pytest.fixture
def workers(database_url: str, tmp_path: Path) -> Iterator[WorkerProcesses]:
    pool = WorkerProcesses(database_url, tmp_path, lease_seconds=1.0)
    yield pool
    pool.stop_all()
