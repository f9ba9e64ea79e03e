"""The interface every benchmarked system implements.

A *system* is one queue implementation (a peer such as Celery, a raw reference such as
``raw_pg``, or offload itself). The runner drives it through this small interface and does
all timing and counting itself, so every system is measured the same way:

* The client side (``submit_each`` / ``submit_bulk`` / ``purge``) runs inside the runner.
* The worker side runs in separate processes started by the runner as
  ``python -m bench.worker <name> <index>``, which calls ``System.worker_main(env, index)``.
  ``worker_main`` must block, run jobs by calling :func:`bench.jobs.run_job` (sync handlers) or
  :func:`bench.jobs.arun_job` (async handlers) with the three job arguments, and exit on
  SIGTERM (a default SIGTERM handler that just kills the process is fine).

Jobs carry exactly three JSON-friendly arguments: ``(phase: str, kind: str, submitted_at:
float)``; :meth:`Job.args` gives them as a list. Handlers never return anything the runner
looks at: completions are counted by :mod:`bench.recorder` inside the worker processes.
See bench/README.md for a walk-through.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

Backend = Literal["postgres", "redis", "rabbitmq"]

#: Job kinds the handler understands: a no-op, a 50 ms sleep, a no-op whose pick-up
#: latency (handler start - submitted_at) is recorded.
Kind = Literal["noop", "sleep", "pickup"]


class Unavailable(Exception):
    """Raised by :meth:`System.check` when a system cannot run here (e.g. import failed)."""


class NotSupported(Exception):
    """Raised by :meth:`System.submit_bulk` when the system has no bulk-enqueue API."""


@dataclass(frozen=True)
class BenchEnv:
    """Everything a system gets from the runner. Also exported to workers as BENCH_* vars.

    redis_url:    private redis-server started for this run (a DB reserved for brokers;
                  the system may FLUSHDB it in ``purge``). Never the shared 6379.
    recorder_dir: the directory the completion recorder writes to. Do not touch.
    pg_url:       a fresh database created for this run (dropped at the end), as
                  ``postgresql://postgres@127.0.0.1:5432/offload_bench_<id>``.
    amqp_url:     the shared RabbitMQ; use ``queue`` (unique per run and system) for names
                  and delete what you declared in ``teardown``.
    run_id:       short random id of this run.
    queue:        a queue / table / stream name unique to this run and system.
    workdir:      a private temp directory for this system (files, sockets, logs).
    """

    run_id: str
    redis_url: str
    recorder_dir: str
    pg_url: str
    amqp_url: str
    queue: str
    workdir: str

    def to_environ(self) -> dict[str, str]:
        return {f"BENCH_{k.upper()}": str(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_environ(cls) -> BenchEnv:
        names = cls.__dataclass_fields__
        return cls(**{k: os.environ[f"BENCH_{k.upper()}"] for k in names})


@dataclass(frozen=True)
class Job:
    phase: str  # identifies system + repeat + scenario; counters are kept per phase
    kind: Kind
    submitted_at: float = 0.0  # time.time() right before the submit call (pickup only)

    def args(self) -> list[Any]:
        return [self.phase, self.kind, self.submitted_at]

    def encode(self) -> str:
        """Compact text form for raw references that ship bytes, decoded by jobs.decode."""
        return f"{self.phase}|{self.kind}|{self.submitted_at!r}"


def _stamp(job: Job) -> Job:
    return replace(job, submitted_at=time.time()) if job.kind == "pickup" else job


class System(ABC):
    """Base class for a synchronous client. Subclasses implement ``enqueue`` (and
    ``enqueue_many`` if they have a bulk API) plus the worker side.

    Class attributes a subclass must/may set:
      name:        short id used on the command line (``--only``) and in the report.
      backend:     the storage/broker it relies on; picks the raw reference for ratios.
      reference:   True only for the raw_* baselines.
      launches:    how many worker commands the runner starts (each gets an index).
                   Normally 2 (one per process); 1 for systems whose single command forks
                   the 2 processes itself (Celery prefork).
      has_bulk:    whether ``enqueue_many`` is a real bulk API (else submit_bulk is n/a).
      config:      one line shown in the report: processes, concurrency, prefetch.
    """

    name: ClassVar[str]
    backend: ClassVar[Backend]
    reference: ClassVar[bool] = False
    launches: ClassVar[int] = 2
    has_bulk: ClassVar[bool] = False
    config: ClassVar[str] = ""

    def __init__(self, env: BenchEnv) -> None:
        self.env = env

    # -- lifecycle (runner side) -------------------------------------------------------
    def check(self) -> None:  # noqa: B027 - optional hook
        """Import optional dependencies; raise :class:`Unavailable` with a reason if missing."""

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Once per run, before anything else: create schema/queues, open client connections."""

    @abstractmethod
    def purge(self) -> None:
        """Drop every queued job of this system (workers are stopped when this is called)."""

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Once at the end (also after failures): close clients, delete queues you declared.
        Must not raise for half-initialised state."""

    def durable_end(self) -> float | None:
        """When the last job now in the system was recorded as done in the system's own
        durable state (``time.time()`` scale), or None if it keeps none.

        A system that writes completions after its handlers return (offload batches them)
        would otherwise be timed by its handlers alone; the runner calls this once the
        handlers are counted and waits on it, so its rates include the durable write."""
        return None

    # -- submitting -------------------------------------------------------------------
    @abstractmethod
    def enqueue(self, job: Job) -> None:
        """Enqueue one job, one round-trip, as an application would for a single request."""

    def enqueue_many(self, jobs: Sequence[Job]) -> None:
        """Enqueue many jobs with the system's bulk API (only if ``has_bulk``)."""
        raise NotSupported(f"{self.name} has no bulk enqueue API")

    def submit_each(self, jobs: Sequence[Job], gap: float = 0.0) -> None:
        """Called by the runner: enqueue one at a time, ``gap`` seconds apart.
        Pickup jobs are stamped with ``time.time()`` immediately before their submit."""
        for job in _each(jobs, gap):
            self.enqueue(job)

    def submit_bulk(self, jobs: Sequence[Job]) -> None:
        """Called by the runner: enqueue all jobs with the bulk API."""
        if not self.has_bulk:
            raise NotSupported(f"{self.name} has no bulk enqueue API")
        self.enqueue_many(jobs)

    # -- worker side ------------------------------------------------------------------
    def worker_argv(self, index: int) -> list[str]:
        """Command line of worker launch ``index`` (0..launches-1). Rarely overridden."""
        return [sys.executable, "-m", "bench.worker", self.name, str(index)]

    @classmethod
    @abstractmethod
    def worker_main(cls, env: BenchEnv, index: int) -> None:
        """Runs in the worker process: consume ``env.queue`` forever, calling
        bench.jobs.run_job / arun_job for each job. Return or die on SIGTERM."""


