"""One attempt of one job, start to outcome. Nothing here writes the outcome: the worker
batches those. Every way an attempt can end maps to exactly one :class:`Outcome`."""

from __future__ import annotations

import asyncio
import json
import random
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from pydantic import BaseModel

from ..context import Context
from ..errors import Canceled, InvalidInput, LeaseLost, PermanentError, Retry
from ..jobs import Job, JobStatus
from ..registry import JobSpec
from ..retry import backoff_delay
from ..store import Outcome


class AttemptAbandoned(Exception):
    """The attempt lost its lease or was handed back; it must not write an outcome."""


def encode_result(value: Any) -> str:
    """The handler's return value as JSON text; a pydantic model is dumped first."""
    if value is None:
        return "null"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


async def run_attempt(
    job: Job,
    spec: JobSpec,
    ctx: Context,
    threads: Executor,
    uniform: Callable[[float, float], float] = random.uniform,
) -> Outcome:
    """Run the handler once and classify how it ended.

    Raises :class:`AttemptAbandoned` when the attempt no longer owns the job. An async handler
    is cancelled at its timeout; a sync handler cannot be interrupted safely, so at its timeout
    the attempt is failed, its context is fenced (further writes raise ``LeaseLost``) and the
    thread is left to finish on its own — its result is discarded.
    """
    try:
        value = spec.validate(job.input)
    except InvalidInput as exc:
        return _failed(job, exc.code, str(exc))

    try:
        result = await _call(spec, ctx, value, threads)
    except LeaseLost:
        raise AttemptAbandoned from None
    except TimeoutError:
        ctx.fence()
        if ctx.cancel_requested:
            return canceled(job)
        message = f"attempt {job.attempt} exceeded its timeout of {spec.timeout:g} s"
        return _retry_or_fail(job, spec, "timeout", message, None, None, uniform)
    except asyncio.CancelledError:
        if ctx.cancel_requested and _current_task_uncancel():
            return canceled(job)
        raise  # the worker itself is stopping
    except Canceled:
        return canceled(job)
    except PermanentError as exc:
        return _failed(job, exc.code, str(exc) or type(exc).__name__, traceback.format_exc())
    except Retry as exc:
        return _retry_or_fail(
            job, spec, "retry_requested", str(exc), traceback.format_exc(), exc.delay, uniform
        )
    except Exception as exc:
        if ctx.cancel_requested:
            return canceled(job)
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return _retry_or_fail(
            job, spec, "handler_error", message, traceback.format_exc(), None, uniform
        )

    try:
        encoded = encode_result(result)
    except (TypeError, ValueError) as exc:
        # Running it again would return the same thing: dead-letter it with a clear error so a
        # fixed handler can replay it.
        return _failed(
            job,
            "result_not_serializable",
            f"the handler returned a value that is not JSON-serialisable: {exc}",
        )
    return Outcome(
        job.id, job.attempt, JobStatus.SUCCEEDED, result=encoded, worker_id=job.worker_id
    )


async def _call(spec: JobSpec, ctx: Context, value: BaseModel, threads: Executor) -> Any:
    if spec.is_async:
        if spec.timeout is None:
            return await spec.handler(ctx, value)
        async with asyncio.timeout(spec.timeout):
            return await spec.handler(ctx, value)
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(threads, spec.handler, ctx, value)
    if spec.timeout is None:
        return await future
    # shield: a timeout must not try to cancel the (uncancellable) thread's future
    return await asyncio.wait_for(asyncio.shield(future), spec.timeout)


def _current_task_uncancel() -> bool:
    """Swallow a cancellation that the worker sent on a cancel request (not on shutdown)."""
    task = asyncio.current_task()
    if task is None or not getattr(task, "offload_cancel_requested", False):
        return False
    task.uncancel()
    return True


def _failed(job: Job, code: str, message: str, detail: str | None = None) -> Outcome:
    return Outcome(
        job.id,
        job.attempt,
        JobStatus.FAILED,
        error_code=code,
        error_message=message,
        error_detail=detail,
        worker_id=job.worker_id,
    )


def canceled(job: Job) -> Outcome:
    """The outcome of an attempt canceled on request."""
    return Outcome(
        job.id,
        job.attempt,
        JobStatus.CANCELED,
        error_code="canceled",
        error_message="canceled on request",
        worker_id=job.worker_id,
    )


def _retry_or_fail(
    job: Job,
    spec: JobSpec,
    code: str,
    message: str,
    detail: str | None,
    delay: float | None,
    uniform: Callable[[float, float], float],
) -> Outcome:
    if job.attempt >= job.max_attempts:
        return _failed(
            job,
            code,
            f"{message} (attempt {job.attempt} of {job.max_attempts}, none left)",
            detail,
        )
    if delay is None:
        delay = backoff_delay(job.attempt, spec.backoff_base, spec.backoff_max, uniform)
    return Outcome(
        job.id,
        job.attempt,
        JobStatus.RETRYING,
        error_code=code,
        error_message=message,
        error_detail=detail,
        retry_delay=delay,
        worker_id=job.worker_id,
    )
