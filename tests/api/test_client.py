"""``offload.client``: the sync and async clients against a live server, on SQLite and
PostgreSQL, including every error mapped from its problem document."""

from __future__ import annotations

import itertools
import uuid

import httpx
import pytest

from offload.client import (
    ApiError,
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    Unreachable,
    ValidationFailed,
    WaitTimeout,
)
from offload.jobs import JobStatus
from tests.api.conftest import Api, StartApi


def client(api: Api, who: str) -> Client:
    return Client(api.url, api.keys[who])


# -- jobs, sync ------------------------------------------------------------------------------


def test_submit_get_and_wait_with_progress(api_with_workers: Api) -> None:
    seen: list[tuple[str, float]] = []
    with client(api_with_workers, "client_a") as c:
        job = c.submit("api.slow", {"steps": 5, "step_seconds": 0.1}, priority=3)
        assert job.status is JobStatus.QUEUED and job.type == "api.slow" and job.queue == "slow"
        assert c.get(job.id).id == job.id
        done = c.wait(
            job.id, timeout=30, on_progress=lambda j: seen.append((j.status, j.progress.percent))
        )
    assert done.status is JobStatus.SUCCEEDED and done.result == {"steps": 5}
    assert done.error is None and done.finished_at is not None
    assert seen[-1] == (JobStatus.SUCCEEDED, 100.0)
    percents = [p for _, p in seen]
    assert percents == sorted(percents) and len({*percents}) >= 3  # followed step by step


