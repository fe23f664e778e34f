//! Copying existing rows for `incr: false` tasks while the binlog stream
//! keeps flowing: no lock, no long transaction, no writes to the source.
//!
//! # How a chunk is read (watermarks from the source's own snapshot)
//! The copy runs in the reader's loop, between transactions of the stream.
//! For each chunk of a table (a few thousand rows in key order):
//! 1. A short `START TRANSACTION WITH CONSISTENT SNAPSHOT` is opened and its
//!    binlog position `P` read. MariaDB reports it exactly
//!    (`binlog_snapshot_file/position`: every transaction up to `P` is in the
//!    snapshot, none after); MySQL has no such status, so `P` is its binlog
//!    end read inside the transaction, and opening is retried until that
//!    end did not move while the snapshot was taken.
//! 2. The stream reads on until it stands exactly at `P`, sending every
//!    change up to there. Should it already be past `P` (a transaction
//!    written to the binlog but not yet committed in the engine when the
//!    snapshot was taken), the snapshot is dropped and opened again.
//! 3. One keyset `SELECT` reads the chunk (`WHERE key > last ORDER BY key
//!    LIMIT n`, never `OFFSET`), the transaction commits, and the rows go out
//!    as `op: "r"`, then a checkpoint that records the chunk.
//!
//! The rows are the table as of `P`, sent at `P` in the stream's order:
//! every change before them is older, every change after them newer, so the
//! topic ends equal to the table and the copy sends each key once. The
//! transaction lives for one chunk's `SELECT`, so an `ALTER TABLE` waits at
//! most that long and purge is held back no longer; the stream pauses only
//! while a chunk is read.
//!
//! Tables are keyed by their primary key, else by their smallest unique
//! index over NOT NULL columns. A table with neither is read in one scan
//! at its `P` (the stream pauses for that scan, the transaction spans it),
//! and a restart copies it again from its start; its progress says so.
//! Memory is one chunk of rows, whatever the table's size.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dts_core::event::{Change, Op, Row, RowChange, RowRef, SourcePosition};
use dts_core::filter::RowFilter;
use dts_core::now_ms;
use dts_core::snapshot::SnapshotRequest;
use mysql_async::prelude::Queryable;
use mysql_async::Value as My;

use crate::decode::decode_query;
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

/// The copy of existing rows: its own connection, and how far it came.
pub struct Copier {
    conn: mysql_async::Conn,
    flavor: Flavor,
    select: Arc<dyn Selection>,
    chunk_rows: usize,
    progress: SnapshotProgress,
    /// The key columns of the table being copied (by column position).
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
struct Snapshot {
    file: String,
    pos: u64,
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

impl Copier {
    pub async fn connect(
        cfg: &SourceConfig,
        info: &ServerInfo,
        select: Arc<dyn Selection>,
        chunk_rows: usize,
        progress: SnapshotProgress,
    ) -> Result<Self, SourceError> {
        let mut conn = cfg.connect().await?;
        // TIMESTAMP values are read in UTC, like the binlog's.
        conn.query_drop("SET SESSION time_zone = '+00:00'").await.map_err(err)?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await.map_err(err)?;
        Ok(Self { conn, flavor: info.flavor, select, chunk_rows, progress, key: None, failures: 0 })
    }

