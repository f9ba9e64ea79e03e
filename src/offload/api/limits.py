"""Admission control: a rate limit per API key (429), a limit on waiting jobs per queue
(503, nothing written) and a request body size limit (413). Each answers with ``Retry-After``
where retrying later can succeed."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store import Store
from .problems import BodyTooLarge, Problem, body_too_large


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second sustained, ``burst`` at once.

    Per API process: with several processes behind a balancer each admits its share.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        """key → (tokens, when they were counted)."""

    def check(self, key: str) -> None:
        """Take one token or raise a 429 problem telling when the next one is due."""
        if self.rate <= 0:
            return
        now = self._clock()
        tokens, then = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return
        self._buckets[key] = (tokens, now)
        wait = max(1, math.ceil((1.0 - tokens) / self.rate))
        raise Problem(
            429,
            "rate_limited",
            f"this API key is limited to {self.rate:g} requests per second",
            headers={"Retry-After": str(wait)},
        )


class QueueLimiter:
    """Refuses submits to a queue whose waiting jobs reached ``limit``.

    The depth is read from the store at most every ``cache_seconds`` per queue, and this
    process's own accepted submits are added in between, so admission costs no query per
    submit. When the reading is due, one request refreshes it while the others go on with the
    last one: a busy API must not send a herd of counts that take every connection at once.
    Under concurrent submits from several processes a queue may pass its limit by about the
    number of submits in flight.
    """

    def __init__(
        self, limit: int, cache_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._ttl = cache_seconds
        self._clock = clock
        self._depth: dict[str, tuple[int, float]] = {}
        self._refreshing: dict[str, asyncio.Task[int]] = {}

    async def admit(self, store: Store, queue: str, retry_after: int) -> None:
        if self.limit <= 0:
            return
        if await self._depth_of(store, queue) >= self.limit:
            raise Problem(
                503,
                "queue_full",
                "the queue for this job type is at capacity; retry later",
                headers={"Retry-After": str(max(retry_after, 1))},
            )

    def added(self, queue: str) -> None:
        cached = self._depth.get(queue)
        if cached is not None:
            self._depth[queue] = (cached[0] + 1, cached[1])

    async def _depth_of(self, store: Store, queue: str) -> int:
        cached = self._depth.get(queue)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        refresh = self._refreshing.get(queue)
        if refresh is None:
            refresh = asyncio.ensure_future(self._refresh(store, queue))
            self._refreshing[queue] = refresh
            # A refresh nobody awaits (the stale reading was used) must not warn when it fails.
            refresh.add_done_callback(lambda t: t.cancelled() or t.exception())
        if cached is not None:
            return cached[0]
        return await asyncio.shield(refresh)

    async def _refresh(self, store: Store, queue: str) -> int:
        try:
            depth = await store.queue_depth(queue)
            self._depth[queue] = (depth, self._clock() + self._ttl)
            return depth
        finally:
            del self._refreshing[queue]


class BodySizeLimit:
    """ASGI middleware: a body over ``max_bytes`` (declared or streamed) gets 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        framed = scope.get("http_version") in ("1.0", "1.1")
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:  # servers refuse these; if one did not, count the body
                    framed = False
                    break
                if declared > self.max_bytes:
                    await body_too_large(self.max_bytes).response()(scope, receive, send)
                    return
                framed = True
            elif name == b"transfer-encoding":
                framed = False
        if framed:
            # The server holds the body to its Content-Length (HTTP/1 without one and without
            # chunking: no body at all), so it cannot outgrow the check above; only a chunked
            # or HTTP/2 body of unknown length is counted while it is read.
            await self.app(scope, receive, send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await body_too_large(self.max_bytes).response()(scope, receive, send)


def parse_wait(prefer: str | None, cap: float) -> int | None:
    """The ``wait=N`` preference of a ``Prefer`` header (RFC 7240), capped; None if absent."""
    if not prefer:
        return None
    for item in prefer.split(","):
        token = item.split(";", 1)[0].strip()
        name, _, value = token.partition("=")
        if name.strip().lower() != "wait":
            continue
        try:
            seconds = int(value.strip().strip('"'))
        except ValueError:
            return None
        if seconds < 0:
            return None
        return int(min(seconds, cap))
    return None
