"""Jobs driven to an end through the store itself (no worker needed): the same calls and
events a worker makes."""

from __future__ import annotations

from typing import Any

from offload.ids import uuid7
from offload.jobs import Job, JobStatus
from offload.store import NewJob, Outcome
from offload.store.notify import Delivery, Notify

from ..conftest import wait_until


async def finish(
    store: Any,
    *,
    owner: str = "tenant-a",
    status: JobStatus = JobStatus.SUCCEEDED,
    notify: Notify | None = None,
    type: str = "notify.test",
) -> Job:
    """Insert a job, claim it and end it with ``status``; return it as it ended."""
    new = NewJob(
        id=uuid7(), type=type, queue="notify", priority=0, input={"n": 1}, max_attempts=1,
        owner=owner, notify=notify,
    )  # fmt: skip
    await store.job_insert(new, 60)
    [claimed] = await store.job_claim_ids([new.id], types=[type], worker_id="w", lease_seconds=30)
    error = None if status is JobStatus.SUCCEEDED else ("boom", "it broke")
    outcome = Outcome(
        claimed.id,
        claimed.attempt,
        status,
        result='{"ok":true}' if error is None else None,
        error_code=error[0] if error else None,
        error_message=error[1] if error else None,
    )
    assert await store.job_finish_many([outcome]) == [new.id]
    return await store.job_get(new.id)  # type: ignore[no-any-return]


async def deliveries_of(store: Any, job: Job) -> list[Delivery]:
    return list(await store.delivery_list(job_id=job.id))


async def settled(store: Any, job: Job, n: int = 1) -> list[Delivery]:
    """Wait until the job has ``n`` deliveries, all finished (succeeded or failed)."""

    async def done() -> list[Delivery] | None:
        found = await deliveries_of(store, job)
        ok = len(found) == n and all(d.status in ("succeeded", "failed") for d in found)
        return found if ok else None

    return await wait_until(done)  # type: ignore[no-any-return]
