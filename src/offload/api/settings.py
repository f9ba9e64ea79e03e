"""The HTTP API's own settings, from ``OFFLOAD_API_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """How the API admits work. Every limit can be turned off with 0.

    >>> create_app(app, ApiSettings(rate_limit=50, queue_limit=10_000))
    """

    max_body_bytes: int = 1_048_576
    """Request bodies above this get 413 (``OFFLOAD_API_MAX_BODY_BYTES``)."""
    rate_limit: float = 200.0
    """Requests per second per API key, sustained; past it 429 (``OFFLOAD_API_RATE_LIMIT``)."""
    rate_burst: int = 400
    """Requests a key may send at once before the sustained rate applies."""
    queue_limit: int = 100_000
    """Waiting jobs per queue; past it submits get 503 and nothing is written."""
    queue_depth_cache_seconds: float = 0.5
    """How long a queue's depth is reused between checks (this process's own submits are
    counted in between), so admission costs no query per submit."""
    max_wait_seconds: float = 60.0
    """The server's cap on ``Prefer: wait=N``."""
    wait_poll_interval: float = 0.05
    """How often a held request (``Prefer: wait``) re-reads its job."""
    retry_after_seconds: int = 1
    """``Retry-After`` on 202 and on reads of unfinished jobs."""
    key_cache_seconds: float = 5.0
    """How long an API key lookup is reused: a key revoked from another process stops working
    within this time (at once when revoked through this process)."""
    page_size: int = 50
    events_heartbeat_seconds: float = 15.0
    """Idle event streams (SSE, WebSocket) send a heartbeat this often, so proxies keep them
    open. An idle stream reads nothing: the process's hub re-reads the log for all of them
    (``OFFLOAD_EVENTS_SWEEP_INTERVAL``)."""
    events_retry_ms: int = 2000
    """The SSE ``retry:`` field: how long a disconnected browser waits before reconnecting."""
    public_url: str | None = None
    """Base of the absolute URLs in ``Location`` (default: from the request's Host)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ApiSettings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            var = f"OFFLOAD_API_{f.name.upper()}"
            if var not in env:
                continue
            raw = env[var]
            if f.name == "public_url":
                values[f.name] = raw.rstrip("/") or None
                continue
            kind = int if f.type in ("int", int) else float
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ValueError(f"{var} must be a number, got {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
