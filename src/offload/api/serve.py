"""``offload serve``: uvicorn with one or more processes.

With ``--workers N`` uvicorn starts N processes that each build the app from the environment
(:func:`app_from_env`, an app factory), because an already built app cannot cross a process
boundary. uvloop and httptools are used when installed (they are, with ``uvicorn[standard]``):
they cut the server's own cost per request by about half.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from fastapi import FastAPI

from ..events.bus import end_all_streams
from ..loader import load_app
from ..runtime import freeze_startup_objects
from .app import create_app


def app_from_env() -> FastAPI:
    """The API for ``OFFLOAD_APP`` (MODULE:ATTR); uvicorn calls this in each process."""
    inline = int(os.environ.get("OFFLOAD_INLINE_WORKERS", "0"))
    api = create_app(load_app(os.environ["OFFLOAD_APP"]), inline_workers=inline)
    _end_streams_on_stop()
    freeze_startup_objects()
    return api


def _end_streams_on_stop() -> None:
    """uvicorn stops only when every response has finished, and an event stream never does:
    on SIGINT/SIGTERM end them first, then run uvicorn's own handler (installed before the
    app is built, in this same process)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            end_all_streams()
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, handler)


def serve(
    app_spec: str, *, host: str, port: int, workers: int, inline_workers: int, log_level: str
) -> None:
    import uvicorn

    os.environ["OFFLOAD_APP"] = app_spec
    os.environ["OFFLOAD_INLINE_WORKERS"] = str(inline_workers)
    uvicorn.run(
        "offload.api.serve:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level.lower(),
        proxy_headers=True,
    )
