"""The store contract: the jobs table, its event log, queue settings and idempotency keys.

The store is the source of truth. Every state change is a named, guarded update built from
:mod:`offload.states`; methods that act for one attempt take its ``attempt`` number and do
nothing (returning False / None) when it is no longer current. That is the fence: a worker
whose lease expired and whose job was claimed again cannot write anything.

Implementations: :class:`~offload.store.sqlite.SQLiteStore` (embedded, the default) and
:class:`~offload.store.postgres.PostgresStore`. One contract suite (``tests/contract``) runs
unchanged against both.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..errors import IllegalTransition
from ..jobs import NO_PROGRESS, Job, JobEvent, JobStatus
from ..states import ALLOWED
from ..types import JSON
from .notify import Notify


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job about to be inserted; ``input`` is already validated and JSON-ready."""

    id: uuid.UUID
    type: str
    queue: str
    priority: int
    input: JSON
    max_attempts: int
    delay: float = 0.0
    """Seconds from now until it may run; > 0 makes it ``scheduled``."""
    owner: str = "default"
    idempotency_key: str | None = None
    request_hash: str | None = None
    trace_context: dict[str, str] | None = None
    notify: Notify | None = None
    """Where the job's own terminal events go (``options.notify``)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, written by :meth:`Store.job_finish_many`."""

    job_id: uuid.UUID
    attempt: int
    status: JobStatus
    """SUCCEEDED, RETRYING, FAILED or CANCELED."""
    result: str | None = None
    """The result already encoded as JSON text (encoding errors belong to the attempt)."""
    error_code: str | None = None
    error_message: str | None = None
    error_detail: str | None = None
    retry_delay: float = 0.0
    worker_id: str | None = None
    """The claiming worker; when given, the write is fenced on it as well as on the attempt."""


OUTCOME_STATUSES = ALLOWED[JobStatus.RUNNING] - {JobStatus.QUEUED}
"""How an attempt may end. RUNNING → QUEUED is allowed too, but only as a release
(:meth:`Store.job_release`, which gives the attempt back); it is not an outcome."""


def ensure_outcome(outcome: Outcome) -> None:
    """Refuse (:class:`~offload.errors.IllegalTransition`) a status no attempt may end with."""
    if outcome.status not in OUTCOME_STATUSES:
        raise IllegalTransition(outcome.job_id, JobStatus.RUNNING.value, outcome.status.value)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A job a message broker must hear about: one outbox row (``seq`` is the job's event
    sequence number of the change that wrote it; 0 for a republish by the reconciler)."""

    job_id: uuid.UUID
    seq: int
    queue: str
    priority: int


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a running job. Every write of an attempt is fenced on ``attempt`` and, when
    given, on ``worker_id`` too: claims may be committed asynchronously (a database crash can
    forget one and hand the same attempt number out again), the worker id still tells the two
    holders apart."""

    job_id: uuid.UUID
    attempt: int
    worker_id: str | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    lost: frozenset[uuid.UUID]
    """Leases this worker no longer holds: stop those attempts."""
    cancel_requested: frozenset[uuid.UUID]


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    paused: bool
    waiting: int
    """Jobs due now or later that no worker holds (queued, scheduled, retrying)."""
    running: int
    oldest_waiting_at: datetime | None
    """When the oldest due job became runnable: the queue's lag starts there."""


@dataclass(frozen=True, slots=True)
class JobFilter:
    status: Sequence[JobStatus] | None = None
    type: str | None = None
    queue: str | None = None
    owner: str | None = None
    error_code: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    finished_after: datetime | None = None
    finished_before: datetime | None = None
    discarded: bool | None = None
    """False: leave out discarded dead letters (the dead-letter list); True: only those."""

    @classmethod
    def dead_letters(
        cls,
        *,
        type: str | None = None,
        error_code: str | None = None,
        owner: str | None = None,
        failed_after: datetime | None = None,
        failed_before: datetime | None = None,
    ) -> JobFilter:
        """The dead-letter list: failed for good and not discarded."""
        return cls(
            status=[JobStatus.FAILED],
            type=type,
            error_code=error_code,
            owner=owner,
            finished_after=failed_after,
            finished_before=failed_before,
            discarded=False,
        )


