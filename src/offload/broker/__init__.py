"""Brokers: how job ids reach workers. :func:`open_broker` picks one from a URL.

The store stays the truth; see :mod:`offload.broker.base` for the contract.
"""

from __future__ import annotations

import importlib

from .base import Broker, BrokerUnavailable, Consumer, Delivery, Message, MessageConsumer

BROKERS: dict[str, str] = {
    "table": "offload.broker.table:TableBroker",
    "redis": "offload.broker.redis:RedisBroker",
    "rediss": "offload.broker.redis:RedisBroker",
    "amqp": "offload.broker.rabbitmq:RabbitBroker",
    "amqps": "offload.broker.rabbitmq:RabbitBroker",
}
"""URL scheme → ``module:Class``, imported only when used (a worker on the table queue never
loads a Redis or AMQP client)."""


def carries_messages(url: str | None) -> bool:
    """Whether ``url`` names a message broker (which needs the outbox), not the table queue."""
    return bool(url) and url != "table" and not url.startswith("table:")  # type: ignore[union-attr]


def open_broker(url: str | None, *, prefix: str = "offload") -> Broker:
    """A (not yet connected) broker: None or ``table:`` for the store's table queue,
    ``redis://…`` for Redis Streams, ``amqp://…`` for RabbitMQ. ``prefix`` namespaces every
    key, stream or queue name the broker creates (one per deployment, or per test run)."""
    if not carries_messages(url):
        from .table import TableBroker

        return TableBroker()
    assert url is not None
    scheme = url.split(":", 1)[0].lower()
    target = BROKERS.get(scheme)
    if target is None:
        raise ValueError(
            f"unsupported broker URL scheme {scheme!r}: leave OFFLOAD_BROKER_URL unset for the "
            "table queue, or use redis://… or amqp://…"
        )
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(url, prefix=prefix)  # type: ignore[no-any-return]


__all__ = [
    "BROKERS",
    "Broker",
    "BrokerUnavailable",
    "Consumer",
    "Delivery",
    "Message",
    "MessageConsumer",
    "carries_messages",
    "open_broker",
]
