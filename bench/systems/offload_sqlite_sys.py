"""offload on embedded SQLite (WAL), the zero-setup default; same worker configuration as
``offload`` (2 processes x 10 async, prefetch 90). There is no raw SQLite reference, so its
``×raw`` column is empty; idle workers poll every ``OFFLOAD_POLL_INTERVAL`` (default 50 ms)
because SQLite has no push notifications."""

from __future__ import annotations

import os
from typing import ClassVar

from bench.systems.base import BenchEnv
from bench.systems.offload_sys import CONCURRENCY, PREFETCH, OffloadSystem


class OffloadSQLiteSystem(OffloadSystem):
    name = "offload-sqlite"
    backend = "sqlite"  # type: ignore[assignment]
    config = f"2 processes x {CONCURRENCY} async, prefetch {PREFETCH}, SQLite WAL"
    database: ClassVar[str] = "sqlite"

    @classmethod
    def database_url(cls, env: BenchEnv) -> str:
        return f"sqlite:///{os.path.join(env.workdir, 'offload.db')}"
