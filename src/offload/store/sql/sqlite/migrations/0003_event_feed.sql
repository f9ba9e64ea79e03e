-- The global event feed: SQLite serializes writers, so an integer id given at insert is commit
-- order. The log is rebuilt as a rowid table (id INTEGER PRIMARY KEY) keeping (job_id, seq)
-- unique. Events must never be deleted from the newest end: SQLite reuses max(id) + 1.
CREATE TABLE offload_job_events_new (
    id          INTEGER PRIMARY KEY,
    job_id      TEXT NOT NULL,
    seq         integer NOT NULL,
    type        text NOT NULL,
    status      text NOT NULL,
    attempt     integer NOT NULL,
    data        TEXT,
    created_at  REAL NOT NULL,
    UNIQUE (job_id, seq)
);
INSERT INTO offload_job_events_new (job_id, seq, type, status, attempt, data, created_at)
    SELECT job_id, seq, type, status, attempt, data, created_at FROM offload_job_events
    ORDER BY created_at, job_id, seq;
DROP TABLE offload_job_events;
ALTER TABLE offload_job_events_new RENAME TO offload_job_events;
