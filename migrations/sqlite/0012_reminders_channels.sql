-- Several expiry reminders per token, unused tokens retired, and webhook channels.

-- The reminder days as a JSON list (largest first); NULL: the one-element list
-- [days_before], as before. days_before keeps the largest, for older readers.
ALTER TABLE notify_settings ADD COLUMN reminder_days TEXT;
-- Days without use after which a token is revoked (30, 60, 90, 180 or 365); NULL: off.
ALTER TABLE notify_settings ADD COLUMN unused_token_revoke_days BIGINT;

-- One row per token, kind and reminder day: `expiry` rows per reminder day, one
-- `unused` row per stretch of non-use for the warning before an unused token is revoked. The
-- primary key keeps the claim exclusive per token and reminder. Rows of the one
-- reminder there was take its day, so that they are not sent again.
CREATE TABLE notifications_new (
    token_id     TEXT    NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL DEFAULT 'expiry' CHECK (kind IN ('expiry', 'unused')),
    -- expiry: the reminder day; unused: the last use (Unix seconds) the warning is
    -- about, so that a token used again and then left unused is warned again.
    reminder     BIGINT  NOT NULL DEFAULT 0,
    status       TEXT    NOT NULL CHECK (status IN ('claimed', 'sent', 'failed')),
    email        TEXT    NOT NULL,
    attempts     BIGINT  NOT NULL DEFAULT 1,
    last_error   TEXT,
    claimed_by   TEXT    NOT NULL,
    claimed_at   BIGINT  NOT NULL,
    sent_at      BIGINT,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (token_id, kind, reminder)
);
INSERT INTO notifications_new (token_id, kind, reminder, status, email, attempts,
    last_error, claimed_by, claimed_at, sent_at, updated_at)
    SELECT token_id, 'expiry', (SELECT days_before FROM notify_settings WHERE id = 1),
        status, email, attempts, last_error, claimed_by, claimed_at, sent_at, updated_at
    FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE INDEX notifications_updated ON notifications (updated_at);

-- Where reminders go besides e-mail: an administrator's channel (owner NULL) gets
-- every token's messages, a user's channel only their own tokens'. The secret is
-- sealed like SMTP passwords; never stored in clear.
CREATE TABLE notification_channels (
    id             TEXT    PRIMARY KEY NOT NULL,
    owner          TEXT    REFERENCES users (username) ON DELETE CASCADE,
    kind           TEXT    NOT NULL CHECK (kind IN ('webhook', 'slack', 'teams')),
    url            TEXT    NOT NULL,
    secret_sealed  TEXT,
    created_by     TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    -- The last delivery: `delivered` or `failed`, its time and error; failing_since is
    -- the first of the failures in a row, NULL while deliveries succeed.
    last_status    TEXT,
    last_at        BIGINT,
    last_error     TEXT,
    failing_since  BIGINT
);
CREATE INDEX notification_channels_owner ON notification_channels (owner);

-- Each delivery attempt, for the record (the last 1,000 per channel are kept).
CREATE TABLE channel_deliveries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id TEXT    NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    event      TEXT    NOT NULL,
    token_id   TEXT,
    attempt    BIGINT  NOT NULL,
    status     TEXT    NOT NULL,
    error      TEXT,
    at         BIGINT  NOT NULL
);
CREATE INDEX channel_deliveries_channel ON channel_deliveries (channel_id, id);
