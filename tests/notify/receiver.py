"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 in a thread of its own that
records every request and answers from a script (default 200)."""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from dataclasses import dataclass

from standardwebhooks import Webhook


@dataclass(frozen=True)
class Received:
    at: float
    """time.monotonic() on arrival."""
    path: str
    headers: dict[str, str]
    body: bytes

    def verify(self, secret: str) -> dict:
        """What a receiver does: check the Standard Webhooks signature, parse the body."""
        return Webhook(secret).verify(self.body, self.headers)  # type: ignore[no-any-return]


class Receiver:
    """``with Receiver() as r: … r.url …``; ``r.script`` answers in order, then 200."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Received] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.hold: threading.Event | None = None
        """When set to an Event, each request waits for it (at most 30 s) before answering:
        a slow endpoint."""
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.requests.append(
                        Received(
                            time.monotonic(),
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                    status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                    hold = receiver.hold
                if hold is not None:
                    hold.wait(30)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self) -> int:
        with self._lock:
            return len(self.requests)
