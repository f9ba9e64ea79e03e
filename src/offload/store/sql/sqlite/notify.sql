-- Webhook endpoints, tenant secrets, a job's own targets, deliveries and feed cursors.
-- The same query names as postgres/notify.sql.

-- name: webhook_insert
INSERT INTO offload_webhook_endpoints (id, tenant, url, events, secret, created_at, updated_at)
VALUES (:id, :tenant, :url, :events, :secret, :now, :now)
RETURNING *;

-- name: webhook_get
SELECT * FROM offload_webhook_endpoints WHERE id = :id;

-- name: webhook_list
SELECT * FROM offload_webhook_endpoints
WHERE :tenant IS NULL OR tenant = :tenant
ORDER BY created_at, id;

-- name: webhook_delete
DELETE FROM offload_webhook_endpoints WHERE id = :id RETURNING id;

-- name: webhook_set_secret
UPDATE offload_webhook_endpoints SET secret = :secret, updated_at = :now
WHERE id = :id
RETURNING *;

-- name: webhook_disable
UPDATE offload_webhook_endpoints
SET disabled_at = :now, disabled_reason = :reason, updated_at = :now
WHERE id = :id AND disabled_at IS NULL;

-- name: deliveries_fail_endpoint
UPDATE offload_deliveries
SET status = 'failed', last_error = :reason, lease_owner = NULL, lease_expires_at = NULL,
    finished_at = :now, updated_at = :now
WHERE endpoint_id = :id AND status IN ('pending', 'delivering');

-- name: tenant_secret_create
INSERT INTO offload_tenant_secrets (tenant, secret, created_at)
VALUES (:tenant, :secret, :now)
ON CONFLICT (tenant) DO NOTHING;

-- name: tenant_secret_get
SELECT secret FROM offload_tenant_secrets WHERE tenant = :tenant;

-- name: tenant_secret_rotate
INSERT INTO offload_tenant_secrets (tenant, secret, created_at, rotated_at)
VALUES (:tenant, :secret, :now, :now)
ON CONFLICT (tenant) DO UPDATE SET secret = excluded.secret, rotated_at = excluded.rotated_at
RETURNING secret;

-- name: job_notify_insert
INSERT INTO offload_job_notify (job_id, webhook, email) VALUES (:job_id, :webhook, :email);

-- name: job_notify_get
SELECT * FROM offload_job_notify WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: feed_cursor_take
INSERT INTO offload_feed_cursors (name, position, holder, lease_expires_at, updated_at)
VALUES (:name, NULL, :holder, :now + :lease, :now)
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder, lease_expires_at = excluded.lease_expires_at,
    updated_at = excluded.updated_at
WHERE offload_feed_cursors.holder IS NULL OR offload_feed_cursors.holder = excluded.holder
   OR offload_feed_cursors.lease_expires_at < excluded.updated_at
RETURNING position;

-- name: feed_cursor_release
UPDATE offload_feed_cursors SET holder = NULL, lease_expires_at = NULL
WHERE name = :name AND holder = :holder;

-- name: feed_cursor_move
UPDATE offload_feed_cursors SET position = :position, updated_at = :now
WHERE name = :name AND holder = :holder;

-- name: delivery_insert
INSERT INTO offload_deliveries (
    id, dedupe_key, tenant, channel, endpoint_id, target, job_id, event_type, payload,
    status, next_attempt_at, deadline_at, created_at, updated_at)
VALUES (
    :id, :dedupe_key, :tenant, :channel, :endpoint_id, :target, :job_id, :event_type, :payload,
    'pending', :now, :now + :window, :now, :now)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id;

-- name: delivery_due
SELECT 1 FROM offload_deliveries
WHERE status IN ('pending', 'delivering') AND next_attempt_at <= :now
  AND (status = 'pending' OR lease_expires_at < :now)
LIMIT 1;

-- name: delivery_claim
UPDATE offload_deliveries
SET status = 'delivering', attempts = attempts + 1, lease_owner = :owner,
    lease_expires_at = :now + :lease, updated_at = :now
WHERE id IN (
    SELECT id FROM offload_deliveries
    WHERE status IN ('pending', 'delivering') AND next_attempt_at <= :now
      AND (status = 'pending' OR lease_expires_at < :now)
    ORDER BY next_attempt_at
    LIMIT :limit)
RETURNING *;

-- name: delivery_record
UPDATE offload_deliveries
SET status = :status, next_attempt_at = :now + :retry_in, last_status_code = :status_code,
    last_error = :error, lease_owner = NULL, lease_expires_at = NULL, updated_at = :now,
    finished_at = CASE WHEN :status IN ('succeeded', 'failed') THEN :now END
WHERE id = :id AND status = 'delivering' AND lease_owner = :owner AND attempts = :attempt
RETURNING endpoint_id;

-- name: attempt_insert
INSERT INTO offload_delivery_attempts
    (delivery_id, n, attempted_at, duration_ms, status_code, error)
VALUES (:id, :n, :started_at, :duration_ms, :status_code, :error)
ON CONFLICT DO NOTHING;

-- name: delivery_get
SELECT * FROM offload_deliveries WHERE id = :id;

-- name: delivery_attempts
SELECT * FROM offload_delivery_attempts WHERE delivery_id = :id ORDER BY n;

-- name: delivery_resend
UPDATE offload_deliveries
SET status = 'pending', next_attempt_at = :now, deadline_at = :now + :window,
    finished_at = NULL, updated_at = :now
WHERE id = :id AND status <> 'delivering'
RETURNING *;
