-- The `batch` backend's durable state. Portable SQL, as 0001. Times are unix milliseconds
-- (windows and polls are configured below the second).
-- A line is one client request: `waiting` to be sent, `sent` in a batch, `done` with its
-- answer until `expires_at`. `request_key` ties a client's retry (same caller, same
-- Idempotency-Key, same request) to the line it already has; it is a hash, never the key.

CREATE TABLE batch_lines (
    id          TEXT PRIMARY KEY,        -- the line's custom_id: a UUID of the gateway's
    request_key TEXT NOT NULL UNIQUE,    -- hex SHA-256 of caller, key and request
    backend     TEXT NOT NULL,
    grp         TEXT NOT NULL,           -- hex SHA-256 of credential, endpoint and model
    endpoint    TEXT NOT NULL,           -- /v1/chat/completions, /v1/embeddings, ...
    body        TEXT NOT NULL,           -- the line's JSON body
    state       TEXT NOT NULL,           -- 'waiting', 'sent' or 'done'
    batch_id    TEXT,
    status      BIGINT,
    result      TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE INDEX batch_lines_waiting ON batch_lines (backend, state, grp);
CREATE INDEX batch_lines_batch ON batch_lines (batch_id);

-- A batch is recorded (`intent`) with its lines BEFORE it is created upstream, so that a
-- gateway restarting finds it and looks it up by its metadata instead of creating it twice.
CREATE TABLE batch_jobs (
    id          TEXT PRIMARY KEY,        -- the gateway's id, sent as metadata
    backend     TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    state       TEXT NOT NULL,           -- 'intent', 'running' or 'done'
    upstream_id TEXT,
    next_poll   BIGINT NOT NULL,
    pause       BIGINT NOT NULL,         -- the current pause between polls
    created_at  BIGINT NOT NULL
);

CREATE INDEX batch_jobs_work ON batch_jobs (backend, state, next_poll);

-- One dispatcher per backend at a time, across every gateway sharing the store.
CREATE TABLE batch_leases (
    backend     TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
