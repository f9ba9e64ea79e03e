-- SQLite has no data-modifying CTEs: each operation is a few statements run in one
-- BEGIN IMMEDIATE transaction by sqlite.py. Times are Unix seconds (REAL) passed in as :now.
-- Placeholders in braces are state lists from offload.states.

-- name: job_insert
INSERT INTO offload_jobs (id, type, queue, priority, status, input, max_attempts, run_at,
                          owner, idempotency_key, trace_context, created_at, updated_at)
VALUES (:id, :type, :queue, :priority, :status, :input, :max_attempts, :run_at, :owner,
        :idempotency_key, :trace_context, :now, :now)
RETURNING *

-- name: event_insert
INSERT INTO offload_job_events (job_id, seq, type, status, attempt, data, created_at)
VALUES (:job_id, :seq, :type, :status, :attempt, :data, :now)

-- name: idempotency_claim
INSERT INTO offload_idempotency_keys AS k (owner, key, job_id, request_hash, expires_at)
VALUES (:owner, :key, :job_id, :request_hash, :expires_at)
ON CONFLICT (owner, key) DO UPDATE
    SET job_id = excluded.job_id, request_hash = excluded.request_hash,
        expires_at = excluded.expires_at
    WHERE k.expires_at <= :now
RETURNING job_id

-- name: idempotency_get
SELECT job_id, request_hash FROM offload_idempotency_keys WHERE owner = :owner AND key = :key

-- name: job_get
SELECT * FROM offload_jobs WHERE id = :id

-- name: job_events
SELECT * FROM offload_job_events WHERE job_id = :id AND seq > :after ORDER BY seq

-- name: job_claim
UPDATE offload_jobs
SET status = 'running', attempt = attempt + 1, worker_id = :worker_id,
    lease_expires_at = :now + :lease, started_at = coalesce(started_at, :now),
    updated_at = :now, event_seq = event_seq + 1
WHERE id IN (
    SELECT id FROM offload_jobs
    WHERE status IN ({claimable}) AND run_at <= :now
      AND type IN (SELECT value FROM json_each(:types))
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
      AND queue NOT IN (SELECT name FROM offload_queues WHERE paused)
    ORDER BY priority DESC, run_at, id
    LIMIT :limit
)
RETURNING *

-- name: job_claim_ids
UPDATE offload_jobs
SET status = 'running', attempt = attempt + 1, worker_id = :worker_id,
    lease_expires_at = :now + :lease, started_at = coalesce(started_at, :now),
    updated_at = :now, event_seq = event_seq + 1
WHERE id IN (SELECT value FROM json_each(:ids))
  AND status IN ({claimable}) AND run_at <= :now
  AND type IN (SELECT value FROM json_each(:types))
  AND queue NOT IN (SELECT name FROM offload_queues WHERE paused)
RETURNING *

-- name: job_heartbeat
UPDATE offload_jobs SET lease_expires_at = :now + :lease
WHERE id = :id AND attempt = :attempt AND status = 'running'
  AND (:worker_id IS NULL OR worker_id = :worker_id)
RETURNING id, cancel_requested

-- name: job_progress
UPDATE offload_jobs
SET progress_percent = :percent, progress_message = :message, updated_at = :now,
    event_seq = event_seq + 1
WHERE id = :id AND attempt = :attempt AND status = 'running'
  AND (:worker_id IS NULL OR worker_id = :worker_id)
RETURNING id, event_seq, attempt

-- name: job_checkpoint
UPDATE offload_jobs SET checkpoint = :value, updated_at = :now
WHERE id = :id AND attempt = :attempt AND status = 'running'
  AND (:worker_id IS NULL OR worker_id = :worker_id)
RETURNING id

-- name: job_finish
UPDATE offload_jobs
SET status = :status, result = :result,
    error_code = :error_code, error_message = :error_message,
    error_detail = coalesce(:error_detail, error_detail),
    progress_percent = CASE WHEN :status = 'succeeded' THEN 100 ELSE progress_percent END,
    run_at = CASE WHEN :status = 'retrying' THEN :now + :delay ELSE run_at END,
    finished_at = CASE WHEN :status IN ({terminal}) THEN :now END,
    lease_expires_at = NULL, worker_id = NULL, updated_at = :now, event_seq = event_seq + 1
WHERE id = :id AND attempt = :attempt AND status = 'running'
  AND (:worker_id IS NULL OR worker_id = :worker_id)
RETURNING id, event_seq, status, attempt, run_at

-- name: job_release
UPDATE offload_jobs
SET status = 'queued', max_attempts = max_attempts + 1, run_at = :now,
    lease_expires_at = NULL, worker_id = NULL, updated_at = :now, event_seq = event_seq + 1
WHERE id = :id AND attempt = :attempt AND status = 'running'
  AND (:worker_id IS NULL OR worker_id = :worker_id)
RETURNING id, event_seq, status, attempt, queue, priority

-- name: jobs_reap_expired
UPDATE offload_jobs
SET status = CASE WHEN cancel_requested THEN 'canceled'
                  WHEN attempt >= max_attempts THEN 'failed'
                  ELSE 'retrying' END,
    error_code = CASE WHEN cancel_requested THEN 'canceled' ELSE 'lease_expired' END,
    error_message = CASE WHEN cancel_requested THEN 'canceled on request'
                         ELSE 'the worker running attempt ' || attempt
                              || ' stopped renewing its lease (crashed or killed)' END,
    run_at = :now, lease_expires_at = NULL, worker_id = NULL, updated_at = :now,
    finished_at = CASE WHEN cancel_requested OR attempt >= max_attempts THEN :now END,
    event_seq = event_seq + 1
