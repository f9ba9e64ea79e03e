"""Workers: the loop (:mod:`.worker`), one attempt (:mod:`.executor`) and the process
supervisor (:mod:`.supervisor`)."""

from .worker import Worker

__all__ = ["Worker"]
