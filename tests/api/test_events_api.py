"""Push end to end: an API server, a separate worker process, and real SSE (httpx-sse) and
WebSocket (websockets) clients. Each store runs its own bus: PostgreSQL NOTIFY, SQLite polling
the log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse

from tests.api.conftest import Api, StartApi, _make_keys
from tests.conftest import wait_until
from tests.integration.workers import ROOT, WorkerProcesses

APP = "tests.apps.api_jobs:app"
STORY = ["job.queued", "job.running", "job.progress", "job.progress", "job.progress"]
DONE = [*STORY, "job.succeeded"]


@pytest.fixture
def worker(database_url: str, tmp_path: Path) -> Any:
    pool = WorkerProcesses(database_url, tmp_path, lease_seconds=5.0)
    yield lambda: pool.start(app=APP, concurrency=4)
    pool.stop_all()


async def submit(api: Api, who: str = "client_a", **body: Any) -> str:
    async with api.client(who) as c:
        r = await c.post("/v1/jobs", json=body or {"type": "api.slow", "input": {"steps": 3}})
        assert r.status_code == 202, r.text
        return r.json()["id"]


async def read_sse(
    api: Api,
    path: str,
    who: str = "client_a",
    *,
    stop_after: int | None = None,
    on_open: asyncio.Event | None = None,
    **headers: str,
) -> tuple[list[Any], bool]:
    """The events of one connection (all, or the first ``stop_after``) and whether the server
    ended the stream itself."""
    events = []
    async with (
        api.client(who) as c,
        aconnect_sse(c, "GET", path, headers=headers) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        if on_open is not None:
            on_open.set()
        async for sse in source.aiter_sse():
            if not sse.data:  # the opening retry: block (browsers dispatch nothing for it)
                continue
            events.append(sse)
            if stop_after is not None and len(events) == stop_after:
                return events, False
    return events, True


async def test_a_job_stream_replays_follows_and_ends_after_the_terminal_event(
    start_api: StartApi, worker: Any
) -> None:
    api = start_api(events_heartbeat_seconds=30)
    job_id = await submit(api)
    worker()
    events, ended = await asyncio.wait_for(read_sse(api, f"/v1/jobs/{job_id}/events"), 60)
    assert ended
    assert [e.event for e in events] == DONE
    assert [int(e.id) for e in events] == sorted(int(e.id) for e in events)
    data = [e.json() for e in events]
    assert {d["id"] for d in data} == {job_id}
    assert [d["progress"]["percent"] for d in data[2:5]] == pytest.approx([100 / 3, 200 / 3, 100])
    assert data[-1]["status"] == "succeeded" and data[-1]["result"] == {"steps": 3}
    assert data[1]["status"] == "running" and "result" not in data[1]
    # A late subscriber gets the whole story again, then the stream ends.
    again, ended = await read_sse(api, f"/v1/jobs/{job_id}/events")
    assert ended and [e.event for e in again] == DONE


async def test_resuming_with_last_event_id_gives_no_gap_and_no_duplicate(
    start_api: StartApi, worker: Any
) -> None:
    api = start_api()
    async with api.client("client_a") as c:
        r = await c.post(
            "/v1/jobs", json={"type": "api.slow", "input": {"steps": 6, "step_seconds": 0.1}}
        )
        job_id = r.json()["id"]
    worker()
    first, ended = await read_sse(api, f"/v1/jobs/{job_id}/events", stop_after=3)
    assert not ended and [e.event for e in first] == ["job.queued", "job.running", "job.progress"]

    async def finished() -> bool:  # all the rest happens while nobody listens
        async with api.client("client_a") as c:
            return (await c.get(f"/v1/jobs/{job_id}")).json()["status"] == "succeeded"

    await wait_until(finished)
    rest, ended = await read_sse(
        api, f"/v1/jobs/{job_id}/events", **{"Last-Event-ID": first[-1].id}
    )
    assert ended
    ids = [int(e.id) for e in first + rest]
    assert ids == list(range(1, len(ids) + 1))  # every seq once, none missing
    assert [e.event for e in first + rest] == [
        "job.queued",
        "job.running",
        *["job.progress"] * 6,
        "job.succeeded",
    ]


async def test_heartbeats_keep_an_idle_stream_alive(start_api: StartApi) -> None:
    api = start_api(events_heartbeat_seconds=0.1)
    job_id = await submit(api)  # no worker: the job stays queued
    lines: list[str] = []
    async with (
        api.client("client_a") as c,
        c.stream("GET", f"/v1/jobs/{job_id}/events") as r,
    ):
        assert r.status_code == 200
        async for line in r.aiter_lines():
            lines.append(line)
            if lines.count(": ping") >= 3:
                break
    assert lines[0].startswith("retry: ")
    assert "event: job.queued" in lines and lines.count(": ping") == 3


async def test_another_tenants_job_is_404_and_a_bad_last_event_id_is_refused(api: Api) -> None:
    job_id = await submit(api, "client_a")
    async with api.client("client_b") as c:
        r = await c.get(f"/v1/jobs/{job_id}/events")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert (await c.get(f"/v1/jobs/{uuid.uuid4()}/events")).status_code == 404
    async with api.client("client_a") as c:
        r = await c.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "x"})
        assert r.status_code == 422  # not an event id at all: refused by the schema
        r = await c.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "1.5"})
        assert r.status_code == 400
        r = await c.get("/v1/events", headers={"Last-Event-ID": "1.2.3"})
        assert r.status_code == 400
        r = await c.get("/v1/events", params={"event": "job.nope"})
        assert r.status_code == 400 and "job.nope" in r.json()["detail"]
    async with api.client() as anonymous:
        assert (await anonymous.get(f"/v1/jobs/{job_id}/events")).status_code == 401


async def test_the_global_stream_shows_a_tenant_only_its_jobs_and_resumes(
    start_api: StartApi, worker: Any
) -> None:
    api = start_api()
    seen: dict[str, list[Any]] = {"client_a": [], "viewer": []}
    connected = {"client_a": asyncio.Event(), "viewer": asyncio.Event()}

    async def follow(who: str, count: int) -> None:
        events, _ = await read_sse(
            api, "/v1/events?event=job.succeeded", who, stop_after=count, on_open=connected[who]
        )
        seen[who] = events

    a_stream = asyncio.create_task(follow("client_a", 2))
    all_stream = asyncio.create_task(follow("viewer", 3))
    # Both streams start "now": be connected before the jobs exist.
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in connected.values())), 30)
    quick = {"type": "api.slow", "input": {"steps": 1, "step_seconds": 0}}
    mine = [await submit(api, "client_a", **quick) for _ in range(2)]
    theirs = await submit(api, "client_b", **quick)
    worker()
    await asyncio.wait_for(asyncio.gather(a_stream, all_stream), 60)
    assert sorted(e.json()["id"] for e in seen["client_a"]) == sorted(mine)
    assert sorted(e.json()["id"] for e in seen["viewer"]) == sorted([*mine, theirs])
    assert {e.event for e in seen["viewer"]} == {"job.succeeded"}
    # Resume after the viewer's first event: exactly the other two.
    first = seen["viewer"][0]
    rest, _ = await read_sse(
        api, "/v1/events?event=job.succeeded", "viewer", stop_after=2,
        **{"Last-Event-ID": first.id},
    )  # fmt: skip
    assert [e.json()["id"] for e in rest] == [e.json()["id"] for e in seen["viewer"][1:]]


@pytest.fixture
def serve_processes(database_url: str, tmp_path: Path) -> Iterator[Callable[[], Api]]:
    """``start()``: an ``offload serve`` process of its own on a free port."""
    procs: list[subprocess.Popen[bytes]] = []
    keys, ids = asyncio.run(_make_keys(database_url))

    def start() -> Api:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
        env |= {"OFFLOAD_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
        with (tmp_path / f"serve-{port}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "offload.cli", "serve", "--app", APP, "--port", str(port)],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / f"serve-{port}.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            return False

        asyncio.run(wait_until(_async(ready)))
        return Api(url, database_url, keys, ids)

    start.procs = procs  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _async(fn: Callable[[], Any]) -> Callable[[], Any]:
    async def call() -> Any:
        return fn()

    return call


def test_two_api_processes_see_the_same_events(
    serve_processes: Callable[[], Api], worker: Any, database_url: str
) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("several API hosts share a PostgreSQL database, not an SQLite file")
    one, two = serve_processes(), serve_processes()
    assert one.url != two.url

    async def both() -> tuple[Any, Any]:
        job_id = await submit(one)
        worker()
        return await asyncio.wait_for(
            asyncio.gather(
                read_sse(one, f"/v1/jobs/{job_id}/events"),
                read_sse(two, f"/v1/jobs/{job_id}/events"),
            ),
            60,
        )

    (a, ended_a), (b, ended_b) = asyncio.run(both())
    assert ended_a and ended_b
    assert [(e.id, e.event, e.data) for e in a] == [(e.id, e.event, e.data) for e in b]
    assert [e.event for e in a] == DONE


# -- WebSocket -------------------------------------------------------------------------------


def ws_url(api: Api, token: str | None = None) -> str:
    url = api.url.replace("http://", "ws://") + "/v1/events/ws"
    return f"{url}?token={token}" if token else url


async def ws_read(ws: Any, count: int | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Event messages until ``count`` of them or until the server closes normally."""
    events: list[dict[str, Any]] = []
    try:
        while count is None or len(events) < count:
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if "id" in message:
                events.append(message)
    except websockets.ConnectionClosedOK:
        return events, True
    return events, False


