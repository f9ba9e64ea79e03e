"""Jobs for the broker fault tests, run by real ``python -m offload.worker`` processes.

Every attempt appends ``<event> <job id> <attempt> <pid>`` to the log file named in its input,
so a test sees every run, including those of processes it killed.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel

from offload import Context, Offload

app = Offload()  # OFFLOAD_DATABASE_URL and OFFLOAD_BROKER_URL from the test


class Work(BaseModel):
    log: str
    seconds: float = 0.0


def _note(path: str, line: str) -> None:
    with Path(path).open("a") as f:
        f.write(line + "\n")


@app.job("broker.work", max_attempts=5)
async def work(ctx: Context, req: Work) -> dict:
    _note(req.log, f"start {ctx.job_id} {ctx.attempt} {os.getpid()}")
    if req.seconds:
        await asyncio.sleep(req.seconds)
    _note(req.log, f"done {ctx.job_id} {ctx.attempt} {os.getpid()}")
    return {"job": str(ctx.job_id), "attempt": ctx.attempt}