ROLES = ("client", "viewer", "admin")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: everything but the key itself, of which only a hash is kept."""

    id: str
    """Public and stable: shown in listings and recorded as the actor of admin actions."""
    tenant: str
    role: str
    """``client`` (its tenant's jobs), ``viewer`` (reads everything) or ``admin``."""
    name: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which feed events to return; None (or empty) means any."""

    owner: str | None = None
    """The job's tenant."""
    event_types: Sequence[str] | None = None
    """``job.queued``, ``job.progress``, …"""
    job_types: Sequence[str] | None = None
    queues: Sequence[str] | None = None
    notify_owners: Sequence[str] | None = None
    """Only jobs someone is to be told about: jobs with notify targets of their own, and jobs
    of these tenants (those with webhook endpoints). None means any job; an empty list, only
    jobs with targets of their own. The webhook dispatcher's filter: it need not read (and
    build) the events of every job that nobody listens to."""


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One event of the global feed with the job it belongs to."""

    cursor: str
    """Opaque position of this event in the feed: pass to :meth:`Store.events_after` to get
    the events after it."""
    event: JobEvent
    job: Job
    """The job as it is now (its owner, type and queue never change; the rest may have moved
    on since the event: see :func:`offload.events.payload.job_as_of`)."""


@dataclass(frozen=True, slots=True)
class FeedPage:
    events: list[FeedEvent]
    cursor: str
    """Where to continue: after the last event returned, or further when the page is not full
    (the filtered-out stretch already read is not read again)."""


def inserted_job(job: NewJob, now: datetime) -> Job:
    """The snapshot of a job just inserted at ``now``, built without reading it back."""
    delayed = job.delay > 0
    return Job(
        id=job.id,
        type=job.type,
        queue=job.queue,
        priority=job.priority,
        status=JobStatus.SCHEDULED if delayed else JobStatus.QUEUED,
        input=job.input,
        attempt=0,
        max_attempts=job.max_attempts,
        run_at=now + timedelta(seconds=job.delay) if delayed else now,
        progress=NO_PROGRESS,
        checkpoint=None,
        result=None,
        error=None,
        error_detail=None,
        owner=job.owner,
        idempotency_key=job.idempotency_key,
        cancel_requested=False,
        created_at=now,
        updated_at=now,
        started_at=None,
        finished_at=None,
        event_seq=1,
    )


class Store(abc.ABC):
    """One database. Open with :func:`offload.store.open_store`; close with :meth:`close`.

    Both implementations also implement :class:`~offload.store.notify.NotifyStore`
    (webhooks, email, deliveries)."""

    url: str
    supports_push: bool = False
    """True when the database tells :meth:`on_jobs` listeners about new work (no polling)."""
    outbox: bool = False
    """True with a message broker: every change that makes a job runnable (insert, promote,
    release, replay, resume) also writes an outbox row in the same transaction. Set before
    use; the table queue leaves it off and pays nothing."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections; raise :class:`~offload.errors.StoreUnavailable` if it cannot."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    # -- schema ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied (concurrency-safe)."""

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    # -- submitting ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def job_insert(self, job: NewJob, idempotency_ttl: float) -> tuple[Job, bool]:
        """Insert one job; return it and whether it is new.

        With an idempotency key already used by ``job.owner`` (and not expired) the original
        job is returned with False, or :class:`~offload.errors.IdempotencyConflict` is raised
        when ``job.request_hash`` differs. Concurrent inserts with one key create one job.
        """

    @abc.abstractmethod
    async def job_insert_many(self, jobs: Sequence[NewJob]) -> list[Job]:
        """Insert many jobs (no idempotency keys) in one transaction."""

    # -- reading -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def job_get(self, job_id: uuid.UUID) -> Job | None: ...

    @abc.abstractmethod
    async def job_list(
        self,
        where: JobFilter,
        *,
        limit: int = 50,
        after: uuid.UUID | None = None,
    ) -> list[Job]:
        """Newest first (by id: UUIDv7 ids are time-ordered, and the primary key serves the
        order without an index of its own); ``after`` is the id of the last job of the
        previous page."""

    @abc.abstractmethod
    async def job_events(self, job_id: uuid.UUID, after_seq: int = 0) -> list[JobEvent]: ...

    @abc.abstractmethod
    async def events_after(
        self, cursor: str | None, where: EventFilter | None = None, *, limit: int = 500
    ) -> FeedPage:
        """The global feed: events of every job committed after ``cursor`` (None: from the
        start), in commit order, never skipping one that commits later. Raises ValueError for a
        cursor this store did not make."""

    @abc.abstractmethod
    async def events_head(self) -> str:
        """A cursor at the feed's end now: tail from here to see only what comes next."""

    # -- the worker's side -------------------------------------------------------------------

    @abc.abstractmethod
    async def job_claim(
        self,
        *,
        types: Sequence[str],
        queues: Sequence[str] | None,
        limit: int,
        worker_id: str,
        lease_seconds: float,
    ) -> list[Job]:
        """Take up to ``limit`` due jobs (highest priority, then oldest ``run_at``) of the given
        types from unpaused queues; each becomes ``running`` with ``attempt + 1`` and a lease."""

    @abc.abstractmethod
    async def job_claim_ids(
        self,
        job_ids: Sequence[uuid.UUID],
        *,
        types: Sequence[str],
        worker_id: str,
        lease_seconds: float,
    ) -> list[Job]:
        """Claim exactly these jobs (a broker delivered their ids), in one statement: those
        still waiting and due, of the given types, in unpaused queues. The rest (a duplicate
        delivery, a job running elsewhere, canceled, finished, not yet due, paused) are left
        alone. Each claimed job becomes ``running`` with ``attempt + 1`` and a lease, as with
        :meth:`job_claim`; the result is ordered by priority, then ``run_at``."""

    @abc.abstractmethod
    async def job_heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> HeartbeatResult:
        """Extend the leases still held; report lost ones and pending cancel requests. All
        leases of one call belong to one worker (the first lease's ``worker_id``)."""

    @abc.abstractmethod
    async def job_progress(
        self,
        job_id: uuid.UUID,
        attempt: int,
        percent: float,
        message: str | None,
        worker_id: str | None = None,
    ) -> bool: ...

    @abc.abstractmethod
    async def job_checkpoint(
        self, job_id: uuid.UUID, attempt: int, value: JSON, worker_id: str | None = None
    ) -> bool: ...

    @abc.abstractmethod
    async def job_finish_many(self, outcomes: Sequence[Outcome]) -> list[uuid.UUID]:
        """Write many attempts' outcomes in one transaction; return the ids that were written
        (the others were fenced off)."""

    @abc.abstractmethod
    async def job_release(self, lease: Lease, reason: str) -> bool:
        """Hand a running job back to ``queued`` without spending an attempt (graceful stop)."""

    # -- maintenance (safe to run from many workers at once) ---------------------------------

    @abc.abstractmethod
    async def jobs_reap_expired(self, limit: int = 500) -> int:
        """Running jobs whose lease expired: back to ``retrying`` (due now), or ``failed`` when
        their attempts are spent, or ``canceled`` if a cancel was requested."""

    @abc.abstractmethod
    async def jobs_promote_due(self, limit: int = 500) -> int:
        """``scheduled`` and ``retrying`` jobs whose ``run_at`` passed become ``queued``."""

    # -- the outbox and the reconciler (message brokers only) ----------------------------------

    @abc.abstractmethod
    async def outbox_pending(self, *, older_than: float, limit: int) -> list[OutboxEntry]:
        """Outbox rows written at least ``older_than`` seconds ago, oldest first."""

    @abc.abstractmethod
    async def outbox_delete(self, entries: Sequence[OutboxEntry]) -> None:
        """Forget published rows (by job id and seq; missing ones are ignored)."""

    @abc.abstractmethod
    async def jobs_due_by_queue(self, *, older_than: float) -> dict[str, int]:
        """Per unpaused queue, the jobs waiting and due for at least ``older_than`` seconds
        (unchanged that long): what the broker should be holding messages for."""

    @abc.abstractmethod
    async def jobs_due(
        self, queue: str, *, older_than: float, limit: int, after: uuid.UUID | None = None
    ) -> list[OutboxEntry]:
        """Those jobs of ``queue``, by id (``after``: the last id of the previous page)."""

    # -- control -------------------------------------------------------------------------------

    @abc.abstractmethod
    async def job_cancel(self, job_id: uuid.UUID, actor: str | None) -> Job | None:
        """Cancel a waiting job now, or ask a running one to stop. None if there is no such job;
        :class:`~offload.errors.IllegalTransition` if it already finished."""

    @abc.abstractmethod
    async def job_replay(
        self, job_id: uuid.UUID, new_input: JSON | None, extra_attempts: int, actor: str | None
    ) -> Job | None:
        """A failed job back to ``queued`` with ``extra_attempts`` more attempts. The attempt
        number keeps counting up (it is the fence); ``max_attempts`` grows instead."""

    @abc.abstractmethod
    async def job_discard(self, job_id: uuid.UUID, actor: str | None) -> Job | None:
        """Take a dead letter off the dead-letter list; it stays ``failed`` with its history
        and a ``job.discarded`` event. None if there is no such job;
        :class:`~offload.errors.IllegalTransition` if it is not an undiscarded dead letter."""

    @abc.abstractmethod
    async def job_count(self, where: JobFilter) -> int: ...

    @abc.abstractmethod
    async def queue_depth(self, name: str) -> int:
        """Jobs waiting in ``name`` (queued, scheduled, retrying): what backpressure limits."""

    @abc.abstractmethod
    async def queue_set_paused(self, name: str, paused: bool, actor: str | None) -> None: ...

    @abc.abstractmethod
    async def queue_list(self) -> list[QueueInfo]: ...

    # -- API keys ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def key_insert(
        self, key_id: str, key_hash: str, tenant: str, role: str, name: str | None = None
    ) -> ApiKey: ...

    @abc.abstractmethod
    async def key_get_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not (the caller checks :attr:`ApiKey.active`)."""

    @abc.abstractmethod
    async def key_list(self) -> list[ApiKey]: ...

    @abc.abstractmethod
    async def key_revoke(self, key_id: str) -> ApiKey | None:
        """Revoke (idempotent); None if there is no such key."""

    # -- wake-ups ---------------------------------------------------------------------------------

    _events_listeners: list[Callable[[Sequence[uuid.UUID]], None]] | None = None

    def on_events_written(self, callback: Callable[[Sequence[uuid.UUID]], None]) -> None:
        """Call ``callback(job_ids)`` in the event loop after each committed write that added
        events to those jobs' logs (the event bus announces them; :mod:`offload.events.bus`).
        On PostgreSQL, key-less submits may announce themselves instead
        (``PostgresStore.announce_submits``)."""
        if self._events_listeners is None:
            self._events_listeners = []
        self._events_listeners.append(callback)

    def _events_written(self, job_ids: Sequence[uuid.UUID]) -> None:
        if self._events_listeners and job_ids:
            for callback in self._events_listeners:
                callback(job_ids)

    async def listen(self) -> None:  # noqa: B027 - optional: only some databases push
        """Start push wake-ups (new jobs, cancel requests) where the database has them."""

    def on_cancel_requested(self, callback: Callable[[uuid.UUID], None]) -> None:  # noqa: B027
        """Call ``callback(job_id)`` the moment a cancel is requested, where the database can
        push; elsewhere workers learn of it at their next heartbeat."""

    def on_jobs(self, callback: Callable[[], None]) -> None:  # noqa: B027
        """Call ``callback()`` whenever new work may be due, where the database can push;
        elsewhere workers poll every ``OFFLOAD_POLL_INTERVAL`` seconds."""
