-- The jobs table is the truth, the event log is its ordered history.
CREATE TABLE offload_jobs (
    id                uuid PRIMARY KEY,
    type              text NOT NULL,
    queue             text NOT NULL,
    priority          integer NOT NULL DEFAULT 0,
    status            text NOT NULL CHECK (status IN
                          ('scheduled','queued','running','retrying','succeeded','failed','canceled')),
    input             jsonb NOT NULL,
    attempt           integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    run_at            timestamptz NOT NULL,
    lease_expires_at  timestamptz,
    worker_id         text,
    progress_percent  double precision NOT NULL DEFAULT 0,
    progress_message  text,
    checkpoint        jsonb,
    result            jsonb,
    error_code        text,
    error_message     text,
    error_detail      text,
    owner             text NOT NULL DEFAULT 'default',
    idempotency_key   text,
    trace_context     jsonb,
    cancel_requested  boolean NOT NULL DEFAULT false,
    event_seq         integer NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    started_at        timestamptz,
    finished_at       timestamptz,
    CHECK ((status = 'running') = (lease_expires_at IS NOT NULL)),
    CHECK ((status IN ('succeeded','failed','canceled')) = (finished_at IS NOT NULL)),
    CHECK (status <> 'succeeded' OR error_code IS NULL)
) WITH (fillfactor = 80);  -- room on each page for HOT updates (progress, checkpoints)

-- Claiming walks this index in priority/run_at order; only waiting rows are in it.
CREATE INDEX offload_jobs_waiting ON offload_jobs (priority DESC, run_at, id)
    WHERE status IN ('queued','retrying','scheduled');
CREATE INDEX offload_jobs_leases ON offload_jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX offload_jobs_failed ON offload_jobs (finished_at DESC) WHERE status = 'failed';

-- No foreign key to offload_jobs: its check would cost a lookup per event on the hot path, and
-- events are only ever written in the same statement as their job's change.
CREATE TABLE offload_job_events (
    job_id      uuid NOT NULL,
    seq         integer NOT NULL,
    type        text NOT NULL,
    status      text NOT NULL,
    attempt     integer NOT NULL,
    data        jsonb,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE offload_queues (
    name        text PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL,
    updated_by  text
);

CREATE TABLE offload_idempotency_keys (
    owner         text NOT NULL,
    key           text NOT NULL,
    job_id        uuid NOT NULL,
    request_hash  text,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (owner, key)
);
