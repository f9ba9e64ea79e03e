"""Webhook tests: a real receiver on loopback (allow-listed), an Offload app with fast
retries, and a dispatcher started per test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from offload import Offload
from offload.config import Settings
from offload.notify.dispatcher import Dispatcher

from .receiver import Receiver

FAST = {
    "webhook_allowed_hosts": "127.0.0.1",
    "webhook_backoff_base": 0.02,
    "webhook_backoff_max": 0.05,
    "webhook_timeout": 5.0,
    "dispatch_interval": 0.02,
    "dispatch": False,
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[Offload]:
    offload = Offload(settings=Settings(database_url=database_url, **FAST))
    await offload.store()
    yield offload
    await offload.close()


@contextlib.asynccontextmanager
async def dispatching(app: Offload, **kwargs: Any) -> AsyncIterator[Dispatcher]:
    """A dispatcher running for the block, stopped (and awaited) after it."""
    dispatcher = Dispatcher(app, **kwargs)
    task = asyncio.create_task(dispatcher.run())
    await asyncio.wait_for(dispatcher.ready.wait(), 10)
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 30)
