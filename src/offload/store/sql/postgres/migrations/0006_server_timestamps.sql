-- Bulk submits (COPY) leave the timestamps of a new job, its first event and its outbox row to
-- the server: now() is the transaction's start, the same instant the submit reads back to build
-- the snapshots it returns. Encoding three timestamps per row was most of the client's CPU in a
-- 10,000-job COPY. Every other statement still names its timestamps.
ALTER TABLE offload_jobs
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET DEFAULT now(),
    ALTER COLUMN run_at SET DEFAULT now();
ALTER TABLE offload_job_events ALTER COLUMN created_at SET DEFAULT now();
ALTER TABLE offload_outbox ALTER COLUMN created_at SET DEFAULT now();