async def test_websocket_follows_a_job_and_resumes_after_an_id(
    start_api: StartApi, worker: Any
) -> None:
    api = start_api()
    job_id = await submit(api, **{"type": "api.slow", "input": {"steps": 3, "step_seconds": 0.1}})
    worker()
    headers = {"Authorization": f"Bearer {api.keys['client_a']}"}
    async with websockets.connect(ws_url(api), additional_headers=headers) as ws:
        await ws.send(json.dumps({"subscribe": "job", "job_id": job_id}))
        first, closed = await ws_read(ws, 2)
    assert not closed and [m["event"] for m in first] == ["job.queued", "job.running"]
    async with websockets.connect(ws_url(api, api.keys["client_a"])) as ws:  # token auth
        await ws.send(json.dumps({"subscribe": "job", "job_id": job_id, "after": first[-1]["id"]}))
        rest, closed = await ws_read(ws)
    assert closed
    messages = first + rest
    assert [m["event"] for m in messages] == DONE
    assert [int(m["id"]) for m in messages] == list(range(1, 7))
    assert messages[-1]["data"]["result"] == {"steps": 3}


async def test_websocket_all_events_and_refusals(start_api: StartApi, worker: Any) -> None:
    api = start_api()
    async with websockets.connect(ws_url(api, api.keys["viewer"])) as ws:
        await ws.send(json.dumps({"subscribe": "all", "event": ["job.succeeded"]}))
        assert json.loads(await ws.recv()) == {"subscribed": "all"}  # "now" is fixed
        job_id = await submit(api, "client_b", type="api.echo", input={"text": "hi"})
        worker()
        [message], _ = await ws_read(ws, 1)
    assert message["event"] == "job.succeeded" and message["data"]["id"] == job_id
    # Another tenant's job: an error message, then close 4404.
    async with websockets.connect(ws_url(api, api.keys["client_a"])) as ws:
        await ws.send(json.dumps({"subscribe": "job", "job_id": job_id}))
        error = json.loads(await ws.recv())
        assert error["error"]["status"] == 404
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
    async with websockets.connect(ws_url(api, api.keys["client_a"])) as ws:
        await ws.send("not json")
        assert json.loads(await ws.recv())["error"]["code"] == "invalid_subscription"
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(ws_url(api, "ofk_wrong")):
            pass


