-- Service accounts: a Deploy user that automation's tokens act as, looked after by
-- owners (users) rather than by one person, so that a pipeline does not break when a
-- person leaves. The account is a row in `users` (its tokens are that user's tokens);
-- this table marks it and says who looks after it.
CREATE TABLE service_accounts (
    username    TEXT   PRIMARY KEY NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    description TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    created_by  TEXT,
    updated_at  BIGINT NOT NULL,
    -- Since when no owner is active (disabled, deprovisioned, suspended); audited once.
    orphaned_at BIGINT
);

CREATE TABLE service_account_owners (
    account  TEXT   NOT NULL REFERENCES service_accounts (username) ON DELETE CASCADE,
    owner    TEXT   NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (account, owner)
);
CREATE INDEX service_account_owners_owner ON service_account_owners (owner);
