-- Cluster membership and scheduling (MySQL/MariaDB).

CREATE TABLE dts_workers (
    id           VARCHAR(191) NOT NULL PRIMARY KEY,
    addr         VARCHAR(300) NOT NULL,
    capacity     BIGINT       NOT NULL,
    version      VARCHAR(64)  NOT NULL,
    state        VARCHAR(16)  NOT NULL,
    started_at   BIGINT       NOT NULL,
    heartbeat_at BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE dts_leases (
    name       VARCHAR(191) NOT NULL PRIMARY KEY,
    holder     VARCHAR(191) NOT NULL,
    expires_at BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
