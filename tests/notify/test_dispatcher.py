"""The dispatcher end to end, on SQLite and PostgreSQL: job events from the store's feed become
deliveries, received by a real HTTP server on loopback and verified with the Standard Webhooks
reference verifier, as a receiver would."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

from offload import Offload
from offload.config import Settings
from offload.jobs import JobStatus
from offload.store.notify import Notify

from ..conftest import wait_until
from .conftest import FAST, dispatching
from .helpers import deliveries_of, finish, settled
from .receiver import Receiver


async def test_a_jobs_own_webhook_gets_its_terminal_event_signed_with_the_tenant_secret(
    app: Offload, receiver: Receiver
) -> None:
    store = await app.store()
    async with dispatching(app):
        job = await finish(store, notify=Notify(webhook=receiver.url))
        [delivery] = await settled(store, job)
    secret = await store.tenant_secret("tenant-a", "unused: it exists now")
    [got] = receiver.requests
    body = got.verify(secret)
    assert body["type"] == "job.succeeded"
    assert body["data"]["id"] == str(job.id) and body["data"]["status"] == "succeeded"
    assert body["data"]["result"] == {"ok": True}
    assert got.headers["webhook-id"] == delivery.id and delivery.status == "succeeded"
    assert got.headers["content-type"] == "application/json"
    [attempt] = await store.delivery_attempts(delivery.id)
    assert attempt.status_code == 200 and attempt.error is None and attempt.duration_ms > 0


async def test_a_failed_and_a_canceled_job_are_announced_too(
    app: Offload, receiver: Receiver
) -> None:
    store = await app.store()
    async with dispatching(app):
        failed = await finish(store, status=JobStatus.FAILED, notify=Notify(webhook=receiver.url))
        await settled(store, failed)
    secret = await store.tenant_secret("tenant-a", "unused")
    body = receiver.requests[0].verify(secret)
    assert body["type"] == "job.failed"
    assert body["data"]["error"] == {"code": "boom", "message": "it broke"}


async def test_a_500_is_retried_with_the_same_webhook_id_and_every_attempt_is_recorded(
    app: Offload, receiver: Receiver
) -> None:
    receiver.script = [(500, {}), (502, {})]
    store = await app.store()
    async with dispatching(app):
        job = await finish(store, notify=Notify(webhook=receiver.url))
        [delivery] = await settled(store, job)
    assert delivery.status == "succeeded" and delivery.attempts == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    secret = await store.tenant_secret("tenant-a", "unused")
    assert all(r.verify(secret) for r in receiver.requests)  # re-signed on every attempt
    history = await store.delivery_attempts(delivery.id)
    assert [(a.n, a.status_code) for a in history] == [(1, 500), (2, 502), (3, 200)]
    assert history[0].error == "HTTP 500"


async def test_retry_after_on_503_and_429_is_honoured(app: Offload, receiver: Receiver) -> None:
    receiver.script = [(503, {"Retry-After": "1"}), (429, {"Retry-After": "1"})]
    store = await app.store()
    async with dispatching(app):
        job = await finish(store, notify=Notify(webhook=receiver.url))
        [delivery] = await settled(store, job)
    first, second, third = (r.at for r in receiver.requests)
    # The backoff alone would wait at most 0.05 s (FAST); Retry-After asks for a second.
    assert second - first >= 0.9 and third - second >= 0.9
    assert delivery.status == "succeeded"


async def test_410_gone_disables_the_endpoint_and_nothing_more_is_sent_to_it(
    app: Offload, receiver: Receiver
) -> None:
    receiver.script = [(410, {})]
    store = await app.store()
    endpoint = await store.webhook_insert(
        "wh_0000000000000410", "tenant-a", receiver.url, ["job.succeeded"], "whsec_" + "A" * 44
    )
    with Receiver() as witness:
        async with dispatching(app):
            first = await finish(store)
            [gone] = await settled(store, first)
            # A second job: its own webhook (the witness) proves its event was read.
            second = await finish(store, notify=Notify(webhook=witness.url))
            await wait_until(received(witness))
    assert gone.status == "failed" and gone.last_status_code == 410
    disabled = await store.webhook_get(endpoint.id)
    assert disabled is not None and not disabled.active and disabled.disabled_reason == "410 Gone"
    assert receiver.count() == 1
    assert [d.endpoint_id for d in await deliveries_of(store, second)] == [None]


async def test_an_endpoint_gets_the_event_types_it_asked_for_and_only_its_tenants(
    app: Offload, receiver: Receiver
) -> None:
    store = await app.store()
    secret = "whsec_" + "B" * 44
    await store.webhook_insert(
        "wh_00000000000000aa", "tenant-a", receiver.url, ["job.running", "job.failed"], secret
    )
    with Receiver() as witness:
        async with dispatching(app):
            mine = await finish(store, status=JobStatus.FAILED)
            await finish(store, owner="tenant-b", notify=Notify(webhook=witness.url))
            await wait_until(received(witness))
            await settled(store, mine, 2)
    got = [r.verify(secret) for r in receiver.requests]
    assert sorted(b["type"] for b in got) == ["job.failed", "job.running"]
    assert {b["data"]["id"] for b in got} == {str(mine.id)}
    running = next(b for b in got if b["type"] == "job.running")
    assert running["data"]["status"] == "running"  # the job as of that event


async def test_a_resend_delivers_again_with_the_same_webhook_id(
    app: Offload, receiver: Receiver
) -> None:
    store = await app.store()
    async with dispatching(app):
        job = await finish(store, notify=Notify(webhook=receiver.url))
        [delivery] = await settled(store, job)
        again = await store.delivery_resend(delivery.id, 3600)
        assert again is not None and again.status == "pending"
        await wait_until(received(receiver, 2))
        await settled(store, job)
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.id
    assert [a.n for a in await store.delivery_attempts(delivery.id)] == [1, 2]


async def test_a_delivery_pending_across_a_dispatcher_restart_is_delivered_once(
    app: Offload, receiver: Receiver
) -> None:
    store = await app.store()
    async with dispatching(app):  # places the feed cursor, then stops
        pass
    # Finished while no dispatcher runs: the next one finds it in the feed.
    job = await finish(store, notify=Notify(webhook=receiver.url))
    receiver.script = [(503, {"Retry-After": "1"})]
    async with dispatching(app, holder="first"):
        await wait_until(received(receiver))

        async def retry_scheduled() -> bool:
            [d] = await deliveries_of(store, job)
            return d.status == "pending" and d.attempts == 1

        await wait_until(retry_scheduled)
    # Stopped with the retry pending; another dispatcher (another process) takes it over.
    async with dispatching(app, holder="second"):
        [delivery] = await settled(store, job)
        with Receiver() as witness:  # a later job proves the feed was read again meanwhile
            await finish(store, notify=Notify(webhook=witness.url))
            await wait_until(received(witness))
    assert delivery.status == "succeeded"
    assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.id] * 2
    assert len(await deliveries_of(store, job)) == 1


async def test_the_ssrf_guard_runs_again_at_delivery_time(
    database_url: str, receiver: Receiver
) -> None:
    """Allowed when submitted, refused when sent (the allow-list changed, or the name now
    resolves elsewhere): nothing reaches the target and the delivery fails at once."""
    strict = Offload(
        settings=Settings(database_url=database_url, **{**FAST, "webhook_allowed_hosts": ""})
    )
    store = await strict.store()
    try:
        async with dispatching(strict):
            job = await finish(store, notify=Notify(webhook=receiver.url))
            [delivery] = await settled(store, job)
    finally:
        await strict.close()
    assert delivery.status == "failed" and delivery.attempts == 1
    assert "SSRF guard" in (delivery.last_error or "") and "loopback" in delivery.last_error
    assert receiver.count() == 0


async def test_a_delivery_gives_up_when_the_retry_window_is_over(
    database_url: str, receiver: Receiver
) -> None:
    receiver.script = [(500, {})] * 100
    short = Offload(
        settings=Settings(database_url=database_url, **{**FAST, "webhook_retry_window": 0.3})
    )
    store = await short.store()
    try:
        async with dispatching(short):
            job = await finish(store, notify=Notify(webhook=receiver.url))
            [delivery] = await settled(store, job)
    finally:
        await short.close()
    assert delivery.status == "failed" and delivery.attempts >= 2
    assert "retry window is over" in (delivery.last_error or "")


def received(receiver: Receiver, n: int = 1) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return receiver.count() >= n

    return check


async def test_a_slow_endpoint_does_not_hold_up_other_deliveries(
    app: Offload, receiver: Receiver
) -> None:
    store = await app.store()
    receiver.hold = threading.Event()  # the receiver answers only when released
    try:
        with Receiver() as fast:
            async with dispatching(app):
                slow_job = await finish(store, notify=Notify(webhook=receiver.url))
                await wait_until(received(receiver))  # its attempt is in flight, held
                quick_job = await finish(store, notify=Notify(webhook=fast.url))
                [quick] = await settled(store, quick_job)
                assert not receiver.hold.is_set() and quick.status == "succeeded"
                receiver.hold.set()
                [slow] = await settled(store, slow_job)
    finally:
        receiver.hold.set()
    assert slow.status == "succeeded" and receiver.count() == 1
