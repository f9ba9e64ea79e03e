-- Placeholders in braces are state lists from offload.states; literal braces are doubled.

-- name: job_insert
-- New jobs, one or many (the store batches concurrent key-less submits into one statement);
-- inputs and trace contexts as JSON text (an array of jsonb cannot carry arrays).
-- $12: a message broker is configured: an outbox row for each queued job instead of a NOTIFY
-- (workers hear of the job from the broker).
-- $13, $14: the event bus's channel and announcement, sent by this statement's commit along
-- with the workers' NOTIFY (NULL: the caller announces after the commit).
WITH job AS (
    INSERT INTO offload_jobs (id, type, queue, priority, status, input, max_attempts, run_at,
                              owner, idempotency_key, trace_context, created_at, updated_at)
    SELECT r.id, r.type, r.queue, r.priority, r.status, r.input::jsonb, r.max_attempts,
           now() + make_interval(secs => r.delay), r.owner, r.idempotency_key,
           r.trace_context::jsonb, now(), now()
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::int[],
                $8::float8[], $9::text[], $10::text[], $11::text[])
         AS r(id, type, queue, priority, status, input, max_attempts, delay, owner,
              idempotency_key, trace_context)
    RETURNING *
), event AS (
    INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
    SELECT id, 1, 'job.' || status, status, 0, NULL, created_at FROM job
), outbox AS (
    INSERT INTO offload_outbox (job_id, seq, queue, priority, created_at)
    SELECT id, 1, queue, priority, created_at FROM job WHERE $12::boolean AND status = 'queued'
), announced AS (
    SELECT pg_notify($13::text, $14::text) WHERE $13::text IS NOT NULL
)
SELECT job.*,
       CASE WHEN NOT $12::boolean AND job.status = 'queued'
            THEN pg_notify('offload_jobs', job.queue) END
FROM job LEFT JOIN announced ON true

-- name: notify_jobs
SELECT pg_notify('offload_jobs', q) FROM unnest($1::text[]) AS q

