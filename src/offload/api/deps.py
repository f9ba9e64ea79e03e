"""What every route shares: the app, its settings and limiters, and who is calling."""

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from fastapi.security import HTTPBearer

from ..app import Offload
from ..jobs import Job
from ..store import JobFilter, Store
from .auth import Authenticator, Principal
from .limits import QueueLimiter, RateLimiter
from .problems import Problem
from .settings import ApiSettings


@dataclass
class ApiState:
    offload: Offload
    settings: ApiSettings
    auth: Authenticator = field(init=False)
    rate: RateLimiter = field(init=False)
    queues: QueueLimiter = field(init=False)
    inflight: set[tuple[str, str]] = field(default_factory=set)
    _job_paths: dict[int, str] = field(default_factory=dict)
    """Idempotency keys (tenant, key) whose first request this process is still answering."""

    def __post_init__(self) -> None:
        s = self.settings
        self.auth = Authenticator(self.offload.store, s.key_cache_seconds)
        self.rate = RateLimiter(s.rate_limit, s.rate_burst)
        self.queues = QueueLimiter(s.queue_limit, s.queue_depth_cache_seconds)

    async def store(self) -> Store:
        return await self.offload.store()

    async def visible_job(self, principal: Principal, job_id: uuid.UUID) -> Job:
        """The job if the caller may see it; otherwise 404, the same as for no job at all."""
        job = await (await self.store()).job_get(job_id)
        if job is None or not principal.sees(job.owner):
            raise Problem(404, "job_not_found", f"no job {job_id}")
        return job

    async def wait_for(
        self,
        job_id: uuid.UUID,
        done: Callable[[Job], bool],
        seconds: float,
    ) -> Job | None:
        """Re-read the job every ``wait_poll_interval`` until ``done(job)`` or ``seconds``
        passed; the last job read (None if it vanished)."""
        store = await self.store()
        deadline = time.monotonic() + seconds
        while True:
            job = await store.job_get(job_id)
            if job is None or done(job):
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                return job
            await asyncio.sleep(min(self.settings.wait_poll_interval, left))

    async def job_page(
        self,
        where: JobFilter,
        size: int,
        token: uuid.UUID | None,
        render: Callable[[Job], dict[str, Any]],
    ) -> Response:
        """One cursor page: ``{"jobs", "next_page_token"}``. The token is the id of the last
        job shown (ids are UUIDv7 and the store pages by id), so any UUID is a valid one."""
        jobs = await (await self.store()).job_list(where, limit=size + 1, after=token)
        next_token = str(jobs[size - 1].id) if len(jobs) > size else None
        return json_response(
            {"jobs": [render(j) for j in jobs[:size]], "next_page_token": next_token}
        )

    def location(self, request: Request, job_id: uuid.UUID) -> str:
        # Route reversal costs a tenth of a submit: resolve the path prefix once per app (it
        # depends on where the router is mounted), then only concatenate.
        prefix = self._job_paths.get(id(request.app))
        if prefix is None:
            marker = "0" * 32
            path = str(request.app.url_path_for("get_job", job_id=marker))
            prefix = self._job_paths[id(request.app)] = path.removesuffix(marker)
        path = prefix + str(job_id)
        if self.settings.public_url:
            return self.settings.public_url + path
        root = request.scope.get("root_path", "")
        base = str(request.base_url).rstrip("/")
        return base.removesuffix(root) + path if root and path.startswith(root) else base + path


class KeyAuth(HTTPBearer):
    """The API key check as one dependency that is also the OpenAPI security scheme: a chain
    of dependencies costs a resolution step per level on every request."""

    def __init__(self, state: ApiState, allow: Callable[[Principal], None] | None = None) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="ApiKey",
            description="An offload API key: `Authorization: Bearer ofk_…` "
            "(`offload keys create`).",
        )
        self.state = state
        self.allow = allow

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        caller = await self.state.auth.authenticate(request.headers.get("authorization"))
        self.state.rate.check(caller.key_id)
        if self.allow is not None:
            self.allow(caller)
        return caller


def _writer(caller: Principal) -> None:
    if not caller.may_write:
        raise Problem(403, "forbidden", f"the {caller.role} role cannot change anything")


def _admin(caller: Principal) -> None:
    if not caller.is_admin:
        raise Problem(403, "forbidden", "this needs an admin key")


def principal_dependency(state: ApiState) -> KeyAuth:
    """Any valid key."""
    return KeyAuth(state)


def writer_dependency(state: ApiState) -> KeyAuth:
    """A key that may change jobs (client, admin)."""
    return KeyAuth(state, _writer)


def admin_dependency(state: ApiState) -> KeyAuth:
    """An admin key."""
    return KeyAuth(state, _admin)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode_json(data), status, headers=headers, media_type="application/json")


def encode_json(data: Any) -> bytes:
    """Compact UTF-8 JSON (orjson: several times cheaper than ``json.dumps`` on the hot
    routes, and the same bytes for the documents we send)."""
    return orjson.dumps(data)


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return etag in tags


def check_text(value: Any, what: str) -> None:
    """Refuse JSON the store cannot keep (NUL characters, lone surrogates, integers beyond
    64 bits) as a 422 instead of letting it fail deep in a driver."""
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:  # e.g. "str is not valid UTF-8: surrogates not allowed"
        raise Problem(422, "validation_failed", f"{what} cannot be stored: {exc}") from None
    # JSON always escapes NUL; the escape can also be the tail of an escaped backslash
    # followed by "u0000", so a hit is confirmed on the strings themselves.
    if b"\\u0000" in text and _has_nul(value):
        raise Problem(422, "validation_failed", f"{what} may not contain NUL characters")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False
