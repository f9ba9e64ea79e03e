"""The worker loop in this process against each store: retries, failures, timeouts, cancel,
priorities, delays and pauses."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import BaseModel

from offload import Context, JobStatus, Offload, PermanentError, Retry, Settings, Worker
from offload.ids import uuid7
from offload.store import NewJob
from tests.conftest import wait_until


class Item(BaseModel):
    n: int = 0


_open_apps: list[Offload] = []


def make_app(database_url: str, **settings: Any) -> Offload:
    defaults = {"lease_seconds": 5.0, "reap_interval": 0.1, "poll_interval": 0.01}
    app = Offload(settings=Settings(database_url=database_url, **{**defaults, **settings}))
    _open_apps.append(app)
    return app


@pytest.fixture(autouse=True)
async def _close_apps() -> AsyncIterator[None]:
    yield
    while _open_apps:
        await _open_apps.pop().close()


@asynccontextmanager
async def running(app: Offload, **options: Any) -> AsyncIterator[Worker]:
    await app.store()
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


async def test_transient_failures_succeed_on_a_later_attempt_after_growing_delays(
    database_url: str,
) -> None:
    app = make_app(database_url)
    runs: list[float] = []

    @app.job("flaky", max_attempts=4, backoff_base=0.3)
    async def flaky(ctx: Context, item: Item) -> int:
        runs.append(time.monotonic())
        if ctx.attempt < 4:
            raise ConnectionError("dependency down")
        return ctx.attempt

    async with running(app, uniform=lambda low, high: high):  # jitter at its ceiling
        job = await app.submit("flaky", {})
        done = await wait_until(finished(app, job.id))
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == 4 and done.attempt == 4
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6 and gaps[2] >= 1.2
    assert gaps[0] < gaps[1] < gaps[2]
    events = [e.type for e in await app.events(job.id)]
    assert events.count("job.retrying") == 3
    assert events[-1] == "job.succeeded"


async def test_a_permanent_error_fails_on_the_first_attempt_and_keeps_the_traceback_apart(
    database_url: str,
) -> None:
    app = make_app(database_url)

    @app.job("poison", max_attempts=5)
    async def poison(ctx: Context, item: Item) -> None:
        raise PermanentError("customer 42 does not exist")

    async with running(app):
        job = await app.submit("poison", {})
        done = await wait_until(finished(app, job.id))
        dead = await app.dead_letters()
    assert done.status is JobStatus.FAILED and done.attempt == 1
    assert done.error is not None
    assert (done.error.code, done.error.message) == (
        "permanent_error",
        "customer 42 does not exist",
    )
    assert "Traceback" not in done.error.message
    assert done.error_detail is not None and "PermanentError" in done.error_detail
    assert [j.id for j in dead] == [job.id]


async def test_retry_with_a_delay_waits_at_least_that_long(database_url: str) -> None:
    app = make_app(database_url)
    runs: list[float] = []

    @app.job("later", max_attempts=2)
    async def later(ctx: Context, item: Item) -> str:
        runs.append(time.monotonic())
        if ctx.attempt == 1:
            raise Retry("rate limited", delay=0.5)
        return "ok"

    async with running(app):
        job = await app.submit("later", {})
        done = await wait_until(finished(app, job.id))
    assert done.status is JobStatus.SUCCEEDED
    assert runs[1] - runs[0] >= 0.5


async def test_attempts_run_out_after_max_attempts_and_the_job_is_dead_lettered(
    database_url: str,
) -> None:
    app = make_app(database_url)

    @app.job("always_broken", max_attempts=3, backoff_base=0.01)
    def always_broken(ctx: Context, item: Item) -> None:
        raise ValueError(f"bad value {item.n}")

    async with running(app):
        job = await app.submit("always_broken", {"n": 7})
        done = await wait_until(finished(app, job.id))
    assert done.status is JobStatus.FAILED and done.attempt == 3
    assert done.error is not None and done.error.code == "handler_error"
    assert "ValueError: bad value 7" in done.error.message


async def test_an_async_handler_that_overstays_its_timeout_is_cancelled(database_url: str) -> None:
    app = make_app(database_url)
    cancelled = asyncio.Event()

    @app.job("slow", max_attempts=2, timeout=0.2, backoff_base=0.01)
    async def slow(ctx: Context, item: Item) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with running(app):
        job = await app.submit("slow", {})
        done = await wait_until(finished(app, job.id))
    assert cancelled.is_set()
    assert done.status is JobStatus.FAILED and done.attempt == 2
    assert done.error is not None and done.error.code == "timeout"


async def test_a_sync_handler_past_its_timeout_fails_the_attempt_and_its_late_writes_are_refused(
    database_url: str,
) -> None:
    app = make_app(database_url)
    late_write: list[BaseException] = []
    release = __import__("threading").Event()

    @app.job("blocking", max_attempts=1, timeout=0.2)
    def blocking(ctx: Context, item: Item) -> str:
        release.wait(10)
        try:
            ctx.save_checkpoint("too late")
        except Exception as exc:
            late_write.append(exc)
        return "too late"

    async with running(app):
        job = await app.submit("blocking", {})
        done = await wait_until(finished(app, job.id))
        release.set()
        await wait_until(lambda: asyncio.sleep(0, late_write))
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "timeout"
    assert type(late_write[0]).__name__ == "LeaseLost"
    async with make_app(database_url) as reader:
        final = await reader.get_job(job.id)
    assert final is not None and final.checkpoint is None and final.result is None


async def test_a_running_job_asked_to_cancel_stops_cooperatively_and_ends_canceled(
    database_url: str,
) -> None:
    app = make_app(database_url)

    @app.job("long")
    async def long(ctx: Context, item: Item) -> None:
        await ctx.progress(1, "started")
        while True:
            ctx.raise_if_cancel_requested()
            await asyncio.sleep(0.02)

    async with running(app):
        job = await app.submit("long", {})
        await wait_until(lambda: _status_is(app, job.id, JobStatus.RUNNING))
        asked = await app.cancel(job.id, actor="test")
        assert asked is not None and asked.cancel_requested
        done = await wait_until(finished(app, job.id), timeout=15)
    assert done.status is JobStatus.CANCELED
    assert done.error is not None and done.error.code == "canceled"
    types = [e.type for e in await app.events(job.id)]
    assert types[-2:] == ["job.cancel_requested", "job.canceled"] or "job.cancel_requested" in types


async def test_an_async_handler_that_ignores_a_cancel_request_is_stopped_after_the_grace(
    database_url: str,
) -> None:
    app = make_app(database_url, cancel_grace=0.3)

    @app.job("stubborn")
    async def stubborn(ctx: Context, item: Item) -> None:
        await ctx.progress(1, "started")
        await asyncio.sleep(60)

    async with running(app):
        job = await app.submit("stubborn", {})
        await wait_until(lambda: _status_is(app, job.id, JobStatus.RUNNING))
        await app.cancel(job.id)
        done = await wait_until(finished(app, job.id), timeout=20)
    assert done.status is JobStatus.CANCELED


async def test_a_waiting_job_that_is_canceled_never_runs(database_url: str) -> None:
    app = make_app(database_url)
    ran: list[int] = []

    @app.job("never")
    async def never(ctx: Context, item: Item) -> None:
        ran.append(item.n)

    job = await app.submit("never", {"n": 1}, delay=0.3)
    canceled = await app.cancel(job.id)
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    async with running(app):
        marker = await app.submit("never", {"n": 2})
        await wait_until(finished(app, marker.id))
    assert ran == [2]


async def test_higher_priority_jobs_run_first(database_url: str) -> None:
    app = make_app(database_url)
    order: list[int] = []

    @app.job("ranked")
    async def ranked(ctx: Context, item: Item) -> None:
        order.append(item.n)

    await app.pause_queue("default")
    jobs = [
        await app.submit("ranked", {"n": priority}, priority=priority) for priority in (0, 5, -3, 9)
    ]
    jobs.append(await app.submit("ranked", {"n": 1}, priority=1))
    await app.resume_queue("default")
    async with running(app, concurrency=1):
        for job in jobs:
            await wait_until(finished(app, job.id))
    assert order == [9, 5, 1, 0, -3]


async def test_a_delayed_job_is_scheduled_and_runs_only_once_due(database_url: str) -> None:
    app = make_app(database_url)
    started: list[float] = []

    @app.job("delayed")
    async def delayed(ctx: Context, item: Item) -> None:
        started.append(time.time())

    async with running(app):
        job = await app.submit("delayed", {}, delay=0.6)
        assert job.status is JobStatus.SCHEDULED
        done = await wait_until(finished(app, job.id))
    assert done.status is JobStatus.SUCCEEDED
    assert started[0] - job.created_at.timestamp() >= 0.6
    assert (await app.events(job.id))[0].type == "job.scheduled"


async def test_a_paused_queue_keeps_its_jobs_until_resumed(database_url: str) -> None:
    app = make_app(database_url)

    @app.job("paused_work", queue="batch")
    async def paused_work(ctx: Context, item: Item) -> None:
        return None

    @app.job("other_work", queue="default")
    async def other_work(ctx: Context, item: Item) -> None:
        return None

    await app.pause_queue("batch")
    held = await app.submit("paused_work", {})
    async with running(app):
        # The worker is claiming: a job in another queue runs, the paused one waits.
        for _ in range(3):
            other = await app.submit("other_work", {})
            await wait_until(finished(app, other.id))
        job = await app.get_job(held.id)
        assert job is not None and job.status is JobStatus.QUEUED
        assert [q.paused for q in await app.queues() if q.name == "batch"] == [True]
        await app.resume_queue("batch")
        done = await wait_until(finished(app, held.id))
    assert done.status is JobStatus.SUCCEEDED


async def test_a_result_that_is_not_json_fails_clearly_and_the_job_is_kept(
    database_url: str,
) -> None:
    app = make_app(database_url)

    @app.job("weird_result")
    async def weird_result(ctx: Context, item: Item) -> object:
        return {"when": object()}

    async with running(app):
        job = await app.submit("weird_result", {})
        done = await wait_until(finished(app, job.id))
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "result_not_serializable"
    assert "JSON" in done.error.message
    replayed = await app.replay(job.id, actor="test")
    assert replayed is not None and replayed.status is JobStatus.QUEUED


async def test_stored_input_that_no_longer_fits_the_model_fails_without_retrying(
    database_url: str,
) -> None:
    app = make_app(database_url)

    @app.job("typed", max_attempts=5)
    async def typed(ctx: Context, item: Item) -> int:
        return item.n

    store = await app.store()
    job, _ = await store.job_insert(
        NewJob(uuid7(), "typed", "default", 0, {"n": "not a number"}, 5), 60
    )
    async with running(app):
        done = await wait_until(finished(app, job.id))
    assert done.status is JobStatus.FAILED and done.attempt == 1
    assert done.error is not None and done.error.code == "invalid_input"
    assert "n:" in done.error.message


async def test_a_worker_claims_only_job_types_it_knows(database_url: str) -> None:
    app = make_app(database_url)

    @app.job("known")
    async def known(ctx: Context, item: Item) -> None:
        return None

    store = await app.store()
    foreign, _ = await store.job_insert(NewJob(uuid7(), "someone.else", "default", 0, {}, 3), 60)
    async with running(app):
        for _ in range(3):
            job = await app.submit("known", {})
            await wait_until(finished(app, job.id))
        still = await app.get_job(foreign.id)
    assert still is not None and still.status is JobStatus.QUEUED and still.attempt == 0


async def test_replay_puts_a_dead_letter_back_with_corrected_input_and_records_who(
    database_url: str,
) -> None:
    app = make_app(database_url)

    @app.job("strict", max_attempts=1)
    async def strict(ctx: Context, item: Item) -> int:
        if item.n < 0:
            raise PermanentError("n must not be negative")
        return item.n

    async with running(app):
        job = await app.submit("strict", {"n": -1})
        await wait_until(finished(app, job.id))
        with pytest.raises(Exception, match="invalid input"):
            await app.replay(job.id, {"n": "x"}, actor="alice")
        replayed = await app.replay(job.id, {"n": 5}, actor="alice")
        assert replayed is not None and replayed.max_attempts == 2
        done = await wait_until(finished(app, job.id))
    assert done.status is JobStatus.SUCCEEDED and done.result == 5 and done.attempt == 2
    replay_event = next(e for e in await app.events(job.id) if e.data.get("action") == "replay")
    assert replay_event.data["actor"] == "alice" and replay_event.data["input_changed"] is True


async def test_a_sync_handler_reports_progress_and_checkpoints_from_its_thread(
    database_url: str,
) -> None:
    app = make_app(database_url)

    @app.job("threaded")
    def threaded(ctx: Context, item: Item) -> str:
        ctx.progress(50, "half")
        ctx.save_checkpoint({"half": True})
        return "done"

    async with running(app):
        job = await app.submit("threaded", {})
        done = await wait_until(finished(app, job.id))
    assert done.status is JobStatus.SUCCEEDED
    assert done.checkpoint == {"half": True}
    progress = [e.data for e in await app.events(job.id) if e.type == "job.progress"]
    assert progress == [{"percent": 50.0, "message": "half"}]


async def test_many_concurrent_submits_with_one_idempotency_key_create_one_job(
    database_url: str,
) -> None:
    apps = [make_app(database_url) for _ in range(4)]
    for app in apps:

        @app.job("charge")
        async def charge(ctx: Context, item: Item) -> None:
            return None

    results = await asyncio.gather(
        *(
            apps[i % 4].submit_with_status("charge", {"n": 1}, idempotency_key="order-1")
            for i in range(40)
        )
    )
    assert len({job.id for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(await apps[0].list_jobs()) == 1


async def _status_is(app: Offload, job_id: Any, status: JobStatus) -> bool:
    job = await app.get_job(job_id)
    return job is not None and job.status is status


async def test_prefetched_jobs_are_held_under_lease_and_handed_back_untouched_on_stop(
    database_url: str,
) -> None:
    app = make_app(database_url)
    gate = asyncio.Event()
    started: list[int] = []

    @app.job("gated")
    async def gated(ctx: Context, item: Item) -> int:
        started.append(item.n)
        await gate.wait()
        return item.n

    async with running(app, concurrency=1, prefetch=4, grace=10) as worker:
        jobs = await app.submit_many("gated", [{"n": n} for n in range(5)])

        async def all_claimed() -> bool:
            return all([await _status_is(app, j.id, JobStatus.RUNNING) for j in jobs])

        await wait_until(all_claimed)
        assert len(started) == 1  # one slot: the other four are held, not run
        worker.stop()
        gate.set()
        await wait_until(lambda: asyncio.sleep(0, worker.ready.is_set() and not worker._active))
    states = [await app.get_job(j.id) for j in jobs]
    ran = next(j for j in states if j is not None and j.status is JobStatus.SUCCEEDED)
    assert ran.result == started[0]
    held = [j for j in states if j is not None and j.id != ran.id]
    assert [j.status for j in held] == [JobStatus.QUEUED] * 4
    assert all(j.attempt == 1 and j.max_attempts == 4 for j in held)


async def test_a_busy_worker_with_prefetch_drains_everything_once(database_url: str) -> None:
    app = make_app(database_url)
    seen: list[int] = []

    @app.job("quick")
    async def quick(ctx: Context, item: Item) -> None:
        seen.append(item.n)

    jobs = await app.submit_many("quick", [{"n": n} for n in range(300)])
    async with running(app, concurrency=5, prefetch=20):
        for job in jobs:
            await wait_until(finished(app, job.id))
    assert sorted(seen) == list(range(300))
