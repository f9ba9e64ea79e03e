"""Admission control (429, 503, 413) and problem documents for the framework's own errors."""

from __future__ import annotations

import httpx

from tests.api.conftest import Api, StartApi

ECHO = {"type": "api.echo", "input": {"text": "hi"}}
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def assert_problem(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(body) >= PROBLEM_FIELDS and body["status"] == status and body["code"] == code
    assert body["type"] == f"urn:offload:problem:{code}"
    return body


async def test_a_key_past_its_rate_limit_gets_429_with_retry_after(start_api: StartApi) -> None:
    api = start_api(rate_limit=1, rate_burst=3)
    async with api.client("client_a") as a, api.client("client_b") as b:
        answers = [await a.get("/v1/jobs") for _ in range(4)]
        other = await b.get("/v1/jobs")  # a budget per key
    assert [r.status_code for r in answers[:3]] == [200, 200, 200]
    assert_problem(answers[3], 429, "rate_limited")
    assert int(answers[3].headers["retry-after"]) >= 1
    assert other.status_code == 200


async def test_a_full_queue_refuses_submits_with_503_and_writes_nothing(
    start_api: StartApi,
) -> None:
    api = start_api(queue_limit=2, queue_depth_cache_seconds=60)
    async with api.client("client_a") as c:
        accepted = [await c.post("/v1/jobs", json=ECHO) for _ in range(2)]
        refused = await c.post("/v1/jobs", json=ECHO)
        other_queue = await c.post("/v1/jobs", json={"type": "api.slow", "input": {"steps": 1}})
        listed = (await c.get("/v1/jobs", params={"type": "api.echo"})).json()["jobs"]
    assert [r.status_code for r in accepted] == [202, 202]
    assert_problem(refused, 503, "queue_full")
    assert int(refused.headers["retry-after"]) >= 1
    assert other_queue.status_code == 202
    assert len(listed) == 2


async def test_bodies_over_the_limit_get_413_declared_or_streamed(start_api: StartApi) -> None:
    api = start_api(max_body_bytes=1000)
    big = {"type": "api.echo", "input": {"text": "x" * 2000}}

    async def chunks():  # no Content-Length: the limit applies while reading
        yield b'{"type": "api.echo", "input": {"text": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}}'

    async with api.client("client_a") as c:
        declared = await c.post("/v1/jobs", json=big)
        streamed = await c.post(
            "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
        )
        small = await c.post("/v1/jobs", json=ECHO)
    assert_problem(declared, 413, "body_too_large")
    assert_problem(streamed, 413, "body_too_large")
    assert small.status_code == 202


async def test_framework_errors_are_problem_documents(api: Api) -> None:
    async with api.client("client_a") as c:
        unknown_route = await c.get("/v1/nothing-here")
        wrong_method = await c.delete("/v1/jobs")
        malformed = await c.post(
            "/v1/jobs", content=b'{"type": ', headers={"Content-Type": "application/json"}
        )
        invalid = await c.get("/v1/jobs", params={"page_size": "0", "status": "sleeping"})
        bad_id = await c.get("/v1/jobs/not-a-uuid")
    assert_problem(unknown_route, 404, "not_found")
    assert_problem(wrong_method, 405, "method_not_allowed")
    assert wrong_method.headers["allow"] == "GET, POST"
    assert_problem(malformed, 400, "malformed_json")
    body = assert_problem(invalid, 422, "validation_failed")
    assert {(e["in"], e["field"]) for e in body["errors"]} == {
        ("query", "page_size"),
        ("query", "status.0"),
    }
    assert_problem(bad_id, 422, "validation_failed")
    for r in (unknown_route, wrong_method, malformed, invalid, bad_id):
        assert "retry-after" not in r.headers
        assert "Traceback" not in r.text and "sqlite" not in r.text.lower()


async def test_text_the_database_cannot_store_is_refused_not_a_500(api: Api) -> None:
    async with api.client("client_a") as c:
        r = await c.post("/v1/jobs", json={"type": "api.echo", "input": {"text": "a\u0000b"}})
        q = await c.get("/v1/jobs", params={"type": "a\u0000b"})
    assert_problem(r, 422, "validation_failed")
    assert_problem(q, 422, "validation_failed")


async def test_a_lone_surrogate_is_refused_and_an_escaped_backslash_is_not_a_nul(api: Api) -> None:
    json_type = "application/json"
    surrogate = b'{"type": "api.echo", "input": {"text": "a\\ud800b"}}'
    backslash = {"type": "api.echo", "input": {"text": "a\\u0000b"}}  # six characters, no NUL
    async with api.client("client_a") as c:
        r = await c.post("/v1/jobs", content=surrogate, headers={"content-type": json_type})
        ok = await c.post("/v1/jobs", json=backslash)
    assert_problem(r, 422, "validation_failed")
    assert ok.status_code == 202, ok.text
    assert ok.json()["id"]
