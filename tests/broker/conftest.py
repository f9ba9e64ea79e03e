"""Fixtures of the broker contract suite: every test taking ``broker`` runs once per broker.

Adding a broker to the suite takes two steps, here:

1. append its name to ``BROKERS``;
2. add a fixture ``<name>_broker_url`` returning its URL (or calling ``service_missing`` when the
   server is unreachable: skipped locally, a failure under CI=true).

Each test gets its own prefix (keys, streams, queues are namespaced by it), and
``Broker.destroy()`` deletes what the test created: the shared servers are never flushed.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import urlsplit

import pytest

from offload.broker import Broker, Consumer, open_broker
from offload.store import Store
from tests.conftest import service_missing

BROKERS = ["table", "redis", "rabbitmq"]
"""The brokers every contract test runs against."""

REDIS_URL = os.environ.get("OFFLOAD_TEST_REDIS", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("OFFLOAD_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")

RUN = uuid.uuid4().hex[:8]
"""This test run's part of every prefix."""


@pytest.fixture
def table_broker_url() -> str | None:
    return None


@pytest.fixture
def redis_broker_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing(f"Redis at {REDIS_URL}", str(exc))
    finally:
        client.close()
    # Messages of a consumer that went away are taken over after half a second (tests only).
    return f"{REDIS_URL}?claim_idle=0.5"


@pytest.fixture
def rabbitmq_broker_url() -> str:
    parts = urlsplit(AMQP_URL)
    address = (parts.hostname or "127.0.0.1", parts.port or 5672)
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError as exc:
        service_missing(f"RabbitMQ at {address[0]}:{address[1]}", str(exc))
    return AMQP_URL


@pytest.fixture(params=BROKERS)
def broker_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue(f"{request.param}_broker_url")  # type: ignore[no-any-return]


@pytest.fixture
def broker_prefix() -> str:
    return f"offload-test-{RUN}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
async def broker(broker_url: str | None, broker_prefix: str) -> AsyncIterator[Broker]:
    b = open_broker(broker_url, prefix=broker_prefix)
    await b.connect()
    try:
        yield b
    finally:
        await b.destroy()
        await b.close()


ConsumerFactory = Callable[..., Consumer]


@pytest.fixture
async def consumers(broker: Broker, store: Store) -> AsyncIterator[ConsumerFactory]:
    """``consumers(worker_id=…, queues=…, types=…, lease_seconds=…)``: closed after the test."""
    made: list[Consumer] = []

    def make(
        worker_id: str = "worker-1",
        *,
        queues: list[str] | None = None,
        types: tuple[str, ...] = ("test.job",),
        lease_seconds: float = 30.0,
        capacity: int = 10,
    ) -> Consumer:
        consumer = broker.consumer(
            store,
            types=types,
            queues=queues,
            worker_id=worker_id,
            lease_seconds=lease_seconds,
            capacity=capacity,
        )
        made.append(consumer)
        return consumer

    yield make
    for consumer in made:
        await consumer.close()


@pytest.fixture
def unique_queue() -> Iterator[str]:
    yield f"q-{uuid.uuid4().hex[:6]}"
