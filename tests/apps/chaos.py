"""Jobs for the process and fault tests, run by real ``python -m offload.worker`` processes.

Each handler appends what it does to a log file named in its input, so a test can see every
attempt, including those of processes it killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from pydantic import BaseModel

from offload import Context, Offload

app = Offload()  # OFFLOAD_DATABASE_URL from the test


class Steps(BaseModel):
    steps: int
    log: str
    step_seconds: float = 0.1


def _note(path: str, line: str) -> None:
    with Path(path).open("a") as f:
        f.write(line + "\n")
        f.flush()


@app.job("chaos.count", max_attempts=5)
async def count(ctx: Context, req: Steps) -> dict:
    """Counts to ``steps`` with a checkpoint after each step; resumes from the checkpoint."""
    start = ctx.checkpoint or 0
    _note(req.log, f"start pid={os.getpid()} attempt={ctx.attempt} from={start}")
    for step in range(start, req.steps):
        await asyncio.sleep(req.step_seconds)
        await ctx.save_checkpoint(step + 1)
        await ctx.progress((step + 1) / req.steps * 100, f"step {step + 1}")
        _note(req.log, f"step pid={os.getpid()} attempt={ctx.attempt} n={step + 1}")
    _note(req.log, f"done pid={os.getpid()} attempt={ctx.attempt}")
    return {"steps": req.steps, "resumed_from": start, "attempt": ctx.attempt}


@app.job("chaos.count_sync", max_attempts=5)
def count_sync(ctx: Context, req: Steps) -> dict:
    """The same in a sync handler (runs in a worker thread)."""
    start = ctx.checkpoint or 0
    _note(req.log, f"start pid={os.getpid()} attempt={ctx.attempt} from={start}")
    for step in range(start, req.steps):
        time.sleep(req.step_seconds)
        ctx.save_checkpoint(step + 1)
        _note(req.log, f"step pid={os.getpid()} attempt={ctx.attempt} n={step + 1}")
    _note(req.log, f"done pid={os.getpid()} attempt={ctx.attempt}")
    return {"steps": req.steps, "resumed_from": start, "attempt": ctx.attempt}


class Log(BaseModel):
    log: str


@app.job("chaos.suicide", max_attempts=3)
def suicide(ctx: Context, req: Log) -> None:
    """Kills its own worker process on every attempt: a poison pill."""
    _note(req.log, f"attempt={ctx.attempt} pid={os.getpid()}")
    os.kill(os.getpid(), signal.SIGKILL)


@app.job("chaos.noop")
async def noop(ctx: Context, req: Log) -> str:
    _note(req.log, f"ran pid={os.getpid()}")
    return "ok"
