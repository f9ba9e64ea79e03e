"""``/v1/jobs`` over real HTTP: submit, read, long poll, list, cancel, idempotency, tenants."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.api.conftest import Api, StartApi
from tests.conftest import wait_until

ECHO = {"type": "api.echo", "input": {"text": "hi"}}
SLOW = {"type": "api.slow", "input": {"steps": 20, "step_seconds": 0.2}}


async def submit(c: httpx.AsyncClient, body: dict, **headers: str) -> httpx.Response:
    return await c.post("/v1/jobs", json=body, headers=headers)


async def test_a_submit_is_accepted_with_the_job_and_absolute_locations(api: Api) -> None:
    async with api.client("client_a") as c:
        r = await submit(c, ECHO)
    assert r.status_code == 202
    job = r.json()
    assert job["status"] == "queued" and job["type"] == "api.echo" and job["queue"] == "echo"
    assert set(job) == {
        "id", "type", "status", "queue", "created_at", "updated_at", "started_at",
        "finished_at", "attempt", "max_attempts", "progress",
    }  # fmt: skip
    url = f"{api.url}/v1/jobs/{job['id']}"
    assert r.headers["location"] == url and r.headers["operation-location"] == url
    assert int(r.headers["retry-after"]) >= 1
    assert "Prefer" in r.headers["vary"]


async def test_a_job_can_be_followed_to_its_result(api_with_workers: Api) -> None:
    async with api_with_workers.client("client_a") as c:
        location = (await submit(c, ECHO)).headers["location"]

        async def finished() -> dict | None:
            r = await c.get(location)
            return r.json() if r.json()["status"] == "succeeded" else None

        job = await wait_until(finished, timeout=20)
        r = await c.get(location)
    assert job["result"] == {"echo": "hi"} and "error" not in job
    assert "retry-after" not in r.headers  # terminal: nothing to wait for


async def test_prefer_wait_answers_200_with_the_finished_job(api_with_workers: Api) -> None:
    async with api_with_workers.client("client_a") as c:
        r = await submit(c, ECHO, Prefer="wait=10")
    assert r.status_code == 200
    assert r.json()["status"] == "succeeded" and r.json()["result"] == {"echo": "hi"}
    assert r.headers["preference-applied"] == "wait=10"
    assert "Prefer" in r.headers["vary"] and "retry-after" not in r.headers


async def test_prefer_wait_answers_202_when_the_job_is_not_done_in_time(api: Api) -> None:
    async with api.client("client_a") as c:
        r = await submit(c, ECHO, Prefer="respond-async, wait=1")
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert r.headers["preference-applied"] == "wait=1"
    assert r.headers["retry-after"]


async def test_prefer_wait_is_capped_by_the_server(start_api: StartApi) -> None:
    api = start_api(max_wait_seconds=1)
    async with api.client("client_a") as c:
        r = await submit(c, ECHO, Prefer="wait=3600")
    assert r.status_code == 202 and r.headers["preference-applied"] == "wait=1"


async def test_an_unchanged_job_answers_304_to_if_none_match(api: Api) -> None:
    async with api.client("client_a") as c:
        location = (await submit(c, ECHO)).headers["location"]
        first = await c.get(location)
        etag = first.headers["etag"]
        again = await c.get(location, headers={"If-None-Match": etag})
        other = await c.get(location, headers={"If-None-Match": '"something-else"'})
    assert first.status_code == 200 and again.status_code == 304 and other.status_code == 200
    assert again.content == b"" and again.headers["etag"] == etag
    assert again.headers["retry-after"]  # still queued: polling again can help


async def test_a_long_poll_returns_as_soon_as_the_job_changes(api_with_workers: Api) -> None:
    async with api_with_workers.client("client_a") as c:
        job = (await submit(c, SLOW)).json()
        location = f"/v1/jobs/{job['id']}"
        first = await c.get(location)
        r = await c.get(
            location, headers={"Prefer": "wait=10", "If-None-Match": first.headers["etag"]}
        )
    assert r.status_code == 200 and r.headers["preference-applied"] == "wait=10"
    assert r.headers["etag"] != first.headers["etag"]
    assert r.elapsed.total_seconds() < 5  # woke on the change, did not sit out the wait


async def test_a_long_poll_on_an_unchanging_job_ends_with_304(api: Api) -> None:
    async with api.client("client_a") as c:
        location = (await submit(c, ECHO)).headers["location"]
        etag = (await c.get(location)).headers["etag"]
        r = await c.get(location, headers={"Prefer": "wait=1", "If-None-Match": etag})
    assert r.status_code == 304 and r.elapsed.total_seconds() >= 0.9


async def test_jobs_are_listed_newest_first_with_filters_and_cursor_pages(api: Api) -> None:
    async with api.client("client_a") as c:
        ids = [
            (await submit(c, {**ECHO, "input": {"text": str(i)}})).json()["id"] for i in range(5)
        ]
        slow_id = (await submit(c, SLOW)).json()["id"]
        seen: list[str] = []
        token = None
        while True:
            params = {"type": "api.echo", "page_size": "2"}
            if token:
                params["page_token"] = token
            page = (await c.get("/v1/jobs", params=params)).json()
            seen += [j["id"] for j in page["jobs"]]
            token = page["next_page_token"]
            if token is None:
                break
        by_status = (await c.get("/v1/jobs", params={"status": "queued"})).json()["jobs"]
        later = (await c.get("/v1/jobs", params={"created_after": "2999-01-01T00:00:00Z"})).json()
        bad = await c.get("/v1/jobs", params={"page_token": "not-a-token"})
    assert seen == ids[::-1]
    assert {j["id"] for j in by_status} == {*ids, slow_id}
    assert later["jobs"] == []
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "page_token"


async def test_cancel_ends_a_waiting_job_and_refuses_a_finished_one(api: Api) -> None:
    async with api.client("client_a") as c:
        job = (await submit(c, ECHO)).json()
        canceled = await c.post(f"/v1/jobs/{job['id']}/cancel")
        again = await c.post(f"/v1/jobs/{job['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert canceled.json()["error"]["code"] == "canceled"
    assert again.status_code == 409 and again.json()["code"] == "job_terminal"
    assert "retry-after" not in again.headers


async def test_cancel_of_a_running_job_is_accepted_and_it_ends_canceled(
    api_with_workers: Api,
) -> None:
    async with api_with_workers.client("client_a") as c:
        location = (await submit(c, SLOW)).headers["location"]

        async def running() -> bool:
            return (await c.get(location)).json()["status"] == "running"

        await wait_until(running, timeout=20)
        r = await c.post(f"{location}/cancel")
        assert r.status_code == 202 and r.headers["location"] == location

        async def canceled() -> bool:
            return (await c.get(location)).json()["status"] == "canceled"

        await wait_until(canceled, timeout=20)


async def test_another_tenant_gets_404_on_every_job_route(api: Api) -> None:
    async with api.client("client_a") as a, api.client("client_b") as b:
        job = (await submit(a, ECHO)).json()
        path = f"/v1/jobs/{job['id']}"
        missing = f"/v1/jobs/{uuid.uuid4()}"
        for url in (path, missing):
            got = await b.get(url)
            assert got.status_code == 404 and got.json()["code"] == "job_not_found"
            assert (await b.get(url, headers={"Prefer": "wait=1"})).status_code == 404
            assert (await b.post(f"{url}/cancel")).status_code == 404
        listed = (await b.get("/v1/jobs")).json()["jobs"]
        # The same idempotency key in another tenant is another job.
        mine = await submit(a, ECHO, **{"Idempotency-Key": "k1"})
        theirs = await submit(b, ECHO, **{"Idempotency-Key": "k1"})
        assert (await a.get(path)).json()["status"] == "queued"  # untouched by b's cancel
    assert listed == []
    assert mine.json()["id"] != theirs.json()["id"]


async def test_a_viewer_reads_every_tenant_and_changes_nothing(api: Api) -> None:
    async with api.client("client_a") as a, api.client("viewer") as v:
        job = (await submit(a, ECHO)).json()
        assert (await v.get(f"/v1/jobs/{job['id']}")).status_code == 200
        assert job["id"] in [j["id"] for j in (await v.get("/v1/jobs")).json()["jobs"]]
        refused = [await submit(v, ECHO), await v.post(f"/v1/jobs/{job['id']}/cancel")]
    assert [r.status_code for r in refused] == [403, 403]
    assert refused[0].json()["code"] == "forbidden"


async def test_requests_without_a_valid_key_get_401(api: Api) -> None:
    async with api.client() as anon:
        for headers in ({}, {"Authorization": "Bearer ofk_wrong"}, {"Authorization": "Basic x"}):
            r = await anon.get("/v1/jobs", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            assert r.headers["content-type"] == "application/problem+json"


async def test_a_revoked_key_stops_working(api: Api) -> None:
    async with api.client("admin") as admin, api.client("client_b") as b:
        assert (await b.get("/v1/jobs")).status_code == 200
        r = await admin.post(f"/v1/admin/keys/{api.key_ids['client_b']}/revoke")
        assert r.status_code == 200 and r.json()["revoked_at"]
        assert (await b.get("/v1/jobs")).status_code == 401


# -- idempotency -----------------------------------------------------------------------------


async def test_the_same_idempotency_key_and_body_return_the_original_job(api: Api) -> None:
    async with api.client("client_a") as c:
        first = await submit(c, ECHO, **{"Idempotency-Key": "order-1"})
        again = await submit(c, ECHO, **{"Idempotency-Key": "order-1"})
        other = await submit(
            c, {**ECHO, "input": {"text": "bye"}}, **{"Idempotency-Key": "order-1"}
        )
        listed = (await c.get("/v1/jobs")).json()["jobs"]
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert "retry-after" not in other.headers
    assert len(listed) == 1


async def test_concurrent_identical_requests_create_one_job(api: Api) -> None:
    async with api.client("client_a", limits=httpx.Limits(max_connections=20)) as c:
        answers = await asyncio.gather(
            *[submit(c, ECHO, **{"Idempotency-Key": "burst"}) for _ in range(20)]
        )
        listed = (await c.get("/v1/jobs")).json()["jobs"]
    statuses = {r.status_code for r in answers}
    assert statuses <= {202, 409}, statuses
    assert len({r.json()["id"] for r in answers if r.status_code == 202}) == 1
    assert all(
        r.json()["code"] == "idempotency_key_in_flight" for r in answers if r.status_code == 409
    )
    assert len(listed) == 1


async def test_a_key_whose_first_request_is_in_flight_is_409(api: Api) -> None:
    async with api.client("client_a") as c:
        first = asyncio.create_task(
            submit(c, ECHO, **{"Idempotency-Key": "slow-1", "Prefer": "wait=3"})
        )

        async def created() -> bool:  # the first request is now holding (Prefer: wait)
            return bool((await c.get("/v1/jobs")).json()["jobs"])

        await wait_until(created, timeout=3)
        second = await submit(c, ECHO, **{"Idempotency-Key": "slow-1"})
        assert second.status_code == 409
        done = await first
        after = await submit(c, ECHO, **{"Idempotency-Key": "slow-1"})
    assert second.json()["code"] == "idempotency_key_in_flight"
    assert "retry-after" not in second.headers
    assert done.status_code == 202 and after.json()["id"] == done.json()["id"]


async def test_idempotency_keys_expire_after_the_configured_time(
    start_api: StartApi, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFLOAD_IDEMPOTENCY_TTL", "0.2")
    api = start_api()
    async with api.client("client_a") as c:
        first = (await submit(c, ECHO, **{"Idempotency-Key": "short"})).json()["id"]

        async def renewed() -> bool:
            again = await submit(c, ECHO, **{"Idempotency-Key": "short"})
            return again.json()["id"] != first

        assert await wait_until(renewed, timeout=5)


# -- validation ------------------------------------------------------------------------------


async def test_invalid_input_lists_each_bad_field(api: Api) -> None:
    async with api.client("client_a") as c:
        r = await submit(c, {"type": "api.slow", "input": {"steps": 0, "step_seconds": "x"}})
        unknown = await submit(c, {"type": "no.such", "input": {}})
        both = await submit(
            c, {**ECHO, "options": {"delay_seconds": 1, "run_at": "2030-01-01T00:00:00Z"}}
        )
    assert r.status_code == 422 and r.json()["code"] == "validation_failed"
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"input.steps", "input.step_seconds"}
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_job_type"
    assert "api.echo" in unknown.json()["detail"]
    assert both.status_code == 422


async def test_options_delay_a_job_and_pick_its_queue_and_priority(api: Api) -> None:
    async with api.client("client_a") as c:
        r = await submit(
            c, {**ECHO, "options": {"delay_seconds": 60, "queue": "echo-2", "priority": 5}}
        )
    assert r.status_code == 202
    assert r.json()["status"] == "scheduled" and r.json()["queue"] == "echo-2"


async def test_health_and_readiness(api: Api) -> None:
    async with api.client() as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        assert (await c.get("/readyz")).json() == {"status": "ok"}
        assert (await c.get("/docs")).status_code == 200
        schema = (await c.get("/openapi.json")).json()
    body = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["discriminator"]["propertyName"] == "type"
    assert set(body["schema"]["discriminator"]["mapping"]) == {
        "api.echo",
        "api.slow",
        "api.fixable",
    }
