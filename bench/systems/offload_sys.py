"""offload itself — the plug-in point, to be completed by the offload engineer.

Until it is filled in, ``check`` raises Unavailable and the runner lists offload as
"not available" (also when ``import offload`` fails). To implement (see bench/README.md):

1. ``backend``: "postgres" (table queue, default), "redis" or "rabbitmq" — picks the raw
   reference offload is compared with. Point ``OFFLOAD_DATABASE_URL`` at ``env.pg_url`` and
   ``OFFLOAD_BROKER_URL`` at ``env.redis_url`` / ``env.amqp_url`` accordingly. If you benchmark
   several broker set-ups, copy this module (offload_redis_sys.py, ...) and register each in
   bench/systems/__init__.py.
2. ``_make_app(env)``: build an ``Offload`` app with one async handler registered as
   ``"bench.job"`` on queue ``env.queue`` whose body is
   ``await jobs.arun_job(inp.phase, inp.kind, inp.submitted_at)``.
3. ``aopen``: create the app, apply migrations to ``env.pg_url``; ``purge``: delete queued jobs;
   ``aenqueue``: ``await app.submit("bench.job", {...})`` — the Python path, not HTTP, so the
   figures are comparable with peers' ``delay()``; ``aenqueue_many``: a bulk submit if offload
   has one (else leave ``has_bulk = False``).
4. ``worker_main``: run ONE worker process on ``env.queue`` (the runner starts ``launches = 2``
   of them) with the same capacity as the peers (10 concurrent async jobs per process), exit
   on SIGTERM. Document the configuration in ``config`` and in this docstring.
"""

from __future__ import annotations

from bench.systems.base import AsyncSystem, BenchEnv, Job, Unavailable


class OffloadSystem(AsyncSystem):
    name = "offload"
    backend = "postgres"
    has_bulk = False
    config = "not implemented yet"

    def check(self) -> None:
        try:
            import offload  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"import offload failed: {exc}") from exc
        raise Unavailable("bench/systems/offload_sys.py is not implemented yet")

    def purge(self) -> None:
        raise NotImplementedError

    async def aenqueue(self, job: Job) -> None:
        raise NotImplementedError

    @classmethod
    def worker_main(cls, env: BenchEnv, index: int) -> None:
        raise NotImplementedError
