"""Redis Streams: one stream per queue, one consumer group, at-least-once delivery.

Keys (all under the broker's prefix, ``OFFLOAD_BROKER_PREFIX``, default ``offload``):

- ``<prefix>:q:<queue>`` — the queue's stream; each entry has one field ``m``, the
  :meth:`~offload.broker.base.Message.encode` body. Entries are deleted when acknowledged
  (``XACK`` + ``XDEL``), so ``XLEN`` is the backlog: waiting plus in flight.
- ``<prefix>:queues`` — a set of the queue names published to, for workers of every queue.
- consumer group ``offload`` on each stream; each worker is a consumer named by its worker id.

Workers read with ``XREADGROUP … BLOCK`` (woken the moment an entry arrives) and take over the
entries of consumers that went away with ``XAUTOCLAIM`` once they have been pending
``claim_idle`` seconds (URL parameter, default 30). Delays and retry backoff are held in the
store, not in Redis: a job is published when it is due. Redis Streams have no priorities:
entries of a queue are delivered in publish order, and priority orders jobs within one read
batch only. Redis need not persist anything: the reconciler republishes from the store what a
restarted Redis lost.

URL: ``redis://[user:password@]host:port/db?claim_idle=30`` (``rediss://`` for TLS).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aredis
from redis.exceptions import RedisError, ResponseError

from ..config import redact_url
from ..errors import BrokerUnavailable
from ..store import Store
from .base import Broker, Delivery, Message, MessageConsumer

log = logging.getLogger("offload.broker")

GROUP = "offload"
FIELD = b"m"
_OUR_PARAMETERS = ("claim_idle",)
_QUEUE_REFRESH = 1.0
"""Seconds between re-reading the queue set, for workers of every queue."""


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """The URL for redis-py, and our own query parameters taken out of it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _OUR_PARAMETERS}
    rest = [(k, v) for k, v in query if k not in _OUR_PARAMETERS]
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


class RedisBroker(Broker):
    scheme: ClassVar[str] = "redis"

    def __init__(self, url: str, *, prefix: str = "offload") -> None:
        self.url = url
        self.prefix = prefix
        self._redis_url, ours = _split_url(url)
        try:
            self.claim_idle = float(ours.get("claim_idle", 30.0))
        except ValueError:
            raise ValueError(
                f"claim_idle must be a number of seconds, got {ours['claim_idle']!r}"
            ) from None
        if self.claim_idle <= 0:
            raise ValueError("claim_idle must be > 0 seconds")
        self._client: aredis.Redis | None = None

    # -- names ---------------------------------------------------------------------------------

    def stream(self, queue: str) -> str:
        return f"{self.prefix}:q:{queue}"

    @property
    def queue_set(self) -> str:
        return f"{self.prefix}:queues"

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def client(self) -> aredis.Redis:
        if self._client is None:
            raise RuntimeError("broker is not connected; await broker.connect() first")
        return self._client

    async def connect(self) -> None:
        client = aredis.Redis.from_url(
            self._redis_url, socket_connect_timeout=5, health_check_interval=30
        )
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise BrokerUnavailable(
                f"cannot connect to Redis at {redact_url(self.url)}: {exc or type(exc).__name__}"
            ) from None
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        pipe = self.client.pipeline(transaction=False)
        for message in messages:
            pipe.xadd(self.stream(message.queue), {FIELD: message.encode()})
        # Every time, in the same round trip: a Redis restarted empty (or a set deleted) must
        # learn every queue again, or workers of all queues would never read its stream.
        pipe.sadd(self.queue_set, *{m.queue for m in messages})
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"publishing to Redis failed: {exc}") from None

    async def backlog(self, queue: str) -> int | None:
        return int(await self.client.xlen(self.stream(queue)))

    async def destroy(self) -> None:
        pattern = _glob_escape(self.prefix) + ":*"
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                await self.client.delete(*batch)
                batch = []
        if batch:
            await self.client.delete(*batch)

    # -- consuming -------------------------------------------------------------------------------

    def consumer(
        self,
        store: Store,
        *,
        types: Sequence[str],
        queues: Sequence[str] | None,
        worker_id: str,
        lease_seconds: float,
        capacity: int,
    ) -> RedisConsumer:
        return RedisConsumer(
            self,
            store,
            types=types,
            queues=queues,
            worker_id=worker_id,
            lease_seconds=lease_seconds,
        )


