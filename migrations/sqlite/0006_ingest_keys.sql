-- Credentials of ingest producers, each scoped to some streams. A DIS
-- secret key is sealed (signatures need it); tokens and API keys are kept
-- only as SHA-256 digests.
CREATE TABLE dts_ingest_keys (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    protocol      TEXT   NOT NULL,
    kind          TEXT   NOT NULL,  -- aksk / token / api_key
    lookup        TEXT   NOT NULL UNIQUE,  -- the access key, or the digest of a token / API key
    sealed_secret TEXT,
    streams       TEXT   NOT NULL,  -- JSON array of stream ids
    created_at    BIGINT NOT NULL
);
