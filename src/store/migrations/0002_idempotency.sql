-- Answers kept for `Idempotency-Key` repeats. Portable SQL, as 0001.
-- `id` is the hex SHA-256 of the caller's scope and the client's key: neither the key nor who
-- sent it is stored in clear. A row is `running` while one request works on it (its owner
-- renews `lease_until`; a row whose lease ran out belonged to a gateway that died and may be
-- taken over), then `done` with the answer, until `expires_at`.

CREATE TABLE idempotent_answers (
    id          TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,           -- hex SHA-256 of method, path and body
    state       TEXT NOT NULL,           -- 'running', 'done' or 'not_kept'
    owner       TEXT NOT NULL,           -- the run (a UUID) working on it
    lease_until BIGINT NOT NULL,
    status      BIGINT,
    headers     TEXT,                    -- JSON array of [name, value] pairs
    body        TEXT,                    -- base64
    expires_at  BIGINT NOT NULL
);

CREATE INDEX idempotent_answers_expiry ON idempotent_answers (expires_at);
