"""Settings from ``OFFLOAD_*`` environment variables, read once into a frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DATABASE_URL = "sqlite:///offload.db"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    lease_seconds: float = 30.0
    """How long a claimed job stays owned without a heartbeat."""
    idempotency_ttl_seconds: float = 24 * 3600.0
    reap_interval: float = 1.0
    """How often each worker looks for expired leases and due delayed jobs."""
    poll_interval: float = 0.05
    """Idle wait between claims when the store has no push wake-ups (SQLite)."""
    cancel_grace: float = 10.0
    """After a cancel request, an async handler that has not stopped is cancelled."""
    broker_url: str | None = None
    """None: the store's own table queue; ``redis://…`` Redis Streams; ``amqp://…`` RabbitMQ."""
    broker_prefix: str = "offload"
    """Namespace of every key, stream or queue a broker creates (one per deployment)."""
    events_url: str | None = None
    """The event bus (SSE, WebSocket, webhooks): None uses the store (PostgreSQL NOTIFY, or
    reading the log on SQLite); ``redis://…`` Redis pub/sub on ``<broker_prefix>:events``."""
    reconcile_interval: float = 10.0
    """How often the reconciler republishes jobs the store holds but the broker lost."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if "OFFLOAD_DATABASE_URL" in env:
            values["database_url"] = env["OFFLOAD_DATABASE_URL"]
        if env.get("OFFLOAD_BROKER_URL"):
            values["broker_url"] = env["OFFLOAD_BROKER_URL"]
        if env.get("OFFLOAD_EVENTS_URL"):
            values["events_url"] = env["OFFLOAD_EVENTS_URL"]
        if env.get("OFFLOAD_BROKER_PREFIX"):
            values["broker_prefix"] = env["OFFLOAD_BROKER_PREFIX"]
        for name, var in [
            ("lease_seconds", "OFFLOAD_LEASE_SECONDS"),
            ("idempotency_ttl_seconds", "OFFLOAD_IDEMPOTENCY_TTL"),
            ("reap_interval", "OFFLOAD_REAP_INTERVAL"),
            ("poll_interval", "OFFLOAD_POLL_INTERVAL"),
            ("cancel_grace", "OFFLOAD_CANCEL_GRACE"),
            ("reconcile_interval", "OFFLOAD_RECONCILE_INTERVAL"),
        ]:
            if var in env:
                try:
                    values[name] = float(env[var])
                except ValueError:
                    raise ValueError(f"{var} must be a number, got {env[var]!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.lease_seconds <= 0:
            raise ValueError("OFFLOAD_LEASE_SECONDS must be > 0")
        if settings.reconcile_interval <= 0:
            raise ValueError("OFFLOAD_RECONCILE_INTERVAL must be > 0")
        return settings


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, safe for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
