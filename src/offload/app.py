"""``Offload``: the application object that wires settings, job types and the store."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from .broker import Broker, carries_messages, open_broker
from .broker.outbox import Relay
from .config import Settings
from .errors import SchemaOutdated
from .events.bus import EventHub, Transport, transport_for
from .ids import parse_job_id, uuid7, uuid7_many
from .jobs import Job, JobEvent, JobStatus
from .registry import JobSpec, Registry, input_model_of
from .store import JobFilter, NewJob, OutboxEntry, QueueInfo, Store, open_store
from .store.notify import Notify
from .store.queries import load_migrations

F = TypeVar("F", bound=Callable[..., Any])


class Offload:
    """Register job handlers, submit jobs, and run workers against one store.

    >>> app = Offload()  # OFFLOAD_DATABASE_URL, else sqlite:///offload.db
    >>> @app.job("reports.generate", queue="reports", max_attempts=5, timeout=600)
    ... async def generate(ctx: Context, req: ReportRequest) -> dict: ...
    >>> job = await app.submit("reports.generate", {"year": 2024})

    The store connects on first use; call ``await app.close()`` when done (or use
    ``async with app:``).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        registry: Registry | None = None,
    ) -> None:
        """``registry`` shares the job types of another app (say, the same jobs against
        another database in a test)."""
        settings = settings or Settings.from_env()
        if database_url is not None:
            settings = dataclasses.replace(settings, database_url=database_url)
        self.settings = settings
        self.registry = registry if registry is not None else Registry()
        self._store: Store | None = None
        self._broker: Broker | None = None
        self._events: Transport | None = None
        self._hub: EventHub | None = None
        self._relay: Relay | None = None
        self._outbox = carries_messages(settings.broker_url)
        """A message broker is configured: writes go through the outbox and get published."""
        self._connecting: asyncio.Lock | None = None

    # -- registering -------------------------------------------------------------------------

    def job(
        self,
        name: str,
        *,
        queue: str = "default",
        max_attempts: int = 3,
        timeout: float | None = None,
        priority: int = 0,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
    ) -> Callable[[F], F]:
        """Register ``handler(ctx, input: Model)`` as job type ``name``."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")

        def register(handler: F) -> F:
            self.registry.add(
                JobSpec(
                    name=name,
                    handler=handler,
                    model=input_model_of(handler),
                    queue=queue,
                    max_attempts=max_attempts,
                    timeout=timeout,
                    priority=priority,
                    backoff_base=backoff_base,
                    backoff_max=backoff_max,
                )
            )
            return handler

        return register

    # -- the store ---------------------------------------------------------------------------

    async def store(self) -> Store:
        """The connected store (connecting, and creating an SQLite schema, on first use)."""
        if self._store is not None:
            return self._store
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._store is None:
                store = open_store(self.settings.database_url)
                store.outbox = self._outbox
                await store.connect()
                try:
                    await self._check_schema(store)
                    self._events = transport_for(
                        store,
                        self.settings.events_url,
                        self.settings.broker_prefix,
                        self.settings.poll_interval,
                        self.settings.events_sweep_interval,
                    )
                    announcer = await self._events.announcer()
                    if announcer is not None:  # tell the event bus about every write
                        store.on_events_written(announcer)
                except BaseException:
                    await store.close()
                    raise
                self._store = store
        return self._store

    async def event_transport(self) -> Transport:
        """The event bus between processes (see :mod:`offload.events.bus`)."""
        await self.store()
        assert self._events is not None
        return self._events

    async def event_hub(self) -> EventHub:
        """This process's one listener on the event bus, started on first use."""
        transport = await self.event_transport()
        if self._hub is None:
            self._hub = EventHub(transport.listen)
        await self._hub.start()
        return self._hub

    async def _check_schema(self, store: Store) -> None:
        latest = max(v for v, _ in load_migrations(_dialect(store)))
        current = await store.schema_version()
        if current >= latest:
            return
        if _dialect(store) == "sqlite":  # embedded: nobody else to ask, just upgrade
            await store.migrate()
            return
        raise SchemaOutdated(
            f"the database schema is at version {current}, this offload needs {latest}: "
            "run `offload db upgrade`"
        )

    async def broker(self) -> Broker:
        """The connected broker of ``OFFLOAD_BROKER_URL`` (the table queue when unset)."""
        if self._broker is not None:
            return self._broker
        store = await self.store()
        assert self._connecting is not None
        async with self._connecting:
            if self._broker is None:
                broker = open_broker(self.settings.broker_url, prefix=self.settings.broker_prefix)
                await broker.connect()
                if broker.carries_messages:
                    self._relay = Relay(store, broker)
                self._broker = broker
        return self._broker

    async def relay(self) -> Relay | None:
        """The outbox relay of this process: None with the table queue."""
        if not self._outbox:
            return None
        if self._relay is None:
            await self.broker()
        return self._relay

    async def upgrade_schema(self) -> list[int]:
        """Apply pending migrations (``offload db upgrade``); return the versions applied."""
        store = open_store(self.settings.database_url)
        await store.connect()
        try:
            return await store.migrate()
        finally:
            await store.close()

    async def close(self) -> None:
        if self._relay is not None:
            await self._relay.close()
            self._relay = None
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
        if self._events is not None:
            await self._events.close()
            self._events = None
        if self._broker is not None:
            await self._broker.close()
            self._broker = None
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def __aenter__(self) -> Offload:
        await self.store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- submitting --------------------------------------------------------------------------

    def _new_job(
        self,
        job_type: str,
        input: Any,
        *,
        queue: str | None,
        priority: int | None,
        delay: float | None,
        run_at: datetime | None,
        owner: str,
        idempotency_key: str | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> NewJob:
        spec = self.registry.get(job_type)
        data = spec.dump(input)
        queue, priority, wait = _placement(spec, queue, priority, delay, run_at)
        request_hash = None
        if idempotency_key is not None:
            canonical = json.dumps(
                [job_type, data, queue, priority], sort_keys=True, separators=(",", ":")
            )
            request_hash = hashlib.sha256(canonical.encode()).hexdigest()
        return NewJob(
            id=uuid7(),
            type=job_type,
            queue=queue,
            priority=priority,
            input=data,
            max_attempts=spec.max_attempts,
            delay=wait,
            owner=owner,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            trace_context=trace_context,
        )

    async def submit(
        self,
        job_type: str,
        input: Any,
        *,
        idempotency_key: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        owner: str = "default",
        notify: Notify | Mapping[str, Any] | None = None,
    ) -> Job:
        """Validate ``input`` against the type's model and store a new job.

        With ``idempotency_key``, a repeat of the same request returns the original job; the
        same key with different input raises :class:`~offload.errors.IdempotencyConflict`.

        ``notify={"webhook": "https://…", "email": "ops@example.com"}`` announces the job's
        end (succeeded, failed or canceled); a target the SSRF guard refuses raises
        :class:`~offload.errors.NotifyTargetRefused`.
        """
        job, _ = await self.submit_with_status(
            job_type,
            input,
            idempotency_key=idempotency_key,
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            owner=owner,
            notify=notify,
        )
        return job

    async def submit_with_status(
        self, job_type: str, input: Any, *, idempotency_key: str | None = None, **options: Any
    ) -> tuple[Job, bool]:
        """Like :meth:`submit`, also telling whether the job was created (False: an
        idempotent repeat)."""
        new = self._new_job(
            job_type,
            input,
            queue=options.get("queue"),
            priority=options.get("priority"),
            delay=options.get("delay"),
            run_at=options.get("run_at"),
            owner=options.get("owner", "default"),
            idempotency_key=idempotency_key,
            trace_context=options.get("trace_context"),
        )
        notify = await self._checked_notify(options.get("notify"))
        if notify is not None:
            new = dataclasses.replace(new, notify=notify)
        store = await self.store()
        job, created = await store.job_insert(new, self.settings.idempotency_ttl_seconds)
        if self._outbox and created and job.status is JobStatus.QUEUED:
            relay = await self.relay()
            relay.publish_soon([OutboxEntry(job.id, 1, job.queue, job.priority)])  # type: ignore[union-attr]
        return job, created

    async def submit_many(
        self,
        job_type: str,
        inputs: Iterable[Any],
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        owner: str = "default",
        notify: Notify | Mapping[str, Any] | None = None,
    ) -> list[Job]:
        """Validate every input first (nothing is stored if one is invalid), then insert them
        all in one round trip. With many thousands, pass them in chunks of about 10,000.
        ``notify`` applies to each job."""
        checked = await self._checked_notify(notify)
        spec = self.registry.get(job_type)
        data = spec.dump_many(list(inputs))
        queue, priority, wait = _placement(spec, queue, priority, delay, run_at)
        new = [
            NewJob(
                id=job_id,
                type=job_type,
                queue=queue,
                priority=priority,
                input=item,
                max_attempts=spec.max_attempts,
                delay=wait,
                owner=owner,
                notify=checked,
            )
            for job_id, item in zip(uuid7_many(len(data)), data, strict=True)
        ]
        store = await self.store()
        jobs = await store.job_insert_many(new)
        if self._outbox:
            relay = await self.relay()
            relay.publish_soon(  # type: ignore[union-attr]
                [
                    OutboxEntry(j.id, 1, j.queue, j.priority)
                    for j in jobs
                    if j.status is JobStatus.QUEUED
                ]
            )
        return jobs

    async def _checked_notify(self, notify: Notify | Mapping[str, Any] | None) -> Notify | None:
        if notify is None:
            return None
        from .notify.targets import check_notify

        return await check_notify(notify, self.settings)

    # -- reading and control -----------------------------------------------------------------

    async def get_job(self, job_id: uuid.UUID | str) -> Job | None:
        parsed = parse_job_id(job_id)
        if parsed is None:
            return None
        return await (await self.store()).job_get(parsed)

    async def list_jobs(self, where: JobFilter | None = None, *, limit: int = 50) -> list[Job]:
        return await (await self.store()).job_list(where or JobFilter(), limit=limit)

    async def dead_letters(self, *, job_type: str | None = None, limit: int = 50) -> list[Job]:
        """Jobs that failed for good and were not discarded, newest first."""
        where = JobFilter.dead_letters(type=job_type)
        return await (await self.store()).job_list(where, limit=limit)

    async def cancel(self, job_id: uuid.UUID | str, *, actor: str | None = None) -> Job | None:
        """Cancel a waiting job at once, or ask a running one to stop (it ends ``canceled``).
        None if there is no such job; :class:`~offload.errors.IllegalTransition` if it already
        finished."""
        parsed = parse_job_id(job_id)
        if parsed is None:
            return None
        return await (await self.store()).job_cancel(parsed, actor)

    async def replay(
        self, job_id: uuid.UUID | str, input: Any = None, *, actor: str | None = None
    ) -> Job | None:
        """Put a failed job back to ``queued`` with a fresh attempt budget, optionally with
        corrected input (validated like a new submission). Recorded in its event log."""
        parsed = parse_job_id(job_id)
        if parsed is None:
            return None
        store = await self.store()
        job = await store.job_get(parsed)
        if job is None:
            return None
        spec = self.registry.get(job.type)
        new_input = spec.dump(input) if input is not None else None
        replayed = await store.job_replay(parsed, new_input, spec.max_attempts, actor)
        await self._kick_relay()
        return replayed

    async def pause_queue(self, name: str, *, actor: str | None = None) -> None:
        """Workers stop claiming from ``name``; waiting jobs stay queued, nothing is lost."""
        await (await self.store()).queue_set_paused(name, True, actor)

    async def resume_queue(self, name: str, *, actor: str | None = None) -> None:
        await (await self.store()).queue_set_paused(name, False, actor)
        await self._kick_relay()

    async def _kick_relay(self) -> None:
        """A store change wrote outbox rows it did not return: publish them."""
        if self._outbox:
            relay = await self.relay()
            relay.kick()  # type: ignore[union-attr]

    async def queues(self) -> list[QueueInfo]:
        return await (await self.store()).queue_list()

    async def events(self, job_id: uuid.UUID | str, after_seq: int = 0) -> list[JobEvent]:
        parsed = parse_job_id(job_id)
        if parsed is None:
            return []
        return await (await self.store()).job_events(parsed, after_seq)


def _placement(
    spec: JobSpec,
    queue: str | None,
    priority: int | None,
    delay: float | None,
    run_at: datetime | None,
) -> tuple[str, int, float]:
    """Queue, priority and seconds until due: the submitter's choice, else the job type's."""
    return (
        queue or spec.queue,
        spec.priority if priority is None else priority,
        _delay_seconds(delay, run_at),
    )


def _delay_seconds(delay: float | None, run_at: datetime | None) -> float:
    if delay is not None and run_at is not None:
        raise ValueError("give either delay or run_at, not both")
    if run_at is not None:
        if run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware (e.g. datetime.now(UTC))")
        return max((run_at - datetime.now(UTC)).total_seconds(), 0.0)
    if delay is not None and delay < 0:
        raise ValueError("delay must be >= 0 seconds")
    return delay or 0.0


def _dialect(store: Store) -> str:
    return "sqlite" if store.url.startswith("sqlite") else "postgres"
