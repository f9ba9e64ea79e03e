-- The transactional outbox (issue 5): see the PostgreSQL migration of the same number.
CREATE TABLE offload_outbox (
    job_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    queue       TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX offload_outbox_age ON offload_outbox (created_at);
