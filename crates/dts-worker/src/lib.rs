//! The dts worker: runs the tasks assigned to it.
//!
//! # Layout
//! - [`Worker`] (this file): the supervisor. Every `poll_interval` it reads
//!   the tasks assigned to this worker from the store and converges: starts
//!   runners for tasks that should run, restarts them when a task's version
//!   changes (alter, stop, start), stops them when a task is deleted or
//!   reassigned.
//! - [`runner`]: one task's pipeline, retries and final state.
//! - [`acks`]: in-order acknowledgement tracking behind the checkpoint.
//! - [`error`]: transient, definite and fenced ends of a run.
//!
//! Shutdown: [`Worker::run`] returns after its shutdown signal, once every
//! runner has flushed its acknowledged position (each within `drain_timeout`).

pub mod acks;
pub mod error;
pub mod runner;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dts_core::{DesiredState, TaskState};
use dts_store::Store;
use tokio::sync::watch;

use crate::runner::{StopReason, TaskHandle};

/// How the worker runs tasks.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's id in the task table's `worker_id`.
    pub worker_id: String,
    /// How often assignments are read from the store.
    pub poll_interval: Duration,
    /// How often a changed position is written to the store.
    pub checkpoint_interval: Duration,
    /// How often an unchanged running task still touches `updated_at`.
    pub heartbeat_interval: Duration,
    /// Replica server id of task N is `server_id_base + N`.
    pub server_id_base: u32,
    /// Items buffered between the binlog reader and the pipeline.
    pub channel_capacity: usize,
    /// Messages sent but not yet acknowledged, per task.
    pub max_in_flight: usize,
    /// Rows per snapshot chunk (one primary-key range query each).
    pub snapshot_chunk_rows: usize,
    /// Partitions and replication factor of topics dts creates.
    pub topic_partitions: i32,
    pub replication_factor: i32,
    /// Source silence that counts as a dead connection.
    pub source_idle_timeout: Duration,
    /// Backoff between retries of transient errors.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// How long a stopping task waits for its last acknowledgements.
    pub drain_timeout: Duration,
}

impl WorkerConfig {
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            poll_interval: Duration::from_millis(500),
            checkpoint_interval: Duration::from_millis(500),
            heartbeat_interval: Duration::from_secs(5),
            server_id_base: 1_000_000_000,
            channel_capacity: 4096,
            max_in_flight: 100_000,
            snapshot_chunk_rows: 10_000,
            topic_partitions: 3,
            replication_factor: 1,
            source_idle_timeout: Duration::from_secs(30),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The supervisor of this node's tasks.
#[derive(Debug)]
pub struct Worker {
    store: Store,
    cfg: Arc<WorkerConfig>,
    running: HashMap<i64, TaskHandle>,
}

impl Worker {
    pub fn new(store: Store, cfg: WorkerConfig) -> Self {
        Self { store, cfg: Arc::new(cfg), running: HashMap::new() }
    }

    /// Runs until `shutdown` turns true, then stops every task and returns.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.cfg.poll_interval);
        tracing::info!(worker = %self.cfg.worker_id, "worker started");
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            self.reconcile().await;
        }
        for handle in self.running.values() {
            handle.stop(StopReason::Shutdown);
        }
        for (_, handle) in self.running.drain() {
            handle.join().await;
        }
        tracing::info!(worker = %self.cfg.worker_id, "worker stopped");
    }

    async fn reconcile(&mut self) {
        // Reap first, so a task restarted below reads the final checkpoint
        // its previous runner wrote.
        self.running.retain(|_, h| !h.is_finished());
        let assigned = match self.store.tasks_for_worker(&self.cfg.worker_id).await {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read assignments; keeping tasks as they are");
                return;
            }
        };
        for handle_id in self.running.keys().copied().collect::<Vec<_>>() {
            if !assigned.iter().any(|t| t.id == handle_id) {
                if let Some(h) = self.running.get(&handle_id) {
                    h.stop(StopReason::Lost);
                }
            }
        }
        for task in assigned {
            let should_run = task.desired_state == DesiredState::Running && task.state != TaskState::Failed;
            match self.running.get(&task.id) {
                Some(h) if h.version != task.version || h.epoch != task.epoch => {
                    h.stop(if should_run { StopReason::Restart } else { StopReason::Stop });
                }
                Some(_) => {}
                None if should_run => {
                    tracing::info!(task = task.id, version = task.version, "starting task");
                    let handle = runner::spawn(self.store.clone(), task.clone(), self.cfg.clone());
                    self.running.insert(task.id, handle);
                }
                None if task.state == TaskState::Stopping => {
                    // Its runner ended before it could record the stop.
                    let _ = self.store.record_state(task.id, task.epoch, TaskState::Stopped, "").await;
                }
                None => {}
            }
        }
    }
}
