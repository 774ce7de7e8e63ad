-- Each channel's delivery of one token's reminder or unused-token warning, claimed
-- like the e-mail (`notifications`): a channel told once is not told again when the
-- e-mail is retried, and one whose delivery failed is retried on its own. The key is
-- channel, token, kind and reminder, as the e-mail's is token, kind and reminder.
CREATE TABLE channel_sends (
    channel_id  TEXT    NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    token_id    TEXT    NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL,
    reminder    BIGINT  NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('claimed', 'delivered', 'failed')),
    claimed_by  TEXT    NOT NULL,
    claimed_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (channel_id, token_id, kind, reminder)
);
CREATE INDEX channel_sends_token ON channel_sends (token_id);