-- name: idempotency_claim
INSERT INTO offload_idempotency_keys AS k (owner, key, job_id, request_hash, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
ON CONFLICT (owner, key) DO UPDATE
    SET job_id = EXCLUDED.job_id, request_hash = EXCLUDED.request_hash,
        expires_at = EXCLUDED.expires_at
    WHERE k.expires_at <= now()
RETURNING job_id

-- name: idempotency_get
SELECT job_id, request_hash FROM offload_idempotency_keys WHERE owner = $1 AND key = $2

-- name: job_get
SELECT * FROM offload_jobs WHERE id = $1

-- name: job_get_many
SELECT * FROM offload_jobs WHERE id = ANY($1::uuid[])

-- name: job_events
SELECT * FROM offload_job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq

-- name: job_claim
WITH picked AS (
    SELECT id FROM offload_jobs
    WHERE status IN ({claimable}) AND run_at <= now()
      AND type = ANY($1::text[])
      AND ($2::text[] IS NULL OR queue = ANY($2::text[]))
      AND queue NOT IN (SELECT name FROM offload_queues WHERE paused)
    ORDER BY priority DESC, run_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE offload_jobs j
    SET status = 'running', attempt = j.attempt + 1, worker_id = $4,
        lease_expires_at = now() + make_interval(secs => $5),
        started_at = coalesce(j.started_at, now()), updated_at = now(),
        event_seq = j.event_seq + 1
    FROM picked WHERE j.id = picked.id
    RETURNING j.*
), event AS (
    INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
    SELECT id, event_seq, 'job.running', 'running', attempt, NULL, updated_at FROM claimed
)
SELECT * FROM claimed ORDER BY priority DESC, run_at, id

-- name: job_claim_ids
-- A broker delivered these ids: claim those still claimable, due, of the given types and in
-- unpaused queues. Rows are locked in id order and waited for (no SKIP LOCKED): two workers
-- holding copies of one message then claim it exactly once, and none is skipped unseen.
WITH picked AS (
    SELECT id FROM offload_jobs
    WHERE id = ANY($1::uuid[]) AND status IN ({claimable}) AND run_at <= now()
      AND type = ANY($2::text[])
      AND queue NOT IN (SELECT name FROM offload_queues WHERE paused)
    ORDER BY id
    FOR UPDATE
), claimed AS (
    UPDATE offload_jobs j
    SET status = 'running', attempt = j.attempt + 1, worker_id = $3,
        lease_expires_at = now() + make_interval(secs => $4),
        started_at = coalesce(j.started_at, now()), updated_at = now(),
        event_seq = j.event_seq + 1
    FROM picked WHERE j.id = picked.id
      AND j.status IN ({claimable}) AND j.run_at <= now()
    RETURNING j.*
), event AS (
    INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
    SELECT id, event_seq, 'job.running', 'running', attempt, NULL, updated_at FROM claimed
)
SELECT * FROM claimed ORDER BY priority DESC, run_at, id

-- name: job_heartbeat
UPDATE offload_jobs j
SET lease_expires_at = now() + make_interval(secs => $3)
FROM unnest($1::uuid[], $2::int[]) AS v(id, attempt)
WHERE j.id = v.id AND j.attempt = v.attempt AND j.status = 'running'
  AND ($4::text IS NULL OR j.worker_id = $4)
RETURNING j.id, j.cancel_requested

-- name: job_progress
WITH job AS (
    UPDATE offload_jobs
    SET progress_percent = $3, progress_message = $4, updated_at = now(),
        event_seq = event_seq + 1
    WHERE id = $1 AND attempt = $2 AND status = 'running'
      AND ($5::text IS NULL OR worker_id = $5)
    RETURNING id, event_seq, attempt, updated_at
)
INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
SELECT id, event_seq, 'job.progress', 'running', attempt,
       jsonb_build_object('percent', $3::float8, 'message', $4::text), updated_at
FROM job
RETURNING job_id

-- name: job_checkpoint
UPDATE offload_jobs SET checkpoint = $3::jsonb, updated_at = now()
WHERE id = $1 AND attempt = $2 AND status = 'running'
  AND ($4::text IS NULL OR worker_id = $4)
RETURNING id

-- name: job_finish_many
WITH v AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::float8[], $9::text[])
        AS v(id, attempt, status, result, error_code, error_message, error_detail, delay,
             worker_id)
), job AS (
    UPDATE offload_jobs j
    SET status = v.status,
        result = v.result::jsonb,
        error_code = v.error_code, error_message = v.error_message,
        error_detail = coalesce(v.error_detail, j.error_detail),
        progress_percent = CASE WHEN v.status = 'succeeded' THEN 100 ELSE j.progress_percent END,
        run_at = CASE WHEN v.status = 'retrying'
                      THEN now() + make_interval(secs => v.delay) ELSE j.run_at END,
        finished_at = CASE WHEN v.status IN ({terminal}) THEN now() END,
        lease_expires_at = NULL, worker_id = NULL, updated_at = now(),
        event_seq = j.event_seq + 1
    FROM v
    WHERE j.id = v.id AND j.attempt = v.attempt AND j.status = 'running'
      AND (v.worker_id IS NULL OR j.worker_id = v.worker_id)
    RETURNING j.id, j.event_seq, j.status, j.attempt, j.error_code, j.error_message, j.run_at,
              j.updated_at
), event AS (
    INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
    SELECT id, event_seq, 'job.' || status, status, attempt,
           CASE WHEN error_code IS NULL THEN NULL
                ELSE jsonb_build_object('error', jsonb_build_object('code', error_code,
                                                                    'message', error_message),
                                        'retry_at', CASE WHEN status = 'retrying'
                                                         THEN run_at END)
           END,
           updated_at
    FROM job
)
SELECT id FROM job

-- name: job_release
WITH job AS (
    UPDATE offload_jobs
    SET status = 'queued', max_attempts = max_attempts + 1, run_at = now(),
        lease_expires_at = NULL, worker_id = NULL, updated_at = now(),
        event_seq = event_seq + 1
    WHERE id = $1 AND attempt = $2 AND status = 'running'
      AND ($4::text IS NULL OR worker_id = $4)
    RETURNING id, event_seq, attempt, queue, priority, updated_at
), event AS (
    INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
    SELECT id, event_seq, 'job.queued', 'queued', attempt, jsonb_build_object('reason', $3::text),
           updated_at
    FROM job
), outbox AS (
    INSERT INTO offload_outbox (job_id, seq, queue, priority, created_at)
    SELECT id, event_seq, queue, priority, updated_at FROM job WHERE $5::boolean
)
SELECT id, pg_notify('offload_jobs', queue) FROM job

