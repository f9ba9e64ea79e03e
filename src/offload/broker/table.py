"""The table queue: the store's own jobs table is the broker (the embedded default).

There are no messages: a job row is its own message, and the claim query
(:meth:`~offload.store.Store.job_claim`: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
``UPDATE … RETURNING`` on SQLite) is the queue, ordered by priority and ``run_at``. New work
wakes idle workers through the store's push (``LISTEN/NOTIFY``) or its poll interval; the
worker waits for those itself, so :meth:`TableConsumer.take` never blocks.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import ClassVar

from ..jobs import Job
from ..store import Store
from .base import Broker, Consumer, Message


class TableConsumer(Consumer):
    blocking: ClassVar[bool] = False
    acks: ClassVar[bool] = False

    def __init__(
        self,
        store: Store,
        *,
        types: Sequence[str],
        queues: Sequence[str] | None,
        worker_id: str,
        lease_seconds: float,
    ) -> None:
        self.store = store
        self.types = list(types)
        self.queues = list(queues) if queues else None
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds

    async def take(self, limit: int, wait: float) -> list[Job]:
        return await self.store.job_claim(
            types=self.types,
            queues=self.queues,
            limit=limit,
            worker_id=self.worker_id,
            lease_seconds=self.lease_seconds,
        )

    async def settle(
        self, job_ids: Sequence[uuid.UUID], *, failed: Sequence[uuid.UUID] = ()
    ) -> None:
        return None


class TableBroker(Broker):
    """``OFFLOAD_BROKER_URL`` unset (or ``table:``): claim straight from the jobs table."""

    scheme: ClassVar[str] = "table"
    carries_messages: ClassVar[bool] = False

    def __init__(self, url: str = "table:") -> None:
        self.url = url

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(self, messages: Sequence[Message]) -> None:
        # The row is the message, and the store already woke the workers when it was written.
        return None

    def consumer(
        self,
        store: Store,
        *,
        types: Sequence[str],
        queues: Sequence[str] | None,
        worker_id: str,
        lease_seconds: float,
        capacity: int,
    ) -> TableConsumer:
        return TableConsumer(
            store, types=types, queues=queues, worker_id=worker_id, lease_seconds=lease_seconds
        )
