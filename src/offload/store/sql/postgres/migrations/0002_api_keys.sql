-- API keys (stored only as a SHA-256 of the key) and discarded dead letters.
CREATE TABLE offload_api_keys (
    id          text PRIMARY KEY,
    key_hash    text NOT NULL UNIQUE,
    tenant      text NOT NULL,
    role        text NOT NULL CHECK (role IN ('client','viewer','admin')),
    name        text,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

-- A discarded dead letter stays ``failed`` with its history; it leaves the dead-letter list.
-- A replay followed by a new failure (finished_at > discarded_at) brings it back.
ALTER TABLE offload_jobs ADD COLUMN discarded_at timestamptz;
