"""Webhooks (admin keys only; 403 for others): registered endpoints per tenant, the tenants'
signing secrets, and the delivery log with re-send.

- ``POST /v1/webhooks`` ``{"url", "events"?, "tenant"?}`` → 201 with the endpoint and its
  ``secret`` (``whsec_…``); without ``events`` it receives the three terminal ones; ``tenant``
  defaults to the admin key's own.
- ``GET /v1/webhooks``, ``GET|DELETE /v1/webhooks/{id}``, ``POST /v1/webhooks/{id}/rotate``.
- ``GET /v1/signing-secret?tenant=…`` (created on first use) and ``POST
  /v1/signing-secret/rotate?tenant=…``: the secret signing jobs' own ``options.notify.webhook``.
- ``GET /v1/webhooks/{id}/deliveries``, ``GET /v1/admin/jobs/{job_id}/deliveries``, ``GET
  /v1/deliveries/{id}`` (with every attempt) and ``POST /v1/deliveries/{id}/resend``.
"""

import json
import secrets
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ..notify.dispatcher import EVENT_TYPES, TERMINAL
from ..notify.signing import new_secret
from ..notify.ssrf import AllowList, check_url
from ..store.notify import Delivery, DeliveryAttempt, WebhookEndpoint
from .auth import Principal
from .deps import ApiState, admin_dependency, json_response
from .problems import Problem, ProblemRoute, problem_responses
from .schemas import NO_NUL, WEBHOOK_URL

COMMON = (401, 403, 429)
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]

ENDPOINT_ID = r"^wh_[0-9a-f]{16}$"
DELIVERY_ID = r"^msg_[0-9a-f]{32}$"
Tenant = Annotated[
    str | None,
    Query(min_length=1, max_length=200, pattern=NO_NUL, description="Default: the key's own."),
]


class WebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, pattern=WEBHOOK_URL)
    events: list[EventType] | None = Field(
        default=None,
        min_length=1,
        description="Event types to receive; default the terminal ones "
        "(job.succeeded, job.failed, job.canceled).",
    )
    tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="Whose jobs' events it receives; default the admin key's own tenant.",
    )


class WebhookOut(BaseModel):
    id: str
    tenant: str
    url: str
    events: list[str]
    created_at: str
    disabled_at: str | None
    disabled_reason: str | None = Field(description="Why it stopped, e.g. 410 Gone.")


class NewWebhookOut(WebhookOut):
    secret: str = Field(description="`whsec_` + base64: verify signatures with it.")


class SigningSecretOut(BaseModel):
    tenant: str
    secret: str


class AttemptOut(BaseModel):
    n: int
    attempted_at: str
    duration_ms: float
    status_code: int | None
    error: str | None


class DeliveryOut(BaseModel):
    id: str = Field(description="The `webhook-id` header, the same on every attempt.")
    tenant: str
    channel: Literal["webhook", "email"]
    endpoint_id: str | None
    job_id: uuid.UUID
    target: str
    event_type: str
    status: Literal["pending", "delivering", "succeeded", "failed"]
    attempts: int
    next_attempt_at: str | None
    deadline_at: str
    last_status_code: int | None
    last_error: str | None
    created_at: str
    finished_at: str | None
    payload: Any
    history: list[AttemptOut] | None = None


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut]
    next_page_token: str | None


def endpoint_json(e: WebhookEndpoint, *, secret: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": e.id,
        "tenant": e.tenant,
        "url": e.url,
        "events": list(e.events),
        "created_at": e.created_at.isoformat(),
        "disabled_at": e.disabled_at.isoformat() if e.disabled_at else None,
        "disabled_reason": e.disabled_reason,
    }
    if secret:
        data["secret"] = e.secret
    return data


