-- Nonces of accepted cluster requests, shared by every control plane so a
-- request replayed to another one is refused too. Rows older than the
-- signature's freshness window are deleted.
CREATE TABLE dts_cluster_nonces (
    nonce      TEXT    NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX dts_cluster_nonces_expires ON dts_cluster_nonces (expires_at);
