"""Email on terminal states, over SMTP (``OFFLOAD_SMTP_URL``).

``smtp://user:password@host:587?from=jobs@example.com&starttls=true`` — ``smtps://`` for
implicit TLS (port 465); ``starttls`` is ``true`` (required), ``false`` (never) or absent (used
when the server offers it). The password never appears in logs or errors.
"""

from __future__ import annotations

import email.message
import json
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import NotifyTargetRefused

MAX_ADDRESS = 254


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    start_tls: bool | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("OFFLOAD_SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError("OFFLOAD_SMTP_URL has no host")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        starttls = query.get("starttls")
        if starttls not in (None, "true", "false"):
            raise ValueError("OFFLOAD_SMTP_URL: starttls must be true or false")
        use_tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if use_tls else 25),
            sender=query.get("from") or f"offload@{socket.gethostname()}",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=use_tls,
            start_tls=None if starttls is None else starttls == "true",
        )


def check_address(address: str) -> str:
    """A plausible single address (no display name, no header injection), else
    :class:`~offload.errors.NotifyTargetRefused`."""
    local, at, domain = address.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain.strip(".")
        or len(address) > MAX_ADDRESS
        or any(c.isspace() or c in '<>,;"()[]\\' for c in address)
        or not address.isprintable()
    ):
        raise NotifyTargetRefused(f"not an email address: {address[:100]!r}")
    return address


@dataclass(frozen=True, slots=True)
class Sent:
    duration_ms: float
    code: int | None = None
    """The SMTP reply code of a refusal (None: sent, or a connection problem)."""
    error: str | None = None
    unsendable: bool = False
    """The message itself cannot be built: retrying cannot help."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def permanent(self) -> bool:
        """A 5xx refusal or an unsendable message: retrying the same message cannot help."""
        return self.unsendable or (self.code is not None and self.code >= 500)


def message(sender: str, to: str, msg_id: str, payload: str) -> email.message.EmailMessage:
    """A short plain-text message about the job in ``payload`` (the webhook body)."""
    body = json.loads(payload)
    job = body["data"]
    msg = email.message.EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"[offload] job {job['type']} {job['status']}"
    msg["Message-ID"] = f"<{msg_id}@offload>"  # the same on every attempt: receivers dedupe
    lines = [
        f"Job {job['id']} ({job['type']}) is {job['status']}.",
        "",
        f"Queue: {job['queue']}",
        f"Attempts: {job['attempt']} of {job['max_attempts']}",
        f"Finished: {job.get('finished_at') or '-'}",
    ]
    if job.get("error"):
        lines.append(f"Error: {job['error']['code']}: {job['error']['message']}")
    msg.set_content("\n".join(lines) + "\n")
    return msg


async def send(smtp: SmtpSettings, to: str, msg_id: str, payload: str, timeout: float) -> Sent:
    import aiosmtplib  # here, not at the top: only workers that send email load it

    started = time.perf_counter()

    def took() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    try:
        msg = message(smtp.sender, to, msg_id, payload)
    except (ValueError, KeyError, TypeError) as exc:  # e.g. a line break in a header
        return Sent(took(), error=f"cannot build the message: {exc}"[:500], unsendable=True)
    try:
        await aiosmtplib.send(
            msg,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password,
            use_tls=smtp.use_tls,
            start_tls=smtp.start_tls,
            timeout=timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refusal = exc.recipients[0]
        return Sent(took(), refusal.code, f"recipient refused: {refusal.code} {refusal.message}")
    except aiosmtplib.SMTPResponseException as exc:
        return Sent(took(), exc.code, f"SMTP {exc.code}: {exc.message}"[:500])
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return Sent(took(), None, f"{type(exc).__name__}: {exc}"[:500])
    return Sent(took())
