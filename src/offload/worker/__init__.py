"""Workers: the loop (:mod:`.worker`), one attempt (:mod:`.executor`) and the process
supervisor (:mod:`.supervisor`).

``Worker`` is imported on first use, so that the supervisor process of ``offload worker
--processes N`` (which runs ``python -m offload.worker``) loads none of the job machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["Worker"]


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from .worker import Worker

        return Worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
