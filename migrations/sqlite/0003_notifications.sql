-- Expiry notifications: SMTP server items, the administrators' notification settings,
-- one outcome row per notified token, and a record of every pass.

-- notification.PatSmtpServer items. The password is sealed (AES-256-GCM under a key
-- derived from the token key); never stored in clear.
CREATE TABLE smtp_servers (
    id              TEXT    PRIMARY KEY NOT NULL,
    name            TEXT    NOT NULL UNIQUE,
    host            TEXT    NOT NULL,
    port            BIGINT  NOT NULL,
    username        TEXT,
    password_sealed TEXT,
    from_address    TEXT    NOT NULL,
    test_address    TEXT,
    -- JSON object of JavaMail properties, as given.
    properties      TEXT    NOT NULL DEFAULT '{}',
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

-- Kept apart from `settings`, whose every change flushes the token caches.
CREATE TABLE notify_settings (
    id             INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    enabled        BOOLEAN NOT NULL DEFAULT FALSE,
    days_before    BIGINT  NOT NULL DEFAULT 7,
    smtp_server_id TEXT    REFERENCES smtp_servers (id),
    -- NULL: the built-in template.
    subject        TEXT,
    body           TEXT,
    updated_at     BIGINT,
    updated_by     TEXT
);
INSERT INTO notify_settings (id) VALUES (1);

-- One row per token whose expiry was (or is being) announced. A pass claims the row
-- before sending; the primary key makes the claim exclusive.
CREATE TABLE notifications (
    token_id   TEXT    PRIMARY KEY NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    status     TEXT    NOT NULL CHECK (status IN ('claimed', 'sent', 'failed')),
    email      TEXT    NOT NULL,
    attempts   BIGINT  NOT NULL DEFAULT 1,
    last_error TEXT,
    -- The pass holding or last holding the claim.
    claimed_by TEXT    NOT NULL,
    claimed_at BIGINT  NOT NULL,
    sent_at    BIGINT,
    updated_at BIGINT  NOT NULL
);
CREATE INDEX notifications_updated ON notifications (updated_at);

CREATE TABLE notify_passes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT  NOT NULL,
    cause       TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    due         BIGINT  NOT NULL DEFAULT 0,
    sent        BIGINT  NOT NULL DEFAULT 0,
    failed      BIGINT  NOT NULL DEFAULT 0,
    skipped     BIGINT  NOT NULL DEFAULT 0,
    -- JSON: the reason when nothing was sent, skipped users and failures.
    detail      TEXT
);
CREATE INDEX notify_passes_started ON notify_passes (started_at);

-- Live tokens by expiry: the notifier reads its window in (expiry, id) pages from it.
CREATE INDEX tokens_live_expiry ON tokens (expires_at, id) WHERE revoked_at IS NULL;