class AsyncSystem(System):
    """Base class for systems whose client API is asyncio-native (arq, aio-pika, offload).

    Implement ``aopen`` / ``aclose`` / ``aenqueue`` (and ``aenqueue_many``); the base keeps a
    private event loop so that a whole ``submit_each`` loop runs inside one coroutine (the
    gap between pickup submits is an ``asyncio.sleep`` so the loop can flush sockets).
    """

    def setup(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self.aopen())

    def teardown(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is None:
            return
        try:
            loop.run_until_complete(asyncio.wait_for(self.aclose(), 15))
        finally:
            loop.close()
            self._loop = None

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the client loop (for purge and similar helpers)."""
        return self._loop.run_until_complete(coro)

    async def aopen(self) -> None:
        """Open client connections (called from setup)."""

    async def aclose(self) -> None:
        """Close client connections (called from teardown)."""

    @abstractmethod
    async def aenqueue(self, job: Job) -> None:
        """Enqueue one job, one round-trip."""

    async def aenqueue_many(self, jobs: Sequence[Job]) -> None:
        raise NotSupported(f"{self.name} has no bulk enqueue API")

    def enqueue(self, job: Job) -> None:
        self.run(self.aenqueue(job))

    def enqueue_many(self, jobs: Sequence[Job]) -> None:
        self.run(self.aenqueue_many(jobs))

    def submit_each(self, jobs: Sequence[Job], gap: float = 0.0) -> None:
        async def go() -> None:
            async for job in _aeach(jobs, gap):
                await self.aenqueue(job)

        self.run(go())


def _each(jobs: Sequence[Job], gap: float) -> Iterator[Job]:
    for i, job in enumerate(jobs):
        if gap and i:
            time.sleep(gap)
        yield _stamp(job)


async def _aeach(jobs: Sequence[Job], gap: float) -> AsyncIterator[Job]:
    for i, job in enumerate(jobs):
        if gap and i:
            await asyncio.sleep(gap)
        yield _stamp(job)
