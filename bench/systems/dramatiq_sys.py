"""Dramatiq 2 with the Redis broker.

Configuration: 2 worker processes, each a ``dramatiq.Worker`` with 10 threads (what the
``dramatiq --processes 2 --threads 10`` CLI runs, minus its supervisor process). Prefetch is
Dramatiq's default, 2 x threads = 20 messages per process. Handlers are sync (threads), so
``sleep50`` uses ``time.sleep``. Default middleware (retries, time limit, ...) stays on: that is
what users run. The Redis consumer polls with exponential back-off up to the worker timeout
(default 1 s) when its queue is empty, which shows in ``pickup``; kept at the default. Acks
happen after the handler (Dramatiq's only mode). Bulk enqueue: Dramatiq has none (``group``
enqueues message by message), so n/a.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from bench import jobs
from bench.systems.base import BenchEnv, Job, System

THREADS = 10
ACTOR = "bench_dramatiq_job"


def _make_broker(env: BenchEnv) -> tuple[Any, Any]:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=env.redis_url)
    dramatiq.set_broker(broker)

    @dramatiq.actor(actor_name=ACTOR, queue_name=env.queue, max_retries=0)
    def job(phase: str, kind: str, submitted_at: float) -> None:
        jobs.run_job(phase, kind, submitted_at)

    return broker, job


class DramatiqSystem(System):
    name = "dramatiq"
    backend = "redis"
    config = f"2 processes x {THREADS} threads, prefetch {2 * THREADS}/process"

    def check(self) -> None:
        import dramatiq  # noqa: F401

    def setup(self) -> None:
        self.broker, self.actor = _make_broker(self.env)

    def purge(self) -> None:
        import redis

        redis.Redis.from_url(self.env.redis_url).flushdb()

    def enqueue(self, job: Job) -> None:
        self.actor.send(*job.args())

    def teardown(self) -> None:
        broker = getattr(self, "broker", None)
        if broker is not None:
            broker.close()

    @classmethod
    def worker_main(cls, env: BenchEnv, index: int) -> None:
        from dramatiq import Worker

        broker, _ = _make_broker(env)
        broker.emit_after("process_boot")
        worker = Worker(broker, worker_threads=THREADS)
        worker.start()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        while not stop.wait(0.5):  # a timed wait keeps signal delivery prompt
            pass
        worker.stop(timeout=2000)
        broker.close()
