"""Authenticator: concurrent requests with one key share one lookup; revoked keys stop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from offload.api.auth import Authenticator, create_key
from offload.api.problems import Problem
from offload.store import open_store


class CountingStore:
    """A real SQLite store whose key lookups are counted and can be held open."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.lookups = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def key_get_by_hash(self, digest: str) -> Any:
        self.lookups += 1
        await self.gate.wait()
        return await self.store.key_get_by_hash(digest)


@pytest.fixture
async def real_store(sqlite_url: str) -> Any:
    store = open_store(sqlite_url)
    await store.connect()
    await store.migrate()
    yield store
    await store.close()


async def test_a_herd_of_requests_with_one_key_looks_it_up_once(real_store: Any) -> None:
    _, key = await create_key(real_store, "acme", "client")
    counting = CountingStore(real_store)

    async def store() -> CountingStore:
        return counting

    auth = Authenticator(store, cache_seconds=5.0)
    counting.gate.clear()
    herd = [asyncio.ensure_future(auth.authenticate(f"Bearer {key}")) for _ in range(50)]
    await asyncio.sleep(0)
    counting.gate.set()
    callers = await asyncio.wait_for(asyncio.gather(*herd), 10)
    assert {(c.tenant, c.role) for c in callers} == {("acme", "client")}
    assert counting.lookups == 1
    await auth.authenticate(f"Bearer {key}")  # cached
    assert counting.lookups == 1


async def test_unknown_and_revoked_keys_are_refused(real_store: Any) -> None:
    created, key = await create_key(real_store, "acme", "client")

    async def store() -> Any:
        return real_store

    auth = Authenticator(store, cache_seconds=0.0)  # no cache: every request looks the key up
    assert (await auth.authenticate(f"Bearer {key}")).tenant == "acme"
    await real_store.key_revoke(created.id)
    for header in (f"Bearer {key}", "Bearer ofk_unknown", "Basic abc", None):
        with pytest.raises(Problem) as refused:
            await auth.authenticate(header)
        assert refused.value.status == 401
