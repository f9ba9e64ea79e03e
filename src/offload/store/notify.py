"""The store's notification side: webhook endpoints, tenant signing secrets, a job's own
targets, deliveries with their attempts, and feed cursors.

A delivery is one event for one target (a registered endpoint, a job's own webhook or its
email address). Rows are created idempotently (``dedupe_key`` is unique per event and target),
claimed under a lease like jobs (several dispatchers may run; PostgreSQL uses ``FOR UPDATE SKIP
LOCKED``), and every attempt is recorded. Secrets are stored as given, not hashed: the
dispatcher needs them to sign.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

DeliveryStatus = Literal["pending", "delivering", "succeeded", "failed"]
Channel = Literal["webhook", "email"]
Verdict = Literal["succeeded", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class Notify:
    """Where a job's own terminal events go (``options.notify``)."""

    webhook: str | None = None
    email: str | None = None

    def __bool__(self) -> bool:
        return bool(self.webhook or self.email)


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    id: str
    tenant: str
    url: str
    events: tuple[str, ...]
    secret: str
    """``whsec_`` + base64 of the signing key."""
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class NewDelivery:
    id: str
    """``msg_…``: the ``webhook-id`` header, the same on every attempt."""
    dedupe_key: str
    """Unique per event and target: the same event seen twice creates one delivery."""
    tenant: str
    channel: Channel
    endpoint_id: str | None
    target: str
    job_id: uuid.UUID
    event_type: str
    payload: str
    """The exact body sent (and signed), fixed when the delivery is created."""


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    tenant: str
    channel: Channel
    endpoint_id: str | None
    target: str
    job_id: uuid.UUID
    event_type: str
    payload: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    deadline_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    n: int
    attempted_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one attempt went and what happens next, written by :meth:`delivery_record`."""

    delivery_id: str
    attempt: int
    """The attempt number the claim handed out (the fence)."""
    owner: str
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    verdict: Verdict
    retry_in: float = 0.0
    """Seconds until the next attempt (``retry``)."""
    disable_endpoint: bool = False
    """410 Gone: the endpoint is disabled along with this delivery."""


class NotifyStore(abc.ABC):
    """What the dispatcher and the webhook routes need from a store."""

    # -- endpoints -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def webhook_insert(
        self, endpoint_id: str, tenant: str, url: str, events: Sequence[str], secret: str
    ) -> WebhookEndpoint: ...

    @abc.abstractmethod
    async def webhook_get(self, endpoint_id: str) -> WebhookEndpoint | None: ...

    @abc.abstractmethod
    async def webhook_list(self, tenant: str | None = None) -> list[WebhookEndpoint]:
        """Oldest first; every tenant's when ``tenant`` is None."""

    @abc.abstractmethod
    async def webhook_delete(self, endpoint_id: str) -> bool:
        """Delete it; its pending deliveries fail (``endpoint deleted``)."""

    @abc.abstractmethod
    async def webhook_set_secret(self, endpoint_id: str, secret: str) -> WebhookEndpoint | None:
        """Rotate: the next attempt of every delivery signs with the new secret."""

    @abc.abstractmethod
    async def tenant_secret(self, tenant: str, candidate: str) -> str:
        """The tenant's signing secret; ``candidate`` becomes it if it has none yet."""

    @abc.abstractmethod
    async def tenant_secret_rotate(self, tenant: str, secret: str) -> str: ...

    # -- a job's own targets ---------------------------------------------------------------

    @abc.abstractmethod
    async def job_notify_get(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Notify]: ...

    # -- deliveries ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def feed_cursor_take(
        self, name: str, holder: str, lease_seconds: float
    ) -> tuple[bool, str | None]:
        """Take or renew the lease on feed cursor ``name``: (held, position). Only the holder
        reads the feed; the others deliver."""

    @abc.abstractmethod
    async def feed_cursor_release(self, name: str, holder: str) -> None:
        """Give the lease up (a graceful stop) so another dispatcher takes over at once."""

    @abc.abstractmethod
    async def delivery_enqueue(
        self,
        deliveries: Sequence[NewDelivery],
        retry_window: float,
        cursor: tuple[str, str, str] | None = None,
    ) -> int:
        """Insert the deliveries that do not exist yet (by ``dedupe_key``), due now, and in the
        same transaction move cursor (name, holder, position) if its holder still holds it.
        Return how many were new."""

    @abc.abstractmethod
    async def delivery_claim(self, owner: str, limit: int, lease_seconds: float) -> list[Delivery]:
        """Take due deliveries (pending and due, or delivering with an expired lease); each
        gets ``attempts + 1`` and a lease. Deliveries of a disabled endpoint fail instead."""

    @abc.abstractmethod
    async def delivery_record(self, result: AttemptResult) -> bool:
        """Record the attempt and move the delivery on; False if fenced off (the lease was
        lost and the delivery claimed again)."""

    @abc.abstractmethod
    async def delivery_get(self, delivery_id: str) -> Delivery | None: ...

    @abc.abstractmethod
    async def delivery_list(
        self,
        *,
        endpoint_id: str | None = None,
        job_id: uuid.UUID | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> list[Delivery]:
        """Newest first (ids are time-ordered); ``after`` is the last id of the previous page."""

    @abc.abstractmethod
    async def delivery_attempts(self, delivery_id: str) -> list[DeliveryAttempt]: ...

    @abc.abstractmethod
    async def delivery_resend(self, delivery_id: str, retry_window: float) -> Delivery | None:
        """Send again (a finished delivery, or a pending one now): pending, due now, a fresh
        retry window; the same ``webhook-id``. None if there is no such delivery."""
