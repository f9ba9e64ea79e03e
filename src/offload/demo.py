"""``offload demo``: the example jobs, end to end, on an embedded SQLite database.

Starts worker processes, submits the examples, shows live progress, SIGKILLs the worker that
runs the report half way through (another worker resumes it from its checkpoint once the lease
expires) and ends with a summary.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

LEASE_SECONDS = 5
DEADLINE = 600.0


def run_demo(*, workers: int, keep: bool, console: Console) -> int:
    folder = Path(tempfile.mkdtemp(prefix="offload-demo-"))
    os.environ["OFFLOAD_DATABASE_URL"] = f"sqlite:///{folder / 'demo.db'}"
    os.environ["OFFLOAD_LEASE_SECONDS"] = str(LEASE_SECONDS)
    console.print(f"[bold]offload demo[/bold]  database {folder / 'demo.db'}")
    pool = _WorkerPool(folder)
    try:
        return asyncio.run(_demo(pool, workers, console))
    finally:
        pool.stop()
        if keep:
            console.print(f"database kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


class _WorkerPool:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.folder / f"worker-{len(self.procs) + 1}.log").open("ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "offload.worker",
                "--app",
                "offload.examples:app",
                "--concurrency",
                "4",
                "--grace",
                "5",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _demo(pool: _WorkerPool, workers: int, console: Console) -> int:
    from .examples import app  # reads OFFLOAD_DATABASE_URL set above

    async with app:
        for _ in range(workers):
            pool.start()
        jobs = [
            await app.submit("reports.reconcile", {"year": 2025}),
            await app.submit("partners.sync", {"partner": "payments-gateway"}),
            await app.submit("partners.sync", {"partner": "crm", "failures_before_success": 1}),
            await app.submit("imports.parse", {"file": "customers.csv"}),
        ]
        console.print(f"submitted {len(jobs)} jobs to {workers} worker processes\n")
        report_id = jobs[0].id
        killed: str | None = None
        started = time.monotonic()
        with Live(console=console, refresh_per_second=8) as live:
            while time.monotonic() - started < DEADLINE:
                jobs = [await app.get_job(j.id) for j in jobs]  # type: ignore[misc]
                report = jobs[0]
                if killed is None and report.progress.percent >= 40 and report.worker_id:
                    killed = _kill_worker_of(report, pool)
                live.update(_table(jobs, killed))
                if all(j.is_terminal for j in jobs):
                    break
                await asyncio.sleep(0.125)
        events = await app.events(report_id)
    _summary(console, jobs, events, killed, time.monotonic() - started)
    expected = ["succeeded", "succeeded", "succeeded", "failed"]
    return 0 if [j.status.value for j in jobs] == expected else 1


def _kill_worker_of(report: object, pool: _WorkerPool) -> str:
    pid = int(report.worker_id.split(":")[1])  # type: ignore[attr-defined]
    os.kill(pid, signal.SIGKILL)
    pool.start()  # a replacement, as a supervisor or Kubernetes would start one
    month = int(report.progress.percent / 100 * 12) + 1  # type: ignore[attr-defined]
    return (
        f"SIGKILLed worker {pid} while it reconciled month {month}; another worker resumes "
        f"from the checkpoint once the {LEASE_SECONDS} s lease expires"
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


def _summary(console: Console, jobs: list, events: list, killed: str | None, took: float) -> None:
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
    timeline = [e for e in events if e.type != "job.progress"]
    console.print("[bold]the report's timeline[/bold] (progress events left out)")
    for e in timeline:
        note = e.data.get("error", {}).get("message", "") if e.data else ""
        console.print(
            f"  {e.created_at:%H:%M:%S}  #{e.seq:<3} {e.type:<14} attempt {e.attempt}  {note}"
        )
    if killed:
        console.print(
            "[green]the killed attempt's work was not lost: attempt 2 resumed from its "
            "last checkpoint[/green]"
        )
    console.print(
        "dead letters: [bold]offload dlq list[/bold]; replay one with "
        "[bold]offload dlq replay ID --app offload.examples:app[/bold]"
    )
