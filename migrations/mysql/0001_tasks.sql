-- Task table and its companions (MySQL 5.7+/MariaDB 10.5+, for clusters).
-- Times are milliseconds since the Unix epoch (UTC) in every backend.

CREATE TABLE dts_tasks (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    source_addr      VARCHAR(300) NOT NULL,
    dest_addr        TEXT         NOT NULL,
    spec             LONGTEXT     NOT NULL,
    source_password  TEXT         NOT NULL,
    incr             BIGINT       NOT NULL,
    desired_state    VARCHAR(16)  NOT NULL,
    state            VARCHAR(16)  NOT NULL,
    message          TEXT         NOT NULL,
    pos              TEXT         NOT NULL,
    checkpoint       LONGTEXT     NULL,
    transaction_time BIGINT       NULL,
    version          BIGINT       NOT NULL DEFAULT 1,
    epoch            BIGINT       NOT NULL DEFAULT 0,
    worker_id        VARCHAR(191) NULL,
    service_addr     VARCHAR(300) NOT NULL DEFAULT '',
    lease_expires_at BIGINT       NULL,
    created_at       BIGINT       NOT NULL,
    updated_at       BIGINT       NOT NULL,
    INDEX dts_tasks_worker (worker_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE dts_auth_users (
    name          VARCHAR(191) NOT NULL PRIMARY KEY,
    password_hash TEXT         NOT NULL,
    created_at    BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE dts_meta (
    name  VARCHAR(191) NOT NULL PRIMARY KEY,
    value TEXT         NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
