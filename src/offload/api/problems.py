"""RFC 9457 problem details: every error the API answers, including the framework's own.

A problem is ``application/problem+json`` with ``type, title, status, detail`` and offload's
stable ``code``. Nothing internal reaches a client: an unexpected exception becomes a 500 whose
body carries only an ``error_id``, logged with the traceback for admins to find.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..errors import (
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    NotifyTargetRefused,
    OffloadError,
    SchemaOutdated,
    StoreUnavailable,
    UnknownJobType,
)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:offload:problem:"
"""Problem types are URNs (``urn:offload:problem:rate_limited``): stable, never dereferenced."""

log = logging.getLogger("offload.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class Problem(Exception):
    """Raise anywhere in a route to answer with a problem document.

    >>> raise Problem(404, "job_not_found", "no job 0190…")
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> JSONResponse:
        body = {
            "type": TYPE_PREFIX + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }
        return JSONResponse(body, self.status, headers=self.headers, media_type=PROBLEM_JSON)


class BodyTooLarge(Exception):
    """Raised while reading a request body past the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request bodies are limited to {limit} bytes")
        self.limit = limit


def body_too_large(limit: int) -> Problem:
    return Problem(413, "body_too_large", f"request bodies are limited to {limit} bytes")


def from_offload_error(exc: OffloadError) -> Problem:
    if isinstance(exc, UnknownJobType):
        return Problem(422, exc.code, str(exc))
    if isinstance(exc, InvalidInput):
        errors = [
            {"field": _join("input", e["field"]), "message": e["message"], "type": e["type"]}
            for e in exc.errors
        ]
        return Problem(
            422, exc.code, "the input does not match the job type's model", extra={"errors": errors}
        )
    if isinstance(exc, IdempotencyConflict):
        return Problem(
            422,
            exc.code,
            "this Idempotency-Key was already used with a different request body",
        )
    if isinstance(exc, NotifyTargetRefused):
        return Problem(422, exc.code, str(exc))
    if isinstance(exc, IllegalTransition):
        return Problem(409, exc.code, f"the job is {exc.current}; it cannot become {exc.target}")
    if isinstance(exc, StoreUnavailable | SchemaOutdated):
        return Problem(503, exc.code, "the job store is unavailable", headers={"Retry-After": "5"})
    return internal_error(exc)


def from_validation_error(exc: RequestValidationError) -> Problem:
    raw: Sequence[Any] = exc.errors()
    if any(e.get("type") == "json_invalid" for e in raw):
        return Problem(400, "malformed_json", "the request body is not valid JSON")
    errors = []
    for e in raw:
        loc = [str(p) for p in e.get("loc", ())]
        where = loc[0] if loc else "body"
        path = loc[1:]
        # A discriminated union puts the tag in the path: body.<type>.input.year → input.year.
        if where == "body" and len(path) > 1 and path[1] in ("type", "input", "options"):
            path = path[1:]
        if e.get("type") == "union_tag_invalid":
            tag = (e.get("ctx") or {}).get("tag", "")
            return Problem(
                422,
                "unknown_job_type",
                f"unknown job type {str(tag)[:100]!r}; registered types: "
                f"{(e.get('ctx') or {}).get('expected_tags', '')}",
            )
        errors.append(
            {
                "field": ".".join(path),
                "in": where,
                "message": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
        )
    fields = ", ".join(sorted({e["field"] or e["in"] for e in errors}))
    return Problem(
        422, "validation_failed", f"the request is not valid: {fields}", extra={"errors": errors}
    )


def from_http_exception(exc: StarletteHTTPException) -> Problem:
    status = exc.status_code
    code = _HTTP_CODES.get(status, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    if status == 404:
        detail = "no such resource"
    elif status == 405:
        detail = "this method is not allowed on this resource"
    return Problem(status, code, detail, headers=exc.headers)


def internal_error(exc: BaseException) -> Problem:
    error_id = uuid.uuid4().hex
    log.error("internal error %s", error_id, exc_info=exc)
    return Problem(
        500,
        "internal_error",
        f"an unexpected error occurred; quote error id {error_id} to the operator",
        extra={"error_id": error_id},
    )


def problem_for(exc: BaseException) -> Problem:
    """The problem that answers ``exc``, whatever it is."""
    if isinstance(exc, Problem):
        return exc
    cause: BaseException | None = exc
    while cause is not None:  # FastAPI wraps errors raised while reading the body in a 400
        if isinstance(cause, BodyTooLarge):
            return body_too_large(cause.limit)
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, RequestValidationError):
        return from_validation_error(exc)
    if isinstance(exc, StarletteHTTPException):
        return from_http_exception(exc)
    if isinstance(exc, OffloadError):
        return from_offload_error(exc)
    return internal_error(exc)


async def handle(request: Request, exc: Exception) -> Response:
    """An exception handler for the whole app (unknown routes, 405, anything else)."""
    problem = problem_for(exc)
    if problem.status == 405:
        # Starlette names the methods of the first route matching the path; list them all.
        methods = allowed_methods(request.app.openapi(), request.url.path)
        if methods:
            problem.headers["Allow"] = ", ".join(methods)
    return problem.response()


def allowed_methods(openapi: dict[str, Any], path: str) -> list[str]:
    paths = openapi.get("paths", {})
    if path in paths:  # a literal path wins over templates, as in routing
        return sorted(m.upper() for m in paths[path] if m.isalpha())
    found: set[str] = set()
    for template, operations in paths.items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            found |= {m.upper() for m in operations if m.isalpha()}
    return sorted(found)


class ProblemRoute(APIRoute):
    """A route whose every error is a problem document, also when offload's router is
    mounted in someone else's FastAPI app (their handlers are left alone)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return problem_for(exc).response()

        return route


def _join(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "error_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message", "type"],
                "properties": {
                    "field": {"type": "string"},
                    "in": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problems a route may answer (and 400 and 413,
    which any route may answer to a malformed or oversized request)."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in sorted({400, 413, *statuses})
    }
