//! Copying existing rows for `incr: false` tasks while the binlog stream
//! keeps flowing: no lock, no long transaction, no writes to the source.
//!
//! # How a chunk is read (watermarks from the source's own snapshot)
//! The copy runs in the stream's loop, between its transactions. Each table
//! is cut into key ranges of about `chunk_rows` rows: the planner finds a
//! range's last key with an index-only query (`chunk_rows` keys on from the
//! range before, never `OFFSET`), so ranges after it can be read before it.
//! Chunk readers, each with a connection of its own, read the ranges:
//! 1. A short `START TRANSACTION WITH CONSISTENT SNAPSHOT` is opened and its
//!    binlog position `P` read. MariaDB reports it exactly
//!    (`binlog_snapshot_file/position`: every transaction up to `P` is in the
//!    snapshot, none after); MySQL has no such status, so `P` is its binlog
//!    end read inside the transaction, and opening is retried until that
//!    end did not move while the snapshot was taken. Snapshots open in plan
//!    order, so `P` never goes backwards along the plan.
//! 2. One `SELECT` reads the range (`WHERE key > lo AND key <= hi ORDER BY
//!    key LIMIT n`) and the transaction commits.
//! 3. The coordinator, in plan order, lets the stream read on until it
//!    stands exactly at the chunk's `P`, sending every change up to there,
//!    then sends the chunk's rows as `op: "r"` and a checkpoint recording it.
//!
//! The rows are the table as of `P`, sent at `P` in the stream's order:
//! every change before them is older, every change after them newer, so the
//! topic ends equal to the table and the copy sends each key once. The
//! stream only reads forward to each chunk's `P`; before the first chunk
//! it is lined up with a snapshot of the planner's own (a "fence"), so no
//! reader's snapshot can be behind it. Should one still be (a transaction
//! in the binlog but not yet committed in the engine when the snapshot was
//! taken), the chunks out are dropped and planned again after a new fence.
//! A range that grew past twice its size by the time it was read is cut
//! where the read stopped and the rest planned again.
//!
//! Each transaction lives for one chunk's `SELECT`, so an `ALTER TABLE`
//! waits at most that long and purge is held back no longer; the stream
//! waits only when the next chunk in order is still being read.
//!
//! Tables are keyed by their primary key, else by their smallest unique
//! index over NOT NULL columns. A table with neither is read in one scan
//! at its `P` (the stream pauses for that scan, the transaction spans it),
//! and a restart copies it again from its start; its progress says so.
//! Memory is one chunk per reader plus the one being sent, whatever the
//! table's size.

mod readers;

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dts_core::event::{Change, RowChange};
use dts_core::filter::RowFilter;
use dts_core::now_ms;
use dts_core::snapshot::SnapshotRequest;
use mysql_async::prelude::Queryable;
use mysql_async::Value as My;

use self::readers::{accepts, decode_row, Job, Readers, Report};
use crate::position::{Checkpoint, Flavor, SnapshotProgress, TableProgress};
use crate::pushdown::where_clause;
use crate::reader::{BinlogStream, Selection, SourceItem};
use crate::schema::TableInfo;
use crate::{ServerInfo, SourceConfig, SourceError};

/// How long a chunk may keep failing to line its snapshot up with the
/// stream before the run is retried from its checkpoint.
const ALIGN_DEADLINE: Duration = Duration::from_secs(30);
/// Server errors after which a chunk is read again with a fresh table
/// definition: the table changed (1412), vanished (1146) or lost a column
/// (1054) since its shape was read.
const TABLE_CHANGED: [u16; 3] = [1412, 1146, 1054];
/// Consecutive such failures on one table before the run gives up.
const MAX_TABLE_RETRIES: u32 = 20;

fn err(e: mysql_async::Error) -> SourceError {
    SourceError::from_mysql(e)
}

/// The tables the task copies, in a stable order, with the catalogue's
/// row estimates.
pub async fn plan(
    conn: &mut mysql_async::Conn,
    dbs: &[String],
    select: &dyn Selection,
) -> Result<Vec<TableProgress>, SourceError> {
    let mut out = Vec::new();
    for db in dbs {
        let tables: Vec<(String, Option<u64>)> = conn
            .exec(
                "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
                (db,),
            )
            .await
            .map_err(err)?;
        out.extend(
            tables
                .into_iter()
                .filter(|(t, _)| select.table(db, t))
                .map(|(table, estimate)| TableProgress::new(db.clone(), table, estimate)),
        );
    }
    Ok(out)
}

/// Brings an on-demand request into the checkpoint's copy: its tables are
/// added once (`requests_taken` remembers it), and tables of a request no
/// longer asked for (cancelled or replaced) are dropped from the copy.
pub async fn take_request(
    conn: &mut mysql_async::Conn,
    cp: &mut Checkpoint,
    request: Option<&SnapshotRequest>,
) -> Result<(), SourceError> {
    let wanted = request.map(|r| r.id);
    if let Some(progress) = cp.snapshot.as_mut() {
        progress.tables.retain(|t| t.request.is_none() || t.request == wanted);
        if progress.tables.iter().all(|t| t.done) && progress.tables.iter().all(|t| t.request.is_some()) {
            cp.snapshot = None;
        }
    }
    if request.is_none_or(|r| cp.copies.request_tables.first().is_some_and(|t| t.request != Some(r.id))) {
        cp.copies.request_tables.clear();
    }
    let Some(request) = request.filter(|r| r.id > cp.copies.requests_taken) else { return Ok(()) };
    let progress = cp.snapshot.get_or_insert_with(|| SnapshotProgress::new(Vec::new()));
    for (db, table) in &request.tables {
        let estimate: Option<Option<u64>> = conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND TABLE_TYPE = 'BASE TABLE'",
                (db, table),
            )
            .await
            .map_err(err)?;
        let mut t = TableProgress::new(db.clone(), table.clone(), estimate.flatten());
        t.request = Some(request.id);
        t.condition = request.condition.clone();
        if estimate.is_none() {
            t.done = true;
            t.note = Some("no such table".into());
        }
        progress.tables.push(t);
    }
    cp.copies.requests_taken = request.id;
    tracing::info!(request = request.id, tables = request.tables.len(), "on-demand snapshot taken up");
    Ok(())
}

