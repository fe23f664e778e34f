-- Task table and its companions (SQLite, the embedded default store).
-- Times are milliseconds since the Unix epoch (UTC) in every backend, so the
-- same code reads all three.

CREATE TABLE dts_tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    source_addr      TEXT    NOT NULL,            -- host:port of the binlog source
    dest_addr        TEXT    NOT NULL,            -- Kafka bootstrap servers
    spec             TEXT    NOT NULL,            -- TaskSpec JSON, without the password
    source_password  TEXT    NOT NULL,            -- AES-256-GCM ciphertext ("v1:" + base64)
    incr             BIGINT  NOT NULL,            -- 1: stream only; 0: snapshot first
    desired_state    TEXT    NOT NULL,            -- running | stopped (what the operator asked)
    state            TEXT    NOT NULL,            -- Pending | Snapshotting | Running | Stopping | Stopped | Failed
    message          TEXT    NOT NULL DEFAULT '', -- last error, for Failed
    pos              TEXT    NOT NULL DEFAULT '', -- binlog position shown to operators
    checkpoint       TEXT,                        -- structured resume position (worker-owned JSON)
    transaction_time BIGINT,                      -- source commit time of the last delivered transaction
    version          BIGINT  NOT NULL DEFAULT 1,  -- bumped by every spec or desired-state change
    epoch            BIGINT  NOT NULL DEFAULT 0,  -- fencing token, bumped by every (re)assignment
    worker_id        TEXT,                        -- node that holds the task's lease
    service_addr     TEXT    NOT NULL DEFAULT '', -- that node's HTTP address
    lease_expires_at BIGINT,                      -- when the holder loses the task if it stops renewing
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);

CREATE INDEX dts_tasks_worker ON dts_tasks (worker_id);

-- API users created by dts itself (the generated first-start user); users
-- from the config file or DTS_AUTH_USERS are not stored.
CREATE TABLE dts_auth_users (
    name          TEXT   PRIMARY KEY,
    password_hash TEXT   NOT NULL,                -- argon2id PHC string
    created_at    BIGINT NOT NULL
);

-- Store-wide facts, e.g. a canary encrypted with the secret key so a node
-- started with the wrong key refuses to run instead of writing unreadable rows.
CREATE TABLE dts_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
