-- Webhook endpoints, tenant secrets, a job's own targets, deliveries and feed cursors.
-- The same query names as sqlite/notify.sql.

-- name: webhook_insert
INSERT INTO offload_webhook_endpoints (id, tenant, url, events, secret, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, now(), now())
RETURNING *;

-- name: webhook_get
SELECT * FROM offload_webhook_endpoints WHERE id = $1;

-- name: webhook_list
SELECT * FROM offload_webhook_endpoints
WHERE $1::text IS NULL OR tenant = $1
ORDER BY created_at, id;

-- name: webhook_delete
DELETE FROM offload_webhook_endpoints WHERE id = $1 RETURNING id;

-- name: webhook_set_secret
UPDATE offload_webhook_endpoints SET secret = $2, updated_at = now()
WHERE id = $1
RETURNING *;

-- name: webhook_disable
UPDATE offload_webhook_endpoints
SET disabled_at = now(), disabled_reason = $2, updated_at = now()
WHERE id = $1 AND disabled_at IS NULL;

-- name: deliveries_fail_endpoint
UPDATE offload_deliveries
SET status = 'failed', last_error = $2, lease_owner = NULL, lease_expires_at = NULL,
    finished_at = now(), updated_at = now()
WHERE endpoint_id = $1 AND status IN ('pending', 'delivering');

-- name: tenant_secret_get_or_create
WITH created AS (
    INSERT INTO offload_tenant_secrets (tenant, secret, created_at)
    VALUES ($1, $2, now())
    ON CONFLICT (tenant) DO NOTHING
    RETURNING secret)
SELECT secret FROM created
UNION ALL
SELECT secret FROM offload_tenant_secrets WHERE tenant = $1
LIMIT 1;

-- name: tenant_secret_rotate
INSERT INTO offload_tenant_secrets (tenant, secret, created_at, rotated_at)
VALUES ($1, $2, now(), now())
ON CONFLICT (tenant) DO UPDATE SET secret = excluded.secret, rotated_at = excluded.rotated_at
RETURNING secret;

-- name: job_notify_insert
INSERT INTO offload_job_notify (job_id, webhook, email) VALUES ($1, $2, $3);

-- name: job_notify_get
SELECT * FROM offload_job_notify WHERE job_id = ANY($1::uuid[]);

-- name: feed_cursor_take
INSERT INTO offload_feed_cursors AS c (name, position, holder, lease_expires_at, updated_at)
VALUES ($1, NULL, $2, now() + make_interval(secs => $3), now())
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder, lease_expires_at = excluded.lease_expires_at,
    updated_at = excluded.updated_at
WHERE c.holder IS NULL OR c.holder = excluded.holder OR c.lease_expires_at < now()
RETURNING position;

-- name: feed_cursor_release
UPDATE offload_feed_cursors SET holder = NULL, lease_expires_at = NULL
WHERE name = $1 AND holder = $2;

-- name: feed_cursor_move
UPDATE offload_feed_cursors SET position = $3, updated_at = now()
WHERE name = $1 AND holder = $2;

-- name: delivery_insert
INSERT INTO offload_deliveries (
    id, dedupe_key, tenant, channel, endpoint_id, target, job_id, event_type, payload,
    status, next_attempt_at, deadline_at, created_at, updated_at)
SELECT d.id, d.dedupe_key, d.tenant, d.channel, d.endpoint_id, d.target, d.job_id,
       d.event_type, d.payload, 'pending', now(), now() + make_interval(secs => $2), now(), now()
FROM jsonb_to_recordset($1::jsonb) AS d(
    id text, dedupe_key text, tenant text, channel text, endpoint_id text, target text,
    job_id uuid, event_type text, payload text)
ON CONFLICT (dedupe_key) DO NOTHING;

-- name: delivery_claim
WITH due AS (
    SELECT id FROM offload_deliveries
    WHERE status IN ('pending', 'delivering') AND next_attempt_at <= now()
      AND (status = 'pending' OR lease_expires_at < now())
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)
UPDATE offload_deliveries d
SET status = 'delivering', attempts = attempts + 1, lease_owner = $1,
    lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
FROM due WHERE d.id = due.id
RETURNING d.*;

-- name: delivery_record
UPDATE offload_deliveries
SET status = $4, next_attempt_at = now() + make_interval(secs => $5), last_status_code = $6,
    last_error = $7, lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
    finished_at = CASE WHEN $4 IN ('succeeded', 'failed') THEN now() END
WHERE id = $1 AND status = 'delivering' AND lease_owner = $2 AND attempts = $3
RETURNING endpoint_id;

-- name: attempt_insert
INSERT INTO offload_delivery_attempts
    (delivery_id, n, attempted_at, duration_ms, status_code, error)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING;

-- name: delivery_get
SELECT * FROM offload_deliveries WHERE id = $1;

-- name: delivery_attempts
SELECT * FROM offload_delivery_attempts WHERE delivery_id = $1 ORDER BY n;

-- name: delivery_resend
UPDATE offload_deliveries
SET status = 'pending', next_attempt_at = now(), deadline_at = now() + make_interval(secs => $2),
    finished_at = NULL, updated_at = now()
WHERE id = $1 AND status <> 'delivering'
RETURNING *;
