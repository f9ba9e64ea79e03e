"""What an event carries: its type and the job's public fields as of that event (the shape of
``GET /v1/jobs/{id}``), the same for SSE, WebSocket and webhooks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..jobs import Job, JobError, JobEvent, JobStatus, Progress

PUBLIC_EVENT_TYPES = (
    "job.queued",
    "job.running",
    "job.progress",
    "job.retrying",
    "job.succeeded",
    "job.failed",
    "job.canceled",
)
"""The events callers see. The log also holds ``job.scheduled``, ``job.cancel_requested`` and
``job.discarded``: internal steps, not streamed."""
TERMINAL_EVENT_TYPES = ("job.succeeded", "job.failed", "job.canceled")


def is_public(event: JobEvent) -> bool:
    return event.type in PUBLIC_EVENT_TYPES


def job_as_of(job: Job, event: JobEvent) -> Job:
    """The job as it was when ``event`` happened, from its current row: the log records the
    status, attempt, time, progress (progress events) and error of each step; the rest comes
    from the row (a result only once succeeded)."""
    if event.seq == job.event_seq:
        return job  # the row is the job as of its latest event
    data = event.data
    progress = job.progress
    if event.type == "job.progress":
        progress = Progress(float(data.get("percent", 0.0)), data.get("message"))
    error = job.error if event.status in (JobStatus.FAILED, JobStatus.CANCELED) else None
    if isinstance(data.get("error"), dict):
        error = JobError(str(data["error"].get("code")), str(data["error"].get("message") or ""))
    return replace(
        job,
        status=event.status,
        attempt=event.attempt,
        updated_at=event.created_at,
        progress=progress,
        error=error,
        result=job.result if event.status is JobStatus.SUCCEEDED else None,
        finished_at=job.finished_at if event.status.is_terminal else None,
    )


def event_data(job: Job, event: JobEvent) -> dict[str, Any]:
    """The JSON ``data`` of an event: the job's public fields as of the event."""
    from ..api.schemas import job_json  # the one public shape of a job

    return job_json(job_as_of(job, event))
