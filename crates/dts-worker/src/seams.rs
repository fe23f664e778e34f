//! The runner's seams: where a run's changes come from ([`Endpoints`]
//! opens the source and the sink), where its messages go ([`Sink`]) and
//! where it reports ([`Reporter`]). [`Live`] is the real MySQL/MariaDB and
//! Kafka pair; the runner's unit tests drive it with fakes.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dts_core::TaskState;
use dts_kafka::{AckGroup, KafkaSink, SinkConfig, SinkError};
use dts_metrics::TaskStats;
use dts_pipeline::filter::TaskFilter;
use dts_source::position::SnapshotProgress;
use dts_source::reader::{Batch, BinlogStream, Selection};
use dts_source::{checks, current_position, server_info, snapshot, Checkpoint, SourceConfig, SourceError};
use dts_store::tasks::Progress;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::RunError;
use crate::port::{Port, TaskAssignment};
use crate::WorkerConfig;

/// The broker's acknowledgement of the messages sent into it: all of
/// them delivered, or the first failure.
pub trait Acknowledgement: Send + Sync + 'static {
    fn wait(self) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Where messages go.
pub trait Sink: Send + Sync + 'static {
    type Acks: Acknowledgement;
    fn partitions(&self, topic: &str) -> impl Future<Output = Result<u32, SinkError>> + Send;
    /// An empty acknowledgement for the messages of one source batch.
    fn acks(&self) -> Self::Acks;
    /// Enqueues a message whose acknowledgement joins `acks`; waits while
    /// the producer's buffer is full.
    fn send(
        &self,
        acks: &Self::Acks,
        topic: &str,
        partition: u32,
        key: &[u8],
        payload: &[u8],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// Messages enqueued and not yet acknowledged.
    fn in_flight(&self) -> usize;
    /// Drops every message not yet sent: a runner that lost its task must
    /// not deliver it late, after another worker took over.
    fn purge(&self);
}

/// A run's source, opened: where the run starts, and the reader task
/// sending from there. The reader ends when the receiver is dropped.
#[derive(Debug)]
pub struct Opened {
    pub start: Checkpoint,
    pub reader: JoinHandle<Result<(), SourceError>>,
}

/// Opens a run's source and sink.
pub trait Endpoints: Send + Sync + 'static {
    type Sink: Sink;
    /// Connects to the source, checks it, decides where the run starts
    /// (`resume`, or a first position) and starts reading into `tx`.
    fn open_source(
        &self,
        task: &TaskAssignment,
        resume: Option<Checkpoint>,
        tx: mpsc::Sender<Batch>,
    ) -> impl Future<Output = Result<Opened, RunError>> + Send;
    fn connect_sink(&self, task: &TaskAssignment) -> Result<Self::Sink, RunError>;
}

/// Where a runner reports; every write is fenced by epoch and answers
/// false when the task is no longer this worker's.
pub trait Reporter: Send + Sync + 'static {
    fn record_progress(
        &self,
        id: i64,
        epoch: i64,
        progress: &Progress,
    ) -> impl Future<Output = Result<bool, RunError>> + Send;
    fn record_state(
        &self,
        id: i64,
        epoch: i64,
        state: TaskState,
        message: &str,
    ) -> impl Future<Output = Result<bool, RunError>> + Send;
}

/// A reporter that also keeps the task's state in its metrics, as written.
#[derive(Debug)]
pub struct Metered<R> {
    inner: R,
    stats: Arc<TaskStats>,
}

impl<R> Metered<R> {
    pub fn new(inner: R, stats: Arc<TaskStats>) -> Self {
        Self { inner, stats }
    }

    pub fn stats(&self) -> &Arc<TaskStats> {
        &self.stats
    }
}

impl<R: Reporter> Reporter for Metered<R> {
    async fn record_progress(&self, id: i64, epoch: i64, progress: &Progress) -> Result<bool, RunError> {
        let written = self.inner.record_progress(id, epoch, progress).await?;
        if written {
            self.stats.set_state(progress.state.as_str());
        }
        Ok(written)
    }
    async fn record_state(&self, id: i64, epoch: i64, state: TaskState, message: &str) -> Result<bool, RunError> {
        let written = self.inner.record_state(id, epoch, state, message).await?;
        if written {
            self.stats.set_state(state.as_str());
        }
        Ok(written)
    }
}

impl Reporter for Port {
    async fn record_progress(&self, id: i64, epoch: i64, progress: &Progress) -> Result<bool, RunError> {
        Port::record_progress(self, id, epoch, progress).await
    }
    async fn record_state(&self, id: i64, epoch: i64, state: TaskState, message: &str) -> Result<bool, RunError> {
        Port::record_state(self, id, epoch, state, message).await
    }
}

impl Acknowledgement for AckGroup {
    async fn wait(self) -> Result<(), SinkError> {
        AckGroup::wait(self).await
    }
}

impl Sink for KafkaSink {
    type Acks = AckGroup;
    async fn partitions(&self, topic: &str) -> Result<u32, SinkError> {
        KafkaSink::partitions(self, topic).await
    }
    fn acks(&self) -> AckGroup {
        AckGroup::new()
    }
    async fn send(
        &self,
        acks: &AckGroup,
        topic: &str,
        partition: u32,
        key: &[u8],
        payload: &[u8],
    ) -> Result<(), SinkError> {
        KafkaSink::send_into(self, acks, topic, partition, key, payload).await
    }
    fn in_flight(&self) -> usize {
        KafkaSink::in_flight(self)
    }
    fn purge(&self) {
        KafkaSink::purge(self);
    }
}

