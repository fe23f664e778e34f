//! The dts worker: runs the tasks assigned to it.
//!
//! # Layout
//! - [`Worker`] (this file): the supervisor. Every `poll_interval` it reads
//!   the tasks assigned to this worker from the store and converges: starts
//!   runners for tasks that should run, restarts them when a task's version
//!   changes (alter, stop, start), stops them when a task is deleted or
//!   reassigned.
//! - [`runner`]: one task's pipeline, retries and final state.
//! - [`seams`]: the runner's source, sink and reporter, real or fake.
//! - [`port`]: where tasks come from and where runners report: the store
//!   (`dts standalone`) or the control plane over HTTP (`dts worker`).
//! - [`client`]: the HTTP client of the control plane's internal API.
//! - [`acks`]: in-order acknowledgement tracking behind the checkpoint.
//! - [`error`]: transient, definite and fenced ends of a run.
//!
//! Shutdown: [`Worker::run`] returns after its shutdown signal, once every
//! runner has flushed its acknowledged position (each within `drain_timeout`).

pub mod acks;
pub mod client;
pub mod error;
pub mod port;
pub mod runner;
pub mod seams;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use dts_core::wire::Heartbeat;
use dts_core::{DesiredState, TaskState};
use dts_metrics::{Metrics, NodeKind};
use dts_store::Store;
use tokio::sync::watch;

use crate::client::ControlClient;
use crate::port::{Port, TaskAssignment};
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
    /// Batches (of up to [`dts_source::reader::BATCH_ITEMS`] items) buffered
    /// between the binlog reader and the pipeline.
    pub channel_capacity: usize,
    /// Messages sent but not yet acknowledged, per task, counted in whole
    /// source batches (of up to [`dts_source::reader::BATCH_ITEMS`]); the
    /// producer's own buffer bounds them too.
    pub max_in_flight: usize,
    /// Rows per snapshot chunk (one primary-key range query each).
    pub snapshot_chunk_rows: usize,
    /// Connections per task reading chunks ahead of the stream.
    pub snapshot_readers: usize,
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
    /// Where runners and the supervisor keep their figures.
    pub metrics: Arc<Metrics>,
}

impl WorkerConfig {
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            poll_interval: Duration::from_millis(500),
            checkpoint_interval: Duration::from_millis(500),
            heartbeat_interval: Duration::from_secs(5),
            server_id_base: 1_000_000_000,
            channel_capacity: 4096 / dts_source::reader::BATCH_ITEMS,
            max_in_flight: 100_000,
            snapshot_chunk_rows: 5_000,
            snapshot_readers: 1,
            topic_partitions: 3,
            replication_factor: 1,
            source_idle_timeout: Duration::from_secs(30),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            metrics: Metrics::new(NodeKind::Worker),
        }
    }
}

/// Until when a task may run here. Cluster mode renews each task's clock
/// from every heartbeat answer that still lists the task; runners check it
/// before every message, so a node that was frozen past its lease stops
/// producing the moment it wakes, and a task it lost meanwhile stays
/// stopped even after the next answer renews the others. `None`
/// (standalone) never expires.
#[derive(Debug, Clone, Default)]
pub struct LeaseClock(Arc<std::sync::Mutex<Option<Instant>>>);

impl LeaseClock {
    pub fn renew(&self, until: Instant) {
        if let Ok(mut d) = self.0.lock() {
            *d = Some(until);
        }
    }

    pub fn expired(&self) -> bool {
        self.0.lock().map_or(true, |d| d.is_some_and(|until| Instant::now() >= until))
    }
}

/// Where the supervisor learns its tasks.
#[derive(Debug)]
enum Assignments {
    /// `dts standalone`: this worker's tasks, read from the store.
    Store(Store),
    /// `dts worker`: the answer to each heartbeat.
    Control { client: Arc<ControlClient>, beat: Heartbeat },
}

/// The supervisor of this node's tasks.
#[derive(Debug)]
pub struct Worker {
    source: Assignments,
    cfg: Arc<WorkerConfig>,
    running: HashMap<i64, TaskHandle>,
    /// Cluster mode: until when the last heartbeat answer lets this node run
    /// tasks (each task's own clock is in its handle).
    lease: LeaseClock,
}

impl Worker {
    /// A worker reading its tasks from the store (`dts standalone`).
    pub fn new(store: Store, cfg: WorkerConfig) -> Self {
        Self {
            source: Assignments::Store(store),
            cfg: Arc::new(cfg),
            running: HashMap::new(),
            lease: LeaseClock::default(),
        }
    }

    /// A worker node of a cluster: heartbeats `client`'s control planes,
    /// runs what they assign, reports through them.
    pub fn cluster(client: ControlClient, beat: Heartbeat, cfg: WorkerConfig) -> Self {
        let source = Assignments::Control { client: Arc::new(client), beat };
        Self { source, cfg: Arc::new(cfg), running: HashMap::new(), lease: LeaseClock::default() }
    }

