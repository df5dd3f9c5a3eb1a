-- Rate limits per project and per key (issue 15): JSON objects
-- {"requests_per_minute":…,"tokens_per_minute":…,"max_concurrent":…}, NULL for none.

ALTER TABLE projects ADD COLUMN rate_limit TEXT;
ALTER TABLE gateway_keys ADD COLUMN rate_limit TEXT;