def delivery_json(d: Delivery, history: list[DeliveryAttempt] | None = None) -> dict[str, Any]:
    waiting = d.status in ("pending", "delivering")
    data: dict[str, Any] = {
        "id": d.id,
        "tenant": d.tenant,
        "channel": d.channel,
        "endpoint_id": d.endpoint_id,
        "job_id": str(d.job_id),
        "target": d.target,
        "event_type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at.isoformat() if waiting else None,
        "deadline_at": d.deadline_at.isoformat(),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": d.created_at.isoformat(),
        "finished_at": d.finished_at.isoformat() if d.finished_at else None,
        "payload": json.loads(d.payload),
    }
    if history is not None:
        data["history"] = [
            {
                "n": a.n,
                "attempted_at": a.attempted_at.isoformat(),
                "duration_ms": a.duration_ms,
                "status_code": a.status_code,
                "error": a.error,
            }
            for a in history
        ]
    return data


def webhooks_router(state: ApiState) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["webhooks"], route_class=ProblemRoute)
    admin = Annotated[Principal, Depends(admin_dependency(state))]
    EndpointId = Annotated[str, Path(pattern=ENDPOINT_ID, description="wh_…")]
    DeliveryId = Annotated[str, Path(pattern=DELIVERY_ID, description="msg_…")]
    PageSize = Annotated[int, Query(ge=1, le=500)]
    PageToken = Annotated[str | None, Query(pattern=DELIVERY_ID)]
    settings = state.offload.settings

    async def store() -> Any:
        return await state.store()

    async def endpoint(endpoint_id: str) -> WebhookEndpoint:
        found = await (await store()).webhook_get(endpoint_id)
        if found is None:
            raise Problem(404, "webhook_not_found", f"no webhook {endpoint_id}")
        return found

    async def page(size: int, token: str | None, **where: Any) -> Response:
        found = await (await store()).delivery_list(limit=size + 1, after=token, **where)
        next_token = found[size - 1].id if len(found) > size else None
        return json_response(
            {"deliveries": [delivery_json(d) for d in found[:size]], "next_page_token": next_token}
        )

    # -- endpoints ---------------------------------------------------------------------------

    @router.post(
        "/webhooks",
        status_code=201,
        response_model=NewWebhookOut,
        summary="Register a webhook endpoint; its signing secret is in the answer",
        responses=problem_responses(*COMMON, 422),
    )
    async def create_webhook(caller: admin, body: WebhookRequest) -> Response:
        await check_url(body.url, AllowList.parse(settings.webhook_allowed_hosts))
        events = sorted(set(body.events or TERMINAL), key=EVENT_TYPES.index)
        created = await (await store()).webhook_insert(
            f"wh_{secrets.token_hex(8)}",
            body.tenant or caller.tenant,
            body.url,
            events,
            new_secret(),
        )
        return json_response(endpoint_json(created, secret=True), 201)

    @router.get(
        "/webhooks",
        response_model=list[WebhookOut],
        summary="Webhook endpoints (never their secrets)",
        responses=problem_responses(*COMMON, 422),
    )
    async def list_webhooks(_: admin, tenant: Tenant = None) -> Response:
        found = await (await store()).webhook_list(tenant)
        return json_response([endpoint_json(e) for e in found])

    @router.get(
        "/webhooks/{endpoint_id}",
        response_model=WebhookOut,
        summary="One webhook endpoint",
        responses=problem_responses(*COMMON, 404, 422),
    )
    async def get_webhook(_: admin, endpoint_id: EndpointId) -> Response:
        return json_response(endpoint_json(await endpoint(endpoint_id)))

    @router.delete(
        "/webhooks/{endpoint_id}",
        status_code=204,
        summary="Delete a webhook endpoint; its pending deliveries are dropped",
        responses=problem_responses(*COMMON, 404, 422),
    )
    async def delete_webhook(_: admin, endpoint_id: EndpointId) -> Response:
        if not await (await store()).webhook_delete(endpoint_id):
            raise Problem(404, "webhook_not_found", f"no webhook {endpoint_id}")
        return Response(status_code=204)

    @router.post(
        "/webhooks/{endpoint_id}/rotate",
        response_model=NewWebhookOut,
        summary="Replace the endpoint's signing secret (the next attempts use the new one)",
        responses=problem_responses(*COMMON, 404, 422),
    )
    async def rotate_webhook(_: admin, endpoint_id: EndpointId) -> Response:
        rotated = await (await store()).webhook_set_secret(endpoint_id, new_secret())
        if rotated is None:
            raise Problem(404, "webhook_not_found", f"no webhook {endpoint_id}")
        return json_response(endpoint_json(rotated, secret=True))

    # -- the tenant's signing secret (jobs' own webhooks) -------------------------------------

    @router.get(
        "/signing-secret",
        response_model=SigningSecretOut,
        summary="The secret signing a tenant's job webhooks (created on first use)",
        responses=problem_responses(*COMMON, 422),
    )
    async def get_signing_secret(caller: admin, tenant: Tenant = None) -> Response:
        who = tenant or caller.tenant
        secret = await (await store()).tenant_secret(who, new_secret())
        return json_response({"tenant": who, "secret": secret})

    @router.post(
        "/signing-secret/rotate",
        response_model=SigningSecretOut,
        summary="Replace a tenant's job-webhook signing secret",
        responses=problem_responses(*COMMON, 422),
    )
    async def rotate_signing_secret(caller: admin, tenant: Tenant = None) -> Response:
        who = tenant or caller.tenant
        secret = await (await store()).tenant_secret_rotate(who, new_secret())
        return json_response({"tenant": who, "secret": secret})

    # -- deliveries --------------------------------------------------------------------------

    @router.get(
        "/webhooks/{endpoint_id}/deliveries",
        response_model=DeliveryPage,
        summary="An endpoint's deliveries, newest first",
        responses=problem_responses(*COMMON, 404, 422),
    )
    async def list_endpoint_deliveries(
        _: admin, endpoint_id: EndpointId, page_size: PageSize = 50, page_token: PageToken = None
    ) -> Response:
        await endpoint(endpoint_id)
        return await page(page_size, page_token, endpoint_id=endpoint_id)

    @router.get(
        "/admin/jobs/{job_id}/deliveries",
        response_model=DeliveryPage,
        summary="A job's deliveries (its own webhook and email, and registered endpoints')",
        responses=problem_responses(*COMMON, 404, 422),
    )
    async def list_job_deliveries(
        _: admin, job_id: uuid.UUID, page_size: PageSize = 50, page_token: PageToken = None
    ) -> Response:
        if await (await store()).job_get(job_id) is None:
            raise Problem(404, "job_not_found", f"no job {job_id}")
        return await page(page_size, page_token, job_id=job_id)

    @router.get(
        "/deliveries/{delivery_id}",
        response_model=DeliveryOut,
        summary="One delivery with every attempt (status code, error, duration, time)",
        responses=problem_responses(*COMMON, 404, 422),
    )
    async def get_delivery(_: admin, delivery_id: DeliveryId) -> Response:
        s = await store()
        found = await s.delivery_get(delivery_id)
        if found is None:
            raise Problem(404, "delivery_not_found", f"no delivery {delivery_id}")
        return json_response(delivery_json(found, await s.delivery_attempts(delivery_id)))

    @router.post(
        "/deliveries/{delivery_id}/resend",
        status_code=202,
        response_model=DeliveryOut,
        summary="Send a delivery again (same webhook-id, a fresh retry window)",
        responses=problem_responses(*COMMON, 404, 409, 422),
    )
    async def resend_delivery(_: admin, delivery_id: DeliveryId) -> Response:
        s = await store()
        found = await s.delivery_resend(delivery_id, settings.webhook_retry_window)
        if found is None:
            raise Problem(404, "delivery_not_found", f"no delivery {delivery_id}")
        if found.status == "delivering":
            raise Problem(409, "delivery_in_flight", "this delivery is being attempted right now")
        return json_response(delivery_json(found), 202)

    return router
