"""``offload demo``: the example jobs end to end over the HTTP API, on an embedded SQLite database.

Starts ``offload serve`` and ``offload worker`` processes on a database in a temporary folder,
creates an admin key, prints the API docs URL and the key, submits the examples over HTTP with
:mod:`offload.client`, shows them progressing, SIGKILLs the worker running the report half way
through (a fresh worker resumes it from its checkpoint once the lease expires) and ends with a
summary. Needs nothing but this package: no database server, no broker.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

APP = "offload.examples:app"
LEASE_SECONDS = 5
DEADLINE = 180.0
STARTUP_SECONDS = 30.0
EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("reports.reconcile", {"year": 2025, "transactions_per_month": 120_000}),
    ("partners.sync", {"partner": "payments-gateway"}),
    ("partners.sync", {"partner": "crm", "failures_before_success": 1}),
    ("imports.parse", {"file": "customers.csv"}),
]
EXPECTED = ["succeeded", "succeeded", "succeeded", "failed"]


def run_demo(*, workers: int, keep: bool, console: Console) -> int:
    folder = Path(tempfile.mkdtemp(prefix="offload-demo-"))
    database = folder / "demo.db"
    env = {
        **os.environ,
        "OFFLOAD_DATABASE_URL": f"sqlite:///{database}",
        "OFFLOAD_LEASE_SECONDS": str(LEASE_SECONDS),
        "OFFLOAD_APP": APP,
    }
    env.pop("OFFLOAD_URL", None)
    console.print(f"[bold]offload demo[/bold]  database {database}")
    procs = _Processes(folder, env)
    try:
        key = procs.create_admin_key()
        url = procs.start_api()
        console.print(f"API       {url}   docs [bold]{url}/docs[/bold]")
        console.print(f"admin key [bold]{key}[/bold]")
        worker = procs.start_worker("reports")
        for _ in range(workers - 1):
            procs.start_worker("default")
        return _demo(url, key, procs, worker, console)
    except _StartFailed as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    finally:
        procs.stop()
        if keep:
            console.print(
                f"database kept in {folder}; serve it again with "
                f"OFFLOAD_DATABASE_URL=sqlite:///{database} offload serve --app {APP}"
            )
        else:
            shutil.rmtree(folder, ignore_errors=True)


class _StartFailed(Exception):
    pass


class _Processes:
    """The demo's ``offload`` processes, each logging to a file in the demo folder."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []

    def _offload(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.folder / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "offload.cli", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return lines[-1] if lines else "(no output)"

    def create_admin_key(self) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "offload.cli", "keys", "create", "--tenant", "demo",
             "--role", "admin", "--name", "offload demo"],
            env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise _StartFailed(f"offload keys create failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def start_api(self) -> str:
        """``offload serve`` on a free port; its URL once ``/readyz`` answers."""
        import httpx

        for attempt in range(3):
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            name = f"api-{attempt + 1}"
            proc = self._offload(name, "serve", "--port", str(port), "--log-level", "warning")
            deadline = time.monotonic() + STARTUP_SECONDS
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        return url
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            if proc.poll() is None:
                break  # running but never ready: another port will not help
        raise _StartFailed(f"the API did not start: {self.log(name)}")

    def start_worker(self, queue: str) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        return self._offload(
            f"worker-{n}", "worker", "--queues", queue, "--concurrency", "4", "--grace", "5"
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo(
    url: str, key: str, procs: _Processes, worker: subprocess.Popen[bytes], console: Console
) -> int:
    from .client import Client

    with Client(url, key) as api:
        jobs = [api.submit(job_type, data) for job_type, data in EXAMPLES]
        console.print(
            f"submitted {len(jobs)} jobs over HTTP (POST {url}/v1/jobs → 202); workers: "
            f"{len(procs.procs) - 1} processes\n"
        )
        killed: str | None = None
        started = time.monotonic()
        with Live(console=console, refresh_per_second=8) as live:
            while time.monotonic() - started < DEADLINE:
                jobs = [api.get(j.id) for j in jobs]
                report = jobs[0]
                half_way = report.status.value == "running" and report.progress.percent >= 40
                if killed is None and half_way:
                    killed = _kill(worker, report, procs)
                live.update(_table(jobs, killed))
                if all(j.is_terminal for j in jobs):
                    break
                time.sleep(0.125)
        took = time.monotonic() - started
        events = api.admin_job(jobs[0].id).events or []
        dead = list(api.dead_letters())
    _summary(console, jobs, events, dead, killed, took, url)
    outcome = [j.status.value for j in jobs]
    return 0 if outcome == EXPECTED and killed is not None and jobs[0].attempt >= 2 else 1


def _kill(worker: subprocess.Popen[bytes], report: Any, procs: _Processes) -> str:
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    procs.start_worker("reports")  # a replacement, as a supervisor or Kubernetes would start one
    month = int(report.progress.percent / 100 * 12) + 1
    return (
        f"SIGKILLed the reports worker (pid {worker.pid}) while it reconciled month {month}; a "
        f"new worker resumes from the checkpoint once the {LEASE_SECONDS} s lease expires"
    )


def _table(jobs: list, killed: str | None) -> Group:
    table = Table("job", "status", "attempt", "progress", "", "message", expand=True)
    colors = {"succeeded": "green", "failed": "red", "running": "cyan", "retrying": "yellow"}
    for job in jobs:
        color = colors.get(job.status.value, "white")
        table.add_row(
            job.type,
            f"[{color}]{job.status.value}[/{color}]",
            f"{job.attempt}/{job.max_attempts}",
            ProgressBar(total=100, completed=job.progress.percent, width=30),
            f"{job.progress.percent:5.1f}%",
            job.progress.message or "",
        )
    parts: list = [table]
    if killed:
        parts.append(f"[bold red]chaos:[/bold red] {killed}")
    return Group(*parts)


def _summary(
    console: Console,
    jobs: list,
    events: list,
    dead: list,
    killed: str | None,
    took: float,
    url: str,
) -> None:
    console.print(f"\n[bold]summary[/bold] ({took:.1f} s)")
    table = Table("job", "status", "attempts", "outcome")
    for job in jobs:
        if job.status.value == "succeeded":
            outcome = (
                f"total {job.result['total']:,.2f}, {job.result['mismatches']} mismatches"
                if job.type == "reports.reconcile"
                else f"synced on attempt {job.result['attempts']}"
            )
        else:
            outcome = f"{job.error.code}: {job.error.message}" if job.error else "-"
        table.add_row(job.type, job.status.value, str(job.attempt), outcome)
    console.print(table)
    console.print("[bold]the report's timeline[/bold] (GET /v1/admin/jobs/ID; progress left out)")
    for e in events:
        if e.type == "job.progress":
            continue
        note = e.data.get("error", {}).get("message", "") if e.data else ""
        console.print(
            f"  {e.created_at:%H:%M:%S}  #{e.seq:<3} {e.type:<14} attempt {e.attempt}  {note}"
        )
    if killed and jobs[0].attempt >= 2:
        console.print(
            "[green]the killed attempt's work was not lost: attempt 2 resumed from its "
            "last checkpoint[/green]"
        )
    console.print(
        f"dead letters (GET /v1/admin/dead-letters): {len(dead)}; against a running API: "
        f"[bold]OFFLOAD_URL={url} OFFLOAD_API_KEY=… offload dlq list[/bold]"
    )
