-- The secrets of a task's kafka.security (client key, SASL password), sealed
-- like source_password ("v1:" + base64 AES-256-GCM); NULL for none.
ALTER TABLE dts_tasks ADD COLUMN kafka_secrets TEXT;
