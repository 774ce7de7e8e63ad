-- Keys that sign the JWTs Deploy trusts, shared by every replica so that all publish
-- the same set. The private key is sealed (AES-GCM under a key derived from the token
-- key). A key signs from not_before until a newer key's not_before.
CREATE TABLE signing_keys (
    kid        TEXT   PRIMARY KEY,
    alg        TEXT   NOT NULL,
    sealed_key TEXT   NOT NULL,
    public_jwk TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    not_before BIGINT NOT NULL
);
CREATE INDEX signing_keys_alg ON signing_keys (alg, not_before);

-- Which token key made each stored hash, so that a key can be rotated.
ALTER TABLE tokens ADD COLUMN key_id TEXT;

-- Roles refreshed at an SSO sign-in reach cached tokens (and their JWTs) at once.
DROP TRIGGER users_changed ON users;
CREATE TRIGGER users_changed AFTER UPDATE OF disabled, source, roles ON users
FOR EACH ROW
WHEN (OLD.disabled IS DISTINCT FROM NEW.disabled OR OLD.source IS DISTINCT FROM NEW.source
      OR OLD.roles IS DISTINCT FROM NEW.roles)
EXECUTE FUNCTION patgate_user_changed();
