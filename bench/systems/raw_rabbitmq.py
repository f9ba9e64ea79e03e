"""raw_rabbitmq: a bare aio-pika consumer, the physical-limit reference for RabbitMQ systems.

A quorum queue (what offload's design names for RabbitMQ), persistent messages, publisher
confirms on (each ``publish`` waits for the broker's confirm; bulk publishes 1000 concurrently
and waits for all confirms). 2 worker processes, each with ``prefetch_count = 10`` (= a worker's
capacity), handlers run as concurrent tasks, manual ``ack`` after the handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

from bench import jobs
from bench.systems import _raw
from bench.systems.base import AsyncSystem, BenchEnv, Job

QUEUE_ARGS = {"x-queue-type": "quorum"}


class RawRabbitMqSystem(AsyncSystem):
    name = "raw_rabbitmq"
    backend = "rabbitmq"
    reference = True
    has_bulk = True
    config = f"2 processes, quorum queue, prefetch {_raw.CONCURRENCY}, manual acks, confirms"
    prefetch: ClassVar[int] = _raw.CONCURRENCY
    """Unacknowledged deliveries per worker (= handlers in flight)."""

    def check(self) -> None:
        import aio_pika  # noqa: F401

    async def aopen(self) -> None:
        import aio_pika

        self.conn: Any = await aio_pika.connect(self.env.amqp_url)
        self.channel = await self.conn.channel(publisher_confirms=True)
        self.queue = await self.channel.declare_queue(
            self.env.queue, durable=True, arguments=QUEUE_ARGS
        )

    async def aclose(self) -> None:
        try:
            await self.queue.delete(if_unused=False, if_empty=False)
        finally:
            await self.conn.close()

    def purge(self) -> None:
        self.run(self.queue.purge())

    def _message(self, job: Job) -> Any:
        import aio_pika

        persistent = aio_pika.DeliveryMode.PERSISTENT
        return aio_pika.Message(job.encode().encode(), delivery_mode=persistent)

    async def aenqueue(self, job: Job) -> None:
        await self.channel.default_exchange.publish(self._message(job), routing_key=self.env.queue)

    async def aenqueue_many(self, jobs_: Sequence[Job]) -> None:
        exchange = self.channel.default_exchange
        for start in range(0, len(jobs_), 1000):
            await asyncio.gather(
                *(
                    exchange.publish(self._message(j), routing_key=self.env.queue)
                    for j in jobs_[start : start + 1000]
                )
            )

    @classmethod
    def worker_main(cls, env: BenchEnv, index: int) -> None:
        asyncio.run(_work(env, cls.prefetch))


async def _work(env: BenchEnv, prefetch: int) -> None:
    import aio_pika

    stop = _raw.stop_event()
    conn = await aio_pika.connect(env.amqp_url)
    channel = await conn.channel()
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.declare_queue(env.queue, durable=True, arguments=QUEUE_ARGS)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(message: Any) -> None:
        await jobs.arun_job(*jobs.decode(message.body))
        await message.ack()

    async def on_message(message: Any) -> None:
        # Returning at once lets the next prefetched delivery start: up to prefetch in flight.
        task = asyncio.create_task(handle(message))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await queue.consume(on_message)
    await stop.wait()
    await conn.close()
