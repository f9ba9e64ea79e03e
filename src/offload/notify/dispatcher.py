"""The dispatcher: turns job events into deliveries and sends them, outside the API.

Two duties under one lifecycle:

- ``tail`` reads the store's global event feed from a cursor kept in the store
  (``offload_feed_cursors``, name ``notify``) and writes one delivery per event and target —
  each registered endpoint of the job's tenant that wants the event type, and on terminal
  events the job's own ``options.notify`` webhook and email. Rows are unique per (event,
  target) and the cursor moves in the same transaction, so a crash never loses an event nor
  delivers it twice. One dispatcher at a time tails (a lease on the cursor row); the others
  take over when it stops renewing.
- ``deliver`` claims due deliveries under a lease (any number of dispatchers share them),
  sends each (webhook: Standard Webhooks signature, SSRF check at send time; email: SMTP),
  records the attempt and schedules a retry with full-jitter backoff within the retry window,
  honouring ``Retry-After``; 410 Gone disables the endpoint.

It runs inside every ``offload worker`` process (``OFFLOAD_DISPATCH=0`` turns that off) and
on its own as ``offload dispatch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..app import Offload
from ..events.payload import PUBLIC_EVENT_TYPES, TERMINAL_EVENT_TYPES, event_data
from ..ids import uuid7
from ..retry import backoff_delay
from ..store import EventFilter, FeedEvent
from ..store.notify import (
    AttemptResult,
    Delivery,
    NewDelivery,
    NotifyStore,
    Verdict,
    WebhookEndpoint,
)
from .ssrf import AllowList

if TYPE_CHECKING:
    import httpx

    from .mail import SmtpSettings

log = logging.getLogger("offload.notify")

CURSOR = "notify"
TERMINAL = TERMINAL_EVENT_TYPES
EVENT_TYPES = PUBLIC_EVENT_TYPES
_PAGE = 500
_CONCURRENCY = 20
"""Attempts in flight per dispatcher."""


def delivery_id() -> str:
    """``msg_`` + a time-ordered id: the ``webhook-id`` header, listed newest first."""
    return "msg_" + uuid7().hex


class Dispatcher:
    """Deliver webhooks and email for one :class:`~offload.Offload` app's store.

    >>> dispatcher = Dispatcher(app)
    >>> await dispatcher.run()          # until dispatcher.stop()
    """

    def __init__(
        self,
        app: Offload,
        *,
        holder: str | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        s = app.settings
        self.app = app
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.allow = AllowList.parse(s.webhook_allowed_hosts)
        self.smtp: SmtpSettings | None = None
        if s.smtp_url:
            # Imported here, like the webhook client: an idle worker need not carry the
            # email package (about 1.5 MB a process).
            from .mail import SmtpSettings

            self.smtp = SmtpSettings.parse(s.smtp_url)
        self._uniform = uniform
        self._stopping = asyncio.Event()
        self._due = asyncio.Event()
        self._http: httpx.AsyncClient | None = None
        """Made at the first webhook: httpx is heavy, and most workers never send one."""
        self._lease = s.webhook_timeout + 30.0
        self._position: str | None = None
        """Where this dispatcher is in the feed while it holds the cursor's lease."""
        self._renew_at = 0.0
        self.ready = asyncio.Event()
        """Set once the first read of the feed is done (the cursor is placed)."""

    def stop(self) -> None:
        self._stopping.set()
        self._due.set()

    async def run(self) -> None:
        store: Any = await self.app.store()
        tail = asyncio.create_task(self._supervised("tail", lambda: self._tail_forever(store)))
        deliver = asyncio.create_task(
            self._supervised("deliver", lambda: self._deliver_forever(store))
        )
        try:
            await self._stopping.wait()
        finally:
            self.stop()
            tail.cancel()
            # Attempts in flight finish and are recorded (each is bounded by its timeout):
            # cut off, they would stay leased until the lease runs out.
            try:
                await asyncio.wait_for(asyncio.shield(deliver), self._lease)
            except (TimeoutError, asyncio.CancelledError):
                deliver.cancel()
            await asyncio.gather(tail, deliver, return_exceptions=True)
            if self._http is not None:
                await self._http.aclose()
            if self._position is not None:  # hand the feed over now, not when the lease ends
                with contextlib.suppress(Exception):
                    await store.feed_cursor_release(CURSOR, self.holder)

    async def _supervised(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        delay = 0.1
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dispatcher %s failed (%s); restarting in %.1f s", name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds * random.uniform(0.8, 1.2)):
                await self._stopping.wait()

    # -- tail: events → deliveries -----------------------------------------------------------

    async def _tail_forever(self, store: Any) -> None:
        interval = self.app.settings.dispatch_interval
        while not self._stopping.is_set():
            if await self.tail_once(store):
                self._due.set()
            self.ready.set()
            await self._pause(interval)

    async def tail_once(self, store: Any) -> int:
        """Read the feed to its end (if this dispatcher holds the cursor); return how many
        deliveries were created."""
        window = self.app.settings.webhook_retry_window
        lease = max(10.0, self.app.settings.dispatch_interval * 20)
        now = time.monotonic()
        if now >= self._renew_at:  # take or renew the lease: a write, so not on every read
            held, position = await store.feed_cursor_take(CURSOR, self.holder, lease)
            if not held:
                self._position = None
                self._renew_at = now + lease / 3
                return 0
            self._renew_at = now + lease / 3
            if self._position is None:
                self._position = position
            if self._position is None:  # the first dispatcher ever: from the end, not history
                self._position = await store.events_head()
                await store.delivery_enqueue([], window, (CURSOR, self.holder, self._position))
        elif self._position is None:
            return 0  # another dispatcher holds the cursor
        created = 0
        while True:
            endpoints = [e for e in await store.webhook_list() if e.active]
            wanted = set(TERMINAL).union(*(e.events for e in endpoints))
            # Only the events of jobs someone is to be told about: reading (and building) every
            # job's events was the larger part of a worker's cost on short jobs.
            where = EventFilter(
                event_types=sorted(wanted), notify_owners=sorted({e.tenant for e in endpoints})
            )
            page = await store.events_after(self._position, where, limit=_PAGE)
            if page.cursor != self._position:
                deliveries = await self._route(store, page.events, endpoints)
                created += await store.delivery_enqueue(
                    deliveries, window, (CURSOR, self.holder, page.cursor)
                )
                self._position = page.cursor
            if len(page.events) < _PAGE or self._stopping.is_set():
                return created

    async def _route(
        self, store: NotifyStore, feed: Sequence[FeedEvent], endpoints: Sequence[WebhookEndpoint]
    ) -> list[NewDelivery]:
        terminal_ids = [fe.job.id for fe in feed if fe.event.type in TERMINAL]
        own = await store.job_notify_get(terminal_ids) if terminal_ids else {}
        out: list[NewDelivery] = []
        for fe in feed:
            event, job = fe.event, fe.job
            targets: list[tuple[str, str | None, str, str]] = [
                ("webhook", e.id, e.url, e.id)
                for e in endpoints
                if e.tenant == job.owner and event.type in e.events
            ]
            notify = own.get(job.id) if event.type in TERMINAL else None
            if notify is not None and notify.webhook:
                targets.append(("webhook", None, notify.webhook, "job-webhook"))
            if notify is not None and notify.email:
                targets.append(("email", None, notify.email, "job-email"))
            if not targets:
                continue
            payload = json.dumps(
                {
                    "type": event.type,
                    "timestamp": event.created_at.isoformat(),
                    "data": event_data(job, event),
                },
                separators=(",", ":"),
            )
            for channel, endpoint_id, target, key in targets:
                out.append(
                    NewDelivery(
                        id=delivery_id(),
                        dedupe_key=f"{job.id}:{event.seq}:{key}",
                        tenant=job.owner,
                        channel=channel,  # type: ignore[arg-type]
                        endpoint_id=endpoint_id,
                        target=target,
                        job_id=job.id,
                        event_type=event.type,
                        payload=payload,
                    )
                )
        return out

    # -- deliver: one attempt per due delivery -------------------------------------------------

    async def _deliver_forever(self, store: NotifyStore) -> None:
        """Keep up to ``_CONCURRENCY`` attempts in flight, claiming more as slots free: a slow
        endpoint (up to its timeout) holds one slot, never the others' deliveries."""
        interval = self.app.settings.dispatch_interval
        inflight: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping.is_set():
                free = _CONCURRENCY - len(inflight)
                claimed: list[Delivery] = []
                if free > 0:
                    self._due.clear()
                    claimed = await store.delivery_claim(self.holder, free, self._lease)
                    for d in claimed:
                        inflight.add(asyncio.create_task(self._deliver(store, d)))
                if free > 0 and len(claimed) == free:
                    continue  # more may be due right now
                due = asyncio.ensure_future(self._due.wait())
                done, _ = await asyncio.wait(
                    [*inflight, due], timeout=interval, return_when=asyncio.FIRST_COMPLETED
                )
                due.cancel()
                inflight -= done
        finally:
            # Stopping: the attempts in flight finish and are recorded (each has a timeout).
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)

    async def _deliver(self, store: NotifyStore, d: Delivery) -> None:
        try:
            result = await self._attempt(store, d)
        except Exception as exc:  # recorded like any failure: retried within the window
            log.exception("delivery %s: the attempt failed", d.id)
            error = f"internal error: {type(exc).__name__}: {exc}"[:500]
            result = self._result(d, datetime.now(UTC), 0.0, None, error, "retry")
        try:
            if not await store.delivery_record(result):
                log.warning("delivery %s: lease lost; attempt recorded only", d.id)
        except Exception as exc:
            log.warning("delivery %s: recording the attempt failed (%s)", d.id, exc)

    async def _attempt(self, store: NotifyStore, d: Delivery) -> AttemptResult:
        now = datetime.now(UTC)
        if d.channel == "email":
            return await self._email(d, now)
        if d.endpoint_id is not None:
            endpoint = await store.webhook_get(d.endpoint_id)
            if endpoint is None or not endpoint.active:
                why = "endpoint deleted" if endpoint is None else "endpoint disabled"
                return self._result(d, now, 0.0, None, why, "failed")
            secret = endpoint.secret
        else:
            from .signing import new_secret

            secret = await store.tenant_secret(d.tenant, new_secret())
        from . import webhook

        if self._http is None:
            self._http = webhook.http_client()
        s = self.app.settings
        answer = await webhook.post(
            self._http,
            d.target,
            self.allow,
            secret=secret,
            msg_id=d.id,
            body=d.payload,
            timeout=s.webhook_timeout,
            now=now,
        )
        if answer.ok:
            verdict: Verdict = "succeeded"
        elif answer.refused or answer.status_code == 410:
            verdict = "failed"
        else:
            verdict = "retry"
        error = answer.error
        if error is None and not answer.ok and answer.status_code is not None:
            error = f"HTTP {answer.status_code}"
        result = self._result(
            d, now, answer.duration_ms, answer.status_code, error, verdict, answer.retry_after
        )
        if answer.status_code == 410 and d.endpoint_id is not None:
            result = replace(result, disable_endpoint=True)
        log.info(
            "delivery %s (%s, attempt %d): %s",
            d.id,
            d.event_type,
            d.attempts,
            answer.status_code or answer.error,
        )
        return result

    async def _email(self, d: Delivery, now: datetime) -> AttemptResult:
        if self.smtp is None:
            return self._result(d, now, 0.0, None, "OFFLOAD_SMTP_URL is not set", "retry")
        from . import mail

        sent = await mail.send(
            self.smtp, d.target, d.id, d.payload, self.app.settings.webhook_timeout
        )
        verdict: Verdict = "succeeded" if sent.ok else "failed" if sent.permanent else "retry"
        return self._result(d, now, sent.duration_ms, sent.code, sent.error, verdict)

    def _result(
        self,
        d: Delivery,
        now: datetime,
        duration_ms: float,
        status_code: int | None,
        error: str | None,
        verdict: Verdict,
        retry_after: float | None = None,
    ) -> AttemptResult:
        """The attempt's record; a retry that would fall past the window gives up instead."""
        s = self.app.settings
        retry_in = 0.0
        if verdict == "retry":
            retry_in = (
                retry_after
                if retry_after is not None
                else backoff_delay(d.attempts, s.webhook_backoff_base, s.webhook_backoff_max,
                                   self._uniform)
            )  # fmt: skip
            if now + timedelta(seconds=retry_in) > d.deadline_at:
                verdict = "failed"
                error = f"{error or 'failed'}; gave up: the retry window is over"
        return AttemptResult(
            delivery_id=d.id,
            attempt=d.attempts,
            owner=self.holder,
            started_at=now,
            duration_ms=duration_ms,
            status_code=status_code,
            error=error,
            verdict=verdict,
            retry_in=retry_in,
        )
