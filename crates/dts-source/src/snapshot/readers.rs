//! Chunk readers: connections of their own that read planned key ranges
//! while the coordinator sends earlier chunks and the stream between them.
//!
//! A reader opens each chunk's snapshot only after the chunk before it in
//! the plan had its snapshot opened, so snapshot positions never go
//! backwards along the plan: the coordinator sends chunks in plan order,
//! each at its own position, and the stream only moves forward between
//! them. Readers stop when the coordinator drops its end (an explicit
//! signal, not an abort), and skip chunks of a plan it abandoned.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use dts_core::event::{Op, Row, RowChange, RowRef, SourcePosition};
use dts_core::filter::RowFilter;
use dts_core::now_ms;
use mysql_async::prelude::Queryable;
use mysql_async::Value as My;
use tokio::sync::{mpsc, watch, Mutex};

use super::{err, open_snapshot, ChunkError, ChunkRows, Snapshot};
use crate::decode::decode_query;
use crate::position::Flavor;
use crate::schema::TableInfo;
use crate::SourceError;

/// One planned key range of one table.
pub(super) struct Job {
    /// Place in the plan, from 1; snapshots open in this order.
    pub seq: u64,
    /// The plan it belongs to; a stale one is skipped.
    pub generation: u64,
    pub info: Arc<TableInfo>,
    pub sql: String,
    pub params: Vec<My>,
    pub key_columns: Arc<[usize]>,
    /// An on-demand request's slice, checked on every row read.
    pub slice: Option<Arc<RowFilter>>,
    pub limit: usize,
}

/// What a reader tells the coordinator about a job.
pub(super) enum Report {
    /// The job's snapshot is open at this position; its rows follow.
    Opened { seq: u64, generation: u64, at: Snapshot },
    /// The job's rows, or why it has none.
    Read { seq: u64, generation: u64, rows: Result<ChunkRows, ChunkError> },
}

/// The pool of readers, seen from the coordinator.
pub(super) struct Readers {
    jobs: mpsc::UnboundedSender<Job>,
    reports: mpsc::UnboundedReceiver<Report>,
    generation: Arc<AtomicU64>,
}

impl Readers {
    /// Starts one reader per connection. Each connection must already be
    /// set up for copying (time zone, isolation level).
    pub fn start(conns: Vec<mysql_async::Conn>, flavor: Flavor) -> Self {
        let (jobs, job_rx) = mpsc::unbounded_channel();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let opened = Arc::new(watch::Sender::new(0u64));
        let generation = Arc::new(AtomicU64::new(0));
        for conn in conns {
            let reader = Reader {
                conn,
                flavor,
                jobs: job_rx.clone(),
                opened: opened.clone(),
                generation: generation.clone(),
                reports: report_tx.clone(),
            };
            tokio::spawn(tracing::Instrument::in_current_span(reader.run()));
        }
        Self { jobs, reports, generation }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(AtomicOrdering::Acquire)
    }

    /// Abandons every job handed out so far: readers skip those not yet
    /// started, and their reports are to be ignored.
    pub fn abandon(&self) {
        self.generation.fetch_add(1, AtomicOrdering::AcqRel);
    }

    pub fn send(&self, job: Job) -> Result<(), SourceError> {
        self.jobs.send(job).map_err(|_| SourceError::Transient("the snapshot's chunk readers stopped".into()))
    }

    pub async fn report(&mut self) -> Result<Report, SourceError> {
        self.reports.recv().await.ok_or_else(|| SourceError::Transient("the snapshot's chunk readers stopped".into()))
    }
}

struct Reader {
    conn: mysql_async::Conn,
    flavor: Flavor,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    /// The highest `seq` whose snapshot was opened (or skipped).
    opened: Arc<watch::Sender<u64>>,
    generation: Arc<AtomicU64>,
    reports: mpsc::UnboundedSender<Report>,
}

