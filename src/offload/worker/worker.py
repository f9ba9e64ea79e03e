"""The worker loop, whole: claim what fits, run each attempt as a task, write outcomes in
batches, keep leases alive, and drain on stop.

Background duties are named, supervised side tasks sharing one lifecycle:
``heartbeat`` (renew leases, notice lost leases and cancel requests), ``maintenance`` (reap
expired leases and promote due delayed jobs; safe to run in every worker at once),
``completer`` (write finished attempts in batches), and with a message broker ``acker``
(acknowledge the messages of written outcomes) and ``reconciler`` (see
:mod:`offload.broker.reconciler`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..app import Offload
from ..broker import Consumer
from ..broker.outbox import Relay
from ..broker.reconciler import Reconciler
from ..context import Context
from ..jobs import Job, JobStatus
from ..registry import JobSpec
from ..store import Lease, Outcome, Store
from .executor import AttemptAbandoned, canceled, run_attempt

log = logging.getLogger("offload.worker")

_BATCH = 500
"""Most outcomes written in one statement."""


@dataclass(slots=True)
class _Active:
    job: Job
    ctx: Context
    task: asyncio.Task[None]


class Worker:
    """Runs the jobs of one :class:`~offload.Offload` app.

    >>> worker = Worker(app, queues=["reports"], concurrency=8)
    >>> await worker.run()          # until worker.stop() (SIGTERM in `offload worker`)
    """

    def __init__(
        self,
        app: Offload,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        prefetch: int = 0,
        grace: float = 30.0,
        worker_id: str | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        if len(app.registry) == 0:
            raise ValueError("the app has no job types registered; nothing to run")
        self.app = app
        self.queues = list(queues) if queues else None
        self.concurrency = concurrency
        self.prefetch = prefetch
        """Jobs claimed beyond the free slots and held (leased) until a slot frees: bigger
        batches per claim for short jobs; keep 0 for long jobs so idle workers get them."""
        self.grace = grace
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._uniform = uniform
        self._types = app.registry.names()
        self._lease = app.settings.lease_seconds
        self._active: dict[uuid.UUID, _Active] = {}
        self._held: collections.deque[Job] = collections.deque()
        self._outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()
        """Finished attempts waiting to be written; None tells the completer to finish up."""
        self._slot_free = asyncio.Event()
        self._wake = asyncio.Event()
        """Set when there may be work to claim: the database announced some, a job this worker
        retried became due, or the worker is stopping."""
        self._stopping = asyncio.Event()
        self._abort = asyncio.Event()
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="offload-job")
        self._store: Store | None = None
        self._consumer: Consumer | None = None
        self._relay: Relay | None = None
        self._unacked: list[uuid.UUID] = []
        """Jobs whose outcome is written and whose messages the acker has yet to acknowledge."""
        self._unacked_failed: list[uuid.UUID] = []
        """Those of them that failed for good (a broker's own dead letters, where it has them)."""
        self._ack_due = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once the worker is connected and claiming."""

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, *, now: bool = False) -> None:
        """Stop claiming and drain; ``now`` skips the grace period (a second SIGTERM)."""
        self._stopping.set()
        self._wake.set()
        self._slot_free.set()
        if self._consumer is not None:
            self._consumer.interrupt()
        if now:
            self._abort.set()

    async def run(self) -> None:
        store = self._store = await self.app.store()
        await store.listen()
        store.on_jobs(self._wake.set)
        store.on_cancel_requested(self._on_cancel_requested)
        broker = await self.app.broker()
        await broker.check("consume", self.queues)  # a clear error now, not failed takes later
        consumer = self._consumer = broker.consumer(
            store,
            types=self._types,
            queues=self.queues,
            worker_id=self.worker_id,
            lease_seconds=self._lease,
            capacity=self.concurrency + self.prefetch,
        )
        completer = asyncio.create_task(self._supervised("completer", self._complete_forever))
        self._relay = await self.app.relay()
        side_tasks = [
            asyncio.create_task(self._supervised("heartbeat", self._heartbeat_forever)),
            asyncio.create_task(self._supervised("maintenance", self._maintain_forever)),
        ]
        if consumer.acks:
            side_tasks.append(asyncio.create_task(self._supervised("acker", self._ack_forever)))
        if self._relay is not None:
            reconciler = Reconciler(
                store, broker, self._relay, interval=self.app.settings.reconcile_interval
            )
            side_tasks.append(
                asyncio.create_task(
                    self._supervised("reconciler", lambda: self._reconcile_forever(reconciler))
                )
            )
        if self.app.settings.dispatch:
            from ..notify.dispatcher import Dispatcher  # webhooks and email, a duty of workers

            dispatcher = Dispatcher(self.app, holder=self.worker_id)
            side_tasks.append(asyncio.create_task(dispatcher.run(), name="dispatcher"))
        log.info(
            "worker %s started (queues=%s, concurrency=%d, broker=%s)",
            self.worker_id,
            ",".join(self.queues or ["*"]),
            self.concurrency,
            broker.scheme,
        )
        self.ready.set()
        try:
            await self._claim_forever(store, consumer)
            await self._drain()
        finally:
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)
            # The completer is not cancelled mid-write (that would drop a batch): it is told
            # to write what is left and stop.
            self._outcomes.put_nowait(None)
            try:
                await asyncio.wait_for(completer, self._lease)
            except TimeoutError:
                log.error("could not write the last outcomes; their jobs will be retried")
            await self._settle_unacked()
            self._threads.shutdown(wait=False, cancel_futures=True)
            await consumer.close()
            log.info("worker %s stopped", self.worker_id)

    async def _supervised(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Keep a side task alive: log and restart it if it fails (a database blip)."""
        delay = 0.1
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; restarting in %.1f s", name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- claiming ----------------------------------------------------------------------------

    async def _claim_forever(self, store: Store, consumer: Consumer) -> None:
        idle_wait = 1.0 if store.supports_push else self.app.settings.poll_interval
        capacity = self.concurrency + self.prefetch
        failures = 0
        while not self._stopping.is_set():
            room = capacity - len(self._active) - len(self._held)
            starving = len(self._active) < self.concurrency and not self._held
            # A busy worker tops up in big batches; one with an empty slot claims at once.
            if room <= 0 or (not starving and room < max(1, capacity // 2)):
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            self._wake.clear()  # before the claim: a wake-up that races with it is kept
            try:
                jobs = await consumer.take(room, idle_wait)
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("claim failed (%s); retrying", exc)
                await self._sleep(min(0.1 * 2**failures, 5.0))
                continue
            self._held.extend(jobs)
            self._start_held()
            # A blocking consumer waited for work inside take(); the table queue waits here.
            if len(jobs) < room and not consumer.blocking:
                await self._sleep(idle_wait)

    async def _sleep(self, seconds: float) -> None:
        """Until woken (new work, a retry due, stop) or ``seconds`` passed. A timer on the same
        event, not a task per wait: this sits on the pick-up path."""
        timer = asyncio.get_running_loop().call_later(seconds, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            timer.cancel()

    def _start_held(self) -> None:
        while self._held and len(self._active) < self.concurrency:
            self._start(self._held.popleft())

    def _start(self, job: Job) -> None:
        spec = self.app.registry.get(job.type)
        ctx = Context(
            self._store,
            job.id,
            job.type,
            job.attempt,
            job.max_attempts,
            job.checkpoint,  # type: ignore[arg-type]
            asyncio.get_running_loop(),
            self.worker_id,
        )
        if job.cancel_requested:
            ctx.request_cancel()
        task = asyncio.create_task(self._execute(job, spec, ctx), name=f"job-{job.id}")
        self._active[job.id] = _Active(job, ctx, task)

    async def _execute(self, job: Job, spec: JobSpec, ctx: Context) -> None:
        try:
            outcome = await run_attempt(job, spec, ctx, self._threads, self._uniform)
        except AttemptAbandoned:
            log.warning(
                "job %s attempt %d lost its lease; its result is discarded", job.id, job.attempt
            )
            outcome = None
            await self._settle([job.id])
        finally:
            self._active.pop(job.id, None)
            if not self._stopping.is_set():
                self._start_held()
            self._slot_free.set()
        if outcome is not None:
            self._outcomes.put_nowait(outcome)

    # -- cancel requests ---------------------------------------------------------------------

    def _on_cancel_requested(self, job_id: uuid.UUID) -> None:
        active = self._active.get(job_id)
        if active is None or active.ctx.cancel_requested:
            return
        active.ctx.request_cancel()
        if self.app.registry.get(active.job.type).is_async:
            asyncio.get_running_loop().call_later(
                self.app.settings.cancel_grace, self._force_cancel, job_id, active.task
            )

    def _force_cancel(self, job_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        """The handler ignored the cancel request for ``cancel_grace`` seconds: stop it."""
        if not task.done():
            task.offload_cancel_requested = True  # type: ignore[attr-defined]
            task.cancel()

    # -- side tasks --------------------------------------------------------------------------

    async def _complete_forever(self) -> None:
        """Write what has finished, as one batch per wake-up, until told to stop (None)."""
        while True:
            items = [await self._outcomes.get()]
            while items[-1] is not None and len(items) < _BATCH and not self._outcomes.empty():
                items.append(self._outcomes.get_nowait())
            batch = [item for item in items if item is not None]
            if batch:
                await self._write(batch)
            if items[-1] is None:
                return

    async def _write(self, batch: list[Outcome]) -> None:
        delay = 0.05
        while True:
            try:
                written = await self._store.job_finish_many(batch)  # type: ignore[union-attr]
                break
            except Exception as exc:
                # The store is down: keep the outcomes and try again. If it stays down past
                # the lease, the reaper hands the jobs to another attempt (at-least-once).
                log.warning("writing %d outcomes failed (%s); retrying", len(batch), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        loop = asyncio.get_running_loop()
        for outcome in batch:
            if outcome.status is JobStatus.RETRYING:
                loop.call_later(outcome.retry_delay, self._wake.set)
        if self._consumer is not None and self._consumer.acks:
            # Acknowledged by the acker, so the next batch of outcomes need not wait for it.
            dead = set(written) & {o.job_id for o in batch if o.status is JobStatus.FAILED}
            self._unacked.extend(o.job_id for o in batch)
            self._unacked_failed.extend(dead)
            self._ack_due.set()
        if len(written) < len(batch):
            fenced = {o.job_id for o in batch} - set(written)
            log.warning(
                "%d outcomes were fenced off (leases lost): %s",
                len(fenced),
                ", ".join(map(str, sorted(fenced))),
            )

    async def _ack_forever(self) -> None:
        """Acknowledge the messages of written outcomes: everything pending at each wake-up."""
        while True:
            await self._ack_due.wait()
            self._ack_due.clear()
            await self._settle_unacked()

    async def _settle_unacked(self) -> None:
        unacked, self._unacked = self._unacked, []
        failed, self._unacked_failed = self._unacked_failed, []
        await self._settle(unacked, failed=failed)

    async def _settle(self, job_ids: list[uuid.UUID], *, failed: Sequence[uuid.UUID] = ()) -> None:
        """Acknowledge the broker messages of jobs the store no longer needs them for (those
        that ``failed`` for good go to the broker's dead letters, where it has them). A failed
        ack only means the message comes back; its claim will find nothing to run."""
        consumer = self._consumer
        if consumer is None or not consumer.acks or not job_ids:
            return
        try:
            await consumer.settle(job_ids, failed=failed)
        except Exception as exc:
            log.warning("acknowledging %d messages failed (%s)", len(job_ids), exc)

    async def _flush_outcomes(self) -> None:
        batch: list[Outcome] = []
        while not self._outcomes.empty():
            item = self._outcomes.get_nowait()
            if item is not None:
                batch.append(item)
        for start in range(0, len(batch), _BATCH):
            await self._write(batch[start : start + _BATCH])

    async def _heartbeat_forever(self) -> None:
        interval = min(self._lease / 3, 2.0)
        while True:
            await asyncio.sleep(interval)
            leases = [Lease(a.job.id, a.job.attempt, self.worker_id) for a in self._active.values()]
            leases += [Lease(job.id, job.attempt, self.worker_id) for job in self._held]
            if not leases:
                continue
            result = await self._store.job_heartbeat(leases, self._lease)  # type: ignore[union-attr]
            gone = result.lost | result.cancel_requested
            lost_held = []
            for job in [j for j in self._held if j.id in gone]:
                self._held.remove(job)
                if job.id in result.cancel_requested and job.id not in result.lost:
                    self._outcomes.put_nowait(canceled(job))
                else:
                    lost_held.append(job.id)
            await self._settle(lost_held)
            for job_id in result.lost:
                active = self._active.get(job_id)
                if active is not None:
                    log.warning(
                        "job %s: lease lost; abandoning attempt %d", job_id, active.job.attempt
                    )
                    active.ctx.fence()
                    active.task.cancel()
            for job_id in result.cancel_requested:
                self._on_cancel_requested(job_id)

    async def _maintain_forever(self) -> None:
        interval = self.app.settings.reap_interval
        while True:
            reaped = await self._store.jobs_reap_expired()  # type: ignore[union-attr]
            if reaped:
                log.warning("returned %d jobs with expired leases", reaped)
            promoted = await self._store.jobs_promote_due()  # type: ignore[union-attr]
            if promoted and self._relay is not None:
                self._relay.kick()  # publish the jobs that just became due
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))

    async def _reconcile_forever(self, reconciler: Reconciler) -> None:
        interval = reconciler.interval
        while True:
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            await reconciler.run_once()

    # -- draining ----------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Let running attempts finish within the grace period, then hand the rest back."""
        held, self._held = list(self._held), collections.deque()
        for job in held:  # never started: hand back at once
            await self._store.job_release(
                Lease(job.id, job.attempt, self.worker_id), "worker shutdown"
            )  # type: ignore[union-attr]
        await self._republish_released()
        await self._settle([job.id for job in held])
        if self._active:
            log.info("draining %d running jobs (grace %.0f s)", len(self._active), self.grace)
            running = asyncio.gather(
                *(a.task for a in self._active.values()), return_exceptions=True
            )
            abort = asyncio.ensure_future(self._abort.wait())
            await asyncio.wait(
                [running, abort], timeout=self.grace, return_when=asyncio.FIRST_COMPLETED
            )
            abort.cancel()
        leftovers = list(self._active.values())
        for active in leftovers:
            active.ctx.fence()
            active.task.cancel()
        await asyncio.gather(*(a.task for a in leftovers), return_exceptions=True)
        await self._flush_outcomes()
        for active in leftovers:
            released = await self._store.job_release(  # type: ignore[union-attr]
                Lease(active.job.id, active.job.attempt, self.worker_id), "worker shutdown"
            )
            if released:
                log.info("job %s handed back for another worker", active.job.id)
        await self._republish_released()
        await self._settle([active.job.id for active in leftovers])

    async def _republish_released(self) -> None:
        """Jobs handed back went to the outbox with their release: publish them before the
        old messages are acknowledged (the outbox rows would survive a failure anyway)."""
        if self._relay is not None:
            self._relay.kick()
            try:
                await asyncio.wait_for(self._relay.flush(), 5)
            except Exception as exc:
                log.warning("publishing handed-back jobs failed (%s); the reconciler will", exc)
