-- An SSO user is who the provider says they are: the ID token's issuer and subject,
-- bound to one user. A new SSO user is bound at their first sign-in; an internal or
-- LDAP user only when an administrator links the two.
CREATE TABLE sso_identities (
    issuer     TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    username   TEXT   NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    -- The administrator who linked an existing user; NULL when bound at first sign-in.
    linked_by  TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE UNIQUE INDEX sso_identities_user ON sso_identities (issuer, username);

-- A sign-in under way belongs to the browser that started it: the hash of a random
-- value kept in that browser's cookie. Rows from before this column cannot finish.
ALTER TABLE sso_logins ADD COLUMN binding_hash TEXT;
