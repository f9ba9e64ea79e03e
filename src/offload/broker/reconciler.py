"""The reconciler: the store is the truth, so whatever a broker forgot is published again.

Every ``OFFLOAD_RECONCILE_INTERVAL`` seconds (in every worker, with jitter; running it twice
at once only makes duplicates, which claim nothing):

1. **Outbox sweep.** Rows older than a grace period were written by a process that died between
   its commit and its publish (or published while the broker was down): publish them now.
2. **Lost messages.** Per queue, the store's jobs that have been waiting and due for a whole
   interval are compared with the broker's backlog (messages not yet acknowledged). A broker
   holding fewer messages than that has lost some (Redis restarted without persistence, a queue
   deleted): every such job of the queue is published again. Backlog >= due means nothing is
   missing, or the missing ones are behind messages that will drain first; the comparison is
   repeated next interval.
"""

from __future__ import annotations

import logging

from ..store import Store
from .base import Broker, Message
from .outbox import BATCH, Relay

log = logging.getLogger("offload.broker")

OUTBOX_GRACE = 2.0
"""Seconds after which an outbox row is considered abandoned by its writer."""


class Reconciler:
    def __init__(self, store: Store, broker: Broker, relay: Relay, *, interval: float) -> None:
        self.store = store
        self.broker = broker
        self.relay = relay
        self.interval = interval

    async def run_once(self) -> int:
        """One pass; return how many messages it published."""
        published = await self.relay.sweep(older_than=min(OUTBOX_GRACE, self.interval))
        if published:
            log.warning("published %d outbox rows left behind by another process", published)
        due = await self.store.jobs_due_by_queue(older_than=self.interval)
        for queue, count in sorted(due.items()):
            backlog = await self.broker.backlog(queue)
            # A broker that cannot count its messages is trusted to keep them (durable queues):
            # republishing every waiting job each interval would flood it with duplicates.
            if backlog is None or backlog >= count:
                continue
            republished = await self._republish(queue)
            published += republished
            log.warning(
                "queue %s: the broker holds %d messages for %d waiting jobs; republished %d",
                queue,
                backlog,
                count,
                republished,
            )
        return published

    async def _republish(self, queue: str) -> int:
        total = 0
        after = None
        while True:
            page = await self.store.jobs_due(
                queue, older_than=self.interval, limit=BATCH, after=after
            )
            if not page:
                return total
            await self.broker.publish([Message(e.job_id, e.queue, e.priority) for e in page])
            total += len(page)
            after = page[-1].job_id
