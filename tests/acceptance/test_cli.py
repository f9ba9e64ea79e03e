"""The ``offload`` command as a user runs it: a real process, real output, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PG_ADMIN_URL
from tests.integration.workers import ROOT, WorkerProcesses

OFFLOAD = [sys.executable, "-m", "offload.cli"]


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*OFFLOAD, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "OFFLOAD_DATABASE_URL": database_url,
        "OFFLOAD_APP": "tests.apps.chaos:app",
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "200",
    }


def test_submit_prints_only_the_new_job_id_and_status_shows_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    submitted = run_cli(
        "submit", "chaos.noop", "--input", json.dumps({"log": str(tmp_path / "x")}), env=env
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    uuid.UUID(job_id)
    shown = run_cli("status", job_id, env=env)
    assert shown.returncode == 0
    assert "chaos.noop" in shown.stdout and "queued" in shown.stdout


def test_submit_of_an_unknown_type_fails_clearly_without_a_traceback(env: dict[str, str]) -> None:
    result = run_cli("submit", "no.such.job", "--input", "{}", env=env)
    assert result.returncode == 1
    assert "unknown job type 'no.such.job'" in result.stderr
    assert "chaos.count" in result.stderr  # lists what is registered
    assert "Traceback" not in result.stderr


def test_submit_of_invalid_input_names_the_bad_field(env: dict[str, str]) -> None:
    result = run_cli("submit", "chaos.count", "--input", '{"steps": "many"}', env=env)
    assert result.returncode == 1
    assert "steps" in result.stderr and "log" in result.stderr
    assert "Traceback" not in result.stderr


def test_submit_with_input_that_is_not_json_is_a_usage_error(env: dict[str, str]) -> None:
    result = run_cli("submit", "chaos.noop", "--input", "{not json", env=env)
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr


def test_status_of_a_missing_job_says_so(env: dict[str, str]) -> None:
    result = run_cli("status", str(uuid.uuid4()), env=env)
    assert result.returncode == 1 and "no job" in result.stderr


def test_queues_can_be_paused_listed_and_resumed(env: dict[str, str], tmp_path: Path) -> None:
    run_cli("submit", "chaos.noop", "--input", json.dumps({"log": "x"}), env=env)
    assert run_cli("queues", "pause", "default", env=env).returncode == 0
    listed = run_cli("queues", "list", env=env)
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if "default" in line)
    assert "yes" in row and "1" in row
    assert run_cli("queues", "resume", "default", env=env).returncode == 0
    row = next(line for line in run_cli("queues", "list", env=env).stdout.splitlines()
               if "default" in line)  # fmt: skip
    assert "no" in row


def test_submit_wait_follows_the_job_to_its_result(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    workers = WorkerProcesses(database_url, tmp_path, lease_seconds=5)
    workers.start()
    try:
        payload = json.dumps({"steps": 3, "log": str(tmp_path / "c.log"), "step_seconds": 0.05})
        result = run_cli("submit", "chaos.count", "--input", payload, "--wait", env=env)
    finally:
        workers.stop_all()
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout and '"steps": 3' in result.stdout


def test_watch_follows_a_job_on_the_store_to_its_end(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    payload = json.dumps({"steps": 3, "log": str(tmp_path / "w.log"), "step_seconds": 0.1})
    job_id = run_cli("submit", "chaos.count", "--input", payload, env=env).stdout.strip()
    workers = WorkerProcesses(database_url, tmp_path, lease_seconds=5)
    workers.start()
    try:
        result = run_cli("watch", job_id, env=env)
    finally:
        workers.stop_all()
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout and job_id in result.stdout
    missing = run_cli("watch", "0190b4a5-0000-7000-8000-000000000000", env=env)
    assert missing.returncode == 1 and "no job" in missing.stderr


def test_dead_letters_are_listed_shown_and_replayed(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    workers = WorkerProcesses(database_url, tmp_path, lease_seconds=1)
    workers.start("--processes", "2")  # the supervisor replaces killed children
    try:
        payload = json.dumps({"log": str(tmp_path / "s.log")})
        result = run_cli("submit", "chaos.suicide", "--input", payload, "--wait", env=env,
                         timeout=120)  # fmt: skip
    finally:
        workers.stop_all()
    assert result.returncode == 1 and "lease_expired" in result.stdout
    job_id = next(line.split()[-1] for line in result.stdout.splitlines() if " id " in f" {line}")
    listed = run_cli("dlq", "list", env=env)
    assert job_id in listed.stdout
    shown = run_cli("dlq", "show", job_id, env=env)
    assert "job.failed" in shown.stdout and "job.running" in shown.stdout
    replayed = run_cli("dlq", "replay", job_id, env=env)
    assert replayed.returncode == 0 and "queued" in replayed.stdout
    assert job_id not in run_cli("dlq", "list", env=env).stdout


def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "OFFLOAD_DATABASE_URL": "postgresql://app:s3cret@127.0.0.1:1/jobs"}  # fmt: skip
    result = run_cli("status", str(uuid.uuid4()), env=env)
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL at postgresql://app:***@127.0.0.1:1/jobs" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_worker_with_a_wrong_app_exits_with_a_clear_error(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "offload.worker", "--app", "tests.apps.nothing_here:app"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot import module 'tests.apps.nothing_here'" in result.stderr


@pytest.fixture
def empty_pg_database() -> Iterator[str]:
    import asyncio

    name = f"offload_empty_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_postgres_needs_db_upgrade_first_and_upgrade_is_repeatable(
    empty_pg_database: str, pg_database: str
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OFFLOAD_DATABASE_URL": empty_pg_database}
    before = run_cli("jobs", env=env)
    assert before.returncode == 1 and "offload db upgrade" in before.stderr
    first = run_cli("db", "upgrade", env=env)
    assert first.returncode == 0 and "applied migrations 1" in first.stdout
    again = run_cli("db", "upgrade", env=env)
    assert again.returncode == 0 and "up to date" in again.stdout
    assert run_cli("jobs", env=env).returncode == 0