impl Reader {
    async fn run(mut self) {
        let gone = self.reports.clone();
        tokio::select! {
            // The coordinator dropped its end: stop mid-query, if need be.
            () = gone.closed() => {}
            () = self.work() => {}
        }
    }

    async fn work(&mut self) {
        loop {
            let Some(job) = self.jobs.lock().await.recv().await else { return };
            let mut turn = self.opened.subscribe();
            if turn.wait_for(|&opened| opened + 1 >= job.seq).await.is_err() {
                return;
            }
            if self.generation.load(AtomicOrdering::Acquire) != job.generation {
                self.opened_up_to(job.seq);
                continue;
            }
            let opened = open_snapshot(&mut self.conn, self.flavor).await;
            self.opened_up_to(job.seq);
            let (seq, generation) = (job.seq, job.generation);
            let at = match opened {
                Ok(at) => at,
                Err(e) => {
                    let _ = self.reports.send(Report::Read { seq, generation, rows: Err(ChunkError::Source(e)) });
                    continue;
                }
            };
            let _ = self.reports.send(Report::Opened { seq, generation, at: at.clone() });
            let mut rows = read(&mut self.conn, &job, &at).await;
            let end = if rows.is_ok() { "COMMIT" } else { "ROLLBACK" };
            if let Err(e) = self.conn.query_drop(end).await {
                if rows.is_ok() {
                    rows = Err(ChunkError::Source(err(e)));
                }
            }
            if self.reports.send(Report::Read { seq, generation, rows }).is_err() {
                return;
            }
        }
    }

    fn opened_up_to(&self, seq: u64) {
        self.opened.send_modify(|opened| *opened = (*opened).max(seq));
    }
}

/// Reads one job's rows in the snapshot open on `conn`.
async fn read(conn: &mut mysql_async::Conn, job: &Job, at: &Snapshot) -> Result<ChunkRows, ChunkError> {
    let source = at.source();
    let mut result = conn.exec_iter(job.sql.as_str(), job.params.clone()).await.map_err(ChunkError::from_mysql)?;
    let mut out = ChunkRows { rows: Vec::with_capacity(job.limit.min(65_536)), read: 0, last_key: None };
    // Only the last row's key is kept: the row itself is held until the
    // next one arrives instead of cloning every row's key.
    let mut last: Option<Vec<My>> = None;
    while let Some(row) = result.next().await.map_err(ChunkError::from_mysql)? {
        let raw = row.unwrap();
        out.read += 1;
        let change = decode_row(&raw, &job.info, &source)?;
        last = Some(raw);
        if job.slice.as_ref().is_some_and(|f| !accepts(f, &change)) {
            continue;
        }
        out.rows.push(change);
    }
    out.last_key = last.map(|raw| job.key_columns.iter().map(|&c| raw[c].clone()).collect());
    Ok(out)
}

/// Whether an on-demand request's slice takes this copied row.
pub(super) fn accepts(filter: &RowFilter, change: &RowChange) -> bool {
    change.after.as_ref().is_some_and(|row| filter.matches(&RowRef { schema: &change.schema, row }))
}

/// One row of a copy as an `op: "r"` change.
pub(super) fn decode_row(raw: &[My], info: &TableInfo, source: &SourcePosition) -> Result<RowChange, SourceError> {
    let values = raw
        .iter()
        .zip(&info.columns)
        .map(|(v, col)| decode_query(v, col))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SourceError::Definite(format!("{}.{}: {e}", info.schema.db, info.schema.table)))?;
    Ok(RowChange {
        schema: info.schema.clone(),
        op: Op::Read,
        before: None,
        after: Some(Row(values)),
        source: source.clone(),
    })
}

impl Snapshot {
    /// The position copied rows carry.
    pub(super) fn source(&self) -> SourcePosition {
        SourcePosition {
            server_id: 0,
            gtid: "".into(),
            file: self.file.as_str().into(),
            pos: self.pos,
            row: 0,
            ts_ms: now_ms(),
            snapshot: true,
        }
    }
}
