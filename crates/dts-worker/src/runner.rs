//! One task's life on this worker: connect, check, stream, deliver,
//! checkpoint; retry transient errors from the last delivered position with
//! backoff; fail on definite ones; stop cleanly when asked.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dts_core::event::Change;
use dts_core::TaskState;
use dts_kafka::{KafkaSink, SinkConfig};
use dts_pipeline::filter::TaskFilter;
use dts_pipeline::limit::RowLimiter;
use dts_pipeline::route::Router;
use dts_pipeline::shape::Shaper;
use dts_source::position::SnapshotProgress;
use dts_source::reader::{stream, Selection, SourceItem};
use dts_source::{checks, current_position, server_info, snapshot, Checkpoint, SourceConfig, SourceError};
use dts_store::now_ms;
use dts_store::tasks::Progress;

use crate::port::{Port, TaskAssignment};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::acks::{track, Delivered, InFlight};
use crate::error::RunError;
use crate::{LeaseClock, WorkerConfig};

/// Why a runner is asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Running,
    /// The operator stopped the task: end as `Stopped`.
    Stop,
    /// The spec changed: end quietly; a new runner starts from the checkpoint.
    Restart,
    /// The worker is shutting down: end as `Pending`, resumed at next start.
    Shutdown,
    /// The task was deleted or given to another worker: end without writing.
    Lost,
}

/// A running task, as the supervisor sees it.
#[derive(Debug)]
pub struct TaskHandle {
    pub version: i64,
    pub epoch: i64,
    stop: watch::Sender<StopReason>,
    join: JoinHandle<()>,
}

impl TaskHandle {
    pub fn stop(&self, reason: StopReason) {
        self.stop.send_if_modified(|r| {
            let changed = *r == StopReason::Running;
            if changed {
                *r = reason;
            }
            changed
        });
    }

    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    pub async fn join(self) {
        let _ = self.join.await;
    }
}

pub fn spawn(port: Port, task: TaskAssignment, cfg: Arc<WorkerConfig>, lease: LeaseClock) -> TaskHandle {
    let (stop, stop_rx) = watch::channel(StopReason::Running);
    let (version, epoch) = (task.version, task.epoch);
    let join = tokio::spawn(run_task(port, task, cfg, lease, stop_rx));
    TaskHandle { version, epoch, stop, join }
}

