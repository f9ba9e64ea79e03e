"""The job as callers see it: an immutable snapshot built once from a store row."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .types import JSON


class JobStatus(enum.StrEnum):
    """The public states of a job. Each says who moves a job out of it."""

    SCHEDULED = "scheduled"
    """Waiting for ``run_at``. A worker claims it when due (or cancel)."""
    QUEUED = "queued"
    """Ready to run. A worker claims it (or cancel)."""
    RUNNING = "running"
    """Held by a worker under a lease. That worker finishes it, or the reaper when the lease
    expires."""
    RETRYING = "retrying"
    """Failed transiently; waiting for its backoff to pass. A worker claims it when due."""
    SUCCEEDED = "succeeded"
    """Terminal: the handler returned a result."""
    FAILED = "failed"
    """Terminal, dead-lettered: a permanent error or no attempts left. An admin may replay it."""
    CANCELED = "canceled"
    """Terminal: canceled before or while running."""

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


@dataclass(frozen=True, slots=True)
class Progress:
    percent: float = 0.0
    message: str | None = None


@dataclass(frozen=True, slots=True)
class JobError:
    """The public part of a failure. The traceback is kept apart (``Job.error_detail``)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Job:
    """A snapshot of one job. Get a fresh one with ``await app.get_job(job.id)``."""

    id: uuid.UUID
    type: str
    queue: str
    priority: int
    status: JobStatus
    input: JSON
    attempt: int
    max_attempts: int
    run_at: datetime
    progress: Progress
    checkpoint: JSON
    result: JSON
    error: JobError | None
    error_detail: str | None = field(repr=False)
    """The traceback of the last failure: admin-only detail, never shown to clients."""
    owner: str
    idempotency_key: str | None
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_expires_at: datetime | None = None
    worker_id: str | None = None
    event_seq: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Build from a store row whose JSON columns are already decoded and times are aware."""
        error = (
            JobError(row["error_code"], row["error_message"] or "") if row["error_code"] else None
        )
        return cls(
            id=row["id"] if isinstance(row["id"], uuid.UUID) else uuid.UUID(row["id"]),
            type=row["type"],
            queue=row["queue"],
            priority=row["priority"],
            status=_STATUS[row["status"]],
            input=row["input"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            run_at=row["run_at"],
            progress=_progress(row["progress_percent"], row["progress_message"]),
            checkpoint=row["checkpoint"],
            result=row["result"],
            error=error,
            error_detail=row["error_detail"],
            owner=row["owner"],
            idempotency_key=row["idempotency_key"],
            cancel_requested=bool(row["cancel_requested"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            lease_expires_at=row["lease_expires_at"],
            worker_id=row["worker_id"],
            event_seq=row["event_seq"],
        )


_STATUS = {status.value: status for status in JobStatus}
NO_PROGRESS = Progress()
"""The progress of a job that has reported none (shared: snapshots are immutable)."""


def _progress(percent: float, message: str | None) -> Progress:
    # Most rows (every freshly claimed job) have no progress yet: share one snapshot.
    return NO_PROGRESS if percent == 0 and message is None else Progress(percent, message)


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One entry of a job's ordered log: a state change, a progress update or an admin action."""

    job_id: uuid.UUID
    seq: int
    """Position in this job's log: 1, 2, 3, … without gaps."""
    type: str
    """``job.queued``, ``job.running``, ``job.progress``, ``job.retrying``, ``job.succeeded``,
    ``job.failed``, ``job.canceled``, ``job.scheduled`` or ``job.cancel_requested``."""
    status: JobStatus
    attempt: int
    data: dict[str, Any]
    created_at: datetime
