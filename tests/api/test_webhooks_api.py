"""Webhooks over real HTTP: admin-only routes, the SSRF guard at registration and at submit,
and deliveries end to end (an API with inline workers, whose dispatcher duty sends to a real
receiver on loopback) with the delivery log, re-send and tenant isolation."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from offload import Offload
from offload.api import create_app
from offload.config import Settings
from tests.api.conftest import FAST, Api, ServerThread, _make_keys
from tests.apps.api_jobs import app as jobs_app
from tests.conftest import wait_until
from tests.notify.receiver import Receiver

ALLOW_LOOPBACK = {
    "webhook_allowed_hosts": "127.0.0.1",
    "webhook_backoff_base": 0.02,
    "webhook_backoff_max": 0.05,
    "dispatch_interval": 0.02,
}
NOBODY = "wh_0000000000000000"
NO_DELIVERY = "msg_" + "0" * 32

WEBHOOK_ROUTES = [
    ("POST", "/v1/webhooks", {"url": "https://example.com/hook"}),
    ("GET", "/v1/webhooks", None),
    ("GET", f"/v1/webhooks/{NOBODY}", None),
    ("DELETE", f"/v1/webhooks/{NOBODY}", None),
    ("POST", f"/v1/webhooks/{NOBODY}/rotate", None),
    ("GET", f"/v1/webhooks/{NOBODY}/deliveries", None),
    ("GET", "/v1/signing-secret", None),
    ("POST", "/v1/signing-secret/rotate", None),
    ("GET", "/v1/admin/jobs/00000000-0000-0000-0000-000000000000/deliveries", None),
    ("GET", f"/v1/deliveries/{NO_DELIVERY}", None),
    ("POST", f"/v1/deliveries/{NO_DELIVERY}/resend", None),
]


@pytest.fixture
def start_hooks_api(database_url: str) -> Iterator[Callable[..., Api]]:
    """``start(workers=0, **settings)``: an API whose Offload has these core settings."""
    servers: list[ServerThread] = []
    keys, ids = asyncio.run(_make_keys(database_url))

    def start(workers: int = 0, **settings: Any) -> Api:
        core = Settings(database_url=database_url, **settings)
        offload = Offload(settings=core, registry=jobs_app.registry)
        server = ServerThread(create_app(offload, FAST, inline_workers=workers, worker_grace=1.0))
        server.start()
        servers.append(server)
        return Api(server.url, database_url, keys, ids)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def hooks_api(start_hooks_api: Callable[..., Api]) -> Api:
    return start_hooks_api(**ALLOW_LOOPBACK)


@pytest.mark.parametrize("who", ["client_a", "viewer", None])
async def test_every_webhook_route_is_for_admins_only(hooks_api: Api, who: str | None) -> None:
    async with hooks_api.client(who) as c:
        for method, path, body in WEBHOOK_ROUTES:
            r = await c.request(method, path, json=body)
            assert r.status_code == (403 if who else 401), (method, path, r.status_code)


async def test_an_admin_registers_lists_rotates_and_deletes_an_endpoint(hooks_api: Api) -> None:
    async with hooks_api.client("admin") as c:
        r = await c.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"})
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["events"] == ["job.succeeded", "job.failed", "job.canceled"]
        assert created["tenant"] == "ops" and created["id"].startswith("wh_")
        secret = created["secret"]
        assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
        listed = (await c.get("/v1/webhooks")).json()
        assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
        one = (await c.get(f"/v1/webhooks/{created['id']}")).json()
        assert one["url"] == "http://127.0.0.1:9/hook" and "secret" not in one
        rotated = (await c.post(f"/v1/webhooks/{created['id']}/rotate")).json()
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
        assert (await c.delete(f"/v1/webhooks/{created['id']}")).status_code == 204
        assert (await c.get(f"/v1/webhooks/{created['id']}")).status_code == 404
        assert (await c.delete(f"/v1/webhooks/{created['id']}")).status_code == 404
        assert (await c.post(f"/v1/webhooks/{NOBODY}/rotate")).status_code == 404


async def test_endpoints_belong_to_a_tenant_and_list_by_tenant(hooks_api: Api) -> None:
    async with hooks_api.client("admin") as c:
        body = {"url": "http://127.0.0.1:9/a", "events": ["job.progress"], "tenant": "tenant-a"}
        a = (await c.post("/v1/webhooks", json=body)).json()
        b = (await c.post("/v1/webhooks", json={**body, "tenant": "tenant-b"})).json()
        assert a["events"] == ["job.progress"]
        only_a = (await c.get("/v1/webhooks", params={"tenant": "tenant-a"})).json()
        assert [e["id"] for e in only_a] == [a["id"]]
        assert {e["id"] for e in (await c.get("/v1/webhooks")).json()} == {a["id"], b["id"]}


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.0.0.7/hook", "private"),
        ("http://127.0.0.2:8080/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/hook", "loopback"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[::ffff:10.0.0.1]/hook", "private (embedded in IPv6)"),
    ],
)
async def test_registration_refuses_non_public_targets_clearly(
    hooks_api: Api, url: str, why: str
) -> None:
    async with hooks_api.client("admin") as c:
        r = await c.post("/v1/webhooks", json={"url": url})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "notify_target_refused"
    assert f"({why})" in problem["detail"] and "OFFLOAD_WEBHOOK_ALLOWED_HOSTS" in problem["detail"]


async def test_registration_refuses_bad_urls_and_unknown_event_types(hooks_api: Api) -> None:
    async with hooks_api.client("admin") as c:
        for body in [
            {"url": "ftp://example.com/x"},
            {"url": "https://example.com/x", "events": ["job.exploded"]},
            {"url": "https://example.com/x", "events": []},
            {"url": "https://example.com/x", "secret": "mine"},
        ]:
            r = await c.post("/v1/webhooks", json=body)
            assert r.status_code == 422, (body, r.text)


@pytest.mark.parametrize(
    ("notify", "why"),
    [
        ({"webhook": "http://169.254.169.254/hook"}, "link-local"),
        ({"webhook": "http://192.168.0.10/hook"}, "private"),
        ({"webhook": "http://[::1]:8000/hook"}, "loopback"),
        ({"email": "ops@example.com"}, "OFFLOAD_SMTP_URL"),
    ],
)
async def test_submit_refuses_a_notify_target_it_will_not_deliver_to(
    hooks_api: Api, notify: dict, why: str
) -> None:
    body = {"type": "api.echo", "input": {"text": "x"}, "options": {"notify": notify}}
    async with hooks_api.client("client_a") as c:
        r = await c.post("/v1/jobs", json=body)
        assert r.status_code == 422 and r.json()["code"] == "notify_target_refused"
        assert why in r.json()["detail"]
        bad = {**body, "options": {"notify": {"webhook": "https://x.example/h", "sms": "1"}}}
        assert (await c.post("/v1/jobs", json=bad)).status_code == 422
        assert (await c.get("/v1/jobs")).json()["jobs"] == []  # nothing was stored


async def test_a_submitted_jobs_webhook_is_delivered_logged_and_can_be_resent(
    start_hooks_api: Callable[..., Api],
) -> None:
    api = start_hooks_api(workers=2, **ALLOW_LOOPBACK)
    with Receiver() as receiver:
        async with api.client("client_a") as client, api.client("admin") as admin:
            body = {
                "type": "api.echo",
                "input": {"text": "hi"},
                "options": {"notify": {"webhook": receiver.url}},
            }
            r = await client.post("/v1/jobs", json=body)
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            await wait_until(_received(receiver, 1))
            secret = (await admin.get("/v1/signing-secret", params={"tenant": "tenant-a"})).json()
            event = receiver.requests[0].verify(secret["secret"])
            assert event["type"] == "job.succeeded" and event["data"]["id"] == job_id
            assert event["data"]["result"] == {"echo": "hi"}

            async def logged() -> dict | None:
                page = (await admin.get(f"/v1/admin/jobs/{job_id}/deliveries")).json()
                found = page["deliveries"]
                return found[0] if found and found[0]["status"] == "succeeded" else None

            delivery = await wait_until(logged)
            assert delivery["channel"] == "webhook" and delivery["endpoint_id"] is None
            detail = (await admin.get(f"/v1/deliveries/{delivery['id']}")).json()
            assert [a["status_code"] for a in detail["history"]] == [200]
            assert detail["payload"]["data"]["id"] == job_id
            r = await admin.post(f"/v1/deliveries/{delivery['id']}/resend")
            assert r.status_code == 202 and r.json()["status"] == "pending"
            await wait_until(_received(receiver, 2))
            again = receiver.requests[1]
            assert again.headers["webhook-id"] == delivery["id"]
            assert again.verify(secret["secret"])["data"]["id"] == job_id
            assert (await admin.get(f"/v1/deliveries/{NO_DELIVERY}")).status_code == 404
            assert (await admin.post(f"/v1/deliveries/{NO_DELIVERY}/resend")).status_code == 404


async def test_a_registered_endpoint_gets_only_its_tenants_events(
    start_hooks_api: Callable[..., Api],
) -> None:
    api = start_hooks_api(workers=2, **ALLOW_LOOPBACK)
    with Receiver() as receiver, Receiver() as witness:
        async with (
            api.client("client_a") as a,
            api.client("client_b") as b,
            api.client("admin") as admin,
        ):
            r = await admin.post("/v1/webhooks", json={"url": receiver.url, "tenant": "tenant-a"})
            endpoint = r.json()
            echo = {"type": "api.echo", "input": {"text": "a"}}
            mine = (await a.post("/v1/jobs", json=echo)).json()["id"]
            # tenant-b's job carries its own webhook: once the witness has it, its events
            # have been read, and the endpoint must not have received them.
            notify = {"notify": {"webhook": witness.url}}
            theirs = (await b.post("/v1/jobs", json={**echo, "options": notify})).json()["id"]
            await wait_until(_received(witness, 1))
            await wait_until(_received(receiver, 1))
            got = [req.verify(endpoint["secret"]) for req in receiver.requests]
            assert [g["data"]["id"] for g in got] == [mine] and theirs != mine
            page = (await admin.get(f"/v1/webhooks/{endpoint['id']}/deliveries")).json()
            assert [d["job_id"] for d in page["deliveries"]] == [mine]
            assert page["next_page_token"] is None


def _received(receiver: Receiver, n: int) -> Callable[[], Any]:
    async def check() -> bool:
        return receiver.count() >= n

    return check
