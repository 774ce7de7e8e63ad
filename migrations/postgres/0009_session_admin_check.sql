-- When a session's administrator rights were last confirmed with Deploy; NULL for
-- sessions started before this column existed (their start counts).
ALTER TABLE sessions ADD COLUMN admin_checked_at BIGINT;
