"""The store contract, part one: submitting, reading, claiming, idempotency, listing, queues.

Every test takes the ``store`` fixture and so runs unchanged against SQLite and PostgreSQL.
The worker-side lifecycle (fencing, outcomes, cancel, replay) is in
``test_store_contract_lifecycle.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from offload.errors import IdempotencyConflict
from offload.jobs import JobError, JobStatus, Progress
from offload.store import JobFilter, Outcome, Store
from tests.conftest import wait_until
from tests.contract.helpers import TTL, claim, claim_one, get, insert, more_stores, new_job

# -- insert and get --------------------------------------------------------------------------


async def test_an_inserted_job_is_queued_with_its_fields_and_can_be_read_back(store: Store):
    before = datetime.now(UTC) - timedelta(seconds=5)
    new = new_job(
        "reports.generate",
        queue="reports",
        priority=7,
        input={"year": 2024, "tags": ["a", "b"], "nested": {"x": 1.5}},
        max_attempts=5,
        owner="tenant-a",
        idempotency_key="key-1",
        request_hash="hash-1",
    )
    job, created = await store.job_insert(new, TTL)

    assert created is True
    assert job.id == new.id
    assert job.type == "reports.generate"
    assert job.queue == "reports"
    assert job.priority == 7
    assert job.input == {"year": 2024, "tags": ["a", "b"], "nested": {"x": 1.5}}
    assert job.status is JobStatus.QUEUED
    assert job.attempt == 0
    assert job.max_attempts == 5
    assert job.owner == "tenant-a"
    assert job.idempotency_key == "key-1"
    assert job.progress == Progress(0.0, None)
    assert job.checkpoint is None
    assert job.result is None
    assert job.error is None
    assert job.cancel_requested is False
    assert job.started_at is None
    assert job.finished_at is None
    assert job.lease_expires_at is None
    assert job.worker_id is None
    assert job.event_seq == 1
    assert before < job.created_at < datetime.now(UTC) + timedelta(seconds=5)
    assert job.created_at.tzinfo is not None
    assert job.run_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert await store.job_get(job.id) == job


async def test_getting_an_unknown_job_returns_none(store: Store):
    assert await store.job_get(uuid.uuid4()) is None


async def test_an_inserted_job_logs_a_queued_event(store: Store):
    job = await insert(store)

    [event] = await store.job_events(job.id)
    assert event.job_id == job.id
    assert event.seq == 1
    assert event.type == "job.queued"
    assert event.status is JobStatus.QUEUED
    assert event.attempt == 0


async def test_a_job_with_a_delay_is_scheduled_for_later_and_logs_a_scheduled_event(
    store: Store,
):
    job = await insert(store, delay=60)

    assert job.status is JobStatus.SCHEDULED
    assert job.run_at > datetime.now(UTC) + timedelta(seconds=50)
    assert job.run_at - job.created_at >= timedelta(seconds=59)
    [event] = await store.job_events(job.id)
    assert (event.type, event.status) == ("job.scheduled", JobStatus.SCHEDULED)


async def test_insert_many_stores_every_job_in_one_call_each_with_its_first_event(
    store: Store,
):
    news = [new_job(input={"i": i}, priority=i % 3) for i in range(20)]
    news.append(new_job(input={"i": "later"}, delay=60))

    jobs = await store.job_insert_many(news)

    assert {j.id for j in jobs} == {n.id for n in news}
    by_id = {j.id: j for j in jobs}
    for n in news:
        stored = await store.job_get(n.id)
        assert stored == by_id[n.id]
        assert stored.input == n.input
        assert stored.priority == n.priority
        expected = JobStatus.SCHEDULED if n.delay else JobStatus.QUEUED
        assert stored.status is expected
        [event] = await store.job_events(n.id)
        assert (event.seq, event.type) == (1, f"job.{expected.value}")


async def test_insert_many_returns_the_times_stored_for_each_job_and_its_first_event(
    store: Store,
):
    # PostgreSQL leaves these timestamps to the server (column defaults) when nothing is
    # delayed: the snapshots returned must still be exactly what was stored.
    before = datetime.now(UTC) - timedelta(seconds=5)
    jobs = await store.job_insert_many([new_job(input={"i": i}) for i in range(10)])

    for job in jobs:
        stored = await store.job_get(job.id)
        assert stored == job
        assert before <= job.created_at == job.updated_at == job.run_at
        [event] = await store.job_events(job.id)
        assert event.created_at == job.created_at
    assert len({job.created_at for job in jobs}) == 1  # one statement, one instant


async def test_insert_many_with_nothing_to_insert_returns_an_empty_list(store: Store):
    assert await store.job_insert_many([]) == []


# -- claiming ----------------------------------------------------------------------------------


async def test_a_claim_makes_the_job_running_with_the_next_attempt_and_a_lease(store: Store):
    job = await insert(store)

    claimed = await claim_one(store, worker_id="w-7", lease_seconds=30)

    assert claimed.id == job.id
    assert claimed.status is JobStatus.RUNNING
    assert claimed.attempt == 1
    assert claimed.worker_id == "w-7"
    assert claimed.started_at is not None
    assert claimed.lease_expires_at is not None
    assert claimed.lease_expires_at > datetime.now(UTC) + timedelta(seconds=20)
    assert await get(store, job) == claimed
    assert await claim(store) == []


async def test_claims_take_higher_priority_first_then_the_oldest_run_at(store: Store):
    # The job with the smaller id is inserted last, so run_at (not id) must decide between
    # the two equal-priority jobs.
    older_id_later_run = new_job(priority=0)
    earlier_run = await insert(store, priority=0)
    await store.job_insert(older_id_later_run, TTL)
    urgent = await insert(store, priority=10)
    low = await insert(store, priority=-5)

    order = [(await claim_one(store)).id for _ in range(4)]

    assert order == [urgent.id, earlier_run.id, older_id_later_run.id, low.id]


async def test_one_claim_returns_a_batch_in_claim_order(store: Store):
    jobs = await store.job_insert_many([new_job(priority=p) for p in (1, 5, 3)])
    by_priority = sorted(jobs, key=lambda j: -j.priority)

    claimed = await claim(store, limit=10)

    assert [j.id for j in claimed] == [j.id for j in by_priority]


async def test_a_claim_takes_at_most_limit_jobs(store: Store):
    await store.job_insert_many([new_job() for _ in range(5)])

    sizes = [len(await claim(store, limit=2)) for _ in range(4)]

    assert sizes == [2, 2, 1, 0]


async def test_a_claim_takes_only_the_requested_types(store: Store):
    a = await insert(store, type="type.a")
    b = await insert(store, type="type.b")

    assert await claim(store, types=["type.c"]) == []
    assert [j.id for j in await claim(store, types=["type.a"])] == [a.id]
    assert [j.id for j in await claim(store, types=["type.a", "type.b"])] == [b.id]


async def test_a_claim_takes_only_the_requested_queues_or_all_queues_when_none(store: Store):
    q1 = await insert(store, queue="q1")
    q2 = await insert(store, queue="q2")
    q3 = await insert(store, queue="q3")

    assert [j.id for j in await claim(store, queues=["q2"])] == [q2.id]
    assert await claim(store, queues=["q2", "nope"]) == []
    assert {j.id for j in await claim(store, queues=None)} == {q1.id, q3.id}


async def test_a_delayed_job_is_not_claimable_before_it_is_due(store: Store):
    await insert(store, delay=60)

    assert await claim(store) == []


async def test_a_delayed_job_becomes_claimable_once_due(store: Store):
    job = await insert(store, delay=0.2)
    assert await claim(store) == []

    [claimed] = await wait_until(lambda: claim(store))

    assert claimed.id == job.id
    assert claimed.attempt == 1


async def test_a_paused_queue_is_skipped_and_claimable_again_after_resume(store: Store):
    paused = await insert(store, queue="paused")
    other = await insert(store, queue="other")

    await store.queue_set_paused("paused", True, "admin")
    assert [j.id for j in await claim(store)] == [other.id]
    assert await claim(store, queues=["paused"]) == []
    assert (await get(store, paused)).status is JobStatus.QUEUED

    await store.queue_set_paused("paused", False, "admin")
    assert [j.id for j in await claim(store)] == [paused.id]


async def test_concurrent_claimers_on_separate_connections_never_get_the_same_job(
    store: Store,
):
    total = 120
    jobs = await store.job_insert_many([new_job() for _ in range(total)])

    async with more_stores(store.url, 4) as claimers:

        async def drain(s: Store, name: str) -> list[uuid.UUID]:
            got: list[uuid.UUID] = []
            while batch := await claim(s, limit=3, worker_id=name):
                got.extend(j.id for j in batch)
            return got

        results = await asyncio.gather(*(drain(s, f"w{i}") for i, s in enumerate(claimers)))

    claimed = [job_id for got in results for job_id in got]
    assert len(claimed) == len(set(claimed)), "a job was claimed twice"
    assert set(claimed) == {j.id for j in jobs}
    for job in jobs:
        stored = await get(store, job)
        assert (stored.status, stored.attempt) == (JobStatus.RUNNING, 1)


# -- idempotency -------------------------------------------------------------------------------


async def test_the_same_idempotency_key_and_request_return_the_original_job(store: Store):
    first, created = await store.job_insert(
        new_job(idempotency_key="k", request_hash="h", input={"a": 1}), TTL
    )
    again, created_again = await store.job_insert(
        new_job(idempotency_key="k", request_hash="h", input={"a": 1}), TTL
    )

    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert len(await store.job_list(JobFilter())) == 1


async def test_the_same_idempotency_key_with_a_different_request_is_a_conflict(store: Store):
    await store.job_insert(new_job(idempotency_key="k", request_hash="h1"), TTL)

    with pytest.raises(IdempotencyConflict):
        await store.job_insert(new_job(idempotency_key="k", request_hash="h2"), TTL)
    assert len(await store.job_list(JobFilter())) == 1


async def test_idempotency_keys_belong_to_their_owner(store: Store):
    a, created_a = await store.job_insert(
        new_job(owner="tenant-a", idempotency_key="k", request_hash="h"), TTL
    )
    b, created_b = await store.job_insert(
        new_job(owner="tenant-b", idempotency_key="k", request_hash="other"), TTL
    )

    assert created_a and created_b
    assert a.id != b.id
    assert b.owner == "tenant-b"


async def test_an_expired_idempotency_key_can_be_used_again(store: Store):
    first, _ = await store.job_insert(new_job(idempotency_key="k", request_hash="h1"), 0.05)

    async def reuse() -> tuple[object, bool] | None:
        try:
            return await store.job_insert(new_job(idempotency_key="k", request_hash="h2"), TTL)
        except IdempotencyConflict:
            return None

    second, created = await wait_until(reuse)

    assert created is True
    assert second.id != first.id
    # Once reused, the key is held for the new request.
    with pytest.raises(IdempotencyConflict):
        await store.job_insert(new_job(idempotency_key="k", request_hash="h1"), TTL)
    repeat, created_again = await store.job_insert(
        new_job(idempotency_key="k", request_hash="h2"), TTL
    )
    assert (repeat.id, created_again) == (second.id, False)


async def test_concurrent_inserts_with_one_idempotency_key_create_exactly_one_job(
    store: Store,
):
    async with more_stores(store.url, 4) as stores:
        results = await asyncio.gather(
            *(
                stores[i % len(stores)].job_insert(
                    new_job(idempotency_key="race", request_hash="same"), TTL
                )
                for i in range(30)
            )
        )

    assert sum(created for _, created in results) == 1
    assert len({job.id for job, _ in results}) == 1
    [stored] = await store.job_list(JobFilter())
    assert stored.id == results[0][0].id


# -- listing ---------------------------------------------------------------------------------


async def _finish_failed(store: Store, job_type: str, code: str) -> None:
    job = await claim_one(store, types=[job_type])
    written = await store.job_finish_many(
        [Outcome(job.id, job.attempt, JobStatus.FAILED, error_code=code, error_message="x")]
    )
    assert written == [job.id]


async def test_job_list_is_newest_first_and_filters_by_each_field(store: Store):
    a = await insert(store, type="t.a", queue="q1", owner="o1")
    b = await insert(store, type="t.b", queue="q2", owner="o2")
    c = await insert(store, type="t.c", queue="q1", owner="o1")
    await _finish_failed(store, "t.c", "boom")
    d = await insert(store, type="t.a", queue="q2", owner="o2", delay=60)

    async def ids(**where: object) -> list[uuid.UUID]:
        return [j.id for j in await store.job_list(JobFilter(**where))]  # type: ignore[arg-type]

    assert await ids() == [d.id, c.id, b.id, a.id]
    assert await ids(status=[JobStatus.QUEUED]) == [b.id, a.id]
    assert await ids(status=[JobStatus.SCHEDULED, JobStatus.FAILED]) == [d.id, c.id]
    assert await ids(type="t.a") == [d.id, a.id]
    assert await ids(queue="q1") == [c.id, a.id]
    assert await ids(owner="o2") == [d.id, b.id]
    assert await ids(error_code="boom") == [c.id]
    assert await ids(error_code="other") == []
    assert await ids(type="t.a", owner="o1") == [a.id]
    assert [j.id for j in await store.job_list(JobFilter(), limit=2)] == [d.id, c.id]


async def test_job_list_filters_by_a_created_range_bounded_by_a_jobs_own_created_at(
    store: Store,
):
    jobs = [await insert(store, input={"i": i}) for i in range(4)]
    second, third = jobs[1], jobs[2]

    since_second = await store.job_list(JobFilter(created_after=second.created_at))
    before_third = await store.job_list(JobFilter(created_before=third.created_at))
    between = await store.job_list(
        JobFilter(created_after=second.created_at, created_before=third.created_at)
    )

    assert [j.id for j in since_second] == [j.id for j in reversed(jobs[1:])]
    assert [j.id for j in before_third] == [second.id, jobs[0].id]
    assert [j.id for j in between] == [second.id]


async def test_cursor_pagination_returns_every_job_exactly_once_newest_first(store: Store):
    # A batch shares one created_at, so the id must break ties between pages.
    jobs = [await insert(store, input={"single": i}) for i in range(3)]
    jobs += await store.job_insert_many([new_job(input={"batch": i}) for i in range(17)])
    jobs += [await insert(store, input={"single": i}) for i in range(3, 5)]
    expected = sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)

    seen: list[uuid.UUID] = []
    after = None
    pages = 0
    while page := await store.job_list(JobFilter(), limit=4, after=after):
        pages += 1
        seen.extend(j.id for j in page)
        after = page[-1].id
        assert pages <= 10, "pagination does not terminate"

    assert seen == [j.id for j in expected]
    assert pages == 6


async def test_cursor_pagination_keeps_the_filter_on_every_page(store: Store):
    wanted = await store.job_insert_many([new_job("t.a") for _ in range(5)])
    await store.job_insert_many([new_job("t.b") for _ in range(5)])

    first = await store.job_list(JobFilter(type="t.a"), limit=3)
    rest = await store.job_list(JobFilter(type="t.a"), limit=3, after=first[-1].id)

    assert len(first) == 3 and len(rest) == 2
    assert {j.id for j in first + rest} == {j.id for j in wanted}


# -- queues ----------------------------------------------------------------------------------


async def test_queue_list_reports_depth_running_paused_and_the_oldest_due_job(store: Store):
    first = await insert(store, queue="q1")
    await insert(store, queue="q1")
    await insert(store, queue="q1")
    await insert(store, queue="q1", delay=60)
    running = await claim_one(store, queues=["q1"])
    assert running.id == first.id
    done = await insert(store, queue="q2")
    claimed = await claim_one(store, queues=["q2"])
    await store.job_finish_many([Outcome(claimed.id, 1, JobStatus.SUCCEEDED, result="1")])
    await store.queue_set_paused("idle", True, None)
    await store.queue_set_paused("q1", True, None)

    infos = {q.name: q for q in await store.queue_list()}

    q1 = infos["q1"]
    assert (q1.paused, q1.waiting, q1.running) == (True, 3, 1)
    second = (await store.job_list(JobFilter(queue="q1", status=[JobStatus.QUEUED])))[-1]
    assert q1.oldest_waiting_at == second.run_at
    idle = infos["idle"]
    assert (idle.paused, idle.waiting, idle.running, idle.oldest_waiting_at) == (
        True,
        0,
        0,
        None,
    )
    assert done.queue not in infos or (infos["q2"].waiting, infos["q2"].running) == (0, 0)


async def test_a_queue_with_only_future_jobs_has_no_lag(store: Store):
    await insert(store, queue="later", delay=60)

    [info] = [q for q in await store.queue_list() if q.name == "later"]

    assert (info.paused, info.waiting, info.running) == (False, 1, 0)
    assert info.oldest_waiting_at is None


async def test_a_failed_outcome_keeps_its_error_for_listing(store: Store):
    await insert(store, type="t.x")
    await _finish_failed(store, "t.x", "bad_input")

    [job] = await store.job_list(JobFilter(status=[JobStatus.FAILED]))

    assert job.error == JobError("bad_input", "x")
