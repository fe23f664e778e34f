-- Ingest streams: a producer-side name mapped to a Kafka topic.
CREATE TABLE dts_ingest_streams (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    protocol      VARCHAR(16)  NOT NULL,
    scope         VARCHAR(128) NOT NULL,  -- group id / project id / workspace ('' for none)
    name          VARCHAR(128) NOT NULL,  -- stream id / stream name / stream
    spec          MEDIUMTEXT   NOT NULL,  -- JSON, without secrets
    kafka_secrets TEXT,                   -- sealed like dts_tasks.kafka_secrets
    version       BIGINT       NOT NULL DEFAULT 1,
    created_at    BIGINT       NOT NULL,
    updated_at    BIGINT       NOT NULL,
    UNIQUE KEY dts_ingest_streams_name (protocol, scope, name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
