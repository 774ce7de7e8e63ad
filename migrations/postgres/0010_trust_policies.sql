-- Trust policies: which CI identity tokens (issuer, audience, claim conditions) may be
-- exchanged for a short-lived gateway token, acting as which user, with which rules.
CREATE TABLE trust_policies (
    name              TEXT   PRIMARY KEY NOT NULL,
    issuer            TEXT   NOT NULL,
    audience          TEXT   NOT NULL,
    -- JSON object: claim name -> exact value or glob (* and ?).
    claims            TEXT   NOT NULL,
    username          TEXT   NOT NULL,
    scope             TEXT   NOT NULL DEFAULT 'full' CHECK (scope IN ('full', 'read', 'webhook')),
    -- JSON array of networks in CIDR notation; NULL: from anywhere.
    allowed_addresses TEXT,
    lifetime_seconds  BIGINT NOT NULL,
    exchanges         BIGINT NOT NULL DEFAULT 0,
    last_used_at      BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX trust_policies_issuer ON trust_policies (issuer);

-- Identity tokens already exchanged, by (issuer, jti), until they expire: each is
-- accepted once.
CREATE TABLE exchanged_identity_tokens (
    issuer     TEXT   NOT NULL,
    jti        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX exchanged_identity_tokens_expiry ON exchanged_identity_tokens (expires_at);
