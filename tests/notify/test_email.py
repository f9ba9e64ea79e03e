"""Email on terminal states, received by a real SMTP server (aiosmtpd) started by the test."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from offload import Offload
from offload.config import Settings
from offload.jobs import JobStatus
from offload.store.notify import Notify

from ..conftest import wait_until
from .conftest import FAST, dispatching
from .helpers import deliveries_of, finish, settled


class Inbox:
    """An SMTP handler keeping every message; refuses recipients at refused.example (550)."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        raw = envelope.original_content or b""
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"jobs", b"s3cret")
    return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self.controller = Controller(
            self.inbox,
            hostname="127.0.0.1",
            port=port,
            authenticator=_authenticate,
            auth_require_tls=False,
        )

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def smtp_port() -> int:
    return _free_port()


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[SmtpServer]:
    server = SmtpServer(smtp_port).start()
    yield server
    server.stop()


@pytest.fixture
async def mail_app(database_url: str, smtp_port: int) -> Any:
    url = f"smtp://jobs:s3cret@127.0.0.1:{smtp_port}?from=offload%40example.com&starttls=false"
    offload = Offload(settings=Settings(database_url=database_url, smtp_url=url, **FAST))
    await offload.store()
    yield offload
    await offload.close()


async def test_a_terminal_job_sends_a_short_email(mail_app: Offload, smtp: SmtpServer) -> None:
    store = await mail_app.store()
    async with dispatching(mail_app):
        job = await finish(store, status=JobStatus.FAILED, notify=Notify(email="ops@example.com"))
        [delivery] = await settled(store, job)
    assert delivery.status == "succeeded" and delivery.channel == "email"
    [message] = smtp.inbox.messages
    assert message["To"] == "ops@example.com" and message["From"] == "offload@example.com"
    assert message["Subject"] == "[offload] job notify.test failed"
    assert message["Message-ID"] == f"<{delivery.id}@offload>"
    text = message.get_content()
    assert str(job.id) in text and "boom: it broke" in text


async def test_a_refused_recipient_fails_at_once(mail_app: Offload, smtp: SmtpServer) -> None:
    store = await mail_app.store()
    async with dispatching(mail_app):
        job = await finish(store, notify=Notify(email="nobody@refused.example"))
        [delivery] = await settled(store, job)
    assert delivery.status == "failed" and delivery.attempts == 1
    assert delivery.last_status_code == 550 and "recipient refused" in (delivery.last_error or "")
    assert smtp.inbox.messages == []


async def test_an_unreachable_smtp_server_is_retried_until_it_answers(
    mail_app: Offload, smtp_port: int
) -> None:
    store = await mail_app.store()
    async with dispatching(mail_app):
        job = await finish(store, notify=Notify(email="ops@example.com"))

        async def failed_once() -> bool:
            found = await deliveries_of(store, job)
            return bool(found) and found[0].attempts >= 2 and found[0].status != "succeeded"

        await wait_until(failed_once)
        server = SmtpServer(smtp_port).start()
        try:
            [delivery] = await settled(store, job)
        finally:
            server.stop()
    assert delivery.status == "succeeded" and len(server.inbox.messages) == 1
    history = await store.delivery_attempts(delivery.id)
    assert history[0].error and history[-1].error is None


async def test_wrong_smtp_credentials_are_retried_and_the_password_is_never_recorded(
    database_url: str, smtp: SmtpServer
) -> None:
    url = f"smtp://jobs:wrong-pw@127.0.0.1:{smtp.port}?from=o%40example.com&starttls=false"
    settings = Settings(database_url=database_url, smtp_url=url, **{**FAST, "webhook_timeout": 1})
    offload = Offload(settings=settings)
    store = await offload.store()
    try:
        async with dispatching(offload):
            job = await finish(store, notify=Notify(email="ops@example.com"))

            async def tried() -> bool:
                found = await deliveries_of(store, job)
                return bool(found) and found[0].attempts >= 2

            await wait_until(tried)
        [delivery] = await deliveries_of(store, job)
        history = await store.delivery_attempts(delivery.id)
    finally:
        await offload.close()
    assert delivery.status == "pending" and smtp.inbox.messages == []
    assert all(a.error and "wrong-pw" not in a.error for a in history)
    assert "wrong-pw" not in repr(offload.settings)


def test_a_message_that_cannot_be_built_is_not_retried() -> None:
    """A header with a line break (a job type is the developer's, but never trusted)."""
    from offload.notify import mail

    payload = '{"data": {"type": "x\\nBcc: all@example.com", "status": "failed"}}'
    with pytest.raises(ValueError):
        mail.message("a@example.com", "b@example.com", "msg_1", payload)
    sent = asyncio.run(
        mail.send(mail.SmtpSettings("127.0.0.1", 9, "a@example.com"), "b@example.com", "msg_1",
                  payload, 1.0)
    )  # fmt: skip
    assert sent.permanent and "cannot build the message" in (sent.error or "")
