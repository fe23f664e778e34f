-- Each serving process's ingest counters per stream, written every second
-- (a gateway's by the control plane it reports to). A stream's counters
-- are the sum over its rows, so they span every node and survive restarts.
CREATE TABLE dts_ingest_counters (
    stream_id  INTEGER NOT NULL,
    node       TEXT NOT NULL,
    records    INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    errors     INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (stream_id, node)
);
