"""A worker in this process, on every broker × store: submit (outbox + publish), run, settle;
delays, retries, priorities, pause/resume, cancel and replay behave the same on each; what the
broker forgets comes back from the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import BaseModel

from offload import Context, JobStatus, Offload, PermanentError, Retry, Settings, Worker
from offload.broker.reconciler import Reconciler
from offload.ids import uuid7
from offload.store import NewJob
from tests.conftest import wait_until


class Item(BaseModel):
    n: int = 0


@pytest.fixture
async def make_app(
    database_url: str, broker_url: str | None, broker_prefix: str
) -> AsyncIterator[Callable[..., Offload]]:
    apps: list[Offload] = []

    def make(**settings: Any) -> Offload:
        defaults = {
            "lease_seconds": 5.0,
            "reap_interval": 0.1,
            "poll_interval": 0.01,
            "reconcile_interval": 0.3,
            "dispatch": False,  # no webhooks here: keep the workers to the jobs
        }
        app = Offload(
            settings=Settings(
                database_url=database_url,
                broker_url=broker_url,
                broker_prefix=broker_prefix,
                **{**defaults, **settings},
            )
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        broker = await app.broker()
        await broker.destroy()
        await app.close()


@asynccontextmanager
async def running(app: Offload, **options: Any) -> AsyncIterator[Worker]:
    worker = Worker(app, **options)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 10)
    try:
        yield worker
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 20)


def finished(app: Offload, job_id: Any) -> Callable[[], Any]:
    async def check() -> Any:
        job = await app.get_job(job_id)
        return job if job is not None and job.is_terminal else None

    return check


async def flushed(app: Offload) -> None:
    """Everything this app wrote to the outbox so far is in the broker."""
    relay = await app.relay()
    if relay is not None:
        await relay.flush()


async def outbox_empty(app: Offload) -> bool:
    store = await app.store()
    return not await store.outbox_pending(older_than=0, limit=1)


async def test_submitted_jobs_each_run_once_and_the_outbox_empties(make_app):
    app = make_app()
    runs: list[int] = []

    @app.job("count")
    async def count(ctx: Context, item: Item) -> int:
        runs.append(item.n)
        return item.n

    async with running(app, concurrency=8):
        jobs = [await app.submit("count", {"n": i}) for i in range(30)]
        jobs += await app.submit_many("count", [{"n": i} for i in range(30, 130)])
        for job in jobs:
            done = await wait_until(finished(app, job.id))
            assert (done.status, done.attempt) == (JobStatus.SUCCEEDED, 1)
        assert await wait_until(lambda: outbox_empty(app))
    assert sorted(runs) == list(range(130))


async def test_a_retried_job_comes_back_after_its_delay_and_succeeds(make_app):
    app = make_app()

    @app.job("flaky", max_attempts=3)
    async def flaky(ctx: Context, item: Item) -> int:
        if ctx.attempt == 1:
            raise Retry(delay=0.3)
        return ctx.attempt

    async with running(app):
        job = await app.submit("flaky", {})
        done = await wait_until(finished(app, job.id))
    assert (done.status, done.attempt, done.result) == (JobStatus.SUCCEEDED, 2, 2)


async def test_a_delayed_job_runs_once_due_and_not_before(make_app):
    app = make_app()
    started: list[float] = []

    @app.job("later")
    async def later(ctx: Context, item: Item) -> None:
        started.append(asyncio.get_running_loop().time())

    async with running(app):
        submitted = asyncio.get_running_loop().time()
        job = await app.submit("later", {}, delay=0.5)
        done = await wait_until(finished(app, job.id))
    assert done.status is JobStatus.SUCCEEDED
    assert started[0] - submitted >= 0.45


async def test_a_failing_job_is_dead_lettered_and_a_replay_runs_it_again(make_app):
    app = make_app()
    calls: list[int] = []

    @app.job("fragile", max_attempts=1)
    async def fragile(ctx: Context, item: Item) -> int:
        calls.append(item.n)
        if item.n == 0:
            raise PermanentError("bad input")
        return item.n

    async with running(app):
        job = await app.submit("fragile", {"n": 0})
        failed = await wait_until(finished(app, job.id))
        assert failed.status is JobStatus.FAILED
        await app.replay(job.id, {"n": 5}, actor="admin")
        done = await wait_until(finished(app, job.id))
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, 5)
    assert calls == [0, 5]


async def test_a_paused_queue_holds_its_jobs_until_resumed(make_app, unique_queue: str):
    app = make_app()

    @app.job("held", queue=unique_queue)
    async def held(ctx: Context, item: Item) -> None:
        return None

    @app.job("free")
    async def free(ctx: Context, item: Item) -> None:
        return None

    await app.pause_queue(unique_queue, actor="admin")
    async with running(app):
        waiting = await app.submit("held", {})
        other = await app.submit("free", {})
        await wait_until(finished(app, other.id))  # the worker runs; it just skips the pause
        assert (await app.get_job(waiting.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]
        await app.resume_queue(unique_queue, actor="admin")
        done = await wait_until(finished(app, waiting.id))
    assert done.status is JobStatus.SUCCEEDED


async def test_a_canceled_waiting_job_never_runs(make_app, unique_queue: str):
    app = make_app()
    ran: list[int] = []

    @app.job("victim", queue=unique_queue)
    async def victim(ctx: Context, item: Item) -> None:
        ran.append(item.n)

    await app.pause_queue(unique_queue)  # keep it waiting while it is canceled
    job = await app.submit("victim", {"n": 1})
    await app.cancel(job.id)
    await app.resume_queue(unique_queue)
    async with running(app):
        marker = await app.submit("victim", {"n": 2})
        await wait_until(finished(app, marker.id))
    assert ran == [2]
    assert (await app.get_job(job.id)).status is JobStatus.CANCELED  # type: ignore[union-attr]


async def test_one_batch_runs_higher_priority_first(make_app, unique_queue: str):
    app = make_app()
    order: list[int] = []

    @app.job("ordered", queue=unique_queue)
    def ordered(ctx: Context, item: Item) -> None:
        order.append(item.n)

    await app.pause_queue(unique_queue)
    for priority in (1, 5, 3):
        await app.submit("ordered", {"n": priority}, priority=priority)
    await app.resume_queue(unique_queue)  # all three published together
    await flushed(app)
    async with running(app, concurrency=1, prefetch=10):
        await wait_until(lambda: _ran(order, 3))
    assert order == [5, 3, 1]


async def _ran(order: list[int], count: int) -> bool:
    return len(order) >= count


async def test_a_job_written_but_never_published_is_published_by_the_reconciler(make_app):
    app = make_app()

    @app.job("orphan")
    async def orphan(ctx: Context, item: Item) -> str:
        return "ran"

    store = await app.store()
    # What a submitter that died between its commit and its publish leaves behind: the row and
    # its outbox record (with a message broker), nothing in the broker.
    new = NewJob(uuid7(), "orphan", "default", 0, {"n": 0}, 3)
    job, _ = await store.job_insert(new, 60)
    async with running(app):
        done = await wait_until(finished(app, job.id))
        # The reconciler deletes the row after publishing it, which may be after the job ran;
        # a worker stopped in between leaves it for the next reconciler (a duplicate at most).
        assert await wait_until(lambda: outbox_empty(app))
    assert done.status is JobStatus.SUCCEEDED


async def test_jobs_a_broker_lost_are_republished_from_the_store(make_app):
    first = make_app()

    @first.job("survivor")
    async def survivor(ctx: Context, item: Item) -> int:
        return item.n

    jobs = [await first.submit("survivor", {"n": i}) for i in range(5)]
    await flushed(first)
    await (await first.broker()).destroy()  # the broker forgets everything (restarted empty)
    await first.close()
    app = make_app()  # processes that connect to the broker again
    app.registry = first.registry
    relay = await app.relay()
    if relay is not None:
        reconciler = Reconciler(await app.store(), await app.broker(), relay, interval=0.3)
        republished = 0

        async def all_republished() -> bool:
            nonlocal republished
            republished += await reconciler.run_once()
            return republished >= len(jobs)

        await wait_until(all_republished)
    async with running(app):
        for job in jobs:
            done = await wait_until(finished(app, job.id))
            assert (done.status, done.attempt) == (JobStatus.SUCCEEDED, 1)
