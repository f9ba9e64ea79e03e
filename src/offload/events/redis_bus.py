"""Redis pub/sub transport for the event bus (``OFFLOAD_EVENTS_URL=redis://…``; see :mod:`.bus`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as redis

from ..store import Store
from .bus import Announcer, EventHub, Transport, read_the_log

log = logging.getLogger(__name__)


class RedisTransport(Transport):
    def __init__(self, url: str, channel: str, store: Store, sweep_interval: float) -> None:
        self.url = url
        self.channel = channel
        self.store = store
        self.sweep_interval = sweep_interval
        self._client: redis.Redis | None = None
        self._announcer: Announcer | None = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.url, socket_connect_timeout=5)
        return self._client

    async def announcer(self) -> Announcer:
        if self._announcer is None:
            self._announcer = Announcer(self._publish)
        return self._announcer

    async def _publish(self, payload: str) -> None:
        await self._redis().publish(self.channel, payload)

    async def close(self) -> None:
        if self._announcer is not None:
            await self._announcer.drain()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def listen(self, hub: EventHub) -> Callable[[], Awaitable[None]]:
        """Subscribe on a connection of its own; on any error resubscribe with backoff and wake
        every watcher (announcements may have been missed meanwhile)."""
        client = redis.Redis.from_url(self.url, socket_connect_timeout=5)
        await client.ping()  # fail loudly at start-up if Redis is not there
        subscribed = asyncio.Event()

        async def run() -> None:
            delay = 0.1
            while True:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(self.channel)
                    if subscribed.is_set():
                        hub.wake_all()  # announcements may have been missed meanwhile
                    subscribed.set()
                    delay = 0.1
                    async for message in pubsub.listen():
                        data = message.get("data")
                        if isinstance(data, bytes):
                            hub.announce(data.decode())
                except Exception as exc:  # any failure: resubscribe (the loop must not die)
                    log.warning("event subscription lost, resubscribing: %s", exc)
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

        task = asyncio.get_running_loop().create_task(run())
        await asyncio.wait_for(subscribed.wait(), 10)
        sweep = await read_the_log(self.store, hub, self.sweep_interval)

        async def stop() -> None:
            await sweep()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.aclose()

        return stop
