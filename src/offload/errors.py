"""Every error offload raises derives from :class:`OffloadError`.

Handlers steer the worker with two of them: raise :class:`PermanentError` to fail fast (no
retry, straight to the dead-letter list) or :class:`Retry` to ask for another attempt, optionally
after a given delay. Any other exception a handler raises is treated as transient.
"""

from __future__ import annotations

from typing import Any


class OffloadError(Exception):
    """The root of offload's errors. ``code`` is a stable, public, machine-readable name."""

    code = "offload_error"


class PermanentError(OffloadError):
    """Raised by a handler: this job cannot succeed by retrying, dead-letter it now.

    >>> raise PermanentError("customer 42 does not exist")
    """

    code = "permanent_error"


class Retry(OffloadError):
    """Raised by a handler: try again, after ``delay`` seconds if given (else the backoff).

    The attempt still counts against ``max_attempts``.

    >>> raise Retry(delay=30)  # the rate limit resets in 30 s
    """

    code = "retry_requested"

    def __init__(self, message: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(message)
        if delay is not None and delay < 0:
            raise ValueError("Retry delay must be >= 0")
        self.delay = delay


class Canceled(OffloadError):
    """Raised inside a handler by ``ctx.raise_if_cancel_requested()``; ends the job ``canceled``."""

    code = "canceled"


class LeaseLost(OffloadError):
    """This attempt no longer owns its job (its lease expired and another attempt took over).

    Raised from ``ctx.progress`` / ``ctx.save_checkpoint`` so a stale handler stops early; its
    writes would be refused anyway (fencing).
    """

    code = "lease_lost"


class UnknownJobType(OffloadError, LookupError):
    """No handler is registered under this job type."""

    code = "unknown_job_type"

    def __init__(self, job_type: str, known: list[str]) -> None:
        listing = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown job type {job_type!r}; registered types: {listing}")
        self.job_type = job_type


class InvalidInput(OffloadError, ValueError):
    """The input does not match the job type's model. ``errors`` lists each bad field."""

    code = "invalid_input"

    def __init__(self, job_type: str, errors: list[dict[str, Any]]) -> None:
        fields = "; ".join(f"{e['field'] or '(input)'}: {e['message']}" for e in errors)
        super().__init__(f"invalid input for {job_type!r}: {fields}")
        self.job_type = job_type
        self.errors = errors


class IdempotencyConflict(OffloadError):
    """The idempotency key was already used for a different request."""

    code = "idempotency_key_reused"


class IllegalTransition(OffloadError):
    """The job is not in a state from which the requested change is allowed."""

    code = "illegal_transition"

    def __init__(self, job_id: object, current: str, target: str) -> None:
        super().__init__(f"job {job_id} is {current}; it cannot become {target}")
        self.current = current
        self.target = target


class StoreUnavailable(OffloadError):
    """The database cannot be reached. The message names the URL without its password."""

    code = "store_unavailable"


class BrokerUnavailable(OffloadError):
    """The broker cannot be reached or refused us. The job rows are stored already, so nothing
    is lost: the outbox publishes them once it is back. The message names the URL without its
    password."""

    code = "broker_unavailable"


class BrokerAccessDenied(BrokerUnavailable):
    """The broker was reached but refused this identity what its side needs (a publisher
    that may not publish, a consumer that may not consume, a wrong password). Retrying will
    not help: fix the credentials or permissions (``offload broker setup``)."""

    code = "broker_access_denied"


class SchemaOutdated(OffloadError):
    """The database schema is older than this version of offload: run ``offload db upgrade``."""

    code = "schema_outdated"


class NotifyTargetRefused(OffloadError, ValueError):
    """A webhook URL or email address that offload will not deliver to: a bad scheme, a name
    that does not resolve, or an address in a private, loopback, link-local or otherwise
    non-public range that ``OFFLOAD_WEBHOOK_ALLOWED_HOSTS`` does not allow (the SSRF guard)."""

    code = "notify_target_refused"
