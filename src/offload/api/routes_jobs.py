"""``/v1/jobs``: submit (202 + Location), read (ETag, long poll), list, cancel."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import Response

from ..errors import IllegalTransition
from ..jobs import Job, JobStatus
from ..store import JobFilter
from .auth import Principal
from .deps import (
    ApiState,
    check_text,
    encode_json,
    etag_matches,
    etag_of,
    json_response,
    principal_dependency,
    writer_dependency,
)
from .limits import parse_wait
from .problems import Problem, ProblemRoute, problem_responses
from .schemas import (
    NO_NUL,
    JobOut,
    JobPage,
    PageToken,
    Timestamp,
    build_submit_model,
    job_json,
)

PREFER_DOC = (
    "`wait=N` (RFC 7240): hold the request up to N seconds (capped by the server) for the "
    "job to change; answered with `Preference-Applied`."
)
AUTH_ERRORS = (401, 429)


def jobs_router(state: ApiState) -> APIRouter:
    router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=ProblemRoute)
    reader = Annotated[Principal, Depends(principal_dependency(state))]
    writer = Annotated[Principal, Depends(writer_dependency(state))]
    submit_body = build_submit_model(state.offload.registry)
    s = state.settings
    retry_after = str(s.retry_after_seconds)

    def job_headers(request: Request, job: Job, body: bytes | None = None) -> dict[str, str]:
        headers = {"Vary": "Prefer", "Cache-Control": "no-cache"}
        if body is not None:
            headers["ETag"] = etag_of(body)
        if not job.is_terminal:
            headers["Retry-After"] = retry_after
        return headers

    @router.post(
        "",
        status_code=202,
        response_model=JobOut,
        summary="Submit a job",
        responses={
            200: {"description": "Finished within `Prefer: wait`", "model": JobOut},
            202: {
                "description": "Accepted: follow `Location` (or `Operation-Location`)",
                "headers": {
                    "Location": {"schema": {"type": "string"}},
                    "Operation-Location": {"schema": {"type": "string"}},
                    "Retry-After": {"schema": {"type": "integer"}},
                },
            },
            **problem_responses(400, 401, 403, 409, 413, 422, 429, 503),
        },
    )
    async def submit_job(
        request: Request,
        caller: writer,
        body: Annotated[submit_body, Body()],  # type: ignore[valid-type]
        idempotency_key: Annotated[
            str | None,
            Header(
                min_length=1,
                max_length=255,
                pattern=NO_NUL,
                description="Same key and body: the original job again (IETF draft).",
            ),
        ] = None,
        prefer: Annotated[str | None, Header(description=PREFER_DOC)] = None,
    ) -> Response:
        options = body.options
        input_json = body.input.model_dump(mode="json")
        check_text(input_json, "input")
        spec = state.offload.registry.get(body.type)
        queue = (options.queue if options else None) or spec.queue
        inflight = (caller.tenant, idempotency_key) if idempotency_key is not None else None
        if inflight is not None:
            if inflight in state.inflight:
                raise Problem(
                    409,
                    "idempotency_key_in_flight",
                    "a request with this Idempotency-Key is still being processed",
                )
            state.inflight.add(inflight)
        try:
            store = await state.store()
            await state.queues.admit(store, queue, s.retry_after_seconds)
            job, created = await state.offload.submit_with_status(
                body.type,
                body.input,
                idempotency_key=idempotency_key,
                queue=queue,
                priority=options.priority if options else None,
                delay=options.delay_seconds if options else None,
                run_at=options.run_at if options else None,
                owner=caller.tenant,
                notify=options.notify.model_dump() if options and options.notify else None,
            )
            if created:
                state.queues.added(queue)
            wait = parse_wait(prefer, s.max_wait_seconds)
            if wait and not job.is_terminal:
                job = await state.wait_for(job.id, lambda j: j.is_terminal, wait) or job
        finally:
            if inflight is not None:
                state.inflight.discard(inflight)
        location = state.location(request, job.id)
        headers = job_headers(request, job)
        headers.update({"Location": location, "Operation-Location": location})
        if wait is not None:
            headers["Preference-Applied"] = f"wait={wait}"
        if not created:
            headers["Idempotent-Replayed"] = "true"
        status = 200 if wait is not None and job.is_terminal else 202
        return json_response(job_json(job), status, headers)

    @router.get(
        "/{job_id}",
        name="get_job",
        response_model=JobOut,
        summary="Get a job",
        responses={
            200: {"headers": {"ETag": {"schema": {"type": "string"}}}},
            304: {"description": "Not modified (`If-None-Match`)"},
            **problem_responses(401, 404, 422, 429),
        },
    )
    async def get_job(
        request: Request,
        caller: reader,
        job_id: uuid.UUID,
        if_none_match: Annotated[str | None, Header()] = None,
        prefer: Annotated[str | None, Header(description=PREFER_DOC)] = None,
    ) -> Response:
        job = await state.visible_job(caller, job_id)
        body = _encode(job)
        wait = parse_wait(prefer, s.max_wait_seconds)
        if wait and not job.is_terminal:
            # Hold until the representation differs from the one the caller has (its
            # If-None-Match), or from the one current at arrival.
            seen = if_none_match if if_none_match else etag_of(body)

            def changed(j: Job) -> bool:
                return j.is_terminal or not etag_matches(seen, etag_of(_encode(j)))

            latest = await state.wait_for(job.id, changed, wait)
            if latest is not None and principal_sees(caller, latest):
                job, body = latest, _encode(latest)
        headers = job_headers(request, job, body)
        if wait is not None:
            headers["Preference-Applied"] = f"wait={wait}"
        if etag_matches(if_none_match, headers["ETag"]):
            return Response(status_code=304, headers=headers)
        return Response(body, 200, headers=headers, media_type="application/json")

    @router.get(
        "",
        response_model=JobPage,
        summary="List jobs",
        description="The caller's jobs (viewers and admins: all), newest first.",
        responses=problem_responses(400, 401, 422, 429),
    )
    async def list_jobs(
        caller: reader,
        status: Annotated[list[JobStatus] | None, Query()] = None,
        type: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
        created_after: Timestamp | None = None,
        created_before: Timestamp | None = None,
        page_size: Annotated[int, Query(ge=1, le=500)] = s.page_size,
        page_token: PageToken = None,
    ) -> Response:
        where = JobFilter(
            status=status or None,
            type=type,
            owner=None if caller.reads_all else caller.tenant,
            created_after=created_after,
            created_before=created_before,
        )
        return await state.job_page(where, page_size, page_token, job_json)

    @router.post(
        "/{job_id}/cancel",
        response_model=JobOut,
        summary="Cancel a job",
        description="A waiting job is canceled at once (200); a running one is asked to stop "
        "(202, follow `Location`). 409 if it already finished.",
        responses={
            202: {"description": "Cancel requested; the job is still running", "model": JobOut},
            **problem_responses(401, 403, 404, 409, 422, 429),
        },
    )
    async def cancel_job(request: Request, caller: writer, job_id: uuid.UUID) -> Response:
        await state.visible_job(caller, job_id)
        try:
            job = await state.offload.cancel(job_id, actor=caller.actor)
        except IllegalTransition as exc:
            raise Problem(
                409, "job_terminal", f"the job already finished ({exc.current})"
            ) from None
        if job is None:
            raise Problem(404, "job_not_found", f"no job {job_id}")
        if job.is_terminal:
            return json_response(job_json(job), 200)
        location = state.location(request, job.id)
        headers = job_headers(request, job)
        headers.update({"Location": location, "Operation-Location": location})
        return json_response(job_json(job), 202, headers)

    return router


def principal_sees(caller: Principal, job: Job) -> bool:
    return caller.sees(job.owner)


def _encode(job: Job) -> bytes:
    data: dict[str, Any] = job_json(job)
    return encode_json(data)
