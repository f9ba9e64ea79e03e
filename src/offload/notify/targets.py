"""Checking ``options.notify`` when a job is submitted: the SSRF guard for the webhook, a
plausible address for the email, and a configured SMTP server to send it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Settings
from ..errors import NotifyTargetRefused
from ..store.notify import Notify
from .mail import check_address
from .ssrf import AllowList, check_url

MAX_URL = 2000


def as_notify(value: Notify | Mapping[str, Any] | None) -> Notify | None:
    """``Notify`` from ``{"webhook": …, "email": …}`` (either may be left out)."""
    if value is None or isinstance(value, Notify):
        return value or None
    unknown = set(value) - {"webhook", "email"}
    if unknown:
        raise NotifyTargetRefused(
            f"notify takes webhook and email, not {', '.join(sorted(unknown))}"
        )
    for key in ("webhook", "email"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise NotifyTargetRefused(f"notify.{key} must be a string")
    return Notify(webhook=value.get("webhook"), email=value.get("email")) or None


async def check_notify(
    value: Notify | Mapping[str, Any] | None, settings: Settings
) -> Notify | None:
    """The checked targets, or :class:`~offload.errors.NotifyTargetRefused` saying why not."""
    notify = as_notify(value)
    if notify is None:
        return None
    if notify.webhook is not None:
        if len(notify.webhook) > MAX_URL:
            raise NotifyTargetRefused(f"webhook URL is longer than {MAX_URL} characters")
        await check_url(notify.webhook, AllowList.parse(settings.webhook_allowed_hosts))
    if notify.email is not None:
        check_address(notify.email)
        if not settings.smtp_url:
            raise NotifyTargetRefused(
                "email notifications are not configured on this server (OFFLOAD_SMTP_URL)"
            )
    return notify
