-- The jobs table is the truth, the event log is its ordered history.
CREATE TABLE offload_jobs (
    id                TEXT PRIMARY KEY,
    type              text NOT NULL,
    queue             text NOT NULL,
    priority          integer NOT NULL DEFAULT 0,
    status            text NOT NULL CHECK (status IN
                          ('scheduled','queued','running','retrying','succeeded','failed','canceled')),
    input             TEXT NOT NULL,
    attempt           integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    run_at            REAL NOT NULL,
    lease_expires_at  REAL,
    worker_id         text,
    progress_percent  REAL NOT NULL DEFAULT 0,
    progress_message  text,
    checkpoint        TEXT,
    result            TEXT,
    error_code        text,
    error_message     text,
    error_detail      text,
    owner             text NOT NULL DEFAULT 'default',
    idempotency_key   text,
    trace_context     TEXT,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    event_seq         integer NOT NULL DEFAULT 1,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    started_at        REAL,
    finished_at       REAL,
    CHECK ((status = 'running') = (lease_expires_at IS NOT NULL)),
    CHECK ((status IN ('succeeded','failed','canceled')) = (finished_at IS NOT NULL)),
    CHECK (status <> 'succeeded' OR error_code IS NULL)
);

-- Claiming walks this index in priority/run_at order; only waiting rows are in it.
CREATE INDEX offload_jobs_waiting ON offload_jobs (priority DESC, run_at, id)
    WHERE status IN ('queued','retrying','scheduled');
CREATE INDEX offload_jobs_leases ON offload_jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX offload_jobs_failed ON offload_jobs (finished_at DESC) WHERE status = 'failed';

CREATE TABLE offload_job_events (
    job_id      TEXT NOT NULL,
    seq         integer NOT NULL,
    type        text NOT NULL,
    status      text NOT NULL,
    attempt     integer NOT NULL,
    data        TEXT,
    created_at  REAL NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

CREATE TABLE offload_queues (
    name        text PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    updated_at  REAL NOT NULL,
    updated_by  text
);

CREATE TABLE offload_idempotency_keys (
    owner         text NOT NULL,
    key           text NOT NULL,
    job_id        TEXT NOT NULL,
    request_hash  text,
    expires_at    REAL NOT NULL,
    PRIMARY KEY (owner, key)
);
