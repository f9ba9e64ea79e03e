"""The broker contract: every broker moves job ids, the store decides every claim.

Every test runs once per broker in ``BROKERS`` (tests/broker/conftest.py) and once per store
(SQLite, PostgreSQL). Jobs are written to the store first and then published, as the outbox does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from offload.broker import Broker, Consumer, Message
from offload.jobs import Job, JobStatus
from offload.store import Outcome, Store
from tests.broker.conftest import ConsumerFactory
from tests.conftest import wait_until
from tests.contract.helpers import get, insert


async def submit(store: Store, broker: Broker, **options: object) -> Job:
    """Write the job, then publish it: the order the outbox keeps."""
    job = await insert(store, **options)
    await broker.publish([Message.of(job)])
    return job


async def take_all(consumer: Consumer, count: int, *, timeout: float = 15.0) -> list[Job]:
    """Take until ``count`` jobs arrived (fails after ``timeout``)."""
    got: list[Job] = []

    async def enough() -> bool:
        got.extend(await consumer.take(count - len(got), 0.2))
        return len(got) >= count

    await wait_until(enough, timeout=timeout)
    return got


async def take_nothing(consumer: Consumer, *, rounds: int = 3) -> list[Job]:
    """What a consumer takes over a few bounded waits (expected: nothing)."""
    got: list[Job] = []
    for _ in range(rounds):
        got += await consumer.take(10, 0.2)
    return got


def ids(jobs: Sequence[Job]) -> list[uuid.UUID]:
    return [j.id for j in jobs]


async def test_a_published_job_is_taken_claimed_for_the_taking_worker(
    store: Store, broker: Broker, consumers: ConsumerFactory
):
    job = await submit(store, broker)

    [taken] = await take_all(consumers("w-1"), 1)

    assert taken.id == job.id
    assert (taken.status, taken.attempt, taken.worker_id) == (JobStatus.RUNNING, 1, "w-1")
    assert await get(store, job) == taken


async def test_a_job_published_twice_is_taken_once_among_competing_consumers(
    store: Store, broker: Broker, consumers: ConsumerFactory
):
    job = await submit(store, broker)
    await broker.publish([Message.of(job)])  # a duplicate (a republish, a redelivery)
    first, second = consumers("w-1"), consumers("w-2")

    [taken] = await take_all(first, 1)
    assert taken.id == job.id
    assert await take_nothing(second) == []
    assert await take_nothing(first) == []
    assert (await get(store, job)).attempt == 1


async def test_many_jobs_are_each_taken_exactly_once_by_competing_consumers(
    store: Store, broker: Broker, consumers: ConsumerFactory
):
    jobs = [await insert(store) for _ in range(40)]
    await broker.publish([Message.of(j) for j in jobs])
    await broker.publish([Message.of(j) for j in jobs[::3]])  # some twice
    workers = [consumers(f"w-{i}") for i in range(3)]
    taken: list[Job] = []

    async def all_taken() -> bool:
        for consumer in workers:
            got = await consumer.take(7, 0.05)
            taken.extend(got)
            await consumer.settle(ids(got))
        return len(taken) >= len(jobs)

    await wait_until(all_taken)
    assert sorted(ids(taken)) == sorted(ids(jobs))


async def test_one_take_returns_higher_priority_first(
    store: Store, broker: Broker, consumers: ConsumerFactory
):
    low = await insert(store, priority=0)
    high = await insert(store, priority=9)
    mid = await insert(store, priority=5)
    await broker.publish([Message.of(low), Message.of(high), Message.of(mid)])
    consumer = consumers()

    first = await take_all(consumer, 3)

    assert ids(first) == [high.id, mid.id, low.id]


async def test_a_canceled_job_is_never_taken(
    store: Store, broker: Broker, consumers: ConsumerFactory
):
    job = await submit(store, broker)
    await store.job_cancel(job.id, "someone")

    assert await take_nothing(consumers()) == []
    assert (await get(store, job)).status is JobStatus.CANCELED


async def test_a_job_not_yet_due_is_not_taken(
    store: Store, broker: Broker, consumers: ConsumerFactory
):
    job = await submit(store, broker, delay=60)

    assert await take_nothing(consumers()) == []
    assert (await get(store, job)).status is JobStatus.SCHEDULED


async def test_a_paused_queue_is_not_taken_until_resumed_and_republished(
    store: Store, broker: Broker, consumers: ConsumerFactory, unique_queue: str
):
    await store.queue_set_paused(unique_queue, True, "admin")
    job = await submit(store, broker, queue=unique_queue)
    consumer = consumers(queues=[unique_queue])

    assert await take_nothing(consumer) == []
    assert (await get(store, job)).status is JobStatus.QUEUED

    await store.queue_set_paused(unique_queue, False, "admin")
    await broker.publish([Message.of(job)])  # what resuming a queue does
    assert ids(await take_all(consumer, 1)) == [job.id]


async def test_a_consumer_takes_only_from_its_queues(
    store: Store, broker: Broker, consumers: ConsumerFactory, unique_queue: str
):
    mine = await submit(store, broker, queue=unique_queue)
    other = await submit(store, broker, queue=f"{unique_queue}-other")
    consumer = consumers(queues=[unique_queue])

    assert ids(await take_all(consumer, 1)) == [mine.id]
    assert await take_nothing(consumer) == []
    assert (await get(store, other)).status is JobStatus.QUEUED


async def test_a_consumer_of_every_queue_takes_from_each(
    store: Store, broker: Broker, consumers: ConsumerFactory, unique_queue: str
):
    a = await submit(store, broker, queue=f"{unique_queue}-a")
    b = await submit(store, broker, queue=f"{unique_queue}-b")

    taken = await take_all(consumers(queues=None), 2)

    assert sorted(ids(taken)) == sorted([a.id, b.id])


async def test_a_job_of_a_type_the_worker_does_not_run_stays_queued(
    store: Store, broker: Broker, consumers: ConsumerFactory
):
    job = await submit(store, broker, type="other.job")

    assert await take_nothing(consumers(types=("test.job",))) == []
    assert (await get(store, job)).status is JobStatus.QUEUED


async def test_settled_jobs_are_not_delivered_again(
    store: Store, broker: Broker, consumers: ConsumerFactory
):
    job = await submit(store, broker)
    first = consumers("w-1", lease_seconds=0.5)
    [taken] = await take_all(first, 1)
    await store.job_finish_many([Outcome(job.id, 1, JobStatus.SUCCEEDED, result="1")])
    await first.settle([taken.id])
    await first.close()

    assert await take_nothing(consumers("w-2"), rounds=6) == []
    assert (await get(store, job)).status is JobStatus.SUCCEEDED


async def test_a_job_held_by_a_consumer_that_died_is_run_again_by_another(
    store: Store, broker: Broker, consumers: ConsumerFactory
):
    job = await submit(store, broker)
    dead = consumers("w-dead", lease_seconds=0.3)
    [taken] = await take_all(dead, 1)
    await dead.close()  # gone without settling: the message is still unacknowledged
    await wait_until(store.jobs_reap_expired)  # its lease runs out; the reaper returns the job
    survivor = consumers("w-alive")

    [again] = await take_all(survivor, 1, timeout=30)

    assert (again.id, again.attempt, again.worker_id) == (job.id, 2, "w-alive")
    assert taken.attempt == 1


async def test_an_interrupted_take_returns_promptly(
    store: Store, broker: Broker, consumers: ConsumerFactory
):
    consumer = consumers()
    waiting = asyncio.ensure_future(consumer.take(10, 30.0))
    consumer.interrupt()

    assert await asyncio.wait_for(waiting, 5) == []


async def test_settling_unknown_ids_is_harmless(
    store: Store, broker: Broker, consumers: ConsumerFactory
):
    await consumers().settle([uuid.uuid4()])


async def test_the_backlog_counts_messages_not_yet_acknowledged(
    store: Store, broker: Broker, consumers: ConsumerFactory, unique_queue: str
):
    if broker.carries_messages is False:
        pytest.skip("the table queue has no messages: the store is the backlog")
    jobs = [await insert(store, queue=unique_queue) for _ in range(3)]
    await broker.publish([Message.of(j) for j in jobs])
    assert await broker.backlog(unique_queue) == 3

    consumer = consumers(queues=[unique_queue])
    taken = await take_all(consumer, 3)
    in_flight = 3 if broker.backlog_counts_in_flight else 0
    assert await broker.backlog(unique_queue) == in_flight  # in flight still counts, if seen
    await consumer.settle(ids(taken))

    assert await wait_until(lambda: _backlog_is(broker, unique_queue, 0))


async def _backlog_is(broker: Broker, queue: str, expected: int) -> bool:
    return await broker.backlog(queue) == expected


def test_a_message_round_trips_through_its_wire_format():
    message = Message(uuid.uuid4(), "reports", 7)

    assert Message.decode(message.encode()) == message
    assert Message.decode(message.encode().decode()) == message


@pytest.mark.parametrize("body", [b"", b"{}", b"[1]", b'{"id": "nope", "q": "x"}', b"\xff"])
def test_a_malformed_message_is_refused_with_a_clear_error(body: bytes):
    with pytest.raises(ValueError, match="not an offload message"):
        Message.decode(body)
