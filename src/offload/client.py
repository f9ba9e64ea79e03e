"""A Python client for offload's HTTP API: :class:`Client` (sync) and :class:`AsyncClient`.

>>> from offload.client import Client
>>> with Client("http://127.0.0.1:8000", "ofk_…") as api:
...     job = api.submit("reports.generate", {"year": 2024}, idempotency_key="report-2024")
...     job = api.wait(job.id, on_progress=lambda j: print(j.progress.percent))
...     job.status, job.result

Every call is written once, as an *operation*: a generator that yields the HTTP requests (and
pauses) it needs and returns its result. :class:`Client` drives operations with
``httpx.Client`` and ``time.sleep``, :class:`AsyncClient` with ``httpx.AsyncClient`` and
``asyncio.sleep``; the two classes hold no request logic of their own. Every error the API
answers is an RFC 9457 problem document, raised as :class:`ApiError` (or a subclass:
:class:`NotFound`, :class:`Conflict`, :class:`RateLimited`, …).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from httpx_sse import aconnect_sse, connect_sse

from .jobs import JobError, JobEvent, JobStatus, Progress
from .retry import parse_retry_after

__all__ = [
    "ApiError",
    "ApiKey",
    "AsyncClient",
    "Client",
    "ClientError",
    "Conflict",
    "Forbidden",
    "Job",
    "NotFound",
    "Queue",
    "RateLimited",
    "ReplayResult",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "ValidationFailed",
    "WaitTimeout",
]

T = TypeVar("T")
JobId = uuid.UUID | str
OnProgress = Callable[["Job"], Any]

LONG_POLL_SECONDS = 30
"""How long one ``Prefer: wait`` request of :meth:`Client.wait` may be held by the server."""
READ_MARGIN = 10.0
"""Seconds a held request may take beyond its ``wait`` before it counts as timed out."""


# -- what the API answers --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the API shows it. The admin views also fill ``tenant`` … ``events``."""

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
    progress: Progress
    result: Any = None
    """Present only when ``succeeded``."""
    error: JobError | None = None
    """Present only when ``failed`` or ``canceled``."""
    tenant: str | None = None
    priority: int | None = None
    input: Any = None
    run_at: datetime | None = None
    error_detail: str | None = field(default=None, repr=False)
    """The last failure's traceback (admin views)."""
    cancel_requested: bool | None = None
    events: list[JobEvent] | None = field(default=None, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        job_id = uuid.UUID(data["id"])
        error = data.get("error")
        events = data.get("events")
        return cls(
            id=job_id,
            type=data["type"],
            status=JobStatus(data["status"]),
            queue=data["queue"],
            created_at=_time(data["created_at"]),  # type: ignore[arg-type]
            updated_at=_time(data["updated_at"]),  # type: ignore[arg-type]
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            attempt=data["attempt"],
            max_attempts=data["max_attempts"],
            progress=Progress(data["progress"]["percent"], data["progress"]["message"]),
            result=data.get("result"),
            error=JobError(error["code"], error["message"]) if error else None,
            tenant=data.get("tenant"),
            priority=data.get("priority"),
            input=data.get("input"),
            run_at=_time(data.get("run_at")),
            error_detail=data.get("error_detail"),
            cancel_requested=data.get("cancel_requested"),
            events=None if events is None else [_event(job_id, e) for e in events],
        )


def _event(job_id: uuid.UUID, data: Mapping[str, Any]) -> JobEvent:
    return JobEvent(
        job_id=job_id,
        seq=data["seq"],
        type=data["type"],
        status=JobStatus(data["status"]),
        attempt=data["attempt"],
        data=data.get("data") or {},
        created_at=_time(data["created_at"]),  # type: ignore[arg-type]
    )


@dataclass(frozen=True, slots=True)
class Queue:
    name: str
    paused: bool
    waiting: int
    running: int
    oldest_waiting_at: datetime | None
    oldest_waiting_age_seconds: float | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Queue:
        return cls(
            name=data["name"],
            paused=data["paused"],
            waiting=data["waiting"],
            running=data["running"],
            oldest_waiting_at=_time(data.get("oldest_waiting_at")),
            oldest_waiting_age_seconds=data.get("oldest_waiting_age_seconds"),
        )


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What :meth:`Client.replay_many` matched and (unless a dry run) replayed."""

    dry_run: bool
    matched: int
    replayed: int
    job_ids: list[uuid.UUID]


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    role: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None
    key: str | None = field(default=None, repr=False)
    """The secret: only in the answer to :meth:`Client.create_key`."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiKey:
        return cls(
            id=data["id"],
            tenant=data["tenant"],
            role=data["role"],
            name=data.get("name"),
            created_at=_time(data["created_at"]),  # type: ignore[arg-type]
            revoked_at=_time(data.get("revoked_at")),
            key=data.get("key"),
        )


@dataclass(frozen=True, slots=True)
class Webhook:
    """A registered webhook endpoint (admin)."""

    id: str
    tenant: str
    url: str
    events: list[str]
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    secret: str | None = field(default=None, repr=False)
    """``whsec_…``: only in the answers to :meth:`Client.create_webhook` and rotate."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Webhook:
        return cls(
            id=data["id"],
            tenant=data["tenant"],
            url=data["url"],
            events=list(data["events"]),
            created_at=_time(data["created_at"]),  # type: ignore[arg-type]
            disabled_at=_time(data.get("disabled_at")),
            disabled_reason=data.get("disabled_reason"),
            secret=data.get("secret"),
        )


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event for one target (webhook or email) and how its attempts went (admin)."""

    id: str
    """The ``webhook-id`` header, the same on every attempt."""
    channel: str
    endpoint_id: str | None
    job_id: uuid.UUID
    target: str
    event_type: str
    status: str
    """``pending``, ``delivering``, ``succeeded`` or ``failed``."""
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookDelivery:
        return cls(
            id=data["id"],
            channel=data["channel"],
            endpoint_id=data.get("endpoint_id"),
            job_id=uuid.UUID(data["job_id"]),
            target=data["target"],
            event_type=data["event_type"],
            status=data["status"],
            attempts=data["attempts"],
            last_status_code=data.get("last_status_code"),
            last_error=data.get("last_error"),
            created_at=_time(data["created_at"]),  # type: ignore[arg-type]
            history=list(data.get("history") or []),
        )


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# -- errors ----------------------------------------------------------------------------------


class ClientError(Exception):
    """Anything the client raises: an answer of the API (:class:`ApiError`), no answer
    (:class:`Unreachable`) or a wait that ran out (:class:`WaitTimeout`)."""


class Unreachable(ClientError):
    """The API could not be reached, or did not answer in time."""


class WaitTimeout(ClientError, TimeoutError):
    """:meth:`Client.wait` gave up; ``job`` is the last state seen."""

    def __init__(self, job: Job | None, timeout: float) -> None:
        status = job.status.value if job else "unknown"
        super().__init__(f"the job did not finish within {timeout:g} s (it is {status})")
        self.job = job
        self.timeout = timeout


class ApiError(ClientError):
    """An error answer of the API, from its problem document (RFC 9457).

    ``code`` is offload's stable error code (``job_not_found``, ``rate_limited``, …);
    ``errors`` lists the fields of a 422 (``{"field", "message", "type"}``); ``retry_after``
    is the ``Retry-After`` header in seconds (429 and 503), else None.
    """

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        type: str | None = None,
        retry_after: float | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.type = type
        self.retry_after = retry_after
        self.body = dict(body or {})

    def __str__(self) -> str:
        if not self.errors:
            return self.detail
        fields = "; ".join(
            f"{e.get('field') or e.get('in', '')}: {e['message']}" for e in self.errors
        )
        return f"{self.detail} ({fields})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.detail!r})"


class BadRequest(ApiError):
    """400: malformed JSON or a request the API cannot read."""


class Unauthorized(ApiError):
    """401: no API key, or an unknown or revoked one."""


class Forbidden(ApiError):
    """403: the key's role may not do this (admin calls need an admin key)."""


class NotFound(ApiError):
    """404: no such job, or one of another tenant (the API does not tell them apart)."""


class Conflict(ApiError):
    """409: the job already finished, or an Idempotency-Key is still being processed."""


class ValidationFailed(ApiError):
    """422: the request (or an Idempotency-Key reused with another body) is not valid;
    ``errors`` names the fields."""


class RateLimited(ApiError):
    """429: this key is over its rate limit; retry after ``retry_after`` seconds."""


class Unavailable(ApiError):
    """503: the queue is full or the store is unreachable; retry after ``retry_after``."""


_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: ValidationFailed,
    429: RateLimited,
    503: Unavailable,
}


