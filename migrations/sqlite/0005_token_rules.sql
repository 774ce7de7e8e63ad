-- Per-token rules: a scope (what a token may do), an address allowlist (where from),
-- the expiration choice it was made with (so a rotation can repeat it), and the
-- rotation family (which token replaced which, and until when the old one still works).
ALTER TABLE tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'full'
    CHECK (scope IN ('full', 'read', 'webhook'));
-- JSON array of networks in CIDR notation; NULL: from anywhere.
ALTER TABLE tokens ADD COLUMN allowed_addresses TEXT;
-- `7d`, `30d`, …, `never`; NULL for tokens made before this column existed.
ALTER TABLE tokens ADD COLUMN expiration TEXT;
ALTER TABLE tokens ADD COLUMN rotated_from TEXT;
ALTER TABLE tokens ADD COLUMN replaced_by TEXT;
ALTER TABLE tokens ADD COLUMN rotated_at BIGINT;
-- A rotated-away token works until this instant; a use after it is a reuse.
ALTER TABLE tokens ADD COLUMN grace_until BIGINT;

-- A rotated token and its successor share a name while the grace lasts.
DROP INDEX tokens_live_name;
CREATE UNIQUE INDEX tokens_live_name ON tokens (username, name)
    WHERE revoked_at IS NULL AND replaced_by IS NULL;

-- Rotating a token changes what its cached entry must say.
DROP TRIGGER tokens_changed;
CREATE TRIGGER tokens_changed AFTER UPDATE OF revoked_at, expires_at, username, grace_until ON tokens
WHEN OLD.revoked_at IS NOT NEW.revoked_at OR OLD.expires_at IS NOT NEW.expires_at
  OR OLD.username IS NOT NEW.username OR OLD.grace_until IS NOT NEW.grace_until
BEGIN
    INSERT INTO invalidations (kind, key, created_at)
    VALUES ('token', OLD.token_hash, CAST(strftime('%s', 'now') AS INTEGER));
END;
