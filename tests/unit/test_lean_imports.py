"""Processes that need little load little: the worker supervisor and ``import offload``."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys; {code}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_worker_supervisor_loads_no_job_machinery() -> None:
    loaded = _loaded_after("import offload.worker.__main__, offload.worker.supervisor")
    assert not {"asyncio", "pydantic", "asyncpg", "offload.app"} & loaded


def test_importing_offload_is_cheap_until_a_name_is_used() -> None:
    assert "pydantic" not in _loaded_after("import offload")
    assert "pydantic" in _loaded_after("from offload import Offload")


def test_a_worker_and_its_dispatcher_load_no_http_or_smtp_client_until_they_send() -> None:
    # httpx alone adds about 14 MB (it pulls rich, click and pygments); a worker that never
    # sends a webhook or an email must not carry it.
    loaded = _loaded_after(
        "import offload.worker.worker, offload.worker.process, offload.notify.dispatcher"
    )
    assert not {"httpx", "aiosmtplib", "rich", "fastapi", "offload.client"} & loaded
    # Nor the email package or the webhook signer (about 1.5 MB a process) before it sends.
    assert not {"email.utils", "email.message", "standardwebhooks"} & loaded
