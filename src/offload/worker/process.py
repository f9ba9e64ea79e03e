"""Run one worker process until SIGTERM/SIGINT: the first drains within the grace period,
a second one stops at once (running jobs are handed back)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from ..errors import BrokerAccessDenied, OffloadError
from ..loader import AppNotFound, load_app
from ..runtime import freeze_startup_objects
from .worker import Worker

log = logging.getLogger("offload.worker")


def run_worker_process(
    app_spec: str,
    *,
    queues: Sequence[str] | None,
    concurrency: int,
    prefetch: int = 0,
    grace: float,
) -> int:
    try:
        app = load_app(app_spec)
    except AppNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        worker = Worker(app, queues=queues, concurrency=concurrency, prefetch=prefetch, grace=grace)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    freeze_startup_objects()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            worker.stop(now=signals > 1)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            await worker.run()
        finally:
            await app.close()

    try:
        asyncio.run(main())
    except BrokerAccessDenied as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2  # like a usage error: restarting cannot help, the supervisor stops
    except OffloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if any(t.name.startswith("offload-job") and t.is_alive() for t in threading.enumerate()):
        # A sync handler is still running in a thread that cannot be interrupted; its job was
        # handed back already. Leave without waiting for it.
        logging.shutdown()
        os._exit(0)
    return 0