    /// Runs until `shutdown` turns true, then stops every task and returns.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.cfg.poll_interval);
        // Standalone: a task submitted, started or stopped through this
        // process's API is acted on at once, not at the next poll.
        let mut changes = match &self.source {
            Assignments::Store(store) => Some(store.task_changes()),
            Assignments::Control { .. } => None,
        };
        tracing::info!(worker = %self.cfg.worker_id, "worker started");
        loop {
            let changed = async {
                let Some(rx) = changes.as_mut() else { return std::future::pending().await };
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = tick.tick() => {}
                () = changed => {}
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

    fn port(&self) -> Port {
        match &self.source {
            Assignments::Store(store) => Port::Store(store.clone()),
            Assignments::Control { client, .. } => Port::Control(client.clone()),
        }
    }

    /// This worker's tasks now, or why they could not be read.
    /// With them, in cluster mode, until when the answer lets them run.
    async fn fetch(&mut self) -> Result<(Vec<TaskAssignment>, Option<Instant>), String> {
        match &self.source {
            Assignments::Store(store) => {
                let records = store.tasks_for_worker(&self.cfg.worker_id).await.map_err(|e| e.to_string())?;
                let mut out = Vec::with_capacity(records.len());
                for task in records {
                    let secrets = store.source_password(&task).and_then(|p| Ok((p, store.kafka_secrets(&task)?)));
                    match secrets {
                        Ok((password, kafka)) => {
                            let mut task = task;
                            kafka.fill(&mut task.spec.kafka);
                            out.push(TaskAssignment::from_record(task, password));
                        }
                        Err(e) => {
                            let message = format!("cannot read the task's secrets: {e}");
                            let _ = store.record_state(task.id, task.epoch, TaskState::Failed, &message).await;
                        }
                    }
                }
                Ok((out, None))
            }
            Assignments::Control { client, beat } => {
                let asked = Instant::now();
                let figures = self.cfg.metrics.tasks.all().iter().map(|(id, s)| s.export(*id)).collect();
                let beat = Heartbeat { figures, ..beat.clone() };
                let (reply, secrets) = client.heartbeat(&beat).await?;
                // Stop a safety margin before the control plane may reassign.
                let lease = Duration::from_millis(u64::try_from(reply.lease_ms).unwrap_or(0));
                let until = asked + lease.saturating_sub(lease / 4);
                let tasks = reply
                    .tasks
                    .into_iter()
                    .zip(secrets)
                    .map(|(t, s)| TaskAssignment::from_wire(t, s))
                    .collect::<Result<_, _>>()?;
                Ok((tasks, Some(until)))
            }
        }
    }

    async fn reconcile(&mut self) {
        // Reap first, so a task restarted below reads the final checkpoint
        // its previous runner wrote.
        self.running.retain(|_, h| !h.is_finished());
        let clustered = matches!(self.source, Assignments::Control { .. });
        let node = self.cfg.metrics.node.clone();
        let (assigned, until) = match self.fetch().await {
            Ok(answer) => {
                if clustered {
                    node.heartbeat_ok();
                }
                answer
            }
            Err(e) => {
                if clustered {
                    node.heartbeat_failed();
                }
                if self.lease.expired() && !self.running.is_empty() {
                    // Cut off from the control plane past the lease: another
                    // worker may get these tasks, so none may run here.
                    tracing::error!(error = %e, tasks = self.running.len(), "lease lost; stopping every task");
                    let mut lost = 0;
                    for h in self.running.values() {
                        // Counted once per task, not on every tick until it ends.
                        if h.stop(StopReason::Lost) {
                            lost += 1;
                        }
                    }
                    node.leases_lost(lost);
                } else {
                    tracing::warn!(error = %e, "cannot read assignments; keeping tasks as they are");
                }
                return;
            }
        };
        for handle_id in self.running.keys().copied().collect::<Vec<_>>() {
            if !assigned.iter().any(|t| t.id == handle_id) {
                if let Some(h) = self.running.get(&handle_id) {
                    if h.stop(StopReason::Lost) && clustered {
                        node.leases_lost(1);
                    }
                }
            }
        }
        // Figures of tasks that left this node go with them.
        let tasks = &self.cfg.metrics.tasks;
        for (id, _) in tasks.all() {
            if !self.running.contains_key(&id) && !assigned.iter().any(|t| t.id == id) {
                tasks.remove(id);
            }
        }
        if let Some(until) = until {
            self.lease.renew(until);
        }
        let port = self.port();
        for task in assigned {
            let should_run = task.desired_state == DesiredState::Running && task.state != TaskState::Failed;
            match self.running.get(&task.id) {
                Some(h) if h.version != task.version || h.epoch != task.epoch => {
                    h.stop(if should_run { StopReason::Restart } else { StopReason::Stop });
                }
                Some(h) => {
                    if let Some(until) = until {
                        h.lease.renew(until);
                        node.leases_renewed(1);
                    }
                }
                None if should_run => {
                    tracing::info!(task = task.id, version = task.version, epoch = task.epoch, "starting task");
                    let lease = LeaseClock::default();
                    if let Some(until) = until {
                        lease.renew(until);
                    }
                    let handle = runner::spawn(port.clone(), task.clone(), self.cfg.clone(), lease);
                    self.running.insert(task.id, handle);
                }
                None if task.state == TaskState::Stopping => {
                    // Its runner ended before it could record the stop.
                    let _ = port.record_state(task.id, task.epoch, TaskState::Stopped, "").await;
                }
                None => {}
            }
        }
    }
}
