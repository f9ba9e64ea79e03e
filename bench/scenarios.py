"""The scenarios, run identically for every system, and the per-system driver.

One *repeat* of a system runs, in order, with the same sizes for everybody:

1. submit_one  - N no-op jobs enqueued one at a time from this (one) client process; no
                 workers running. jobs/s = N / wall time of the submit loop.
2. submit_bulk - N jobs through the system's bulk API (n/a if it has none).
3. drain       - N no-op jobs pre-enqueued, THEN the 2 worker processes are started.
                 jobs/s = N / (last handler end - first handler start), so process start-up
                 and imports are excluded the same way for everybody.
4. rss         - total RSS of the worker process trees (all processes, children included),
                 right after the drain.
5. pickup      - jobs submitted one at a time, ``gap`` apart, to the idle, warm workers; the
                 handler records start - submitted_at. p50/p95/p99 in ms.
6. sleep50     - N jobs sleeping 50 ms, enqueued (bulk if available) to the running workers;
                 jobs/s = N / (last end - first start).

Workers are then stopped and the queue purged. Every wait has a deadline (SIGALRM based, so
even a blocking client call cannot hang the run).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from bench import infra
from bench.recorder import PhaseTotals, read_latencies, read_totals
from bench.systems.base import Job, NotSupported, System, Unavailable

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: metric -> (unit, higher_is_better)
METRICS: dict[str, tuple[str, bool]] = {
    "submit_one": ("jobs/s", True),
    "submit_bulk": ("jobs/s", True),
    "drain": ("jobs/s", True),
    "pickup_p50": ("ms", False),
    "pickup_p95": ("ms", False),
    "pickup_p99": ("ms", False),
    "sleep50": ("jobs/s", True),
    "rss": ("MB", False),
}


@dataclass(frozen=True)
class Sizes:
    submit_one: int
    submit_bulk: int
    drain: int
    pickup: int
    pickup_gap: float
    sleep50: int  # a multiple of 200 keeps batch-of-100 consumers balanced


QUICK = Sizes(
    submit_one=300, submit_bulk=2000, drain=2000, pickup=100, pickup_gap=0.005, sleep50=200
)
FULL = Sizes(
    submit_one=1000, submit_bulk=10000, drain=5000, pickup=400, pickup_gap=0.01, sleep50=400
)


@dataclass
class SystemResult:
    name: str
    backend: str
    reference: bool
    config: str
    status: str = "ok"  # ok | failed | unavailable
    reason: str = ""
    values: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # metric -> "n/a" etc.

    def add(self, metric: str, value: float) -> None:
        self.values.setdefault(metric, []).append(value)


class Deadline(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Raise Deadline in the main thread if the block runs longer than ``seconds``."""

    def expire(_signum: int, _frame: object) -> None:
        raise Deadline(f"{what}: no result within {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Driver:
    """Runs all scenarios for one system instance."""

    def __init__(
        self, system: System, sizes: Sizes, recorder: str, log: Callable[[str], None]
    ) -> None:
        self.system = system
        self.sizes = sizes
        self.recorder = recorder
        self.log = log
        self.workers: list[infra.Proc] = []

    # -- workers ------------------------------------------------------------------------
    def start_workers(self, tag: str) -> None:
        env = {**os.environ, **self.system.env.to_environ(), "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
        for i in range(self.system.launches):
            log = os.path.join(self.system.env.workdir, f"worker-{tag}-{i}.log")
            self.workers.append(infra.Proc(self.system.worker_argv(i), env, log, REPO_ROOT))

    def stop_workers(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers = []

    def check_workers(self) -> None:
        for w in self.workers:
            if not w.alive():
                raise RuntimeError(f"worker exited with code {w.popen.returncode}: {w.tail(8)}")

    def worker_rss_mb(self) -> float:
        total = 0
        for w in self.workers:
            for p in w.tree():
                with contextlib.suppress(Exception):
                    total += p.memory_info().rss
        return total / 2**20

    def wait_done(self, phase: str, n: int, timeout: float) -> PhaseTotals:
        """Poll the recorder until n completions of ``phase`` are reported, then (for a
        system with durable job state) until they are durable: the phase ends at the later
        of the last handler's end and the last durable completion."""
        end = time.monotonic() + timeout
        while True:
            totals = read_totals(self.recorder, phase)
            if totals.count >= n:
                with deadline(max(end - time.monotonic(), 5), f"{phase}: durable completion"):
                    durable = self.system.durable_end()
                if durable is not None:
                    totals = replace(totals, last=max(totals.last, durable))
                return totals
            self.check_workers()
            if time.monotonic() > end:
                raise Deadline(f"{phase}: only {totals.count}/{n} jobs done after {timeout:.0f} s")
            time.sleep(0.02)

    # -- submit helpers -------------------------------------------------------------------
    def enqueue_fast(self, jobs: list[Job]) -> None:
        """Pre-enqueue with the fastest API the system has."""
        with deadline(60 + len(jobs) / 50, "enqueue"):
            if self.system.has_bulk:
                self.system.submit_bulk(jobs)
            else:
                self.system.submit_each(jobs)

    # -- one repeat ------------------------------------------------------------------------
    def run_repeat(self, rep: int, result: SystemResult) -> None:
        s, sz = self.system, self.sizes
        base = f"{s.env.run_id}:{s.name}:{rep}"
        with deadline(60, "purge"):
            s.purge()

        n = sz.submit_one
        jobs = [Job(f"{base}:one", "noop")] * n
        with deadline(30 + n / 20, "submit_one"):
            t0 = time.perf_counter()
            s.submit_each(jobs)
            result.add("submit_one", n / (time.perf_counter() - t0))
        with deadline(60, "purge"):
            s.purge()

        n = sz.submit_bulk
        jobs = [Job(f"{base}:bulk", "noop")] * n
        try:
            with deadline(30 + n / 100, "submit_bulk"):
                t0 = time.perf_counter()
                s.submit_bulk(jobs)
                result.add("submit_bulk", n / (time.perf_counter() - t0))
        except NotSupported:
            result.notes["submit_bulk"] = "n/a"
        with deadline(60, "purge"):
            s.purge()

        n = sz.drain
        self.enqueue_fast([Job(f"{base}:drain", "noop")] * n)
        self.start_workers(str(rep))
        totals = self.wait_done(f"{base}:drain", n, 60 + n / 50)
        result.add("drain", totals.rate)
        result.add("rss", self.worker_rss_mb())
        self.log(f"{s.name} #{rep + 1}: drain {totals.rate:,.0f} jobs/s")

        n = sz.pickup
        phase = f"{base}:pickup"
        with deadline(30 + n * (sz.pickup_gap + 0.05), "pickup submit"):
            s.submit_each([Job(phase, "pickup")] * n, gap=sz.pickup_gap)
        self.wait_done(phase, n, 30)
        lat = sorted(x * 1000 for x in read_latencies(self.recorder, phase))
        for q in (50, 95, 99):
            result.add(f"pickup_p{q}", percentile(lat, q))

        n = sz.sleep50
        self.enqueue_fast([Job(f"{base}:sleep", "sleep")] * n)
        totals = self.wait_done(f"{base}:sleep", n, 60 + n * 0.05)
        result.add("sleep50", totals.rate)
        self.log(
            f"{s.name} #{rep + 1}: pickup p50 {percentile(lat, 50):.1f} ms, "
            f"sleep50 {totals.rate:,.0f} jobs/s"
        )

        self.stop_workers()
        with deadline(60, "purge"):
            s.purge()


def run_system(
    cls: type[System],
    env: Any,
    sizes: Sizes,
    repeat: int,
    recorder: str,
    log: Callable[[str], None],
) -> SystemResult:
    """Run every scenario ``repeat`` times; never raises (failures end up in the result)."""
    result = SystemResult(cls.name, cls.backend, cls.reference, cls.config)
    try:
        system = cls(env)
        system.check()
    except Unavailable as exc:
        result.status, result.reason = "unavailable", str(exc)
        return result
    except Exception as exc:
        result.status, result.reason = "unavailable", f"{type(exc).__name__}: {exc}"
        return result

    driver = Driver(system, sizes, recorder, log)
    try:
        with deadline(60, "setup"):
            system.setup()
        for rep in range(repeat):
            driver.run_repeat(rep, result)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        result.status = "failed"
        result.reason = f"{type(exc).__name__}: {exc}".strip()[:400]
        log(f"[red]{cls.name} failed:[/red] {result.reason}")
    finally:
        driver.stop_workers()
        try:
            with deadline(30, "teardown"):
                system.teardown()
        except Exception as exc:
            log(f"{cls.name}: teardown failed: {exc}")
    return result
