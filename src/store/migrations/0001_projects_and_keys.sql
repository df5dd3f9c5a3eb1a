-- Projects, their encrypted upstream credentials and their gateway keys.
-- Portable SQL: the same text runs on SQLite and PostgreSQL (TEXT, BIGINT, no BLOB/BYTEA, no
-- booleans), so both databases share one schema and one code path. Times are Unix seconds.

CREATE TABLE projects (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    models     TEXT NOT NULL,            -- JSON array of model-name prefixes
    created_at BIGINT NOT NULL
);

CREATE TABLE upstream_credentials (
    project_id TEXT NOT NULL REFERENCES projects (id),
    backend    TEXT NOT NULL,
    sealed     TEXT NOT NULL,            -- AES-256-GCM, "v1.<key id>.<base64 nonce+ciphertext>"
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, backend)
);

CREATE TABLE gateway_keys (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL REFERENCES projects (id),
    name          TEXT,
    prefix        TEXT NOT NULL,         -- the first characters, for people to tell keys apart
    hash          TEXT NOT NULL UNIQUE,  -- hex SHA-256 of the whole key; the key itself is never stored
    models        TEXT,                  -- JSON array, NULL: the project's prefixes
    expires_at    BIGINT,
    max_requests  BIGINT,
    used_requests BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE INDEX gateway_keys_project ON gateway_keys (project_id);

-- One row whose revision every change to projects, credentials or keys increments in the same
-- transaction; gateway instances poll it and drop their key cache when it moves.
CREATE TABLE auth_revision (
    id       BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL
);

INSERT INTO auth_revision (id, revision) VALUES (1, 0);