class CountingTransport(httpx.HTTPTransport):
    """A real HTTP transport that counts the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return super().handle_request(request)


def test_wait_follows_retry_after_when_the_server_does_not_hold_requests(
    start_api: StartApi,
) -> None:
    api = start_api(workers=1, max_wait_seconds=0, retry_after_seconds=1)
    transport = CountingTransport()
    with Client(api.url, api.keys["client_a"], transport=transport) as c:
        job = c.submit("api.slow", {"steps": 10, "step_seconds": 0.25})
        before = transport.sent
        done = c.wait(job.id, timeout=30)
    assert done.status is JobStatus.SUCCEEDED
    assert transport.sent - before <= 6  # about one read per Retry-After second, no busy loop


def test_submit_with_prefer_wait_returns_the_finished_job(api_with_workers: Api) -> None:
    with client(api_with_workers, "client_a") as c:
        job = c.submit("api.echo", {"text": "hi", "times": 2}, wait=10)
    assert job.status is JobStatus.SUCCEEDED and job.result == {"echo": "hihi"}


def test_idempotency_key_returns_the_same_job_and_refuses_another_body(api: Api) -> None:
    with client(api, "client_a") as c:
        first = c.submit("api.echo", {"text": "a"}, idempotency_key="k-1")
        again = c.submit("api.echo", {"text": "a"}, idempotency_key="k-1")
        with pytest.raises(ValidationFailed) as refused:
            c.submit("api.echo", {"text": "b"}, idempotency_key="k-1")
    assert again.id == first.id
    assert refused.value.status == 422 and refused.value.code == "idempotency_key_reused"
    assert refused.value.retry_after is None


def test_wait_gives_up_after_its_timeout_with_the_last_state(api: Api) -> None:
    with client(api, "client_a") as c:
        job = c.submit("api.echo", {"text": "nobody runs me"})
        with pytest.raises(WaitTimeout) as timed_out:
            c.wait(job.id, timeout=1.5)
    assert timed_out.value.job is not None and timed_out.value.job.status is JobStatus.QUEUED
    assert isinstance(timed_out.value, TimeoutError)


def test_cancel_then_cancel_again_is_a_conflict(api: Api) -> None:
    with client(api, "client_a") as c:
        job = c.submit("api.echo", {"text": "x"}, delay_seconds=60)
        assert job.status is JobStatus.SCHEDULED
        canceled = c.cancel(job.id)
        with pytest.raises(Conflict) as again:
            c.cancel(job.id)
    assert canceled.status is JobStatus.CANCELED and canceled.error is not None
    assert again.value.code == "job_terminal" and again.value.retry_after is None


def test_list_iterates_every_page_with_filters(api: Api) -> None:
    with client(api, "client_a") as c:
        ids = [c.submit("api.echo", {"text": str(i)}).id for i in range(7)]
        slow = c.submit("api.slow", {"steps": 1}).id
        echoes = [j.id for j in c.list(type="api.echo", page_size=2)]
        queued = {j.id for j in c.list(status=[JobStatus.QUEUED, "scheduled"], page_size=3)}
        first_three = [j.id for j in itertools.islice(c.list(page_size=2), 3)]
        future = list(c.list(created_after="2999-01-01T00:00:00Z"))
    assert echoes == ids[::-1]
    assert queued == {*ids, slow}
    assert first_three == [slow, *ids[::-1][:2]]
    assert future == []


# -- errors from problem documents -----------------------------------------------------------


def test_another_tenants_job_is_not_found(api: Api) -> None:
    with client(api, "client_a") as a, client(api, "client_b") as b:
        job = a.submit("api.echo", {"text": "mine"})
        for call in (b.get, b.cancel, b.wait):
            with pytest.raises(NotFound) as missing:
                call(job.id)
            assert missing.value.status == 404 and missing.value.code == "job_not_found"
        with pytest.raises(NotFound):
            a.get(uuid.uuid4())
        assert a.get(job.id).id == job.id


def test_invalid_input_is_422_with_the_fields(api: Api) -> None:
    with client(api, "client_a") as c:
        with pytest.raises(ValidationFailed) as bad:
            c.submit("api.echo", {"text": 5, "times": 99})
        with pytest.raises(ValidationFailed) as unknown:
            c.submit("no.such.type", {})
    fields = {e["field"] for e in bad.value.errors}
    assert fields == {"input.text", "input.times"}
    assert bad.value.title == "Unprocessable Entity" and bad.value.type
    assert "input.times" in str(bad.value)
    assert unknown.value.code == "unknown_job_type" and "api.echo" in unknown.value.detail


def test_rate_limit_is_429_with_retry_after(start_api: StartApi) -> None:
    api = start_api(rate_limit=1, rate_burst=2)
    with client(api, "client_a") as c, pytest.raises(RateLimited) as limited:
        for _ in range(5):
            list(c.list())
    assert limited.value.status == 429 and limited.value.code == "rate_limited"
    assert limited.value.retry_after is not None and limited.value.retry_after >= 1


def test_a_full_queue_is_503_with_retry_after(start_api: StartApi) -> None:
    api = start_api(queue_limit=1, queue_depth_cache_seconds=60)
    with client(api, "client_a") as c:
        c.submit("api.echo", {"text": "1"})
        with pytest.raises(Unavailable) as full:
            c.submit("api.echo", {"text": "2"})
    assert full.value.code == "queue_full" and full.value.retry_after is not None


def test_keys_and_roles(api: Api) -> None:
    with Client(api.url, "ofk_not-a-key") as nobody, client(api, "client_a") as c:
        with pytest.raises(Unauthorized):
            nobody.get(uuid.uuid4())
        with pytest.raises(Forbidden) as forbidden:
            c.queues()
    assert forbidden.value.code == "forbidden"
    with client(api, "viewer") as viewer, pytest.raises(Forbidden):
        viewer.submit("api.echo", {"text": "x"})


def test_an_unreachable_api_is_one_clear_error() -> None:
    with Client("http://127.0.0.1:1", "ofk_x") as c, pytest.raises(Unreachable) as down:
        c.get(uuid.uuid4())
    assert "cannot reach the offload API at http://127.0.0.1:1" in str(down.value)


# -- admin -----------------------------------------------------------------------------------


def test_dead_letters_shown_replayed_discarded_and_replayed_by_filter(
    api_with_workers: Api,
) -> None:
    with client(api_with_workers, "client_a") as c, client(api_with_workers, "admin") as admin:
        jobs = [c.submit("api.fixable", {"ok": False}) for _ in range(4)]
        failed = [c.wait(j.id, timeout=20) for j in jobs]
        assert {j.status for j in failed} == {JobStatus.FAILED}
        assert failed[0].error is not None and failed[0].error.code == "permanent_error"

        listed = {j.id for j in admin.dead_letters(type="api.fixable", page_size=1)}
        assert listed == {j.id for j in jobs}
        shown = admin.dead_letter(jobs[0].id)
        assert shown.tenant == "tenant-a" and shown.input == {"ok": False}
        assert shown.error_detail and "PermanentError" in shown.error_detail
        assert shown.events is not None and shown.events[-1].type == "job.failed"

        replayed = admin.replay(jobs[0].id, {"ok": True})
        assert replayed.status is JobStatus.QUEUED
        assert c.wait(jobs[0].id, timeout=20).result == {"fixed": True}

        discarded = admin.discard(jobs[1].id)
        assert discarded.status is JobStatus.FAILED
        with pytest.raises(Conflict):
            admin.discard(jobs[1].id)
        with pytest.raises(NotFound):
            admin.dead_letter(jobs[0].id)  # succeeded now: no longer a dead letter

        dry = admin.replay_many({"type": "api.fixable"})
        assert (dry.dry_run, dry.matched, dry.replayed) == (True, 2, 0)
        done = admin.replay_many({"type": "api.fixable"}, dry_run=False)
        assert done.replayed == 2 and set(done.job_ids) == {jobs[2].id, jobs[3].id}
        detail = admin.admin_job(jobs[2].id)
        actors = [e.data["actor"] for e in detail.events or [] if e.data.get("action") == "replay"]
        assert actors == [f"key:{api_with_workers.key_ids['admin']}"]


def test_queues_paused_and_resumed(api: Api) -> None:
    with client(api, "client_a") as c, client(api, "admin") as admin:
        c.submit("api.echo", {"text": "x"})
        paused = admin.pause_queue("echo")
        queues = {q.name: q for q in admin.queues()}
        resumed = admin.resume_queue("echo")
        with pytest.raises(ValidationFailed):
            admin.pause_queue("no spaces allowed")
    assert paused.paused and paused.waiting == 1
    assert queues["echo"].paused and queues["echo"].oldest_waiting_age_seconds is not None
    assert not resumed.paused


def test_keys_created_listed_and_revoked(api: Api) -> None:
    with client(api, "admin") as admin:
        new = admin.create_key("tenant-c", "client", "ci")
        assert new.key and new.key.startswith("ofk_")
        with Client(api.url, new.key) as c:
            assert list(c.list()) == []
            assert new.id in [k.id for k in admin.keys()]  # noqa: SIM118
            assert admin.revoke_key(new.id).revoked_at is not None
            with pytest.raises(Unauthorized):
                list(c.list())


# -- the async client ------------------------------------------------------------------------


async def test_async_client_end_to_end(api_with_workers: Api) -> None:
    seen: list[float] = []

    async def on_progress(job) -> None:  # a coroutine callback is awaited
        seen.append(job.progress.percent)

    async with AsyncClient(api_with_workers.url, api_with_workers.keys["client_a"]) as c:
        job = await c.submit("api.slow", {"steps": 4, "step_seconds": 0.1})
        assert (await c.get(job.id)).id == job.id
        done = await c.wait(job.id, timeout=30, on_progress=on_progress)
        ids = [(await c.submit("api.echo", {"text": str(i)})).id for i in range(3)]
        listed = [j.id async for j in c.list(type="api.echo", page_size=2)]
        waiting = await c.submit("api.echo", {"text": "later"}, delay_seconds=60)
        canceled = await c.cancel(waiting.id)
        with pytest.raises(Conflict):
            await c.cancel(waiting.id)
        with pytest.raises(Forbidden):
            await c.queues()
    assert done.status is JobStatus.SUCCEEDED and seen[-1] == 100.0 and len(seen) >= 3
    assert set(ids) <= set(listed)
    assert canceled.status is JobStatus.CANCELED


async def test_async_client_errors_and_admin(start_api: StartApi) -> None:
    api = start_api(workers=2)
    async with (
        AsyncClient(api.url, api.keys["client_a"]) as a,
        AsyncClient(api.url, api.keys["client_b"]) as b,
        AsyncClient(api.url, api.keys["admin"]) as admin,
    ):
        job = await a.submit("api.fixable", {"ok": False})
        with pytest.raises(NotFound):
            await b.get(job.id)
        with pytest.raises(ValidationFailed) as bad:
            await a.submit("api.echo", {"times": 0})
        assert {e["field"] for e in bad.value.errors} == {"input.text", "input.times"}

        failed = await a.wait(job.id, timeout=20)
        assert failed.status is JobStatus.FAILED
        dead = [j.id async for j in admin.dead_letters()]
        assert dead == [job.id]
        assert (await admin.replay_many(dry_run=True)).matched == 1
        await admin.replay(job.id, {"ok": True})
        assert (await a.wait(job.id, timeout=20)).status is JobStatus.SUCCEEDED
        queue = await admin.pause_queue("default")
        assert queue.paused and not (await admin.resume_queue("default")).paused


async def test_async_client_rate_limited(start_api: StartApi) -> None:
    api = start_api(rate_limit=1, rate_burst=1)
    async with AsyncClient(api.url, api.keys["client_a"]) as c:
        await c.submit("api.echo", {"text": "1"})
        with pytest.raises(RateLimited) as limited:
            await c.submit("api.echo", {"text": "2"})
    assert limited.value.status == 429 and (limited.value.retry_after or 0) >= 1
    assert isinstance(limited.value, ApiError)