-- name: jobs_reap_expired
WITH expired AS (
    SELECT id FROM offload_jobs
    WHERE status = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), job AS (
    UPDATE offload_jobs j
    SET status = CASE WHEN j.cancel_requested THEN 'canceled'
                      WHEN j.attempt >= j.max_attempts THEN 'failed'
                      ELSE 'retrying' END,
        error_code = CASE WHEN j.cancel_requested THEN 'canceled' ELSE 'lease_expired' END,
        error_message = CASE WHEN j.cancel_requested THEN 'canceled on request'
                             ELSE 'the worker running attempt ' || j.attempt
                                  || ' stopped renewing its lease (crashed or killed)' END,
        run_at = now(), lease_expires_at = NULL, worker_id = NULL, updated_at = now(),
        finished_at = CASE WHEN j.cancel_requested OR j.attempt >= j.max_attempts
                           THEN now() END,
        event_seq = j.event_seq + 1
    FROM expired WHERE j.id = expired.id
    RETURNING j.id, j.event_seq, j.status, j.attempt, j.error_code, j.error_message, j.queue,
              j.updated_at
), event AS (
    INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
    SELECT id, event_seq, 'job.' || status, status, attempt,
           jsonb_build_object('error', jsonb_build_object('code', error_code,
                                                          'message', error_message)),
           updated_at
    FROM job
)
SELECT id, CASE WHEN status = 'retrying' THEN pg_notify('offload_jobs', queue) END FROM job

-- name: jobs_promote_due
WITH due AS (
    SELECT id FROM offload_jobs
    WHERE status IN ({promotable}) AND run_at <= now()
    ORDER BY priority DESC, run_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), job AS (
    UPDATE offload_jobs j
    SET status = 'queued', updated_at = now(), event_seq = j.event_seq + 1
    FROM due WHERE j.id = due.id
    RETURNING j.id, j.event_seq, j.attempt, j.queue, j.priority, j.updated_at
), event AS (
    INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
    SELECT id, event_seq, 'job.queued', 'queued', attempt, NULL, updated_at FROM job
), outbox AS (
    INSERT INTO offload_outbox (job_id, seq, queue, priority, created_at)
    SELECT id, event_seq, queue, priority, updated_at FROM job WHERE $2::boolean
)
SELECT id, pg_notify('offload_jobs', queue) FROM job

-- name: job_cancel_waiting
WITH job AS (
    UPDATE offload_jobs
    SET status = 'canceled', error_code = 'canceled', error_message = 'canceled on request',
        finished_at = now(), updated_at = now(), event_seq = event_seq + 1
    WHERE id = $1 AND status IN ({waiting_cancelable})
    RETURNING *
), event AS (
    INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
    SELECT id, event_seq, 'job.canceled', 'canceled', attempt,
           jsonb_build_object('actor', $2::text), updated_at
    FROM job
)
SELECT * FROM job

-- name: job_cancel_running
WITH job AS (
    UPDATE offload_jobs
    SET cancel_requested = true, updated_at = now(), event_seq = event_seq + 1
    WHERE id = $1 AND status = 'running' AND NOT cancel_requested
    RETURNING *
), event AS (
    INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
    SELECT id, event_seq, 'job.cancel_requested', 'running', attempt,
           jsonb_build_object('actor', $2::text), updated_at
    FROM job
)
SELECT *, pg_notify('offload_cancel', id::text) FROM job

-- name: job_replay
WITH job AS (
    UPDATE offload_jobs
    SET status = 'queued', input = coalesce($2::jsonb, input),
        checkpoint = CASE WHEN $2::jsonb IS NULL THEN checkpoint END,
        max_attempts = attempt + $3, run_at = now(), result = NULL,
        error_code = NULL, error_message = NULL, finished_at = NULL, cancel_requested = false,
        progress_percent = 0, progress_message = NULL,
        updated_at = now(), event_seq = event_seq + 1
    WHERE id = $1 AND status IN ({replayable})
    RETURNING *
), event AS (
    INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
    SELECT id, event_seq, 'job.queued', 'queued', attempt,
           jsonb_build_object('action', 'replay', 'actor', $4::text,
                              'input_changed', $2::jsonb IS NOT NULL),
           updated_at
    FROM job
), outbox AS (
    INSERT INTO offload_outbox (job_id, seq, queue, priority, created_at)
    SELECT id, event_seq, queue, priority, updated_at FROM job WHERE $5::boolean
)
SELECT *, pg_notify('offload_jobs', queue) FROM job

