"""``--processes N``: keep N worker processes alive and pass signals on to them.

The supervisor imports nothing of the user's app (it stays small); each child is a full
``python -m offload.worker`` with ``--processes 1``. A child that dies unexpectedly (SIGKILL,
OOM) is restarted after a short pause; its jobs come back through lease expiry.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence


def supervise(child_args: Sequence[str], processes: int) -> int:
    command = [sys.executable, "-m", "offload.worker", *child_args, "--processes", "1"]
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    children = [subprocess.Popen(command) for _ in range(processes)]
    while True:
        time.sleep(0.2)
        alive = [c for c in children if c.poll() is None]
        if stopping:
            if not alive:
                return max((c.returncode or 0 for c in children), default=0)
            continue
        for i, child in enumerate(children):
            code = child.poll()
            if code is None:
                continue
            if code == 2:  # a usage error (bad --app): restarting would fail the same way
                forward(signal.SIGTERM, None)
                break
            print(
                f"offload: worker process {child.pid} exited with {code}; restarting",
                file=sys.stderr,
            )
            time.sleep(1.0)
            children[i] = subprocess.Popen(command)
