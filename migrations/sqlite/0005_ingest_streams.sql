-- Ingest streams: a producer-side name mapped to a Kafka topic.
CREATE TABLE dts_ingest_streams (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    protocol      TEXT    NOT NULL,
    scope         TEXT    NOT NULL,  -- group id / project id / workspace ('' for none)
    name          TEXT    NOT NULL,  -- stream id / stream name / stream
    spec          TEXT    NOT NULL,  -- JSON, without secrets
    kafka_secrets TEXT,              -- sealed like dts_tasks.kafka_secrets
    version       BIGINT  NOT NULL DEFAULT 1,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    UNIQUE (protocol, scope, name)
);
