-- One person is one user, whatever case or Unicode form of their name they type: users
-- are found by a key (NFKC, lower case, NFKC), which is unique. The gateway computes
-- it (neither database has NFKC of its own) and fills it for rows made before this
-- column existed when it opens the database.
ALTER TABLE users ADD COLUMN name_key TEXT;
CREATE UNIQUE INDEX users_name_key ON users (name_key);
