//! One task's life on this worker: connect, check, stream, deliver,
//! checkpoint; retry transient errors from the last delivered position with
//! backoff; fail on definite ones; stop cleanly when asked.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use dts_core::event::{Change, Op};
use dts_core::TaskState;
use dts_metrics::{OpKind, TaskStats};
use dts_pipeline::filter::TaskFilter;
use dts_pipeline::limit::RowLimiter;
use dts_pipeline::route::Router;
use dts_pipeline::shape::Shaper;
use dts_source::reader::{Batch, SourceItem, BATCH_ITEMS};
use dts_source::{Checkpoint, SourceError};
use dts_store::now_ms;
use dts_store::tasks::Progress;
use futures_util::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::acks::{track, Delivered, InFlight};
use crate::error::RunError;
use crate::port::{Port, TaskAssignment};
use crate::seams::{Endpoints, Live, Metered, Opened, Reporter, Sink};
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
    /// Until when this task may produce: renewed only by heartbeat answers
    /// that still list it, so a task this node lost stays expired.
    pub lease: LeaseClock,
    stop: watch::Sender<StopReason>,
    join: JoinHandle<()>,
}

impl TaskHandle {
    /// Asks the runner to end; true when this is the first ask.
    pub fn stop(&self, reason: StopReason) -> bool {
        self.stop.send_if_modified(|r| {
            let changed = *r == StopReason::Running;
            if changed {
                *r = reason;
            }
            changed
        })
    }

    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    pub async fn join(self) {
        let _ = self.join.await;
    }
}

/// Starts a runner on the real source and sink.
pub fn spawn(port: Port, task: TaskAssignment, cfg: Arc<WorkerConfig>, lease: LeaseClock) -> TaskHandle {
    spawn_with(Arc::new(Live::new(cfg.clone())), port, task, cfg, lease)
}

/// Starts a runner on the given seams.
pub fn spawn_with<E: Endpoints, R: Reporter>(
    endpoints: Arc<E>,
    port: R,
    task: TaskAssignment,
    cfg: Arc<WorkerConfig>,
    lease: LeaseClock,
) -> TaskHandle {
    let (stop, stop_rx) = watch::channel(StopReason::Running);
    let (version, epoch) = (task.version, task.epoch);
    let port = Metered::new(port, cfg.metrics.tasks.task(task.id));
    // Every line a run logs, its reader's included, carries the task id.
    let span = tracing::info_span!("task", task_id = task.id);
    let join = tokio::spawn(run_task(endpoints, port, task, cfg, lease.clone(), stop_rx).instrument(span));
    TaskHandle { version, epoch, lease, stop, join }
}

