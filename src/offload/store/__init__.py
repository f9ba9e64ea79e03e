"""Stores: where jobs live. :func:`open_store` picks one from a database URL."""

from __future__ import annotations

from .base import (
    ApiKey,
    EventFilter,
    FeedEvent,
    FeedPage,
    HeartbeatResult,
    JobFilter,
    Lease,
    NewJob,
    OutboxEntry,
    Outcome,
    QueueInfo,
    Store,
)


def open_store(url: str) -> Store:
    """A (not yet connected) store for ``sqlite:///…`` or ``postgresql://…``."""
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql:", "postgres:", "postgresql+asyncpg:")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    scheme = url.split(":", 1)[0]
    raise ValueError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///path.db or postgresql://…"
    )


__all__ = [
    "ApiKey",
    "EventFilter",
    "FeedEvent",
    "FeedPage",
    "HeartbeatResult",
    "JobFilter",
    "Lease",
    "NewJob",
    "OutboxEntry",
    "Outcome",
    "QueueInfo",
    "Store",
    "open_store",
]
