"""The state machine: every allowed transition, a sample of refused ones, the derived sets."""

from __future__ import annotations

import itertools

import pytest

from offload import states
from offload.errors import IllegalTransition
from offload.jobs import TERMINAL, JobStatus

S = JobStatus

EXPECTED_ALLOWED = {
    (S.SCHEDULED, S.QUEUED),
    (S.SCHEDULED, S.RUNNING),
    (S.SCHEDULED, S.CANCELED),
    (S.QUEUED, S.RUNNING),
    (S.QUEUED, S.CANCELED),
    (S.RETRYING, S.QUEUED),
    (S.RETRYING, S.RUNNING),
    (S.RETRYING, S.CANCELED),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.RETRYING),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELED),
    (S.RUNNING, S.QUEUED),
    (S.FAILED, S.QUEUED),
}
ALL_PAIRS = set(itertools.product(JobStatus, JobStatus))


def test_every_status_has_an_entry_in_the_transition_table():
    assert set(states.ALLOWED) == set(JobStatus)


@pytest.mark.parametrize(("current", "target"), sorted(EXPECTED_ALLOWED), ids=str)
def test_every_allowed_transition_is_allowed(current: JobStatus, target: JobStatus):
    assert states.can_transition(current, target)
    states.ensure_transition("job-1", current, target)  # does not raise


def test_nothing_else_is_allowed():
    allowed = {(c, t) for c, t in ALL_PAIRS if states.can_transition(c, t)}

    assert allowed == EXPECTED_ALLOWED


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.QUEUED, S.SUCCEEDED),
        (S.QUEUED, S.FAILED),
        (S.QUEUED, S.QUEUED),
        (S.SCHEDULED, S.SUCCEEDED),
        (S.RETRYING, S.FAILED),
        (S.RUNNING, S.RUNNING),
        (S.RUNNING, S.SCHEDULED),
        (S.SUCCEEDED, S.QUEUED),
        (S.SUCCEEDED, S.FAILED),
        (S.CANCELED, S.QUEUED),
        (S.CANCELED, S.RUNNING),
        (S.FAILED, S.RUNNING),
        (S.FAILED, S.CANCELED),
    ],
    ids=str,
)
def test_an_illegal_transition_is_refused_with_illegal_transition(
    current: JobStatus, target: JobStatus
):
    assert not states.can_transition(current, target)
    with pytest.raises(IllegalTransition) as caught:
        states.ensure_transition("job-1", current, target)
    assert (caught.value.current, caught.value.target) == (current.value, target.value)
    assert caught.value.code == "illegal_transition"
    assert "job-1" in str(caught.value)


def test_terminal_states_have_no_way_out_except_replaying_a_failed_job():
    exits = {(c, t) for c, t in EXPECTED_ALLOWED if c in TERMINAL}

    assert {S.SUCCEEDED, S.FAILED, S.CANCELED} == TERMINAL
    assert exits == {(S.FAILED, S.QUEUED)}
    assert all(s.is_terminal for s in TERMINAL)
    assert not any(s.is_terminal for s in set(JobStatus) - TERMINAL)


def test_sources_lists_the_states_a_target_is_reached_from():
    assert states.sources(S.SUCCEEDED) == {S.RUNNING}
    assert states.sources(S.QUEUED) == {S.SCHEDULED, S.RETRYING, S.RUNNING, S.FAILED}
    assert states.sources(S.SCHEDULED) == frozenset()


def test_the_derived_state_sets():
    assert {S.SCHEDULED, S.QUEUED, S.RETRYING} == states.CLAIMABLE
    assert {S.SCHEDULED, S.QUEUED, S.RETRYING} == states.WAITING_CANCELABLE
    assert {S.SCHEDULED, S.RETRYING} == states.PROMOTABLE
    assert {S.FAILED} == states.REPLAYABLE
    assert not (states.CLAIMABLE | states.PROMOTABLE) & TERMINAL


def test_sql_list_quotes_each_state_in_a_stable_order():
    assert states.sql_list(frozenset({S.RETRYING, S.QUEUED})) == "'queued','retrying'"
    assert states.sql_list(states.REPLAYABLE) == "'failed'"
