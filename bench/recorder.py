"""Completion counting, shared by every system so that all are counted the same way.

Worker side: each handler call ends in :meth:`Recorder.done`, which only updates in-memory
per-phase totals under a lock (a few microseconds). A daemon thread per worker process flushes
the totals every FLUSH_INTERVAL seconds, so counting is never the bottleneck and never adds a
network round-trip to a job. Start and end times are taken inside the handler, so the flush
delay does not affect any measured figure; it only delays the moment the runner *notices*
completion.

The totals go to plain files in the run's recorder directory (``BENCH_RECORDER_DIR``), not to
a server: a client library would add its own memory to every worker process (redis-py alone
adds about 11 MB), and the worker RSS figures must be the systems' own.

  c.<phase>.<pid>   "<count> <first_start> <last_end>", cumulative, replaced atomically
  l.<phase>.<pid>   pick-up latencies in seconds, one per line, appended
"""

from __future__ import annotations

import glob
import os
import threading
import time
from dataclasses import dataclass, field

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
            # A fresh process (or a forked child): new totals and flusher thread.
            self._totals = {}
            self._dir = os.environ["BENCH_RECORDER_DIR"]
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
            except OSError:
                time.sleep(0.5)  # recorder directory gone: the run is ending; keep quiet

    def _flush(self) -> None:
        with self._lock:
            batch = []
            for phase, t in self._totals.items():
                if t.dirty:
                    batch.append((phase, t.count, t.first, t.last, t.latencies))
                    t.latencies = []
                    t.dirty = False
        for phase, count, first, last, lats in batch:
            # Latencies first: once the count file shows n, all n latencies are on disk.
            if lats:
                with open(self._path("l", phase), "a") as f:
                    f.write("".join(f"{x!r}\n" for x in lats))
            tmp = self._path("tmp", phase)
            with open(tmp, "w") as f:
                f.write(f"{count} {first!r} {last!r}")
            os.replace(tmp, self._path("c", phase))

    def _path(self, kind: str, phase: str) -> str:
        return os.path.join(self._dir, f"{kind}.{phase}.{self._pid}")


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


def read_totals(directory: str, phase: str) -> PhaseTotals:
    """Runner side: sum the per-process totals of a phase."""
    count, first, last = 0, float("inf"), 0.0
    for path in glob.glob(os.path.join(glob.escape(directory), f"c.{glob.escape(phase)}.*")):
        with open(path) as f:
            c, fi, la = f.read().split()
        count += int(c)
        first = min(first, float(fi))
        last = max(last, float(la))
    return PhaseTotals(count, first, last)


def read_latencies(directory: str, phase: str) -> list[float]:
    latencies: list[float] = []
    for path in glob.glob(os.path.join(glob.escape(directory), f"l.{glob.escape(phase)}.*")):
        with open(path) as f:
            latencies += [float(line) for line in f if line.strip()]
    return latencies
