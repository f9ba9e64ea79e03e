"""offload: turn slow API endpoints into reliable background jobs.

>>> from offload import Offload, Context, PermanentError
>>> app = Offload()
>>> @app.job("reports.generate", max_attempts=5, timeout=600)
... async def generate(ctx: Context, req: ReportRequest) -> dict: ...
"""

from .app import Offload
from .config import Settings
from .context import Context
from .errors import (
    Canceled,
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    LeaseLost,
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
