"""offload: turn slow API endpoints into reliable background jobs.

>>> from offload import Offload, Context, PermanentError
>>> app = Offload()
>>> @app.job("reports.generate", max_attempts=5, timeout=600)
... async def generate(ctx: Context, req: ReportRequest) -> dict: ...
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Offload
    from .config import Settings
    from .context import Context
    from .errors import (
        BrokerAccessDenied,
        BrokerUnavailable,
        Canceled,
        IdempotencyConflict,
        IllegalTransition,
        InvalidInput,
        LeaseLost,
        NotifyTargetRefused,
        OffloadError,
        PermanentError,
        Retry,
        SchemaOutdated,
        StoreUnavailable,
        UnknownJobType,
    )
    from .jobs import Job, JobError, JobEvent, JobStatus, Progress
    from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "BrokerAccessDenied",
    "BrokerUnavailable",
    "Canceled",
    "Context",
    "IdempotencyConflict",
    "IllegalTransition",
    "InvalidInput",
    "Job",
    "JobError",
    "JobEvent",
    "JobStatus",
    "LeaseLost",
    "NotifyTargetRefused",
    "Offload",
    "OffloadError",
    "PermanentError",
    "Progress",
    "Retry",
    "SchemaOutdated",
    "Settings",
    "StoreUnavailable",
    "UnknownJobType",
    "Worker",
]

# Where each public name lives. They are imported on first use (PEP 562), so that processes
# which need little (the worker supervisor, `offload --help`) load little.
_HOMES = {
    "Canceled": "errors",
    "Context": "context",
    "IdempotencyConflict": "errors",
    "IllegalTransition": "errors",
    "InvalidInput": "errors",
    "Job": "jobs",
    "JobError": "jobs",
    "JobEvent": "jobs",
    "JobStatus": "jobs",
    "LeaseLost": "errors",
    "NotifyTargetRefused": "errors",
    "Offload": "app",
    "OffloadError": "errors",
    "PermanentError": "errors",
    "Progress": "jobs",
    "Retry": "errors",
    "SchemaOutdated": "errors",
    "Settings": "config",
    "StoreUnavailable": "errors",
    "BrokerAccessDenied": "errors",
    "BrokerUnavailable": "errors",
    "UnknownJobType": "errors",
    "Worker": "worker",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
