"""The broker contract: how job ids travel from submitters to workers.

A broker is transit only. The store holds every job and decides every claim; a message carries
a job id and the routing a broker needs (queue, priority), never the job itself. Delivery is
at-least-once: a message may arrive twice, late, or for a job that was canceled meanwhile, and
that is always harmless, because the worker claims the delivered ids in the store
(:meth:`~offload.store.Store.job_claim_ids`: one fenced statement) and runs only what the store
gave it. Whatever a broker forgets, the outbox and the reconciler republish from the store.

Two sides:

- :class:`Broker` — one connection, shared by publishers: :meth:`Broker.publish` and, for a
  worker, :meth:`Broker.consumer`.
- :class:`Consumer` — what one worker takes jobs through: :meth:`Consumer.take` hands back jobs
  already claimed in the store, :meth:`Consumer.settle` acknowledges their messages once the
  store no longer needs them (outcome written, attempt fenced off, or job handed back).

Implementations: :class:`~offload.broker.table.TableBroker` (the store's own jobs table: no
messages at all, the claim query is the queue), and message brokers built on
:class:`MessageConsumer` (Redis Streams, RabbitMQ), which only need to move
:class:`Message` objects. One contract suite (``tests/broker``) runs against each.
"""

from __future__ import annotations

import abc
import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from ..errors import BrokerUnavailable
from ..jobs import Job
from ..store import Store

__all__ = ["Broker", "BrokerUnavailable", "Consumer", "Delivery", "Message", "MessageConsumer"]