async fn run_task(
    port: Port,
    task: TaskAssignment,
    cfg: Arc<WorkerConfig>,
    lease: LeaseClock,
    mut stop: watch::Receiver<StopReason>,
) {
    let id = task.id;
    let mut resume = match task.checkpoint.as_deref().map(serde_json::from_str::<Checkpoint>).transpose() {
        Ok(cp) => cp,
        Err(e) => {
            let _ = port.record_state(id, task.epoch, TaskState::Failed, &format!("unreadable checkpoint: {e}")).await;
            return;
        }
    };
    let mut backoff = cfg.retry_min;
    loop {
        // Checked before every attempt: a stop that arrived during the
        // backoff has already been observed and would not wake `changed()`.
        let requested = *stop.borrow();
        if requested != StopReason::Running {
            return finish(&port, &task, requested).await;
        }
        match run_once(&port, &task, &cfg, &lease, &mut resume, &mut stop).await {
            Ok(()) => {
                let reason = *stop.borrow();
                return finish(&port, &task, reason).await;
            }
            Err(RunError::Fenced) => return finish(&port, &task, StopReason::Lost).await,
            Err(RunError::Definite(message)) => {
                tracing::error!(task = id, %message, "task failed");
                let _ = port.record_state(id, task.epoch, TaskState::Failed, &message).await;
                return;
            }
            Err(RunError::Transient(message)) => {
                if *stop.borrow() != StopReason::Running {
                    continue;
                }
                tracing::warn!(task = id, %message, retry_in = ?backoff, "task interrupted; retrying from its checkpoint");
                let note = format!("retrying after: {message}");
                if let Ok(false) = port.record_state(id, task.epoch, TaskState::Running, &note).await {
                    return finish(&port, &task, StopReason::Lost).await;
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(cfg.retry_max);
            }
        }
    }
}

/// Records the state a run ends in.
async fn finish(port: &Port, task: &TaskAssignment, reason: StopReason) {
    let final_state = match reason {
        StopReason::Stop => Some((TaskState::Stopped, "")),
        StopReason::Shutdown => Some((TaskState::Pending, "the worker stopped; the task resumes when it starts")),
        StopReason::Running | StopReason::Restart | StopReason::Lost => None,
    };
    if let Some((state, message)) = final_state {
        let _ = port.record_state(task.id, task.epoch, state, message).await;
    }
    tracing::info!(task = task.id, ?reason, "task ended");
}

/// The task's filters as the source's table selection.
struct FilterSelection {
    filter: TaskFilter,
    /// `exclude_columns` entries: `column` or `db.table.column`.
    excludes: Vec<String>,
    partition_by_column: bool,
}

impl FilterSelection {
    fn new(filter: TaskFilter, kafka: &dts_core::spec::KafkaSpec) -> Self {
        let partition_by_column = kafka.partition_mode == Some(dts_core::spec::PartitionMode::Column);
        Self { filter, excludes: kafka.exclude_columns.clone(), partition_by_column }
    }
}

impl Selection for FilterSelection {
    fn table(&self, db: &str, table: &str) -> bool {
        self.filter.selects_table(db, table)
    }
    fn database(&self, db: &str) -> bool {
        self.filter.selects_database(db)
    }
    fn row_filters(&self, db: &str, table: &str) -> Vec<Option<dts_core::filter::RowFilter>> {
        self.filter.row_filters_for(db, table).into_iter().map(|f| f.cloned()).collect()
    }
    fn needs_column_names(&self, db: &str, table: &str) -> bool {
        let qualified = format!("{db}.{table}.");
        self.partition_by_column
            || self.filter.row_filters_for(db, table).iter().any(Option::is_some)
            || self.excludes.iter().any(|e| !e.contains('.') || e.starts_with(&qualified))
    }
}

/// The stages between source and sink, built from the task's spec.
struct Stages {
    lease: LeaseClock,
    filter: TaskFilter,
    shaper: Shaper,
    router: Router,
    limiter: RowLimiter,
    sink: KafkaSink,
}

impl Stages {
    async fn deliver(&self, change: &Change, inflight: &mpsc::Sender<InFlight>) -> Result<(), RunError> {
        if self.lease.expired() {
            return Err(RunError::Fenced);
        }
        if let Change::Row(row) = change {
            if !self.filter.passes(row) {
                return Ok(());
            }
        }
        let route = self.router.route(change);
        let partitions = self.sink.partitions(&route.topic).await?;
        let payload = self.shaper.encode(change, now_ms());
        self.limiter.acquire(1).await;
        let ack = self.sink.send(&route.topic, route.partition(partitions), &route.key, &payload).await?;
        inflight.send(InFlight::Message(ack)).await.map_err(|_| RunError::Transient("the ack tracker stopped".into()))
    }
}

/// `Snapshotting` while existing rows are being copied, then `Running`.
fn phase(cp: &Checkpoint) -> TaskState {
    if cp.snapshot.is_some() {
        TaskState::Snapshotting
    } else {
        TaskState::Running
    }
}

fn progress(state: TaskState, cp: &Checkpoint, ts_ms: Option<i64>) -> Result<Progress, RunError> {
    let checkpoint = serde_json::to_string(cp).map_err(|e| RunError::Definite(format!("checkpoint: {e}")))?;
    Ok(Progress {
        state,
        message: String::new(),
        pos: cp.display(),
        checkpoint: Some(checkpoint),
        transaction_time: ts_ms,
    })
}

/// One connected run, until stopped (`Ok`) or an error.
async fn run_once(
    port: &Port,
    task: &TaskAssignment,
    cfg: &WorkerConfig,
    lease: &LeaseClock,
    resume: &mut Option<Checkpoint>,
    stop: &mut watch::Receiver<StopReason>,
) -> Result<(), RunError> {
    let spec = &task.spec;
    let filter = TaskFilter::new(&spec.filters).map_err(|e| RunError::Definite(e.to_string()))?;
    let dbs: Vec<String> = spec.filters.iter().map(|f| f.dbname.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let source = SourceConfig {
        host: spec.source.host.clone(),
        port: spec.source.port,
        user: spec.source.username.clone(),
        password: task.password.clone(),
        server_id: cfg.server_id_base.wrapping_add(task.id as u32),
        idle_timeout: cfg.source_idle_timeout,
        connect_timeout: Duration::from_secs(10),
    };
    let selection: Arc<dyn Selection> = Arc::new(FilterSelection::new(filter.clone(), &spec.kafka));
    let mut conn = source.connect().await?;
    let info = server_info(&mut conn).await?;
    checks::check_source(&mut conn, &info, &dbs).await?;
    // Where the task starts, and whether it copies existing rows first.
    let (start, snap) = match resume.clone() {
        Some(cp) if cp.snapshot.is_some() => {
            let snap = snapshot::begin(&source, &info).await?;
            (cp, Some(snap))
        }
        Some(cp) => (cp, None),
        // First start of an `incr: true` task: the source's current end.
        None if spec.incr => (current_position(&mut conn, &info).await?, None),
        // First start of an `incr: false` task: a snapshot, then its position.
        None => {
            let mut snap = snapshot::begin(&source, &info).await?;
            let tables = snapshot::plan(&mut snap, &dbs, selection.as_ref()).await?;
            let progress = SnapshotProgress { tables, rows_copied: 0 };
            (Checkpoint { snapshot: Some(progress), ..snap.position.clone() }, Some(snap))
        }
    };
    drop(conn);
    let mut sink_cfg = SinkConfig::new(spec.kafka.addr.clone());
    sink_cfg.topic_partitions = cfg.topic_partitions;
    sink_cfg.replication_factor = cfg.replication_factor;
    let stages = Stages {
        lease: lease.clone(),
        shaper: Shaper::new(&spec.kafka),
        router: Router::new(&spec.kafka),
        limiter: RowLimiter::new(spec.rate_limit),
        sink: KafkaSink::connect(sink_cfg)?,
        filter: filter.clone(),
    };
    if !port.record_progress(task.id, task.epoch, &progress(phase(&start), &start, task.transaction_time)?).await? {
        return Err(RunError::Fenced);
    }
    *resume = Some(start.clone());
    tracing::info!(task = task.id, from = %start.display(), "task running");

    let (tx, mut rx) = mpsc::channel(cfg.channel_capacity);
    let chunk_rows = cfg.snapshot_chunk_rows;
    let start_state = phase(&start);
    let mut reader = tokio::spawn(async move {
        let from = match snap {
            Some(snap) => match snapshot::copy(snap, &start, &source, &info, selection.clone(), chunk_rows, &tx).await?
            {
                Some(from) => {
                    let done = SourceItem::Commit { checkpoint: from.clone(), ts_ms: now_ms() };
                    if tx.send(done).await.is_err() {
                        return Ok(());
                    }
                    from
                }
                None => return Ok(()),
            },
            None => start,
        };
        stream(&source, &info, &from, selection, tx).await
    });
    let (inflight_tx, inflight_rx) = mpsc::channel(cfg.max_in_flight);
    let (delivered_tx, delivered_rx) = watch::channel(None::<Delivered>);
    let mut acker = tokio::spawn(track(inflight_rx, delivered_tx));
    let mut tick = tokio::time::interval(cfg.checkpoint_interval);
    let mut written: Option<Delivered> = None;
    let mut last_write = Instant::now();

    let outcome: Result<(), RunError> = loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break Ok(()),
            _ = tick.tick() => {
                let current = delivered_rx.borrow().clone();
                if current != written || last_write.elapsed() >= cfg.heartbeat_interval {
                    if let Some(d) = &current {
                        let p = progress(phase(&d.checkpoint), &d.checkpoint, Some(d.ts_ms))?;
                        if !port.record_progress(task.id, task.epoch, &p).await? {
                            break Err(RunError::Fenced);
                        }
                        *resume = Some(d.checkpoint.clone());
                    } else if !port.record_state(task.id, task.epoch, start_state, "").await? {
                        break Err(RunError::Fenced);
                    }
                    written = current;
                    last_write = Instant::now();
                }
            }
            item = rx.recv() => match item {
                Some(SourceItem::Change(change)) => {
                    // A stop must not wait for a slow delivery (broker timeout,
                    // rate limit); an abandoned message was never acknowledged,
                    // so the next run sends it again from the checkpoint.
                    tokio::select! {
                        result = stages.deliver(&change, &inflight_tx) => {
                            if let Err(e) = result {
                                break Err(e);
                            }
                        }
                        _ = stop.changed() => break Ok(()),
                    }
                }
                Some(SourceItem::Commit { checkpoint, ts_ms }) => {
                    if inflight_tx.send(InFlight::Commit { checkpoint, ts_ms }).await.is_err() {
                        break Err(RunError::Transient("the ack tracker stopped".into()));
                    }
                }
                None => break match (&mut reader).await {
                    Ok(Err(e)) => Err(e.into()),
                    Ok(Ok(())) => Err(SourceError::Transient("the binlog reader stopped".into()).into()),
                    Err(e) => Err(RunError::Transient(format!("the binlog reader crashed: {e}"))),
                },
            },
            result = &mut acker => break match result {
                Ok(Err(e)) => Err(e),
                _ => Err(RunError::Transient("the ack tracker stopped".into())),
            },
        }
    };

    // Wind down: stop reading, let every sent message be acknowledged, and
    // record the last fully delivered position.
    reader.abort();
    drop(rx);
    drop(inflight_tx);
    if !acker.is_finished() {
        match tokio::time::timeout(cfg.drain_timeout, &mut acker).await {
            Ok(Ok(Err(e))) => tracing::warn!(task = task.id, error = %e, "some messages were not acknowledged"),
            Err(_) => tracing::warn!(task = task.id, "acknowledgements still pending at stop; they will be resent"),
            _ => {}
        }
        acker.abort();
    }
    let last = delivered_rx.borrow().clone();
    if let Some(d) = last.filter(|d| Some(d) != written.as_ref()) {
        let p = progress(phase(&d.checkpoint), &d.checkpoint, Some(d.ts_ms))?;
        if port.record_progress(task.id, task.epoch, &p).await? {
            *resume = Some(d.checkpoint);
        }
    }
    outcome
}
