"""The app factory: ``create_app(offload)`` for ``offload serve``, ``create_router(offload)``
to mount offload's routes in an existing FastAPI application.

>>> from offload.api import create_app
>>> api = create_app(app)                      # uvicorn myproject.api:api
>>> team_app.include_router(create_router(app))  # or inside your own FastAPI app
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..app import Offload
from ..errors import OffloadError
from .deps import ApiState, json_response
from .limits import BodySizeLimit
from .problems import PROBLEM_SCHEMA, Problem, ProblemRoute, handle, problem_responses
from .routes_admin import admin_router
from .routes_events import events_router
from .routes_jobs import jobs_router
from .routes_webhooks import webhooks_router
from .schemas import Health
from .settings import ApiSettings


def create_router(offload: Offload, settings: ApiSettings | None = None) -> APIRouter:
    """All of offload's routes (``/v1/jobs``, ``/v1/admin``, ``/healthz``, ``/readyz``).

    Errors on these routes are problem documents whatever app they are mounted in. Request
    bodies are limited when the app also has :class:`~offload.api.limits.BodySizeLimit`
    (``create_app`` adds it; add it to your app when mounting).
    """
    state = ApiState(offload, settings or ApiSettings.from_env())
    router = APIRouter(route_class=ProblemRoute)
    router.include_router(jobs_router(state))
    router.include_router(events_router(state))
    router.include_router(admin_router(state))
    router.include_router(webhooks_router(state))
    router.include_router(health_router(state))
    return router


def health_router(state: ApiState) -> APIRouter:
    router = APIRouter(tags=["health"], route_class=ProblemRoute)

    @router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @router.get(
        "/readyz",
        response_model=Health,
        summary="Readiness: the store is reachable",
        responses=problem_responses(503),
    )
    async def readyz() -> Response:
        try:
            store = await state.store()
            await store.schema_version()
        except (OffloadError, OSError, RuntimeError) as exc:
            raise Problem(
                503,
                "store_unavailable",
                "the job store is not reachable",
                headers={"Retry-After": "5"},
            ) from exc
        return json_response({"status": "ok"})

    return router


def create_app(
    offload: Offload,
    settings: ApiSettings | None = None,
    *,
    inline_workers: int = 0,
    worker_grace: float = 10.0,
) -> FastAPI:
    """A FastAPI application serving offload's API for ``offload``'s job types.

    ``inline_workers=N`` also runs a worker with N slots inside the API process (small
    deployments; ``offload serve --inline-workers N``). Otherwise jobs are run by separate
    ``offload worker`` processes.
    """
    settings = settings or ApiSettings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await offload.store()  # fail at start-up, not on the first request
        await (await offload.broker()).check("publish")
        worker = task = None
        if inline_workers > 0:
            from ..worker import Worker

            worker = Worker(offload, concurrency=inline_workers, grace=worker_grace)
            task = asyncio.create_task(worker.run(), name="offload-inline-worker")
        try:
            yield
        finally:
            if worker is not None and task is not None:
                worker.stop()
                await task
            await offload.close()

    api = FastAPI(
        title="offload",
        version=__version__,
        description="Accept slow work in milliseconds (202 + a job id), follow it, and govern "
        "dead letters. Errors are RFC 9457 problem documents (`application/problem+json`).",
        lifespan=lifespan,
    )
    api.include_router(create_router(offload, settings))
    api.add_exception_handler(StarletteHTTPException, handle)
    api.add_exception_handler(RequestValidationError, handle)
    api.add_exception_handler(Exception, handle)
    api.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    _add_problem_schema(api)
    return api


def _add_problem_schema(api: FastAPI) -> None:
    plain = api.openapi

    def openapi() -> dict:
        if api.openapi_schema is None:
            schema = plain()
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
                PROBLEM_SCHEMA
            )
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
