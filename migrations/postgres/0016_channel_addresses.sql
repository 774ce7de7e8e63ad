-- Whether a notification channel was made by an administrator: only those may post
-- to internal addresses (loopback, link-local, private) unless the operator lists
-- the host in notify.channel_hosts. Administrators' channels (no owner) always were;
-- a personal channel was when its maker is an administrator now.
ALTER TABLE notification_channels ADD COLUMN made_by_admin BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE notification_channels SET made_by_admin = TRUE
    WHERE owner IS NULL
       OR created_by IN (SELECT username FROM users WHERE admin = TRUE);
