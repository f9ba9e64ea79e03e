"""raw_rabbitmq with ``prefetch_count = 100``: the same AMQP prefetch as ``offload-rabbitmq``
(concurrency 10 + prefetch 90 per worker), so the two differ only in what offload adds."""

from __future__ import annotations

from typing import ClassVar

from bench.systems.raw_rabbitmq import RawRabbitMqSystem


class RawRabbitMqP100System(RawRabbitMqSystem):
    name = "raw_rabbitmq_p100"
    config = "2 processes, quorum queue, prefetch 100, manual acks, confirms"
    prefetch: ClassVar[int] = 100
