"""Choosing a broker from OFFLOAD_BROKER_URL, and the errors a wrong one gets."""

from __future__ import annotations

import pytest

from offload import BrokerUnavailable, Settings
from offload.broker import carries_messages, open_broker
from offload.broker.redis import RedisBroker
from offload.broker.table import TableBroker


@pytest.mark.parametrize("url", [None, "", "table", "table:"])
def test_no_broker_url_means_the_table_queue(url: str | None):
    assert isinstance(open_broker(url), TableBroker)
    assert carries_messages(url) is False


def test_a_redis_url_opens_redis_streams_with_its_own_parameters_taken_out():
    broker = open_broker("redis://127.0.0.1:6379/2?claim_idle=2.5", prefix="p")

    assert isinstance(broker, RedisBroker)
    assert broker.claim_idle == 2.5
    assert broker.stream("reports") == "p:q:reports"
    assert carries_messages(broker.url) is True


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_a_bad_claim_idle_is_refused_clearly(value: str):
    with pytest.raises(ValueError, match="claim_idle"):
        open_broker(f"redis://127.0.0.1:6379/0?claim_idle={value}")


def test_an_unknown_scheme_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"unsupported broker URL scheme 'kafka'.*redis://"):
        open_broker("kafka://127.0.0.1:9092")


async def test_an_unreachable_redis_is_reported_without_its_password():
    broker = open_broker("redis://user:secret@127.0.0.1:1/0")

    with pytest.raises(BrokerUnavailable, match=r"cannot connect to Redis") as caught:
        await broker.connect()
    assert "secret" not in str(caught.value)


def test_settings_read_the_broker_from_the_environment():
    settings = Settings.from_env(
        {
            "OFFLOAD_BROKER_URL": "redis://127.0.0.1:6379/0",
            "OFFLOAD_BROKER_PREFIX": "prod",
            "OFFLOAD_RECONCILE_INTERVAL": "3",
        }
    )

    assert (settings.broker_url, settings.broker_prefix, settings.reconcile_interval) == (
        "redis://127.0.0.1:6379/0",
        "prod",
        3.0,
    )
    with pytest.raises(ValueError, match="OFFLOAD_RECONCILE_INTERVAL"):
        Settings.from_env({"OFFLOAD_RECONCILE_INTERVAL": "0"})
