"""A real API server per test: uvicorn on a free port in a thread of its own (its own event
loop), on SQLite and on PostgreSQL, with API keys for two tenants, a viewer and an admin."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from offload import Offload
from offload.api import ApiSettings, create_app, create_key
from offload.store import open_store
from tests.apps.api_jobs import app as jobs_app

FAST = ApiSettings(
    rate_limit=0,
    queue_limit=0,
    key_cache_seconds=0,
    max_wait_seconds=10,
    wait_poll_interval=0.02,
)


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> until :meth:`stop`."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        for _ in range(1000):
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not self.server.started:
            raise RuntimeError("the API server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@dataclasses.dataclass
class Api:
    url: str
    database_url: str
    keys: dict[str, str]
    """role name → secret: ``admin``, ``viewer``, ``client_a`` (tenant a), ``client_b``."""
    key_ids: dict[str, str]

    def client(self, who: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kwargs)


async def _make_keys(database_url: str) -> tuple[dict[str, str], dict[str, str]]:
    store = open_store(database_url)
    await store.connect()
    try:
        await store.migrate()
        keys, ids = {}, {}
        for who, tenant, role in [
            ("admin", "ops", "admin"),
            ("viewer", "ops", "viewer"),
            ("client_a", "tenant-a", "client"),
            ("client_b", "tenant-b", "client"),
        ]:
            key, secret = await create_key(store, tenant, role, name=who)
            keys[who], ids[who] = secret, key.id
        return keys, ids
    finally:
        await store.close()


StartApi = Callable[..., Api]


@pytest.fixture
def start_api(database_url: str) -> Iterator[StartApi]:
    """``start_api(workers=0, **settings)``: a running server; stopped after the test."""
    servers: list[ServerThread] = []
    keys, ids = asyncio.run(_make_keys(database_url))

    def start(workers: int = 0, **settings: Any) -> Api:
        offload = Offload(database_url, registry=jobs_app.registry)
        app = create_app(
            offload,
            dataclasses.replace(FAST, **settings),
            inline_workers=workers,
            worker_grace=1.0,
        )
        server = ServerThread(app)
        server.start()
        servers.append(server)
        return Api(server.url, database_url, keys, ids)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def api(start_api: StartApi) -> Api:
    """A server without workers: jobs stay where the test puts them."""
    return start_api()


@pytest.fixture
def api_with_workers(start_api: StartApi) -> Api:
    return start_api(workers=4)


@pytest.fixture
async def admin(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client("admin") as c:
        yield c
