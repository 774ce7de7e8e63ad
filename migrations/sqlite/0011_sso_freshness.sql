-- SSO users' roles and status kept as fresh as the identity provider: SCIM Groups push
-- memberships, and a refresh token lets the gateway ask the provider again.

-- SCIM Groups (RFC 7643 §4.2). A group's displayName is the role its members carry.
CREATE TABLE scim_groups (
    id           TEXT   PRIMARY KEY NOT NULL,
    display_name TEXT   NOT NULL,
    -- displayName in lower case: one group per name, whatever its case.
    name_key     TEXT   NOT NULL UNIQUE,
    external_id  TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE TABLE scim_group_members (
    group_id TEXT NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    PRIMARY KEY (group_id, username)
);
CREATE INDEX scim_group_members_user ON scim_group_members (username);

-- Who last set a user's roles (signin, scim, revalidation) and when. Roles SCIM pushed
-- are not overwritten by a later sign-in.
ALTER TABLE users ADD COLUMN roles_source TEXT;
ALTER TABLE users ADD COLUMN roles_updated_at BIGINT;
-- Set when the provider refused to re-validate the user (invalid_grant): their tokens
-- are refused until they sign in through SSO again. Nothing is deleted.
ALTER TABLE users ADD COLUMN sso_suspended_at BIGINT;

-- One SSO user's re-validation: the provider's refresh token (sealed), when it is due.
CREATE TABLE sso_revalidation (
    username      TEXT   PRIMARY KEY NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    -- NULL: the provider gave no refresh token, or refused the last one.
    refresh_token TEXT,
    next_at       BIGINT NOT NULL,
    last_at       BIGINT,
    -- ok, refused, unreachable
    last_result   TEXT,
    last_error    TEXT
);
CREATE INDEX sso_revalidation_due ON sso_revalidation (next_at);

-- A suspension reaches cached tokens at once, as a disable does.
DROP TRIGGER users_changed;
CREATE TRIGGER users_changed AFTER UPDATE OF disabled, source, roles, sso_suspended_at ON users
WHEN OLD.disabled IS NOT NEW.disabled OR OLD.source IS NOT NEW.source OR OLD.roles IS NOT NEW.roles
     OR OLD.sso_suspended_at IS NOT NEW.sso_suspended_at
BEGIN
    INSERT INTO invalidations (kind, key, created_at)
    VALUES ('user', OLD.username, CAST(strftime('%s', 'now') AS INTEGER));
END;
