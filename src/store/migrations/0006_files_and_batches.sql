-- The gateway's own Files and Batches API (for backends without a Batch API). Portable SQL, as
-- 0001. Times are unix seconds, as OpenAI's objects carry them. A file's bytes live on disk
-- (`[batches] dir`); its row says whose it is. `owner` is `project:<id>` with `[auth]`, else
-- `client:<hex SHA-256 of the client's Authorization>`: never a key or a credential.

CREATE TABLE own_files (
    id          TEXT PRIMARY KEY,        -- file-<uuid>
    owner       TEXT NOT NULL,
    purpose     TEXT NOT NULL,           -- 'batch', 'batch_output'
    filename    TEXT NOT NULL,
    bytes       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE INDEX own_files_owner ON own_files (owner, created_at);

-- A batch and its lifecycle: validating -> in_progress -> finalizing -> completed, or failed,
-- cancelling -> cancelled, expired. `key_hash` is the SHA-256 of the gateway key that created
-- it (as gateway_keys stores it), so its lines run under that key's scope, limits and usage.
CREATE TABLE own_batches (
    id             TEXT PRIMARY KEY,     -- batch_<uuid>
    owner          TEXT NOT NULL,
    key_hash       TEXT,
    endpoint       TEXT NOT NULL,
    input_file_id  TEXT NOT NULL,
    status         TEXT NOT NULL,
    errors         TEXT,                 -- JSON array of {code, line, message, param}
    metadata       TEXT,                 -- JSON object
    output_keep_seconds BIGINT,          -- output_expires_after.seconds, when given
    output_file_id TEXT,
    error_file_id  TEXT,
    created_at     BIGINT NOT NULL,
    in_progress_at BIGINT,
    expires_at     BIGINT NOT NULL,
    finalizing_at  BIGINT,
    completed_at   BIGINT,
    failed_at      BIGINT,
    expired_at     BIGINT,
    cancelling_at  BIGINT,
    cancelled_at   BIGINT,
    total          BIGINT NOT NULL,
    completed      BIGINT NOT NULL,
    failed         BIGINT NOT NULL
);

CREATE INDEX own_batches_owner ON own_batches (owner, created_at);
CREATE INDEX own_batches_status ON own_batches (status);

-- One line of a batch's input file: where it is in the file, and its result once it ran.
-- `pending` -> `running` (claimed by `claimed_by` until `claimed_until`, renewed while it runs)
-- -> `done`. A `running` line whose claim lapsed was in flight when its gateway died: it is
-- finished as interrupted, never sent again (a line runs at most once).
CREATE TABLE own_batch_lines (
    batch_id      TEXT NOT NULL,
    line          BIGINT NOT NULL,       -- 1-based line number in the input file
    custom_id     TEXT NOT NULL,
    at            BIGINT NOT NULL,       -- byte offset of the line in the input file
    len           BIGINT NOT NULL,
    state         TEXT NOT NULL,
    claimed_by    TEXT,
    claimed_until BIGINT,
    ok            BIGINT,                -- 1: output file, 0: error file
    result        TEXT,                  -- the output line (BatchRequestOutput JSON)
    PRIMARY KEY (batch_id, line)
);

CREATE INDEX own_batch_lines_state ON own_batch_lines (batch_id, state);