def error_from_response(response: httpx.Response) -> ApiError:
    """The :class:`ApiError` for an error answer: from its problem document if it has one
    (any proxy's HTML error page becomes ``code="http_error"``)."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    body: Any = None
    if "json" in response.headers.get("content-type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
    cls = _ERRORS.get(status, ApiError)
    if isinstance(body, dict) and isinstance(body.get("detail", ""), str):
        return cls(
            status,
            str(body.get("code") or "http_error"),
            str(body.get("title") or response.reason_phrase),
            str(body.get("detail") or response.reason_phrase),
            errors=body.get("errors") if isinstance(body.get("errors"), list) else None,
            type=body.get("type"),
            retry_after=retry_after,
            body=body,
        )
    text = " ".join(response.text.split())[:200]
    detail = f"HTTP {status} {response.reason_phrase}" + (f": {text}" if text else "")
    return cls(status, "http_error", response.reason_phrase, detail, retry_after=retry_after)


# -- operations: each call once, as requests to send ----------------------------------------

_NO_BODY: Any = object()


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    params: list[tuple[str, str]] | None = None
    json: Any = _NO_BODY
    headers: Mapping[str, str] | None = None
    hold: float = 0.0
    """Seconds the server may hold the request (``Prefer: wait``), added to the read timeout."""
    expect: tuple[int, ...] = (200,)


@dataclass(frozen=True, slots=True)
class _Pause:
    seconds: float


@dataclass(frozen=True, slots=True)
class _Await:
    awaitable: Awaitable[Any]


@dataclass(frozen=True, slots=True)
class _Stream:
    """Open a Server-Sent Events stream (closing the one open before); answered with the
    response (its status checked like a request's)."""

    path: str
    headers: Mapping[str, str]
    read: float
    """Seconds without a byte (events or heartbeats) before the stream counts as dropped."""


@dataclass(frozen=True, slots=True)
class _NextEvent:
    """The next event of the open stream (``httpx_sse.ServerSentEvent``), None when the server
    ended it; a dropped stream is :class:`Unreachable` thrown in."""


_Step = _Request | _Pause | _Await | _Stream | _NextEvent
_Op = Generator[_Step, Any, T]
"""An operation: yields requests (answered with the ``httpx.Response``, or an
:class:`ApiError` thrown in), pauses and awaitables; returns the call's result."""


def _id(job_id: JobId) -> str:
    return quote(str(job_id), safe="")


def _query(**values: Any) -> list[tuple[str, str]]:
    """Query parameters: None left out, lists repeated, times as RFC 3339."""
    out: list[tuple[str, str]] = []
    for name, value in values.items():
        items = value if isinstance(value, list | tuple | set | frozenset) else [value]
        for item in items:
            if item is None:
                continue
            if isinstance(item, datetime):
                item = item.isoformat()
            out.append((name, str(item.value if isinstance(item, JobStatus) else item)))
    return out


def _one(request: _Request, parse: Callable[[Any], T]) -> _Op[T]:
    response = yield request
    return parse(response.json())


def _job(request: _Request) -> _Op[Job]:
    return _one(request, Job.from_json)


def _submit(
    type: str,
    input: Any,
    idempotency_key: str | None,
    priority: int | None,
    delay_seconds: float | None,
    run_at: datetime | str | None,
    queue: str | None,
    wait: int | None,
    notify: Mapping[str, str] | None = None,
) -> _Op[Job]:
    body: dict[str, Any] = {"type": type, "input": input}
    options = {
        "priority": priority,
        "delay_seconds": delay_seconds,
        "run_at": run_at.isoformat() if isinstance(run_at, datetime) else run_at,
        "queue": queue,
        "notify": dict(notify) if notify else None,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if options:
        body["options"] = options
    headers = {}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    if wait is not None:
        headers["Prefer"] = f"wait={int(wait)}"
    request = _Request(
        "POST", "/v1/jobs", json=body, headers=headers, hold=wait or 0, expect=(200, 202)
    )
    return _job(request)


def _wait(job_id: JobId, timeout: float | None, on_progress: OnProgress | None) -> _Op[Job]:
    """Read the job, then long-poll it (``Prefer: wait`` + ``If-None-Match``) until it is
    terminal; ``on_progress`` sees every new state. A server that does not hold requests is
    polled as its ``Retry-After`` says; 429 and 503 are waited out as theirs says."""
    path = f"/v1/jobs/{_id(job_id)}"
    deadline = None if timeout is None else time.monotonic() + timeout
    job: Job | None = None
    etag: str | None = None
    while True:
        hold = 0
        headers: dict[str, str] = {}
        if job is not None:  # the first read answers at once; the later ones are held
            left = LONG_POLL_SECONDS if deadline is None else deadline - time.monotonic()
            hold = max(1, int(min(LONG_POLL_SECONDS, left)))
            headers["Prefer"] = f"wait={hold}"
            if etag:
                headers["If-None-Match"] = etag
        try:
            response = yield _Request("GET", path, headers=headers, hold=hold, expect=(200, 304))
        except (RateLimited, Unavailable) as exc:
            yield from _pause(exc.retry_after or 1.0, deadline, job, timeout)
            continue
        if response.status_code == 200:
            etag = response.headers.get("etag")
            seen = Job.from_json(response.json())
            if seen != job:
                job = seen
                if on_progress is not None:
                    called = on_progress(job)
                    if inspect.isawaitable(called):
                        yield _Await(called)
        assert job is not None  # a 304 answers only an If-None-Match, sent after a 200
        if job.is_terminal:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(job, timeout or 0)
        if hold and _applied_wait(response.headers.get("preference-applied")) <= 0:
            # The server did not hold the request: poll again when its Retry-After says.
            after = parse_retry_after(response.headers.get("retry-after"))
            yield from _pause(after or 1.0, deadline, job, timeout)


STREAM_READ_SECONDS = 45.0
"""Longest silence on an event stream (the server sends heartbeats every 15 s by default)."""
STREAM_RETRIES = 5
"""Reconnects in a row without an event before :meth:`Client.wait` gives up (Unreachable)."""


def _follow(job_id: JobId, timeout: float | None, on_progress: OnProgress | None) -> _Op[Job]:
    """Wait by Server-Sent Events (``GET /v1/jobs/{id}/events``): every event carries the job
    as of then (a replayed job's earlier failure too: the job is done when the server ends the
    stream, not at the first terminal event); a dropped stream is resumed with
    ``Last-Event-ID`` (nothing missed, nothing twice). A server that cannot stream (no such
    route, not an event stream, 429/503) is long-polled instead (:func:`_wait`)."""
    path = f"/v1/jobs/{_id(job_id)}/events"
    deadline = None if timeout is None else time.monotonic() + timeout
    job: Job | None = None
    last_id: str | None = None
    failures = 0

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    while True:
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        remaining = left()
        read = STREAM_READ_SECONDS if remaining is None else min(STREAM_READ_SECONDS, remaining)
        try:
            response = yield _Stream(path, headers, max(read, 0.05))
        except (Unauthorized, Forbidden):
            raise
        except NotFound as exc:
            if exc.code == "job_not_found":
                raise
            return (yield from _wait(job_id, left(), on_progress))  # no event route here
        except ApiError:
            return (yield from _wait(job_id, left(), on_progress))
        except Unreachable:
            response = None
        if response is not None:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                return (yield from _wait(job_id, left(), on_progress))
            while True:
                try:
                    sse = yield _NextEvent()
                except Unreachable:
                    break
                if sse is None:  # the server ends the stream after the job's final state
                    if job is not None and job.is_terminal:
                        return job
                    break
                if not sse.data:
                    continue
                last_id, failures = sse.id or last_id, 0
                job = Job.from_json(sse.json())
                if on_progress is not None:
                    called = on_progress(job)
                    if inspect.isawaitable(called):
                        yield _Await(called)
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(job, timeout or 0)
        failures += 1
        if failures > STREAM_RETRIES:
            raise Unreachable(f"the event stream of job {job_id} keeps dropping")
        yield from _pause(min(0.1 * 2**failures, 2.0), deadline, job, timeout)


def _applied_wait(value: str | None) -> int:
    """The ``wait=N`` of a ``Preference-Applied`` header; 0 when absent."""
    for item in (value or "").split(","):
        name, _, number = item.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return int(number.strip().strip('"'))
            except ValueError:
                return 0
    return 0


def _pause(
    seconds: float, deadline: float | None, job: Job | None, timeout: float | None
) -> Generator[_Step, Any, None]:
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(job, timeout or 0)
        seconds = min(seconds, left)
    yield _Pause(seconds)


def _page(
    path: str, params: list[tuple[str, str]], token: str | None
) -> _Op[tuple[list[Job], str | None]]:
    query = [*params, ("page_token", token)] if token else params
    response = yield _Request("GET", path, params=query)
    data = response.json()
    return [Job.from_json(j) for j in data["jobs"]], data.get("next_page_token")


def _replay(job_id: JobId, input: Any | None) -> _Op[Job]:
    body = {"input": input} if input is not None else {}
    return _job(_Request("POST", f"/v1/admin/dead-letters/{_id(job_id)}/replay", json=body))


def _replay_many(filter: Mapping[str, Any] | None, dry_run: bool, limit: int | None) -> _Op[Any]:
    body: dict[str, Any] = {"filter": _filter_json(filter or {}), "dry_run": dry_run}
    if limit is not None:
        body["limit"] = limit
    response = yield _Request("POST", "/v1/admin/dead-letters:replay", json=body)
    data = response.json()
    return ReplayResult(
        data["dry_run"], data["matched"], data["replayed"], [uuid.UUID(i) for i in data["job_ids"]]
    )


def _filter_json(filter: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in filter.items()
        if v is not None
    }


def _queues() -> _Op[list[Queue]]:
    return _one(_Request("GET", "/v1/admin/queues"), lambda qs: [Queue.from_json(q) for q in qs])


def _queue_action(name: str, action: str) -> _Op[Queue]:
    return _one(
        _Request("POST", f"/v1/admin/queues/{quote(name, safe='')}/{action}"), Queue.from_json
    )


def _keys() -> _Op[list[ApiKey]]:
    return _one(_Request("GET", "/v1/admin/keys"), lambda ks: [ApiKey.from_json(k) for k in ks])


def _create_key(tenant: str, role: str, name: str | None) -> _Op[ApiKey]:
    body = {"tenant": tenant, "role": role, "name": name}
    return _one(_Request("POST", "/v1/admin/keys", json=body, expect=(201,)), ApiKey.from_json)


def _revoke_key(key_id: str) -> _Op[ApiKey]:
    path = f"/v1/admin/keys/{quote(key_id, safe='')}/revoke"
    return _one(_Request("POST", path), ApiKey.from_json)


def _webhooks(tenant: str | None) -> _Op[list[Webhook]]:
    request = _Request("GET", "/v1/webhooks", params=_query(tenant=tenant))
    return _one(request, lambda ws: [Webhook.from_json(w) for w in ws])


def _create_webhook(url: str, events: list[str] | None, tenant: str | None) -> _Op[Webhook]:
    body = {k: v for k, v in {"url": url, "events": events, "tenant": tenant}.items() if v}
    return _one(_Request("POST", "/v1/webhooks", json=body, expect=(201,)), Webhook.from_json)


def _webhook_action(endpoint_id: str, method: str, action: str = "") -> _Request:
    path = f"/v1/webhooks/{quote(endpoint_id, safe='')}{action}"
    return _Request(method, path, expect=(204,) if method == "DELETE" else (200,))


def _delete_webhook(endpoint_id: str) -> _Op[None]:
    yield _webhook_action(endpoint_id, "DELETE")
    return None


def _deliveries(
    endpoint_id: str | None, job_id: JobId | None, page_size: int
) -> _Op[list[WebhookDelivery]]:
    if (endpoint_id is None) == (job_id is None):
        raise ValueError("give an endpoint id or a job id")
    if endpoint_id is not None:
        path = f"/v1/webhooks/{quote(endpoint_id, safe='')}/deliveries"
    else:
        path = f"/v1/admin/jobs/{_id(job_id)}/deliveries"  # type: ignore[arg-type]
    request = _Request("GET", path, params=_query(page_size=page_size))
    return _one(request, lambda p: [WebhookDelivery.from_json(d) for d in p["deliveries"]])


def _delivery(delivery_id: str, resend: bool) -> _Op[WebhookDelivery]:
    path = f"/v1/deliveries/{quote(delivery_id, safe='')}"
    request = _Request("POST", path + "/resend", expect=(202,)) if resend else _Request("GET", path)
    return _one(request, WebhookDelivery.from_json)


def _signing_secret(tenant: str | None, rotate: bool) -> _Op[str]:
    path = "/v1/signing-secret" + ("/rotate" if rotate else "")
    request = _Request("POST" if rotate else "GET", path, params=_query(tenant=tenant))
    return _one(request, lambda data: str(data["secret"]))


def _list_query(
    status: Any, type: str | None, created_after: Any, created_before: Any, page_size: int | None
) -> list[tuple[str, str]]:
    return _query(
        status=status,
        type=type,
        created_after=created_after,
        created_before=created_before,
        page_size=page_size,
    )


def _dead_letter_query(
    type: str | None,
    error_code: str | None,
    tenant: str | None,
    failed_after: Any,
    failed_before: Any,
    page_size: int | None,
) -> list[tuple[str, str]]:
    return _query(
        type=type,
        error_code=error_code,
        tenant=tenant,
        failed_after=failed_after,
        failed_before=failed_before,
        page_size=page_size,
    )


# -- running operations over HTTP ------------------------------------------------------------


def _http_options(
    url: str, api_key: str, timeout: float, headers: Mapping[str, str] | None
) -> dict[str, Any]:
    from . import __version__

    if not api_key:
        raise ValueError("an API key is needed (offload keys create)")
    return {
        "base_url": url.rstrip("/"),
        "timeout": timeout,
        "headers": {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json, application/problem+json",
            "User-Agent": f"offload-client/{__version__}",
            **(headers or {}),
        },
    }


def _request_options(step: _Request, timeout: float) -> dict[str, Any]:
    options: dict[str, Any] = {"params": step.params, "headers": step.headers}
    if step.json is not _NO_BODY:
        options["json"] = step.json
    if step.hold:
        options["timeout"] = httpx.Timeout(timeout, read=step.hold + READ_MARGIN)
    return options


def _checked(step: _Request, response: httpx.Response) -> httpx.Response:
    if response.status_code in step.expect:
        return response
    raise error_from_response(response)


def _unreachable(url: str, exc: httpx.TransportError) -> Unreachable:
    if isinstance(exc, httpx.TimeoutException):
        return Unreachable(f"the offload API at {url} did not answer in time")
    return Unreachable(f"cannot reach the offload API at {url} ({type(exc).__name__})")


class Client:
    """offload's HTTP API, synchronously (``httpx.Client``). Use it as a context manager or
    call :meth:`close`.

    >>> with Client("http://127.0.0.1:8000", os.environ["OFFLOAD_API_KEY"]) as api:
    ...     job = api.wait(api.submit("reports.generate", {"year": 2024}).id)
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        options = _http_options(url, api_key, timeout, headers)
        self._http = httpx.Client(transport=transport, **options)
        self._stream: tuple[Any, Iterator[Any]] | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, op: _Op[T]) -> T:
        try:
            step = next(op)
            while True:
                try:
                    value = self._do(step)
                except ClientError as exc:
                    step = op.throw(exc)
                else:
                    step = op.send(value)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            self._close_stream()

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream[0].__exit__(None, None, None)

    def _open_stream(self, step: _Stream) -> httpx.Response:
        self._close_stream()
        timeout = httpx.Timeout(self._timeout, read=step.read)
        context = connect_sse(self._http, "GET", step.path, headers=step.headers, timeout=timeout)
        try:
            source = context.__enter__()
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        response = source.response
        if response.status_code != 200:
            response.read()
            context.__exit__(None, None, None)
            raise error_from_response(response)
        self._stream = (context, source.iter_sse())
        return response

    def _next_event(self) -> Any:
        assert self._stream is not None
        try:
            return next(self._stream[1])
        except StopIteration:
            return None
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc

    def _do(self, step: _Step) -> Any:
        if isinstance(step, _Pause):
            time.sleep(step.seconds)
            return None
        if isinstance(step, _Stream):
            return self._open_stream(step)
        if isinstance(step, _NextEvent):
            return self._next_event()
        if isinstance(step, _Await):
            raise TypeError("an async on_progress callback needs AsyncClient")
        try:
            response = self._http.request(
                step.method, step.path, **_request_options(step, self._timeout)
            )
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        return _checked(step, response)

    def _pages(self, path: str, params: list[tuple[str, str]]) -> Iterator[Job]:
        token: str | None = None
        while True:
            jobs, token = self._run(_page(path, params, token))
            yield from jobs
            if token is None:
                return

    # -- jobs --------------------------------------------------------------------------------

    def submit(
        self,
        type: str,
        input: Any,
        *,
        idempotency_key: str | None = None,
        priority: int | None = None,
        delay_seconds: float | None = None,
        run_at: datetime | str | None = None,
        queue: str | None = None,
        wait: int | None = None,
        notify: Mapping[str, str] | None = None,
    ) -> Job:
        """Submit a job (202). With ``wait=N`` the server holds the answer up to N seconds and
        returns the finished job if it finishes in time. The same ``idempotency_key`` with the
        same body returns the original job; with another body it raises ValidationFailed.
        ``notify={"webhook": url, "email": address}`` announces the job's end."""
        op = _submit(
            type, input, idempotency_key, priority, delay_seconds, run_at, queue, wait, notify
        )
        return self._run(op)

    def get(self, job_id: JobId) -> Job:
        """The job now; NotFound if missing or another tenant's."""
        return self._run(_job(_Request("GET", f"/v1/jobs/{_id(job_id)}")))

    def wait(
        self,
        job_id: JobId,
        *,
        timeout: float | None = None,
        on_progress: OnProgress | None = None,
        stream: bool = True,
    ) -> Job:
        """Follow the job until it is terminal and return it; ``on_progress(job)`` is called
        with every new state. By Server-Sent Events (resumed after a drop, nothing missed),
        falling back to long polls (``Retry-After`` honoured) when the server cannot stream
        or ``stream=False``. WaitTimeout after ``timeout`` seconds."""
        op = _follow if stream else _wait
        return self._run(op(job_id, timeout, on_progress))

    def cancel(self, job_id: JobId) -> Job:
        """Cancel: a waiting job ends ``canceled`` at once, a running one is asked to stop.
        Conflict if it already finished."""
        path = f"/v1/jobs/{_id(job_id)}/cancel"
        return self._run(_job(_Request("POST", path, expect=(200, 202))))

    def list(
        self,
        *,
        status: JobStatus | str | list[JobStatus | str] | None = None,
        type: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Job]:
        """The caller's jobs, newest first, fetched page by page as you iterate."""
        params = _list_query(status, type, created_after, created_before, page_size)
        return self._pages("/v1/jobs", params)

    # -- admin -------------------------------------------------------------------------------

    def admin_jobs(
        self,
        *,
        status: JobStatus | str | list[JobStatus | str] | None = None,
        type: str | None = None,
        tenant: str | None = None,
        queue: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Job]:
        """All tenants' jobs with full detail (admin)."""
        params = _query(status=status, type=type, tenant=tenant, queue=queue, page_size=page_size)
        return self._pages("/v1/admin/jobs", params)

    def admin_job(self, job_id: JobId) -> Job:
        """Any job with its traceback and event history (admin)."""
        return self._run(_job(_Request("GET", f"/v1/admin/jobs/{_id(job_id)}")))

    def dead_letters(
        self,
        *,
        type: str | None = None,
        error_code: str | None = None,
        tenant: str | None = None,
        failed_after: datetime | str | None = None,
        failed_before: datetime | str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Job]:
        """Dead letters (failed, not discarded), newest first (admin)."""
        params = _dead_letter_query(
            type, error_code, tenant, failed_after, failed_before, page_size
        )
        return self._pages("/v1/admin/dead-letters", params)

    def dead_letter(self, job_id: JobId) -> Job:
        """One dead letter with its traceback and event history (admin)."""
        return self._run(_job(_Request("GET", f"/v1/admin/dead-letters/{_id(job_id)}")))

    def replay(self, job_id: JobId, input: Any | None = None) -> Job:
        """A dead letter back to its queue, optionally with corrected input (admin)."""
        return self._run(_replay(job_id, input))

    def replay_many(
        self,
        filter: Mapping[str, Any] | None = None,
        dry_run: bool = True,
        *,
        limit: int | None = None,
    ) -> ReplayResult:
        """Replay the dead letters matching ``filter`` (``type``, ``error_code``, ``tenant``,
        ``failed_after``, ``failed_before``); by default only count them (admin)."""
        return self._run(_replay_many(filter, dry_run, limit))

    def discard(self, job_id: JobId) -> Job:
        """Take a dead letter off the list; it keeps its history (admin)."""
        path = f"/v1/admin/dead-letters/{_id(job_id)}/discard"
        return self._run(_job(_Request("POST", path)))

    def queues(self) -> list[Queue]:
        """Every queue's depth, running jobs and oldest waiting job (admin)."""
        return self._run(_queues())

    def pause_queue(self, name: str) -> Queue:
        return self._run(_queue_action(name, "pause"))

    def resume_queue(self, name: str) -> Queue:
        return self._run(_queue_action(name, "resume"))

    def keys(self) -> list[ApiKey]:
        return self._run(_keys())

    def create_key(self, tenant: str, role: str, name: str | None = None) -> ApiKey:
        """A new key; its secret is in ``.key``, in this answer only (admin)."""
        return self._run(_create_key(tenant, role, name))

    def revoke_key(self, key_id: str) -> ApiKey:
        return self._run(_revoke_key(key_id))

    # -- webhooks (admin) --------------------------------------------------------------------

    def webhooks(self, tenant: str | None = None) -> list[Webhook]:
        return self._run(_webhooks(tenant))

    def create_webhook(
        self, url: str, events: list[str] | None = None, tenant: str | None = None
    ) -> Webhook:
        """Register an endpoint; its signing secret is in ``.secret`` (this answer only)."""
        return self._run(_create_webhook(url, events, tenant))

    def webhook(self, endpoint_id: str) -> Webhook:
        return self._run(_one(_webhook_action(endpoint_id, "GET"), Webhook.from_json))

    def delete_webhook(self, endpoint_id: str) -> None:
        self._run(_delete_webhook(endpoint_id))

    def rotate_webhook(self, endpoint_id: str) -> Webhook:
        """A new signing secret, in ``.secret``."""
        request = _webhook_action(endpoint_id, "POST", "/rotate")
        return self._run(_one(request, Webhook.from_json))

    def deliveries(
        self, *, endpoint_id: str | None = None, job_id: JobId | None = None, page_size: int = 50
    ) -> list[WebhookDelivery]:
        """The newest deliveries of an endpoint or of a job."""
        return self._run(_deliveries(endpoint_id, job_id, page_size))

    def delivery(self, delivery_id: str) -> WebhookDelivery:
        """One delivery with every attempt in ``.history``."""
        return self._run(_delivery(delivery_id, resend=False))

    def resend(self, delivery_id: str) -> WebhookDelivery:
        return self._run(_delivery(delivery_id, resend=True))

    def signing_secret(self, tenant: str | None = None, *, rotate: bool = False) -> str:
        """The secret signing a tenant's job webhooks (``options.notify.webhook``)."""
        return self._run(_signing_secret(tenant, rotate))


class AsyncClient:
    """offload's HTTP API for asyncio (``httpx.AsyncClient``): the methods of :class:`Client`,
    awaitable; :meth:`list`, :meth:`admin_jobs` and :meth:`dead_letters` are async iterators,
    and ``on_progress`` may be a coroutine function.

    >>> async with AsyncClient(url, key) as api:
    ...     job = await api.wait((await api.submit("reports.generate", {"year": 2024})).id)
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        options = _http_options(url, api_key, timeout, headers)
        self._http = httpx.AsyncClient(transport=transport, **options)
        self._stream: tuple[Any, AsyncIterator[Any]] | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, op: _Op[T]) -> T:
        try:
            step = next(op)
            while True:
                try:
                    value = await self._do(step)
                except ClientError as exc:
                    step = op.throw(exc)
                else:
                    step = op.send(value)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            await self._close_stream()

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream[0].__aexit__(None, None, None)

    async def _open_stream(self, step: _Stream) -> httpx.Response:
        await self._close_stream()
        timeout = httpx.Timeout(self._timeout, read=step.read)
        context = aconnect_sse(self._http, "GET", step.path, headers=step.headers, timeout=timeout)
        try:
            source = await context.__aenter__()
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        response = source.response
        if response.status_code != 200:
            await response.aread()
            await context.__aexit__(None, None, None)
            raise error_from_response(response)
        self._stream = (context, source.aiter_sse())
        return response

    async def _next_event(self) -> Any:
        assert self._stream is not None
        try:
            return await anext(self._stream[1])
        except StopAsyncIteration:
            return None
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc

    async def _do(self, step: _Step) -> Any:
        if isinstance(step, _Pause):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, _Stream):
            return await self._open_stream(step)
        if isinstance(step, _NextEvent):
            return await self._next_event()
        if isinstance(step, _Await):
            return await step.awaitable
        try:
            response = await self._http.request(
                step.method, step.path, **_request_options(step, self._timeout)
            )
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        return _checked(step, response)

    async def _pages(self, path: str, params: list[tuple[str, str]]) -> AsyncIterator[Job]:
        token: str | None = None
        while True:
            jobs, token = await self._run(_page(path, params, token))
            for job in jobs:
                yield job
            if token is None:
                return

    async def submit(
        self,
        type: str,
        input: Any,
        *,
        idempotency_key: str | None = None,
        priority: int | None = None,
        delay_seconds: float | None = None,
        run_at: datetime | str | None = None,
        queue: str | None = None,
        wait: int | None = None,
        notify: Mapping[str, str] | None = None,
    ) -> Job:
        op = _submit(
            type, input, idempotency_key, priority, delay_seconds, run_at, queue, wait, notify
        )
        return await self._run(op)

    async def get(self, job_id: JobId) -> Job:
        return await self._run(_job(_Request("GET", f"/v1/jobs/{_id(job_id)}")))

    async def wait(
        self,
        job_id: JobId,
        *,
        timeout: float | None = None,
        on_progress: OnProgress | None = None,
        stream: bool = True,
    ) -> Job:
        op = _follow if stream else _wait
        return await self._run(op(job_id, timeout, on_progress))

    async def cancel(self, job_id: JobId) -> Job:
        path = f"/v1/jobs/{_id(job_id)}/cancel"
        return await self._run(_job(_Request("POST", path, expect=(200, 202))))

    def list(
        self,
        *,
        status: JobStatus | str | list[JobStatus | str] | None = None,
        type: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Job]:
        params = _list_query(status, type, created_after, created_before, page_size)
        return self._pages("/v1/jobs", params)

    def admin_jobs(
        self,
        *,
        status: JobStatus | str | list[JobStatus | str] | None = None,
        type: str | None = None,
        tenant: str | None = None,
        queue: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Job]:
        params = _query(status=status, type=type, tenant=tenant, queue=queue, page_size=page_size)
        return self._pages("/v1/admin/jobs", params)

    async def admin_job(self, job_id: JobId) -> Job:
        return await self._run(_job(_Request("GET", f"/v1/admin/jobs/{_id(job_id)}")))

    def dead_letters(
        self,
        *,
        type: str | None = None,
        error_code: str | None = None,
        tenant: str | None = None,
        failed_after: datetime | str | None = None,
        failed_before: datetime | str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Job]:
        params = _dead_letter_query(
            type, error_code, tenant, failed_after, failed_before, page_size
        )
        return self._pages("/v1/admin/dead-letters", params)

    async def dead_letter(self, job_id: JobId) -> Job:
        return await self._run(_job(_Request("GET", f"/v1/admin/dead-letters/{_id(job_id)}")))

    async def replay(self, job_id: JobId, input: Any | None = None) -> Job:
        return await self._run(_replay(job_id, input))

    async def replay_many(
        self,
        filter: Mapping[str, Any] | None = None,
        dry_run: bool = True,
        *,
        limit: int | None = None,
    ) -> ReplayResult:
        return await self._run(_replay_many(filter, dry_run, limit))

    async def discard(self, job_id: JobId) -> Job:
        path = f"/v1/admin/dead-letters/{_id(job_id)}/discard"
        return await self._run(_job(_Request("POST", path)))

    async def queues(self) -> list[Queue]:
        return await self._run(_queues())

    async def pause_queue(self, name: str) -> Queue:
        return await self._run(_queue_action(name, "pause"))

    async def resume_queue(self, name: str) -> Queue:
        return await self._run(_queue_action(name, "resume"))

    async def keys(self) -> list[ApiKey]:
        return await self._run(_keys())

    async def create_key(self, tenant: str, role: str, name: str | None = None) -> ApiKey:
        return await self._run(_create_key(tenant, role, name))

    async def revoke_key(self, key_id: str) -> ApiKey:
        return await self._run(_revoke_key(key_id))

    async def webhooks(self, tenant: str | None = None) -> list[Webhook]:
        return await self._run(_webhooks(tenant))

    async def create_webhook(
        self, url: str, events: list[str] | None = None, tenant: str | None = None
    ) -> Webhook:
        return await self._run(_create_webhook(url, events, tenant))

    async def webhook(self, endpoint_id: str) -> Webhook:
        return await self._run(_one(_webhook_action(endpoint_id, "GET"), Webhook.from_json))

    async def delete_webhook(self, endpoint_id: str) -> None:
        await self._run(_delete_webhook(endpoint_id))

    async def rotate_webhook(self, endpoint_id: str) -> Webhook:
        request = _webhook_action(endpoint_id, "POST", "/rotate")
        return await self._run(_one(request, Webhook.from_json))

    async def deliveries(
        self, *, endpoint_id: str | None = None, job_id: JobId | None = None, page_size: int = 50
    ) -> list[WebhookDelivery]:
        return await self._run(_deliveries(endpoint_id, job_id, page_size))

    async def delivery(self, delivery_id: str) -> WebhookDelivery:
        return await self._run(_delivery(delivery_id, resend=False))

    async def resend(self, delivery_id: str) -> WebhookDelivery:
        return await self._run(_delivery(delivery_id, resend=True))

    async def signing_secret(self, tenant: str | None = None, *, rotate: bool = False) -> str:
        return await self._run(_signing_secret(tenant, rotate))
