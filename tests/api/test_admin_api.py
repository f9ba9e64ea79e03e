"""``/v1/admin`` over real HTTP: roles, dead letters (list, show, replay, discard), queues, keys."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.conftest import Api
from tests.conftest import wait_until

BAD = {"type": "api.fixable", "input": {"ok": False}}


async def dead_letter(api: Api, c: httpx.AsyncClient, body: dict = BAD) -> str:
    """Submit a job that fails for good and wait until it is dead-lettered."""
    job_id = (await c.post("/v1/jobs", json=body)).json()["id"]

    async def failed() -> bool:
        return (await c.get(f"/v1/jobs/{job_id}")).json()["status"] == "failed"

    await wait_until(failed, timeout=20)
    return job_id


ADMIN_ROUTES = [
    ("GET", "/v1/admin/jobs", None),
    ("GET", "/v1/admin/jobs/{id}", None),
    ("GET", "/v1/admin/dead-letters", None),
    ("GET", "/v1/admin/dead-letters/{id}", None),
    ("POST", "/v1/admin/dead-letters/{id}/replay", {}),
    ("POST", "/v1/admin/dead-letters:replay", {"dry_run": True}),
    ("POST", "/v1/admin/dead-letters/{id}/discard", None),
    ("GET", "/v1/admin/queues", None),
    ("POST", "/v1/admin/queues/echo/pause", None),
    ("POST", "/v1/admin/queues/echo/resume", None),
    ("GET", "/v1/admin/keys", None),
    ("POST", "/v1/admin/keys", {"tenant": "x", "role": "client"}),
    ("POST", "/v1/admin/keys/key_0/revoke", None),
]


@pytest.mark.parametrize("who", ["client_a", "viewer", None])
async def test_every_admin_route_refuses_non_admins(api: Api, who: str | None) -> None:
    job_id = str(uuid.uuid4())
    async with api.client(who) as c:
        for method, path, body in ADMIN_ROUTES:
            r = await c.request(method, path.format(id=job_id), json=body)
            assert r.status_code == (403 if who else 401), (method, path, r.status_code)
            assert r.headers["content-type"] == "application/problem+json"


async def test_dead_letters_are_listed_with_filters_and_shown_with_traceback_and_events(
    api_with_workers: Api,
) -> None:
    async with api_with_workers.client("client_a") as c, api_with_workers.client("admin") as a:
        job_id = await dead_letter(api_with_workers, c)
        public = (await c.get(f"/v1/jobs/{job_id}")).json()
        listed = (await a.get("/v1/admin/dead-letters")).json()["jobs"]
        by_code = await a.get("/v1/admin/dead-letters", params={"error_code": "permanent_error"})
        other_code = await a.get("/v1/admin/dead-letters", params={"error_code": "nope"})
        other_type = await a.get("/v1/admin/dead-letters", params={"type": "api.echo"})
        future = await a.get(
            "/v1/admin/dead-letters", params={"failed_after": "2999-01-01T00:00:00Z"}
        )
        past = await a.get(
            "/v1/admin/dead-letters", params={"failed_before": "2000-01-01T00:00:00Z"}
        )
        shown = (await a.get(f"/v1/admin/dead-letters/{job_id}")).json()
    assert public["error"] == {"code": "permanent_error", "message": "the input was not ok"}
    assert "error_detail" not in public and "Traceback" not in str(public)
    assert [j["id"] for j in listed] == [job_id]
    assert [j["id"] for j in by_code.json()["jobs"]] == [job_id]
    assert other_code.json()["jobs"] == other_type.json()["jobs"] == []
    assert future.json()["jobs"] == past.json()["jobs"] == []
    assert "Traceback" in shown["error_detail"] and shown["tenant"] == "tenant-a"
    assert [e["type"] for e in shown["events"]] == ["job.queued", "job.running", "job.failed"]


async def test_a_dead_letter_replayed_with_corrected_input_succeeds_and_is_audited(
    api_with_workers: Api,
) -> None:
    async with api_with_workers.client("client_a") as c, api_with_workers.client("admin") as a:
        job_id = await dead_letter(api_with_workers, c)
        invalid = await a.post(
            f"/v1/admin/dead-letters/{job_id}/replay", json={"input": {"ok": "maybe"}}
        )
        r = await a.post(f"/v1/admin/dead-letters/{job_id}/replay", json={"input": {"ok": True}})
        assert r.status_code == 200 and r.json()["status"] == "queued"

        async def succeeded() -> bool:
            return (await c.get(f"/v1/jobs/{job_id}")).json()["status"] == "succeeded"

        await wait_until(succeeded, timeout=20)
        again = await a.post(f"/v1/admin/dead-letters/{job_id}/replay")
        events = (await a.get(f"/v1/admin/jobs/{job_id}")).json()["events"]
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "input.ok"
    replay = [e for e in events if e["data"].get("action") == "replay"]
    assert replay[0]["data"]["actor"] == f"key:{api_with_workers.key_ids['admin']}"
    assert replay[0]["data"]["input_changed"] is True
    assert again.status_code == 404  # no longer a dead letter


async def test_replay_many_counts_first_then_replays_what_matches(api_with_workers: Api) -> None:
    async with api_with_workers.client("client_a") as c, api_with_workers.client("admin") as a:
        for _ in range(3):
            await dead_letter(api_with_workers, c)
        dry = await a.post(
            "/v1/admin/dead-letters:replay", json={"filter": {"type": "api.fixable"}}
        )
        none = await a.post(
            "/v1/admin/dead-letters:replay",
            json={"filter": {"type": "api.echo"}, "dry_run": False},
        )
        real = await a.post(
            "/v1/admin/dead-letters:replay",
            json={"filter": {"error_code": "permanent_error"}, "dry_run": False},
        )
    assert dry.json() == {"dry_run": True, "matched": 3, "replayed": 0, "job_ids": []}
    assert none.json()["matched"] == none.json()["replayed"] == 0
    assert real.json()["matched"] == real.json()["replayed"] == 3


async def test_a_discarded_dead_letter_leaves_the_list_and_keeps_its_history(
    api_with_workers: Api,
) -> None:
    async with api_with_workers.client("client_a") as c, api_with_workers.client("admin") as a:
        job_id = await dead_letter(api_with_workers, c)
        r = await a.post(f"/v1/admin/dead-letters/{job_id}/discard")
        twice = await a.post(f"/v1/admin/dead-letters/{job_id}/discard")
        listed = (await a.get("/v1/admin/dead-letters")).json()["jobs"]
        events = (await a.get(f"/v1/admin/jobs/{job_id}")).json()["events"]
        still = (await c.get(f"/v1/jobs/{job_id}")).json()
        missing = await a.post(f"/v1/admin/dead-letters/{uuid.uuid4()}/discard")
    assert r.status_code == 200 and listed == []
    assert twice.status_code == 409 and "retry-after" not in twice.headers
    assert events[-1]["type"] == "job.discarded"
    assert events[-1]["data"]["actor"] == f"key:{api_with_workers.key_ids['admin']}"
    assert still["status"] == "failed"
    assert missing.status_code == 404


async def test_queues_show_depth_and_age_and_can_be_paused_and_resumed(api: Api) -> None:
    async with api.client("client_a") as c, api.client("admin") as a:
        for _ in range(3):
            await c.post("/v1/jobs", json={"type": "api.echo", "input": {"text": "x"}})
        paused = await a.post("/v1/admin/queues/echo/pause")
        queues = {q["name"]: q for q in (await a.get("/v1/admin/queues")).json()}
        resumed = await a.post("/v1/admin/queues/echo/resume")
        invalid = await a.post("/v1/admin/queues/bad%20name/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert queues["echo"]["waiting"] == 3 and queues["echo"]["paused"] is True
    assert queues["echo"]["oldest_waiting_age_seconds"] >= 0
    assert resumed.json()["paused"] is False
    assert invalid.status_code == 422


async def test_a_paused_queue_holds_its_jobs_until_resumed(api_with_workers: Api) -> None:
    async with api_with_workers.client("client_a") as c, api_with_workers.client("admin") as a:
        await a.post("/v1/admin/queues/echo/pause")
        r = await c.post(
            "/v1/jobs",
            json={"type": "api.echo", "input": {"text": "x"}},
            headers={"Prefer": "wait=1"},
        )
        assert r.status_code == 202 and r.json()["status"] == "queued"
        await a.post("/v1/admin/queues/echo/resume")

        async def done() -> bool:
            return (await c.get(f"/v1/jobs/{r.json()['id']}")).json()["status"] == "succeeded"

        await wait_until(done, timeout=20)


async def test_admins_create_list_and_revoke_keys(api: Api) -> None:
    async with api.client("admin") as a:
        created = await a.post("/v1/admin/keys", json={"tenant": "t3", "role": "client"})
        secret = created.json()["key"]
        async with api.client() as anon:
            ok = await anon.get("/v1/jobs", headers={"Authorization": f"Bearer {secret}"})
        listed = (await a.get("/v1/admin/keys")).json()
        revoked = await a.post(f"/v1/admin/keys/{created.json()['id']}/revoke")
        missing = await a.post("/v1/admin/keys/key_missing/revoke")
    assert created.status_code == 201 and secret.startswith("ofk_")
    assert ok.status_code == 200
    assert created.json()["id"] in {k["id"] for k in listed}
    assert all("key" not in k for k in listed)
    assert revoked.json()["revoked_at"] is not None and missing.status_code == 404


async def test_admin_job_list_spans_tenants(api: Api) -> None:
    async with api.client("client_a") as ca, api.client("client_b") as cb, api.client("admin") as a:
        await ca.post("/v1/jobs", json={"type": "api.echo", "input": {"text": "a"}})
        await cb.post("/v1/jobs", json={"type": "api.echo", "input": {"text": "b"}})
        everyone = (await a.get("/v1/admin/jobs")).json()["jobs"]
        only_b = (await a.get("/v1/admin/jobs", params={"tenant": "tenant-b"})).json()["jobs"]
    assert {j["tenant"] for j in everyone} == {"tenant-a", "tenant-b"}
    assert [j["input"] for j in only_b] == [{"text": "b", "times": 1}]