WHERE id IN (
    SELECT id FROM offload_jobs
    WHERE status = 'running' AND lease_expires_at < :now
    ORDER BY lease_expires_at LIMIT :limit
)
RETURNING id, event_seq, status, attempt, error_code, error_message

-- name: jobs_promote_due
UPDATE offload_jobs SET status = 'queued', updated_at = :now, event_seq = event_seq + 1
WHERE id IN (
    SELECT id FROM offload_jobs
    WHERE status IN ({promotable}) AND run_at <= :now
    ORDER BY priority DESC, run_at, id LIMIT :limit
)
RETURNING id, event_seq, status, attempt, queue, priority

-- name: job_cancel_waiting
UPDATE offload_jobs
SET status = 'canceled', error_code = 'canceled', error_message = 'canceled on request',
    finished_at = :now, updated_at = :now, event_seq = event_seq + 1
WHERE id = :id AND status IN ({waiting_cancelable})
RETURNING *

-- name: job_cancel_running
UPDATE offload_jobs SET cancel_requested = 1, updated_at = :now, event_seq = event_seq + 1
WHERE id = :id AND status = 'running' AND NOT cancel_requested
RETURNING *

-- name: job_replay
UPDATE offload_jobs
SET status = 'queued', input = coalesce(:input, input),
    checkpoint = CASE WHEN :input IS NULL THEN checkpoint END,
    max_attempts = attempt + :extra, run_at = :now, result = NULL,
    error_code = NULL, error_message = NULL, finished_at = NULL, cancel_requested = 0,
    progress_percent = 0, progress_message = NULL, updated_at = :now,
    event_seq = event_seq + 1
WHERE id = :id AND status IN ({replayable})
RETURNING *

-- name: queue_set_paused
INSERT INTO offload_queues (name, paused, updated_at, updated_by)
VALUES (:name, :paused, :now, :actor)
ON CONFLICT (name) DO UPDATE
    SET paused = excluded.paused, updated_at = excluded.updated_at,
        updated_by = excluded.updated_by

-- name: queue_list
WITH names AS (
    SELECT DISTINCT queue AS name FROM offload_jobs
    WHERE status IN ({claimable}, 'running')
    UNION SELECT name FROM offload_queues
)
SELECT n.name,
       coalesce(q.paused, 0) AS paused,
       (SELECT count(*) FROM offload_jobs j
        WHERE j.queue = n.name AND j.status IN ({claimable})) AS waiting,
       (SELECT count(*) FROM offload_jobs j
        WHERE j.queue = n.name AND j.status = 'running') AS running,
       (SELECT min(run_at) FROM offload_jobs j
        WHERE j.queue = n.name AND j.status IN ({claimable}) AND j.run_at <= :now)
           AS oldest_waiting_at
FROM names n LEFT JOIN offload_queues q ON q.name = n.name
ORDER BY n.name

-- name: key_insert
INSERT INTO offload_api_keys (id, key_hash, tenant, role, name, created_at)
VALUES (:id, :key_hash, :tenant, :role, :name, :now)
RETURNING id, tenant, role, name, created_at, revoked_at

-- name: key_get_by_hash
SELECT id, tenant, role, name, created_at, revoked_at FROM offload_api_keys
WHERE key_hash = :key_hash

-- name: key_list
SELECT id, tenant, role, name, created_at, revoked_at FROM offload_api_keys
ORDER BY created_at, id

-- name: key_revoke
UPDATE offload_api_keys SET revoked_at = coalesce(revoked_at, :now) WHERE id = :id
RETURNING id, tenant, role, name, created_at, revoked_at

-- name: job_discard
UPDATE offload_jobs
SET discarded_at = :now, updated_at = :now, event_seq = event_seq + 1
WHERE id = :id AND status = 'failed' AND (discarded_at IS NULL OR discarded_at < finished_at)
RETURNING *

-- name: queue_depth
SELECT count(*) FROM offload_jobs WHERE queue = :name AND status IN ({claimable})

-- name: feed_horizon
SELECT coalesce(max(id), 0) FROM offload_job_events

-- name: feed_select
SELECT e.id AS ev_id, e.seq AS ev_seq, e.type AS ev_type, e.status AS ev_status,
       e.attempt AS ev_attempt, e.data AS ev_data, e.created_at AS ev_created_at, j.*
FROM offload_job_events e JOIN offload_jobs j ON j.id = e.job_id

-- name: outbox_insert
INSERT INTO offload_outbox (job_id, seq, queue, priority, created_at)
VALUES (:job_id, :seq, :queue, :priority, :now)
ON CONFLICT DO NOTHING

-- name: outbox_queue
INSERT INTO offload_outbox (job_id, seq, queue, priority, created_at)
SELECT id, event_seq, queue, priority, :now FROM offload_jobs
WHERE queue = :name AND status IN ({claimable}) AND run_at <= :now
ON CONFLICT DO NOTHING

-- name: outbox_pending
SELECT job_id, seq, queue, priority FROM offload_outbox
WHERE created_at <= :now - :older
ORDER BY created_at
LIMIT :limit

-- name: outbox_delete
DELETE FROM offload_outbox WHERE job_id = :job_id AND seq = :seq

-- name: jobs_due_by_queue
SELECT queue, count(*) AS due FROM offload_jobs
WHERE status IN ({claimable}) AND run_at <= :now - :older AND updated_at <= :now - :older
  AND queue NOT IN (SELECT name FROM offload_queues WHERE paused)
GROUP BY queue

-- name: jobs_due
SELECT id AS job_id, 0 AS seq, queue, priority FROM offload_jobs
WHERE queue = :queue AND status IN ({claimable}) AND run_at <= :now - :older
  AND updated_at <= :now - :older
  AND (:after IS NULL OR id > :after)
ORDER BY id
LIMIT :limit
