-- The transactional outbox (issue 5): with a message broker (Redis Streams, RabbitMQ), every
-- change that makes a job runnable (submit, promote, release, replay, resume) also writes a row
-- here, in the same transaction. Publishing follows the commit and deletes the row; rows left
-- behind by a process that died in between are published by the reconciler. With the table
-- queue nothing is written here. (job_id, seq): seq is the job's event_seq of that change.
CREATE TABLE offload_outbox (
    job_id      uuid NOT NULL,
    seq         integer NOT NULL,
    queue       text NOT NULL,
    priority    integer NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX offload_outbox_age ON offload_outbox (created_at);
