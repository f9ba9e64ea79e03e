"""offload's event streams (issue 4): how fast a finished job reaches an SSE client, and what
1,000 open streams cost one API process.

Run by ``bench.run`` after the HTTP scenarios, for offload only. A fresh PostgreSQL database
(``offload_bench_<run id>_events``), one ``offload serve --workers 1`` (one process: the one
that holds the connections) and ``offload worker --processes 2 --concurrency 20``. One repeat:

1. latency     - C client tasks, each in a loop: submit a job that sleeps 100 ms, open
                 ``GET /v1/jobs/{id}/events`` (httpx-sse) and read until the server ends the
                 stream. Latency = arrival of ``job.succeeded`` at the client minus the job's
                 ``finished_at`` (PostgreSQL's clock, the same host), over N jobs: p50/p99.
                 Path: the worker's finishing commit → its NOTIFY → the API's one LISTEN
                 connection → the stream's log read → the client. Meanwhile one
                 ``GET /v1/events?event=job.succeeded`` stream measures the same for the global
                 feed (which holds an event back while an older transaction is still open).
Each repeat starts on an emptied database with a new API process.

2. connections - workers stopped, K jobs submitted (they stay queued), K streams opened on
                 them (each gets its replayed ``job.queued``, then idles); the API's RSS before
                 and with all K open. Then the workers start: time until all K streams got
                 their job's end and were closed by the server.

Every process started here is on the harness's cleanup stack; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import infra
from bench.scenarios import percentile
from bench.served import ServedOffload, uvicorn_impl

APP = "bench.events_app:app"
JOB_TYPE = "bench.events.sleep"
WORKER_ARGS = ["--processes", "2", "--concurrency", "20", "--grace", "1"]


@dataclass(frozen=True)
class EventSizes:
    jobs: int  # jobs whose completion latency is measured
    clients: int  # concurrent client tasks (each: submit, stream, repeat)
    connections: int  # streams held open at once


EVENTS_QUICK = EventSizes(jobs=200, clients=10, connections=1000)
EVENTS_FULL = EventSizes(jobs=500, clients=10, connections=1000)

#: metric -> (label, unit, higher_is_better, target or "")
EVENT_METRICS: dict[str, tuple[str, str, bool, str]] = {
    "sse_p50": ("job finished → SSE client, p50 (GET /v1/jobs/{id}/events)", "ms", False, "≤ 10"),
    "sse_p99": ("job finished → SSE client, p99", "ms", False, "≤ 50"),
    "feed_p50": ("job finished → SSE client, p50 (GET /v1/events)", "ms", False, ""),
    "feed_p99": ("job finished → SSE client, p99 (GET /v1/events)", "ms", False, ""),
    "feed_missed": ("  events missing from GET /v1/events", "events", False, "0"),
    "api_cpu_job": ("  API CPU per job (submit + its stream), user+sys", "ms", False, ""),
    "held": ("SSE connections held by one API process", "connections", True, "1,000"),
    "rss_before": ("  API RSS before opening them", "MB", False, ""),
    "rss_held": ("  API RSS with all of them open", "MB", False, ""),
    "rss_per_conn": ("  RSS per open stream", "KB", False, ""),
    "fanout_done": ("  workers started → all streams ended", "s", False, ""),
}


@dataclass
class EventsResult:
    status: str = "ok"  # ok | failed | skipped
    reason: str = ""
    config: str = ""
    values: dict[str, list[float]] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=dict)

    def add(self, metric: str, value: float) -> None:
        self.values.setdefault(metric, []).append(value)


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


class EventsBench(ServedOffload):
    def __init__(self, run_id: str, workdir: str, sizes: EventSizes) -> None:
        self.sizes = sizes
        self.db_handle = infra.PgDatabase(f"{run_id}_events")
        super().__init__(
            APP,
            WORKER_ARGS,
            os.path.join(workdir, "events"),
            {
                "OFFLOAD_DATABASE_URL": self.db_handle.url,
                "BENCH_EVENTS_QUEUE": f"bench_{run_id}_events",
            },
        )
        self.key = ""

    def start(self) -> None:
        self.key = self.prepare()

    def _client(self, connections: int = 100) -> Any:
        import httpx

        return httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=httpx.Timeout(30, read=60),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    # -- 1. latency -------------------------------------------------------------------------
    async def latency(self, result: EventsResult) -> None:
        from httpx_sse import aconnect_sse

        sz = self.sizes
        per_job: list[float] = []
        finished: dict[str, float] = {}
        feed_arrivals: dict[str, float] = {}
        feed_open = asyncio.Event()

        async def feed(client: Any) -> None:
            async with aconnect_sse(client, "GET", "/v1/events?event=job.succeeded") as source:
                feed_open.set()
                async for sse in source.aiter_sse():
                    if sse.data:
                        feed_arrivals[sse.json()["id"]] = time.time()

        async def one_client(client: Any, count: int) -> None:
            for _ in range(count):
                r = await client.post("/v1/jobs", json={"type": JOB_TYPE, "input": {"ms": 100}})
                if r.status_code != 202:
                    raise RuntimeError(f"submit answered {r.status_code}: {r.text[:200]}")
                job_id = r.json()["id"]
                path = f"/v1/jobs/{job_id}/events"
                async with aconnect_sse(client, "GET", path) as source:
                    async for sse in source.aiter_sse():
                        if sse.event == "job.succeeded":
                            arrived = time.time()
                            done = _ts(sse.json()["finished_at"])
                            finished[job_id] = done
                            per_job.append((arrived - done) * 1000)

        async with self._client(sz.clients * 2 + 10) as client:
            feed_task = asyncio.create_task(feed(client))
            await asyncio.wait_for(feed_open.wait(), 30)
            counts = [sz.jobs // sz.clients] * sz.clients
            cpu0 = self.api_cpu_s()
            await asyncio.wait_for(asyncio.gather(*(one_client(client, n) for n in counts)), 300)
            result.add("api_cpu_job", (self.api_cpu_s() - cpu0) * 1000 / max(len(per_job), 1))
            end = time.monotonic() + 10  # the feed may trail by a little: give it a moment
            while set(finished) - set(feed_arrivals) and time.monotonic() < end:
                await asyncio.sleep(0.05)
            feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed_task
        per_job.sort()
        result.add("sse_p50", percentile(per_job, 50))
        result.add("sse_p99", percentile(per_job, 99))
        feed = sorted(
            (feed_arrivals[j] - t) * 1000 for j, t in finished.items() if j in feed_arrivals
        )
        if feed:
            result.add("feed_p50", percentile(feed, 50))
            result.add("feed_p99", percentile(feed, 99))
        result.add("feed_missed", len(finished) - len(feed))

    # -- 2. many connections ----------------------------------------------------------------
    async def connections(self, result: EventsResult) -> None:
        from httpx_sse import aconnect_sse

        k = self.sizes.connections
        self.stop_workers()
        async with self._client(50) as client:
            ids = []
            for _ in range(k):
                r = await client.post("/v1/jobs", json={"type": JOB_TYPE, "input": {"ms": 0}})
                ids.append(r.json()["id"])
        rss_before = self.api_rss_mb()
        opened = 0
        all_open = asyncio.Event()
        ended: list[float] = []

        async def hold(client: Any, job_id: str) -> None:
            nonlocal opened
            async with aconnect_sse(client, "GET", f"/v1/jobs/{job_id}/events") as source:
                async for sse in source.aiter_sse():
                    if sse.event == "job.queued":
                        opened += 1
                        if opened == k:
                            all_open.set()
            ended.append(time.monotonic())

        async with self._client(k + 10) as client:
            tasks = [asyncio.create_task(hold(client, job_id)) for job_id in ids]
            try:
                await asyncio.wait_for(all_open.wait(), 120)
                await asyncio.sleep(1.0)  # let the server settle (buffers, GC) before measuring
                result.add("held", opened)
                rss_held = self.api_rss_mb()
                result.add("rss_before", rss_before)
                result.add("rss_held", rss_held)
                result.add("rss_per_conn", (rss_held - rss_before) * 1024 / k)
                started = time.monotonic()
                self.start_workers()
                await asyncio.wait_for(asyncio.gather(*tasks), 180)
                result.add("fanout_done", max(ended) - started)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def fresh(self) -> None:
        """Each repeat on an empty database and a new API process (RSS from its start)."""
        import psycopg

        self.stop()
        with psycopg.connect(self.db_handle.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute("TRUNCATE offload_jobs, offload_job_events")
        self.start_server(1)
        self.start_workers()

    def repeat(self, result: EventsResult) -> None:
        self.fresh()
        asyncio.run(self.latency(result))
        asyncio.run(self.connections(result))


def run_events(
    run_id: str, workdir: str, quick: bool, repeat: int, log: Callable[[str], None]
) -> EventsResult:
    """The event-stream scenarios, ``repeat`` times; never raises."""
    sizes = EVENTS_QUICK if quick else EVENTS_FULL
    result = EventsResult(
        config=f"offload serve --workers 1 ({uvicorn_impl()}); PostgreSQL, bus = NOTIFY; "
        f"offload worker {' '.join(WORKER_ARGS[:4])}; {sizes.clients} client tasks",
        sizes=asdict(sizes),
    )
    bench: EventsBench | None = None
    try:
        bench = EventsBench(run_id, workdir, sizes)
        infra.CLEANUP.push("events bench processes", bench.stop)
        log(f"[bold]offload event streams[/bold] ({result.config})")
        bench.start()
        for rep in range(repeat):
            bench.repeat(result)
            p50, p99 = result.values["sse_p50"][-1], result.values["sse_p99"][-1]
            log(
                f"events #{rep + 1}: finished → SSE p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
                f"{result.values['held'][-1]:.0f} streams, RSS "
                f"{result.values['rss_held'][-1]:.0f} MB"
            )
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        result.status = "failed"
        result.reason = f"{type(exc).__name__}: {exc}".strip()[:400]
        log(f"[red]events failed:[/red] {result.reason}")
    finally:
        if bench is not None:
            bench.stop()
    return result


# -- output ---------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _rows(result: EventsResult) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for metric, (label, unit, higher, target) in EVENT_METRICS.items():
        values = result.values.get(metric)
        if not values:
            continue
        fmt = (lambda v: f"{v:,.0f}") if unit in ("events", "connections") else _fmt
        med = fmt(statistics.median(values))
        spread = f"{fmt(min(values))}–{fmt(max(values))}" if len(values) > 1 else ""
        rows.append((label, med, spread, f"{unit} {'↑' if higher else '↓'}", target))
    return rows


FOOTNOTE = (
    "Latency from the job's finished_at (PostgreSQL's clock, set in the worker's finishing "
    "statement) to the event parsed by an httpx-sse client; the clients, the API, the workers "
    "and PostgreSQL share the 2 cores."
)


def print_table(result: EventsResult, title: str) -> None:
    console = Console(width=max(Console().width, 120))
    table = Table(title=f"offload event streams — {title}", title_justify="left")
    for name, justify in (
        ("metric", "left"),
        ("median", "right"),
        ("min–max", "right"),
        ("unit", "left"),
        ("target", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in _rows(result):
        table.add_row(*row)
    console.print(table)
    console.print(f"[dim]{result.config}[/dim]")
    if result.status != "ok":
        reason = result.reason.replace("[", r"\[")
        console.print(f"[red]{result.status}: {reason}[/red]")
    console.print(f"[dim]{FOOTNOTE}[/dim]")


def markdown_table(result: EventsResult) -> str:
    lines = [
        "### offload event streams",
        "",
        f"{result.config}.",
        "",
        "| metric | median | min–max | unit | target |",
        "|---|---:|---:|---|---:|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(result)]
    if result.status != "ok":
        lines += ["", f"**{result.status}**: {result.reason}"]
    lines += ["", FOOTNOTE]
    return "\n".join(lines) + "\n"


def to_json(result: EventsResult) -> dict[str, Any]:
    entry = asdict(result)
    entry["summary"] = {
        m: {"median": statistics.median(v), "min": min(v), "max": max(v)}
        for m, v in result.values.items()
        if v
    }
    return entry
