"""The notification side of :class:`~offload.store.postgres.PostgresStore` (see
:mod:`offload.store.notify`). Deliveries are claimed with ``FOR UPDATE SKIP LOCKED``, so any
number of dispatchers share the work without waiting on each other."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from .notify import (
    AttemptResult,
    Delivery,
    DeliveryAttempt,
    NewDelivery,
    Notify,
    NotifyStore,
    WebhookEndpoint,
)
from .queries import load_queries

Q = load_queries("postgres", "notify.sql")


def _endpoint(row: asyncpg.Record) -> WebhookEndpoint:
    data = dict(row)
    data["events"] = tuple(data["events"])
    return WebhookEndpoint(**data)


def _delivery(row: asyncpg.Record) -> Delivery:
    data = dict(row)
    for internal in ("dedupe_key", "lease_owner", "lease_expires_at"):
        del data[internal]
    return Delivery(**data)


async def insert_job_notify(conn: asyncpg.Connection, job_id: uuid.UUID, notify: Notify) -> None:
    """Called inside the job's own insert transaction."""
    await conn.execute(Q["job_notify_insert"], job_id, notify.webhook, notify.email)


async def insert_jobs_notify(conn: asyncpg.Connection, jobs: Sequence[Any]) -> None:
    """The targets of a bulk submit (``NewJob`` with ``notify``), in its transaction."""
    rows = [(j.id, j.notify.webhook, j.notify.email) for j in jobs if j.notify]
    if rows:
        await conn.copy_records_to_table(
            "offload_job_notify", columns=["job_id", "webhook", "email"], records=rows
        )


class PostgresNotify(NotifyStore):
    """Mixed into PostgresStore, which provides ``pool``."""

    pool: asyncpg.Pool

    async def webhook_insert(
        self, endpoint_id: str, tenant: str, url: str, events: Sequence[str], secret: str
    ) -> WebhookEndpoint:
        row = await self.pool.fetchrow(
            Q["webhook_insert"], endpoint_id, tenant, url, list(events), secret
        )
        return _endpoint(row)

    async def webhook_get(self, endpoint_id: str) -> WebhookEndpoint | None:
        row = await self.pool.fetchrow(Q["webhook_get"], endpoint_id)
        return _endpoint(row) if row else None

    async def webhook_list(self, tenant: str | None = None) -> list[WebhookEndpoint]:
        return [_endpoint(r) for r in await self.pool.fetch(Q["webhook_list"], tenant)]

    async def webhook_delete(self, endpoint_id: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(Q["webhook_delete"], endpoint_id) is None:
                return False
            await conn.execute(Q["deliveries_fail_endpoint"], endpoint_id, "endpoint deleted")
            return True

    async def webhook_set_secret(self, endpoint_id: str, secret: str) -> WebhookEndpoint | None:
        row = await self.pool.fetchrow(Q["webhook_set_secret"], endpoint_id, secret)
        return _endpoint(row) if row else None

    async def tenant_secret(self, tenant: str, candidate: str) -> str:
        return str(await self.pool.fetchval(Q["tenant_secret_get_or_create"], tenant, candidate))

    async def tenant_secret_rotate(self, tenant: str, secret: str) -> str:
        return str(await self.pool.fetchval(Q["tenant_secret_rotate"], tenant, secret))

    async def job_notify_get(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Notify]:
        if not job_ids:
            return {}
        rows = await self.pool.fetch(Q["job_notify_get"], list(job_ids))
        return {r["job_id"]: Notify(r["webhook"], r["email"]) for r in rows}

    async def feed_cursor_take(
        self, name: str, holder: str, lease_seconds: float
    ) -> tuple[bool, str | None]:
        row = await self.pool.fetchrow(Q["feed_cursor_take"], name, holder, lease_seconds)
        return (False, None) if row is None else (True, row["position"])

    async def feed_cursor_release(self, name: str, holder: str) -> None:
        await self.pool.execute(Q["feed_cursor_release"], name, holder)

    async def delivery_enqueue(
        self,
        deliveries: Sequence[NewDelivery],
        retry_window: float,
        cursor: tuple[str, str, str] | None = None,
    ) -> int:
        rows = [
            {
                "id": d.id,
                "dedupe_key": d.dedupe_key,
                "tenant": d.tenant,
                "channel": d.channel,
                "endpoint_id": d.endpoint_id,
                "target": d.target,
                "job_id": str(d.job_id),
                "event_type": d.event_type,
                "payload": d.payload,
            }
            for d in deliveries
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            new = 0
            if rows:
                status = await conn.execute(Q["delivery_insert"], rows, retry_window)
                new = int(status.rsplit(" ", 1)[-1])
            if cursor is not None:
                await conn.execute(Q["feed_cursor_move"], *cursor)
            return new

    async def delivery_claim(self, owner: str, limit: int, lease_seconds: float) -> list[Delivery]:
        rows = await self.pool.fetch(Q["delivery_claim"], owner, limit, lease_seconds)
        return sorted((_delivery(r) for r in rows), key=lambda d: d.next_attempt_at)

    async def delivery_record(self, result: AttemptResult) -> bool:
        status = "pending" if result.verdict == "retry" else result.verdict
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                Q["attempt_insert"],
                result.delivery_id,
                result.attempt,
                result.started_at,
                result.duration_ms,
                result.status_code,
                result.error,
            )
            row = await conn.fetchrow(
                Q["delivery_record"],
                result.delivery_id,
                result.owner,
                result.attempt,
                status,
                result.retry_in,
                result.status_code,
                result.error,
            )
            if row is None:
                return False
            if result.disable_endpoint and row["endpoint_id"] is not None:
                await conn.execute(Q["webhook_disable"], row["endpoint_id"], "410 Gone")
                await conn.execute(
                    Q["deliveries_fail_endpoint"], row["endpoint_id"], "endpoint gone"
                )
            return True

    async def delivery_get(self, delivery_id: str) -> Delivery | None:
        row = await self.pool.fetchrow(Q["delivery_get"], delivery_id)
        return _delivery(row) if row else None

    async def delivery_list(
        self,
        *,
        endpoint_id: str | None = None,
        job_id: uuid.UUID | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> list[Delivery]:
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in [("endpoint_id", endpoint_id), ("job_id", job_id), ("id <", after)]:
            if value is not None:
                args.append(value)
                op = "" if " " in column else " ="
                clauses.append(f"{column}{op} ${len(args)}")
        sql = "SELECT * FROM offload_deliveries"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        args.append(limit)
        sql += f" ORDER BY id DESC LIMIT ${len(args)}"
        return [_delivery(r) for r in await self.pool.fetch(sql, *args)]

    async def delivery_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        rows = await self.pool.fetch(Q["delivery_attempts"], delivery_id)
        return [
            DeliveryAttempt(
                n=r["n"],
                attempted_at=r["attempted_at"],
                duration_ms=r["duration_ms"],
                status_code=r["status_code"],
                error=r["error"],
            )
            for r in rows
        ]

    async def delivery_resend(self, delivery_id: str, retry_window: float) -> Delivery | None:
        row = await self.pool.fetchrow(Q["delivery_resend"], delivery_id, retry_window)
        if row is None:
            row = await self.pool.fetchrow(Q["delivery_get"], delivery_id)
        return _delivery(row) if row else None