/// Runs the stream, interleaving the copy's chunks while `copier` has
/// tables left. Ends when the receiver is gone (`Ok`) or on an error.
pub async fn run(mut stream: BinlogStream, mut copier: Option<Copier>) -> Result<(), SourceError> {
    loop {
        if let Some(c) = copier.as_mut() {
            if stream.at_boundary() {
                match c.next_chunk(&mut stream).await? {
                    Flow::More => continue,
                    Flow::Finished => {
                        copier = None;
                        continue;
                    }
                    Flow::Closed => return Ok(()),
                }
            }
        }
        if !stream.step().await? {
            return Ok(());
        }
    }
}

/// What a chunk step left to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    More,
    Finished,
    /// The receiver is gone.
    Closed,
}

/// The copy of existing rows: the plan, the chunks read ahead, and how far
/// the copy came (advanced only as chunks are sent, in plan order).
pub struct Copier {
    /// Plans chunks, fences the stream and scans keyless tables.
    conn: mysql_async::Conn,
    flavor: Flavor,
    select: Arc<dyn Selection>,
    chunk_rows: usize,
    progress: SnapshotProgress,
    readers: Readers,
    /// Chunks planned and not yet sent, at most.
    capacity: usize,
    /// Chunks handed to readers, in plan order.
    pending: VecDeque<Pending>,
    /// Where planning stands; `None`: start again from `progress`.
    cursor: Option<Cursor>,
    next_seq: u64,
    /// The stream stands at or before every snapshot opened from now on.
    fenced: bool,
    /// The key of the table last planned, by (db, table).
    key: Option<(String, String, CopyKey)>,
    failures: u32,
}

impl std::fmt::Debug for Copier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copier").field("progress", &self.progress).finish_non_exhaustive()
    }
}

/// How a table is walked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CopyKey {
    /// In chunks, ordered by these columns (a primary or unique key).
    Columns { columns: Vec<usize>, name: String },
    /// In one scan: nothing identifies a row.
    Scan,
}

/// Where a chunk's snapshot stands.
#[derive(Debug, Clone)]
struct Snapshot {
    file: String,
    pos: u64,
}

/// A chunk handed to a reader.
struct Pending {
    seq: u64,
    table: usize,
    /// The definition the chunk is read with.
    info: Arc<TableInfo>,
    /// The range's last key, inclusive; `None`: to the table's end.
    hi: Option<Vec<My>>,
    limit: usize,
    at: Option<Snapshot>,
    rows: Option<Result<ChunkRows, ChunkError>>,
}

/// Where planning stands in one table.
struct Cursor {
    table: usize,
    plan: Option<TablePlan>,
    /// The next chunk starts after this key (`None`: at the table's start).
    after: Option<Vec<My>>,
    /// The table's last, open-ended chunk is out: plan on once it is sent.
    waiting: bool,
}

/// What chunks of one table are read with.
struct TablePlan {
    info: Arc<TableInfo>,
    key: CopyKey,
    key_columns: Arc<[usize]>,
    condition: Option<String>,
    slice: Option<Arc<RowFilter>>,
}

/// What planning found next.
enum Next {
    /// A chunk of table `.1` to read, with its range's last key (`None`:
    /// open-ended).
    Job(Job, usize, Option<Vec<My>>),
    /// Nothing to plan before the chunks out are sent.
    Wait,
    /// A table without a usable key, to scan once the pipeline is empty.
    Scan(usize),
    /// A table no longer there.
    Gone(usize),
    Finished,
}

/// Orders binlog coordinates: by the file's sequence number, then position.
pub fn compare_positions(a: (&str, u64), b: (&str, u64)) -> Ordering {
    let seq = |f: &str| f.rsplit_once('.').and_then(|(_, n)| n.parse::<u64>().ok());
    let files = match (seq(a.0), seq(b.0)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.0.cmp(b.0),
    };
    files.then(a.1.cmp(&b.1))
}

/// A connection set up to read copies: TIMESTAMP values in UTC like the
/// binlog's, and snapshots that see one point in time.
async fn copy_connection(cfg: &SourceConfig) -> Result<mysql_async::Conn, SourceError> {
    let mut conn = cfg.connect().await?;
    conn.query_drop("SET SESSION time_zone = '+00:00'").await.map_err(err)?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await.map_err(err)?;
    Ok(conn)
}

impl Copier {
    /// Connects the planner and `readers` chunk readers (at least one).
    pub async fn connect(
        cfg: &SourceConfig,
        info: &ServerInfo,
        select: Arc<dyn Selection>,
        chunk_rows: usize,
        readers: usize,
        progress: SnapshotProgress,
    ) -> Result<Self, SourceError> {
        let conn = copy_connection(cfg).await?;
        let mut conns = Vec::with_capacity(readers.max(1));
        for _ in 0..readers.max(1) {
            conns.push(copy_connection(cfg).await?);
        }
        Ok(Self {
            conn,
            flavor: info.flavor,
            select,
            chunk_rows: chunk_rows.max(1),
            progress,
            // One chunk per reader in flight while the oldest is sent: more
            // would only hold later changes back behind older snapshots.
            capacity: conns.len() + 1,
            readers: Readers::start(conns, info.flavor),
            pending: VecDeque::new(),
            cursor: None,
            next_seq: 1,
            fenced: false,
            key: None,
            failures: 0,
        })
    }

