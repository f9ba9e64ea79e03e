"""A small asyncio HTTP/1.1 load client for ``bench.http``: keep-alive connections, one request
in flight per connection, per-request latency.

Why not httpx: its connection pool costs CPU per *queued* request, so with thousands of
requests waiting for a connection (an open-loop run that falls behind, a burst) the client,
not the server, set the pace on this 2-core machine. Here a request is one ``write`` of
pre-encoded bytes and one parse of the status line and ``Content-Length``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

#: status recorded for a transport error (connection refused/reset, timeout, bad response)
TRANSPORT_ERROR = -1
#: status recorded for an open-loop request that waited ``timeout`` for a free connection and
#: was given up unsent (bounds the run when the server is far slower than the offered rate)
GIVEN_UP = -2


@dataclass
class LoadRun:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    first_send: float = 0.0  # time.monotonic() of the first (scheduled) send
    send_seconds: float = 0.0  # first to last send
    warm_ok: int = 0  # accepted warm-up requests (not measured)

    def ok(self, status: int) -> int:
        return self.statuses.get(status, 0)

    def errors(self, status: int) -> int:
        return sum(v for k, v in self.statuses.items() if k != status)


def encode_request(method: str, path: str, host: str, headers: dict[str, str], body: str) -> bytes:
    data = body.encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(data)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes, timeout: float) -> int:
        """Send one request, read the whole answer; returns the status. Reconnects as needed."""
        try:
            async with asyncio.timeout(timeout):
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                assert self.reader is not None
                self.writer.write(raw)
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                close = False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                    elif name == b"transfer-encoding":
                        raise ValueError("chunked answers are not supported")
                if length:
                    await self.reader.readexactly(length)
                if close:
                    self.close()
                return status
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
            self.close()
            return TRANSPORT_ERROR

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _warm(conns: list[Connection], raw: bytes, ok_status: int, timeout: float) -> int:
    """One request on every connection: opens them and warms the server (not measured)."""
    statuses = await asyncio.gather(*(c.request(raw, timeout) for c in conns))
    return sum(1 for s in statuses if s == ok_status)


async def open_loop(
    host: str,
    port: int,
    raw: bytes,
    rate: float,
    n: int,
    connections: int,
    ok_status: int,
    timeout: float = 10.0,
) -> LoadRun:
    """n requests at a fixed rate (wrk2's model): request i is due at start + i/rate and waits
    for a free connection if all are busy; its latency is counted from when it was due, so a
    server that stalls is not flattered (no coordinated omission)."""
    conns = [Connection(host, port) for _ in range(connections)]
    run = LoadRun()
    try:
        run.warm_ok = await _warm(conns, raw, ok_status, timeout)
        due: asyncio.Queue[float | None] = asyncio.Queue()

        async def worker(conn: Connection) -> None:
            while (scheduled := await due.get()) is not None:
                if time.perf_counter() - scheduled > timeout:
                    status = GIVEN_UP
                else:
                    status = await conn.request(raw, timeout)
                run.statuses[status] += 1
                run.latencies_ms.append((time.perf_counter() - scheduled) * 1000)

        tasks = [asyncio.create_task(worker(c)) for c in conns]
        start = time.perf_counter()
        run.first_send = time.monotonic()
        for i in range(n):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            due.put_nowait(scheduled)
        run.send_seconds = time.perf_counter() - start
        for _ in conns:
            due.put_nowait(None)
        await asyncio.gather(*tasks)
    finally:
        for c in conns:
            c.close()
    return run


async def closed_loop(
    host: str,
    port: int,
    raw: bytes,
    n: int,
    connections: int,
    ok_status: int,
    timeout: float = 10.0,
) -> LoadRun:
    """n requests over ``connections`` connections, each sending its next request as soon as
    the previous answer arrived (as fast as the server lets the client go)."""
    conns = [Connection(host, port) for _ in range(connections)]
    run = LoadRun()
    try:
        run.warm_ok = await _warm(conns, raw, ok_status, timeout)
        remaining = n

        async def worker(conn: Connection) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                status = await conn.request(raw, timeout)
                run.statuses[status] += 1
                run.latencies_ms.append((time.perf_counter() - t0) * 1000)

        start = time.perf_counter()
        run.first_send = time.monotonic()
        await asyncio.gather(*(worker(c) for c in conns))
        run.send_seconds = time.perf_counter() - start
    finally:
        for c in conns:
            c.close()
    return run
