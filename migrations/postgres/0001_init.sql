-- Users known to the gateway and their tokens. Times are Unix seconds, UTC.
CREATE TABLE users (
    username   TEXT    PRIMARY KEY NOT NULL,
    source     TEXT    NOT NULL DEFAULT 'internal' CHECK (source IN ('internal', 'ldap', 'sso')),
    email      TEXT,
    disabled   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT  NOT NULL
);

CREATE TABLE tokens (
    id           TEXT   PRIMARY KEY NOT NULL,
    username     TEXT   NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    name         TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    last_used_ip TEXT
);

CREATE UNIQUE INDEX tokens_live_name ON tokens (username, name) WHERE revoked_at IS NULL;
CREATE INDEX tokens_username ON tokens (username);

-- Every change that must evict cached tokens is announced on channel
-- patgate_invalidate ("t:<hash>" or "u:<username>") when its transaction commits;
-- triggers send it so that no writer can forget.
CREATE FUNCTION patgate_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('patgate_invalidate', 't:' || OLD.token_hash);
    RETURN NULL;
END
$$;

CREATE FUNCTION patgate_user_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('patgate_invalidate', 'u:' || OLD.username);
    RETURN NULL;
END
$$;

CREATE TRIGGER tokens_changed AFTER UPDATE OF revoked_at, expires_at, username ON tokens
FOR EACH ROW
WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
      OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
      OR OLD.username IS DISTINCT FROM NEW.username)
EXECUTE FUNCTION patgate_token_changed();

CREATE TRIGGER tokens_deleted AFTER DELETE ON tokens
FOR EACH ROW EXECUTE FUNCTION patgate_token_changed();

CREATE TRIGGER users_changed AFTER UPDATE OF disabled, source ON users
FOR EACH ROW
WHEN (OLD.disabled IS DISTINCT FROM NEW.disabled OR OLD.source IS DISTINCT FROM NEW.source)
EXECUTE FUNCTION patgate_user_changed();
