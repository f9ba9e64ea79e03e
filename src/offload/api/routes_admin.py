"""``/v1/admin``: dead-letter governance, queues and API keys. Admin keys only (403 for
others); every change to a job is recorded in its event log with the key as actor."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from ..errors import IllegalTransition
from ..jobs import Job, JobStatus
from ..store import JobFilter
from .auth import Principal, create_key
from .deps import ApiState, admin_dependency, check_text, json_response
from .problems import Problem, ProblemRoute, problem_responses
from .schemas import (
    NAME,
    NO_NUL,
    AdminJobOut,
    AdminJobPage,
    KeyOut,
    KeyRequest,
    NewKeyOut,
    PageToken,
    QueueOut,
    ReplayManyRequest,
    ReplayManyResult,
    ReplayRequest,
    Timestamp,
    admin_job_json,
    key_json,
    queue_json,
)

COMMON = (401, 403, 429)


def admin_router(state: ApiState) -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=ProblemRoute)
    admin = Annotated[Principal, Depends(admin_dependency(state))]
    Text = Annotated[str | None, Query(max_length=200, pattern=NO_NUL)]

    async def find(job_id: uuid.UUID, *, dead: bool = False) -> Job:
        job = await (await state.store()).job_get(job_id)
        if job is None or (dead and job.status is not JobStatus.FAILED):
            what = "dead letter" if dead else "job"
            raise Problem(404, "job_not_found", f"no {what} {job_id}")
        return job

    # -- all jobs ----------------------------------------------------------------------------

    @router.get(
        "/jobs",
        response_model=AdminJobPage,
        summary="All jobs, every tenant, with full error detail",
        responses=problem_responses(400, *COMMON, 422),
    )
    async def admin_list_jobs(
        _: admin,
        status: Annotated[list[JobStatus] | None, Query()] = None,
        type: Text = None,
        tenant: Text = None,
        queue: Text = None,
        created_after: Timestamp | None = None,
        created_before: Timestamp | None = None,
        page_size: Annotated[int, Query(ge=1, le=500)] = 50,
        page_token: PageToken = None,
    ) -> Response:
        where = JobFilter(
            status=status or None,
            type=type,
            owner=tenant,
            queue=queue,
            created_after=created_after,
            created_before=created_before,
        )
        return await state.job_page(where, page_size, page_token, admin_job_json)

    @router.get(
        "/jobs/{job_id}",
        response_model=AdminJobOut,
        summary="One job with its traceback and event history",
        responses=problem_responses(*COMMON, 404, 422),
    )
    async def admin_get_job(_: admin, job_id: uuid.UUID) -> Response:
        job = await find(job_id)
        events = await (await state.store()).job_events(job_id)
        return json_response(admin_job_json(job, events))

    # -- dead letters ------------------------------------------------------------------------

    @router.get(
        "/dead-letters",
        response_model=AdminJobPage,
        summary="Dead letters (failed, not discarded), newest first",
        responses=problem_responses(400, *COMMON, 422),
    )
    async def list_dead_letters(
        _: admin,
        type: Text = None,
        error_code: Text = None,
        tenant: Text = None,
        failed_after: Timestamp | None = None,
        failed_before: Timestamp | None = None,
        page_size: Annotated[int, Query(ge=1, le=500)] = 50,
        page_token: PageToken = None,
    ) -> Response:
        where = JobFilter.dead_letters(
            type=type,
            error_code=error_code,
            owner=tenant,
            failed_after=failed_after,
            failed_before=failed_before,
        )
        return await state.job_page(where, page_size, page_token, admin_job_json)

    @router.get(
        "/dead-letters/{job_id}",
        response_model=AdminJobOut,
        summary="One dead letter with its traceback and event history",
        responses=problem_responses(*COMMON, 404, 422),
    )
    async def get_dead_letter(_: admin, job_id: uuid.UUID) -> Response:
        job = await find(job_id, dead=True)
        events = await (await state.store()).job_events(job_id)
        return json_response(admin_job_json(job, events))

    @router.post(
        "/dead-letters/{job_id}/replay",
        response_model=AdminJobOut,
        summary="Replay one dead letter, optionally with corrected input",
        responses=problem_responses(*COMMON, 404, 409, 422),
    )
    async def replay_dead_letter(
        caller: admin, job_id: uuid.UUID, body: ReplayRequest | None = None
    ) -> Response:
        await find(job_id, dead=True)
        new_input = body.input if body is not None else None
        if new_input is not None:
            check_text(new_input, "input")
        try:
            job = await state.offload.replay(job_id, new_input, actor=caller.actor)
        except IllegalTransition as exc:
            raise Problem(409, "not_a_dead_letter", f"the job is {exc.current}") from None
        if job is None:
            raise Problem(404, "job_not_found", f"no dead letter {job_id}")
        return json_response(admin_job_json(job))

    @router.post(
        "/dead-letters:replay",
        response_model=ReplayManyResult,
        summary="Replay the dead letters matching a filter (dry run by default)",
        responses=problem_responses(*COMMON, 422),
    )
    async def replay_dead_letters(caller: admin, body: ReplayManyRequest) -> Response:
        f = body.filter
        where = JobFilter.dead_letters(
            type=f.type,
            error_code=f.error_code,
            owner=f.tenant,
            failed_after=f.failed_after,
            failed_before=f.failed_before,
        )
        store = await state.store()
        matched = await store.job_count(where)
        replayed: list[str] = []
        if not body.dry_run:
            for job in await store.job_list(where, limit=body.limit):
                try:
                    done = await state.offload.replay(job.id, actor=caller.actor)
                except IllegalTransition:
                    continue  # replayed (or changed) by someone else meanwhile
                if done is not None:
                    replayed.append(str(done.id))
        return json_response(
            {
                "dry_run": body.dry_run,
                "matched": matched,
                "replayed": len(replayed),
                "job_ids": replayed,
            }
        )

    @router.post(
        "/dead-letters/{job_id}/discard",
        response_model=AdminJobOut,
        summary="Discard a dead letter: it leaves the list, keeps its history",
        responses=problem_responses(*COMMON, 404, 409, 422),
    )
    async def discard_dead_letter(caller: admin, job_id: uuid.UUID) -> Response:
        await find(job_id, dead=True)
        try:
            job = await (await state.store()).job_discard(job_id, caller.actor)
        except IllegalTransition:
            raise Problem(409, "already_discarded", "this dead letter was discarded") from None
        if job is None:
            raise Problem(404, "job_not_found", f"no dead letter {job_id}")
        return json_response(admin_job_json(job))

    # -- queues ------------------------------------------------------------------------------

    @router.get(
        "/queues",
        response_model=list[QueueOut],
        summary="Queues: depth, running jobs, age of the oldest waiting job",
        responses=problem_responses(*COMMON),
    )
    async def list_queues(_: admin) -> Response:
        return json_response([queue_json(q) for q in await state.offload.queues()])

    QueueName = Annotated[str, Path(min_length=1, max_length=100, pattern=NAME)]

    async def queue_info(name: str) -> Response:
        for q in await state.offload.queues():
            if q.name == name:
                return json_response(queue_json(q))
        raise Problem(404, "queue_not_found", f"no queue {name}")  # pragma: no cover

    @router.post(
        "/queues/{name}/pause",
        response_model=QueueOut,
        summary="Pause a queue: workers stop claiming from it, nothing is lost",
        responses=problem_responses(*COMMON, 422),
    )
    async def pause_queue(caller: admin, name: QueueName) -> Response:
        await state.offload.pause_queue(name, actor=caller.actor)
        return await queue_info(name)

    @router.post(
        "/queues/{name}/resume",
        response_model=QueueOut,
        summary="Resume a paused queue",
        responses=problem_responses(*COMMON, 422),
    )
    async def resume_queue(caller: admin, name: QueueName) -> Response:
        await state.offload.resume_queue(name, actor=caller.actor)
        return await queue_info(name)

    # -- API keys ----------------------------------------------------------------------------

    @router.get(
        "/keys",
        response_model=list[KeyOut],
        summary="API keys (never the secrets)",
        responses=problem_responses(*COMMON),
    )
    async def list_keys(_: admin) -> Response:
        return json_response([key_json(k) for k in await (await state.store()).key_list()])

    @router.post(
        "/keys",
        status_code=201,
        response_model=NewKeyOut,
        summary="Create an API key; the secret is in this response only",
        responses=problem_responses(*COMMON, 422),
    )
    async def create_api_key(_: admin, body: KeyRequest) -> Response:
        key, secret = await create_key(await state.store(), body.tenant, body.role, body.name)
        return json_response({**key_json(key), "key": secret}, 201)

    @router.post(
        "/keys/{key_id}/revoke",
        response_model=KeyOut,
        summary="Revoke an API key (at once in this process)",
        responses=problem_responses(*COMMON, 404, 409, 422),
    )
    async def revoke_api_key(
        caller: admin, key_id: Annotated[str, Path(max_length=100, pattern=NAME)]
    ) -> Response:
        if key_id == caller.key_id:
            raise Problem(409, "own_key", "a key cannot revoke itself; use another admin key")
        key = await (await state.store()).key_revoke(key_id)
        if key is None:
            raise Problem(404, "key_not_found", f"no API key {key_id}")
        state.auth.forget(key_id)
        return json_response(key_json(key))

    return router
