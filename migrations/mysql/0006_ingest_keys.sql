-- Credentials of ingest producers, each scoped to some streams. A DIS
-- secret key is sealed (signatures need it); tokens and API keys are kept
-- only as SHA-256 digests.
CREATE TABLE dts_ingest_keys (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    protocol      VARCHAR(16)  NOT NULL,
    kind          VARCHAR(16)  NOT NULL,
    lookup        VARCHAR(128) NOT NULL,
    sealed_secret TEXT,
    streams       TEXT         NOT NULL,
    created_at    BIGINT       NOT NULL,
    UNIQUE KEY dts_ingest_keys_lookup (lookup)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
