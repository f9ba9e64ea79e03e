"""The ``offload`` command against a live HTTP API (``OFFLOAD_URL`` + ``OFFLOAD_API_KEY``):
real processes, a real server, real exit codes; SQLite and PostgreSQL behind the API."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest

from offload import Offload
from offload.api import create_app
from tests.api.conftest import FAST, ServerThread, _make_keys
from tests.apps.api_jobs import app as jobs_app
from tests.integration.workers import ROOT

OFFLOAD = [sys.executable, "-m", "offload.cli"]
Run = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def server(database_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """An API with two inline worker slots for tests/apps/api_jobs.py; (url, keys)."""
    keys, _ = asyncio.run(_make_keys(database_url))
    api = create_app(
        Offload(database_url, registry=jobs_app.registry), FAST, inline_workers=2, worker_grace=1
    )
    thread = ServerThread(api)
    thread.start()
    yield thread.url, keys
    thread.stop()


@pytest.fixture
def cli(server: tuple[str, dict[str, str]]) -> Run:
    """``cli(*args, key="client_a")``: run ``offload`` against the server with that key."""
    url, keys = server

    def run(
        *args: str, key: str | None = "client_a", timeout: float = 60
    ) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
        env.update(OFFLOAD_URL=url, PYTHONPATH=str(ROOT), COLUMNS="200")
        if key is not None:
            env["OFFLOAD_API_KEY"] = keys[key]
        return subprocess.run(
            [*OFFLOAD, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )

    return run


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line


def test_submit_prints_only_the_id_and_status_and_jobs_show_it(cli: Run) -> None:
    submitted = cli("submit", "api.echo", "--input", '{"text": "hi"}')
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert submitted.stdout == job_id + "\n"
    uuid.UUID(job_id)
    shown = cli("status", job_id)
    assert shown.returncode == 0, shown.stderr
    assert "api.echo" in shown.stdout and job_id in shown.stdout
    listed = cli("jobs", "--type", "api.echo")
    assert listed.returncode == 0 and job_id in listed.stdout
    other_tenant = cli("status", job_id, key="client_b")
    assert other_tenant.returncode == 1 and f"no job {job_id}" in other_tenant.stderr
    no_traceback(other_tenant)


def test_submit_wait_exits_0_on_success_and_1_on_failure(cli: Run) -> None:
    ok = cli("submit", "api.slow", "--input", '{"steps": 4, "step_seconds": 0.1}', "--wait")
    assert ok.returncode == 0, ok.stderr
    assert "succeeded" in ok.stdout and '"steps": 4' in ok.stdout
    assert "submitted" in ok.stderr
    failed = cli("submit", "api.fixable", "--input", '{"ok": false}', "--wait")
    assert failed.returncode == 1
    assert "failed" in failed.stdout and "permanent_error" in failed.stdout


def test_watch_follows_a_job_to_its_end(cli: Run) -> None:
    slow = cli("submit", "api.slow", "--input", '{"steps": 3, "step_seconds": 0.2}')
    job_id = slow.stdout.strip()
    watched = cli("watch", job_id)
    assert watched.returncode == 0, watched.stderr
    assert "succeeded" in watched.stdout and '"steps": 3' in watched.stdout
    failed = cli("submit", "api.fixable", "--input", '{"ok": false}')
    assert cli("watch", failed.stdout.strip()).returncode == 1
    other_tenant = cli("watch", job_id, key="client_b")
    assert other_tenant.returncode == 1 and f"no job {job_id}" in other_tenant.stderr
    no_traceback(other_tenant)


def test_errors_are_one_line_with_the_problem_detail(cli: Run) -> None:
    missing_key = cli("status", str(uuid.uuid4()), key=None)
    assert missing_key.returncode == 2 and "OFFLOAD_API_KEY" in missing_key.stderr
    no_traceback(missing_key)
    invalid = cli("submit", "api.echo", "--input", '{"text": 5, "times": 99}')
    assert invalid.returncode == 1
    assert "input.text" in invalid.stderr and "input.times" in invalid.stderr
    no_traceback(invalid)
    unknown = cli("submit", "no.such.type", "--input", "{}")
    assert unknown.returncode == 1 and "unknown job type 'no.such.type'" in unknown.stderr
    forbidden = cli("queues", "list")
    assert forbidden.returncode == 1 and "admin key" in forbidden.stderr
    no_traceback(forbidden)


def test_an_unreachable_api_is_one_clear_line() -> None:
    env = {**os.environ, "OFFLOAD_URL": "http://127.0.0.1:1", "OFFLOAD_API_KEY": "ofk_x",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    result = subprocess.run(
        [*OFFLOAD, "status", str(uuid.uuid4())], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot reach the offload API at http://127.0.0.1:1" in result.stderr
    no_traceback(result)


def test_dead_letters_listed_shown_replayed_and_discarded(cli: Run) -> None:
    ids = []
    for _ in range(2):
        failed = cli("submit", "api.fixable", "--input", '{"ok": false}', "--wait")
        assert failed.returncode == 1
        ids.append(next(line.split()[-1] for line in failed.stdout.splitlines()
                        if line.split()[:1] == ["id"]))  # fmt: skip
    fixed, dropped = ids
    listed = cli("dlq", "list", key="admin")
    assert listed.returncode == 0 and fixed in listed.stdout and dropped in listed.stdout
    assert "permanent_error" in listed.stdout
    shown = cli("dlq", "show", fixed, key="admin")
    assert shown.returncode == 0
    assert "PermanentError" in shown.stdout and "job.failed" in shown.stdout
    assert cli("dlq", "list").returncode == 1  # a client key is not an admin

    replayed = cli("dlq", "replay", fixed, "--input", '{"ok": true}', key="admin")
    assert replayed.returncode == 0 and replayed.stdout.strip() == f"{fixed} queued"
    discarded = cli("dlq", "discard", dropped, key="admin")
    assert discarded.returncode == 0 and discarded.stdout.strip() == f"{dropped} discarded"
    again = cli("dlq", "discard", dropped, key="admin")
    assert again.returncode == 1 and "discarded" in again.stderr
    assert cli("dlq", "replay", "x", "--input", "{nope", key="admin").returncode == 2

    after = cli("dlq", "list", key="admin").stdout
    assert fixed not in after and dropped not in after
    result = json.loads(
        cli("submit", "api.echo", "--input", '{"text": "x"}', "--wait").stdout.split("result", 1)[1]
    )
    assert result == {"echo": "x"}


def test_queues_paused_listed_and_resumed(cli: Run) -> None:
    paused = cli("queues", "pause", "echo", key="admin")
    assert paused.returncode == 0 and paused.stdout.strip() == "queue echo paused"
    assert cli("submit", "api.echo", "--input", '{"text": "held"}').returncode == 0
    row = next(line for line in cli("queues", "list", key="admin").stdout.splitlines()
               if "echo" in line)  # fmt: skip
    assert [cell for cell in row.split() if cell != "│"][:3] == ["echo", "yes", "1"]
    resumed = cli("queues", "resume", "echo", key="admin")
    assert resumed.returncode == 0 and resumed.stdout.strip() == "queue echo resumed"
    bad = cli("queues", "pause", "no spaces", key="admin")
    assert bad.returncode == 1
    no_traceback(bad)


def test_without_offload_url_dlq_discard_works_on_the_store(cli: Run, database_url: str) -> None:
    failed = cli("submit", "api.fixable", "--input", '{"ok": false}', "--wait")
    job_id = next(line.split()[-1] for line in failed.stdout.splitlines()
                  if line.split()[:1] == ["id"])  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env.update(OFFLOAD_DATABASE_URL=database_url, PYTHONPATH=str(ROOT), COLUMNS="200")

    def direct(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*OFFLOAD, *args, "--app", "tests.apps.api_jobs:app"], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip

    assert job_id in direct("dlq", "list").stdout
    discarded = direct("dlq", "discard", job_id)
    assert discarded.returncode == 0 and discarded.stdout.strip() == f"{job_id} discarded"
    assert job_id not in direct("dlq", "list").stdout
    again = direct("dlq", "discard", job_id)
    assert again.returncode == 1 and "discarded" in again.stderr
    no_traceback(again)
    missing = direct("dlq", "discard", str(uuid.uuid4()))
    assert missing.returncode == 1 and "no dead letter" in missing.stderr
