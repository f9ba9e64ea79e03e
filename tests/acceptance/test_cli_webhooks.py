"""``offload webhooks …`` against a live API, and ``offload dispatch`` as a process of its own
that delivers what the feed holds and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from offload import Offload
from offload.api import create_app
from offload.config import Settings
from offload.store.notify import Notify
from tests.api.conftest import FAST, ServerThread, _make_keys
from tests.apps.api_jobs import app as jobs_app
from tests.integration.workers import ROOT
from tests.notify.conftest import dispatching
from tests.notify.helpers import finish, settled
from tests.notify.receiver import Receiver

OFFLOAD = [sys.executable, "-m", "offload.cli"]
Run = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def cli(database_url: str) -> Iterator[Run]:
    """``cli(*args, key="admin")`` against an API that allows loopback webhook targets."""
    keys, _ = asyncio.run(_make_keys(database_url))
    core = Settings(database_url=database_url, webhook_allowed_hosts="127.0.0.1")
    thread = ServerThread(create_app(Offload(settings=core, registry=jobs_app.registry), FAST))
    thread.start()

    def run(*args: str, key: str | None = "admin", url: bool = True) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
        env.update(PYTHONPATH=str(ROOT), COLUMNS="250")
        if url:
            env["OFFLOAD_URL"] = thread.url
        if key is not None:
            env["OFFLOAD_API_KEY"] = keys[key]
        return subprocess.run(
            [*OFFLOAD, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    yield run
    thread.stop()


def test_webhooks_create_list_rotate_secret_deliveries_and_delete(cli: Run) -> None:
    created = cli("webhooks", "create", "http://127.0.0.1:9/hook", "--event", "job.failed")
    assert created.returncode == 0, created.stderr
    endpoint_id, secret = created.stdout.split()
    assert endpoint_id.startswith("wh_") and secret.startswith("whsec_")
    listed = cli("webhooks", "list")
    assert endpoint_id in listed.stdout and "job.failed" in listed.stdout
    assert secret not in listed.stdout
    rotated = cli("webhooks", "rotate", endpoint_id)
    assert rotated.returncode == 0 and rotated.stdout.strip().startswith("whsec_")
    assert rotated.stdout.strip() != secret
    tenant_secret = cli("webhooks", "secret", "--tenant", "tenant-a")
    assert tenant_secret.returncode == 0 and tenant_secret.stdout.startswith("whsec_")
    again = cli("webhooks", "secret", "--tenant", "tenant-a")
    assert again.stdout == tenant_secret.stdout  # created once, then the same
    fresh = cli("webhooks", "secret", "--tenant", "tenant-a", "--rotate")
    assert fresh.stdout != tenant_secret.stdout
    deliveries = cli("webhooks", "deliveries", endpoint_id)
    assert deliveries.returncode == 0 and "delivery" in deliveries.stdout
    assert cli("webhooks", "delete", endpoint_id).returncode == 0
    gone = cli("webhooks", "delete", endpoint_id)
    assert gone.returncode == 1 and f"no webhook {endpoint_id}" in gone.stderr
    assert "Traceback" not in gone.stderr and len(gone.stderr.strip().splitlines()) == 1


def test_webhook_commands_need_an_admin_key_and_the_api(cli: Run) -> None:
    refused = cli("webhooks", "list", key="client_a")
    assert refused.returncode == 1 and "admin" in refused.stderr
    ssrf = cli("webhooks", "create", "http://10.0.0.1/hook")
    assert ssrf.returncode == 1 and "SSRF guard" in ssrf.stderr
    no_api = cli("webhooks", "list", url=False)
    assert no_api.returncode == 2 and "OFFLOAD_URL" in no_api.stderr
    neither = cli("webhooks", "deliveries")
    assert neither.returncode == 2
    missing = cli("webhooks", "resend", "msg_" + "0" * 32)
    assert missing.returncode == 1 and "no delivery" in missing.stderr


def test_submit_takes_notify_targets_and_the_ssrf_guard_answers(cli: Run) -> None:
    echo = ["submit", "api.echo", "--input", '{"text": "x"}']
    ok = cli(*echo, "--notify-webhook", "http://127.0.0.1:9/hook", key="client_a")
    assert ok.returncode == 0, ok.stderr
    deliveries = cli("webhooks", "deliveries", "--job", ok.stdout.strip())
    assert deliveries.returncode == 0, deliveries.stderr
    refused = cli(*echo, "--notify-webhook", "http://169.254.169.254/", key="client_a")
    assert refused.returncode == 1 and "link-local" in refused.stderr
    no_smtp = cli(*echo, "--notify-email", "ops@example.com", key="client_a")
    assert no_smtp.returncode == 1 and "OFFLOAD_SMTP_URL" in no_smtp.stderr


async def test_offload_dispatch_delivers_on_its_own_and_stops_on_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_url, dispatch_interval=0.05)
    offload = Offload(settings=settings)
    store = await offload.store()
    async with dispatching(offload):  # places the feed cursor (as any earlier run would have)
        pass
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env.update(
        PYTHONPATH=str(ROOT),
        OFFLOAD_DATABASE_URL=database_url,
        OFFLOAD_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        OFFLOAD_DISPATCH_INTERVAL="0.05",
    )
    log = (tmp_path / "dispatch.log").open("wb")
    try:
        with Receiver() as receiver:
            # Finished before the process starts: it finds the job in the feed.
            job = await finish(store, notify=Notify(webhook=receiver.url))
            proc = subprocess.Popen(
                [*OFFLOAD, "dispatch"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
            try:
                [delivery] = await settled(store, job)
                assert delivery.status == "succeeded" and receiver.count() == 1
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        log.close()
        await offload.close()
