"""Completion counting, shared by every system so that all are counted the same way.

Worker side: each handler call ends in :meth:`Recorder.done`, which only updates in-memory
per-phase totals under a lock (a few microseconds). A daemon thread per worker process flushes
the totals to the private Redis every FLUSH_INTERVAL seconds, so counting is never the
bottleneck and never adds a network round-trip to a job. Start and end times are taken inside
the handler, so the flush delay does not affect any measured figure; it only delays the moment
the runner *notices* completion.

Redis layout (recorder DB of the private server):
  HSET bench:c:<phase> <pid> "<count> <first_start> <last_end>"   cumulative per process
  RPUSH bench:l:<phase> <latency seconds> ...                     pickup latencies
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import redis

FLUSH_INTERVAL = 0.02


@dataclass
class _Totals:
    count: int = 0
    first: float = float("inf")
    last: float = 0.0
    latencies: list[float] = field(default_factory=list)
    dirty: bool = False


class Recorder:
    """Per-process recorder. Lazily (re)initialised after fork (Celery prefork, dramatiq)."""

    def __init__(self) -> None:
        self._pid = -1
        self._lock = threading.Lock()
        self._totals: dict[str, _Totals] = {}

    def _ensure(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            # A fresh process (or a forked child): new lock state, client and flusher thread.
            self._totals = {}
            self._client = redis.Redis.from_url(os.environ["BENCH_RECORDER_URL"])
            self._pid = os.getpid()
            threading.Thread(target=self._flush_forever, name="bench-recorder", daemon=True).start()

    def done(self, phase: str, start: float, end: float, latency: float | None) -> None:
        self._ensure()
        with self._lock:
            t = self._totals.get(phase)
            if t is None:
                t = self._totals[phase] = _Totals()
            t.count += 1
            t.first = min(t.first, start)
            t.last = max(t.last, end)
            if latency is not None:
                t.latencies.append(latency)
            t.dirty = True

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL)
            try:
                self._flush()
            except redis.RedisError:
                time.sleep(0.5)  # recorder Redis gone: the run is ending; keep quiet

    def _flush(self) -> None:
        with self._lock:
            batch = []
            for phase, t in self._totals.items():
                if t.dirty:
                    batch.append((phase, t.count, t.first, t.last, t.latencies))
                    t.latencies = []
                    t.dirty = False
        if not batch:
            return
        pipe = self._client.pipeline(transaction=False)
        for phase, count, first, last, lats in batch:
            pipe.hset(f"bench:c:{phase}", str(self._pid), f"{count} {first!r} {last!r}")
            if lats:
                pipe.rpush(f"bench:l:{phase}", *(repr(x) for x in lats))
        pipe.execute()


RECORDER = Recorder()


@dataclass
class PhaseTotals:
    count: int
    first: float
    last: float

    @property
    def rate(self) -> float:
        span = self.last - self.first
        return self.count / span if span > 0 else float("nan")


def read_totals(client: redis.Redis, phase: str) -> PhaseTotals:
    """Runner side: sum the per-process totals of a phase."""
    count, first, last = 0, float("inf"), 0.0
    raw: dict[bytes, bytes] = client.hgetall(f"bench:c:{phase}")  # type: ignore[assignment]
    for value in raw.values():
        c, f, la = value.split()
        count += int(c)
        first = min(first, float(f))
        last = max(last, float(la))
    return PhaseTotals(count, first, last)


def read_latencies(client: redis.Redis, phase: str) -> list[float]:
    raw: list[bytes] = client.lrange(f"bench:l:{phase}", 0, -1)  # type: ignore[assignment]
    return [float(x) for x in raw]
