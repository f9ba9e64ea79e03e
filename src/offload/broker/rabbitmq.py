"""RabbitMQ through aio-pika: durable quorum queues, publisher confirms, manual acks.

Topology (every name starts with the broker's ``prefix``, ``offload`` unless configured):

- ``<prefix>.jobs``: a durable direct exchange; a job's message goes there with its offload
  queue name as the routing key.
- ``<prefix>.q.<queue>``: one durable quorum queue per offload queue, bound to the exchange by
  that name. Whoever first publishes to (or consumes from) an offload queue declares it, so a
  message never meets an unbound routing key.
- ``<prefix>.dead``: a fanout dead-letter exchange and a quorum queue of the same name (capped,
  oldest dropped first). The messages of jobs that failed for good are rejected into it once
  the failure is written, so RabbitMQ tooling sees dead letters too, and so are messages that
  are not offload messages. The store's dead-letter list stays the one that counts (replay
  goes through it; a replayed job's old message stays in ``<prefix>.dead``).

A worker's consumer sets ``prefetch_count`` to the worker's capacity: RabbitMQ never hands one
worker more unacknowledged messages than it can hold. A message is acknowledged only once the
store no longer needs it (see :class:`~offload.broker.base.MessageConsumer`), so a worker that
dies (SIGKILL) leaves its messages unacked and RabbitMQ delivers them to another worker.

``connect_robust`` reconnects after a broker restart and reopens the channels (their qos and
declarations included). Messages received before the break cannot be acked any more (their
channel is gone); RabbitMQ delivers them again, and the store's claim fences the copies off, so
a job still runs once.

The hot paths go to the ``aiormq`` channel under aio-pika's robust one: publishing is
``basic_publish`` with prebuilt properties, and a consumer is a raw ``basic_consume`` callback
that reads the ``DeliveredMessage`` itself. aio-pika builds an ``IncomingMessage`` per
delivery (and an ``aio_pika.Message`` per publish): most of a worker's per-message CPU on
no-op jobs. Since aio-pika only re-registers the consumers it made, the consumer registers its
own again from the channel's reopen callback (see :meth:`RabbitConsumer._on_reopen`).

Priorities: RabbitMQ 3.10 (the version here) refuses ``x-max-priority`` on quorum queues
(priority support for quorum queues arrived in 4.0). A queue is FIFO; a consumer hands the
messages it has received highest priority first, so priority decides within a worker's
prefetch window, not across a backlog. See docs/brokers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from ..config import redact_url
from ..errors import BrokerAccessDenied
from ..store import Store
from .base import Broker, BrokerUnavailable, Delivery, Message, MessageConsumer

log = logging.getLogger("offload.broker.rabbitmq")

DEAD_LETTER_CAP = 100_000
"""Most messages kept in ``<prefix>.dead``; the oldest go first (the store keeps them all)."""

DISCOVER_INTERVAL = 2.0
"""How often a consumer for every queue (``queues=None``) looks in the store for new queue
names: RabbitMQ has no AMQP call that lists queues."""

PUBLISH_TIMEOUT = 10.0
"""Seconds to wait for a publisher confirm before calling the broker unavailable."""

_SETTLE_ROUNDS = 3
"""Event-loop turns a receive waits for deliveries already read from the socket."""

_ERRORS = (aio_pika.exceptions.AMQPError, aiormq.exceptions.AMQPError, OSError, TimeoutError)
_REFUSALS = (
    aiormq.exceptions.ChannelAccessRefused,
    aiormq.exceptions.ProbableAuthenticationError,
    aiormq.exceptions.AuthenticationError,
    aiormq.exceptions.ConnectionNotAllowed,
)
"""What RabbitMQ answers to a wrong password, a vhost the user may not use, or a missing
permission: retrying will not help, so these become :class:`BrokerAccessDenied`."""


class Names:
    """Every exchange and queue name the broker uses, in one place (see the module doc)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.exchange = f"{prefix}.jobs"
        self.dead = f"{prefix}.dead"

    def queue(self, name: str) -> str:
        return f"{self.prefix}.q.{name}"


