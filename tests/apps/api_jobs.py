"""Jobs for the HTTP API tests: quick, slow (with progress), failing and fixable ones."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from offload import Context, Offload, PermanentError

app = Offload()  # the tests pass their own database and share this registry


class Echo(BaseModel):
    text: str = Field(max_length=1000)
    times: int = Field(default=1, ge=1, le=10)


@app.job("api.echo", queue="echo")
async def echo(ctx: Context, req: Echo) -> dict:
    return {"echo": req.text * req.times}


class Slow(BaseModel):
    steps: int = Field(ge=1, le=50)
    step_seconds: float = Field(default=0.2, ge=0, le=2)


@app.job("api.slow", queue="slow")
async def slow(ctx: Context, req: Slow) -> dict:
    for step in range(req.steps):
        await asyncio.sleep(req.step_seconds)
        await ctx.progress((step + 1) / req.steps * 100, f"step {step + 1}")
        ctx.raise_if_cancel_requested()
    return {"steps": req.steps}


class Fixable(BaseModel):
    ok: bool


@app.job("api.fixable", queue="default", max_attempts=1)
async def fixable(ctx: Context, req: Fixable) -> dict:
    """Fails for good unless its input says ok: replay it with corrected input."""
    if not req.ok:
        raise PermanentError("the input was not ok")
    return {"fixed": True}
