"""One webhook attempt: POST the stored body, signed, to the address the SSRF guard just
checked, with a timeout and without following redirects."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import httpx

from .. import __version__
from ..errors import NotifyTargetRefused
from ..retry import parse_retry_after
from . import signing
from .ssrf import AllowList, IPAddress, Target, check_url

USER_AGENT = f"offload-webhooks/{__version__}"


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got back."""

    duration_ms: float
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    """Seconds the receiver asked us to wait (``Retry-After`` on 429 or 503)."""
    refused: bool = False
    """The SSRF guard refused the target at send time: retrying cannot help."""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def pinned_request(
    target: Target, ip: IPAddress, body: bytes, headers: dict[str, str], timeout: float
) -> httpx.Request:
    """The request to ``target.url`` sent to ``ip`` (one of its checked addresses): the URL
    carries the address, the Host header and TLS (SNI and certificate check) keep the name."""
    parts = urlsplit(target.url)
    netloc = f"[{ip}]" if ip.version == 6 else str(ip)
    default_port = 443 if target.scheme == "https" else 80
    host_header = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != default_port:
        netloc += f":{target.port}"
        host_header += f":{target.port}"
    url = urlunsplit((target.scheme, netloc, parts.path or "/", parts.query, ""))
    extensions: dict[str, object] = {
        "timeout": httpx.Timeout(timeout).as_dict(),
    }
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    return httpx.Request(
        "POST",
        url,
        content=body,
        headers={
            **headers,
            "Host": host_header,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        },
        extensions=extensions,
    )


async def post(
    http: httpx.AsyncClient,
    url: str,
    allow: AllowList,
    *,
    secret: str,
    msg_id: str,
    body: str,
    timeout: float,
    now: datetime,
) -> Answer:
    """Check the target again (DNS may have changed), sign, send, classify the answer."""
    started = time.perf_counter()

    def took() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    try:
        target = await check_url(url, allow)
    except NotifyTargetRefused as exc:
        return Answer(took(), error=str(exc), refused=True)
    headers = signing.headers(secret, msg_id, now, body)
    for n, ip in enumerate(target.addresses, 1):
        request = pinned_request(target, ip, body.encode(), headers, timeout)
        try:
            response = await http.send(request, stream=True)
            await response.aclose()  # the receiver's body is not needed: only its status
            break
        except httpx.ConnectError as exc:
            if n < len(target.addresses):
                continue  # the next address of the name (IPv6 then IPv4, say)
            return Answer(took(), error=f"ConnectError: {exc}"[:500])
        except httpx.TimeoutException:
            return Answer(took(), error=f"timed out after {timeout:g} s")
        except httpx.HTTPError as exc:
            return Answer(took(), error=f"{type(exc).__name__}: {exc}"[:500])
    code = response.status_code
    error = None
    retry_after = None
    if 300 <= code < 400:
        error = f"redirect to {response.headers.get('location', '?')[:200]} not followed"
    elif code in (429, 503):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
    return Answer(took(), status_code=code, error=error, retry_after=retry_after)


def http_client() -> httpx.AsyncClient:
    """No redirects (a redirect could lead anywhere unchecked) and no proxies from the
    environment (a proxy would connect to the name, not to the checked address)."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False)
