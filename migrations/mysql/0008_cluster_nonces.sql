-- Nonces of accepted cluster requests, shared by every control plane so a
-- request replayed to another one is refused too. Rows older than the
-- signature's freshness window are deleted.
CREATE TABLE dts_cluster_nonces (
    nonce      VARCHAR(64) NOT NULL PRIMARY KEY,
    expires_at BIGINT      NOT NULL,
    INDEX dts_cluster_nonces_expires (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
