"""PostgreSQL LISTEN/NOTIFY transport for the event bus (see :mod:`.bus`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from .bus import CHANNEL, Announcer, EventHub, Transport, payload_of, read_the_log


class PostgresTransport(Transport):
    def __init__(self, store: Any, sweep_interval: float) -> None:
        self.store = store  # a connected PostgresStore
        self.sweep_interval = sweep_interval
        self._announcer: Announcer | None = None

    async def announcer(self) -> Announcer:
        if self._announcer is None:
            self._announcer = Announcer(self._notify)
            self.store.announce_submits(CHANNEL, payload_of)
        return self._announcer

    async def _notify(self, payload: str) -> None:
        # Its own tiny transaction, after the write committed: NOTIFY inside the write's
        # transaction would hold PostgreSQL's global notify lock through that commit.
        await self.store.pool.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    async def close(self) -> None:
        if self._announcer is not None:
            await self._announcer.drain()

    async def listen(self, hub: EventHub) -> Callable[[], Awaitable[None]]:
        """One connection of its own; when it drops (a database restart) reconnect in the
        background, then wake every watcher (announcements may have been missed)."""
        url = self.store.url
        state: dict[str, Any] = {"conn": None, "closing": False, "task": None}

        def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            hub.announce(payload)

        def on_lost(_conn: object) -> None:
            state["conn"] = None
            if not state["closing"]:
                state["task"] = asyncio.ensure_future(reconnect())

        async def connect() -> None:
            conn = await asyncpg.connect(url, timeout=10)
            await conn.add_listener(CHANNEL, on_notify)
            conn.add_termination_listener(on_lost)
            state["conn"] = conn

        async def reconnect() -> None:
            delay = 0.1
            while not state["closing"]:
                try:
                    await connect()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                hub.wake_all()
                return

        await connect()
        sweep = await read_the_log(self.store, hub, self.sweep_interval)

        async def stop() -> None:
            await sweep()
            state["closing"] = True
            if state["task"] is not None:
                state["task"].cancel()
            if state["conn"] is not None:
                with contextlib.suppress(Exception):
                    await state["conn"].close(timeout=2)

        return stop
