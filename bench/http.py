"""offload over HTTP (issues 3 and 6): the API's submit and read paths under load, and a burst.

Run by ``bench.run`` after the queue scenarios, for offload only (the peers have no HTTP API).
Everything runs against a fresh PostgreSQL database of its own (``offload_bench_<run id>_http``,
dropped at the end) and ``offload serve --app bench.http_app:app --workers 2`` (two uvicorn
processes, one per core; uvloop and httptools, which ``uvicorn[standard]`` installs). The
per-key rate limit is turned off (``OFFLOAD_API_RATE_LIMIT=0``; its default of 200 requests/s
would be what we measure) and access logs are off (``--log-level warning``). One repeat:

1. submit_max   - ``wrk -t2 -c<C> -d<D>`` POSTing ``{"type": "bench.noop", "input": {"n": 1}}``
                  with a client key (Lua script). Accepted submits/s = 202 answers / duration;
                  every other status and every socket error is an error. No workers run.
2. submit_1k    - an open-loop generator (``bench.httpload``: asyncio, keep-alive connections;
                  ``wrk -R``/wrk2 is not available here) sends at a fixed 1,000 submits/s
                  over 100 connections; each latency is measured from the request's
                  *scheduled* send time, so a stalled server is not flattered (no coordinated
                  omission). p50/p99, and the rate actually sent. A request that waited 10 s
                  for a free connection is given up unsent and counted as an error.
3. read         - ``wrk`` GETting ``/v1/jobs/{id}`` round-robin over a pool of existing ids
                  (Lua script): 200 answers/s and wrk's p50/p99.
4. api_rss      - RSS of the serve process and its children after 1-3 (psutil).
5. burst        - with ``offload worker --processes 2 --concurrency 10 --prefetch 90`` running
                  and warm, N submits over HTTP as fast as the same client with 64 connections
                  can send them (closed loop); API latency p50/p99 during the burst and the
                  time from the first submit until no job is waiting or running and all
                  accepted jobs finished (read from the store; failed jobs count as errors).

Every process started here is on the harness's cleanup stack; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import infra
from bench.httpload import LoadRun, closed_loop, encode_request, open_loop
from bench.scenarios import Deadline, deadline, percentile
from bench.served import ServedOffload, uvicorn_impl

APP = "bench.http_app:app"
JOB_TYPE = "bench.noop"
SUBMIT_BODY = json.dumps({"type": JOB_TYPE, "input": {"n": 1}})
WRK_THREADS = 2
API_WORKERS = 2
WORKER_ARGS = ["--processes", "2", "--concurrency", "10", "--prefetch", "90", "--grace", "1"]
OPEN_RATE = 1000.0
BACKLOG_STATES = ("scheduled", "queued", "running", "retrying")


@dataclass(frozen=True)
class HttpSizes:
    wrk_seconds: float  # duration of each wrk run (submit_max, read)
    wrk_connections: int
    open_seconds: float  # duration of the 1,000/s open-loop run
    open_connections: int
    read_pool: int  # job ids the read script cycles through
    burst: int  # submits in the burst
    burst_connections: int


HTTP_QUICK = HttpSizes(
    wrk_seconds=2,
    wrk_connections=50,
    open_seconds=2,
    open_connections=100,
    read_pool=1000,
    burst=2000,
    burst_connections=64,
)
HTTP_FULL = HttpSizes(
    wrk_seconds=10,
    wrk_connections=50,
    open_seconds=10,
    open_connections=100,
    read_pool=2000,
    burst=20_000,
    burst_connections=64,
)

#: metric -> (label, unit, higher_is_better, target or "")
HTTP_METRICS: dict[str, tuple[str, str, bool, str]] = {
    "submit_max": ("submits accepted (202), max, wrk", "submits/s", True, "≥ 2,000"),
    "submit_max_p50": ("  latency p50 at max, wrk", "ms", False, ""),
    "submit_max_p99": ("  latency p99 at max, wrk", "ms", False, ""),
    "submit_max_errors": ("  errors (non-202, socket)", "requests", False, "0"),
    "submit_cpu": ("  API CPU time per submit (user+sys)", "ms", False, ""),
    "submit_1k_p50": ("submit latency p50 at 1,000/s offered", "ms", False, ""),
    "submit_1k_p99": ("submit latency p99 at 1,000/s offered", "ms", False, "≤ 25"),
    "submit_1k_sent": ("  rate actually sent (open loop)", "submits/s", True, "1,000"),
    "submit_1k_errors": ("  errors (non-202, transport, unsent 10 s)", "requests", False, "0"),
    "read": ("status reads GET /v1/jobs/{id} (200), wrk", "reads/s", True, "≥ 5,000"),
    "read_p50": ("  read latency p50, wrk", "ms", False, ""),
    "read_p99": ("  read latency p99, wrk", "ms", False, ""),
    "read_errors": ("  errors (non-200, socket)", "requests", False, "0"),
    "read_cpu": ("  API CPU time per read (user+sys)", "ms", False, ""),
    "api_rss": ("API process RSS after the load", "MB", False, ""),
    "burst_rate": ("burst: submits accepted/s while 2 workers drain", "submits/s", True, ""),
    "burst_p50": ("burst: API latency p50", "ms", False, ""),
    "burst_p99": ("burst: API latency p99", "ms", False, ""),
    "burst_empty": ("burst: first submit → queue empty", "s", False, ""),
    "burst_errors": ("burst: errors (non-202, transport, failed jobs)", "requests", False, "0"),
}


@dataclass
class HttpResult:
    status: str = "ok"  # ok | failed | skipped
    reason: str = ""
    config: str = ""
    values: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # metric -> why it has no value
    sizes: dict[str, Any] = field(default_factory=dict)

    def add(self, metric: str, value: float) -> None:
        self.values.setdefault(metric, []).append(value)


# -- wrk ------------------------------------------------------------------------------------

# Per-status counts per thread, summed in done() (each wrk thread has its own Lua state;
# thread:get copies its globals out). One machine-readable line for the runner.
_LUA_COMMON = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("offset", #threads * 7919)
end
function init(args)
  counts = {}
  pos = offset or 0
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts") or {}
    for k, v in pairs(c) do agg[k] = (agg[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(agg) do parts[#parts + 1] = string.format('"%d": %.0f', k, v) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us": %.0f, "requests": %.0f, "statuses": {%s}, '
    .. '"socket_errors": {"connect": %.0f, "read": %.0f, "write": %.0f, "timeout": %.0f}, '
    .. '"p50_us": %.0f, "p99_us": %.0f}\n',
    summary.duration, summary.requests, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_post(key: str) -> str:
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(SUBMIT_BODY)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n' + _LUA_COMMON
    )


def _lua_reads(key: str, ids: list[str]) -> str:
    table = ",\n".join(f'"{i}"' for i in ids)
    return (
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        f"ids = {{\n{table}\n}}\n" + _LUA_COMMON + "function request()\n"
        "  pos = pos % #ids + 1\n"
        '  return wrk.format("GET", "/v1/jobs/" .. ids[pos])\n'
        "end\n"
    )


@dataclass
class WrkResult:
    ok_per_s: float
    ok: int
    errors: int
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]


def run_wrk(
    script: str, url: str, sizes: HttpSizes, workdir: str, ok_status: int, name: str
) -> WrkResult:
    path = os.path.join(workdir, f"{name}.lua")
    with open(path, "w") as f:
        f.write(script)
    argv = [
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{sizes.wrk_connections}",
        f"-d{sizes.wrk_seconds:g}s",
        "--timeout",
        "5s",
        "-s",
        path,
        url,
    ]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=sizes.wrk_seconds + 30, check=False
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-300:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    statuses = {str(k): int(v) for k, v in data["statuses"].items()}
    ok = statuses.get(str(ok_status), 0)
    errors = sum(v for k, v in statuses.items() if k != str(ok_status))
    errors += int(sum(data["socket_errors"].values()))
    return WrkResult(
        ok_per_s=ok / (data["duration_us"] / 1e6),
        ok=ok,
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        statuses=statuses,
    )


# -- the store (psycopg, straight to the database) --------------------------------------------


class Db:
    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)

    def clear(self) -> None:
        self.conn.execute("TRUNCATE offload_jobs, offload_job_events, offload_idempotency_keys")

    def job_ids(self, n: int) -> list[str]:
        rows = self.conn.execute("SELECT id FROM offload_jobs LIMIT %s", (n,)).fetchall()
        return [str(r[0]) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) FROM offload_jobs GROUP BY status")
        return {s: int(c) for s, c in rows.fetchall()}

    def close(self) -> None:
        self.conn.close()


# -- the runner -----------------------------------------------------------------------------


def _pct(run: LoadRun, q: float) -> float:
    return percentile(sorted(run.latencies_ms), q) if run.latencies_ms else float("nan")


class HttpBench(ServedOffload):
    def __init__(
        self,
        run_id: str,
        workdir: str,
        sizes: HttpSizes,
        log: Callable[[str], None],
    ) -> None:
        self.sizes = sizes
        self.log = log
        self.db_handle = infra.PgDatabase(f"{run_id}_http")
        self.pg_url = self.db_handle.url
        self.queue = f"bench_{run_id}_http"
        super().__init__(
            APP,
            WORKER_ARGS,
            os.path.join(workdir, "http"),
            {"OFFLOAD_DATABASE_URL": self.pg_url, "BENCH_HTTP_QUEUE": self.queue},
        )
        self.db: Db | None = None
        self.key = ""
        self.post_raw = b""

    def start(self) -> None:
        self.key = self.prepare()
        self.db = Db(self.pg_url)
        infra.CLEANUP.push("http bench db connection", self.db.close)
        self.post_raw = encode_request(
            "POST",
            "/v1/jobs",
            f"127.0.0.1:{self.port}",
            {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
            SUBMIT_BODY,
        )
        self.start_server(API_WORKERS)

    def stop(self) -> None:
        super().stop()
        if self.db is not None:
            self.db.close()
            self.db = None

    # -- one repeat -------------------------------------------------------------------------
    def repeat(self, rep: int, result: HttpResult, have_wrk: bool) -> None:
        assert self.db is not None
        sz = self.sizes
        self.db.clear()

        if have_wrk:
            cpu0 = self.api_cpu_s()
            w = run_wrk(_lua_post(self.key), f"{self.url}/v1/jobs", sz, self.workdir, 202, "post")
            cpu = self.api_cpu_s() - cpu0
            self.check_server()
            result.add("submit_cpu", cpu * 1000 / max(w.ok + w.errors, 1))
            result.add("submit_max", w.ok_per_s)
            result.add("submit_max_p50", w.p50_ms)
            result.add("submit_max_p99", w.p99_ms)
            result.add("submit_max_errors", w.errors)
            self.log(
                f"http #{rep + 1}: submit max {w.ok_per_s:,.0f}/s (202: {w.ok:,}, errors "
                f"{w.errors}, statuses {w.statuses}), p50 {w.p50_ms:.1f} ms, "
                f"p99 {w.p99_ms:.1f} ms"
            )
            self.db.clear()

        n = int(OPEN_RATE * sz.open_seconds)
        with deadline(sz.open_seconds + 60, "submit at 1,000/s"):
            run = asyncio.run(
                open_loop(
                    "127.0.0.1", self.port, self.post_raw, OPEN_RATE, n, sz.open_connections, 202
                )
            )
        self.check_server()
        sent = n / run.send_seconds if run.send_seconds else 0.0
        p50, p99 = _pct(run, 50), _pct(run, 99)
        result.add("submit_1k_p50", p50)
        result.add("submit_1k_p99", p99)
        result.add("submit_1k_sent", sent)
        result.add("submit_1k_errors", run.errors(202))
        self.log(
            f"http #{rep + 1}: at 1,000/s offered (sent {sent:,.0f}/s): p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, errors {run.errors(202)}"
        )

        if have_wrk:
            ids = self.db.job_ids(sz.read_pool)
            if not ids:
                raise RuntimeError("no job ids to read")
            cpu0 = self.api_cpu_s()
            w = run_wrk(
                _lua_reads(self.key, ids), f"{self.url}/v1/jobs", sz, self.workdir, 200, "reads"
            )
            cpu = self.api_cpu_s() - cpu0
            self.check_server()
            result.add("read_cpu", cpu * 1000 / max(w.ok + w.errors, 1))
            result.add("read", w.ok_per_s)
            result.add("read_p50", w.p50_ms)
            result.add("read_p99", w.p99_ms)
            result.add("read_errors", w.errors)
            self.log(
                f"http #{rep + 1}: reads {w.ok_per_s:,.0f}/s over {len(ids)} ids (errors "
                f"{w.errors}), p50 {w.p50_ms:.1f} ms, p99 {w.p99_ms:.1f} ms"
            )
        result.add("api_rss", self.api_rss_mb())

        self.burst(rep, result)

    def burst(self, rep: int, result: HttpResult) -> None:
        assert self.db is not None
        n = self.sizes.burst
        self.db.clear()
        self.start_workers()
        try:
            self._wait_workers_warm()
            self.db.clear()
            with deadline(60 + n / 100, "burst submits"):
                run = asyncio.run(
                    closed_loop(
                        "127.0.0.1", self.port, self.post_raw, n, self.sizes.burst_connections, 202
                    )
                )
            self.check_server()
            # The client's warm-up submits are jobs too: wait for every accepted one.
            accepted = run.ok(202) + run.warm_ok
            end = time.monotonic() + 60 + n / 100
            while True:
                counts = self.db.counts()
                backlog = sum(counts.get(s, 0) for s in BACKLOG_STATES)
                finished = counts.get("succeeded", 0) + counts.get("failed", 0)
                if backlog == 0 and finished >= accepted:
                    emptied = time.monotonic()
                    break
                if self.workers is None or not self.workers.alive():
                    raise RuntimeError(f"workers exited: {self.workers and self.workers.tail(8)}")
                if time.monotonic() > end:
                    raise Deadline(f"burst: queue not empty in time ({counts})")
                time.sleep(0.02)
        finally:
            self.stop_workers()
        errors = run.errors(202) + counts.get("failed", 0) + counts.get("canceled", 0)
        rate = run.ok(202) / run.send_seconds if run.send_seconds else 0.0
        p50, p99 = _pct(run, 50), _pct(run, 99)
        result.add("burst_rate", rate)
        result.add("burst_p50", p50)
        result.add("burst_p99", p99)
        result.add("burst_empty", emptied - run.first_send)
        result.add("burst_errors", errors)
        self.log(
            f"http #{rep + 1}: burst of {n:,}: {rate:,.0f} submits/s accepted, p50 "
            f"{p50:.1f} ms, p99 {p99:.1f} ms, queue empty after "
            f"{emptied - run.first_send:.1f} s, errors {errors} ({dict(run.statuses)})"
        )

    def _wait_workers_warm(self) -> None:
        """Submit one probe job over HTTP and wait until the workers ran it."""
        import httpx

        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        r = httpx.post(f"{self.url}/v1/jobs", content=SUBMIT_BODY, headers=headers, timeout=10)
        if r.status_code != 202:
            raise RuntimeError(f"probe submit answered {r.status_code}: {r.text[:200]}")
        job_url = f"{self.url}/v1/jobs/{r.json()['id']}"
        end = time.monotonic() + 30
        while True:
            status = httpx.get(job_url, headers=headers, timeout=10).json().get("status")
            if status == "succeeded":
                return
            if self.workers is None or not self.workers.alive():
                raise RuntimeError(f"workers exited: {self.workers and self.workers.tail(8)}")
            if time.monotonic() > end:
                raise Deadline(f"workers did not run a probe job within 30 s (status {status})")
            time.sleep(0.05)


def run_http(
    run_id: str, workdir: str, quick: bool, repeat: int, log: Callable[[str], None]
) -> HttpResult:
    """All HTTP scenarios, ``repeat`` times; never raises (failures end up in the result)."""
    sizes = HTTP_QUICK if quick else HTTP_FULL
    result = HttpResult(
        config=f"offload serve --workers {API_WORKERS} ({uvicorn_impl()}), rate limit off; "
        f"PostgreSQL; burst workers: offload worker {' '.join(WORKER_ARGS[:6])}",
        sizes=asdict(sizes),
    )
    have_wrk = shutil.which("wrk") is not None
    if not have_wrk:
        for m in ("submit_max", "read"):
            result.notes[m] = "skipped: wrk not installed (apt-get install -y wrk)"
        log("[yellow]http: wrk not installed: submit_max and read are skipped[/yellow]")
    bench: HttpBench | None = None
    try:
        bench = HttpBench(run_id, workdir, sizes, log)
        infra.CLEANUP.push("http bench processes", bench.stop)
        log(f"[bold]offload over HTTP[/bold] ({result.config})")
        bench.start()
        for rep in range(repeat):
            bench.repeat(rep, result, have_wrk)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        result.status = "failed"
        result.reason = f"{type(exc).__name__}: {exc}".strip()[:400]
        log(f"[red]http failed:[/red] {result.reason}")
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


def _rows(result: HttpResult) -> list[tuple[str, str, str, str, str]]:
    """(metric, median, range, unit, target) per metric with a value or a note."""
    rows = []
    for metric, (label, unit, higher, target) in HTTP_METRICS.items():
        values = result.values.get(metric)
        arrow = "↑" if higher else "↓"
        fmt = (lambda v: f"{v:,.0f}") if unit == "requests" else _fmt
        if values:
            med = fmt(statistics.median(values))
            spread = f"{fmt(min(values))}–{fmt(max(values))}" if len(values) > 1 else ""
        elif metric in result.notes:
            med, spread = result.notes[metric], ""
        else:
            continue
        rows.append((label, med, spread, f"{unit} {arrow}", target))
    return rows


FOOTNOTE = (
    "offload only: the peers have no HTTP API. submit_max and reads: wrk (closed loop); "
    "1,000/s offered: asyncio open-loop generator (bench/httpload.py; wrk -R / wrk2 not "
    "available), latency from the scheduled send time; burst: the same client, closed loop. "
    "The clients share the 2 cores with the API, PostgreSQL and (burst) the workers."
)


def print_table(result: HttpResult, title: str) -> None:
    console = Console(width=max(Console().width, 120))
    table = Table(title=f"offload over HTTP — {title}", show_lines=False, title_justify="left")
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


def markdown_table(result: HttpResult) -> str:
    lines = [
        "### offload over HTTP",
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


def to_json(result: HttpResult) -> dict[str, Any]:
    entry = asdict(result)
    entry["summary"] = {
        m: {
            "median": statistics.median(v),
            "min": min(v),
            "max": max(v),
            "unit": HTTP_METRICS[m][1],
            "target": HTTP_METRICS[m][3],
        }
        for m, v in result.values.items()
        if v
    }
    return entry
