"""The client waits by Server-Sent Events: through connection drops (a real TCP proxy in the
test cuts them) it resumes with Last-Event-ID; a server without the event route is polled."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from starlette.responses import JSONResponse

from offload.client import AsyncClient, Client, Job
from offload.jobs import JobStatus
from tests.api.conftest import FAST, Api, ServerThread, StartApi
from tests.apps.api_jobs import app as jobs_app


class CuttingProxy:
    """Forwards TCP to ``target`` port; :meth:`cut` drops every open connection."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.connections: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.connections |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for writer in self.connections:
            writer.transport.abort()
        self.connections.clear()

    async def close(self) -> None:
        self.cut()
        self.server.close()


async def test_wait_resumes_a_dropped_stream_without_gap_or_duplicate(
    start_api: StartApi,
) -> None:
    api = start_api(workers=2)
    proxy = CuttingProxy(int(api.url.rsplit(":", 1)[1]))
    url = await proxy.start()
    seen: list[tuple[JobStatus, float]] = []
    try:
        async with AsyncClient(url, api.keys["client_a"]) as client:
            job = await client.submit("api.slow", {"steps": 6, "step_seconds": 0.15})

            def on_progress(j: Job) -> None:
                seen.append((j.status, j.progress.percent))
                if j.progress.percent and len([s for s in seen if s[1]]) == 2:
                    proxy.cut()  # drop the stream after the second progress event

            done = await client.wait(job.id, timeout=60, on_progress=on_progress)
    finally:
        await proxy.close()
    assert done.status is JobStatus.SUCCEEDED and done.result == {"steps": 6}
    assert proxy.accepted >= 2  # it did reconnect
    percents = [p for status, p in seen if status is JobStatus.RUNNING and p]
    assert percents == pytest.approx([100 * i / 6 for i in range(1, 7)])  # each once, in order
    assert seen[0][0] is JobStatus.QUEUED and seen[-1][0] is JobStatus.SUCCEEDED


def test_a_server_without_event_streams_is_polled(database_url: str, start_api: StartApi) -> None:
    from offload import Offload
    from offload.api import create_app

    api: Api = start_api()  # for its keys, on the same database
    offload = Offload(database_url, registry=jobs_app.registry)
    real = create_app(offload, FAST, inline_workers=2, worker_grace=1.0)

    async def plain(scope: Any, receive: Any, send: Any) -> None:
        """The real API, except that it has no event routes (like an older server)."""
        if scope["type"] == "http" and scope["path"].endswith("/events"):
            gone = JSONResponse({"status": 404, "code": "not_found"}, 404)
            return await gone(scope, receive, send)
        return await real(scope, receive, send)

    server = ServerThread(plain)
    server.start()
    try:
        with Client(server.url, api.keys["client_a"]) as client:
            assert client._http.get("/v1/events").status_code == 404
            job = client.submit("api.slow", {"steps": 2, "step_seconds": 0.05})
            states: list[Any] = []
            done = client.wait(job.id, timeout=60, on_progress=lambda j: states.append(j.status))
    finally:
        server.stop()
    assert done.status is JobStatus.SUCCEEDED and states[-1] is JobStatus.SUCCEEDED


def test_waiting_on_another_tenants_job_is_not_found(api: Api) -> None:
    from offload.client import NotFound

    with Client(api.url, api.keys["client_a"]) as a, Client(api.url, api.keys["client_b"]) as b:
        job = a.submit("api.echo", {"text": "x"})
        with pytest.raises(NotFound):
            b.wait(job.id, timeout=5)
