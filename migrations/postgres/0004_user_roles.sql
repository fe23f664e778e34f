-- Users managed over the API: a role per user, and which row is the user
-- generated at first start (every row before this migration was).
ALTER TABLE dts_auth_users ADD COLUMN role VARCHAR(16) NOT NULL DEFAULT 'admin';
ALTER TABLE dts_auth_users ADD COLUMN generated BIGINT NOT NULL DEFAULT 0;
UPDATE dts_auth_users SET generated = 1;
