"""``--processes N``: keep N worker processes alive and pass signals on to them.

The supervisor imports nothing of the user's app (it stays small); each child is a full
``python -m offload.worker`` with ``--processes 1``. A child that dies unexpectedly (SIGKILL,
OOM, a database that was down when it started) is restarted after a pause that doubles with
each quick failure (1 s up to 30 s); its jobs come back through lease expiry. Once a stop
signal arrives nothing is restarted, and the supervisor exits when every child has.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence

USAGE_ERROR = 2
"""A child's exit code for a usage error (bad --app): restarting would fail the same way."""
HEALTHY_AFTER = 10.0
"""A child that ran this long before dying is restarted after the shortest pause again."""


class _Slot:
    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.failures = 0
        self.restart_at: float | None = None
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.started = time.monotonic()
        return subprocess.Popen(self.command)

    def check(self, now: float) -> int | None:
        """Restart the child when its pause is over; return its exit code if it just died."""
        code = self.proc.poll()
        if code is None:
            return None
        if self.restart_at is None:
            if now - self.started >= HEALTHY_AFTER:
                self.failures = 0
            self.restart_at = now + min(2.0**self.failures, 30.0)
            self.failures += 1
            return code
        if now >= self.restart_at:
            self.restart_at = None
            self.proc = self._spawn()
        return None


def supervise(child_args: Sequence[str], processes: int) -> int:
    command = [sys.executable, "-m", "offload.worker", *child_args, "--processes", "1"]
    slots: list[_Slot] = []
    signalled: set[int] = set()
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for slot in slots:
            if slot.proc.poll() is None:
                slot.proc.send_signal(signum)
                signalled.add(slot.proc.pid)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for _ in range(processes):
        slots.append(_Slot(command))
    while True:
        time.sleep(0.2)
        if stopping:
            for slot in slots:  # a child started while the signal arrived has not seen it
                if slot.proc.poll() is None and slot.proc.pid not in signalled:
                    slot.proc.send_signal(signal.SIGTERM)
                    signalled.add(slot.proc.pid)
            if all(slot.proc.poll() is not None for slot in slots):
                return max((slot.proc.returncode or 0 for slot in slots), default=0)
            continue
        now = time.monotonic()
        for slot in slots:
            code = slot.check(now)
            if code == USAGE_ERROR:
                forward(signal.SIGTERM, None)
                break
            if code is not None:
                print(
                    f"offload: worker process {slot.proc.pid} exited with {code}; restarting "
                    f"in {slot.restart_at - now:.0f} s",
                    file=sys.stderr,
                )  # type: ignore[operator]
            if stopping:  # never restart once asked to stop
                break
