-- Webhooks and email (issue 4): registered endpoints, tenant signing secrets, a job's own
-- notification targets, deliveries (one row per event and target) with every attempt, and the
-- dispatcher's position in the event feed.

-- Secrets are kept as given (whsec_…), not hashed: the dispatcher needs them to sign.
CREATE TABLE offload_webhook_endpoints (
    id               text PRIMARY KEY,
    tenant           text NOT NULL,
    url              text NOT NULL,
    events           text[] NOT NULL,
    secret           text NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    disabled_at      timestamptz,
    disabled_reason  text
);
CREATE INDEX offload_webhook_endpoints_tenant ON offload_webhook_endpoints (tenant);

-- Signs a job's own webhook (options.notify.webhook); created on first use.
CREATE TABLE offload_tenant_secrets (
    tenant      text PRIMARY KEY,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL,
    rotated_at  timestamptz
);

CREATE TABLE offload_job_notify (
    job_id   uuid PRIMARY KEY,
    webhook  text,
    email    text,
    CHECK (webhook IS NOT NULL OR email IS NOT NULL)
);

CREATE TABLE offload_deliveries (
    id                text PRIMARY KEY,
    dedupe_key        text NOT NULL UNIQUE,
    tenant            text NOT NULL,
    channel           text NOT NULL CHECK (channel IN ('webhook','email')),
    endpoint_id       text,
    target            text NOT NULL,
    job_id            uuid NOT NULL,
    event_type        text NOT NULL,
    payload           text NOT NULL,
    status            text NOT NULL CHECK (status IN ('pending','delivering','succeeded','failed')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL,
    deadline_at       timestamptz NOT NULL,
    lease_owner       text,
    lease_expires_at  timestamptz,
    last_status_code  integer,
    last_error        text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    finished_at       timestamptz,
    CHECK ((status = 'delivering') = (lease_expires_at IS NOT NULL))
);
CREATE INDEX offload_deliveries_due ON offload_deliveries (next_attempt_at)
    WHERE status IN ('pending','delivering');
CREATE INDEX offload_deliveries_endpoint ON offload_deliveries (endpoint_id, id);
CREATE INDEX offload_deliveries_job ON offload_deliveries (job_id, id);

CREATE TABLE offload_delivery_attempts (
    delivery_id  text NOT NULL,
    n            integer NOT NULL,
    attempted_at timestamptz NOT NULL,
    duration_ms  double precision NOT NULL,
    status_code  integer,
    error        text,
    PRIMARY KEY (delivery_id, n)
);

-- Where a feed reader (the dispatcher) is in the event feed; one holder at a time (a lease).
CREATE TABLE offload_feed_cursors (
    name              text PRIMARY KEY,
    position          text,
    holder            text,
    lease_expires_at  timestamptz,
    updated_at        timestamptz NOT NULL
);
