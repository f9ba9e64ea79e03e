"""RQ (Redis Queue).

Configuration: 2 worker processes, each an ``rq.SimpleWorker`` (one job at a time, in the worker
process). RQ's default ``Worker`` forks a fresh child per job, which measures ``fork()`` rather than
the queue (a few hundred jobs/s at best); SimpleWorker is what RQ recommends when that cost
matters, so ``sleep50`` is capped at 2 / 0.05 s = 40 jobs/s. Workers block on ``BLPOP`` so
idle pick-up is push-like. Job results and bookkeeping use RQ defaults (results kept 500 s).
Bulk: ``Queue.enqueue_many`` (one pipeline).
"""

from __future__ import annotations

from collections.abc import Sequence

from bench import jobs
from bench.systems.base import BenchEnv, Job, System


def bench_rq_job(phase: str, kind: str, submitted_at: float) -> None:
    jobs.run_job(phase, kind, submitted_at)


FUNC = f"{__name__}.bench_rq_job"


class RqSystem(System):
    name = "rq"
    backend = "redis"
    has_bulk = True
    config = "2 SimpleWorker processes x 1 job"

    def check(self) -> None:
        import rq  # noqa: F401

    def setup(self) -> None:
        import redis
        from rq import Queue

        self.redis = redis.Redis.from_url(self.env.redis_url)
        self.queue = Queue(self.env.queue, connection=self.redis)

    def purge(self) -> None:
        self.redis.flushdb()

    def enqueue(self, job: Job) -> None:
        self.queue.enqueue(FUNC, *job.args())

    def enqueue_many(self, jobs_: Sequence[Job]) -> None:
        from rq import Queue

        for start in range(0, len(jobs_), 1000):  # bounded pipelines
            chunk = jobs_[start : start + 1000]
            self.queue.enqueue_many([Queue.prepare_data(FUNC, args=j.args()) for j in chunk])

    def teardown(self) -> None:
        client = getattr(self, "redis", None)
        if client is not None:
            client.close()

    @classmethod
    def worker_main(cls, env: BenchEnv, index: int) -> None:
        import redis
        from rq import Queue, SimpleWorker

        conn = redis.Redis.from_url(env.redis_url)
        worker = SimpleWorker(
            [Queue(env.queue, connection=conn)],
            connection=conn,
            name=f"bench-{env.run_id}-{index}",
        )
        worker.work(logging_level="WARNING", with_scheduler=False)
