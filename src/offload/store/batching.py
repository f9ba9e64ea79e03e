"""Opportunistic batching: concurrent single statements share one.

A busy API answers hundreds of submits and status reads at once, each a statement (and a
submit a transaction) of its own; the database then spends most of its time on per-statement
and per-commit work, and the API on round trips. :class:`Batcher` gathers the calls that
arrive while earlier ones are in flight and sends them as one batch. It never waits on a
timer: a call that finds a free lane goes out at once, alone, so a lone request is not
slowed; only calls that would have queued for the database anyway are combined.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """``await batcher.submit(item)`` → ``run([item, …])[i]`` for that item.

    ``run`` takes a batch and returns one result per item, in order; it runs at most
    ``lanes`` times at once (each lane holds one database connection), with at most
    ``max_batch`` items each. A batch is one statement, written whole or not at all; if it
    fails, its items are written again one by one, so one bad item fails only its own caller.
    """

    def __init__(
        self,
        run: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        lanes: int = 4,
        max_batch: int = 200,
    ) -> None:
        if lanes < 1 or max_batch < 1:
            raise ValueError("lanes and max_batch must be >= 1")
        self._run = run
        self._lanes = lanes
        self._max_batch = max_batch
        self._busy = 0
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._busy < self._lanes:
            # Batches run in lane tasks, never in the caller's: a caller that goes away (its
            # client hung up) must not interrupt a statement that carries others' items.
            self._busy += 1
            lane = asyncio.get_running_loop().create_task(self._lane())
            self._tasks.add(lane)
            lane.add_done_callback(self._tasks.discard)
        return await future

    async def drain(self) -> None:
        """Wait until every call submitted so far has been made (before closing the pool)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _lane(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._run_batch(batch)
        finally:
            self._busy -= 1

    async def _run_batch(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1:
                for one in batch:
                    await self._run_batch([one])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # the lane was cancelled (the loop is shutting down)
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its caller may have given up waiting
                future.set_result(result)