-- name: queue_set_paused
INSERT INTO offload_queues (name, paused, updated_at, updated_by) VALUES ($1, $2, now(), $3)
ON CONFLICT (name) DO UPDATE
    SET paused = EXCLUDED.paused, updated_at = EXCLUDED.updated_at,
        updated_by = EXCLUDED.updated_by

-- name: queue_list
WITH names AS (
    SELECT DISTINCT queue AS name FROM offload_jobs
    WHERE status IN ({claimable}, 'running')
    UNION SELECT name FROM offload_queues
)
SELECT n.name,
       coalesce(q.paused, false) AS paused,
       (SELECT count(*) FROM offload_jobs j
        WHERE j.queue = n.name AND j.status IN ({claimable})) AS waiting,
       (SELECT count(*) FROM offload_jobs j
        WHERE j.queue = n.name AND j.status = 'running') AS running,
       (SELECT min(run_at) FROM offload_jobs j
        WHERE j.queue = n.name AND j.status IN ({claimable}) AND j.run_at <= now())
           AS oldest_waiting_at
FROM names n LEFT JOIN offload_queues q ON q.name = n.name
ORDER BY n.name

-- name: key_insert
INSERT INTO offload_api_keys (id, key_hash, tenant, role, name, created_at)
VALUES ($1, $2, $3, $4, $5, now())
RETURNING id, tenant, role, name, created_at, revoked_at

-- name: key_get_by_hash
SELECT id, tenant, role, name, created_at, revoked_at FROM offload_api_keys WHERE key_hash = $1

-- name: key_list
SELECT id, tenant, role, name, created_at, revoked_at FROM offload_api_keys
ORDER BY created_at, id

-- name: key_revoke
UPDATE offload_api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
RETURNING id, tenant, role, name, created_at, revoked_at

-- name: job_discard
WITH job AS (
    UPDATE offload_jobs
    SET discarded_at = now(), updated_at = now(), event_seq = event_seq + 1
    WHERE id = $1 AND status = 'failed'
      AND (discarded_at IS NULL OR discarded_at < finished_at)
    RETURNING *
), event AS (
    INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
    SELECT id, event_seq, 'job.discarded', 'failed', attempt,
           jsonb_build_object('action', 'discard', 'actor', $2::text), updated_at
    FROM job
)
SELECT * FROM job

-- name: queue_depth
SELECT count(*) FROM offload_jobs WHERE queue = $1 AND status IN ({claimable})

-- name: feed_horizon
-- Every transaction older than this has ended: the feed may safely read up to it.
SELECT pg_snapshot_xmin(pg_current_snapshot())

-- name: feed_select
SELECT e.tx AS ev_tx, e.id AS ev_id, e.seq AS ev_seq, e.type AS ev_type,
       e.status AS ev_status, e.attempt AS ev_attempt, e.data AS ev_data,
       e.created_at AS ev_created_at, j.*
FROM offload_job_events e JOIN offload_jobs j ON j.id = e.job_id

-- name: outbox_queue
-- A queue was resumed: its waiting, due jobs go to the broker again (their messages were
-- dropped while it was paused).
INSERT INTO offload_outbox (job_id, seq, queue, priority, created_at)
SELECT id, event_seq, queue, priority, now() FROM offload_jobs
WHERE queue = $1 AND status IN ({claimable}) AND run_at <= now()
ON CONFLICT DO NOTHING

-- name: outbox_pending
SELECT job_id, seq, queue, priority FROM offload_outbox
WHERE created_at <= now() - make_interval(secs => $1)
ORDER BY created_at
LIMIT $2

-- name: outbox_delete
DELETE FROM offload_outbox o
USING unnest($1::uuid[], $2::int[]) AS v(job_id, seq)
WHERE o.job_id = v.job_id AND o.seq = v.seq

-- name: jobs_due_by_queue
-- What the broker should be holding: jobs due for a while (older than $1 s), in unpaused queues.
SELECT queue, count(*) AS due FROM offload_jobs
WHERE status IN ({claimable}) AND run_at <= now() - make_interval(secs => $1)
  AND updated_at <= now() - make_interval(secs => $1)
  AND queue NOT IN (SELECT name FROM offload_queues WHERE paused)
GROUP BY queue

-- name: jobs_due
SELECT id AS job_id, 0 AS seq, queue, priority FROM offload_jobs
WHERE queue = $1 AND status IN ({claimable}) AND run_at <= now() - make_interval(secs => $2)
  AND updated_at <= now() - make_interval(secs => $2)
  AND ($4::uuid IS NULL OR id > $4)
ORDER BY id
LIMIT $3
