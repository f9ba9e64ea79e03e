"""HTTPS to a checked address: the request goes to the address the SSRF guard just checked,
while TLS still verifies the certificate against the URL's host name (SNI)."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

import httpx
import trustme

from offload.notify import webhook
from offload.notify.ssrf import AllowList

from .receiver import Receiver

SECRET = "whsec_" + "C" * 44


def _tls(name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context with a certificate for ``name``, client context trusting its CA)."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def _post(client_tls: ssl.SSLContext, url: str) -> webhook.Answer:
    async with httpx.AsyncClient(verify=client_tls, follow_redirects=False) as http:
        return await webhook.post(
            http,
            url,
            AllowList.parse("localhost"),
            secret=SECRET,
            msg_id="msg_tls",
            body='{"type":"job.succeeded"}',
            timeout=5.0,
            now=datetime.now(UTC),
        )


async def test_https_reaches_the_checked_address_and_verifies_the_names_certificate() -> None:
    server_tls, client_tls = _tls("localhost")
    with Receiver(server_tls) as receiver:
        answer = await _post(client_tls, f"https://localhost:{receiver.port}/hook")
    assert answer.ok, answer.error
    [got] = receiver.requests
    assert got.headers["host"] == f"localhost:{receiver.port}"
    assert got.verify(SECRET) == {"type": "job.succeeded"}


async def test_a_certificate_for_another_name_is_refused() -> None:
    server_tls, client_tls = _tls("elsewhere.example")
    with Receiver(server_tls) as receiver:
        answer = await _post(client_tls, f"https://localhost:{receiver.port}/hook")
    assert not answer.ok and answer.status_code is None
    assert "certificate" in (answer.error or "").lower() or "hostname" in (answer.error or "")
    assert receiver.requests == []
