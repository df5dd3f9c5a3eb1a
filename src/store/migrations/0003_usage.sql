-- Usage per project, key and model, per minute (issue 15). Written by each gateway's usage
-- writer (summed in, so several instances add to the same rows); read by /admin/v1/usage.
-- '' stands for "none" in project_id and key_id (a gateway without [auth]).

CREATE TABLE usage_minutes (
    minute            BIGINT NOT NULL,   -- Unix minutes
    project_id        TEXT NOT NULL,
    key_id            TEXT NOT NULL,
    model             TEXT NOT NULL,     -- as the client asked for it
    requests          BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens      BIGINT NOT NULL,
    cached_tokens     BIGINT NOT NULL,
    reasoning_tokens  BIGINT NOT NULL,
    PRIMARY KEY (minute, project_id, key_id, model)
);

CREATE INDEX usage_minutes_by_project ON usage_minutes (project_id, minute);
