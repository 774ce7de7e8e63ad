-- What each token's owner can see of its use: requests per day (UTC), the addresses it
-- came from with first and last seen, and its last refusal. Written in batches off the
-- request path by the last-use writer; day rows are kept 90 days.

-- Requests per token per UTC day (`day`: days since 1970-01-01). Replicas add their
-- counts to the same row.
CREATE TABLE token_usage_days (
    token_id TEXT   NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    day      BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (token_id, day)
);
-- Pruning walks the oldest days.
CREATE INDEX token_usage_days_day ON token_usage_days (day);

-- When an address was last seen; rows from before this column count from first_seen.
ALTER TABLE token_addresses ADD COLUMN last_seen BIGINT;
UPDATE token_addresses SET last_seen = first_seen;
CREATE INDEX token_addresses_recent ON token_addresses (token_id, last_seen);

-- The last refusal of a known token (expired, revoked, out of scope, …).
CREATE TABLE token_refusals (
    token_id TEXT   PRIMARY KEY NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    code     TEXT   NOT NULL,
    at       BIGINT NOT NULL
);
