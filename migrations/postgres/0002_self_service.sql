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
    id                       INTEGER PRIMARY KEY CHECK (id = 1),
    max_token_expiration     TEXT    NOT NULL DEFAULT 'never',
    sso_pat_creation_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at               BIGINT,
    updated_by               TEXT
);
INSERT INTO settings (id) VALUES (1);

-- A policy change can change the answer for any cached token: announced as 'a:'.
CREATE FUNCTION patgate_settings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('patgate_invalidate', 'a:settings');
    RETURN NULL;
END
$$;

CREATE TRIGGER settings_changed AFTER UPDATE ON settings
FOR EACH ROW EXECUTE FUNCTION patgate_settings_changed();

-- Browser sessions, kept here so that every replica sees them. Only a hash of the
-- session id is stored.
CREATE TABLE sessions (
    id_hash      TEXT    PRIMARY KEY,
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
    state         TEXT   PRIMARY KEY,
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
    id       BIGSERIAL PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT,
    action   TEXT   NOT NULL,
    username TEXT,
    token_id TEXT,
    ip       TEXT,
    detail   TEXT
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_username ON audit (username, at);
CREATE INDEX audit_action ON audit (action, at);
