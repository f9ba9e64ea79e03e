"""Isolated infrastructure for one run: a private redis-server, a fresh PostgreSQL database,
and worker subprocesses that are always killed at the end (normal exit, exception, Ctrl-C,
SIGTERM; atexit as the last resort).

The shared services are only ever touched in ways that are undone: on PostgreSQL we create and
drop our own database; the shared Redis on 6379 is never used at all.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import psutil

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_SERVER = os.environ.get("BENCH_REDIS_SERVER", "/usr/bin/redis-server")

_PR_SET_PDEATHSIG = 1


class Cleanup:
    """LIFO stack of cleanup callbacks, run once (explicitly, or via atexit)."""

    def __init__(self) -> None:
        self._callbacks: list[tuple[str, Callable[[], Any]]] = []
        atexit.register(self.run)

    def push(self, what: str, callback: Callable[[], Any]) -> None:
        self._callbacks.append((what, callback))

    def run(self) -> None:
        while self._callbacks:
            what, callback = self._callbacks.pop()
            try:
                callback()
            except Exception as exc:  # keep cleaning up the rest
                print(f"bench: cleanup of {what} failed: {exc}")


CLEANUP = Cleanup()


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C, so every ``finally`` and the cleanup stack run."""

    def raise_interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGINT explicitly too: a runner started in the background inherits SIGINT as ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGHUP, raise_interrupt)


def _child_setup() -> None:
    # New session: a terminal Ctrl-C does not hit workers mid-measurement, and the runner can
    # kill the whole group (Celery's prefork children included). PDEATHSIG: if the runner is
    # SIGKILLed, the kernel still terminates the direct child.
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A subprocess in its own process group; output goes to a log file for error reports."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: str, cwd: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup,  # noqa: PLW1509 - setsid + prctl only
        )
        CLEANUP.push(f"process {self.popen.pid}", self.stop)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the whole group, wait up to ``grace`` s, then SIGKILL whatever is left."""
        if self._log.closed:
            return
        members = self.tree()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(members, timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for p in alive:  # members that left the group (they should not, but be sure)
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._log.close()


class PrivateRedis:
    """A throw-away redis-server: free port, no persistence, temp dir; stopped at the end."""

    def __init__(self, workdir: str) -> None:
        import redis

        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=workdir)
        argv = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            "--databases",
            "4",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ]
        self.proc = Proc(argv, dict(os.environ), os.path.join(workdir, "redis.log"), self.dir)
        self.url = f"redis://127.0.0.1:{self.port}"
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while not self._ping(client):
            if time.monotonic() > deadline or not self.proc.alive():
                self.proc.stop()
                raise RuntimeError(f"private redis-server did not start: {self.proc.tail()}")
            time.sleep(0.05)
        client.close()

    @staticmethod
    def _ping(client: Any) -> bool:
        import redis

        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def db_url(self, db: int) -> str:
        return f"{self.url}/{db}"


class PgDatabase:
    """CREATE DATABASE offload_bench_<run_id> on the shared server; DROP (FORCE) at the end."""

    def __init__(self, run_id: str) -> None:
        import psycopg

        self.name = f"offload_bench_{run_id}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        CLEANUP.push(f"database {self.name}", self.drop)
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
            # FORCE terminates lingering sessions (workers killed mid-query, pools).
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def make_workdir(run_id: str) -> str:
    path = tempfile.mkdtemp(prefix=f"offload-bench-{run_id}-")
    CLEANUP.push(f"workdir {path}", lambda: shutil.rmtree(path, ignore_errors=True))
    return path
