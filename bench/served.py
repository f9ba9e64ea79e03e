"""offload served for real: ``offload serve`` and ``offload worker`` as processes of their own,
on a PostgreSQL database of the run, with the CLI for set-up. Shared by the HTTP scenarios
(``bench.http``) and the event-stream scenarios (``bench.events``).

Every process started here is on the harness's cleanup stack; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence

from bench import infra
from bench.scenarios import REPO_ROOT, Deadline


def offload_bin() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "offload")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} not found (is offload installed in this venv?)")
    return path


def uvicorn_impl() -> str:
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop} + {http}"


class ServedOffload:
    """The API of ``app`` on a free port, its workers (``worker_args``), and the CLI."""

    def __init__(
        self, app: str, worker_args: Sequence[str], workdir: str, env: dict[str, str]
    ) -> None:
        self.app = app
        self.worker_args = list(worker_args)
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = infra.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "OFFLOAD_API_RATE_LIMIT": "0",  # its default would be what we measure
            **env,
        }
        self.offload = offload_bin()
        self.server: infra.Proc | None = None
        self.workers: infra.Proc | None = None

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [self.offload, *args, "--app", self.app],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"offload {args[0]} failed: {proc.stderr.strip()[-300:]}")
        return proc.stdout

    def prepare(self) -> str:
        """Apply the migrations and create a client key; the key."""
        self.cli("db", "upgrade")
        key = self.cli("keys", "create", "--tenant", "bench", "--role", "client").strip()
        if not re.fullmatch(r"\S+", key):
            raise RuntimeError(f"offload keys create printed {key!r}, not one key")
        return key

    def start_server(self, processes: int) -> None:
        argv = [self.offload, "serve", "--app", self.app, "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--log-level", "warning", "--workers", str(processes)]
        self.server = infra.Proc(argv, self.env, os.path.join(self.workdir, "serve.log"), REPO_ROOT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        import httpx

        assert self.server is not None
        end = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            if not self.server.alive():
                raise RuntimeError(f"offload serve exited: {self.server.tail(8)}")
            if time.monotonic() > end:
                raise Deadline(f"offload serve not ready after 30 s: {self.server.tail(8)}")
            time.sleep(0.1)

    def start_workers(self) -> None:
        argv = [self.offload, "worker", "--app", self.app, *self.worker_args]
        self.workers = infra.Proc(
            argv, self.env, os.path.join(self.workdir, "workers.log"), REPO_ROOT
        )

    def stop_workers(self) -> None:
        if self.workers is not None:
            self.workers.stop()
            self.workers = None

    def stop(self) -> None:
        self.stop_workers()
        if self.server is not None:
            self.server.stop()
            self.server = None

    def check_server(self) -> None:
        if self.server is None or not self.server.alive():
            tail = self.server.tail(8) if self.server else ""
            raise RuntimeError(f"offload serve died: {tail}")

    def api_rss_mb(self) -> float:
        assert self.server is not None
        total = 0
        for p in self.server.tree():
            with contextlib.suppress(Exception):
                total += p.memory_info().rss
        return total / 2**20

    def api_cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by the serve process tree: per request, a
        figure that depends far less on what else runs on the machine than a rate does."""
        assert self.server is not None
        total = 0.0
        for p in self.server.tree():
            with contextlib.suppress(Exception):
                t = p.cpu_times()
                total += t.user + t.system
        return total
