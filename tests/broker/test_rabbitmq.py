"""What only RabbitMQ does: its dead-letter queue (``<prefix>.dead``) receives the messages of
jobs that failed for good and anything that is not an offload message; a consumer of every
queue finds queues created after it started. On the shared node, per-test prefix, deleted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from pydantic import BaseModel

from offload import BrokerUnavailable, Context, JobStatus, Offload, PermanentError, Settings, Worker
from offload.broker import Message
from offload.broker import rabbitmq as rabbit
from offload.broker.rabbitmq import RabbitBroker
from offload.store import Store
from tests.broker.conftest import AMQP_URL, RUN
from tests.conftest import wait_until
from tests.contract.helpers import insert


@pytest.fixture
async def broker(rabbitmq_broker_url: str) -> AsyncIterator[RabbitBroker]:
    b = RabbitBroker(rabbitmq_broker_url, prefix=f"offload-test-{RUN}-{uuid.uuid4().hex[:6]}")
    await b.connect()
    yield b
    await b.destroy()
    await b.close()


async def dead_letters(broker: RabbitBroker) -> list[bytes]:
    """Every message in ``<prefix>.dead`` (read and put back)."""
    conn = await aio_pika.connect(AMQP_URL)
    try:
        channel = await conn.channel()
        queue = await channel.get_queue(broker.names.dead)
        bodies = []
        while (message := await queue.get(fail=False)) is not None:
            bodies.append(message.body)
        return bodies
    finally:
        await conn.close()


async def take(consumer: Any, count: int) -> list[Any]:
    got: list[Any] = []

    async def enough() -> bool:
        got.extend(await consumer.take(count - len(got), 0.2))
        return len(got) >= count

    await wait_until(enough, timeout=15)
    return got


async def test_the_message_of_a_job_that_failed_for_good_goes_to_the_dead_letter_queue(
    store: Store, broker: RabbitBroker
) -> None:
    failed, fine = await insert(store), await insert(store)
    await broker.publish([Message.of(failed), Message.of(fine)])
    consumer = broker.consumer(
        store, types=["test.job"], queues=["default"], worker_id="w", lease_seconds=30, capacity=5
    )
    taken = await take(consumer, 2)
    await consumer.settle([j.id for j in taken], failed=[failed.id])

    bodies = await wait_until(lambda: dead_letters(broker))
    assert [Message.decode(b).job_id for b in bodies] == [failed.id]
    assert await broker.backlog("default") == 0
    await consumer.close()


async def test_a_message_that_is_not_an_offload_message_goes_to_the_dead_letter_queue(
    store: Store, broker: RabbitBroker
) -> None:
    consumer = broker.consumer(
        store, types=["test.job"], queues=["default"], worker_id="w", lease_seconds=30, capacity=5
    )
    assert await consumer.take(1, 0.05) == []  # consuming: the queues exist
    conn = await aio_pika.connect(AMQP_URL)
    try:
        channel = await conn.channel()
        exchange = await channel.get_exchange(broker.names.exchange)
        await exchange.publish(aio_pika.Message(b"not json"), routing_key="default")
    finally:
        await conn.close()

    assert await consumer.take(1, 0.5) == []
    assert await wait_until(lambda: dead_letters(broker)) == [b"not json"]
    await consumer.close()


class Item(BaseModel):
    fail: bool = False


async def test_a_worker_dead_letters_the_message_of_a_job_raising_permanent_error(
    database_url: str, broker: RabbitBroker
) -> None:
    app = Offload(
        settings=Settings(
            database_url=database_url, broker_url=broker.url, broker_prefix=broker.names.prefix
        )
    )

    @app.job("rabbit.maybe", max_attempts=3)
    async def maybe(ctx: Context, item: Item) -> str:
        if item.fail:
            raise PermanentError("no")
        return "ok"

    store = await app.store()
    await store.migrate()
    worker = Worker(app, concurrency=2)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 10)
        bad = await app.submit("rabbit.maybe", {"fail": True})
        good = await app.submit("rabbit.maybe", {"fail": False})

        async def both_done() -> bool:
            jobs = [await app.get_job(bad.id), await app.get_job(good.id)]
            return all(j is not None and j.is_terminal for j in jobs)

        await wait_until(both_done)
        assert (await app.get_job(bad.id)).status is JobStatus.FAILED  # type: ignore[union-attr]
        bodies = await wait_until(lambda: dead_letters(broker))
        assert [Message.decode(b).job_id for b in bodies] == [bad.id]
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(running, 20)
        await (await app.broker()).destroy()
        await app.close()


async def test_a_consumer_of_every_queue_finds_a_queue_created_after_it_started(
    store: Store, broker: RabbitBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rabbit, "DISCOVER_INTERVAL", 0.2)
    consumer = broker.consumer(
        store, types=["test.job"], queues=None, worker_id="w", lease_seconds=30, capacity=5
    )
    assert await consumer.take(1, 0.05) == []  # started; no queue has jobs yet
    job = await insert(store, queue=f"late-{uuid.uuid4().hex[:6]}")
    await broker.publish([Message.of(job)])

    [taken] = await take(consumer, 1)

    assert taken.id == job.id
    await consumer.settle([taken.id])
    await consumer.close()


async def test_a_queue_deleted_by_hand_is_declared_again_by_the_next_publish(
    store: Store, broker: RabbitBroker
) -> None:
    job = await insert(store)
    await broker.publish([Message.of(job)])
    conn = await aio_pika.connect(AMQP_URL)
    try:
        channel = await conn.channel()
        await channel.queue_delete(broker.names.queue("default"))
    finally:
        await conn.close()

    with pytest.raises(BrokerUnavailable, match="no queue yet for default"):
        await broker.publish([Message.of(job)])  # unroutable: it stays in the outbox
    await broker.publish([Message.of(job)])  # the outbox's next try declares it again

    assert await broker.backlog("default") == 1
