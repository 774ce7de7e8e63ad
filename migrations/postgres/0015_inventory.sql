-- The administrators' inventory of every token, and the limit of active tokens per user.

-- How a token was made: `page` (a browser session), `cli` (the command line), `api` (a
-- password or another API client) or `exchange` (a token exchange). Tokens made before
-- this was kept have none (listed as `unknown`), except exchanged ones, known by their
-- expiration.
ALTER TABLE tokens ADD COLUMN made_by TEXT;
UPDATE tokens SET made_by = 'exchange' WHERE expiration = 'exchange';

-- The inventory's sorts and filters over many tokens: newest first (the default), by
-- expiry ("never" as the latest: the expression the queries use, so that a range of
-- expiries and "expiring soonest" are read from the index), by last use (never used as
-- the oldest).
CREATE INDEX tokens_created ON tokens (created_at, id);
CREATE INDEX tokens_expires ON tokens ((COALESCE(expires_at, 9223372036854775807)), id);
CREATE INDEX tokens_last_used ON tokens ((COALESCE(last_used_at, 0)), id);
-- Filters on a column with few values, newest first: a rare value is found without
-- walking every token.
CREATE INDEX tokens_scope ON tokens (scope, created_at, id);
CREATE INDEX tokens_made_by ON tokens (made_by, created_at, id);
CREATE INDEX tokens_revoked ON tokens (revoked_at, id);

-- At most this many active tokens per user; NULL: no limit (the default).
ALTER TABLE settings ADD COLUMN max_tokens_per_user BIGINT;