class RedisConsumer(MessageConsumer):
    def __init__(
        self,
        broker: RedisBroker,
        store: Store,
        *,
        types: Sequence[str],
        queues: Sequence[str] | None,
        worker_id: str,
        lease_seconds: float,
    ) -> None:
        super().__init__(store, types=types, worker_id=worker_id, lease_seconds=lease_seconds)
        self.broker = broker
        self.name = worker_id
        self._fixed = [broker.stream(q) for q in queues] if queues else None
        self._streams: list[str] = list(self._fixed or [])
        self._refreshed = 0.0
        self._groups: set[str] = set()
        self._next_autoclaim = 0.0
        self._autoclaim_from: dict[str, str] = {}

    async def receive(self, limit: int, wait: float) -> list[Delivery]:
        client = self.broker.client
        streams = await self._current_streams()
        if not streams:
            await asyncio.sleep(min(wait, _QUEUE_REFRESH))  # no queue exists yet
            return []
        await self._ensure_groups(streams)
        if time.monotonic() >= self._next_autoclaim:
            taken_over = await self._autoclaim(streams, limit)
            if taken_over:
                return taken_over
        try:
            reply = await client.xreadgroup(
                GROUP,
                self.name,
                dict.fromkeys(streams, ">"),
                count=limit,
                block=max(1, int(wait * 1000)) if wait > 0 else None,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis restarted (or the stream was deleted) since the group was made: make it
            # again; the reconciler republishes what was lost.
            self._groups.clear()
            return []
        return await self._deliveries(reply, redelivered=False)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        by_stream: dict[str, list[bytes]] = {}
        for delivery in deliveries:
            stream, entry_id = delivery.tag
            by_stream.setdefault(stream, []).append(entry_id)
        pipe = self.broker.client.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)
        await pipe.execute()

    # -- helpers -------------------------------------------------------------------------------

    async def _current_streams(self) -> list[str]:
        if self._fixed is not None:
            return self._fixed
        now = time.monotonic()
        if now - self._refreshed >= _QUEUE_REFRESH or not self._streams:
            names = await self.broker.client.smembers(self.broker.queue_set)
            self._streams = sorted(self.broker.stream(n.decode()) for n in names)
            self._refreshed = now
        return self._streams

    async def _ensure_groups(self, streams: list[str]) -> None:
        missing = [s for s in streams if s not in self._groups]
        if not missing:
            return
        pipe = self.broker.client.pipeline(transaction=False)
        for stream in missing:
            # From the start of the stream: entries published before any worker existed (or
            # after a Redis restart) are delivered too.
            pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
        for stream, result in zip(missing, await pipe.execute(raise_on_error=False), strict=True):
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result
            self._groups.add(stream)

    async def _autoclaim(self, streams: list[str], limit: int) -> list[Delivery]:
        """Entries pending with consumers that stopped acking for ``claim_idle`` seconds."""
        self._next_autoclaim = time.monotonic() + self.broker.claim_idle / 2
        idle_ms = int(self.broker.claim_idle * 1000)
        found: list[Delivery] = []
        for stream in streams:
            start = self._autoclaim_from.get(stream, "0-0")
            try:
                reply = await self.broker.client.xautoclaim(
                    stream, GROUP, self.name, idle_ms, start_id=start, count=limit
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._groups.discard(stream)
                continue
            next_start, entries = reply[0], reply[1]
            self._autoclaim_from[stream] = (
                next_start.decode() if isinstance(next_start, bytes) else str(next_start)
            )
            found += await self._deliveries([[stream, entries]], redelivered=True)
            if next_start not in (b"0-0", "0-0"):
                self._next_autoclaim = 0.0  # more to take over: look again next time
        return found

    async def _deliveries(self, reply: Any, *, redelivered: bool) -> list[Delivery]:
        deliveries: list[Delivery] = []
        malformed: list[Delivery] = []
        for stream, entries in reply or ():
            name = stream.decode() if isinstance(stream, bytes) else stream
            for entry_id, fields in entries:
                if not fields:  # deleted while pending
                    continue
                try:
                    message = Message.decode(fields[FIELD])
                except (KeyError, ValueError) as exc:
                    log.error("dropping a malformed message %s on %s: %s", entry_id, name, exc)
                    malformed.append(Delivery(Message(_NIL, ""), (name, entry_id)))
                    continue
                deliveries.append(Delivery(message, (name, entry_id), redelivered))
        if malformed:
            await self.ack(malformed)
        return deliveries


_NIL = uuid.UUID(int=0)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
