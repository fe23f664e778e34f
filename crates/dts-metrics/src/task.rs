//! Per-task figures: the runner bumps atomics on its hot path (no locks, no
//! allocation); [`TaskCollector`] turns them into metric families at scrape
//! time, computing lag and ages against the clock of that moment.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

pub use dts_core::wire::{TableCopyFigures, TaskFigures};

/// What a change did, as the `op` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Insert,
    Update,
    Delete,
    /// A row copied by a snapshot.
    Read,
    Ddl,
}

impl OpKind {
    pub const ALL: [OpKind; 5] = [Self::Insert, Self::Update, Self::Delete, Self::Read, Self::Ddl];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Insert => "c",
            Self::Update => "u",
            Self::Delete => "d",
            Self::Read => "r",
            Self::Ddl => "ddl",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Task states as the runner sets them (the names of the list endpoint).
pub const STATES: [&str; 6] = ["Pending", "Snapshotting", "Running", "Stopping", "Stopped", "Failed"];

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

type PerOp = [AtomicU64; 5];

/// One task's figures on this node.
#[derive(Debug, Default)]
pub struct TaskStats {
    read: PerOp,
    filtered: PerOp,
    produced: PerOp,
    bytes: AtomicU64,
    produce_errors: AtomicU64,
    retries: AtomicU64,
    /// Source commit time of the last transaction Kafka acknowledged (ms).
    delivered_commit_ms: AtomicI64,
    /// When the source last said it had nothing more to send and every
    /// change read before was acknowledged (ms): lag is zero as of then.
    caught_up_ms: AtomicI64,
    last_event_ms: AtomicI64,
    binlog_file: AtomicU64,
    binlog_pos: AtomicU64,
    in_flight: AtomicU64,
    queue_len: AtomicU64,
    queue_capacity: AtomicU64,
    throttled_ns: AtomicU64,
    snapshot_tables_done: AtomicU64,
    snapshot_tables_total: AtomicU64,
    snapshot_rows: AtomicU64,
    /// Each table of the copy under way.
    snapshot_table_figures: Mutex<Vec<TableCopyFigures>>,
    /// Index into [`STATES`], plus one; zero before the first report.
    state: AtomicU8,
    /// On a control plane: when a worker last reported these figures (ms).
    absorbed_ms: AtomicI64,
}

impl TaskStats {
    pub fn read(&self, op: OpKind) {
        self.read[op.index()].fetch_add(1, Relaxed);
        self.last_event_ms.store(now_ms(), Relaxed);
    }

    pub fn filtered(&self, op: OpKind) {
        self.filtered[op.index()].fetch_add(1, Relaxed);
    }

