"""Benchmark runner: ``.venv-bench/bin/python -m bench.run [--quick] [--only a,b] [--repeat N]
[--json out.json] [--chart docs/bench-chart.png]``.

Sets up isolated infrastructure (private redis-server, fresh PostgreSQL database, per-run
RabbitMQ queue names), runs every scenario for every selected system one system at a time,
then prints one table, writes the raw JSON and renders the chart. Everything it started or
created is removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import secrets
import shutil
import sys
import time
from dataclasses import asdict

from rich.console import Console

from bench import events as bench_events
from bench import http as bench_http
from bench import infra, report
from bench.scenarios import FULL, QUICK, REPO_ROOT, SystemResult, run_system
from bench.systems import SYSTEMS, load_system
from bench.systems.base import BenchEnv

console = Console()


def log(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}", highlight=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small N, 1 repeat (well under 2 min)")
    p.add_argument("--only", help=f"comma-separated subset of: {','.join(SYSTEMS)}")
    p.add_argument("--repeat", type=int, help="measurements per scenario (default 3, quick 1)")
    p.add_argument("--json", default="docs/bench-results.json", help="raw results file")
    p.add_argument("--chart", default="docs/bench-chart.png", help="PNG chart ('' to skip)")
    p.add_argument("--markdown", default="", help="also write the table as Markdown here")
    http = p.add_mutually_exclusive_group()
    http.add_argument(
        "--no-http", action="store_true", help="skip the HTTP scenarios (offload over HTTP)"
    )
    http.add_argument(
        "--http-only", action="store_true", help="run only the HTTP scenarios (implies offload)"
    )
    http.add_argument(
        "--events-only",
        action="store_true",
        help="run only the event-stream scenarios (SSE latency, 1,000 connections)",
    )
    args = p.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",")] if args.only else list(SYSTEMS)
    if args.http_only or args.events_only:
        args.names = []
    unknown = [n for n in args.names if n not in SYSTEMS]
    if unknown:
        p.error(f"unknown system(s): {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    return args


def compile_sources() -> None:
    """Every peer runs from an installed package, byte-compiled when pip installed it; offload
    and this harness run from the checkout, where nothing may have written bytecode
    (``PYTHONDONTWRITEBYTECODE``), so each worker would compile their source as it starts:
    about 1 MB more RSS per worker process, measured. Compile them once, as an install would."""
    for folder in ("src/offload", "bench"):
        compileall.compile_dir(os.path.join(REPO_ROOT, folder), quiet=1)


def run(
    args: argparse.Namespace,
) -> tuple[list[SystemResult], bench_http.HttpResult | None, bench_events.EventsResult | None]:
    sizes = QUICK if args.quick else FULL
    run_id = secrets.token_hex(4)
    workdir = infra.make_workdir(run_id)
    log(f"run {run_id}: {'quick' if args.quick else 'full'}, repeat {args.repeat}, {sizes}")
    compile_sources()

    private_redis = infra.PrivateRedis(workdir)
    log(f"private redis-server on port {private_redis.port}")
    recorder = os.path.join(workdir, "recorder")
    # If PostgreSQL is unreachable, the Redis/RabbitMQ systems still run.
    pg_url, pg_error = "postgresql://unavailable/", ""
    try:
        pg_url = infra.PgDatabase(run_id).url
        log(f"database {pg_url.rsplit('/', 1)[1]} created")
    except Exception as exc:
        pg_error = f"PostgreSQL unavailable: {exc}"
        log(f"[red]{pg_error}[/red]")

    results: list[SystemResult] = []
    for name in args.names:
        try:
            cls = load_system(name)
        except Exception as exc:
            results.append(
                SystemResult(name, "?", False, "", "unavailable", f"{type(exc).__name__}: {exc}")
            )
            log(f"{name}: not available ({exc})")
            continue
        if cls.backend == "postgres" and pg_error:
            results.append(
                SystemResult(name, cls.backend, cls.reference, cls.config, "failed", pg_error)
            )
            continue
        sysdir = os.path.join(workdir, name)
        os.makedirs(sysdir, exist_ok=True)
        os.makedirs(recorder, exist_ok=True)
        env = BenchEnv(
            run_id=run_id,
            redis_url=private_redis.db_url(1),
            recorder_dir=recorder,
            pg_url=pg_url,
            amqp_url=infra.AMQP_URL,
            queue=f"bench_{run_id}_{name}",
            workdir=sysdir,
        )
        log(f"[bold]{name}[/bold] ({cls.config or cls.backend})")
        t0 = time.monotonic()
        result = run_system(cls, env, sizes, args.repeat, recorder, log)
        if result.status == "unavailable":
            log(f"{name}: not available ({result.reason})")
        log(f"{name}: {result.status} in {time.monotonic() - t0:.1f} s")
        results.append(result)
        shutil.rmtree(recorder, ignore_errors=True)  # counters of finished systems

    # offload over HTTP: after the queue scenarios, offload only (the peers have no HTTP API).
    http_result = None
    if not args.events_only and (args.http_only or ("offload" in args.names and not args.no_http)):
        if pg_error:
            http_result = bench_http.HttpResult(status="failed", reason=pg_error)
        else:
            t0 = time.monotonic()
            http_result = bench_http.run_http(run_id, workdir, args.quick, args.repeat, log)
            log(f"offload over HTTP: {http_result.status} in {time.monotonic() - t0:.1f} s")
    return results, http_result, _run_events(args, run_id, workdir, pg_error)


def _run_events(
    args: argparse.Namespace, run_id: str, workdir: str, pg_error: str
) -> bench_events.EventsResult | None:
    """offload's event streams (SSE): with the HTTP scenarios, offload only."""
    if not (args.events_only or args.http_only or ("offload" in args.names and not args.no_http)):
        return None
    if pg_error:
        return bench_events.EventsResult(status="failed", reason=pg_error)
    t0 = time.monotonic()
    result = bench_events.run_events(run_id, workdir, args.quick, args.repeat, log)
    log(f"offload event streams: {result.status} in {time.monotonic() - t0:.1f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    infra.install_signal_handlers()
    started = time.time()
    try:
        results, http_result, events_result = run(args)
    except KeyboardInterrupt:
        console.print("[red]interrupted; cleaning up[/red]")
        return 130
    finally:
        infra.CLEANUP.run()

    sizes = QUICK if args.quick else FULL
    title = (
        f"offload bench — {'quick' if args.quick else 'full'}, {args.repeat} repeat(s), "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    if results:
        report.print_table(results, title)
    if http_result is not None:
        bench_http.print_table(http_result, title)
    if events_result is not None:
        bench_events.print_table(events_result, title)
    meta = {
        "started": started,
        "duration_s": time.time() - started,
        "quick": args.quick,
        "repeat": args.repeat,
        "sizes": asdict(sizes),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    data = report.to_json(results, meta)
    if http_result is not None:
        data["http"] = bench_http.to_json(http_result)
    if events_result is not None:
        data["events"] = bench_events.to_json(events_result)
    report.write_json(args.json, data)
    log(f"raw results: {args.json}")
    if args.chart and results:
        os.makedirs(os.path.dirname(args.chart) or ".", exist_ok=True)
        report.render_chart(results, args.chart, title)
        log(f"chart: {args.chart}")
    if args.markdown:
        os.makedirs(os.path.dirname(args.markdown) or ".", exist_ok=True)
        with open(args.markdown, "w") as f:
            f.write(f"{title}\n\n")
            if results:
                f.write(report.markdown_table(results))
            if http_result is not None:
                f.write(f"\n{bench_http.markdown_table(http_result)}")
            if events_result is not None:
                f.write(f"\n{bench_events.markdown_table(events_result)}")
        log(f"markdown: {args.markdown}")
    log(f"total {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
