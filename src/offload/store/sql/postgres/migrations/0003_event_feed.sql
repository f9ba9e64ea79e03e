-- The global event feed: every event also records the transaction that wrote it (tx) and an
-- identity (id). An id alone is not commit order (a transaction holding a lower id may commit
-- after a reader moved past it); readers only return events whose transaction is older than
-- every transaction still running (tx < pg_snapshot_xmin(pg_current_snapshot())), in (tx, id)
-- order, and resume after a (tx, id) cursor. Nothing committed later can sort before it.
ALTER TABLE offload_job_events
    ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY (CACHE 64);
CREATE INDEX offload_job_events_feed ON offload_job_events (tx, id);
