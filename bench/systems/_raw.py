"""Shared bits of the raw references: batch execution with bounded concurrency, signals."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable

from bench import jobs

#: Jobs claimed per round-trip by raw_pg / raw_redis.
BATCH = 100
#: Concurrent handlers per process: the same capacity the async peers are given.
CONCURRENCY = 10


async def run_batch(sem: asyncio.Semaphore, payloads: Iterable[str | bytes]) -> None:
    """Run a claimed batch, at most CONCURRENCY handlers at a time."""

    async def one(payload: str | bytes) -> None:
        async with sem:
            await jobs.arun_job(*jobs.decode(payload))

    await asyncio.gather(*(one(p) for p in payloads))


def stop_event() -> asyncio.Event:
    """An event set on SIGTERM/SIGINT (call inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    return stop