/// The real endpoints: the task's MySQL/MariaDB source and Kafka cluster.
#[derive(Debug)]
pub struct Live {
    cfg: Arc<WorkerConfig>,
}

impl Live {
    pub fn new(cfg: Arc<WorkerConfig>) -> Self {
        Self { cfg }
    }
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

/// The filters' `(dbname, match)` pairs, as the checkpoint records what a
/// copy covered.
fn covered_by(spec: &dts_core::TaskSpec) -> Vec<(String, String)> {
    spec.filters.iter().map(|f| (f.dbname.clone(), f.table.clone())).collect()
}

/// An `incr: false` task copies every table its filters select: after an
/// alter that selects more, the tables only the new filters select are
/// added to the copy (the others are not copied again).
async fn cover_new_tables(
    conn: &mut mysql_async::Conn,
    start: &mut Checkpoint,
    spec: &dts_core::TaskSpec,
    dbs: &[String],
    selection: &dyn Selection,
) -> Result<(), RunError> {
    let current = covered_by(spec);
    let previous = match start.copies.covered.replace(current.clone()) {
        // The first run planned every selected table; a checkpoint from
        // before dts tracked this is taken as covering the filters it has.
        None => return Ok(()),
        Some(previous) if previous == current => return Ok(()),
        Some(previous) => previous,
    };
    let rules: Vec<dts_core::spec::FilterRule> = previous
        .into_iter()
        .map(|(dbname, table)| dts_core::spec::FilterRule { dbname, table, filter: None })
        .collect();
    let before = TaskFilter::new(&rules).map_err(|e| RunError::Definite(e.to_string()))?;
    let added: Vec<_> = snapshot::plan(conn, dbs, selection)
        .await?
        .into_iter()
        .filter(|t| !before.selects_table(&t.db, &t.table))
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    tracing::info!(tables = added.len(), "the altered filters select more tables; copying them");
    let progress = start.snapshot.get_or_insert_with(|| SnapshotProgress::new(Vec::new()));
    for t in added {
        if !progress.tables.iter().any(|p| p.db == t.db && p.table == t.table && p.request.is_none()) {
            progress.tables.push(t);
        }
    }
    Ok(())
}

impl Endpoints for Live {
    type Sink = KafkaSink;

    async fn open_source(
        &self,
        task: &TaskAssignment,
        resume: Option<Checkpoint>,
        tx: mpsc::Sender<Batch>,
    ) -> Result<Opened, RunError> {
        let (spec, cfg) = (&task.spec, &self.cfg);
        let filter = TaskFilter::new(&spec.filters).map_err(|e| RunError::Definite(e.to_string()))?;
        let dbs: Vec<String> =
            spec.filters.iter().map(|f| f.dbname.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let source = SourceConfig {
            host: spec.source.host.clone(),
            port: spec.source.port,
            user: spec.source.username.clone(),
            password: task.password.clone(),
            server_id: cfg.server_id_base.wrapping_add(task.id as u32),
            idle_timeout: cfg.source_idle_timeout,
            connect_timeout: Duration::from_secs(10),
            tls: spec.source.tls.clone(),
        };
        let selection: Arc<dyn Selection> = Arc::new(FilterSelection::new(filter, &spec.kafka));
        let mut conn = source.connect().await?;
        let info = server_info(&mut conn).await?;
        checks::check_source(&mut conn, &info, &dbs).await?;
        // Where the run starts, and whether it still copies existing rows.
        let mut start = match resume {
            Some(cp) => cp,
            // First start of an `incr: true` task: the source's current end.
            None if spec.incr => current_position(&mut conn, &info).await?,
            // First start of an `incr: false` task: the current end, with
            // every selected table still to copy.
            None => {
                let tables = snapshot::plan(&mut conn, &dbs, selection.as_ref()).await?;
                let progress = SnapshotProgress::new(tables);
                let mut cp = Checkpoint { snapshot: Some(progress), ..current_position(&mut conn, &info).await? };
                cp.copies.covered = Some(covered_by(spec));
                cp
            }
        };
        if !spec.incr {
            cover_new_tables(&mut conn, &mut start, spec, &dbs, selection.as_ref()).await?;
        }
        // An on-demand snapshot asked (or cancelled) since the last run.
        snapshot::take_request(&mut conn, &mut start, task.snapshot_request.as_ref()).await?;
        drop(conn);
        let (chunk_rows, readers) = (cfg.snapshot_chunk_rows, cfg.snapshot_readers);
        let from = start.clone();
        let reader = tokio::spawn(tracing::Instrument::in_current_span(async move {
            let copier = match from.snapshot.clone() {
                Some(progress) => Some(
                    snapshot::Copier::connect(&source, &info, selection.clone(), chunk_rows, readers, progress).await?,
                ),
                None => None,
            };
            let stream = BinlogStream::open(&source, &info, &from, selection, tx).await?;
            snapshot::run(stream, copier).await
        }));
        Ok(Opened { start, reader })
    }

    fn connect_sink(&self, task: &TaskAssignment) -> Result<KafkaSink, RunError> {
        let mut sink_cfg = SinkConfig::new(task.spec.kafka.addr.clone());
        sink_cfg.topic_partitions = self.cfg.topic_partitions;
        sink_cfg.replication_factor = self.cfg.replication_factor;
        sink_cfg.origin = Some(self.cfg.worker_id.clone());
        if let Some(sec) = &task.spec.kafka.security {
            sink_cfg.security = dts_kafka::Security::from(sec);
        }
        Ok(KafkaSink::connect(sink_cfg)?)
    }
}
