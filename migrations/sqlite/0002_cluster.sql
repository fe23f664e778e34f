-- Cluster membership and scheduling (SQLite).

-- Worker nodes, as their heartbeats describe them.
CREATE TABLE dts_workers (
    id           TEXT   PRIMARY KEY,      -- stable node id
    addr         TEXT   NOT NULL,         -- advertised HTTP address (the tasks' service_addr)
    capacity     BIGINT NOT NULL,         -- most tasks it takes
    version      TEXT   NOT NULL,         -- dts version it runs
    state        TEXT   NOT NULL,         -- active | draining
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL          -- when the control plane last heard from it
);

-- Named leases: the scheduler runs on whichever control plane holds 'scheduler'.
CREATE TABLE dts_leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
