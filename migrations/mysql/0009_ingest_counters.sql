-- Each serving process's ingest counters per stream, written every second
-- (a gateway's by the control plane it reports to). A stream's counters
-- are the sum over its rows, so they span every node and survive restarts.
CREATE TABLE dts_ingest_counters (
    stream_id  BIGINT NOT NULL,
    node       VARCHAR(191) NOT NULL,
    records    BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    errors     BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (stream_id, node)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
