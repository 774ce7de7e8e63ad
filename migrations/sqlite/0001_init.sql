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

-- Every change that must evict cached tokens, in commit order. Gateway processes sharing
-- this file poll it; triggers fill it so that no writer can forget.
CREATE TABLE invalidations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL CHECK (kind IN ('token', 'user')),
    key        TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE TRIGGER tokens_changed AFTER UPDATE OF revoked_at, expires_at, username ON tokens
WHEN OLD.revoked_at IS NOT NEW.revoked_at OR OLD.expires_at IS NOT NEW.expires_at OR OLD.username IS NOT NEW.username
BEGIN
    INSERT INTO invalidations (kind, key, created_at)
    VALUES ('token', OLD.token_hash, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER tokens_deleted AFTER DELETE ON tokens
BEGIN
    INSERT INTO invalidations (kind, key, created_at)
    VALUES ('token', OLD.token_hash, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER users_changed AFTER UPDATE OF disabled, source ON users
WHEN OLD.disabled IS NOT NEW.disabled OR OLD.source IS NOT NEW.source
BEGIN
    INSERT INTO invalidations (kind, key, created_at)
    VALUES ('user', OLD.username, CAST(strftime('%s', 'now') AS INTEGER));
END;
