"""``offload demo`` end to end, as ``make demo`` runs it: API and worker processes on SQLite,
jobs submitted over HTTP, a worker SIGKILLed half way, exit 0 when everything came out right."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.integration.workers import ROOT


@pytest.mark.slow
def test_the_demo_runs_end_to_end_and_exits_0() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="160")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "offload.cli", "demo"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    docs = re.search(r"http://127\.0\.0\.1:(\d+)/docs", out)
    assert docs is not None, out
    assert re.search(r"admin key ofk_[A-Za-z0-9_-]{43}", out)
    assert "submitted 4 jobs over HTTP" in out
    assert "SIGKILLed the reports worker" in out
    assert "attempt 2 resumed from its last checkpoint" in out
    assert "permanent_error" in out and "Traceback" not in out + result.stderr
    assert took < 120, f"the demo took {took:.0f} s"
