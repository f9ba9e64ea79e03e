"""The offload app served by the event-stream scenarios (``bench.events``): one job that
sleeps a little, so a client has its stream open before the job ends.

``offload serve --app bench.events_app:app`` and ``offload worker --app bench.events_app:app``
load it; the database comes from ``OFFLOAD_DATABASE_URL``, the queue from ``BENCH_EVENTS_QUEUE``.
"""

# No `from __future__ import annotations`: offload reads the handler's input model from its
# annotations at registration time.

import asyncio
import os

from offload import Context, Offload
from pydantic import BaseModel, Field

JOB_TYPE = "bench.events.sleep"


class SleepInput(BaseModel):
    ms: int = Field(default=100, ge=0, le=10_000)


app = Offload()


@app.job(JOB_TYPE, queue=os.environ.get("BENCH_EVENTS_QUEUE", "bench_events"))
async def sleep(ctx: Context, inp: SleepInput) -> None:
    await asyncio.sleep(inp.ms / 1000)