async def test_websocket_heartbeats_and_resume_of_all_events(
    start_api: StartApi, worker: Any
) -> None:
    api = start_api(events_heartbeat_seconds=0.1)
    quiet = await submit(api)  # no worker yet: it stays queued, its stream idles
    async with websockets.connect(ws_url(api, api.keys["client_a"])) as ws:
        await ws.send(json.dumps({"subscribe": "job", "job_id": quiet}))
        assert json.loads(await ws.recv()) == {"subscribed": "job"}
        assert json.loads(await ws.recv())["event"] == "job.queued"
        beats = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]
        assert beats == [{"heartbeat": True}] * 2
    echo = {"type": "api.echo", "input": {"text": "x"}}
    async with websockets.connect(ws_url(api, api.keys["client_a"])) as ws:
        await ws.send(json.dumps({"subscribe": "all", "event": ["job.succeeded"]}))
        assert json.loads(await ws.recv()) == {"subscribed": "all"}
        ids = [await submit(api, **echo) for _ in range(2)]
        worker()
        received, _ = await ws_read(ws, 3)  # the two echoes and the slow one, in any order
    assert set(ids) <= {m["data"]["id"] for m in received}
    async with websockets.connect(ws_url(api, api.keys["client_a"])) as ws:
        after = received[0]["id"]
        await ws.send(json.dumps({"subscribe": "all", "event": ["job.succeeded"], "after": after}))
        assert json.loads(await ws.recv()) == {"subscribed": "all"}
        rest, _ = await ws_read(ws, 2)
    assert [m["id"] for m in rest] == [m["id"] for m in received[1:]]


