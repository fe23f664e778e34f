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
    /// Its tasks' figures, so a control plane can show and serve the
    /// whole cluster's metrics (a control plane must be upgraded before
    /// its workers: older ones refuse this field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub figures: Vec<TaskFigures>,
}

/// One task's metrics as a worker last saw them: counters since the task
/// came to that worker, gauges as of the heartbeat. Per-op arrays are in
/// the order c, u, d, r, ddl.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskFigures {
    pub id: i64,
    pub state: String,
    pub read: [u64; 5],
    pub filtered: [u64; 5],
    pub produced: [u64; 5],
    pub bytes: u64,
    pub produce_errors: u64,
    pub retries: u64,
    pub delivered_commit_ms: i64,
    pub caught_up_ms: i64,
    pub last_event_ms: i64,
    pub binlog_file: u64,
    pub binlog_pos: u64,
    pub in_flight: u64,
    pub queue_len: u64,
    pub queue_capacity: u64,
    pub throttled_ns: u64,
    pub snapshot_tables_done: u64,
    pub snapshot_tables_total: u64,
    pub snapshot_rows: u64,
    /// Each table of the copy under way; empty once it ended.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshot_table_figures: Vec<TableCopyFigures>,
}

/// One table of a task's copy of existing rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableCopyFigures {
    /// `db.table`
    pub table: String,
    /// Rows delivered so far.
    pub rows: u64,
    pub chunks: u64,
    /// The catalogue's estimate when the copy was planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_rows: Option<u64>,
    pub done: bool,
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
    /// [`TaskSecrets`] as JSON, sealed with
    /// [`crate::cluster_auth::ClusterKey::seal`] under the request's nonce:
    /// unreadable on the wire, even without TLS.
    pub secrets: String,
    pub checkpoint: Option<String>,
    pub transaction_time: Option<i64>,
    /// An on-demand snapshot asked of the task (older workers ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_request: Option<crate::snapshot::SnapshotRequest>,
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

/// What an assigned task needs that its spec never serializes, sealed in
/// [`AssignedTask::secrets`] for the worker that asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSecrets {
    pub source_password: String,
    #[serde(default)]
    pub kafka: crate::spec::KafkaSecrets,
}

/// A gateway asks for the ingest configuration (`/internal/v1/ingest/config`)
/// and reports its counters, which the control plane stores for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestConfigRequest {
    pub gateway_id: String,
    /// The serving process the counters are of (see `Registry::node`).
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub counts: Vec<crate::ingest::StreamCount>,
}

/// An ingest stream as gateways receive it: its spec without secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestStreamWire {
    pub id: i64,
    pub version: i64,
    pub spec: crate::ingest::StreamSpec,
}

/// An ingest credential as gateways receive it, without its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestKeyWire {
    pub id: i64,
    pub protocol: crate::ingest::Protocol,
    /// The access key, or the digest of a token / API key.
    pub lookup: String,
    pub streams: Vec<i64>,
}

/// The answer: streams and keys, with their secrets sealed for the asking
/// gateway (an [`IngestSecrets`] JSON, sealed like task secrets).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestConfigReply {
    pub streams: Vec<IngestStreamWire>,
    pub keys: Vec<IngestKeyWire>,
    pub secrets: String,
}

/// Secrets of the streams (Kafka) and keys (DIS secret keys), by id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IngestSecrets {
    pub streams: std::collections::BTreeMap<i64, crate::spec::KafkaSecrets>,
    pub keys: std::collections::BTreeMap<i64, String>,
}
