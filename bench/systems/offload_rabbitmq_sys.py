"""offload on PostgreSQL with RabbitMQ as the broker (``OFFLOAD_BROKER_URL=amqp://…``).

The job row (with its outbox row) is written first; the submitting process publishes the id
after the commit, with publisher confirms, to a durable quorum queue. 2 worker processes, each
``concurrency = 10`` async handlers and ``prefetch = 90``: the AMQP ``prefetch_count`` is the
worker's capacity, 100. Each batch of delivered ids is claimed in the store in one fenced
statement; finished attempts are written in batches and only then acknowledged. So every job is
a durable row with its event log, an attempt number and a lease, as in ``offload``; RabbitMQ
carries ids. Compare with ``raw_rabbitmq`` (bare aio-pika consumer, prefetch 10) and
``raw_rabbitmq_p100`` (the same with prefetch 100).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.systems.base import BenchEnv, Job
from bench.systems.offload_sys import CONCURRENCY, PREFETCH, OffloadSystem


class OffloadRabbitMQSystem(OffloadSystem):
    name = "offload-rabbitmq"
    backend = "rabbitmq"  # type: ignore[assignment]
    config = (
        f"2 processes x {CONCURRENCY} async, AMQP prefetch {CONCURRENCY + PREFETCH}, "
        "PostgreSQL store + outbox, quorum queue, confirms"
    )

    @classmethod
    def app_settings(cls, env: BenchEnv) -> dict[str, Any]:
        return {"broker_url": env.amqp_url, "broker_prefix": env.queue}

    async def aopen(self) -> None:
        await super().aopen()
        await self.app.broker()

    async def aclose(self) -> None:
        try:
            broker = await self.app.broker()
            await broker.destroy()  # the quorum queue, the dead-letter queue, both exchanges
        finally:
            await super().aclose()

    async def _published(self) -> None:
        # The relay publishes in the background on this client loop, which only runs while the
        # runner is inside a call (as offload-redis): hand everything over before returning.
        relay = await self.app.relay()
        await relay.flush()

    async def aenqueue_many(self, jobs_: Sequence[Job]) -> None:
        await super().aenqueue_many(jobs_)
        await self._published()

    def submit_each(self, jobs: Sequence[Job], gap: float = 0.0) -> None:
        super().submit_each(jobs, gap)
        self.run(self._published())

    def purge(self) -> None:
        super().purge()

        import aiormq

        async def clear() -> None:
            store = await self.app.store()
            await store.pool.execute("TRUNCATE offload_outbox")
            broker: Any = await self.app.broker()
            channel = await broker._connection().channel()
            try:
                queue = await channel.get_queue(broker.names.queue(self.env.queue))
                await queue.purge()
            except aiormq.exceptions.ChannelNotFoundEntity:
                pass  # nothing was published yet
            finally:
                await channel.close()

        self.run(clear())
