"""The one job handler every system runs (sync and async flavours).

Identical work for all systems: ``noop`` does nothing, ``sleep`` waits 50 ms (``time.sleep`` in
sync handlers, ``asyncio.sleep`` in async ones), ``pickup`` does nothing but its latency
(handler start - submitted_at, both ``time.time()`` on this machine) is recorded.
"""

from __future__ import annotations

import asyncio
import time

from bench.recorder import RECORDER

SLEEP_SECONDS = 0.05


def run_job(phase: str, kind: str, submitted_at: float) -> None:
    start = time.time()
    if kind == "sleep":
        time.sleep(SLEEP_SECONDS)
    RECORDER.done(phase, start, time.time(), start - submitted_at if kind == "pickup" else None)


async def arun_job(phase: str, kind: str, submitted_at: float) -> None:
    start = time.time()
    if kind == "sleep":
        await asyncio.sleep(SLEEP_SECONDS)
    RECORDER.done(phase, start, time.time(), start - submitted_at if kind == "pickup" else None)


def decode(data: str | bytes) -> tuple[str, str, float]:
    """Inverse of ``Job.encode`` for raw references."""
    text = data.decode() if isinstance(data, bytes) else data
    phase, kind, ts = text.rsplit("|", 2)
    return phase, kind, float(ts)
