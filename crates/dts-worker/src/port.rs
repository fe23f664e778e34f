//! Where a task comes from and where its runner reports: the store itself
//! (`dts standalone`), or the control plane over HTTP (`dts worker`).

use std::sync::Arc;

use dts_core::snapshot::SnapshotRequest;
use dts_core::spec::{Secret, TaskSpec};
use dts_core::wire::{AssignedTask, TaskSecrets};
use dts_core::{DesiredState, TaskState};
use dts_store::tasks::Progress;
use dts_store::{Store, TaskRecord};

use crate::client::ControlClient;
use crate::error::RunError;

/// A task as this worker runs it.
#[derive(Debug, Clone)]
pub struct TaskAssignment {
    pub id: i64,
    /// Bumped by alter, stop and start: a change restarts the runner.
    pub version: i64,
    /// The fencing token every report carries.
    pub epoch: i64,
    pub desired_state: DesiredState,
    pub state: TaskState,
    pub spec: TaskSpec,
    pub password: Secret,
    pub checkpoint: Option<String>,
    pub transaction_time: Option<i64>,
    /// An on-demand snapshot asked of the task.
    pub snapshot_request: Option<SnapshotRequest>,
}

impl TaskAssignment {
    pub fn from_record(task: TaskRecord, password: Secret) -> Self {
        Self {
            id: task.id,
            version: task.version,
            epoch: task.epoch,
            desired_state: task.desired_state,
            state: task.state,
            spec: task.spec,
            password,
            checkpoint: task.checkpoint,
            transaction_time: task.transaction_time,
            snapshot_request: task.snapshot_request,
        }
    }

    pub fn from_wire(task: AssignedTask, secrets: TaskSecrets) -> Result<Self, String> {
        Ok(Self {
            id: task.id,
            version: task.version,
            epoch: task.epoch,
            desired_state: task.desired_state.parse().map_err(|e| format!("task {}: {e}", task.id))?,
            state: task.state.parse().map_err(|e| format!("task {}: {e}", task.id))?,
            spec: {
                let mut spec = task.spec;
                secrets.kafka.fill(&mut spec.kafka);
                spec
            },
            password: Secret::new(secrets.source_password),
            checkpoint: task.checkpoint,
            transaction_time: task.transaction_time,
            snapshot_request: task.snapshot_request,
        })
    }
}

/// Where runners report progress and state; every write is fenced by epoch
/// and answers false when the task is no longer this worker's.
#[derive(Debug, Clone)]
pub enum Port {
    Store(Store),
    Control(Arc<ControlClient>),
}

impl Port {
    pub async fn record_progress(&self, id: i64, epoch: i64, progress: &Progress) -> Result<bool, RunError> {
        match self {
            Port::Store(store) => Ok(store.record_progress(id, epoch, progress).await?),
            Port::Control(client) => client.progress(id, epoch, progress).await,
        }
    }

    pub async fn record_state(&self, id: i64, epoch: i64, state: TaskState, message: &str) -> Result<bool, RunError> {
        match self {
            Port::Store(store) => Ok(store.record_state(id, epoch, state, message).await?),
            Port::Control(client) => client.state(id, epoch, state, message).await,
        }
    }
}
