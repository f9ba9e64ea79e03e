"""A RabbitMQ node of the test's own (own node name, ports, data and log dirs in a temp dir) for
tests that stop, kill and restart the broker. The shared node (rabbit@localhost:5672) is never
touched: a separate env file replaces /etc/rabbitmq/rabbitmq-env.conf, and a private HOME gives
the node and its CLI calls their own Erlang cookie.

Start-up takes ~3-5 s on this machine (no plugins, one TCP listener); a restart in place keeps
the data dir, so durable queues and their persistent messages survive it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import service_missing

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
_USER = "rabbitmq"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRabbitMQ:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="offload-rabbit-"))
        self.node = f"offload-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = _free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self._proc: subprocess.Popen[bytes] | None = None
        # The packaged scripts expect to run as the rabbitmq user: switch to it when root.
        self._as_user = ["runuser", "-u", _USER, "--"] if os.geteuid() == 0 else []
        (self.folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "disk_free_limit.absolute = 10MB\n"
            "log.console = false\n"
        )
        (self.folder / "enabled_plugins").write_text("[].\n")
        (self.folder / "rabbitmq-env.conf").write_text("")
        if self._as_user:
            for path in [self.folder, *self.folder.iterdir()]:
                shutil.chown(path, _USER)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.folder),
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(_free_port()),
            "RABBITMQ_CONF_ENV_FILE": str(self.folder / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def _command(self, *args: str) -> list[str]:
        return [*self._as_user, "env", *(f"{k}={v}" for k, v in self.env.items()), *args]

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl`` against this node; returns its stdout."""
        done = subprocess.run(
            self._command(str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args),
            capture_output=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout.decode()

    def start(self, timeout: float = 90) -> float:
        """Start the node (on the same data dir after a stop); returns the seconds it took."""
        began = time.monotonic()
        with (self.folder / "server.out").open("ab") as out:
            self._proc = subprocess.Popen(
                self._command(str(RABBIT_BIN / "rabbitmq-server")),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = began + timeout
        while not self._accepts():
            if self._proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq-server not up within {timeout} s: {self.log_tail()}")
            time.sleep(0.1)
        # The listener opens late in boot; await_startup covers the last boot steps.
        self.ctl("await_startup", "--timeout", str(int(timeout)))
        return time.monotonic() - began

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """A clean shutdown (``rabbitmqctl stop``)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self.ctl("stop")
        self._proc.wait(timeout=60)

    def kill(self) -> None:
        """A crash: SIGKILL to the whole node (the Erlang VM and its helpers)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while self._accepts() and time.monotonic() < deadline:
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        text = ""
        for path in [self.folder / "server.out", *sorted((self.folder / "log").glob("*.log"))]:
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        service_missing("RabbitMQ binaries", f"{RABBIT_BIN}/rabbitmq-server not found")
    server = PrivateRabbitMQ()
    try:
        server.start()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        server.destroy()
        service_missing("a private RabbitMQ node", str(exc))
    yield server
    server.destroy()
