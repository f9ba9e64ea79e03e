"""The notification side of :class:`~offload.store.sqlite.SQLiteStore` (see
:mod:`offload.store.notify`), kept apart from the jobs so each file has one concern."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

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

Q = load_queries("sqlite", "notify.sql")


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _endpoint(row: sqlite3.Row) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row["id"],
        tenant=row["tenant"],
        url=row["url"],
        events=tuple(json.loads(row["events"])),
        secret=row["secret"],
        created_at=_time(row["created_at"]),  # type: ignore[arg-type]
        updated_at=_time(row["updated_at"]),  # type: ignore[arg-type]
        disabled_at=_time(row["disabled_at"]),
        disabled_reason=row["disabled_reason"],
    )


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=row["id"],
        tenant=row["tenant"],
        channel=row["channel"],
        endpoint_id=row["endpoint_id"],
        target=row["target"],
        job_id=uuid.UUID(row["job_id"]),
        event_type=row["event_type"],
        payload=row["payload"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=_time(row["next_attempt_at"]),  # type: ignore[arg-type]
        deadline_at=_time(row["deadline_at"]),  # type: ignore[arg-type]
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at=_time(row["created_at"]),  # type: ignore[arg-type]
        updated_at=_time(row["updated_at"]),  # type: ignore[arg-type]
        finished_at=_time(row["finished_at"]),
    )


def insert_job_notify(conn: sqlite3.Connection, job_id: uuid.UUID, notify: Notify) -> None:
    """Called inside the job's own insert transaction."""
    conn.execute(
        Q["job_notify_insert"],
        {"job_id": str(job_id), "webhook": notify.webhook, "email": notify.email},
    )


