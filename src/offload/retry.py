"""Backoff between attempts: exponential with full jitter, capped.

Before attempt n+1 (n = the attempt that just failed) a job waits a random time in
``[0, min(backoff_max, backoff_base * 2 ** (n - 1))]``. Full jitter spreads a burst of failures
(a dependency that went down for everyone at once) instead of retrying them in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime


def backoff_ceiling(attempt: int, base: float, cap: float) -> float:
    """The upper bound of the wait after failed attempt ``attempt`` (1-based)."""
    exponent = min(max(attempt - 1, 0), 62)  # 2**62 already exceeds any sensible cap
    return min(cap, base * (2**exponent))


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """A random wait in ``[0, backoff_ceiling(attempt, base, cap)]``; inject ``uniform`` to test."""
    return uniform(0.0, backoff_ceiling(attempt, base, cap))


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` (RFC 9110): delay seconds or an HTTP date; seconds from now, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    # The email package only for the rare HTTP date: every worker imports this module.
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
