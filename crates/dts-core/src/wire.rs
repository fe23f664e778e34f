//! Messages between worker nodes and the control plane (`/internal/v1/...`,
//! authenticated with the cluster token). Workers never touch the store:
//! they learn their tasks from heartbeat answers and report progress here.

use serde::{Deserialize, Serialize};

use crate::spec::TaskSpec;

/// `POST /internal/v1/heartbeat`: a worker says it is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub worker_id: String,
    /// The worker's advertised HTTP address (becomes its tasks' `service_addr`).
    pub addr: String,
    /// Most tasks it runs at once.
    pub capacity: i64,
    pub version: String,
}

/// The answer: the worker's tasks, valid for `lease_ms` from when it asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// A worker that cannot renew within this stops its tasks on its own,
    /// before the control plane may give them to another worker.
    pub lease_ms: i64,
    pub tasks: Vec<AssignedTask>,
}

/// A task assigned to the worker, with what it needs to run it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssignedTask {
    pub id: i64,
    pub version: i64,
    pub epoch: i64,
    /// `running` or `stopped`.
    pub desired_state: String,
    pub state: String,
    pub spec: TaskSpec,
    /// The source password, which the spec never serializes. Sent only to
    /// authenticated workers; put TLS in front of the control plane when the
    /// network between nodes is not trusted.
    pub source_password: String,
    /// The secrets of `spec.kafka.security`, which the spec never serializes.
    #[serde(default)]
    pub kafka_secrets: crate::spec::KafkaSecrets,
    pub checkpoint: Option<String>,
    pub transaction_time: Option<i64>,
}

/// `POST /internal/v1/tasks/{id}/progress`, fenced by `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    pub epoch: i64,
    pub state: String,
    pub message: String,
    pub pos: String,
    pub checkpoint: Option<String>,
    pub transaction_time: Option<i64>,
}

/// `POST /internal/v1/tasks/{id}/state`, fenced by `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateReport {
    pub epoch: i64,
    pub state: String,
    pub message: String,
}

/// Answer to a report: `accepted: false` means the worker no longer holds
/// the task at that epoch and must stop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportReply {
    pub accepted: bool,
}

/// The header carrying the cluster token.
pub const CLUSTER_TOKEN_HEADER: &str = "x-dts-cluster-token";

/// A random value the worker sends with each request...
pub const CLUSTER_NONCE_HEADER: &str = "x-dts-cluster-nonce";
/// ...and the control plane's proof that it knows the token too:
/// hex SHA-256 of `token`, a NUL byte, and the nonce. Workers refuse answers
/// without it, so only a real control plane can hand them tasks.
pub const CLUSTER_PROOF_HEADER: &str = "x-dts-cluster-proof";

/// The proof for `nonce`: hex SHA-256 of the token, a NUL byte and the nonce.
/// It shows knowledge of the token without revealing it.
pub fn cluster_proof(token: &str, nonce: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    h.update([0u8]);
    h.update(nonce.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn proofs_depend_on_token_and_nonce() {
        let p = super::cluster_proof("t", "n1");
        assert_eq!(p.len(), 64);
        assert_eq!(p, super::cluster_proof("t", "n1"));
        assert_ne!(p, super::cluster_proof("t", "n2"));
        assert_ne!(p, super::cluster_proof("u", "n1"));
    }
}