async def test_the_global_stream_filters_by_job_type_and_queue(api: Api) -> None:
    opened = {"type": asyncio.Event(), "queue": asyncio.Event()}
    by_type = asyncio.create_task(
        read_sse(api, "/v1/events?type=api.echo", stop_after=1, on_open=opened["type"])
    )
    by_queue = asyncio.create_task(
        read_sse(
            api, "/v1/events?queue=slow&event=job.queued", stop_after=1, on_open=opened["queue"]
        )
    )
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened.values())), 30)
    slow = await submit(api)  # api.slow in queue "slow"; no worker: only job.queued happens
    echo = await submit(api, type="api.echo", input={"text": "x"})
    (echoes, _), (slows, _) = await asyncio.wait_for(asyncio.gather(by_type, by_queue), 30)
    assert [(e.event, e.json()["id"]) for e in echoes] == [("job.queued", echo)]
    assert [(e.event, e.json()["id"]) for e in slows] == [("job.queued", slow)]


def test_a_stopping_server_ends_its_streams_instead_of_hanging(
    serve_processes: Callable[[], Api],
) -> None:
    """uvicorn waits for every response before it exits; SIGTERM ends the event streams."""
    api = serve_processes()
    proc = serve_processes.procs[-1]  # type: ignore[attr-defined]

    async def stop_while_streaming() -> tuple[bool, int | None]:
        opened = asyncio.Event()
        stream = asyncio.create_task(read_sse(api, "/v1/events", "viewer", on_open=opened))
        await asyncio.wait_for(opened.wait(), 30)
        async with websockets.connect(ws_url(api, api.keys["viewer"])) as ws:
            await ws.send(json.dumps({"subscribe": "all"}))
            assert json.loads(await ws.recv()) == {"subscribed": "all"}
            os.killpg(proc.pid, signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 20)
        _, ended = await asyncio.wait_for(stream, 20)
        return ended, closed.value.rcvd.code if closed.value.rcvd else None

    ended, ws_code = asyncio.run(stop_while_streaming())
    assert ended  # the server closed the SSE stream itself
    assert ws_code == 1012  # "service restart": resume elsewhere
    # uvicorn re-raises the signal it handled once it has shut down cleanly.
    assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
