"""What goes over the wire: the job as clients see it, the submit body (a discriminated union
with one input schema per registered job type) and the admin views."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Union

from fastapi import Query
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    create_model,
    field_validator,
    model_validator,
)

from ..jobs import Job, JobEvent, JobStatus
from ..registry import Registry
from ..store import ApiKey, QueueInfo

NO_NUL = r"^[^\x00]*$"
"""Text that reaches the database may not contain NUL (PostgreSQL refuses it)."""
NAME = r"^[A-Za-z0-9_.:\-]+$"
MAX_DELAY = timedelta(days=3650)


# -- the job ---------------------------------------------------------------------------------


class ProgressOut(BaseModel):
    percent: float
    message: str | None


class ErrorOut(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    """A job as its owner sees it. ``result`` is there only when ``succeeded``; ``error`` only
    when ``failed`` or ``canceled``."""

    id: uuid.UUID
    type: str
    status: JobStatus
    queue: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    max_attempts: int
    progress: ProgressOut
    result: Any = Field(default=None, description="Present only when succeeded.")
    error: ErrorOut | None = Field(default=None, description="Present only when failed/canceled.")


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def job_json(job: Job) -> dict[str, Any]:
    """The public representation (DESIGN.md section 5): no input, traceback or owner."""
    data: dict[str, Any] = {
        "id": str(job.id),
        "type": job.type,
        "status": job.status.value,
        "queue": job.queue,
        "created_at": _time(job.created_at),
        "updated_at": _time(job.updated_at),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "progress": {"percent": job.progress.percent, "message": job.progress.message},
    }
    if job.status is JobStatus.SUCCEEDED:
        data["result"] = job.result
    elif job.status in (JobStatus.FAILED, JobStatus.CANCELED) and job.error is not None:
        data["error"] = {"code": job.error.code, "message": job.error.message}
    return data


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_page_token: str | None = Field(
        description="Pass as page_token for the next page; null on the last page."
    )


def _iso_only(value: Any) -> Any:
    """Times are RFC 3339 text only: pydantic would also take a number as a Unix time."""
    if isinstance(value, int | float) or (
        isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit()
    ):
        raise ValueError("give a time as RFC 3339 text, e.g. 2030-01-31T12:00:00Z")
    return value


def _number_only(value: Any) -> Any:
    """Numbers are JSON numbers: pydantic would also take "5" or true."""
    if isinstance(value, str | bool):
        raise ValueError("give a JSON number")
    return value


JsonInt = Annotated[int, BeforeValidator(_number_only)]
JsonFloat = Annotated[float, BeforeValidator(_number_only)]

Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_only)]
"""An RFC 3339 date-time with a time zone."""

PageToken = Annotated[
    uuid.UUID | None, Query(description="The next_page_token of the previous page.")
]


# -- submitting ------------------------------------------------------------------------------


WEBHOOK_URL = r"^https?://[^\s\x00]+$"
EMAIL = r"^[^@\s<>,;\"()\[\]\\\x00]+@[^@\s<>,;\"()\[\]\\\x00]+\.[^@\s<>,;\"()\[\]\\\x00]+$"


class NotifyOptions(BaseModel):
    """Who to tell when the job ends (succeeded, failed or canceled)."""

    model_config = ConfigDict(extra="forbid")

    webhook: str | None = Field(
        default=None,
        max_length=2000,
        pattern=WEBHOOK_URL,
        description="POSTed the terminal event, signed per Standard Webhooks with the tenant's "
        "signing secret. Private, loopback and link-local targets are refused (422).",
    )
    email: str | None = Field(
        default=None,
        max_length=254,
        pattern=EMAIL,
        description="Sent a short message over the server's SMTP (OFFLOAD_SMTP_URL).",
    )


class JobOptions(BaseModel):
    """How to run the job; every field is optional (the job type's defaults apply)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"not": {"required": ["delay_seconds", "run_at"]}}
    )

    priority: JsonInt | None = Field(default=None, ge=-32768, le=32767, description="Higher first.")
    delay_seconds: JsonFloat | None = Field(default=None, ge=0, le=MAX_DELAY.total_seconds())
    run_at: Timestamp | None = Field(
        default=None,
        description="When it may run (with a time zone, years 1900-2099); not with delay_seconds.",
        json_schema_extra={"pattern": r"^(19|20)\d\d-"},
    )
    queue: str | None = Field(default=None, min_length=1, max_length=100, pattern=NAME)
    notify: NotifyOptions | None = None

    @field_validator("run_at")
    @classmethod
    def _this_century(cls, value: datetime | None) -> datetime | None:
        if value is not None and not 1900 <= value.year <= 2099:
            raise ValueError("run_at must be in the years 1900 to 2099")
        return value

    @model_validator(mode="after")
    def _one_delay(self) -> JobOptions:
        if {"delay_seconds", "run_at"} <= self.model_fields_set:
            raise ValueError("give either delay_seconds or run_at, not both")
        return self