class RabbitBroker(Broker):
    """``OFFLOAD_BROKER_URL=amqp://user:password@host:5672/vhost``.

    >>> broker = RabbitBroker("amqp://guest:guest@127.0.0.1/", prefix="offload")
    >>> await broker.connect()
    >>> await broker.publish([Message(job.id, job.queue, job.priority)])
    """

    scheme: ClassVar[str] = "amqp"
    backlog_counts_in_flight: ClassVar[bool] = False

    def __init__(self, url: str, *, prefix: str = "offload") -> None:
        self.url = url
        self.names = Names(prefix)
        self._conn: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        """The confirming channel publishes go through (its aiormq channel, see publish)."""
        self._message_ids = itertools.count()
        self._declared: set[str] = set()
        self._declaring = asyncio.Lock()
        self._created: set[str] = set()
        """RabbitMQ queue names declared through this broker (what :meth:`destroy` deletes)."""
        self._may_declare = True
        """False once RabbitMQ refused a declaration: a publish-only identity relies on the
        workers to declare queues (see :meth:`publish`)."""

    # -- connection --------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._conn is not None:
            return
        try:
            conn = await aio_pika.connect_robust(
                self.url, timeout=10, client_properties={"connection_name": "offload"}
            )
        except _REFUSALS as exc:
            raise BrokerAccessDenied(
                f"RabbitMQ at {redact_url(self.url)} refused the login: {_describe(exc)}"
            ) from None
        except _ERRORS as exc:
            raise BrokerUnavailable(
                f"RabbitMQ at {redact_url(self.url)} is not reachable: {_describe(exc)}"
            ) from None
        try:
            self._publisher = await self._declare_exchange(conn)
        except _REFUSALS as exc:
            await conn.close()
            raise BrokerAccessDenied(
                f"RabbitMQ at {redact_url(self.url)} refused access to {self.names.exchange!r}: "
                f"{_describe(exc)}"
            ) from None
        except _ERRORS as exc:
            await conn.close()
            raise BrokerUnavailable(
                f"RabbitMQ at {redact_url(self.url)} has no usable exchange "
                f"{self.names.exchange!r} ({_describe(exc)}); run `offload broker setup` or "
                "start a worker first"
            ) from None
        self._conn = conn

    async def _declare_exchange(self, conn: AbstractRobustConnection) -> AbstractRobustChannel:
        """Declare the jobs exchange (an identity that may only publish, without the configure
        right, uses the existing one instead); return the confirming channel to publish on."""
        probe = await conn.channel()
        try:
            await probe.declare_exchange(
                self.names.exchange, aio_pika.ExchangeType.DIRECT, durable=True
            )
        except aiormq.exceptions.ChannelAccessRefused:
            self._may_declare = False
        finally:
            with contextlib.suppress(*_ERRORS):
                await probe.close()
        channel = await conn.channel(publisher_confirms=True)
        await channel.get_exchange(self.names.exchange, ensure=True)
        return channel  # type: ignore[return-value]  # a robust connection's channels are robust

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*_ERRORS):
                await conn.close()

    def _connection(self) -> AbstractRobustConnection:
        if self._conn is None:
            raise RuntimeError("RabbitBroker.connect() was not called")
        return self._conn

    # -- topology ----------------------------------------------------------------------------

    async def declare_queue(self, channel: AbstractChannel, name: str) -> AbstractQueue:
        """Declare (idempotently) the quorum queue of offload queue ``name`` and bind it."""
        queue = await channel.declare_queue(
            self.names.queue(name),
            durable=True,
            arguments={"x-queue-type": "quorum", "x-dead-letter-exchange": self.names.dead},
        )
        await queue.bind(self.names.exchange, routing_key=name)
        self._created.add(self.names.queue(name))
        return queue

    async def declare_dead_letters(self, channel: AbstractChannel) -> None:
        exchange = await channel.declare_exchange(
            self.names.dead, aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await channel.declare_queue(
            self.names.dead,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-max-length": DEAD_LETTER_CAP,
                "x-overflow": "drop-head",
            },
        )
        await queue.bind(exchange)
        self._created.add(self.names.dead)

    async def _ensure_queues(self, names: set[str]) -> None:
        """Declare the queues a publish routes to, once per process; on a channel of its own,
        since a refused declaration closes its channel."""
        if not self._may_declare or not (names - self._declared):
            return
        async with self._declaring:
            missing = sorted(names - self._declared)
            if not missing or not self._may_declare:
                return
            channel = await self._connection().channel()
            try:
                for name in missing:
                    await self.declare_queue(channel, name)
                    self._declared.add(name)
            except aiormq.exceptions.ChannelAccessRefused:
                self._may_declare = False
            finally:
                with contextlib.suppress(*_ERRORS):
                    await channel.close()

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish and wait for every confirm. A message no queue is bound for yet (a
        publish-only identity, and no worker declared that queue) comes back as unroutable:
        that raises :class:`BrokerUnavailable`, so the outbox keeps it and tries again."""
        if not messages:
            return
        self._connection()
        assert self._publisher is not None
        exchange = self.names.exchange
        ids = self._message_ids
        try:
            await self._ensure_queues({m.queue for m in messages})
            # After a reconnect this is the reopened channel (it waits for the reconnect).
            channel = await self._publisher.get_underlay_channel()
            # Publishes are pipelined; each waits for its confirm (the message is in the
            # quorum queue's log on disk) and all must succeed. mandatory: an unroutable
            # message comes back instead of being dropped.
            confirms = await asyncio.gather(
                *(
                    channel.basic_publish(
                        m.encode(),
                        exchange=exchange,
                        routing_key=m.queue,
                        properties=_properties(m, next(ids)),
                        mandatory=True,
                        timeout=PUBLISH_TIMEOUT,
                    )
                    for m in messages
                )
            )
        except _REFUSALS as exc:
            raise BrokerAccessDenied(f"RabbitMQ refused to publish: {_describe(exc)}") from None
        except _ERRORS as exc:
            raise BrokerUnavailable(
                f"RabbitMQ did not confirm {len(messages)} message(s): {_describe(exc)}"
            ) from None
        unroutable = sorted(
            {m.queue for m, c in zip(messages, confirms, strict=True) if _returned(c)}
        )
        if unroutable:
            # Declared once but gone (deleted by hand?): declare again on the next publish.
            self._declared.difference_update(unroutable)
            raise BrokerUnavailable(
                f"RabbitMQ has no queue yet for {', '.join(unroutable)}: a worker for it "
                "declares it when it starts"
            )

    # -- consuming ---------------------------------------------------------------------------

    def consumer(
        self,
        store: Store,
        *,
        types: Sequence[str],
        queues: Sequence[str] | None,
        worker_id: str,
        lease_seconds: float,
        capacity: int,
    ) -> RabbitConsumer:
        return RabbitConsumer(
            self,
            store,
            types=types,
            queues=queues,
            worker_id=worker_id,
            lease_seconds=lease_seconds,
            capacity=capacity,
        )

    async def backlog(self, queue: str) -> int | None:
        """Messages ready in the queue (RabbitMQ's declare-ok count; unacked ones are not
        counted, so this is a lower bound)."""
        conn = self._connection()
        channel = await conn.channel()
        try:
            declared = await channel.declare_queue(self.names.queue(queue), passive=True)
            return declared.declaration_result.message_count
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0
        finally:
            with contextlib.suppress(*_ERRORS):
                await channel.close()

    async def queues(self) -> list[str]:
        """The queues this process declared (RabbitMQ cannot list queues over AMQP)."""
        return sorted(self._declared)

    async def check(self, role: str, queues: Sequence[str] | None = None) -> None:
        """Prove this identity can do its job, or raise :class:`BrokerUnavailable` saying what
        RabbitMQ refused. ``publish``: a confirmed publish to the jobs exchange (routed
        nowhere, so dropped). ``consume``: declare the dead-letter queue, declare and consume
        ``queues`` (every queue: a temporary exclusive queue under the prefix), then cancel."""
        conn = self._connection()
        channel = await conn.channel(publisher_confirms=True)
        try:
            if role == "publish":
                exchange = await channel.get_exchange(self.names.exchange, ensure=True)
                probe = aio_pika.Message(b"", content_type="application/x-offload-probe")
                await exchange.publish(probe, f"{self.names.prefix}.probe", mandatory=False)
            elif role == "consume":
                await self.declare_dead_letters(channel)
                if queues:
                    probes = [await self.declare_queue(channel, name) for name in queues]
                else:
                    # A worker of every queue: prove the rights on a queue of our own that
                    # RabbitMQ deletes with this channel, rather than create a real one.
                    probes = [
                        await channel.declare_queue(
                            f"{self.names.prefix}.q.probe-{uuid.uuid4().hex[:12]}",
                            exclusive=True,
                            auto_delete=True,
                        )
                    ]
                for queue in probes:
                    tag = await queue.consume(_drop, no_ack=False)
                    await queue.cancel(tag)
            else:
                raise ValueError(f"role must be 'publish' or 'consume', not {role!r}")
        except _REFUSALS as exc:
            raise BrokerAccessDenied(
                f"RabbitMQ at {redact_url(self.url)} refused to let this identity {role}: "
                f"{_describe(exc)}"
            ) from None
        except _ERRORS as exc:
            raise BrokerUnavailable(
                f"RabbitMQ at {redact_url(self.url)} failed the {role} check: {_describe(exc)}"
            ) from None
        finally:
            with contextlib.suppress(*_ERRORS):
                await channel.close()

    async def destroy(self) -> None:
        """Delete the dead-letter queue, the queues declared through this broker, and the two
        exchanges. Queues only other processes declared are left (their names are unknown
        here: RabbitMQ cannot list queues over AMQP)."""
        channel = await self._connection().channel()
        try:
            for name in sorted(self._created | {self.names.dead}):
                await channel.queue_delete(name)
            for name in (self.names.exchange, self.names.dead):
                await channel.exchange_delete(name)
        finally:
            self._created.clear()
            self._declared.clear()
            with contextlib.suppress(*_ERRORS):
                await channel.close()


class RabbitConsumer(MessageConsumer):
    """One worker's consumer: its own channel, ``prefetch_count`` = the worker's capacity, a
    manual-ack consumer per offload queue, and a local buffer handed out by priority."""

    def __init__(
        self,
        broker: RabbitBroker,
        store: Store,
        *,
        types: Sequence[str],
        queues: Sequence[str] | None,
        worker_id: str,
        lease_seconds: float,
        capacity: int,
    ) -> None:
        super().__init__(store, types=types, worker_id=worker_id, lease_seconds=lease_seconds)
        self.broker = broker
        self.queues = list(queues) if queues else None
        self.capacity = max(1, capacity)
        self._channel: AbstractRobustChannel | None = None
        self._raw: aiormq.abc.AbstractChannel | None = None
        """The aiormq channel under ``_channel`` that the consumers below are registered on."""
        self._consuming: dict[str, str] = {}
        """Offload queue name -> consumer tag, on ``_raw``."""
        self._consume_lock = asyncio.Lock()
        self._buffer: list[tuple[int, int, Delivery]] = []
        self._order = itertools.count()
        self._arrived = asyncio.Event()
        self._discovering: asyncio.Task[None] | None = None
        self._reconsuming: asyncio.Future[None] | None = None
        self._unacked: dict[Any, set[int]] = {}
        """Delivery tags received and not acknowledged yet, per aiormq channel."""

    async def _start(self) -> None:
        """Open the channel and consume (again after a failure: each step is idempotent)."""
        if self._channel is None:
            channel: Any = await self.broker._connection().channel()
            await channel.set_qos(prefetch_count=self.capacity)
            await self.broker.declare_dead_letters(channel)
            # aio-pika reopens the channel after a reconnect (qos and declarations included)
            # but knows nothing of consumers registered on the aiormq channel under it.
            channel.reopen_callbacks.add(self._on_reopen)
            self._channel = channel
        if self.queues is not None:
            raw = self._raw
            if raw is None or raw.is_closed or len(self._consuming) < len(self.queues):
                await self._consume(self.queues)
        elif self._discovering is None:
            await self._discover()
            self._discovering = asyncio.create_task(self._discover_forever())

    def _on_reopen(self, _channel: object) -> None:
        """The robust channel came back on a new connection: consume again now rather than at
        the next :meth:`receive` (which would too), retrying while the node still recovers its
        quorum queues (a declaration then fails with INTERNAL_ERROR for a while)."""
        if self._reconsuming is None or self._reconsuming.done():
            self._reconsuming = asyncio.ensure_future(self._consume_again())

    async def _consume_again(self) -> None:
        delay = 0.2
        while self._channel is not None and not self._channel.is_closed:
            try:
                await self._consume(list(self._consuming))
                return
            except Exception as exc:
                log.warning("consuming again after a reconnect failed (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _discover(self) -> None:
        await self._consume([q.name for q in await self.store.queue_list()])

    async def _discover_forever(self) -> None:
        """Off the take path: a slow store query must not delay a delivery."""
        while True:
            await asyncio.sleep(DISCOVER_INTERVAL)
            try:
                await self._discover()
            except Exception as exc:
                log.warning("looking for new queues failed (%s); trying again", exc)

    async def _consume(self, names: Sequence[str]) -> None:
        assert self._channel is not None
        async with self._consume_lock:  # a reopen and a receive may both get here
            raw = await self._channel.get_underlay_channel()
            if raw is not self._raw:
                # A new aiormq channel (reconnected): the old consumer tags died with the old.
                self._raw = raw
                self._consuming = dict.fromkeys(self._consuming, "")
                raw.on_consumer_cancel_callbacks.add(self._on_cancel)
            for name in names:
                if self._consuming.get(name):
                    continue
                queue = await self.broker.declare_queue(self._channel, name)
                ok = await raw.basic_consume(queue.name, self._on_delivery, no_ack=False)
                self._consuming[name] = ok.consumer_tag or ""

    def _on_cancel(self, frame: Basic.Cancel) -> None:
        """RabbitMQ cancelled a consumer (its queue was deleted): the next :meth:`receive`
        declares the queue and consumes again."""
        for name, tag in self._consuming.items():
            if tag == frame.consumer_tag:
                self._consuming[name] = ""

    async def _on_delivery(self, delivered: DeliveredMessage) -> None:
        """aiormq's consumer callback, one per delivery: no objects beyond the offload
        :class:`Message` and :class:`Delivery` (whose tag is ``(channel, delivery_tag)``)."""
        frame: Any = delivered.delivery
        channel = delivered.channel
        tag: int = frame.delivery_tag
        try:
            message = Message.decode(delivered.body)
        except ValueError:
            log.warning("dead-lettering a message that is not an offload message")
            with contextlib.suppress(*_ERRORS):
                await channel.basic_reject(tag, requeue=False)
            return
        delivery = Delivery(message, (channel, tag), bool(frame.redelivered))
        heapq.heappush(self._buffer, (-message.priority, next(self._order), delivery))
        self._unacked.setdefault(channel, set()).add(tag)
        self._arrived.set()

    async def receive(self, limit: int, wait: float) -> list[Delivery]:
        try:
            await self._start()
        except _REFUSALS as exc:
            raise BrokerAccessDenied(f"RabbitMQ refused the consumer: {_describe(exc)}") from None
        except _ERRORS as exc:
            raise BrokerUnavailable(f"RabbitMQ refused the consumer: {_describe(exc)}") from None
        if not self._buffer and wait > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait)
        # Deliveries read in the same socket read are dispatched one task each: let them land,
        # so one store claim covers the whole burst instead of its first message.
        for _ in range(_SETTLE_ROUNDS):
            if len(self._buffer) >= limit:
                break
            await asyncio.sleep(0)
        taken: list[Delivery] = []
        while self._buffer and len(taken) < limit:
            taken.append(heapq.heappop(self._buffer)[2])
        return taken

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge with as few frames as possible: the tags below the oldest delivery still
        held go in one ``multiple`` ack; the others one by one."""
        by_channel: dict[Any, set[int]] = {}
        for delivery in deliveries:
            channel, tag = delivery.tag
            by_channel.setdefault(channel, set()).add(tag)
        for channel, tags in by_channel.items():
            unacked = self._unacked.get(channel, set())
            unacked -= tags
            if channel.is_closed:
                # The connection broke after these arrived: RabbitMQ has requeued them already
                # and the store fences the copies it delivers again.
                self._unacked.pop(channel, None)
                continue
            oldest_held = min(unacked, default=None)
            below = [t for t in tags if oldest_held is None or t < oldest_held]
            rest = [t for t in tags if oldest_held is not None and t > oldest_held]
            with contextlib.suppress(*_ERRORS):
                if below:
                    await channel.basic_ack(max(below), multiple=True)
                for tag in rest:
                    await channel.basic_ack(tag)

    async def dead_letter(self, deliveries: Sequence[Delivery]) -> None:
        """Reject without requeue: the quorum queue moves the message to ``<prefix>.dead``.
        Rejected before any ``multiple`` ack that would otherwise cover its tag."""
        for delivery in deliveries:
            channel, tag = delivery.tag
            self._unacked.get(channel, set()).discard(tag)
            if channel.is_closed:
                continue
            with contextlib.suppress(*_ERRORS):
                await channel.basic_reject(tag, requeue=False)

    async def close(self) -> None:
        if self._reconsuming is not None:
            self._reconsuming.cancel()
            await asyncio.gather(self._reconsuming, return_exceptions=True)
            self._reconsuming = None
        if self._discovering is not None:
            self._discovering.cancel()
            await asyncio.gather(self._discovering, return_exceptions=True)
            self._discovering = None
        channel, self._channel = self._channel, None
        self._raw = None
        self._consuming.clear()
        self._buffer.clear()
        self._unacked.clear()
        if channel is not None:
            with contextlib.suppress(*_ERRORS):
                await channel.close()


async def _drop(incoming: AbstractIncomingMessage) -> None:
    """The start-up check's consumer: never acks, so anything it got is delivered again."""


def _returned(confirm: object) -> bool:
    """A mandatory publish nobody could route comes back instead of being confirmed."""
    return isinstance(confirm, aiormq.abc.DeliveredMessage)


def _properties(message: Message, serial: int) -> Basic.Properties:
    """Persistent, JSON. A message id of our own (aiormq would draw a random one): it matches a
    returned (unroutable) message to its publish, so it must be unique among those in flight,
    and each call needs its own object because aiormq writes the id into it."""
    return Basic.Properties(
        content_type="application/json",
        delivery_mode=2,
        message_id=f"{message.job_id.hex}.{serial}",
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["DEAD_LETTER_CAP", "Names", "RabbitBroker", "RabbitConsumer"]