    /// Plans and hands out chunks up to the pipeline's capacity, then sends
    /// the oldest one at its place in the stream.
    pub async fn next_chunk(&mut self, stream: &mut BinlogStream) -> Result<Flow, SourceError> {
        while self.pending.len() < self.capacity {
            match self.plan_next(stream).await? {
                Next::Job(job, table, hi) => {
                    if !self.fenced && !self.fence(stream).await? {
                        return Ok(Flow::Closed);
                    }
                    self.hand_out(job, table, hi)?;
                }
                Next::Wait => break,
                _ if !self.pending.is_empty() => break,
                Next::Scan(i) => return self.scan(stream, i).await,
                Next::Gone(i) => {
                    let t = &mut self.progress.tables[i];
                    tracing::info!(db = %t.db, table = %t.table, "table dropped before its copy ended");
                    t.done = true;
                    t.note = Some("dropped before its copy ended".into());
                    self.cursor = None;
                    return self.commit(stream).await;
                }
                Next::Finished => return self.finish(stream).await,
            }
        }
        self.send_oldest(stream).await
    }

    /// Every table copied: hands over to plain streaming.
    async fn finish(&mut self, stream: &mut BinlogStream) -> Result<Flow, SourceError> {
        let requested: Vec<TableProgress> =
            self.progress.tables.iter().filter(|t| t.request.is_some()).cloned().collect();
        if !requested.is_empty() {
            stream.set_request_tables(requested);
        }
        stream.set_copy(None);
        let checkpoint = stream.checkpoint();
        tracing::info!(rows = self.progress.rows_copied, "existing rows copied; streaming");
        Ok(if send(stream, SourceItem::Commit { checkpoint, ts_ms: now_ms() }).await {
            Flow::Finished
        } else {
            Flow::Closed
        })
    }

    fn hand_out(&mut self, job: Job, table: usize, hi: Option<Vec<My>>) -> Result<(), SourceError> {
        self.pending.push_back(Pending {
            seq: job.seq,
            table,
            info: job.info.clone(),
            hi,
            limit: job.limit,
            at: None,
            rows: None,
        });
        self.readers.send(job)
    }

    /// Lines the stream up with a snapshot of the planner's own, so every
    /// snapshot a reader opens from now on is at or after the stream.
    async fn fence(&mut self, stream: &mut BinlogStream) -> Result<bool, SourceError> {
        if self.align(stream).await?.is_none() {
            return Ok(false);
        }
        self.conn.query_drop("COMMIT").await.map_err(err)?;
        self.fenced = true;
        Ok(true)
    }

    /// Drops every chunk out and plans again from what was sent.
    fn replan(&mut self) {
        self.readers.abandon();
        self.pending.clear();
        self.cursor = None;
        self.fenced = false;
    }

    /// The next chunk to read, planned by key range: its end is the key
    /// `chunk_rows` rows on, found by an index-only query, so readers can
    /// read the ranges after it before it is read.
    async fn plan_next(&mut self, stream: &mut BinlogStream) -> Result<Next, SourceError> {
        if self.cursor.is_none() {
            let Some(i) = self.progress.tables.iter().position(|t| !t.done) else { return Ok(Next::Finished) };
            let after = decode_key(self.progress.tables[i].last_key.as_deref())?;
            self.cursor = Some(Cursor { table: i, plan: None, after, waiting: false });
        }
        let Some(cursor) = self.cursor.as_mut() else { return Ok(Next::Finished) };
        if cursor.waiting {
            return Ok(Next::Wait);
        }
        let i = cursor.table;
        if cursor.plan.is_none() {
            match self.plan_table(stream, i).await? {
                Some(plan) if plan.key != CopyKey::Scan => {
                    if let Some(c) = self.cursor.as_mut() {
                        c.plan = Some(plan);
                    }
                }
                Some(_) => return Ok(Next::Scan(i)),
                None => return Ok(Next::Gone(i)),
            }
        }
        let Some(Cursor { plan: Some(plan), after, .. }) = self.cursor.as_ref() else { return Ok(Next::Wait) };
        let (info, key, condition) = (plan.info.clone(), plan.key.clone(), plan.condition.clone());
        let (key_columns, slice, after) = (plan.key_columns.clone(), plan.slice.clone(), after.clone());
        let query = ChunkQuery { info: &info, key: &key, condition, limit: self.chunk_rows };
        let (sql, params) = query.boundary_sql(after.as_deref());
        let hi: Option<Vec<My>> = match self.conn.exec_first::<mysql_async::Row, _, _>(sql, params).await {
            Ok(row) => row.map(mysql_async::Row::unwrap),
            Err(e) => {
                return match ChunkError::from_mysql(e) {
                    ChunkError::Changed(e) => self.table_changed(stream, i, e).map(|()| Next::Wait),
                    ChunkError::Source(e) => Err(e),
                }
            }
        };
        // A bounded range may hold more rows by the time it is read; twice
        // the chunk size leaves room, and beyond that it is planned again.
        let limit = if hi.is_some() { 2 * self.chunk_rows } else { self.chunk_rows };
        let query = ChunkQuery { limit, ..query };
        let (sql, params) = query.sql(after.as_deref(), hi.as_deref());
        let job = Job {
            seq: self.next_seq,
            generation: self.readers.generation(),
            info: info.clone(),
            sql,
            params,
            key_columns,
            slice,
            limit,
        };
        self.next_seq += 1;
        if let Some(c) = self.cursor.as_mut() {
            c.waiting = hi.is_none();
            c.after.clone_from(&hi);
        }
        Ok(Next::Job(job, i, hi))
    }