    /// Copies the next chunk, at a snapshot lined up with the stream.
    pub async fn next_chunk(&mut self, stream: &mut BinlogStream) -> Result<Flow, SourceError> {
        let Some(i) = self.progress.tables.iter().position(|t| !t.done) else {
            let requested: Vec<TableProgress> =
                self.progress.tables.iter().filter(|t| t.request.is_some()).cloned().collect();
            if !requested.is_empty() {
                stream.set_request_tables(requested);
            }
            stream.set_copy(None);
            let checkpoint = stream.checkpoint();
            tracing::info!(rows = self.progress.rows_copied, "existing rows copied; streaming");
            return Ok(if send(stream, SourceItem::Commit { checkpoint, ts_ms: now_ms() }).await {
                Flow::Finished
            } else {
                Flow::Closed
            });
        };
        let (db, table) = (self.progress.tables[i].db.clone(), self.progress.tables[i].table.clone());
        let Some(snapshot) = self.align(stream).await? else { return Ok(Flow::Closed) };
        let read = self.read_chunk(stream, i, &snapshot).await;
        let rows = match read {
            Ok(rows) => {
                self.conn.query_drop("COMMIT").await.map_err(err)?;
                self.failures = 0;
                rows
            }
            Err(e) => {
                let _ = self.conn.query_drop("ROLLBACK").await;
                return match e {
                    ChunkError::Changed(e) if self.failures < MAX_TABLE_RETRIES => {
                        // Read it again with the table's new definition.
                        self.failures += 1;
                        tracing::info!(%db, %table, error = %e, "the table changed under its copy; reading the chunk again");
                        stream.schemas().forget(&db, Some(&table));
                        self.key = None;
                        Ok(Flow::More)
                    }
                    ChunkError::Changed(e) => Err(err(e)),
                    ChunkError::Source(e) => Err(e),
                    ChunkError::Closed => Ok(Flow::Closed),
                };
            }
        };
        let Some(rows) = rows else {
            // The table is gone: nothing left to copy of it.
            tracing::info!(%db, %table, "table dropped before its copy ended");
            let t = &mut self.progress.tables[i];
            t.done = true;
            t.note = Some("dropped before its copy ended".into());
            return self.commit(stream).await;
        };
        let count = rows.rows.len() as u64;
        for change in rows.rows {
            if !send(stream, SourceItem::Change(Change::Row(change))).await {
                return Ok(Flow::Closed);
            }
        }
        let t = &mut self.progress.tables[i];
        t.rows += count;
        t.chunks += 1;
        t.last_key = rows.last_key.as_deref().map(encode_key).or(t.last_key.take());
        t.done = rows.finished;
        self.progress.rows_copied += count;
        if rows.finished {
            tracing::info!(%db, %table, rows = t.rows, chunks = t.chunks, "table copied");
            self.key = None;
        }
        self.commit(stream).await
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
            let snapshot = self.open_snapshot().await?;
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

    async fn open_snapshot(&mut self) -> Result<Snapshot, SourceError> {
        match self.flavor {
            Flavor::MariaDb => {
                self.conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await.map_err(err)?;
                let status: Vec<(String, String)> =
                    self.conn.query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'").await.map_err(err)?;
                let get = |name: &str| status.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
                let (Some(file), Some(pos)) = (get("binlog_snapshot_file"), get("binlog_snapshot_position")) else {
                    return Err(SourceError::Definite(
                        "the source reports no binlog snapshot position (is log_bin on?)".into(),
                    ));
                };
                let pos =
                    pos.parse().map_err(|_| SourceError::Definite(format!("bad binlog_snapshot_position {pos}")))?;
                Ok(Snapshot { file: file.clone(), pos })
            }
            Flavor::MySql => loop {
                // The binlog end before and after the snapshot: equal, no
                // transaction was written while it was taken.
                let before = binlog_end(&mut self.conn).await?;
                self.conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await.map_err(err)?;
                let after = binlog_end(&mut self.conn).await?;
                if before.file == after.file && before.pos == after.pos {
                    return Ok(after);
                }
                self.conn.query_drop("ROLLBACK").await.map_err(err)?;
            },
        }
    }

    /// Reads one chunk of table `i` in the open snapshot. `Ok(None)` when
    /// the table no longer exists.
    async fn read_chunk(
        &mut self,
        stream: &mut BinlogStream,
        i: usize,
        at: &Snapshot,
    ) -> Result<Option<ChunkRows>, ChunkError> {
        let (db, table) = (self.progress.tables[i].db.clone(), self.progress.tables[i].table.clone());
        let Some(info) = stream.schemas().lookup(&db, &table).await? else { return Ok(None) };
        let key = match &self.key {
            Some((d, t, key)) if *d == db && *t == table => key.clone(),
            _ => {
                let key = copy_key(&mut self.conn, &info).await.map_err(ChunkError::from_mysql)?;
                self.key = Some((db.clone(), table.clone(), key.clone()));
                key
            }
        };
        let t = &mut self.progress.tables[i];
        t.key = Some(match &key {
            CopyKey::Columns { name, .. } => name.clone(),
            CopyKey::Scan => String::new(),
        });
        if key == CopyKey::Scan {
            t.note = Some(
                "no primary or NOT NULL unique key: copied in one scan, again from its start after a restart".into(),
            );
        }
        let filters = self.select.row_filters(&db, &table);
        let mut condition = where_clause(&filters.iter().map(Option::as_ref).collect::<Vec<_>>(), &info);
        // An on-demand slice: pushed into the query when it can be, and
        // checked on every row read either way.
        let slice = match t.condition.as_deref() {
            Some(text) => Some(
                RowFilter::parse(text)
                    .map_err(|e| SourceError::Definite(format!("snapshot request's where on {db}.{table}: {e}")))?,
            ),
            None => None,
        };
        if let Some(pushed) = slice.as_ref().and_then(|f| where_clause(&[Some(f)], &info)) {
            condition = Some(match condition {
                Some(c) => format!("({c}) AND ({pushed})"),
                None => pushed,
            });
        }
        let after = decode_key(t.last_key.as_deref())?;
        let query = ChunkQuery { info: &info, key: &key, condition, limit: self.chunk_rows };
        let (sql, params) = query.sql(after.as_deref());
        let source = SourcePosition {
            server_id: 0,
            gtid: "".into(),
            file: at.file.as_str().into(),
            pos: at.pos,
            row: 0,
            ts_ms: now_ms(),
            snapshot: true,
        };
        let mut result = self.conn.exec_iter(sql, params).await.map_err(ChunkError::from_mysql)?;
        let mut out = ChunkRows { rows: Vec::new(), read: 0, last_key: None, finished: false };
        let key_columns = match &key {
            CopyKey::Columns { columns, .. } => Some(columns),
            CopyKey::Scan => None,
        };
        while let Some(row) = result.next().await.map_err(ChunkError::from_mysql)? {
            let raw = row.unwrap();
            let values = raw
                .iter()
                .zip(&info.columns)
                .map(|(v, col)| decode_query(v, col))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SourceError::Definite(format!("{db}.{table}: {e}")))?;
            if let Some(columns) = key_columns {
                out.last_key = Some(columns.iter().map(|&c| raw[c].clone()).collect());
                out.read += 1;
            }
            let row = Row(values);
            if slice.as_ref().is_some_and(|f| !f.matches(&RowRef { schema: &info.schema, row: &row })) {
                continue;
            }
            let change = RowChange {
                schema: info.schema.clone(),
                op: Op::Read,
                before: None,
                after: Some(row),
                source: source.clone(),
            };
            if key_columns.is_some() {
                out.rows.push(change);
            } else if !send(stream, SourceItem::Change(Change::Row(change))).await {
                // A scan is unbounded: its rows go out as they come.
                return Err(ChunkError::Closed);
            } else {
                self.progress.tables[i].rows += 1;
                self.progress.rows_copied += 1;
            }
        }
        out.finished = key_columns.is_none() || out.read < self.chunk_rows;
        Ok(Some(out))
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

struct ChunkRows {
    /// The rows to send (those the request's slice accepts).
    rows: Vec<RowChange>,
    /// Rows the query returned.
    read: usize,
    last_key: Option<Vec<My>>,
    finished: bool,
}

enum ChunkError {
    Changed(mysql_async::Error),
    Source(SourceError),
    Closed,
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
    /// The statement and its parameters, for the chunk after `after`.
    fn sql(&self, after: Option<&[My]>) -> (String, Vec<My>) {
        let schema = &self.info.schema;
        let columns: Vec<String> = schema.columns.iter().map(|c| quote(c)).collect();
        let mut sql = format!("SELECT {} FROM {}.{}", columns.join(", "), quote(&schema.db), quote(&schema.table));
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        let key_cols: Vec<String> = match self.key {
            CopyKey::Columns { columns, .. } => columns.iter().map(|&i| quote(&schema.columns[i])).collect(),
            CopyKey::Scan => Vec::new(),
        };
        if let (Some(after), false) = (after, key_cols.is_empty()) {
            let marks = vec!["?"; after.len()].join(", ");
            conditions.push(format!("({}) > ({marks})", key_cols.join(", ")));
            params.extend(after.iter().cloned());
        }
        if let Some(c) = &self.condition {
            conditions.push(format!("({c})"));
        }
        if !conditions.is_empty() {
            sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
        }
        if !key_cols.is_empty() {
            sql.push_str(&format!(" ORDER BY {} LIMIT {}", key_cols.join(", "), self.limit));
        }
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
    fn chunks_are_keyset_pages_and_scans_read_everything() {
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
        assert_eq!(q.sql(None).0, "SELECT `a`, `b`, `v` FROM `d`.`t``x` WHERE (`v` > 1) ORDER BY `a`, `b` LIMIT 100");
        let (sql, params) = q.sql(Some(&[My::Int(1), My::Int(2)]));
        assert_eq!(
            sql,
            "SELECT `a`, `b`, `v` FROM `d`.`t``x` WHERE (`a`, `b`) > (?, ?) AND (`v` > 1) ORDER BY `a`, `b` LIMIT 100"
        );
        assert_eq!(params, [My::Int(1), My::Int(2)]);
        let scan = ChunkQuery { info: &info, key: &CopyKey::Scan, condition: None, limit: 100 };
        assert_eq!(scan.sql(None).0, "SELECT `a`, `b`, `v` FROM `d`.`t``x`");
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