@dataclass(frozen=True, slots=True)
class Message:
    """What a broker carries for one job: its id and where it goes.

    >>> Message.decode(Message(job_id, "reports", 5).encode()) == Message(job_id, "reports", 5)
    True
    """

    job_id: uuid.UUID
    queue: str
    priority: int = 0

    def encode(self) -> bytes:
        """The wire format every broker uses for a message body:
        ``{"id": "<uuid>", "q": "<queue>", "p": <priority>}`` (compact JSON)."""
        return orjson.dumps({"id": str(self.job_id), "q": self.queue, "p": self.priority})

    @classmethod
    def decode(cls, data: bytes | str) -> Message:
        """Raise ValueError on a malformed body (a broker acks and drops such messages)."""
        try:
            raw = orjson.loads(data)
            return cls(uuid.UUID(raw["id"]), str(raw["q"]), int(raw.get("p", 0)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(f"not an offload message: {data[:100]!r}") from None

    @classmethod
    def of(cls, job: Job) -> Message:
        return cls(job.id, job.queue, job.priority)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One received copy of a message. ``tag`` is the broker's own handle for acknowledging
    it (a stream entry id, an AMQP delivery tag); only the broker that made it reads it."""

    message: Message
    tag: Any
    redelivered: bool = False
    """The broker handed this copy out before (a consumer died or gave it back)."""


class Consumer(abc.ABC):
    """Takes jobs for one worker. Not shared between workers; close it when done."""

    blocking: ClassVar[bool] = True
    """True: :meth:`take` itself waits up to ``wait`` seconds for work. False (the table
    queue): it returns at once and the worker waits for the store's wake-ups."""

    acks: ClassVar[bool] = True
    """False when :meth:`settle` does nothing (the table queue), so the worker skips it."""

    @abc.abstractmethod
    async def take(self, limit: int, wait: float) -> list[Job]:
        """Up to ``limit`` jobs, each already claimed in the store (``running``, leased to this
        worker), highest priority first. Waits at most ``wait`` seconds when nothing is there
        (blocking consumers), or returns ``[]`` at once."""

    @abc.abstractmethod
    async def settle(
        self, job_ids: Sequence[uuid.UUID], *, failed: Sequence[uuid.UUID] = ()
    ) -> None:
        """Acknowledge the messages of these taken jobs: the store no longer needs them (the
        outcome is durable, the attempt was fenced off, or the job was handed back and
        republished). Ids not taken through this consumer are ignored. ``failed``: those of
        ``job_ids`` whose written outcome is ``failed`` (dead-lettered in the store); a broker
        with a dead-letter queue of its own moves their messages there."""

    def interrupt(self) -> None:  # noqa: B027 - only blocking consumers need it
        """Make a :meth:`take` that is waiting return now (the worker is stopping)."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Stop receiving. Messages taken but not settled stay with the broker and are
        delivered again (to another worker, or this one after a restart)."""


class Broker(abc.ABC):
    """One broker connection. Open with :func:`offload.broker.open_broker`."""

    scheme: ClassVar[str]
    """``table``, ``redis``, ``amqp``: what the URL starts with."""
    url: str

    carries_messages: ClassVar[bool] = True
    """False for the table queue, where the job row is the message: no outbox, no publishing,
    no reconciler."""

    backlog_counts_in_flight: ClassVar[bool] = True
    """False when :meth:`backlog` can only see waiting messages, not delivered-but-unacked ones
    (RabbitMQ over AMQP: queue.declare-ok counts ready messages only). The count is then a lower
    bound, short by at most the messages workers hold and have not claimed yet."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Raise :class:`BrokerUnavailable` if the broker cannot be reached."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def publish(self, messages: Sequence[Message]) -> None:
        """Hand all ``messages`` to the broker, in one batch where it can, and return once the
        broker has them (publisher confirms where it has them). Raise
        :class:`BrokerUnavailable` if it cannot: the caller keeps them in the outbox."""

    @abc.abstractmethod
    def consumer(
        self,
        store: Store,
        *,
        types: Sequence[str],
        queues: Sequence[str] | None,
        worker_id: str,
        lease_seconds: float,
        capacity: int,
    ) -> Consumer:
        """A consumer for one worker: ``queues`` None means every queue, ``capacity`` the most
        jobs it holds at once (a broker's prefetch)."""

    async def backlog(self, queue: str) -> int | None:
        """Messages the broker holds for ``queue`` that were not acknowledged yet (waiting and
        in flight), or None if it cannot tell. The reconciler compares it with the store."""
        return None

    async def check(self, role: str, queues: Sequence[str] | None = None) -> None:  # noqa: B027
        """Prove at start-up that this identity can do its side's job: ``publish`` (the API) or
        ``consume`` (a worker of ``queues``, None for every queue). Raise
        :class:`BrokerUnavailable` saying what the broker refused; the default checks nothing
        (the table queue needs no broker rights)."""

    async def destroy(self) -> None:  # noqa: B027 - the table queue creates nothing
        """Delete everything this broker created under its prefix (streams, keys, queues,
        users): for tests and for tearing a deployment down. Never touches other names."""


class MessageConsumer(Consumer):
    """The store-side half every message broker shares: receive deliveries, claim exactly
    their job ids in the store in one statement, ack at once what claimed nothing (duplicates,
    canceled or finished jobs, paused queues, jobs not yet due), and keep the rest until
    :meth:`settle`. A broker implements :meth:`receive` and :meth:`ack` only."""

    def __init__(
        self,
        store: Store,
        *,
        types: Sequence[str],
        worker_id: str,
        lease_seconds: float,
    ) -> None:
        self.store = store
        self.types = list(types)
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self._held: dict[uuid.UUID, list[Delivery]] = {}
        self._interrupted = False
        self._receiving: asyncio.Future[list[Delivery]] | None = None

    @abc.abstractmethod
    async def receive(self, limit: int, wait: float) -> list[Delivery]:
        """Up to ``limit`` deliveries, waiting at most ``wait`` seconds for the first."""

    @abc.abstractmethod
    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge: the broker forgets these copies for good."""

    def interrupt(self) -> None:
        self._interrupted = True
        if self._receiving is not None:
            # Copies read but not yet handed over stay unacknowledged: delivered again later.
            self._receiving.cancel()

    async def take(self, limit: int, wait: float) -> list[Job]:
        deliveries = await self._receive_or_interrupt(limit, wait)
        if not deliveries:
            return []
        return await self._claim(deliveries)

    async def _receive_or_interrupt(self, limit: int, wait: float) -> list[Delivery]:
        if self._interrupted:
            return []
        # One task, so interrupt() can cancel the wait without cancelling the caller.
        self._receiving = asyncio.ensure_future(self.receive(limit, wait))
        try:
            return await self._receiving
        except asyncio.CancelledError:
            if not self._interrupted:
                raise
            return []
        finally:
            self._receiving = None

    async def _claim(self, deliveries: list[Delivery]) -> list[Job]:
        by_id: dict[uuid.UUID, list[Delivery]] = {}
        for delivery in deliveries:
            by_id.setdefault(delivery.message.job_id, []).append(delivery)
        jobs = await self.store.job_claim_ids(
            list(by_id),
            types=self.types,
            worker_id=self.worker_id,
            lease_seconds=self.lease_seconds,
        )
        for job in jobs:
            self._held.setdefault(job.id, []).extend(by_id.pop(job.id))
        # Not claimed: the store says there is nothing to run for them right now. Whoever makes
        # such a job runnable again (promote, replay, resume, reaper) publishes it anew.
        unclaimed = [d for copies in by_id.values() for d in copies]
        if unclaimed:
            await self.ack(unclaimed)
        return jobs

    async def settle(
        self, job_ids: Sequence[uuid.UUID], *, failed: Sequence[uuid.UUID] = ()
    ) -> None:
        dead_ids = set(failed)
        done: list[Delivery] = []
        dead: list[Delivery] = []
        for job_id in job_ids:
            (dead if job_id in dead_ids else done).extend(self._held.pop(job_id, ()))
        if dead:
            await self.dead_letter(dead)
        if done:
            await self.ack(done)

    async def dead_letter(self, deliveries: Sequence[Delivery]) -> None:
        """Messages of jobs that failed for good. A broker with a dead-letter queue of its own
        (RabbitMQ) moves them there; by default they are acknowledged like any other."""
        await self.ack(deliveries)
