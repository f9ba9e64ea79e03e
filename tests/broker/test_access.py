"""Credential isolation (``offload broker setup``): the identities it creates can do their
side's job and are refused the rest. Real users on the shared servers, with per-run names: a
RabbitMQ vhost of the run's own (deleted afterwards, users too), Redis ACL users (deleted
afterwards). The guest and default users are never changed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import aiormq
import pytest

from offload.broker import Message
from offload.broker.access import (
    REDIS_COMMANDS,
    AccessSetupError,
    Identity,
    RabbitMQCtl,
    delete_rabbitmq,
    delete_redis,
    setup,
    with_credentials,
)
from offload.broker.rabbitmq import RabbitBroker
from offload.errors import BrokerAccessDenied, BrokerUnavailable
from offload.store import Store
from tests.broker.conftest import AMQP_URL, REDIS_URL, RUN
from tests.conftest import service_missing
from tests.contract.helpers import insert

ROOT = Path(__file__).resolve().parents[2]


# -- RabbitMQ ------------------------------------------------------------------------------------


class RabbitSetup:
    """One vhost, prefix and pair of users for the whole module (rabbitmqctl takes ~1 s a
    call); deleted at the end."""

    def __init__(self, ctl: RabbitMQCtl) -> None:
        tag = f"{RUN}-{uuid.uuid4().hex[:6]}"
        self.ctl = ctl
        self.vhost = f"offload-test-{tag}"
        self.prefix = f"offload-{tag}"
        self.url = AMQP_URL.rsplit("/", 1)[0] + "/" + quote(self.vhost, safe="")
        self.users: list[str] = []

    def run(self, suffix: str = "") -> dict[str, Identity]:
        names = {
            "publisher": f"{self.prefix}-pub{suffix}",
            "consumer": f"{self.prefix}-con{suffix}",
        }
        self.users += names.values()
        identities = asyncio.run(
            setup(self.url, prefix=self.prefix, usernames=names, ctl=self.ctl)  # type: ignore[arg-type]
        )
        return {i.role: i for i in identities}

    def broker(self, identity: Identity, prefix: str | None = None) -> RabbitBroker:
        return RabbitBroker(identity.url, prefix=prefix or self.prefix)

    def cleanup(self) -> None:
        delete_rabbitmq(self.users, ctl=self.ctl)
        self.ctl.run("delete_vhost", self.vhost)


@pytest.fixture(scope="module")
def rabbit() -> Iterator[RabbitSetup]:
    ctl = RabbitMQCtl()
    try:
        ctl.users()
    except AccessSetupError as exc:
        service_missing("rabbitmqctl on this host (run as root or rabbitmq)", str(exc))
    made = RabbitSetup(ctl)
    yield made
    made.cleanup()


@pytest.fixture(scope="module")
def rabbit_ids(rabbit: RabbitSetup) -> dict[str, Identity]:
    return rabbit.run()


@pytest.fixture
async def connected(rabbit: RabbitSetup) -> AsyncIterator[list[RabbitBroker]]:
    """Brokers a test opens; closed afterwards."""
    opened: list[RabbitBroker] = []
    yield opened
    for broker in opened:
        await broker.close()


async def _open(opened: list[RabbitBroker], broker: RabbitBroker) -> RabbitBroker:
    await broker.connect()
    opened.append(broker)
    return broker


async def test_the_publisher_publishes_and_the_consumer_takes_the_job(
    rabbit: RabbitSetup,
    rabbit_ids: dict[str, Identity],
    connected: list[RabbitBroker],
    sqlite_url: str,
) -> None:
    from offload.store import open_store

    store: Store = open_store(sqlite_url)
    await store.connect()
    await store.migrate()
    try:
        publisher = await _open(connected, rabbit.broker(rabbit_ids["publisher"]))
        consumer = await _open(connected, rabbit.broker(rabbit_ids["consumer"]))
        await publisher.check("publish")
        await consumer.check("consume", ["default"])
        job = await insert(store)  # queue "default", which setup declared
        await publisher.publish([Message.of(job)])

        taking = consumer.consumer(
            store,
            types=["test.job"],
            queues=["default"],
            worker_id="w",
            lease_seconds=30,
            capacity=5,
        )
        taken = []
        for _ in range(50):
            taken += await taking.take(1, 0.2)
            if taken:
                break
        await taking.settle([j.id for j in taken])
        await taking.close()
        assert [j.id for j in taken] == [job.id]
    finally:
        await store.close()


async def test_the_publisher_is_refused_consuming_and_declaring(
    rabbit: RabbitSetup, rabbit_ids: dict[str, Identity], connected: list[RabbitBroker]
) -> None:
    publisher = await _open(connected, rabbit.broker(rabbit_ids["publisher"]))

    with pytest.raises(BrokerAccessDenied, match="refused to let this identity consume"):
        await publisher.check("consume", ["default"])
    # It cannot create the queue of a new offload queue either: the message comes back
    # unroutable and stays in the outbox until a worker declares that queue.
    with pytest.raises(BrokerUnavailable, match="no queue yet for brand-new"):
        await publisher.publish([Message(uuid.uuid4(), "brand-new", 0)])


async def test_the_consumer_is_refused_names_outside_its_prefix(
    rabbit: RabbitSetup, rabbit_ids: dict[str, Identity]
) -> None:
    conn = await aio_pika.connect(rabbit_ids["consumer"].url)
    try:
        channel = await conn.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await channel.declare_queue("not-offload", durable=True)
    finally:
        await conn.close()
    with pytest.raises(BrokerUnavailable, match="no usable exchange"):
        await rabbit.broker(rabbit_ids["consumer"], prefix="someone-else").connect()


async def test_a_wrong_password_is_a_clear_error_without_the_password(
    rabbit: RabbitSetup, rabbit_ids: dict[str, Identity]
) -> None:
    wrong = rabbit_ids["consumer"].url.replace(rabbit_ids["consumer"].password, "not-it")

    with pytest.raises(BrokerAccessDenied, match="refused the login") as caught:
        await RabbitBroker(wrong, prefix=rabbit.prefix).connect()
    assert "not-it" not in str(caught.value)


def test_running_setup_again_gives_new_passwords_and_the_old_ones_stop_working(
    rabbit: RabbitSetup,
) -> None:
    first = rabbit.run("-rotated")
    again = rabbit.run("-rotated")

    assert again["publisher"].password != first["publisher"].password
    with pytest.raises(BrokerAccessDenied):
        asyncio.run(rabbit.broker(first["publisher"]).connect())
    asyncio.run(_check_and_close(rabbit.broker(again["publisher"]), "publish"))


async def _check_and_close(broker: RabbitBroker, role: str) -> None:
    await broker.connect()
    try:
        await broker.check(role)
    finally:
        await broker.close()


@pytest.fixture(scope="module")
def reader_url(rabbit: RabbitSetup) -> str:
    """An identity that may read but not publish (nor declare)."""
    reader = f"{rabbit.prefix}-reader"
    rabbit.users.append(reader)
    rabbit.ctl.run("add_user", reader, stdin="reader-pw\n")
    rabbit.ctl.run("set_permissions", "-p", rabbit.vhost, reader, "^$", "^$", ".*")
    return with_credentials(rabbit.url, reader, "reader-pw")


async def test_an_identity_without_publish_rights_fails_the_api_start_up_check(
    rabbit: RabbitSetup, rabbit_ids: dict[str, Identity], reader_url: str, sqlite_url: str
) -> None:
    from offload import Offload
    from offload.api import create_app
    from offload.config import Settings

    offload = Offload(
        settings=Settings(
            database_url=sqlite_url, broker_url=reader_url, broker_prefix=rabbit.prefix
        )
    )
    api = create_app(offload)

    with pytest.raises(BrokerAccessDenied, match="refused to let this identity publish"):
        async with api.router.lifespan_context(api):
            pass
    await offload.close()


def test_offload_serve_with_an_identity_that_may_not_publish_stops_with_one_clear_line(
    rabbit: RabbitSetup, rabbit_ids: dict[str, Identity], reader_url: str, sqlite_url: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "offload.cli", "serve", "--app", "tests.apps.chaos:app"],
        env={
            "PATH": "/usr/bin:/bin",
            "OFFLOAD_DATABASE_URL": sqlite_url,
            "OFFLOAD_BROKER_URL": reader_url,
            "OFFLOAD_BROKER_PREFIX": rabbit.prefix,
            "PYTHONPATH": str(ROOT),
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert done.stderr.startswith("error: RabbitMQ at ")
    assert "refused to let this identity publish" in done.stderr
    assert "Traceback" not in done.stderr
    assert "reader-pw" not in done.stderr


def test_a_worker_with_the_publisher_identity_stops_at_start_up_with_one_clear_line(
    rabbit: RabbitSetup, rabbit_ids: dict[str, Identity], sqlite_url: str
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "OFFLOAD_DATABASE_URL": sqlite_url,
        "OFFLOAD_BROKER_URL": rabbit_ids["publisher"].url,
        "OFFLOAD_BROKER_PREFIX": rabbit.prefix,
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "offload.worker", "--app", "tests.apps.chaos:app"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )

    errors = [line for line in done.stderr.decode().splitlines() if line.startswith("error:")]
    assert done.returncode == 2  # like a usage error: a supervisor does not restart it
    assert len(errors) == 1 and "refused to let this identity consume" in errors[0]
    assert "Traceback" not in done.stderr.decode()
    assert rabbit_ids["publisher"].password not in done.stderr.decode()


# -- Redis ---------------------------------------------------------------------------------------


@pytest.fixture
async def redis_ids() -> AsyncIterator[tuple[str, dict[str, Identity]]]:
    import redis.asyncio as aredis
    from redis.exceptions import RedisError

    admin = aredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await admin.ping()
    except RedisError as exc:
        await admin.aclose()
        service_missing(f"Redis at {REDIS_URL}", str(exc))
    prefix = f"offload-test-{RUN}-{uuid.uuid4().hex[:6]}"
    names = {"publisher": f"{prefix}-pub", "consumer": f"{prefix}-con"}
    try:
        identities = await setup(REDIS_URL, prefix=prefix, usernames=names)  # type: ignore[arg-type]
        yield prefix, {i.role: i for i in identities}
    finally:
        await delete_redis(REDIS_URL, list(names.values()))
        keys = [k async for k in admin.scan_iter(match=f"{prefix}:*")]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()


async def _as(identity: Identity) -> Any:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(identity.url, socket_connect_timeout=2)
    await client.ping()
    return client


async def test_the_redis_publisher_may_only_add_to_streams_under_the_prefix(
    redis_ids: tuple[str, dict[str, Identity]],
) -> None:
    from redis.exceptions import NoPermissionError

    prefix, ids = redis_ids
    client = await _as(ids["publisher"])
    try:
        await client.xadd(f"{prefix}:q:default", {"m": b"{}"})
        await client.sadd(f"{prefix}:queues", "default")
        with pytest.raises(NoPermissionError):  # the consumer's job
            await client.xreadgroup("offload", "c", {f"{prefix}:q:default": ">"}, count=1)
        with pytest.raises(NoPermissionError):
            await client.xack(f"{prefix}:q:default", "offload", "0-1")
        with pytest.raises(NoPermissionError):  # outside the prefix
            await client.xadd("someone-else:q:default", {"m": b"{}"})
        with pytest.raises(NoPermissionError):
            await client.delete(f"{prefix}:q:default")
    finally:
        await client.aclose()


async def test_the_redis_consumer_reads_acks_and_takes_over_but_administers_nothing(
    redis_ids: tuple[str, dict[str, Identity]],
) -> None:
    from redis.exceptions import NoPermissionError

    prefix, ids = redis_ids
    stream = f"{prefix}:q:default"
    client = await _as(ids["consumer"])
    try:
        await client.xgroup_create(stream, "offload", id="0", mkstream=True)
        await client.xadd(stream, {"m": b"{}"})
        [[_, [(entry, _)]]] = await client.xreadgroup("offload", "c1", {stream: ">"}, count=1)
        await client.xautoclaim(stream, "offload", "c2", min_idle_time=0)
        assert await client.xack(stream, "offload", entry) == 1
        await client.xdel(stream, entry)
        assert await client.smembers(f"{prefix}:queues") == set()
        with pytest.raises(NoPermissionError):
            await client.xadd("someone-else:q:default", {"m": b"{}"})
        for command in (("FLUSHALL",), ("CONFIG", "GET", "maxmemory"), ("ACL", "LIST")):
            with pytest.raises(NoPermissionError):
                await client.execute_command(*command)
    finally:
        await client.aclose()


def test_the_publisher_commands_are_a_subset_of_the_consumer_s() -> None:
    assert set(REDIS_COMMANDS["publisher"]) <= set(REDIS_COMMANDS["consumer"])


async def test_setup_never_touches_the_redis_default_user() -> None:
    with pytest.raises(AccessSetupError, match="default"):
        await setup(REDIS_URL, prefix="x", usernames={"publisher": "default", "consumer": "c"})


async def test_setup_refuses_a_url_that_is_not_a_broker() -> None:
    with pytest.raises(AccessSetupError, match="amqp:// or redis://"):
        await setup("postgresql://localhost/db", prefix="x")


def test_offload_broker_check_says_in_one_line_what_an_identity_may_not_do(
    rabbit: RabbitSetup, rabbit_ids: dict[str, Identity]
) -> None:
    def check(identity: Identity, role: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "offload.cli", "broker", "check", "--role", role],
            env={
                "PATH": "/usr/bin:/bin",
                "OFFLOAD_BROKER_URL": identity.url,
                "OFFLOAD_BROKER_PREFIX": rabbit.prefix,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )

    allowed = check(rabbit_ids["publisher"], "publish")
    refused = check(rabbit_ids["publisher"], "consume")
    nonsense = check(rabbit_ids["publisher"], "administer")

    assert (allowed.returncode, allowed.stdout.strip()) == (0, "ok: this identity can publish")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: RabbitMQ at ")
    assert "refused to let this identity consume" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert rabbit_ids["publisher"].password not in refused.stderr
    assert nonsense.returncode == 2


async def test_the_redis_broker_runs_under_the_acl_users_it_was_given(
    redis_ids: tuple[str, dict[str, Identity]], sqlite_url: str
) -> None:
    """REDIS_COMMANDS is what RedisBroker sends: publish as the publisher, take and settle as
    the consumer; the publisher cannot take."""
    from offload.broker import open_broker
    from offload.store import open_store

    prefix, ids = redis_ids
    store: Store = open_store(sqlite_url)
    await store.connect()
    await store.migrate()
    publisher = open_broker(ids["publisher"].url, prefix=prefix)
    consumer = open_broker(f"{ids['consumer'].url}?claim_idle=0.5", prefix=prefix)
    await publisher.connect()
    await consumer.connect()
    try:
        job = await insert(store)
        await publisher.publish([Message.of(job)])
        assert await publisher.backlog("default") == 1

        def taking(broker: Any) -> Any:
            return broker.consumer(
                store, types=["test.job"], queues=None, worker_id="w", lease_seconds=30, capacity=5
            )

        from redis.exceptions import NoPermissionError

        with pytest.raises((NoPermissionError, BrokerAccessDenied)):
            await taking(publisher).take(1, 0.1)
        worker = taking(consumer)
        taken = []
        for _ in range(50):
            taken += await worker.take(1, 0.1)
            if taken:
                break
        await worker.settle([j.id for j in taken])
        await worker.close()
        assert [j.id for j in taken] == [job.id]
        assert await consumer.backlog("default") == 0
    finally:
        await publisher.close()
        await consumer.close()
        await store.close()
