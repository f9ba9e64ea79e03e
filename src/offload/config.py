"""Settings from ``OFFLOAD_*`` environment variables, read once into a frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    events_sweep_interval: float = 5.0
    """How often each API process re-reads the event log besides the bus's wake-ups: the most
    a lost announcement (a writer killed between its commit and its NOTIFY) delays a stream."""
    reconcile_interval: float = 10.0
    """How often the reconciler republishes jobs the store holds but the broker lost."""
    webhook_allowed_hosts: str = ""
    """Webhook targets allowed despite the SSRF guard: host names, addresses or CIDR ranges,
    comma-separated (``OFFLOAD_WEBHOOK_ALLOWED_HOSTS``)."""
    webhook_retry_window: float = 24 * 3600.0
    """How long a failing delivery (webhook or email) is retried before it is given up."""
    webhook_backoff_base: float = 5.0
    """Backoff between delivery attempts: full jitter in [0, base * 2**(n-1)], capped."""
    webhook_backoff_max: float = 3600.0
    webhook_timeout: float = 10.0
    """Seconds for one delivery request (connect, send and answer) or one SMTP exchange."""
    dispatch: bool = True
    """Run the webhook/email dispatcher inside every worker process (``OFFLOAD_DISPATCH=0``
    turns it off, e.g. when ``offload dispatch`` runs on its own)."""
    dispatch_interval: float = 0.5
    """How often the dispatcher reads the event feed and looks for due deliveries."""
    smtp_url: str | None = field(default=None, repr=False)
    """``smtp://user:pass@host:port?from=…&starttls=true`` (or ``smtps://``); kept out of
    repr so the password never reaches a log."""

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
            ("events_sweep_interval", "OFFLOAD_EVENTS_SWEEP_INTERVAL"),
            ("webhook_retry_window", "OFFLOAD_WEBHOOK_RETRY_WINDOW"),
            ("webhook_backoff_base", "OFFLOAD_WEBHOOK_BACKOFF_BASE"),
            ("webhook_backoff_max", "OFFLOAD_WEBHOOK_BACKOFF_MAX"),
            ("webhook_timeout", "OFFLOAD_WEBHOOK_TIMEOUT"),
            ("dispatch_interval", "OFFLOAD_DISPATCH_INTERVAL"),
        ]:
            if var in env:
                try:
                    values[name] = float(env[var])
                except ValueError:
                    raise ValueError(f"{var} must be a number, got {env[var]!r}") from None
        for name, var in [
            ("webhook_allowed_hosts", "OFFLOAD_WEBHOOK_ALLOWED_HOSTS"),
            ("smtp_url", "OFFLOAD_SMTP_URL"),
        ]:
            if env.get(var):
                values[name] = env[var]
        if "OFFLOAD_DISPATCH" in env:
            values["dispatch"] = env["OFFLOAD_DISPATCH"].strip().lower() not in ("0", "false", "no")
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.lease_seconds <= 0:
            raise ValueError("OFFLOAD_LEASE_SECONDS must be > 0")
        if settings.webhook_allowed_hosts or settings.smtp_url:
            _check_notify_settings(settings)
        if settings.reconcile_interval <= 0:
            raise ValueError("OFFLOAD_RECONCILE_INTERVAL must be > 0")
        if settings.events_sweep_interval <= 0:
            raise ValueError("OFFLOAD_EVENTS_SWEEP_INTERVAL must be > 0")
        return settings


def _check_notify_settings(settings: Settings) -> None:
    """A malformed allow-list or SMTP URL is an error at start-up, not at the first delivery.
    (Imported here only when set: the lean processes never load the notify modules.)"""
    from .notify.mail import SmtpSettings
    from .notify.ssrf import AllowList

    AllowList.parse(settings.webhook_allowed_hosts)
    if settings.smtp_url:
        try:
            SmtpSettings.parse(settings.smtp_url)
        except ValueError as exc:  # the message names the variable, never the password
            raise ValueError(str(exc)) from None


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
