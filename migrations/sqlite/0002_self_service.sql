-- Self-service and admin API: users' roles and admin status, policies, browser
-- sessions, pending SSO sign-ins, token addresses and the audit log.

ALTER TABLE users ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE;
-- Groups from the SSO provider as last seen at sign-in (JSON array of strings).
ALTER TABLE users ADD COLUMN roles TEXT;
ALTER TABLE users ADD COLUMN last_sign_in_at BIGINT;

ALTER TABLE tokens ADD COLUMN expiry_logged BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX tokens_expiring ON tokens (expires_at) WHERE expiry_logged = FALSE;

-- The administrators' policies: one row.
CREATE TABLE settings (
    id                       INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    max_token_expiration     TEXT    NOT NULL DEFAULT 'never',
    sso_pat_creation_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at               BIGINT,
    updated_by               TEXT
);
INSERT INTO settings (id) VALUES (1);

-- A policy change can change the answer for any cached token: the feed learns a new
-- kind, 'all'. SQLite cannot widen a CHECK constraint, so the table is rebuilt, with
-- the triggers that write to it dropped meanwhile and then created as before.
DROP TRIGGER tokens_changed;
DROP TRIGGER tokens_deleted;
DROP TRIGGER users_changed;

CREATE TABLE invalidations_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL CHECK (kind IN ('token', 'user', 'all')),
    key        TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);
INSERT INTO invalidations_new (id, kind, key, created_at)
    SELECT id, kind, key, created_at FROM invalidations;
DROP TABLE invalidations;
ALTER TABLE invalidations_new RENAME TO invalidations;

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

CREATE TRIGGER settings_changed AFTER UPDATE ON settings
BEGIN
    INSERT INTO invalidations (kind, key, created_at)
    VALUES ('all', 'settings', CAST(strftime('%s', 'now') AS INTEGER));
END;

-- Browser sessions, kept here so that every replica sees them. Only a hash of the
-- session id is stored.
CREATE TABLE sessions (
    id_hash      TEXT    PRIMARY KEY NOT NULL,
    username     TEXT    NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    csrf_token   TEXT    NOT NULL,
    method       TEXT    NOT NULL CHECK (method IN ('password', 'sso')),
    admin        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT  NOT NULL,
    last_seen_at BIGINT  NOT NULL,
    ip           TEXT
);
CREATE INDEX sessions_username ON sessions (username);

-- SSO sign-ins under way: state, nonce and PKCE verifier, used once.
CREATE TABLE sso_logins (
    state         TEXT   PRIMARY KEY NOT NULL,
    nonce         TEXT   NOT NULL,
    pkce_verifier TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Addresses each token has been used from, for the "first use from a new address" audit.
CREATE TABLE token_addresses (
    token_id   TEXT   NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    ip         TEXT   NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (token_id, ip)
);

CREATE TABLE audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       BIGINT  NOT NULL,
    actor    TEXT,
    action   TEXT    NOT NULL,
    username TEXT,
    token_id TEXT,
    ip       TEXT,
    detail   TEXT
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_username ON audit (username, at);
CREATE INDEX audit_action ON audit (action, at);
