-- Cluster membership and scheduling (PostgreSQL).

CREATE TABLE dts_workers (
    id           TEXT   PRIMARY KEY,
    addr         TEXT   NOT NULL,
    capacity     BIGINT NOT NULL,
    version      TEXT   NOT NULL,
    state        TEXT   NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

CREATE TABLE dts_leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