    /// A table's key, shape and filters, as its chunks are read; `None`
    /// when it no longer exists.
    async fn plan_table(&mut self, stream: &mut BinlogStream, i: usize) -> Result<Option<TablePlan>, SourceError> {
        let (db, table) = (self.progress.tables[i].db.clone(), self.progress.tables[i].table.clone());
        let Some(info) = stream.schemas().lookup(&db, &table).await? else { return Ok(None) };
        let key = match &self.key {
            Some((d, t, key)) if *d == db && *t == table => key.clone(),
            _ => {
                let key = match copy_key(&mut self.conn, &info).await {
                    Ok(key) => key,
                    Err(e) => {
                        return match ChunkError::from_mysql(e) {
                            ChunkError::Changed(_) => Ok(None),
                            ChunkError::Source(e) => Err(e),
                        }
                    }
                };
                self.key = Some((db.clone(), table.clone(), key.clone()));
                key
            }
        };
        let t = &mut self.progress.tables[i];
        t.key = Some(match &key {
            CopyKey::Columns { name, .. } => name.clone(),
            CopyKey::Scan => String::new(),
        });
        let filters = self.select.row_filters(&db, &table);
        let mut condition = where_clause(&filters.iter().map(Option::as_ref).collect::<Vec<_>>(), &info);
        // An on-demand slice: pushed into the query when it can be, and
        // checked on every row read either way.
        let slice = match t.condition.as_deref() {
            Some(text) => Some(Arc::new(
                RowFilter::parse(text)
                    .map_err(|e| SourceError::Definite(format!("snapshot request's where on {db}.{table}: {e}")))?,
            )),
            None => None,
        };
        if let Some(pushed) = slice.as_deref().and_then(|f| where_clause(&[Some(f)], &info)) {
            condition = Some(match condition {
                Some(c) => format!("({c}) AND ({pushed})"),
                None => pushed,
            });
        }
        let key_columns: Arc<[usize]> = match &key {
            CopyKey::Columns { columns, .. } => columns.as_slice().into(),
            CopyKey::Scan => Arc::new([]),
        };
        Ok(Some(TablePlan { info, key, key_columns, condition, slice }))
    }

    /// A chunk failed because its table changed: forget its definition
    /// and plan again from what was sent, a bounded number of times.
    fn table_changed(&mut self, stream: &mut BinlogStream, i: usize, e: mysql_async::Error) -> Result<(), SourceError> {
        self.failures += 1;
        if self.failures > MAX_TABLE_RETRIES {
            return Err(err(e));
        }
        let t = &self.progress.tables[i];
        tracing::info!(db = %t.db, table = %t.table, error = %e, "the table changed under its copy; reading it again");
        stream.schemas().forget(&t.db, Some(&t.table));
        self.key = None;
        self.replan();
        Ok(())
    }

    /// Waits for the oldest chunk out and sends it at its snapshot's
    /// position: the stream reads up to there first.
    async fn send_oldest(&mut self, stream: &mut BinlogStream) -> Result<Flow, SourceError> {
        let Some(seq) = self.pending.front().map(|p| p.seq) else { return Ok(Flow::More) };
        while self.pending.front().is_some_and(|p| p.at.is_none() && p.rows.is_none()) {
            self.file_report().await?;
        }
        if let Some(at) = self.pending.front().and_then(|p| p.at.clone()) {
            if !advance(stream, (&at.file, at.pos)).await? {
                return Ok(Flow::Closed);
            }
            if compare_positions(stream.last_commit(), (&at.file, at.pos)) == Ordering::Greater {
                // A transaction the stream read was not yet visible to the
                // snapshot: fence again and read the chunk anew.
                tracing::debug!(seq, "a chunk's snapshot is behind the stream; planning again");
                self.replan();
                return Ok(Flow::More);
            }
        }
        if let Some(chunk) = self.pending.front() {
            // An ALTER the stream read on the way to this chunk: the chunk
            // was read with the column list planned before it.
            let t = &self.progress.tables[chunk.table];
            let now = stream.schemas().lookup(&t.db, &t.table).await?;
            if now.as_deref() != Some(chunk.info.as_ref()) {
                self.failures += 1;
                if self.failures > MAX_TABLE_RETRIES {
                    return Err(SourceError::Transient(format!(
                        "{}.{} kept changing under its copy; retrying from the checkpoint",
                        t.db, t.table
                    )));
                }
                tracing::info!(db = %t.db, table = %t.table, "the table changed under its copy; reading it again");
                self.key = None;
                self.replan();
                return Ok(Flow::More);
            }
        }
        while self.pending.front().is_some_and(|p| p.rows.is_none()) {
            self.file_report().await?;
        }
        let Some(chunk) = self.pending.pop_front() else { return Ok(Flow::More) };
        let rows = match chunk.rows {
            Some(Ok(rows)) => rows,
            Some(Err(ChunkError::Changed(e))) => {
                return self.table_changed(stream, chunk.table, e).map(|()| Flow::More)
            }
            Some(Err(ChunkError::Source(e))) => return Err(e),
            None => return Ok(Flow::More),
        };
        self.failures = 0;
        let (count, read, last_key) = (rows.rows.len() as u64, rows.read, rows.last_key);
        for change in rows.rows {
            if !send(stream, SourceItem::Change(Change::Row(change))).await {
                return Ok(Flow::Closed);
            }
        }
        let covered = Covered::of(chunk.hi, read, chunk.limit, last_key);
        let t = &mut self.progress.tables[chunk.table];
        t.rows += count;
        t.chunks += 1;
        self.progress.rows_copied += count;
        match covered {
            Covered::Range(hi) => t.last_key = Some(encode_key(&hi)),
            Covered::Partly(last) => {
                t.last_key = last.as_deref().map(encode_key).or(t.last_key.take());
                // The rest of the range, and every range planned after
                // it, is planned again.
                self.replan();
            }
            Covered::Rest { done, last } => {
                t.last_key = last.as_deref().map(encode_key).or(t.last_key.take());
                t.done = done;
                if done {
                    tracing::info!(db = %t.db, table = %t.table, rows = t.rows, chunks = t.chunks, "table copied");
                }
                self.cursor = None;
            }
        }
        self.commit(stream).await
    }

