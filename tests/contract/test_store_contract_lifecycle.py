"""The store contract, part two: a job's life after it is claimed.

Event ordering, fencing of stale attempts, heartbeats, outcomes, release, promotion, cancel
and replay. Every test takes the ``store`` fixture and so runs against SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from offload.errors import IllegalTransition
from offload.jobs import Job, JobError, JobStatus, Progress
from offload.store import Lease, Outcome, Store
from tests.conftest import wait_until
from tests.contract.helpers import claim, claim_one, get, insert

SHORT_LEASE = 0.2


async def reap(store: Store) -> int:
    """Wait until at least one expired lease has been reaped (no bare sleeps)."""
    return await wait_until(lambda: store.jobs_reap_expired(), timeout=10)


async def expire_and_reclaim(store: Store, **insert_options: object) -> tuple[Job, Job]:
    """Attempt 1 loses its lease and the job is claimed again: (stale, current)."""
    await insert(store, **insert_options)
    stale = await claim_one(store, lease_seconds=SHORT_LEASE, worker_id="slow")
    assert await reap(store) == 1
    current = await claim_one(store, worker_id="fresh")
    assert current.id == stale.id
    return stale, current


async def event_types(store: Store, job: Job) -> list[str]:
    return [e.type for e in await store.job_events(job.id)]


# -- events ----------------------------------------------------------------------------------


async def test_events_are_numbered_one_two_three_without_gaps_across_a_whole_run(
    store: Store,
):
    await insert(store, max_attempts=3)
    job = await claim_one(store)
    assert await store.job_progress(job.id, 1, 10, "first")
    assert await store.job_checkpoint(job.id, 1, {"step": 1})
    assert await store.job_finish_many(
        [Outcome(job.id, 1, JobStatus.RETRYING, error_code="e", error_message="m")]
    ) == [job.id]
    job = await claim_one(store)
    assert await store.job_progress(job.id, 2, 50.5, None)
    assert await store.job_finish_many([Outcome(job.id, 2, JobStatus.SUCCEEDED, result="{}")])

    events = await store.job_events(job.id)

    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [(e.type, e.status, e.attempt) for e in events] == [
        ("job.queued", JobStatus.QUEUED, 0),
        ("job.running", JobStatus.RUNNING, 1),
        ("job.progress", JobStatus.RUNNING, 1),
        ("job.retrying", JobStatus.RETRYING, 1),
        ("job.running", JobStatus.RUNNING, 2),
        ("job.progress", JobStatus.RUNNING, 2),
        ("job.succeeded", JobStatus.SUCCEEDED, 2),
    ]
    assert events[2].data == {"percent": 10, "message": "first"}
    assert events[3].data["error"] == {"code": "e", "message": "m"}
    assert all(e.job_id == job.id and e.created_at.tzinfo is not None for e in events)
    assert (await get(store, job)).event_seq == 7
    assert [e.seq for e in await store.job_events(job.id, after_seq=5)] == [6, 7]


async def test_a_checkpoint_is_stored_without_adding_an_event(store: Store):
    await insert(store)
    job = await claim_one(store)

    assert await store.job_checkpoint(job.id, 1, {"month": 4, "done": [1, 2, 3]})

    stored = await get(store, job)
    assert stored.checkpoint == {"month": 4, "done": [1, 2, 3]}
    assert await event_types(store, job) == ["job.queued", "job.running"]


async def test_progress_is_stored_on_the_job(store: Store):
    await insert(store)
    job = await claim_one(store)

    assert await store.job_progress(job.id, 1, 42.5, "almost half")

    assert (await get(store, job)).progress == Progress(42.5, "almost half")


# -- leases and fencing --------------------------------------------------------------------


async def test_an_expired_lease_is_reaped_back_to_retrying_and_due_at_once(store: Store):
    await insert(store, max_attempts=3)
    job = await claim_one(store, lease_seconds=SHORT_LEASE)

    assert await reap(store) == 1

    reaped = await get(store, job)
    assert reaped.status is JobStatus.RETRYING
    assert reaped.attempt == 1
    assert reaped.error is not None and reaped.error.code == "lease_expired"
    assert reaped.lease_expires_at is None and reaped.worker_id is None
    assert reaped.finished_at is None
    assert reaped.run_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert (await store.job_events(job.id))[-1].type == "job.retrying"
    assert await store.jobs_reap_expired() == 0


async def test_an_expired_lease_on_the_last_attempt_fails_the_job_as_lease_expired(
    store: Store,
):
    await insert(store, max_attempts=1)
    job = await claim_one(store, lease_seconds=SHORT_LEASE)

    await reap(store)

    failed = await get(store, job)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.code == "lease_expired"
    assert failed.finished_at is not None
    assert await claim(store) == []
    assert (await store.job_events(job.id))[-1].type == "job.failed"


async def test_an_expired_lease_after_a_cancel_request_cancels_the_job(store: Store):
    await insert(store, max_attempts=3)
    job = await claim_one(store, lease_seconds=SHORT_LEASE)
    await store.job_cancel(job.id, "admin")

    await reap(store)

    canceled = await get(store, job)
    assert canceled.status is JobStatus.CANCELED
    assert canceled.finished_at is not None
    assert await claim(store) == []
    assert (await store.job_events(job.id))[-1].type == "job.canceled"


async def test_a_reclaimed_job_runs_the_next_attempt(store: Store):
    stale, current = await expire_and_reclaim(store, max_attempts=3)

    assert (stale.attempt, current.attempt) == (1, 2)
    assert current.status is JobStatus.RUNNING
    assert current.worker_id == "fresh"


async def test_a_stale_attempt_cannot_write_progress_after_the_job_was_claimed_again(
    store: Store,
):
    stale, current = await expire_and_reclaim(store)
    before = await get(store, current)
    events_before = await store.job_events(current.id)

    assert await store.job_progress(stale.id, stale.attempt, 99, "stale") is False

    assert await get(store, current) == before
    assert await store.job_events(current.id) == events_before


async def test_a_stale_attempt_cannot_save_a_checkpoint_after_the_job_was_claimed_again(
    store: Store,
):
    stale, current = await expire_and_reclaim(store)
    assert await store.job_checkpoint(current.id, current.attempt, {"by": "current"})
    before = await get(store, current)

    assert await store.job_checkpoint(stale.id, stale.attempt, {"by": "stale"}) is False

    assert await get(store, current) == before
    assert before.checkpoint == {"by": "current"}


async def test_a_stale_attempt_cannot_finish_the_job_after_it_was_claimed_again(store: Store):
    stale, current = await expire_and_reclaim(store)
    before = await get(store, current)
    events_before = await store.job_events(current.id)

    for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.RETRYING, JobStatus.CANCELED):
        written = await store.job_finish_many(
            [Outcome(stale.id, stale.attempt, status, error_code="stale", error_message="x")]
            if status is not JobStatus.SUCCEEDED
            else [Outcome(stale.id, stale.attempt, status, result='"stale"')]
        )
        assert written == []

    assert await get(store, current) == before
    assert await store.job_events(current.id) == events_before


async def test_a_stale_attempt_cannot_release_the_job_after_it_was_claimed_again(store: Store):
    stale, current = await expire_and_reclaim(store)
    before = await get(store, current)

    assert await store.job_release(Lease(stale.id, stale.attempt), "shutdown") is False

    assert await get(store, current) == before


async def test_a_stale_attempt_cannot_write_once_the_reaper_took_its_job_back(
    store: Store,
):
    await insert(store)
    job = await claim_one(store, lease_seconds=SHORT_LEASE)
    await reap(store)
    before = await get(store, job)

    assert await store.job_progress(job.id, 1, 50, None) is False
    assert await store.job_checkpoint(job.id, 1, 1) is False
    assert await store.job_finish_many([Outcome(job.id, 1, JobStatus.SUCCEEDED)]) == []
    assert await store.job_release(Lease(job.id, 1), "shutdown") is False

    assert await get(store, job) == before


async def test_a_heartbeat_extends_the_lease_so_the_reaper_leaves_the_job_alone(store: Store):
    await insert(store)
    await insert(store)
    kept, dropped = await claim(store, lease_seconds=SHORT_LEASE)

    result = await store.job_heartbeat([Lease(kept.id, kept.attempt)], lease_seconds=30)

    assert result.lost == frozenset() and result.cancel_requested == frozenset()
    extended = await get(store, kept)
    assert extended.lease_expires_at is not None and kept.lease_expires_at is not None
    assert extended.lease_expires_at > kept.lease_expires_at + timedelta(seconds=20)
    assert await reap(store) == 1
    assert (await get(store, dropped)).status is JobStatus.RETRYING
    assert (await get(store, kept)).status is JobStatus.RUNNING


async def test_a_heartbeat_reports_lost_leases_and_does_not_extend_them(store: Store):
    stale, current = await expire_and_reclaim(store)
    await insert(store)
    held = await claim_one(store)
    await store.job_finish_many([Outcome(held.id, held.attempt, JobStatus.SUCCEEDED)])
    before = await get(store, current)

    result = await store.job_heartbeat(
        [Lease(stale.id, stale.attempt), Lease(held.id, held.attempt), Lease(uuid.uuid4(), 1)],
        lease_seconds=300,
    )

    assert stale.id in result.lost and held.id in result.lost
    assert len(result.lost) == 3
    assert (await get(store, current)).lease_expires_at == before.lease_expires_at


async def test_a_heartbeat_reports_cancel_requests_for_leases_still_held(store: Store):
    await insert(store)
    await insert(store)
    asked, other = await claim(store)
    await store.job_cancel(asked.id, "admin")

    result = await store.job_heartbeat(
        [Lease(asked.id, asked.attempt), Lease(other.id, other.attempt)], lease_seconds=30
    )

    assert result.cancel_requested == frozenset({asked.id})
    assert result.lost == frozenset()


async def test_a_heartbeat_with_no_leases_reports_nothing(store: Store):
    result = await store.job_heartbeat([], lease_seconds=30)

    assert result.lost == frozenset() and result.cancel_requested == frozenset()


# -- outcomes -------------------------------------------------------------------------------


async def test_finish_many_writes_every_kind_of_outcome_in_one_call_and_skips_fenced_ones(
    store: Store,
):
    for _ in range(5):
        await insert(store, max_attempts=3)
    ok, retry, fail, cancel, fenced = await claim(store)
    started = datetime.now(UTC)

    written = await store.job_finish_many(
        [
            Outcome(ok.id, 1, JobStatus.SUCCEEDED, result=json.dumps({"total": 12, "ok": True})),
            Outcome(
                retry.id,
                1,
                JobStatus.RETRYING,
                error_code="timeout",
                error_message="upstream timed out",
                retry_delay=60,
            ),
            Outcome(
                fail.id,
                1,
                JobStatus.FAILED,
                error_code="permanent_error",
                error_message="customer 42 does not exist",
                error_detail="Traceback (most recent call last): ...",
            ),
            Outcome(cancel.id, 1, JobStatus.CANCELED, error_code="canceled", error_message="c"),
            Outcome(fenced.id, 2, JobStatus.SUCCEEDED, result="1"),
        ]
    )

    assert sorted(written) == sorted([ok.id, retry.id, fail.id, cancel.id])

    succeeded = await get(store, ok)
    assert succeeded.status is JobStatus.SUCCEEDED
    assert succeeded.result == {"total": 12, "ok": True}
    assert succeeded.error is None
    assert succeeded.progress.percent == 100
    assert succeeded.finished_at is not None and succeeded.lease_expires_at is None

    retrying = await get(store, retry)
    assert retrying.status is JobStatus.RETRYING
    assert retrying.error == JobError("timeout", "upstream timed out")
    assert retrying.run_at >= started + timedelta(seconds=55)
    assert retrying.finished_at is None and retrying.lease_expires_at is None

    failed = await get(store, fail)
    assert failed.status is JobStatus.FAILED
    assert failed.error == JobError("permanent_error", "customer 42 does not exist")
    assert failed.error_detail == "Traceback (most recent call last): ..."
    assert failed.finished_at is not None

    canceled = await get(store, cancel)
    assert canceled.status is JobStatus.CANCELED
    assert canceled.finished_at is not None

    untouched = await get(store, fenced)
    assert untouched.status is JobStatus.RUNNING and untouched.attempt == 1

    for job, status in [
        (ok, "succeeded"),
        (retry, "retrying"),
        (fail, "failed"),
        (cancel, "canceled"),
    ]:
        last = (await store.job_events(job.id))[-1]
        assert (last.seq, last.type, last.attempt) == (3, f"job.{status}", 1)
    assert await event_types(store, fenced) == ["job.queued", "job.running"]


async def test_a_retrying_job_is_not_claimable_before_its_retry_delay_passes(store: Store):
    await insert(store)
    job = await claim_one(store)
    await store.job_finish_many(
        [Outcome(job.id, 1, JobStatus.RETRYING, error_code="e", error_message="m", retry_delay=60)]
    )

    assert await claim(store) == []


async def test_a_retrying_job_with_no_delay_is_claimed_again_with_the_next_attempt(
    store: Store,
):
    await insert(store)
    job = await claim_one(store)
    await store.job_finish_many(
        [Outcome(job.id, 1, JobStatus.RETRYING, error_code="e", error_message="m")]
    )

    again = await claim_one(store)

    assert (again.id, again.attempt) == (job.id, 2)


@pytest.mark.parametrize(
    "status", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SCHEDULED], ids=str
)
async def test_finishing_with_a_status_that_is_not_an_outcome_is_refused(
    store: Store, status: JobStatus
):
    await insert(store)
    job = await claim_one(store)
    await insert(store)
    other = await claim_one(store)

    with pytest.raises(IllegalTransition):
        await store.job_finish_many(
            [Outcome(other.id, 1, JobStatus.SUCCEEDED), Outcome(job.id, 1, status)]
        )

    assert await get(store, job) == job
    assert (await get(store, other)).status is JobStatus.RUNNING


async def test_finish_many_with_no_outcomes_writes_nothing(store: Store):
    assert await store.job_finish_many([]) == []


async def test_a_finished_job_cannot_be_finished_again(store: Store):
    await insert(store)
    job = await claim_one(store)
    await store.job_finish_many([Outcome(job.id, 1, JobStatus.SUCCEEDED, result="1")])
    before = await get(store, job)

    again = await store.job_finish_many(
        [Outcome(job.id, 1, JobStatus.FAILED, error_code="late", error_message="late")]
    )

    assert again == []
    assert await get(store, job) == before


# -- release and promotion ------------------------------------------------------------------


async def test_a_released_job_is_queued_again_without_spending_an_attempt(store: Store):
    await insert(store, max_attempts=3)
    job = await claim_one(store)

    assert await store.job_release(Lease(job.id, job.attempt), "worker shutting down") is True

    released = await get(store, job)
    assert released.status is JobStatus.QUEUED
    assert (released.attempt, released.max_attempts) == (1, 4)
    assert released.lease_expires_at is None and released.worker_id is None
    last = (await store.job_events(job.id))[-1]
    assert (last.type, last.status, last.attempt) == ("job.queued", JobStatus.QUEUED, 1)
    assert last.data == {"reason": "worker shutting down"}
    again = await claim_one(store)
    assert (again.attempt, again.max_attempts - again.attempt) == (2, 2)


async def test_releasing_a_job_that_is_not_running_returns_false(store: Store):
    job = await insert(store)

    assert await store.job_release(Lease(job.id, 0), "shutdown") is False
    assert await store.job_release(Lease(uuid.uuid4(), 1), "shutdown") is False
    assert await get(store, job) == job


async def test_promotion_queues_due_scheduled_and_retrying_jobs_and_leaves_the_rest(
    store: Store,
):
    due_soon = await insert(store, delay=0.2)
    later = await insert(store, delay=60)
    await insert(store)
    retried = await claim_one(store)
    await store.job_finish_many(
        [Outcome(retried.id, 1, JobStatus.RETRYING, error_code="e", error_message="m")]
    )
    await insert(store, type="other.type")

    promoted = 0

    async def both_promoted() -> bool:
        nonlocal promoted
        promoted += await store.jobs_promote_due()
        return promoted >= 2

    await wait_until(both_promoted, timeout=10)

    assert promoted == 2
    assert (await get(store, due_soon)).status is JobStatus.QUEUED
    assert (await get(store, retried)).status is JobStatus.QUEUED
    assert (await get(store, later)).status is JobStatus.SCHEDULED
    assert (await store.job_events(due_soon.id))[-1].type == "job.queued"
    assert (await store.job_events(retried.id))[-1].attempt == 1
    assert await store.jobs_promote_due() == 0


# -- cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0, 60], ids=["queued", "scheduled"])
async def test_cancel_ends_a_waiting_job_at_once(store: Store, delay: float):
    job = await insert(store, delay=delay)

    canceled = await store.job_cancel(job.id, "alice")

    assert canceled is not None
    assert canceled.status is JobStatus.CANCELED
    assert canceled.finished_at is not None
    assert canceled.error is not None and canceled.error.code == "canceled"
    assert await get(store, job) == canceled
    last = (await store.job_events(job.id))[-1]
    assert (last.seq, last.type) == (2, "job.canceled")
    assert last.data.get("actor") == "alice"
    assert await claim(store) == []


async def test_cancel_ends_a_retrying_job_at_once(store: Store):
    await insert(store)
    job = await claim_one(store)
    await store.job_finish_many(
        [Outcome(job.id, 1, JobStatus.RETRYING, error_code="e", error_message="m", retry_delay=60)]
    )

    canceled = await store.job_cancel(job.id, None)

    assert canceled is not None and canceled.status is JobStatus.CANCELED


async def test_cancel_asks_a_running_job_to_stop_and_the_worker_ends_it_canceled(
    store: Store,
):
    await insert(store)
    job = await claim_one(store)

    asked = await store.job_cancel(job.id, "alice")
    asked_again = await store.job_cancel(job.id, "bob")

    assert asked is not None and asked_again is not None
    assert asked.status is JobStatus.RUNNING and asked.cancel_requested is True
    assert asked_again.status is JobStatus.RUNNING and asked_again.cancel_requested is True
    assert await event_types(store, job) == ["job.queued", "job.running", "job.cancel_requested"]
    written = await store.job_finish_many(
        [Outcome(job.id, 1, JobStatus.CANCELED, error_code="canceled", error_message="stopped")]
    )
    assert written == [job.id]
    assert (await get(store, job)).status is JobStatus.CANCELED


async def test_canceling_an_unknown_job_returns_none(store: Store):
    assert await store.job_cancel(uuid.uuid4(), None) is None


@pytest.mark.parametrize(
    "outcome", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED], ids=str
)
async def test_canceling_a_finished_job_is_refused(store: Store, outcome: JobStatus):
    await insert(store)
    job = await claim_one(store)
    await store.job_finish_many(
        [Outcome(job.id, 1, outcome, error_code=None if outcome is JobStatus.SUCCEEDED else "x")]
    )
    before = await get(store, job)

    with pytest.raises(IllegalTransition):
        await store.job_cancel(job.id, "alice")

    assert await get(store, job) == before


# -- replay ---------------------------------------------------------------------------------


async def _dead_letter(store: Store, **insert_options: object) -> Job:
    await insert(store, max_attempts=1, **insert_options)
    job = await claim_one(store)
    assert await store.job_checkpoint(job.id, 1, {"page": 3})
    await store.job_finish_many(
        [
            Outcome(
                job.id,
                1,
                JobStatus.FAILED,
                error_code="boom",
                error_message="it broke",
                error_detail="tb",
            )
        ]
    )
    failed = await get(store, job)
    assert failed.status is JobStatus.FAILED
    return failed


async def test_replay_puts_a_failed_job_back_in_the_queue_with_more_attempts(store: Store):
    failed = await _dead_letter(store, input={"year": 2023})

    replayed = await store.job_replay(failed.id, None, 2, "admin")

    assert replayed is not None
    assert replayed.status is JobStatus.QUEUED
    assert (replayed.attempt, replayed.max_attempts) == (1, 3)
    assert replayed.error is None and replayed.finished_at is None
    assert replayed.input == {"year": 2023}
    assert replayed.checkpoint == {"page": 3}
    assert await get(store, failed) == replayed
    last = (await store.job_events(failed.id))[-1]
    assert (last.type, last.status) == ("job.queued", JobStatus.QUEUED)
    assert last.data["action"] == "replay" and last.data["actor"] == "admin"
    again = await claim_one(store)
    assert (again.id, again.attempt) == (failed.id, 2)


async def test_replay_with_new_input_replaces_the_input_and_clears_the_checkpoint(
    store: Store,
):
    failed = await _dead_letter(store, input={"year": 1900})

    replayed = await store.job_replay(failed.id, {"year": 2024}, 1, "admin")

    assert replayed is not None
    assert replayed.input == {"year": 2024}
    assert replayed.checkpoint is None
    assert replayed.max_attempts == 2
    assert (await store.job_events(failed.id))[-1].data["input_changed"] is True


async def test_a_replayed_job_counts_its_attempts_on_from_where_it_stopped(store: Store):
    failed = await _dead_letter(store)
    await store.job_replay(failed.id, None, 1, None)
    second = await claim_one(store)
    await store.job_finish_many(
        [Outcome(second.id, 2, JobStatus.FAILED, error_code="again", error_message="m")]
    )

    replayed = await store.job_replay(failed.id, None, 3, None)

    assert replayed is not None and (replayed.attempt, replayed.max_attempts) == (2, 5)
    third = await claim_one(store)
    assert third.attempt == 3
    assert await store.job_finish_many([Outcome(failed.id, 2, JobStatus.SUCCEEDED)]) == []


async def test_replaying_an_unknown_job_returns_none(store: Store):
    assert await store.job_replay(uuid.uuid4(), None, 1, None) is None


async def test_only_failed_jobs_can_be_replayed(store: Store):
    queued = await insert(store)
    await insert(store, type="t.ok")
    ok = await claim_one(store, types=["t.ok"])
    await store.job_finish_many([Outcome(ok.id, 1, JobStatus.SUCCEEDED)])
    await insert(store, type="t.run")
    running = await claim_one(store, types=["t.run"])

    for job in (queued, ok, running):
        before = await get(store, job)
        with pytest.raises(IllegalTransition):
            await store.job_replay(job.id, None, 1, None)
        assert await get(store, job) == before