class SQLiteNotify(NotifyStore):
    """Mixed into SQLiteStore, whose ``_tx`` / ``_read`` run ``fn(conn, now, *args)``."""

    _tx: Callable[..., Awaitable[Any]]
    _read: Callable[..., Awaitable[Any]]

    async def webhook_insert(
        self, endpoint_id: str, tenant: str, url: str, events: Sequence[str], secret: str
    ) -> WebhookEndpoint:
        def run(conn: sqlite3.Connection, now: float) -> WebhookEndpoint:
            args = {
                "id": endpoint_id,
                "tenant": tenant,
                "url": url,
                "events": json.dumps(list(events)),
                "secret": secret,
                "now": now,
            }
            return _endpoint(conn.execute(Q["webhook_insert"], args).fetchone())

        return await self._tx(run)

    async def webhook_get(self, endpoint_id: str) -> WebhookEndpoint | None:
        def run(conn: sqlite3.Connection, now: float) -> WebhookEndpoint | None:
            row = conn.execute(Q["webhook_get"], {"id": endpoint_id}).fetchone()
            return _endpoint(row) if row else None

        return await self._read(run)

    async def webhook_list(self, tenant: str | None = None) -> list[WebhookEndpoint]:
        def run(conn: sqlite3.Connection, now: float) -> list[WebhookEndpoint]:
            return [_endpoint(r) for r in conn.execute(Q["webhook_list"], {"tenant": tenant})]

        return await self._read(run)

    async def webhook_delete(self, endpoint_id: str) -> bool:
        def run(conn: sqlite3.Connection, now: float) -> bool:
            gone = conn.execute(Q["webhook_delete"], {"id": endpoint_id}).fetchone()
            if gone is None:
                return False
            args = {"id": endpoint_id, "reason": "endpoint deleted", "now": now}
            conn.execute(Q["deliveries_fail_endpoint"], args)
            return True

        return await self._tx(run)

    async def webhook_set_secret(self, endpoint_id: str, secret: str) -> WebhookEndpoint | None:
        def run(conn: sqlite3.Connection, now: float) -> WebhookEndpoint | None:
            args = {"id": endpoint_id, "secret": secret, "now": now}
            row = conn.execute(Q["webhook_set_secret"], args).fetchone()
            return _endpoint(row) if row else None

        return await self._tx(run)

    async def tenant_secret(self, tenant: str, candidate: str) -> str:
        def run(conn: sqlite3.Connection, now: float) -> str:
            args = {"tenant": tenant, "secret": candidate, "now": now}
            conn.execute(Q["tenant_secret_create"], args)
            return str(conn.execute(Q["tenant_secret_get"], args).fetchone()[0])

        return await self._tx(run)

    async def tenant_secret_rotate(self, tenant: str, secret: str) -> str:
        def run(conn: sqlite3.Connection, now: float) -> str:
            args = {"tenant": tenant, "secret": secret, "now": now}
            return str(conn.execute(Q["tenant_secret_rotate"], args).fetchone()[0])

        return await self._tx(run)

    async def job_notify_get(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Notify]:
        def run(conn: sqlite3.Connection, now: float) -> dict[uuid.UUID, Notify]:
            ids = json.dumps([str(i) for i in job_ids])
            return {
                uuid.UUID(r["job_id"]): Notify(r["webhook"], r["email"])
                for r in conn.execute(Q["job_notify_get"], {"ids": ids})
            }

        return await self._read(run) if job_ids else {}

    async def feed_cursor_take(
        self, name: str, holder: str, lease_seconds: float
    ) -> tuple[bool, str | None]:
        def run(conn: sqlite3.Connection, now: float) -> tuple[bool, str | None]:
            args = {"name": name, "holder": holder, "lease": lease_seconds, "now": now}
            row = conn.execute(Q["feed_cursor_take"], args).fetchone()
            return (False, None) if row is None else (True, row["position"])

        return await self._tx(run)

    async def feed_cursor_release(self, name: str, holder: str) -> None:
        def run(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(Q["feed_cursor_release"], {"name": name, "holder": holder})

        await self._tx(run)

    async def delivery_enqueue(
        self,
        deliveries: Sequence[NewDelivery],
        retry_window: float,
        cursor: tuple[str, str, str] | None = None,
    ) -> int:
        def run(conn: sqlite3.Connection, now: float) -> int:
            new = 0
            for d in deliveries:
                args = {
                    "id": d.id,
                    "dedupe_key": d.dedupe_key,
                    "tenant": d.tenant,
                    "channel": d.channel,
                    "endpoint_id": d.endpoint_id,
                    "target": d.target,
                    "job_id": str(d.job_id),
                    "event_type": d.event_type,
                    "payload": d.payload,
                    "window": retry_window,
                    "now": now,
                }
                new += conn.execute(Q["delivery_insert"], args).fetchone() is not None
            if cursor is not None:
                name, holder, position = cursor
                args = {"name": name, "holder": holder, "position": position, "now": now}
                conn.execute(Q["feed_cursor_move"], args)
            return new

        return await self._tx(run)

    async def delivery_claim(self, owner: str, limit: int, lease_seconds: float) -> list[Delivery]:
        def due(conn: sqlite3.Connection, now: float) -> bool:
            return conn.execute(Q["delivery_due"], {"now": now}).fetchone() is not None

        if not await self._read(due):  # idle: no write lock taken for nothing
            return []

        def run(conn: sqlite3.Connection, now: float) -> list[Delivery]:
            args = {"owner": owner, "limit": limit, "lease": lease_seconds, "now": now}
            return [_delivery(r) for r in conn.execute(Q["delivery_claim"], args).fetchall()]

        found = await self._tx(run)
        found.sort(key=lambda d: d.next_attempt_at)
        return found

    async def delivery_record(self, result: AttemptResult) -> bool:
        status = "pending" if result.verdict == "retry" else result.verdict

        def run(conn: sqlite3.Connection, now: float) -> bool:
            conn.execute(
                Q["attempt_insert"],
                {
                    "id": result.delivery_id,
                    "n": result.attempt,
                    "started_at": result.started_at.timestamp(),
                    "duration_ms": result.duration_ms,
                    "status_code": result.status_code,
                    "error": result.error,
                },
            )
            row = conn.execute(
                Q["delivery_record"],
                {
                    "id": result.delivery_id,
                    "owner": result.owner,
                    "attempt": result.attempt,
                    "status": status,
                    "retry_in": result.retry_in,
                    "status_code": result.status_code,
                    "error": result.error,
                    "now": now,
                },
            ).fetchone()
            if row is None:
                return False
            if result.disable_endpoint and row["endpoint_id"] is not None:
                args = {"id": row["endpoint_id"], "reason": "410 Gone", "now": now}
                conn.execute(Q["webhook_disable"], args)
                conn.execute(Q["deliveries_fail_endpoint"], {**args, "reason": "endpoint gone"})
            return True

        return await self._tx(run)

    async def delivery_get(self, delivery_id: str) -> Delivery | None:
        def run(conn: sqlite3.Connection, now: float) -> Delivery | None:
            row = conn.execute(Q["delivery_get"], {"id": delivery_id}).fetchone()
            return _delivery(row) if row else None

        return await self._read(run)

    async def delivery_list(
        self,
        *,
        endpoint_id: str | None = None,
        job_id: uuid.UUID | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> list[Delivery]:
        clauses, args = [], []
        for column, value in [("endpoint_id", endpoint_id), ("job_id", job_id)]:
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(str(value))
        if after is not None:
            clauses.append("id < ?")
            args.append(after)
        sql = "SELECT * FROM offload_deliveries"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(str(limit))

        def run(conn: sqlite3.Connection, now: float) -> list[Delivery]:
            return [_delivery(r) for r in conn.execute(sql, args)]

        return await self._read(run)

    async def delivery_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        def run(conn: sqlite3.Connection, now: float) -> list[DeliveryAttempt]:
            return [
                DeliveryAttempt(
                    n=r["n"],
                    attempted_at=_time(r["attempted_at"]),  # type: ignore[arg-type]
                    duration_ms=r["duration_ms"],
                    status_code=r["status_code"],
                    error=r["error"],
                )
                for r in conn.execute(Q["delivery_attempts"], {"id": delivery_id})
            ]

        return await self._read(run)

    async def delivery_resend(self, delivery_id: str, retry_window: float) -> Delivery | None:
        def run(conn: sqlite3.Connection, now: float) -> Delivery | None:
            args = {"id": delivery_id, "window": retry_window, "now": now}
            row = conn.execute(Q["delivery_resend"], args).fetchone()
            if row is None:
                row = conn.execute(Q["delivery_get"], args).fetchone()
            return _delivery(row) if row else None

        return await self._tx(run)
