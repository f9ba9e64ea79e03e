"""Batcher: writes that arrive while others are in flight share one batch."""

import asyncio
from collections.abc import Sequence

import pytest

from offload.store.batching import Batcher


class Recorded:
    """A write that records its batches and can be held open to let others gather."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_on: int | None = None

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail_on in items:
            raise RuntimeError(f"batch with {self.fail_on} failed")
        return [item * 10 for item in items]


async def test_a_lone_write_goes_out_alone_and_at_once() -> None:
    write = Recorded()
    batcher = Batcher(write, lanes=2)
    assert await asyncio.wait_for(batcher.submit(1), 5) == 10
    assert write.batches == [[1]]


async def test_writes_arriving_during_a_write_share_the_next_batch_in_order() -> None:
    write = Recorded()
    write.release.clear()
    batcher = Batcher(write, lanes=1)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0)  # the lane starts and holds the first write open
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 11)]
    await asyncio.sleep(0)
    write.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert results == [i * 10 for i in range(11)]
    assert write.batches == [[0], list(range(1, 11))]


async def test_batches_are_capped_and_lanes_run_side_by_side() -> None:
    write = Recorded()
    write.release.clear()
    batcher = Batcher(write, lanes=2, max_batch=3)
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(8)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(write.batches) == 2  # two lanes are writing at once, each a capped batch
    write.release.set()
    assert await asyncio.wait_for(asyncio.gather(*calls), 5) == [i * 10 for i in range(8)]
    assert all(len(b) <= 3 for b in write.batches)
    assert sorted(i for b in write.batches for i in b) == list(range(8))


async def test_a_failed_batch_is_retried_item_by_item_so_only_the_bad_item_fails() -> None:
    write = Recorded()
    write.release.clear()
    write.fail_on = 2
    batcher = Batcher(write, lanes=1, max_batch=3)
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(4)]
    await asyncio.sleep(0)
    write.release.set()
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
    assert write.batches == [[0, 1, 2], [0], [1], [2], [3]]
    assert results[:2] == [0, 10] and results[3] == 30
    assert isinstance(results[2], RuntimeError) and "2 failed" in str(results[2])


async def test_a_caller_that_gives_up_does_not_disturb_the_others_of_its_batch() -> None:
    write = Recorded()
    write.release.clear()
    batcher = Batcher(write, lanes=1)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0)
    leaving = asyncio.ensure_future(batcher.submit(1))
    staying = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    leaving.cancel()
    write.release.set()
    assert await asyncio.wait_for(asyncio.gather(first, staying), 5) == [0, 20]
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert write.batches == [[0], [1, 2]]  # still written: the statement carried item 2 too


async def test_drain_waits_for_writes_in_flight() -> None:
    write = Recorded()
    write.release.clear()
    batcher = Batcher(write, lanes=1)
    call = asyncio.ensure_future(batcher.submit(5))
    await asyncio.sleep(0)
    drained = asyncio.ensure_future(batcher.drain())
    await asyncio.sleep(0.01)
    assert not drained.done()
    write.release.set()
    await asyncio.wait_for(drained, 5)
    assert call.done() and call.result() == 50


def test_lanes_and_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Batcher(Recorded(), lanes=0)
    with pytest.raises(ValueError):
        Batcher(Recorded(), max_batch=0)