async fn run_task<E: Endpoints, R: Reporter>(
    endpoints: Arc<E>,
    port: Metered<R>,
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
        // A panic in a run is a bug, but must not end the task silently: it
        // is logged, reported and retried like a transient error.
        let before = resume.clone();
        let run = run_once(endpoints.as_ref(), &port, &task, &cfg, &lease, &mut resume, &mut stop);
        let result = match AssertUnwindSafe(run).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(task = id, panic = %what, "the task's runner panicked");
                Err(RunError::Transient(format!("the runner panicked ({what})")))
            }
        };
        match result {
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
                // A run that delivered something was healthy: its failure
                // starts a fresh backoff.
                if resume != before {
                    backoff = cfg.retry_min;
                }
                tracing::warn!(task = id, %message, retry_in = ?backoff, "task interrupted; retrying from its checkpoint");
                port.stats().retry();
                let note = format!("retrying after: {message}");
                // A copy interrupted is still a copy: the state says so.
                let state = resume.as_ref().map_or(TaskState::Running, phase);
                if let Ok(false) = port.record_state(id, task.epoch, state, &note).await {
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
async fn finish<R: Reporter>(port: &R, task: &TaskAssignment, reason: StopReason) {
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

/// The stages between source and sink, built from the task's spec.
struct Stages<S> {
    stats: Arc<TaskStats>,
    lease: LeaseClock,
    filter: TaskFilter,
    shaper: Shaper,
    router: Router,
    limiter: RowLimiter,
    sink: S,
    /// The message being built; the producer copies it, so one buffer
    /// serves the whole run.
    payload: Vec<u8>,
}

impl<S: Sink> Stages<S> {
    /// Hands one batch from the source down the pipeline, in order, then
    /// the tracker its messages' acknowledgement and its last position.
    /// Positions inside the batch are not passed on: the last one says
    /// more, and costs the same wait.
    async fn process(&mut self, batch: Batch, inflight: &mpsc::Sender<InFlight<S::Acks>>) -> Result<(), RunError> {
        let mut acks = None;
        let (mut commit, mut idle) = (None, None);
        for item in batch {
            match item {
                SourceItem::Change(change) => {
                    let acks = acks.get_or_insert_with(|| self.sink.acks());
                    self.deliver(&change, acks).await?;
                }
                SourceItem::Commit { checkpoint, ts_ms } => {
                    self.stats.commit_read();
                    commit = Some(InFlight::Commit { checkpoint, ts_ms });
                }
                SourceItem::Idle { at_ms } => idle = Some(InFlight::Idle { at_ms }),
            }
        }
        for next in [acks.map(InFlight::Messages), commit, idle].into_iter().flatten() {
            inflight.send(next).await.map_err(|_| RunError::Transient("the ack tracker stopped".into()))?;
        }
        Ok(())
    }

    async fn deliver(&mut self, change: &Change, acks: &S::Acks) -> Result<(), RunError> {
        if self.lease.expired() {
            return Err(RunError::Fenced);
        }
        let op = op_kind(change);
        self.stats.read(op);
        if let Change::Row(row) = change {
            // The reader sends selected tables only: rows need a check only
            // when some entry filters them.
            if self.filter.filters_rows() && !self.filter.passes(row) {
                self.stats.filtered(op);
                return Ok(());
            }
        }
        let route = self.router.route(change);
        let partitions = self.sink.partitions(&route.topic).await?;
        self.shaper.encode_into(change, now_ms(), &mut self.payload);
        let payload = &self.payload;
        if self.limiter.is_limited() {
            let waiting = Instant::now();
            self.limiter.acquire(1).await;
            self.stats.throttled(waiting.elapsed());
        }
        // Again right before the hand-off: the awaits above (topic lookup,
        // rate limit) may have spanned a freeze past the lease.
        if self.lease.expired() {
            return Err(RunError::Fenced);
        }
        if let Err(e) = self.sink.send(acks, &route.topic, route.partition(partitions), &route.key, payload).await {
            self.stats.produce_error();
            return Err(e.into());
        }
        self.stats.produced(op, payload.len());
        Ok(())
    }
}

/// The tracker's queue holds a batch's acknowledgement per entry: the
/// message bound, in batches of up to [`BATCH_ITEMS`].
fn in_flight_batches(max_messages: usize) -> usize {
    max_messages.div_ceil(BATCH_ITEMS).max(1)
}

fn op_kind(change: &Change) -> OpKind {
    match change {
        Change::Row(row) => match row.op {
            Op::Insert => OpKind::Insert,
            Op::Update => OpKind::Update,
            Op::Delete => OpKind::Delete,
            Op::Read => OpKind::Read,
        },
        Change::Ddl(_) => OpKind::Ddl,
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
async fn run_once<E: Endpoints, R: Reporter>(
    endpoints: &E,
    port: &Metered<R>,
    task: &TaskAssignment,
    cfg: &WorkerConfig,
    lease: &LeaseClock,
    resume: &mut Option<Checkpoint>,
    stop: &mut watch::Receiver<StopReason>,
) -> Result<(), RunError> {
    let spec = &task.spec;
    let filter = TaskFilter::new(&spec.filters).map_err(|e| RunError::Definite(e.to_string()))?;
    let stats = port.stats().clone();
    let mut stages = Stages {
        stats: stats.clone(),
        lease: lease.clone(),
        shaper: Shaper::new(&spec.kafka),
        router: Router::new(&spec.kafka),
        limiter: RowLimiter::new(spec.rate_limit),
        sink: endpoints.connect_sink(task)?,
        filter,
        payload: Vec::new(),
    };
    let (tx, mut rx) = mpsc::channel(cfg.channel_capacity);
    let Opened { start, mut reader } = endpoints.open_source(task, resume.clone(), tx).await?;
    let start_state = phase(&start);
    if !port.record_progress(task.id, task.epoch, &progress(start_state, &start, task.transaction_time)?).await? {
        return Err(RunError::Fenced);
    }
    *resume = Some(start.clone());
    tracing::info!(task = task.id, from = %start.display(), "task running");

    let (inflight_tx, inflight_rx) = mpsc::channel(in_flight_batches(cfg.max_in_flight));
    let (delivered_tx, delivered_rx) = watch::channel(None::<Delivered>);
    let mut acker = tokio::spawn(track(inflight_rx, delivered_tx, stats.clone()));
    let mut tick = tokio::time::interval(cfg.checkpoint_interval);
    let mut written: Option<Delivered> = None;
    let mut last_write = Instant::now();

    let outcome: Result<(), RunError> = loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break Ok(()),
            _ = tick.tick() => {
                stats.buffers(stages.sink.in_flight(), rx.len(), cfg.channel_capacity);
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
            batch = rx.recv() => match batch {
                Some(batch) => {
                    // A stop must not wait for a slow delivery (broker timeout,
                    // rate limit); an abandoned message was never acknowledged,
                    // so the next run sends it again from the checkpoint.
                    tokio::select! {
                        result = stages.process(batch, &inflight_tx) => {
                            if let Err(e) = result {
                                break Err(e);
                            }
                        }
                        _ = stop.changed() => break Ok(()),
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

    // Wind down: stop reading (dropping the receiver is the reader's signal),
    // let every sent message be acknowledged, and record the last fully
    // delivered position. A runner that lost its task drops what is still
    // queued instead: another worker may already be delivering it.
    if matches!(outcome, Err(RunError::Fenced)) || *stop.borrow() == StopReason::Lost {
        stages.sink.purge();
    }
    drop(rx);
    if !reader.is_finished() && tokio::time::timeout(cfg.drain_timeout, &mut reader).await.is_err() {
        tracing::warn!(task = task.id, "the source reader did not stop in time; abandoning it");
        reader.abort();
    }
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

#[cfg(test)]
mod tests;
