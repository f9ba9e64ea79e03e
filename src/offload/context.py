"""What a running handler sees: its job, its attempt, and fenced ways to report back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from .errors import Canceled, LeaseLost
from .types import JSON

if TYPE_CHECKING:
    from .store.base import Store


class Context:
    """Passed to every handler as its first argument.

    >>> @app.job("reports.generate")
    ... async def generate(ctx: Context, req: ReportRequest) -> dict:
    ...     month = ctx.checkpoint or 1
    ...     await ctx.progress(50, "half way")
    ...     await ctx.save_checkpoint(month)

    Writes are fenced on the attempt number: once this attempt has lost its job (lease expired
    and another worker claimed it), ``progress`` and ``save_checkpoint`` raise :class:`LeaseLost`.
    From a synchronous handler (which runs in a thread) call them the same way without
    ``await``: they detect the thread and block until the write is done.
    """

    def __init__(
        self,
        store: Store,
        job_id: uuid.UUID,
        job_type: str,
        attempt: int,
        max_attempts: int,
        checkpoint: JSON,
        loop: asyncio.AbstractEventLoop,
        worker_id: str | None = None,
    ) -> None:
        self._store = store
        self._loop = loop
        self._worker_id = worker_id
        self.job_id = job_id
        self.job_type = job_type
        self.attempt = attempt
        """1 on the first run."""
        self.max_attempts = max_attempts
        self.checkpoint: JSON = checkpoint
        """What the last attempt saved with ``save_checkpoint``, or None."""
        self._cancel_requested = False
        self._fenced = False

    @property
    def cancel_requested(self) -> bool:
        """True once someone asked to cancel this job; stop at the next safe point."""
        return self._cancel_requested

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def raise_if_cancel_requested(self) -> None:
        """Raise :class:`Canceled` (the job ends ``canceled``) if a cancel was requested."""
        if self._cancel_requested:
            raise Canceled("canceled on request")

    def progress(self, percent: float, message: str | None = None) -> Awaitable[None]:
        """Report progress (0–100) and an optional message; recorded as a ``job.progress`` event."""
        percent = min(max(float(percent), 0.0), 100.0)
        return self._write(
            self._store.job_progress(self.job_id, self.attempt, percent, message, self._worker_id)
        )

    def save_checkpoint(self, value: JSON) -> Awaitable[None]:
        """Save JSON that the next attempt receives as ``ctx.checkpoint`` if this one dies."""
        self.checkpoint = value
        return self._write(
            self._store.job_checkpoint(self.job_id, self.attempt, value, self._worker_id)
        )

    # -- worker side ---------------------------------------------------------------------

    def request_cancel(self) -> None:
        self._cancel_requested = True

    def fence(self) -> None:
        """Refuse any further write from this attempt (it timed out or was handed back)."""
        self._fenced = True

    def _write(self, write: Coroutine[Any, Any, bool]) -> Awaitable[None]:
        async def guarded() -> None:
            if self._fenced:
                write.close()
                raise self._lost()
            if not await write:
                self._fenced = True
                raise self._lost()

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return guarded()
        # Called from a sync handler's thread: run on the worker's loop and wait here.
        asyncio.run_coroutine_threadsafe(guarded(), self._loop).result()
        return _DONE

    def _lost(self) -> LeaseLost:
        return LeaseLost(f"attempt {self.attempt} of job {self.job_id} no longer owns it")


class _Done:
    """An already-finished awaitable, so ``await ctx.progress(…)`` also reads right in threads."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_DONE = _Done()
