"""The transitions a job may make, and nothing else.

Stores build their guarded updates from these sets (``WHERE status IN (…)``), so a change here
is a change everywhere; a transition not listed is refused by construction.
"""

from __future__ import annotations

from .errors import IllegalTransition
from .jobs import JobStatus

S = JobStatus

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    # A worker claims a waiting job once it is due; anyone may cancel it.
    S.SCHEDULED: frozenset({S.QUEUED, S.RUNNING, S.CANCELED}),
    S.QUEUED: frozenset({S.RUNNING, S.CANCELED}),
    S.RETRYING: frozenset({S.QUEUED, S.RUNNING, S.CANCELED}),
    # Only the worker holding the lease (fenced by attempt), or the reaper once it expired.
    # RUNNING → QUEUED is a graceful hand-back on shutdown.
    S.RUNNING: frozenset({S.SUCCEEDED, S.RETRYING, S.FAILED, S.CANCELED, S.QUEUED}),
    # A dead letter leaves only by an admin's replay.
    S.FAILED: frozenset({S.QUEUED}),
    S.SUCCEEDED: frozenset(),
    S.CANCELED: frozenset(),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in ALLOWED[current]


def ensure_transition(job_id: object, current: JobStatus, target: JobStatus) -> None:
    if not can_transition(current, target):
        raise IllegalTransition(job_id, current.value, target.value)


def sources(target: JobStatus) -> frozenset[JobStatus]:
    """The states from which ``target`` may be reached."""
    return frozenset(s for s, targets in ALLOWED.items() if target in targets)


CLAIMABLE = sources(S.RUNNING)
"""Waiting states a worker may claim from once ``run_at`` has passed."""
WAITING_CANCELABLE = sources(S.CANCELED) - {S.RUNNING}
"""Waiting states that cancel ends at once; a running job is asked to stop instead."""
PROMOTABLE = sources(S.QUEUED) - {S.RUNNING, S.FAILED}
"""Delayed states that become ``queued`` when due."""
REPLAYABLE = sources(S.QUEUED) & {S.FAILED}


def sql_list(states: frozenset[JobStatus]) -> str:
    """``'a','b'`` for an SQL ``IN (…)``: literal, so partial indexes still apply."""
    return ",".join(f"'{s.value}'" for s in sorted(states))