    /// Files one reader report with its chunk; reports of abandoned plans
    /// are dropped.
    async fn file_report(&mut self) -> Result<(), SourceError> {
        let report = self.readers.report().await?;
        let (seq, generation) = match &report {
            Report::Opened { seq, generation, .. } | Report::Read { seq, generation, .. } => (*seq, *generation),
        };
        if generation != self.readers.generation() {
            return Ok(());
        }
        let Some(chunk) = self.pending.iter_mut().find(|p| p.seq == seq) else { return Ok(()) };
        match report {
            Report::Opened { at, .. } => chunk.at = Some(at),
            Report::Read { rows, .. } => chunk.rows = Some(rows),
        }
        Ok(())
    }

    /// Sends the checkpoint that records the copy's progress.
    async fn commit(&mut self, stream: &mut BinlogStream) -> Result<Flow, SourceError> {
        stream.set_copy(Some(self.progress.clone()));
        let checkpoint = stream.checkpoint();
        Ok(if send(stream, SourceItem::Commit { checkpoint, ts_ms: now_ms() }).await {
            Flow::More
        } else {
            Flow::Closed
        })
    }

    /// Opens a snapshot and lets the stream read up to its position.
    /// `None` when the receiver went away meanwhile.
    async fn align(&mut self, stream: &mut BinlogStream) -> Result<Option<Snapshot>, SourceError> {
        let deadline = tokio::time::Instant::now() + ALIGN_DEADLINE;
        // First catch the stream up to the binlog's end without holding a
        // snapshot, so a backlog does not keep one open.
        let end = binlog_end(&mut self.conn).await?;
        if !advance(stream, (&end.file, end.pos)).await? {
            return Ok(None);
        }
        loop {
            let snapshot = open_snapshot(&mut self.conn, self.flavor).await?;
            if !advance(stream, (&snapshot.file, snapshot.pos)).await? {
                let _ = self.conn.query_drop("ROLLBACK").await;
                return Ok(None);
            }
            if compare_positions(stream.last_commit(), (&snapshot.file, snapshot.pos)) != Ordering::Greater {
                return Ok(Some(snapshot));
            }
            // The stream is past the snapshot: a transaction it read was not
            // yet visible. Take a newer snapshot.
            self.conn.query_drop("ROLLBACK").await.map_err(err)?;
            if tokio::time::Instant::now() >= deadline {
                return Err(SourceError::Transient(format!(
                    "the copy's snapshot could not be lined up with the binlog stream within {ALIGN_DEADLINE:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Copies table `i`, which has no key to walk, in one scan at one
    /// snapshot; its rows go out as they come (a scan is unbounded).
    async fn scan(&mut self, stream: &mut BinlogStream, i: usize) -> Result<Flow, SourceError> {
        self.fenced = false;
        let Some(plan) = self.plan_table(stream, i).await? else {
            self.cursor = None;
            return Ok(Flow::More);
        };
        let t = &mut self.progress.tables[i];
        t.note =
            Some("no primary or NOT NULL unique key: copied in one scan, again from its start after a restart".into());
        let Some(at) = self.align(stream).await? else { return Ok(Flow::Closed) };
        let source = at.source();
        let query = ChunkQuery { info: &plan.info, key: &CopyKey::Scan, condition: plan.condition.clone(), limit: 0 };
        let (sql, params) = query.sql(None, None);
        let scanned = async {
            let mut result = self.conn.exec_iter(sql, params).await.map_err(ChunkError::from_mysql)?;
            while let Some(row) = result.next().await.map_err(ChunkError::from_mysql)? {
                let change = decode_row(&row.unwrap(), &plan.info, &source)?;
                if plan.slice.as_ref().is_some_and(|f| !accepts(f, &change)) {
                    continue;
                }
                if !send(stream, SourceItem::Change(Change::Row(change))).await {
                    return Ok(false);
                }
                self.progress.tables[i].rows += 1;
                self.progress.rows_copied += 1;
            }
            Ok::<_, ChunkError>(true)
        }
        .await;
        let end = if scanned.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self.conn.query_drop(end).await;
        match scanned {
            Ok(false) => return Ok(Flow::Closed),
            Ok(true) => ended.map_err(err)?,
            Err(ChunkError::Changed(e)) => return self.table_changed(stream, i, e).map(|()| Flow::More),
            Err(ChunkError::Source(e)) => return Err(e),
        }
        self.failures = 0;
        let t = &mut self.progress.tables[i];
        t.chunks += 1;
        t.done = true;
        tracing::info!(db = %t.db, table = %t.table, rows = t.rows, "table copied in one scan");
        self.cursor = None;
        self.commit(stream).await
    }
}

/// Opens a consistent snapshot on `conn` and finds its binlog position.
async fn open_snapshot(conn: &mut mysql_async::Conn, flavor: Flavor) -> Result<Snapshot, SourceError> {
    match flavor {
        Flavor::MariaDb => {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await.map_err(err)?;
            let status: Vec<(String, String)> =
                conn.query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'").await.map_err(err)?;
            let get = |name: &str| status.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
            let (Some(file), Some(pos)) = (get("binlog_snapshot_file"), get("binlog_snapshot_position")) else {
                return Err(SourceError::Definite(
                    "the source reports no binlog snapshot position (is log_bin on?)".into(),
                ));
            };
            let pos = pos.parse().map_err(|_| SourceError::Definite(format!("bad binlog_snapshot_position {pos}")))?;
            Ok(Snapshot { file: file.clone(), pos })
        }
        Flavor::MySql => loop {
            // The binlog end before and after the snapshot: equal, no
            // transaction was written while it was taken.
            let before = binlog_end(conn).await?;
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await.map_err(err)?;
            let after = binlog_end(conn).await?;
            if before.file == after.file && before.pos == after.pos {
                return Ok(after);
            }
            conn.query_drop("ROLLBACK").await.map_err(err)?;
        },
    }
}

/// Queues `item` and, for a commit, sends it at once: the next chunk's
/// queries must not hold back rows already read.
async fn send(stream: &mut BinlogStream, item: SourceItem) -> bool {
    let commit = matches!(item, SourceItem::Commit { .. });
    stream.emit(item).await && (!commit || stream.flush().await)
}

/// Reads events until the stream stands between transactions at or past
/// `to` (its last event, or its last transaction, ends there or later: a
/// rotation with no transaction since leaves MariaDB's snapshot position at
/// the old file's end); false when the receiver went away.
async fn advance(stream: &mut BinlogStream, to: (&str, u64)) -> Result<bool, SourceError> {
    loop {
        let reached = compare_positions(stream.position(), to) != Ordering::Less
            || compare_positions(stream.last_commit(), to) != Ordering::Less;
        if stream.at_boundary() && reached {
            return Ok(true);
        }
        if !stream.step().await? {
            return Ok(false);
        }
    }
}

/// The end of the source's binlog.
async fn binlog_end(conn: &mut mysql_async::Conn) -> Result<Snapshot, SourceError> {
    let row = crate::binlog_status(conn).await?;
    Ok(Snapshot { file: row.get(0).unwrap_or_default(), pos: row.get(1).unwrap_or(4) })
}

/// The key a table is copied by: its primary key, else its unique index
/// over the fewest NOT NULL columns, else none.
async fn copy_key(conn: &mut mysql_async::Conn, info: &TableInfo) -> Result<CopyKey, mysql_async::Error> {
    let schema = &info.schema;
    if !schema.primary_key.is_empty() {
        return Ok(CopyKey::Columns { columns: schema.primary_key.clone(), name: "PRIMARY".into() });
    }
    let rows: Vec<(String, String, String)> = conn
        .exec(
            "SELECT s.INDEX_NAME, s.COLUMN_NAME, c.IS_NULLABLE FROM information_schema.STATISTICS s \
             JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA \
             AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME \
             WHERE s.TABLE_SCHEMA = ? AND s.TABLE_NAME = ? AND s.NON_UNIQUE = 0 \
             ORDER BY s.INDEX_NAME, s.SEQ_IN_INDEX",
            (&schema.db, &schema.table),
        )
        .await?;
    Ok(pick_unique_key(&rows, &schema.columns))
}

/// From `(index, column, nullable)` rows in index order, the unique index
/// with the fewest columns, all NOT NULL and known.
fn pick_unique_key(rows: &[(String, String, String)], columns: &[String]) -> CopyKey {
    let mut best: Option<(String, Vec<usize>)> = None;
    let mut k = 0;
    while k < rows.len() {
        let name = &rows[k].0;
        let end = rows[k..].iter().position(|r| &r.0 != name).map_or(rows.len(), |n| k + n);
        let cols: Option<Vec<usize>> = rows[k..end]
            .iter()
            .map(
                |(_, col, nullable)| {
                    if nullable.eq_ignore_ascii_case("NO") {
                        columns.iter().position(|c| c == col)
                    } else {
                        None
                    }
                },
            )
            .collect();
        if let Some(cols) = cols {
            if best.as_ref().is_none_or(|(_, b)| cols.len() < b.len()) {
                best = Some((name.clone(), cols));
            }
        }
        k = end;
    }
    best.map_or(CopyKey::Scan, |(name, columns)| CopyKey::Columns { columns, name })
}

/// How much of the key space a chunk read covers.
#[derive(Debug, PartialEq)]
enum Covered {
    /// Its whole range, up to this key: nothing more lies in it.
    Range(Vec<My>),
    /// Its range up to the last key read: the range held more rows than
    /// the limit by the time it was read.
    Partly(Option<Vec<My>>),
    /// The table's open-ended last range: done when fewer rows than the
    /// limit were left, else up to the last key read.
    Rest { done: bool, last: Option<Vec<My>> },
}

impl Covered {
    fn of(hi: Option<Vec<My>>, read: usize, limit: usize, last: Option<Vec<My>>) -> Self {
        let full = read >= limit;
        match hi {
            Some(hi) if !full => Self::Range(hi),
            Some(_) => Self::Partly(last),
            None => Self::Rest { done: !full, last },
        }
    }
}

/// A chunk as read.
struct ChunkRows {
    /// The rows to send (those the request's slice accepts).
    rows: Vec<RowChange>,
    /// Rows the query returned.
    read: usize,
    /// The key of the last row returned.
    last_key: Option<Vec<My>>,
}

/// Why a chunk could not be read.
enum ChunkError {
    /// The table changed under the copy: plan it again.
    Changed(mysql_async::Error),
    Source(SourceError),
}

impl ChunkError {
    fn from_mysql(e: mysql_async::Error) -> Self {
        match &e {
            mysql_async::Error::Server(s) if TABLE_CHANGED.contains(&s.code) => Self::Changed(e),
            _ => Self::Source(err(e)),
        }
    }
}

impl From<SourceError> for ChunkError {
    fn from(e: SourceError) -> Self {
        Self::Source(e)
    }
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// One chunk's `SELECT`.
struct ChunkQuery<'a> {
    info: &'a TableInfo,
    key: &'a CopyKey,
    condition: Option<String>,
    limit: usize,
}

impl ChunkQuery<'_> {
    fn key_columns(&self) -> Vec<String> {
        let schema = &self.info.schema;
        match self.key {
            CopyKey::Columns { columns, .. } => columns.iter().map(|&i| quote(&schema.columns[i])).collect(),
            CopyKey::Scan => Vec::new(),
        }
    }

    fn table(&self) -> String {
        format!("{}.{}", quote(&self.info.schema.db), quote(&self.info.schema.table))
    }

    /// The conditions of the range after `after` up to `upto` (inclusive).
    fn range(&self, key_cols: &[String], after: Option<&[My]>, upto: Option<&[My]>) -> (String, Vec<My>) {
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        let tuple = format!("({})", key_cols.join(", "));
        for (bound, op) in [(after, ">"), (upto, "<=")] {
            if let (Some(bound), false) = (bound, key_cols.is_empty()) {
                let marks = vec!["?"; bound.len()].join(", ");
                conditions.push(format!("{tuple} {op} ({marks})"));
                params.extend(bound.iter().cloned());
            }
        }
        if let Some(c) = &self.condition {
            conditions.push(format!("({c})"));
        }
        let sql = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
        (sql, params)
    }

    /// The statement and its parameters reading the rows after `after`,
    /// up to `upto`, at most `limit` of them in key order.
    fn sql(&self, after: Option<&[My]>, upto: Option<&[My]>) -> (String, Vec<My>) {
        let columns: Vec<String> = self.info.schema.columns.iter().map(|c| quote(c)).collect();
        let key_cols = self.key_columns();
        let (range, params) = self.range(&key_cols, after, upto);
        let mut sql = format!("SELECT {} FROM {}{range}", columns.join(", "), self.table());
        if !key_cols.is_empty() {
            sql.push_str(&format!(" ORDER BY {} LIMIT {}", key_cols.join(", "), self.limit));
        }
        (sql, params)
    }

    /// The statement finding the key `limit` rows after `after` (or the
    /// last one, when fewer are left; none when none are): it reads the
    /// key's index only, in a derived table, never with `OFFSET`.
    fn boundary_sql(&self, after: Option<&[My]>) -> (String, Vec<My>) {
        let key_cols = self.key_columns();
        let (range, params) = self.range(&key_cols, after, None);
        let keys = key_cols.join(", ");
        let desc: Vec<String> = key_cols.iter().map(|k| format!("{k} DESC")).collect();
        let sql = format!(
            "SELECT {keys} FROM (SELECT {keys} FROM {}{range} ORDER BY {keys} LIMIT {}) AS chunk ORDER BY {} LIMIT 1",
            self.table(),
            self.limit,
            desc.join(", ")
        );
        (sql, params)
    }
}

/// Key values as tagged JSON, so a resumed copy binds them with their types.
fn encode_key(values: &[My]) -> Vec<serde_json::Value> {
    use serde_json::json;
    values
        .iter()
        .map(|v| match v {
            My::NULL => serde_json::Value::Null,
            My::Int(i) => json!({ "i": i }),
            My::UInt(u) => json!({ "u": u }),
            My::Float(f) => json!({ "f": f }),
            My::Double(d) => json!({ "d": d }),
            My::Bytes(b) => json!({ "b": B64.encode(b) }),
            My::Date(y, m, d, h, mi, s, us) => json!({ "date": [y, m, d, h, mi, s, us] }),
            My::Time(neg, days, h, m, s, us) => json!({ "time": [neg, days, h, m, s, us] }),
        })
        .collect()
}

fn decode_key(values: Option<&[serde_json::Value]>) -> Result<Option<Vec<My>>, SourceError> {
    let Some(values) = values else { return Ok(None) };
    let bad = || SourceError::Definite("the snapshot checkpoint holds an unreadable key".into());
    values
        .iter()
        .map(|v| {
            if v.is_null() {
                return Ok(My::NULL);
            }
            let (tag, inner) = v.as_object().and_then(|o| o.iter().next()).ok_or_else(bad)?;
            let num = |i: usize| inner.get(i).and_then(serde_json::Value::as_u64).ok_or_else(bad);
            Ok(match tag.as_str() {
                "i" => My::Int(inner.as_i64().ok_or_else(bad)?),
                "u" => My::UInt(inner.as_u64().ok_or_else(bad)?),
                "f" => My::Float(inner.as_f64().ok_or_else(bad)? as f32),
                "d" => My::Double(inner.as_f64().ok_or_else(bad)?),
                "b" => My::Bytes(B64.decode(inner.as_str().ok_or_else(bad)?).map_err(|_| bad())?),
                "date" => My::Date(
                    num(0)? as u16,
                    num(1)? as u8,
                    num(2)? as u8,
                    num(3)? as u8,
                    num(4)? as u8,
                    num(5)? as u8,
                    num(6)? as u32,
                ),
                "time" => My::Time(
                    inner.get(0).and_then(serde_json::Value::as_bool).ok_or_else(bad)?,
                    num(1)? as u32,
                    num(2)? as u8,
                    num(3)? as u8,
                    num(4)? as u8,
                    num(5)? as u32,
                ),
                _ => return Err(bad()),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn positions_order_by_file_sequence_then_offset() {
        assert_eq!(compare_positions(("bin.000009", 900), ("bin.000010", 4)), Ordering::Less);
        assert_eq!(compare_positions(("bin.999999", 4), ("bin.1000000", 4)), Ordering::Less);
        assert_eq!(compare_positions(("bin.000010", 4), ("bin.000010", 4)), Ordering::Equal);
        assert_eq!(compare_positions(("bin.000010", 500), ("bin.000010", 4)), Ordering::Greater);
    }

    fn stat(index: &str, column: &str, nullable: &str) -> (String, String, String) {
        (index.into(), column.into(), nullable.into())
    }

    #[test]
    fn tables_without_a_primary_key_walk_their_narrowest_not_null_unique_index() {
        let columns: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let rows = [stat("ab", "a", "NO"), stat("ab", "b", "NO"), stat("c_nullable", "c", "YES"), stat("d", "d", "NO")];
        assert_eq!(pick_unique_key(&rows, &columns), CopyKey::Columns { columns: vec![3], name: "d".into() });
        assert_eq!(pick_unique_key(&rows[..3], &columns), CopyKey::Columns { columns: vec![0, 1], name: "ab".into() });
        assert_eq!(
            pick_unique_key(&rows[2..3], &columns),
            CopyKey::Scan,
            "a nullable unique key does not identify rows"
        );
        assert_eq!(pick_unique_key(&[], &columns), CopyKey::Scan);
    }

    #[test]
    fn chunks_are_key_ranges_found_without_offset_and_scans_read_everything() {
        use crate::schema::{ColumnInfo, ColumnKind};
        let col = |name: &str| ColumnInfo {
            name: name.into(),
            kind: ColumnKind::Int(4),
            unsigned: false,
            charset: None,
            labels: vec![],
            fsp: 0,
        };
        let info = TableInfo {
            schema: Arc::new(dts_core::event::TableSchema {
                db: "d".into(),
                table: "t`x".into(),
                columns: vec!["a".into(), "b".into(), "v".into()],
                primary_key: vec![0, 1],
            }),
            columns: vec![col("a"), col("b"), col("v")],
        };
        let key = CopyKey::Columns { columns: vec![0, 1], name: "PRIMARY".into() };
        let q = ChunkQuery { info: &info, key: &key, condition: Some("`v` > 1".into()), limit: 100 };
        assert_eq!(
            q.sql(None, None).0,
            "SELECT `a`, `b`, `v` FROM `d`.`t``x` WHERE (`v` > 1) ORDER BY `a`, `b` LIMIT 100"
        );
        let (sql, params) = q.sql(Some(&[My::Int(1), My::Int(2)]), None);
        assert_eq!(
            sql,
            "SELECT `a`, `b`, `v` FROM `d`.`t``x` WHERE (`a`, `b`) > (?, ?) AND (`v` > 1) ORDER BY `a`, `b` LIMIT 100"
        );
        assert_eq!(params, [My::Int(1), My::Int(2)]);
        let (sql, params) = q.sql(Some(&[My::Int(1), My::Int(2)]), Some(&[My::Int(3), My::Int(4)]));
        assert_eq!(
            sql,
            "SELECT `a`, `b`, `v` FROM `d`.`t``x` WHERE (`a`, `b`) > (?, ?) AND (`a`, `b`) <= (?, ?) AND (`v` > 1) \
             ORDER BY `a`, `b` LIMIT 100"
        );
        assert_eq!(params, [My::Int(1), My::Int(2), My::Int(3), My::Int(4)]);
        let (sql, params) = q.boundary_sql(Some(&[My::Int(1), My::Int(2)]));
        assert_eq!(
            sql,
            "SELECT `a`, `b` FROM (SELECT `a`, `b` FROM `d`.`t``x` WHERE (`a`, `b`) > (?, ?) AND (`v` > 1) \
             ORDER BY `a`, `b` LIMIT 100) AS chunk ORDER BY `a` DESC, `b` DESC LIMIT 1"
        );
        assert_eq!(params, [My::Int(1), My::Int(2)]);
        assert!(!sql.contains("OFFSET"), "ranges are found from keys, never by skipping rows");
        let scan = ChunkQuery { info: &info, key: &CopyKey::Scan, condition: None, limit: 100 };
        assert_eq!(scan.sql(None, None).0, "SELECT `a`, `b`, `v` FROM `d`.`t``x`");
    }

    #[test]
    fn a_chunk_covers_its_range_unless_it_outgrew_the_limit() {
        let key = |n: i64| Some(vec![My::Int(n)]);
        // Fewer rows than planned, or none: the range is covered to its end.
        assert_eq!(Covered::of(key(100), 3, 10, key(40)), Covered::Range(vec![My::Int(100)]));
        assert_eq!(Covered::of(key(100), 0, 10, None), Covered::Range(vec![My::Int(100)]));
        // The range gained rows past the limit: only up to the last row read.
        assert_eq!(Covered::of(key(100), 10, 10, key(70)), Covered::Partly(key(70)));
        // The open-ended last range: done only when it was not full.
        assert_eq!(Covered::of(None, 9, 10, key(5)), Covered::Rest { done: true, last: key(5) });
        assert_eq!(Covered::of(None, 0, 10, None), Covered::Rest { done: true, last: None });
        assert_eq!(Covered::of(None, 10, 10, key(9)), Covered::Rest { done: false, last: key(9) });
    }

    #[test]
    fn keys_round_trip_through_checkpoints() {
        let key = vec![
            My::Int(-5),
            My::UInt(u64::MAX),
            My::Bytes(vec![0, 255, b'a']),
            My::Date(2024, 2, 29, 1, 2, 3, 4),
            My::Time(true, 1, 2, 3, 4, 5),
            My::Double(1.5),
        ];
        let json = serde_json::to_string(&encode_key(&key)).unwrap();
        let back: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(decode_key(Some(&back)).unwrap().unwrap(), key);
        assert!(decode_key(Some(&[serde_json::json!({"x": 1})])).is_err());
    }
}