    pub fn produced(&self, op: OpKind, bytes: usize) {
        self.produced[op.index()].fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub fn produce_error(&self) {
        self.produce_errors.fetch_add(1, Relaxed);
    }

    pub fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// A commit was read from the source (it counts as source activity).
    pub fn commit_read(&self) {
        self.last_event_ms.store(now_ms(), Relaxed);
    }

    /// Every message up to a transaction that committed at `commit_ms` is on
    /// the broker.
    pub fn delivered(&self, commit_ms: i64) {
        self.delivered_commit_ms.store(commit_ms, Relaxed);
    }

    /// The source was idle at `at_ms` and everything read before is on the broker.
    pub fn caught_up(&self, at_ms: i64) {
        self.caught_up_ms.store(at_ms, Relaxed);
    }

    pub fn position(&self, file_number: u64, pos: u64) {
        self.binlog_file.store(file_number, Relaxed);
        self.binlog_pos.store(pos, Relaxed);
    }

    pub fn buffers(&self, in_flight: usize, queue_len: usize, queue_capacity: usize) {
        self.in_flight.store(in_flight as u64, Relaxed);
        self.queue_len.store(queue_len as u64, Relaxed);
        self.queue_capacity.store(queue_capacity as u64, Relaxed);
    }

    pub fn throttled(&self, waited: std::time::Duration) {
        self.throttled_ns.fetch_add(waited.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    pub fn snapshot(&self, tables_done: usize, tables_total: usize, rows: u64) {
        self.snapshot_tables_done.store(tables_done as u64, Relaxed);
        self.snapshot_tables_total.store(tables_total as u64, Relaxed);
        self.snapshot_rows.store(rows, Relaxed);
    }

    /// Updates the copy's per-table figures in place (`update` gets them
    /// to change as it needs); an empty list when no copy is under way.
    pub fn snapshot_tables(&self, update: impl FnOnce(&mut Vec<TableCopyFigures>)) {
        if let Ok(mut tables) = self.snapshot_table_figures.lock() {
            update(&mut tables);
        }
    }

    pub fn snapshot_table_figures(&self) -> Vec<TableCopyFigures> {
        self.snapshot_table_figures.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// The state the runner last reported (one of [`STATES`]).
    pub fn set_state(&self, state: &str) {
        if let Some(i) = STATES.iter().position(|s| *s == state) {
            self.state.store(i as u8 + 1, Relaxed);
        }
    }

    pub fn state(&self) -> Option<&'static str> {
        STATES.get(usize::from(self.state.load(Relaxed)).checked_sub(1)?).copied()
    }

    /// Seconds between the source's latest change and its arrival in Kafka,
    /// as of `now_ms`; `None` until anything was delivered or the source
    /// was seen idle.
    pub fn lag_seconds(&self, now_ms: i64) -> Option<f64> {
        let as_of = self.delivered_commit_ms.load(Relaxed).max(self.caught_up_ms.load(Relaxed));
        (as_of > 0).then(|| (now_ms - as_of).max(0) as f64 / 1000.0)
    }

    /// Every figure, for a heartbeat to the control plane.
    pub fn export(&self, id: i64) -> TaskFigures {
        let ops = |a: &PerOp| std::array::from_fn(|i| a[i].load(Relaxed));
        TaskFigures {
            id,
            state: self.state().unwrap_or_default().to_owned(),
            read: ops(&self.read),
            filtered: ops(&self.filtered),
            produced: ops(&self.produced),
            bytes: self.bytes.load(Relaxed),
            produce_errors: self.produce_errors.load(Relaxed),
            retries: self.retries.load(Relaxed),
            delivered_commit_ms: self.delivered_commit_ms.load(Relaxed),
            caught_up_ms: self.caught_up_ms.load(Relaxed),
            last_event_ms: self.last_event_ms.load(Relaxed),
            binlog_file: self.binlog_file.load(Relaxed),
            binlog_pos: self.binlog_pos.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            queue_len: self.queue_len.load(Relaxed),
            queue_capacity: self.queue_capacity.load(Relaxed),
            throttled_ns: self.throttled_ns.load(Relaxed),
            snapshot_tables_done: self.snapshot_tables_done.load(Relaxed),
            snapshot_tables_total: self.snapshot_tables_total.load(Relaxed),
            snapshot_rows: self.snapshot_rows.load(Relaxed),
            snapshot_table_figures: self.snapshot_table_figures(),
        }
    }

    /// Takes a worker's figures as they are (a control plane's view).
    pub fn absorb(&self, f: &TaskFigures) {
        let ops = |a: &PerOp, v: &[u64; 5]| a.iter().zip(v).for_each(|(a, v)| a.store(*v, Relaxed));
        ops(&self.read, &f.read);
        ops(&self.filtered, &f.filtered);
        ops(&self.produced, &f.produced);
        self.bytes.store(f.bytes, Relaxed);
        self.produce_errors.store(f.produce_errors, Relaxed);
        self.retries.store(f.retries, Relaxed);
        self.delivered_commit_ms.store(f.delivered_commit_ms, Relaxed);
        self.caught_up_ms.store(f.caught_up_ms, Relaxed);
        self.last_event_ms.store(f.last_event_ms, Relaxed);
        self.binlog_file.store(f.binlog_file, Relaxed);
        self.binlog_pos.store(f.binlog_pos, Relaxed);
        self.in_flight.store(f.in_flight, Relaxed);
        self.queue_len.store(f.queue_len, Relaxed);
        self.queue_capacity.store(f.queue_capacity, Relaxed);
        self.throttled_ns.store(f.throttled_ns, Relaxed);
        self.snapshot_tables_done.store(f.snapshot_tables_done, Relaxed);
        self.snapshot_tables_total.store(f.snapshot_tables_total, Relaxed);
        self.snapshot_rows.store(f.snapshot_rows, Relaxed);
        self.snapshot_tables(|tables| tables.clone_from(&f.snapshot_table_figures));
        self.set_state(&f.state);
        self.absorbed_ms.store(now_ms(), Relaxed);
    }

    /// When a worker last reported these figures (ms; 0: they are this
    /// node's own).
    pub fn absorbed_ms(&self) -> i64 {
        self.absorbed_ms.load(Relaxed)
    }

    /// When the task last read anything from its source (ms; 0: never).
    pub fn last_event_ms(&self) -> i64 {
        self.last_event_ms.load(Relaxed)
    }

    /// The binlog file number and position last delivered.
    pub fn binlog(&self) -> (u64, u64) {
        (self.binlog_file.load(Relaxed), self.binlog_pos.load(Relaxed))
    }

    /// Rows handed to Kafka, all ops.
    pub fn rows_produced(&self) -> u64 {
        self.produced.iter().map(|c| c.load(Relaxed)).sum()
    }

    pub fn rows_produced_by(&self, op: OpKind) -> u64 {
        self.produced[op.index()].load(Relaxed)
    }

    pub fn bytes_produced(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    pub fn snapshot_progress(&self) -> (u64, u64, u64) {
        (
            self.snapshot_tables_done.load(Relaxed),
            self.snapshot_tables_total.load(Relaxed),
            self.snapshot_rows.load(Relaxed),
        )
    }
}

/// The tasks this node runs, by id.
#[derive(Debug, Default)]
pub struct TaskTable(RwLock<BTreeMap<i64, Arc<TaskStats>>>);

impl TaskTable {
    /// Task `id`'s figures, created at its first run here and kept across
    /// its restarts (counters only grow while the task stays on this node).
    pub fn task(&self, id: i64) -> Arc<TaskStats> {
        if let Some(s) = self.get(id) {
            return s;
        }
        match self.0.write() {
            Ok(mut all) => all.entry(id).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    pub fn get(&self, id: i64) -> Option<Arc<TaskStats>> {
        self.0.read().ok()?.get(&id).cloned()
    }

    /// Forgets a task that left this node (deleted or moved).
    pub fn remove(&self, id: i64) {
        if let Ok(mut all) = self.0.write() {
            all.remove(&id);
        }
    }

    pub fn all(&self) -> Vec<(i64, Arc<TaskStats>)> {
        self.0.read().map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect()).unwrap_or_default()
    }
}

/// Encodes every task's figures at scrape time.
#[derive(Debug)]
pub(crate) struct TaskCollector {
    tasks: Arc<TaskTable>,
    /// Worker nodes say each task's state here; nodes with the store say
    /// it from there.
    with_state: bool,
}

impl TaskCollector {
    pub(crate) fn new(tasks: Arc<TaskTable>, with_state: bool) -> Self {
        Self { tasks, with_state }
    }
}

/// A metric family: name, help, and how to read it from a task's figures.
type Family<F> = (&'static str, &'static str, F);
type ReadOps = fn(&TaskStats) -> &PerOp;
type ReadF64 = fn(&TaskStats) -> f64;
type ReadI64 = fn(&TaskStats) -> i64;
type ReadTable = fn(&TableCopyFigures) -> Option<i64>;

fn id_label(id: i64) -> [(&'static str, String); 1] {
    [("task_id", id.to_string())]
}

impl Collector for TaskCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let tasks = self.tasks.all();
        let now = now_ms();

        let per_op: [Family<ReadOps>; 3] = [
            ("dts_task_rows", "Changes handed to Kafka, by op (c, u, d, r for snapshot reads, ddl)", |t| &t.produced),
            ("dts_task_rows_read", "Changes read from the source for the task's tables, by op", |t| &t.read),
            ("dts_task_rows_filtered", "Changes the task's row filters dropped, by op", |t| &t.filtered),
        ];
        for (name, help, field) in per_op {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (id, t) in &tasks {
                for op in OpKind::ALL {
                    let labels = [("task_id", id.to_string()), ("op", op.label().to_owned())];
                    ConstCounter::new(field(t)[op.index()].load(Relaxed)).encode(family.encode_family(&labels)?)?;
                }
            }
        }

        let counters: [Family<ReadF64>; 4] = [
            ("dts_task_bytes", "Message bytes handed to Kafka", |t| t.bytes.load(Relaxed) as f64),
            ("dts_task_produce_errors", "Messages Kafka refused or failed to acknowledge", |t| {
                t.produce_errors.load(Relaxed) as f64
            }),
            ("dts_task_retries", "Runs that ended in a transient error and were retried from the checkpoint", |t| {
                t.retries.load(Relaxed) as f64
            }),
            ("dts_task_throttled_seconds", "Time spent waiting for the task's rate limit", |t| {
                t.throttled_ns.load(Relaxed) as f64 / 1e9
            }),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (id, t) in &tasks {
                ConstCounter::new(value(t)).encode(family.encode_family(&id_label(*id))?)?;
            }
        }

        let mut lag = encoder.encode_descriptor(
            "dts_task_lag_seconds",
            "Now minus the source commit time of the last transaction on the broker; zero as of the source's last idle heartbeat once everything before it is delivered; NaN until either happened",
            None,
            MetricType::Gauge,
        )?;
        // Every task has a series: NaN (unknown) before its first delivery
        // or heartbeat, e.g. while its source cannot be reached, so a
        // threshold alert neither fires nor sees the series vanish.
        for (id, t) in &tasks {
            let seconds = t.lag_seconds(now).unwrap_or(f64::NAN);
            ConstGauge::new(seconds).encode(lag.encode_family(&id_label(*id))?)?;
        }

        let mut idle = encoder.encode_descriptor(
            "dts_task_last_event_age_seconds",
            "Seconds since the task last read a change or commit from the source",
            None,
            MetricType::Gauge,
        )?;
        for (id, t) in &tasks {
            let last = t.last_event_ms.load(Relaxed);
            if last > 0 {
                ConstGauge::new((now - last).max(0) as f64 / 1000.0).encode(idle.encode_family(&id_label(*id))?)?;
            }
        }

        let gauges: [Family<ReadI64>; 8] = [
            ("dts_task_binlog_file_number", "Numeric suffix of the binlog file of the last delivered position", |t| {
                t.binlog_file.load(Relaxed) as i64
            }),
            ("dts_task_binlog_position", "Byte offset in that binlog file", |t| t.binlog_pos.load(Relaxed) as i64),
            ("dts_task_in_flight_messages", "Messages sent to Kafka and not yet acknowledged", |t| {
                t.in_flight.load(Relaxed) as i64
            }),
            (
                "dts_task_queue_length",
                "Batches of changes (up to 256 each) read from the source and waiting for the pipeline",
                |t| t.queue_len.load(Relaxed) as i64,
            ),
            ("dts_task_queue_capacity", "Capacity of that queue", |t| t.queue_capacity.load(Relaxed) as i64),
            ("dts_task_snapshot_tables_done", "Tables the snapshot has copied completely", |t| {
                t.snapshot_tables_done.load(Relaxed) as i64
            }),
            ("dts_task_snapshot_tables", "Tables the snapshot copies in all", |t| {
                t.snapshot_tables_total.load(Relaxed) as i64
            }),
            ("dts_task_snapshot_rows", "Rows the snapshot has delivered so far", |t| {
                t.snapshot_rows.load(Relaxed) as i64
            }),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (id, t) in &tasks {
                ConstGauge::new(value(t)).encode(family.encode_family(&id_label(*id))?)?;
            }
        }

        let per_table: [Family<ReadTable>; 4] = [
            ("dts_task_snapshot_table_rows", "Rows of the table the copy under way has delivered", |t| {
                Some(t.rows as i64)
            }),
            (
                "dts_task_snapshot_table_estimated_rows",
                "The catalogue's row estimate for the table when its copy was planned (approximate)",
                |t| t.estimated_rows.map(|n| n as i64),
            ),
            ("dts_task_snapshot_table_chunks", "Chunks of the table the copy under way has delivered", |t| {
                Some(t.chunks as i64)
            }),
            ("dts_task_snapshot_table_done", "1 once the table is copied completely", |t| Some(i64::from(t.done))),
        ];
        let tables: Vec<(i64, Vec<TableCopyFigures>)> =
            tasks.iter().map(|(id, t)| (*id, t.snapshot_table_figures())).filter(|(_, t)| !t.is_empty()).collect();
        for (name, help, value) in per_table {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (id, figures) in &tables {
                for t in figures {
                    if let Some(v) = value(t) {
                        let labels = [("task_id", id.to_string()), ("table", t.table.clone())];
                        ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }

        if self.with_state {
            let mut family = encoder.encode_descriptor(
                "dts_task_state",
                "1 for the task's current state on this worker, 0 for the others",
                None,
                MetricType::Gauge,
            )?;
            for (id, t) in &tasks {
                let Some(current) = t.state() else { continue };
                for s in STATES {
                    let labels = [("task_id", id.to_string()), ("state", s.to_owned())];
                    ConstGauge::new(i64::from(s == current)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
