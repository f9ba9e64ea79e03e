"""SQLite store: the embedded default, a single file in WAL mode, created on first use.

Each store owns one connection on one dedicated thread; a whole operation (its few statements
inside one ``BEGIN IMMEDIATE`` transaction) runs there in a single hop. That is why this is not
built on aiosqlite, which hops threads once per statement. Several processes may share the file:
writers queue on SQLite's lock (``busy_timeout``) and every transaction is short.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..errors import IdempotencyConflict, IllegalTransition, StoreUnavailable
from ..jobs import Job, JobEvent, JobStatus
from ..states import ensure_transition
from ..types import JSON
from .base import (
    ApiKey,
    EventFilter,
    FeedEvent,
    FeedPage,
    HeartbeatResult,
    JobFilter,
    Lease,
    NewJob,
    OutboxEntry,
    Outcome,
    QueueInfo,
    Store,
    ensure_outcome,
)
from .queries import load_migrations, load_queries
from .sqlite_notify import SQLiteNotify, insert_job_notify

Q = load_queries("sqlite")
T = TypeVar("T")

_JSON_COLUMNS = ("input", "checkpoint", "result", "trace_context")
_TIME_COLUMNS = (
    "run_at",
    "lease_expires_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _job(row: sqlite3.Row) -> Job:
    data = dict(row)
    for column in _JSON_COLUMNS:
        if data[column] is not None:
            data[column] = json.loads(data[column])
    for column in _TIME_COLUMNS:
        data[column] = _time(data[column])
    return Job.from_row(data)


def sqlite_path(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite:///:memory:``."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite URL: {url!r} (expected sqlite:///path/to/file.db)")
    return url[len("sqlite:///") :]


class SQLiteStore(Store, SQLiteNotify):
    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._clock = clock
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="offload-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._logged: list[str] = []
        """Jobs given events by the transaction in progress (only the DB thread touches it)."""

    # -- plumbing ----------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, now, *args)`` inside one immediate (write-locking) transaction."""

        def run() -> tuple[T, list[str]]:
            conn = self._require()
            conn.execute("BEGIN IMMEDIATE")
            self._logged = []
            try:
                result = fn(conn, self._now(), *args)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result, self._logged

        result, logged = await self._run(run)
        if logged and self._events_listeners:
            self._events_written([uuid.UUID(i) for i in dict.fromkeys(logged)])
        return result

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(lambda: fn(self._require(), self._now(), *args))

    def _now(self) -> float:
        # Whole microseconds, like the datetimes callers get back: a job's ``created_at``
        # then round-trips exactly, so it works as a ``job_list`` cursor and range bound.
        return round(self._clock(), 6)

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("store is not connected; await store.connect() first")
        return self._conn

    def _log(
        self,
        conn: sqlite3.Connection,
        now: float,
        row: sqlite3.Row,
        type_: str,
        status: str,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Append the event for a change just made to ``row`` (id, event_seq, attempt)."""
        self._event(conn, now, row["id"], row["event_seq"], type_, status, row["attempt"], data)

    def _event(
        self,
        conn: sqlite3.Connection,
        now: float,
        job_id: str,
        seq: int,
        type_: str,
        status: str,
        attempt: int,
        data: dict[str, Any] | None = None,
    ) -> None:
        conn.execute(
            Q["event_insert"],
            {
                "job_id": job_id,
                "seq": seq,
                "type": type_,
                "status": status,
                "attempt": attempt,
                "data": _dumps(data) if data else None,
                "now": now,
            },
        )
        self._logged.append(job_id)

    @staticmethod
    def _outbox(conn: sqlite3.Connection, now: float, row: sqlite3.Row) -> None:
        """The outbox row for a change just made to ``row`` (id, event_seq, queue, priority)."""
        conn.execute(
            Q["outbox_insert"],
            {
                "job_id": row["id"],
                "seq": row["event_seq"],
                "queue": row["queue"],
                "priority": row["priority"],
                "now": now,
            },
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        def open_db() -> None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            _enable_wal(conn)
            # NORMAL in WAL mode survives a process crash (only an OS crash may lose the last
            # commits), which is the trade every embedded queue makes for speed.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._conn = conn

        try:
            await self._run(open_db)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from None

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._thread.shutdown(wait=True)

    # -- schema ------------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        def run(conn: sqlite3.Connection, now: float) -> list[int]:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS offload_schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM offload_schema_migrations")}
            applied = []
            for version, sql in load_migrations("sqlite"):
                if version in done:
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO offload_schema_migrations VALUES (?, ?)", (version, now))
                applied.append(version)
            return applied

        return await self._tx(run)

    async def schema_version(self) -> int:
        def run(conn: sqlite3.Connection, now: float) -> int:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'offload_schema_migrations'"
            ).fetchone()
            if not exists:
                return 0
            return conn.execute(
                "SELECT coalesce(max(version), 0) FROM offload_schema_migrations"
            ).fetchone()[0]

        return await self._read(run)

    # -- submitting --------------------------------------------------------------------------

    def _insert(self, conn: sqlite3.Connection, now: float, job: NewJob) -> Job:
        status = JobStatus.SCHEDULED if job.delay > 0 else JobStatus.QUEUED
        row = conn.execute(
            Q["job_insert"],
            {
                "id": str(job.id),
                "type": job.type,
                "queue": job.queue,
                "priority": job.priority,
                "status": status.value,
                "input": _dumps(job.input),
                "max_attempts": job.max_attempts,
                "run_at": now + max(job.delay, 0.0),
                "owner": job.owner,
                "idempotency_key": job.idempotency_key,
                "trace_context": _dumps(job.trace_context) if job.trace_context else None,
                "now": now,
            },
        ).fetchone()
        self._event(conn, now, str(job.id), 1, f"job.{status.value}", status.value, 0)
        if self.outbox and status is JobStatus.QUEUED:
            self._outbox(conn, now, row)
        if job.notify:
            insert_job_notify(conn, job.id, job.notify)
        return _job(row)

    async def job_insert(self, job: NewJob, idempotency_ttl: float) -> tuple[Job, bool]:
        def run(conn: sqlite3.Connection, now: float) -> tuple[Job, bool]:
            if job.idempotency_key is not None:
                key = {"owner": job.owner, "key": job.idempotency_key}
                owned = conn.execute(
                    Q["idempotency_claim"],
                    {
                        **key,
                        "job_id": str(job.id),
                        "request_hash": job.request_hash,
                        "expires_at": now + idempotency_ttl,
                        "now": now,
                    },
                ).fetchone()
                if owned is None:
                    existing = conn.execute(Q["idempotency_get"], key).fetchone()
                    if existing["request_hash"] != job.request_hash:
                        raise IdempotencyConflict(
                            f"idempotency key {job.idempotency_key!r} was already used for a "
                            "different request"
                        )
                    row = conn.execute(Q["job_get"], {"id": existing["job_id"]}).fetchone()
                    return _job(row), False
            return self._insert(conn, now, job), True

        return await self._tx(run)

    async def job_insert_many(self, jobs: Sequence[NewJob]) -> list[Job]:
        def run(conn: sqlite3.Connection, now: float) -> list[Job]:
            return [self._insert(conn, now, job) for job in jobs]

        return await self._tx(run) if jobs else []

    # -- reading -----------------------------------------------------------------------------

    async def job_get(self, job_id: uuid.UUID) -> Job | None:
        def run(conn: sqlite3.Connection, now: float) -> Job | None:
            row = conn.execute(Q["job_get"], {"id": str(job_id)}).fetchone()
            return _job(row) if row else None

        return await self._read(run)

    async def job_list(
        self,
        where: JobFilter,
        *,
        limit: int = 50,
        after: uuid.UUID | None = None,
    ) -> list[Job]:
        clauses, args = _filter_sql(where)
        if after is not None:
            clauses.append("id < ?")
            args.append(str(after))
        sql = "SELECT * FROM offload_jobs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)

        def run(conn: sqlite3.Connection, now: float) -> list[Job]:
            return [_job(r) for r in conn.execute(sql, args)]

        return await self._read(run)

    async def job_events(self, job_id: uuid.UUID, after_seq: int = 0) -> list[JobEvent]:
        def run(conn: sqlite3.Connection, now: float) -> list[JobEvent]:
            rows = conn.execute(Q["job_events"], {"id": str(job_id), "after": after_seq})
            return [
                JobEvent(
                    job_id=job_id,
                    seq=r["seq"],
                    type=r["type"],
                    status=JobStatus(r["status"]),
                    attempt=r["attempt"],
                    data=json.loads(r["data"]) if r["data"] else {},
                    created_at=datetime.fromtimestamp(r["created_at"], UTC),
                )
                for r in rows
            ]

        return await self._read(run)

    # -- the global feed -----------------------------------------------------------------------

    async def events_after(
        self, cursor: str | None, where: EventFilter | None = None, *, limit: int = 500
    ) -> FeedPage:
        after = _parse_cursor(cursor)
        clauses, args = _feed_filter_sql(where)

        def run(conn: sqlite3.Connection, now: float) -> tuple[int, list[FeedEvent]]:
            # Writers are serialized, so ids are commit order; the horizon is read first and
            # bounds the query, so "not a full page" means "read up to the horizon".
            horizon = conn.execute(Q["feed_horizon"]).fetchone()[0]
            sql = (
                Q["feed_select"]
                + " WHERE "
                + " AND ".join(["e.id > ?", "e.id <= ?", *clauses])
                + " ORDER BY e.id LIMIT ?"
            )
            rows = conn.execute(sql, [after, horizon, *args, limit]).fetchall()
            return horizon, [_feed_event(r) for r in rows]

        horizon, events = await self._read(run)
        if len(events) < limit:
            return FeedPage(events, str(max(after, horizon)))
        return FeedPage(events, events[-1].cursor)

    async def events_head(self) -> str:
        def run(conn: sqlite3.Connection, now: float) -> str:
            return str(conn.execute(Q["feed_horizon"]).fetchone()[0])

        return await self._read(run)

    # -- the worker's side -------------------------------------------------------------------

    async def job_claim(
        self,
        *,
        types: Sequence[str],
        queues: Sequence[str] | None,
        limit: int,
        worker_id: str,
        lease_seconds: float,
    ) -> list[Job]:
        def run(conn: sqlite3.Connection, now: float) -> list[Job]:
            rows = conn.execute(
                Q["job_claim"],
                {
                    "types": _dumps(list(types)),
                    "queues": _dumps(list(queues)) if queues else None,
                    "limit": limit,
                    "worker_id": worker_id,
                    "lease": lease_seconds,
                    "now": now,
                },
            ).fetchall()
            for r in rows:
                self._log(conn, now, r, "job.running", "running")
            return [_job(r) for r in rows]

        jobs = await self._tx(run)
        jobs.sort(key=lambda j: (-j.priority, j.run_at, j.id))
        return jobs

    async def job_claim_ids(
        self,
        job_ids: Sequence[uuid.UUID],
        *,
        types: Sequence[str],
        worker_id: str,
        lease_seconds: float,
    ) -> list[Job]:
        def run(conn: sqlite3.Connection, now: float) -> list[Job]:
            rows = conn.execute(
                Q["job_claim_ids"],
                {
                    "ids": _dumps([str(i) for i in job_ids]),
                    "types": _dumps(list(types)),
                    "worker_id": worker_id,
                    "lease": lease_seconds,
                    "now": now,
                },
            ).fetchall()
            for r in rows:
                self._log(conn, now, r, "job.running", "running")
            return [_job(r) for r in rows]

        if not job_ids:
            return []
        jobs = await self._tx(run)
        jobs.sort(key=lambda j: (-j.priority, j.run_at, j.id))
        return jobs

    async def job_heartbeat(self, leases: Sequence[Lease], lease_seconds: float) -> HeartbeatResult:
        def run(conn: sqlite3.Connection, now: float) -> HeartbeatResult:
            held: set[uuid.UUID] = set()
            cancel: set[uuid.UUID] = set()
            for lease in leases:
                row = conn.execute(
                    Q["job_heartbeat"],
                    {
                        "id": str(lease.job_id),
                        "attempt": lease.attempt,
                        "worker_id": lease.worker_id,
                        "lease": lease_seconds,
                        "now": now,
                    },
                ).fetchone()
                if row is not None:
                    held.add(lease.job_id)
                    if row["cancel_requested"]:
                        cancel.add(lease.job_id)
            lost = frozenset(lease.job_id for lease in leases) - held
            return HeartbeatResult(lost, frozenset(cancel))

        if not leases:
            return HeartbeatResult(frozenset(), frozenset())
        return await self._tx(run)

    async def job_progress(
        self,
        job_id: uuid.UUID,
        attempt: int,
        percent: float,
        message: str | None,
        worker_id: str | None = None,
    ) -> bool:
        def run(conn: sqlite3.Connection, now: float) -> bool:
            row = conn.execute(
                Q["job_progress"],
                {
                    "id": str(job_id),
                    "attempt": attempt,
                    "worker_id": worker_id,
                    "percent": percent,
                    "message": message,
                    "now": now,
                },
            ).fetchone()
            if row is None:
                return False
            self._log(
                conn, now, row, "job.progress", "running", {"percent": percent, "message": message}
            )
            return True

        return await self._tx(run)

    async def job_checkpoint(
        self, job_id: uuid.UUID, attempt: int, value: JSON, worker_id: str | None = None
    ) -> bool:
        def run(conn: sqlite3.Connection, now: float) -> bool:
            row = conn.execute(
                Q["job_checkpoint"],
                {
                    "id": str(job_id),
                    "attempt": attempt,
                    "worker_id": worker_id,
                    "value": _dumps(value),
                    "now": now,
                },
            ).fetchone()
            return row is not None

        return await self._tx(run)

    async def job_finish_many(self, outcomes: Sequence[Outcome]) -> list[uuid.UUID]:
        for o in outcomes:
            ensure_outcome(o)

        def run(conn: sqlite3.Connection, now: float) -> list[uuid.UUID]:
            written = []
            for o in outcomes:
                row = conn.execute(
                    Q["job_finish"],
                    {
                        "id": str(o.job_id),
                        "attempt": o.attempt,
                        "worker_id": o.worker_id,
                        "status": o.status.value,
                        "result": o.result,
                        "error_code": o.error_code,
                        "error_message": o.error_message,
                        "error_detail": o.error_detail,
                        "delay": o.retry_delay,
                        "now": now,
                    },
                ).fetchone()
                if row is None:
                    continue
                data = None
                if o.error_code is not None:
                    data = {"error": {"code": o.error_code, "message": o.error_message}}
                    if o.status is JobStatus.RETRYING:
                        data["retry_at"] = _time(row["run_at"]).isoformat()  # type: ignore[union-attr]
                self._log(conn, now, row, f"job.{o.status.value}", o.status.value, data)
                written.append(o.job_id)
            return written

        return await self._tx(run) if outcomes else []

    async def job_release(self, lease: Lease, reason: str) -> bool:
        def run(conn: sqlite3.Connection, now: float) -> bool:
            row = conn.execute(
                Q["job_release"],
                {
                    "id": str(lease.job_id),
                    "attempt": lease.attempt,
                    "worker_id": lease.worker_id,
                    "now": now,
                },
            ).fetchone()
            if row is None:
                return False
            self._log(conn, now, row, "job.queued", "queued", {"reason": reason})
            if self.outbox:
                self._outbox(conn, now, row)
            return True

        return await self._tx(run)

    # -- maintenance -------------------------------------------------------------------------

    async def jobs_reap_expired(self, limit: int = 500) -> int:
        def run(conn: sqlite3.Connection, now: float) -> int:
            rows = conn.execute(Q["jobs_reap_expired"], {"now": now, "limit": limit}).fetchall()
            for r in rows:
                self._log(
                    conn,
                    now,
                    r,
                    f"job.{r['status']}",
                    r["status"],
                    {"error": {"code": r["error_code"], "message": r["error_message"]}},
                )
            return len(rows)

        return await self._tx(run)

    async def jobs_promote_due(self, limit: int = 500) -> int:
        def run(conn: sqlite3.Connection, now: float) -> int:
            rows = conn.execute(Q["jobs_promote_due"], {"now": now, "limit": limit}).fetchall()
            for r in rows:
                self._log(conn, now, r, "job.queued", "queued")
                if self.outbox:
                    self._outbox(conn, now, r)
            return len(rows)

        return await self._tx(run)

    # -- the outbox and the reconciler --------------------------------------------------------

    async def outbox_pending(self, *, older_than: float, limit: int) -> list[OutboxEntry]:
        def run(conn: sqlite3.Connection, now: float) -> list[OutboxEntry]:
            rows = conn.execute(
                Q["outbox_pending"], {"now": now, "older": older_than, "limit": limit}
            )
            return [_outbox_entry(r) for r in rows]

        return await self._read(run)

    async def outbox_delete(self, entries: Sequence[OutboxEntry]) -> None:
        def run(conn: sqlite3.Connection, now: float) -> None:
            conn.executemany(
                Q["outbox_delete"], [{"job_id": str(e.job_id), "seq": e.seq} for e in entries]
            )

        if entries:
            await self._tx(run)

    async def jobs_due_by_queue(self, *, older_than: float) -> dict[str, int]:
        def run(conn: sqlite3.Connection, now: float) -> dict[str, int]:
            rows = conn.execute(Q["jobs_due_by_queue"], {"now": now, "older": older_than})
            return {r["queue"]: r["due"] for r in rows}

        return await self._read(run)

    async def jobs_due(
        self, queue: str, *, older_than: float, limit: int, after: uuid.UUID | None = None
    ) -> list[OutboxEntry]:
        def run(conn: sqlite3.Connection, now: float) -> list[OutboxEntry]:
            rows = conn.execute(
                Q["jobs_due"],
                {
                    "queue": queue,
                    "now": now,
                    "older": older_than,
                    "limit": limit,
                    "after": str(after) if after else None,
                },
            )
            return [_outbox_entry(r) for r in rows]

        return await self._read(run)

    # -- control -----------------------------------------------------------------------------

    async def job_cancel(self, job_id: uuid.UUID, actor: str | None) -> Job | None:
        def run(conn: sqlite3.Connection, now: float) -> Job | None:
            params = {"id": str(job_id), "now": now}
            row = conn.execute(Q["job_cancel_waiting"], params).fetchone()
            if row is not None:
                self._log(conn, now, row, "job.canceled", "canceled", {"actor": actor})
                return _job(row)
            row = conn.execute(Q["job_cancel_running"], params).fetchone()
            if row is not None:
                self._log(conn, now, row, "job.cancel_requested", "running", {"actor": actor})
                return _job(row)
            row = conn.execute(Q["job_get"], params).fetchone()
            if row is None:
                return None
            job = _job(row)
            if job.status is not JobStatus.RUNNING:  # running: a cancel was already requested
                ensure_transition(job.id, job.status, JobStatus.CANCELED)
            return job

        return await self._tx(run)

    async def job_replay(
        self, job_id: uuid.UUID, new_input: JSON | None, extra_attempts: int, actor: str | None
    ) -> Job | None:
        def run(conn: sqlite3.Connection, now: float) -> Job | None:
            row = conn.execute(
                Q["job_replay"],
                {
                    "id": str(job_id),
                    "input": _dumps(new_input) if new_input is not None else None,
                    "extra": extra_attempts,
                    "now": now,
                },
            ).fetchone()
            if row is not None:
                self._log(
                    conn,
                    now,
                    row,
                    "job.queued",
                    "queued",
                    {"action": "replay", "actor": actor, "input_changed": new_input is not None},
                )
                if self.outbox:
                    self._outbox(conn, now, row)
                return _job(row)
            current = conn.execute(Q["job_get"], {"id": str(job_id)}).fetchone()
            if current is None:
                return None
            # The update above replays failed jobs only; refuse the rest. RUNNING → QUEUED is
            # allowed by the state machine, but as a release, never as a replay.
            raise IllegalTransition(job_id, current["status"], JobStatus.QUEUED.value)

        return await self._tx(run)

    async def queue_set_paused(self, name: str, paused: bool, actor: str | None) -> None:
        def run(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                Q["queue_set_paused"],
                {"name": name, "paused": int(paused), "now": now, "actor": actor},
            )
            if not paused and self.outbox:
                conn.execute(Q["outbox_queue"], {"name": name, "now": now})

        await self._tx(run)

    async def queue_list(self) -> list[QueueInfo]:
        def run(conn: sqlite3.Connection, now: float) -> list[QueueInfo]:
            return [
                QueueInfo(
                    name=r["name"],
                    paused=bool(r["paused"]),
                    waiting=r["waiting"],
                    running=r["running"],
                    oldest_waiting_at=_time(r["oldest_waiting_at"]),
                )
                for r in conn.execute(Q["queue_list"], {"now": now})
            ]

        return await self._read(run)

    # -- dead letters, depth, API keys -------------------------------------------------------

    async def job_discard(self, job_id: uuid.UUID, actor: str | None) -> Job | None:
        def run(conn: sqlite3.Connection, now: float) -> Job | None:
            row = conn.execute(Q["job_discard"], {"id": str(job_id), "now": now}).fetchone()
            if row is not None:
                self._log(
                    conn, now, row, "job.discarded", "failed", {"action": "discard", "actor": actor}
                )
                return _job(row)
            current = conn.execute(Q["job_get"], {"id": str(job_id)}).fetchone()
            if current is None:
                return None
            target = "discarded" if current["status"] == "failed" else "discarded (not failed)"
            raise IllegalTransition(job_id, current["status"], target)

        return await self._tx(run)

    async def job_count(self, where: JobFilter) -> int:
        clauses, args = _filter_sql(where)
        sql = "SELECT count(*) FROM offload_jobs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)

        def run(conn: sqlite3.Connection, now: float) -> int:
            return int(conn.execute(sql, args).fetchone()[0])

        return await self._read(run)

    async def queue_depth(self, name: str) -> int:
        def run(conn: sqlite3.Connection, now: float) -> int:
            return int(conn.execute(Q["queue_depth"], {"name": name}).fetchone()[0])

        return await self._read(run)

    async def key_insert(
        self, key_id: str, key_hash: str, tenant: str, role: str, name: str | None = None
    ) -> ApiKey:
        def run(conn: sqlite3.Connection, now: float) -> ApiKey:
            row = conn.execute(
                Q["key_insert"],
                {
                    "id": key_id,
                    "key_hash": key_hash,
                    "tenant": tenant,
                    "role": role,
                    "name": name,
                    "now": now,
                },
            ).fetchone()
            return _api_key(row)

        return await self._tx(run)

    async def key_get_by_hash(self, key_hash: str) -> ApiKey | None:
        def run(conn: sqlite3.Connection, now: float) -> ApiKey | None:
            row = conn.execute(Q["key_get_by_hash"], {"key_hash": key_hash}).fetchone()
            return _api_key(row) if row else None

        return await self._read(run)

    async def key_list(self) -> list[ApiKey]:
        def run(conn: sqlite3.Connection, now: float) -> list[ApiKey]:
            return [_api_key(r) for r in conn.execute(Q["key_list"])]

        return await self._read(run)

    async def key_revoke(self, key_id: str) -> ApiKey | None:
        def run(conn: sqlite3.Connection, now: float) -> ApiKey | None:
            row = conn.execute(Q["key_revoke"], {"id": key_id, "now": now}).fetchone()
            return _api_key(row) if row else None

        return await self._tx(run)


def _parse_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    if not cursor.isdecimal() or int(cursor) > 2**63 - 1:
        raise ValueError(f"not an event cursor of this store: {cursor!r}")
    return int(cursor)


def _feed_event(row: sqlite3.Row) -> FeedEvent:
    job = _job(row)
    return FeedEvent(
        cursor=str(row["ev_id"]),
        event=JobEvent(
            job_id=job.id,
            seq=row["ev_seq"],
            type=row["ev_type"],
            status=JobStatus(row["ev_status"]),
            attempt=row["ev_attempt"],
            data=json.loads(row["ev_data"]) if row["ev_data"] else {},
            created_at=datetime.fromtimestamp(row["ev_created_at"], UTC),
        ),
        job=job,
    )


def _feed_filter_sql(where: EventFilter | None) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if where is None:
        return clauses, args
    if where.owner:
        clauses.append("j.owner = ?")
        args.append(where.owner)
    for column, values in [
        ("e.type", where.event_types),
        ("j.type", where.job_types),
        ("j.queue", where.queues),
    ]:
        if values:
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            args += list(values)
    if where.notify_owners is not None:
        owners = list(where.notify_owners)
        clauses.append(
            f"(j.owner IN ({','.join('?' * len(owners))}) OR EXISTS "
            "(SELECT 1 FROM offload_job_notify n WHERE n.job_id = e.job_id))"
        )
        args += owners
    return clauses, args


def _outbox_entry(row: sqlite3.Row) -> OutboxEntry:
    return OutboxEntry(uuid.UUID(row["job_id"]), row["seq"], row["queue"], row["priority"])


def _api_key(row: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant=row["tenant"],
        role=row["role"],
        name=row["name"],
        created_at=_time(row["created_at"]),  # type: ignore[arg-type]
        revoked_at=_time(row["revoked_at"]),
    )


def _enable_wal(conn: sqlite3.Connection, deadline: float = 30.0) -> None:
    """Switch the file to WAL (persistent, so usually already done). Several processes opening
    a new file at once race for the switch, and SQLite answers "locked" at once instead of
    waiting on its busy handler there: retry until the deadline."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > give_up:
                raise
        time.sleep(0.01)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (comments dropped; no ``;`` inside literals)."""
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]


def _filter_sql(where: JobFilter) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if where.status:
        clauses.append(f"status IN ({','.join('?' * len(where.status))})")
        args += [s.value for s in where.status]
    for column, value in [
        ("type", where.type),
        ("queue", where.queue),
        ("owner", where.owner),
        ("error_code", where.error_code),
    ]:
        if value:
            clauses.append(f"{column} = ?")
            args.append(value)
    if where.created_after:
        clauses.append("created_at >= ?")
        args.append(where.created_after.timestamp())
    if where.created_before:
        clauses.append("created_at < ?")
        args.append(where.created_before.timestamp())
    if where.finished_after:
        clauses.append("finished_at >= ?")
        args.append(where.finished_after.timestamp())
    if where.finished_before:
        clauses.append("finished_at < ?")
        args.append(where.finished_before.timestamp())
    if where.discarded is not None:
        # Discarded after its last failure; a replay that fails again brings it back.
        discarded = "coalesce(discarded_at >= finished_at, false)"
        clauses.append(discarded if where.discarded else f"NOT {discarded}")
    return clauses, args
