"""Celery 5 with the Redis broker.

Configuration: ONE ``celery worker`` command with the prefork pool and ``--concurrency 2``,
i.e. 2 worker (child) processes doing the work plus Celery's supervising main process (its RSS
is included). One job at a time per process, so ``sleep50`` is capped at 2 / 0.05 s = 40 jobs/s:
that is what prefork with 2 processes gives; a thread/gevent pool would be a different system.

* ``worker_prefetch_multiplier = 8``: each child reserves up to 8 messages. The default 4 is
  tuned for long tasks; for tiny jobs a deeper prefetch cuts Redis round-trips. Kept moderate so
  that idle workers still pick up new work promptly. (1, 4, 8 and 32 measured within noise of
  each other here; override with BENCH_CELERY_PREFETCH to experiment.)
* ``task_acks_late = True``: a message is acknowledged after the handler returns (at-least-once),
  the guarantee offload gives; early acks would lose jobs on a crash and measured no faster
  here (BENCH_CELERY_ACKS_LATE=0 to compare).
* ``ignore_result = True``: no result backend; completions are counted by bench.recorder like
  for every other system. ``--without-gossip/mingle/heartbeat``: no cluster chatter.
* Bulk enqueue: Celery has no bulk API (``group`` publishes message by message), so n/a.
"""

from __future__ import annotations

import os
from typing import Any

from bench import jobs
from bench.systems.base import BenchEnv, Job, System

TASK = "bench.celery_job"
PREFETCH_MULTIPLIER = int(os.environ.get("BENCH_CELERY_PREFETCH", "8"))


def _make_app(env: BenchEnv) -> Any:
    from celery import Celery

    app = Celery("bench", broker=env.redis_url)
    app.conf.update(
        task_default_queue=env.queue,
        task_acks_late=os.environ.get("BENCH_CELERY_ACKS_LATE", "1") == "1",
        task_ignore_result=True,
        worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
    )

    @app.task(name=TASK, ignore_result=True)
    def celery_job(phase: str, kind: str, submitted_at: float) -> None:
        jobs.run_job(phase, kind, submitted_at)

    return app


class CelerySystem(System):
    name = "celery"
    backend = "redis"
    launches = 1  # the single command forks 2 prefork children
    config = f"prefork, 2 processes x 1, prefetch x{PREFETCH_MULTIPLIER}, acks_late"

    def check(self) -> None:
        import celery  # noqa: F401

    def setup(self) -> None:
        self.app = _make_app(self.env)
        self.producer = self.app.producer_pool.acquire(block=True)

    def purge(self) -> None:
        import redis

        redis.Redis.from_url(self.env.redis_url).flushdb()

    def enqueue(self, job: Job) -> None:
        self.app.send_task(TASK, args=job.args(), queue=self.env.queue, producer=self.producer)

    def teardown(self) -> None:
        producer = getattr(self, "producer", None)
        if producer is not None:
            producer.release()
            self.app.close()

    @classmethod
    def worker_main(cls, env: BenchEnv, index: int) -> None:
        app = _make_app(env)
        app.worker_main(
            [
                "worker",
                "--pool=prefork",
                "--concurrency=2",
                f"--queues={env.queue}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=WARNING",
                f"--hostname=bench-{env.run_id}@%h",
            ]
        )