def build_submit_model(registry: Registry) -> Any:
    """``{"type", "input", "options"}`` as a union discriminated on ``type``: one model per
    registered job type, so OpenAPI (and ``/docs``) show each type's input schema."""
    variants = []
    for spec in registry.specs():
        safe = "".join(c if c.isalnum() else "_" for c in spec.name)
        variants.append(
            create_model(
                f"Submit_{safe}",
                __config__=ConfigDict(extra="forbid", title=f"Submit {spec.name}"),
                type=(Literal[spec.name], ...),  # type: ignore[valid-type]
                input=(spec.model, ...),
                options=(JobOptions | None, None),
            )
        )
    if not variants:
        return create_model(
            "SubmitJob",
            __config__=ConfigDict(extra="forbid"),
            type=(str, Field(..., max_length=200)),
            input=(dict[str, Any], ...),
            options=(JobOptions | None, None),
        )
    if len(variants) == 1:
        return variants[0]
    return Annotated[Union[tuple(variants)], Field(discriminator="type")]  # noqa: UP007


# -- admin -----------------------------------------------------------------------------------


class EventOut(BaseModel):
    seq: int
    type: str
    status: JobStatus
    attempt: int
    data: dict[str, Any]
    created_at: datetime


class AdminJobOut(JobOut):
    """Everything about a job, for admins: its tenant, input, the last failure's traceback
    (``error_detail``) and the event log."""

    tenant: str
    priority: int
    input: Any
    run_at: datetime
    error_detail: str | None
    cancel_requested: bool
    events: list[EventOut] | None = None


def event_json(event: JobEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type,
        "status": event.status.value,
        "attempt": event.attempt,
        "data": event.data,
        "created_at": _time(event.created_at),
    }


def admin_job_json(job: Job, events: list[JobEvent] | None = None) -> dict[str, Any]:
    data = job_json(job)
    if job.error is not None and "error" not in data:
        data["error"] = {"code": job.error.code, "message": job.error.message}
    data.update(
        tenant=job.owner,
        priority=job.priority,
        input=job.input,
        run_at=_time(job.run_at),
        error_detail=job.error_detail,
        cancel_requested=job.cancel_requested,
    )
    if events is not None:
        data["events"] = [event_json(e) for e in events]
    return data


class AdminJobPage(BaseModel):
    jobs: list[AdminJobOut]
    next_page_token: str | None


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] | None = Field(
        default=None, description="Corrected input, validated like a new submission."
    )


class DeadLetterFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    error_code: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    tenant: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    failed_after: Timestamp | None = None
    failed_before: Timestamp | None = None


class ReplayManyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filter: DeadLetterFilter = Field(default_factory=DeadLetterFilter)
    dry_run: StrictBool = Field(default=True, description="Only count what would be replayed.")
    limit: JsonInt = Field(default=1000, ge=1, le=10_000, description="Most jobs replayed at once.")


class ReplayManyResult(BaseModel):
    dry_run: bool
    matched: int
    replayed: int
    job_ids: list[uuid.UUID]


class QueueOut(BaseModel):
    name: str
    paused: bool
    waiting: int
    running: int
    oldest_waiting_at: datetime | None
    oldest_waiting_age_seconds: float | None


def queue_json(q: QueueInfo) -> dict[str, Any]:
    age = None
    if q.oldest_waiting_at is not None:
        age = max((datetime.now(UTC) - q.oldest_waiting_at).total_seconds(), 0.0)
    return {
        "name": q.name,
        "paused": q.paused,
        "waiting": q.waiting,
        "running": q.running,
        "oldest_waiting_at": _time(q.oldest_waiting_at),
        "oldest_waiting_age_seconds": age,
    }


class KeyOut(BaseModel):
    id: str
    tenant: str
    role: Literal["client", "viewer", "admin"]
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The secret: shown only in this response, never stored.")


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    role: Literal["client", "viewer", "admin"]
    name: str | None = Field(default=None, max_length=200, pattern=NO_NUL)


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "tenant": key.tenant,
        "role": key.role,
        "name": key.name,
        "created_at": _time(key.created_at),
        "revoked_at": _time(key.revoked_at),
    }


class Health(BaseModel):
    status: Literal["ok"]
