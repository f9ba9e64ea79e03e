"""Push: ``GET /v1/jobs/{id}/events`` and ``GET /v1/events`` (Server-Sent Events) and the
WebSocket ``/v1/events/ws``. Each connection replays from its position (``Last-Event-ID``)
out of the event log and then follows it, woken by this process's one bus listener."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from ..events.bus import EventHub
from ..events.follow import Item, follow_feed, follow_job
from ..events.payload import PUBLIC_EVENT_TYPES
from ..store import EventFilter
from .auth import Principal
from .deps import ApiState, principal_dependency
from .problems import Problem, ProblemRoute, problem_responses

SSE_DOC = (
    "A `text/event-stream`: `retry:` first, then one message per event with `id:`, `event:` "
    "(the event type) and `data:` (the job's public fields as of the event, the shape of "
    "`GET /v1/jobs/{id}`); comment lines (`: ping`) as heartbeats. Reconnect with "
    "`Last-Event-ID` to get exactly the events after that one."
)
EVENT_TYPES = ", ".join(f"`{t}`" for t in PUBLIC_EVENT_TYPES)


def _stream_response(state: ApiState, items: AsyncIterator[Item | None]) -> StreamingResponse:
    retry = f"retry: {state.settings.events_retry_ms}\n\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield retry
        async for item in items:
            if item is None:
                yield b": ping\n\n"
            else:
                yield (
                    f"id: {item.id}\nevent: {item.type}\ndata: ".encode()
                    + orjson.dumps(item.data)
                    + b"\n\n"
                )

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_hub(state: ApiState) -> EventHub:
    try:
        return await state.offload.event_hub()
    except Exception as exc:  # any transport's connection error: Redis, PostgreSQL, OS
        raise Problem(
            503,
            "events_unavailable",
            "the event bus is not reachable; try again shortly",
            headers={"Retry-After": "5"},
        ) from exc


def _job_position(last_event_id: str | None) -> int:
    if last_event_id is None or last_event_id == "":
        return 0
    if not last_event_id.isdecimal() or len(last_event_id) > 9:
        raise Problem(
            400, "invalid_last_event_id", "Last-Event-ID must be an event id of this stream"
        )
    return int(last_event_id)


def _feed_filter(
    principal: Principal,
    types: list[str] | None,
    events: list[str] | None,
    queues: list[str] | None,
) -> EventFilter:
    unknown = sorted(set(events or ()) - set(PUBLIC_EVENT_TYPES))
    if unknown:
        raise Problem(
            400,
            "invalid_event_type",
            f"unknown event type {unknown[0]!r}: use {', '.join(PUBLIC_EVENT_TYPES)}",
        )
    return EventFilter(
        owner=None if principal.reads_all else principal.tenant,
        event_types=events or PUBLIC_EVENT_TYPES,
        job_types=types or None,
        queues=queues or None,
    )


async def _checked_cursor(state: ApiState, cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        await (await state.store()).events_after(cursor, limit=1)
    except ValueError:
        raise Problem(
            400, "invalid_last_event_id", "Last-Event-ID must be an event id of this stream"
        ) from None
    return cursor


def events_router(state: ApiState) -> APIRouter:
    router = APIRouter(tags=["events"], route_class=ProblemRoute)
    reader = Annotated[Principal, Depends(principal_dependency(state))]
    last_id = Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="Resume after this event (the `id:` of the last event received).",
            pattern=r"^[0-9.]{0,60}$",
        ),
    ]
    heartbeat = state.settings.events_heartbeat_seconds
    stream_doc = {"description": SSE_DOC, "content": {"text/event-stream": {"schema": {}}}}

    @router.get(
        "/v1/jobs/{job_id}/events",
        summary="Follow one job's events (Server-Sent Events)",
        description=SSE_DOC + f" Event types: {EVENT_TYPES}. `id:` is the event's sequence "
        "number in the job's log. A new connection first replays the job's events so far; "
        "the stream ends after the terminal event.",
        response_class=StreamingResponse,
        responses={200: stream_doc, **problem_responses(401, 404, 429, 503)},
    )
    async def job_events(
        job_id: uuid.UUID, principal: reader, last_event_id: last_id = None
    ) -> StreamingResponse:
        after = _job_position(last_event_id)
        await state.visible_job(principal, job_id)
        store = await state.store()
        hub = await _event_hub(state)
        return _stream_response(state, follow_job(store, hub, job_id, after, heartbeat))

    @router.get(
        "/v1/events",
        summary="Follow every event this key may see (Server-Sent Events)",
        description=SSE_DOC + " Clients see their tenant's jobs, viewers and admins all. "
        "`id:` is an opaque position in the global feed. Without `Last-Event-ID` the stream "
        "starts now.",
        response_class=StreamingResponse,
        responses={200: stream_doc, **problem_responses(401, 429, 503)},
    )
    async def all_events(
        principal: reader,
        last_event_id: last_id = None,
        type: Annotated[
            list[str] | None, Query(description="Only jobs of these job types.", max_length=20)
        ] = None,
        event: Annotated[
            list[str] | None,
            Query(description=f"Only these event types: {EVENT_TYPES}.", max_length=20),
        ] = None,
        queue: Annotated[
            list[str] | None, Query(description="Only jobs in these queues.", max_length=20)
        ] = None,
    ) -> StreamingResponse:
        where = _feed_filter(principal, type, event, queue)
        store = await state.store()
        # "Now" is fixed before the response starts: a client that got the headers is in.
        cursor = await _checked_cursor(state, last_event_id) or await store.events_head()
        hub = await _event_hub(state)
        return _stream_response(state, follow_feed(store, hub, cursor, where, heartbeat))

    @router.websocket("/v1/events/ws")
    async def events_ws(websocket: WebSocket, token: str | None = None) -> None:
        await websocket_session(state, websocket, token)

    return router


async def websocket_session(state: ApiState, ws: WebSocket, token: str | None) -> None:
    """Auth: ``Authorization: Bearer <key>`` on the handshake, or ``?token=<key>`` (browsers
    cannot set headers). Then the client sends one subscription:
    ``{"subscribe": "job", "job_id": "…", "after": "3"}`` or
    ``{"subscribe": "all", "after": "<cursor>", "type": [...], "event": [...], "queue": [...]}``
    (``after`` optional: a job replays from its start, "all" starts now). The server answers
    ``{"subscribed": "job" | "all"}``, then sends ``{"id", "event", "data"}`` per event,
    ``{"heartbeat": true}`` when idle, and closes (1000) after a job's terminal event (1012
    when the server is stopping: resume elsewhere with ``after``).
    Errors: ``{"error": {"status", "code", "detail"}}`` then close 4400/4401/4404."""
    authorization = ws.headers.get("authorization") or (f"Bearer {token}" if token else None)
    try:
        principal = await state.auth.authenticate(authorization)
    except Problem as problem:
        await ws.close(code=4401, reason=problem.detail[:100])
        return
    await ws.accept()
    try:
        request = await asyncio.wait_for(ws.receive_json(), 30)
        items = await _subscription(state, principal, request)
    except Problem as problem:
        await _ws_error(ws, problem)
        return
    except (TimeoutError, ValueError, KeyError, TypeError):
        await _ws_error(ws, Problem(400, "invalid_subscription", "send a subscription first"))
        return
    except WebSocketDisconnect:
        return
    await ws.send_json({"subscribed": request["subscribe"]})

    async def send() -> None:
        async for item in items:
            if item is None:
                await ws.send_json({"heartbeat": True})
            else:
                await ws.send_text(
                    orjson.dumps({"id": item.id, "event": item.type, "data": item.data}).decode()
                )

    sender = asyncio.create_task(send())
    receiver = asyncio.create_task(_until_closed(ws))
    done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    for task in (sender, receiver):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if sender in done and sender.exception() is None:
        # 1000: the job ended; 1012 (service restart): the server is stopping, resume elsewhere.
        stopping = (await state.offload.event_hub()).ending
        with contextlib.suppress(Exception):
            await ws.close(1012 if stopping else 1000)


async def _until_closed(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive()
            if ws.client_state.name != "CONNECTED":
                return


async def _ws_error(ws: WebSocket, problem: Problem) -> None:
    with contextlib.suppress(Exception):
        await ws.send_json(
            {"error": {"status": problem.status, "code": problem.code, "detail": problem.detail}}
        )
        await ws.close(code=4000 + problem.status)


async def _subscription(
    state: ApiState, principal: Principal, request: Any
) -> AsyncIterator[Item | None]:
    if not isinstance(request, dict):
        raise ValueError("not an object")
    heartbeat = state.settings.events_heartbeat_seconds
    store = await state.store()
    hub = await _event_hub(state)
    after = request.get("after")
    if after is not None and not isinstance(after, str | int):
        raise ValueError("after")
    if request.get("subscribe") == "job":
        job_id = uuid.UUID(str(request["job_id"]))
        position = _job_position(None if after is None else str(after))
        await state.visible_job(principal, job_id)
        return follow_job(store, hub, job_id, position, heartbeat)
    if request.get("subscribe") == "all":
        lists = {k: request.get(k) for k in ("type", "event", "queue")}
        for value in lists.values():
            if value is not None and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                raise ValueError("filters must be lists of strings")
        where = _feed_filter(principal, lists["type"], lists["event"], lists["queue"])
        cursor = await _checked_cursor(state, None if after is None else str(after))
        cursor = cursor or await store.events_head()
        return follow_feed(store, hub, cursor, where, heartbeat)
    raise ValueError("subscribe must be job or all")
