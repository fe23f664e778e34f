//! The binlog stream loop.
//!
//! Reads events from the start checkpoint and sends, in binlog order:
//! a [`SourceItem::Change`] per selected row (and per DDL on a selected
//! table), and a [`SourceItem::Commit`] at every transaction end carrying
//! the checkpoint that resumes right after it. The channel is bounded: when
//! the pipeline is slow, `send` waits and the loop stops reading, so a huge
//! transaction never sits in memory.
//!
//! Items travel in [`Batch`]es: one channel send (and at most one wake-up
//! of the pipeline) per [`BATCH_ITEMS`] items while a backlog is read, and
//! a batch goes out as soon as the source has no event ready, so a live
//! stream's rows never wait for company.

use std::sync::Arc;

use dts_core::event::{Change, DdlChange, Op, Row, RowChange, SourcePosition};
use futures_util::{FutureExt, StreamExt};
use mysql_async::binlog::events::{
    EventData, OptionalMetaExtractor, OptionalMetadataField, RowsEventData, TableMapEvent,
};
use mysql_async::prelude::Queryable;
use mysql_async::BinlogStreamRequest;
use tokio::sync::mpsc;

use crate::ddl::{classify, effects, Statement};
use crate::decode::decode;
use crate::history::SchemaHistory;
use crate::position::{Checkpoint, Copies, Flavor, MariaGtidState, MysqlGtidSet, SnapshotProgress, TableProgress};
use crate::schema::{kind_of_binlog, normalize_charset, BinlogColumn, BinlogShape, ColumnKind, Resolved, SchemaCache};
use crate::{ServerInfo, SourceConfig, SourceError};

/// MariaDB event types mysql_common does not know.
const MARIADB_ANNOTATE_ROWS: u8 = 160;
const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
const MARIADB_GTID: u8 = 162;
const MARIADB_GTID_LIST: u8 = 163;
/// MariaDB GTID event flag: the group is one statement (DDL), not a transaction.
const MARIADB_FL_STANDALONE: u8 = 1;
/// Sent by the source after `@master_heartbeat_period` without events.
const HEARTBEAT_LOG_EVENT: u8 = 27;

/// The most items one channel send carries.
pub const BATCH_ITEMS: usize = 256;

/// Items in source order, sent together.
pub type Batch = Vec<SourceItem>;

/// What the source sends down the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    Change(Change),
    /// A transaction ended; resuming from `checkpoint` starts after it.
    Commit {
        checkpoint: Checkpoint,
        ts_ms: i64,
    },
    /// The source had nothing more to send at `at_ms` (a binlog heartbeat):
    /// once everything before is delivered, the task is caught up as of then.
    Idle {
        at_ms: i64,
    },
}

/// Which databases, tables and rows the task reads; other tables are
/// skipped undecoded.
pub trait Selection: Send + Sync {
    fn table(&self, db: &str, table: &str) -> bool;
    fn database(&self, db: &str) -> bool;
    /// The row filter of each entry selecting the table (`None`: no filter),
    /// pushed into snapshot queries where it is safe.
    fn row_filters(&self, db: &str, table: &str) -> Vec<Option<dts_core::filter::RowFilter>>;
    /// True when the task refers to the table's columns by name (a row
    /// filter, excluded or partition columns): its rows cannot go out under
    /// positional names, so an event nothing describes fails the task.
    fn needs_column_names(&self, db: &str, table: &str) -> bool;
}

/// The sending end: gathers items into batches. A batch leaves when it is
/// full or when [`Outbox::flush`] is called, which the reader does before
/// every wait on the source.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Batch>,
    items: Batch,
}

impl Outbox {
    pub fn new(tx: mpsc::Sender<Batch>) -> Self {
        Self { tx, items: Vec::with_capacity(BATCH_ITEMS) }
    }

    /// Queues `item`, sending the batch once it is full; false when the
    /// receiver is gone.
    pub async fn push(&mut self, item: SourceItem) -> bool {
        self.items.push(item);
        self.items.len() < BATCH_ITEMS || self.flush().await
    }

    /// Sends what is queued (waiting for room); false when the receiver is gone.
    pub async fn flush(&mut self) -> bool {
        if self.items.is_empty() {
            return !self.tx.is_closed();
        }
        let batch = std::mem::replace(&mut self.items, Vec::with_capacity(BATCH_ITEMS));
        self.tx.send(batch).await.is_ok()
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    async fn closed(&self) {
        self.tx.closed().await;
    }

    /// A hint that needs no room: dropped when the queue is busy anyway.
    fn offer(&mut self, item: SourceItem) {
        if self.items.is_empty() {
            let _ = self.tx.try_send(vec![item]);
        }
    }
}

/// The binlog stream, read one event at a time: [`stream`] runs it alone,
/// [`crate::snapshot::run`] interleaves it with the copy of existing rows.
pub struct BinlogStream {
    schemas: SchemaCache,
    binlog: mysql_async::BinlogStream,
    state: Tracker,
    select: Arc<dyn Selection>,
    out: Outbox,
    idle_timeout: std::time::Duration,
    /// The end of the last event read: `(file, position)`.
    at: (String, u64),
    /// Between a transaction's first event (GTID, BEGIN) and its end.
    mid_group: bool,
    /// The checkpoint after the last transaction read.
    last: Checkpoint,
    /// While existing rows are copied, their progress rides on every
    /// checkpoint, so a restart resumes the copy where it was.
    copy: Option<SnapshotProgress>,
    copies: Copies,
}

impl std::fmt::Debug for BinlogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinlogStream").field("at", &self.at).field("last", &self.last.display()).finish_non_exhaustive()
    }
}

/// Streams from `start` until the receiver goes away (`Ok`) or an error.
pub async fn stream(
    cfg: &SourceConfig,
    info: &ServerInfo,
    start: &Checkpoint,
    select: Arc<dyn Selection>,
    tx: mpsc::Sender<Batch>,
) -> Result<(), SourceError> {
    let mut binlog = BinlogStream::open(cfg, info, start, select, tx).await?;
    while binlog.step().await? {}
    Ok(())
}

impl BinlogStream {
    /// Connects as a replica and asks for the binlog from `start`.
    pub async fn open(
        cfg: &SourceConfig,
        info: &ServerInfo,
        start: &Checkpoint,
        select: Arc<dyn Selection>,
        tx: mpsc::Sender<Batch>,
    ) -> Result<Self, SourceError> {
        let schemas = SchemaCache::new(cfg.connect().await?, info.flavor == Flavor::MariaDb, start.schemas.clone());
        let mut conn = cfg.connect().await?;
        let state = Tracker::new(info, start)?;
        // Heartbeats every second keep an idle stream provably alive.
        conn.query_drop("SET @master_heartbeat_period = 1000000000").await.map_err(SourceError::from_mysql)?;
        // The stream pauses while a table without a unique key is copied in
        // one scan: the server must not drop a replica that reads slowly.
        conn.query_drop("SET SESSION net_write_timeout = 86400").await.map_err(SourceError::from_mysql)?;
        let mut request = BinlogStreamRequest::new(cfg.server_id);
        let by_gtid = !start.gtid.is_empty() && info.gtids;
        match info.flavor {
            Flavor::MariaDb => {
                // Without it MariaDB replaces GTID events with dummy QUERY events.
                conn.query_drop("SET @mariadb_slave_capability = 4").await.map_err(SourceError::from_mysql)?;
                if by_gtid {
                    conn.exec_drop("SET @slave_connect_state = ?", (start.gtid.clone(),))
                        .await
                        .map_err(SourceError::from_mysql)?;
                    conn.query_drop("SET @slave_gtid_strict_mode = 1").await.map_err(SourceError::from_mysql)?;
                }
            }
            Flavor::MySql => {}
        }
        if by_gtid && info.flavor == Flavor::MySql {
            let sids = start
                .gtid
                .split(',')
                .map(|s| s.trim().parse::<mysql_async::Sid<'static>>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SourceError::Definite(format!("checkpoint GTID set {:?}: {e}", start.gtid)))?;
            request = request.with_gtid().with_gtid_set(sids);
        } else if !by_gtid {
            request = request.with_filename(start.file.as_bytes()).with_pos(start.pos);
        }
        let binlog = conn.get_binlog_stream(request).await.map_err(SourceError::from_mysql)?;
        tracing::info!(from = %start.display(), server_id = cfg.server_id, "binlog stream started");
        Ok(Self {
            schemas,
            binlog,
            state,
            select,
            out: Outbox::new(tx),
            idle_timeout: cfg.idle_timeout,
            at: (start.file.clone(), start.pos),
            mid_group: false,
            last: Checkpoint { snapshot: None, ..start.clone() },
            copy: start.snapshot.clone(),
            copies: start.copies.clone(),
        })
    }

    /// True between transactions: the position is a place to resume from.
    pub fn at_boundary(&self) -> bool {
        !self.mid_group && !self.state.in_txn
    }

    /// The end of the last event read.
    pub fn position(&self) -> (&str, u64) {
        (&self.at.0, self.at.1)
    }

    /// The end of the last transaction read (a rotation moves
    /// [`BinlogStream::position`] on, not this).
    pub fn last_commit(&self) -> (&str, u64) {
        (&self.last.file, self.last.pos)
    }

    /// The checkpoint after the last transaction read, with the copy's progress.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { snapshot: self.copy.clone(), copies: self.copies.clone(), ..self.last.clone() }
    }

    /// Keeps the copied tables of the newest on-demand request in every
    /// checkpoint from now on.
    pub fn set_request_tables(&mut self, tables: Vec<TableProgress>) {
        self.copies.request_tables = tables;
    }

    pub fn set_copy(&mut self, copy: Option<SnapshotProgress>) {
        self.copy = copy;
    }

    pub fn schemas(&mut self) -> &mut SchemaCache {
        &mut self.schemas
    }

    /// Queues an item after everything the stream sent; false when the
    /// receiver is gone.
    pub async fn emit(&mut self, item: SourceItem) -> bool {
        self.out.push(item).await
    }

    /// Sends what is queued; false when the receiver is gone. Due before
    /// anything that may block for long (a copy's query).
    pub async fn flush(&mut self) -> bool {
        self.out.flush().await
    }

    /// Reads and forwards one event; `Ok(false)` when the receiver is gone
    /// (the pipeline dropping it is the reader's shutdown signal).
    pub async fn step(&mut self) -> Result<bool, SourceError> {
        if self.out.is_closed() {
            return Ok(false);
        }
        // An event already buffered is taken at once; only before waiting
        // on the network does the batch so far go out.
        let next = match self.binlog.next().now_or_never() {
            Some(next) => Ok(next),
            None => {
                if !self.out.flush().await {
                    return Ok(false);
                }
                tokio::select! {
                    biased;
                    () = self.out.closed() => return Ok(false),
                    next = tokio::time::timeout(self.idle_timeout, self.binlog.next()) => next,
                }
            }
        };
        let event = match next {
            Err(_) => {
                return Err(SourceError::Transient(format!(
                    "no event or heartbeat from the source in {:?}",
                    self.idle_timeout
                )))
            }
            Ok(None) => return Err(SourceError::Transient("the source closed the binlog stream".into())),
            Ok(Some(Err(e))) => return Err(SourceError::from_mysql(e)),
            Ok(Some(Ok(event))) => event,
        };
        let (select, out, state) = (&self.select, &mut self.out, &mut self.state);
        let header = event.header();
        let raw_type = header.event_type_raw();
        // Artificial events (the first ROTATE, MariaDB's fake GTID list)
        // carry no position.
        if header.log_pos() != 0 {
            self.at.1 = u64::from(header.log_pos());
        }
        let pos = SourcePosition {
            server_id: header.server_id(),
            gtid: state.txn_gtid.clone(),
            file: state.file.clone(),
            pos: u64::from(header.log_pos().saturating_sub(header.event_size())),
            row: 0,
            ts_ms: i64::from(header.timestamp()) * 1000,
            snapshot: false,
        };
        match raw_type {
            MARIADB_GTID => {
                let data = event.data();
                if data.len() < 13 {
                    return Err(SourceError::Definite("short MariaDB GTID event".into()));
                }
                let seq = u64::from_le_bytes(data[0..8].try_into().unwrap_or_default());
                let domain = u32::from_le_bytes(data[8..12].try_into().unwrap_or_default());
                // Without FL_STANDALONE the group is a transaction ending in
                // XID or COMMIT, even when it opens with DDL (CREATE TABLE ...
                // SELECT): MariaDB logs no BEGIN for it.
                let standalone = data[12] & MARIADB_FL_STANDALONE != 0;
                state.begin_mariadb(domain, header.server_id(), seq, standalone);
                self.mid_group = true;
                return Ok(true);
            }
            MARIADB_ANNOTATE_ROWS | MARIADB_BINLOG_CHECKPOINT | MARIADB_GTID_LIST => return Ok(true),
            HEARTBEAT_LOG_EVENT => {
                // Only a hint for lag: a full queue means the stream is not idle.
                out.offer(SourceItem::Idle { at_ms: unix_ms() });
                return Ok(true);
            }
            _ => {}
        }
        let data = event.read_data().map_err(|e| SourceError::Definite(format!("unreadable binlog event: {e}")))?;
        let commit = match data {
            Some(EventData::RotateEvent(r)) => {
                state.rotate(r.name_raw(), header.log_pos() == 0 && !state.seen_fde);
                self.at = (state.file.to_string(), r.position());
                false
            }
            Some(EventData::FormatDescriptionEvent(_)) => {
                self.mid_group = false;
                state.observe(Seen::FormatDescription)
            }
            Some(EventData::GtidEvent(g)) => {
                self.mid_group = true;
                state.observe(Seen::MysqlGtid { sid: g.sid(), gno: g.gno() })
            }
            Some(EventData::QueryEvent(q)) => match classify(&q.query()) {
                Statement::Ddl { db, table } => {
                    let query = q.query();
                    let db = db.unwrap_or_else(|| q.schema().into_owned());
                    self.schemas.apply_ddl(&effects(&query, &q.schema()));
                    let selected = match &table {
                        Some(t) => select.table(&db, t),
                        None => select.database(&db),
                    };
                    if selected {
                        let ddl = DdlChange { db, table, statement: q.query().into_owned(), source: pos.clone() };
                        if !out.push(SourceItem::Change(Change::Ddl(ddl))).await {
                            return Ok(false);
                        }
                    }
                    state.observe(Seen::Ddl(&query))
                }
                other => state.observe(Seen::Statement(other)),
            },
            // Checked once per table map, before any rows event is read with it.
            Some(EventData::TableMapEvent(tme)) => {
                let (db, table) = (tme.database_name(), tme.table_name());
                if select.table(&db, &table) {
                    check_table_map(&tme).map_err(|e| {
                        SourceError::Definite(format!(
                            "the binlog's table map of {db}.{table} at {}:{} declares {e}, which no server writes: \
                             the binlog is corrupt",
                            pos.file, pos.pos
                        ))
                    })?;
                }
                false
            }
            Some(EventData::XidEvent(_)) => state.observe(Seen::Xid),
            Some(EventData::RowsEvent(rows)) => {
                let Some(tme) = self.binlog.get_tme(rows.table_id()) else {
                    return Err(SourceError::Definite(format!("rows event for unknown table id {}", rows.table_id())));
                };
                let (db, table) = (tme.database_name().into_owned(), tme.table_name().into_owned());
                if select.table(&db, &table)
                    && !send_rows(&rows, tme, &mut self.schemas, select.as_ref(), pos, out).await?
                {
                    return Ok(false);
                }
                false
            }
            _ => false,
        };
        if commit {
            self.mid_group = false;
            self.last = state.commit(u64::from(header.log_pos()), self.schemas.history());
            let item =
                SourceItem::Commit { checkpoint: self.checkpoint(), ts_ms: i64::from(header.timestamp()) * 1000 };
            if !self.out.push(item).await {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Decodes one rows event and sends its rows; false when the receiver is gone.
async fn send_rows(
    rows: &RowsEventData<'_>,
    tme: &TableMapEvent<'_>,
    schemas: &mut SchemaCache,
    select: &dyn Selection,
    pos: SourcePosition,
    out: &mut Outbox,
) -> Result<bool, SourceError> {
    let (db, table) = (tme.database_name(), tme.table_name());
    let info = match schemas.resolve_map(tme).await? {
        Resolved::Known(info) => info,
        Resolved::Positional(_) if select.needs_column_names(&db, &table) => {
            return Err(SourceError::Definite(format!(
                "rows of {db}.{table} at {}:{} were written with columns dts cannot name (the table changed or was \
                 dropped since, and the binlog does not log column names), and the task filters, excludes or \
                 partitions by column name: set binlog_row_metadata=FULL on the source (MariaDB 10.5+, MySQL \
                 8.0.1+) and restart the task",
                pos.file, pos.pos
            )));
        }
        Resolved::Positional(info) => {
            schemas.learn_charsets(&info).await?;
            let n = rows.rows(tme).count() as u64;
            let total = schemas.note_positional(n);
            tracing::warn!(
                %db, %table, rows = n, positional_rows_total = total, file = %pos.file, pos = pos.pos,
                "rows decoded with positional column names (@1, @2, ...): nothing describes their columns; \
                 set binlog_row_metadata=FULL on the source to keep names"
            );
            info
        }
    };
    for (i, row) in rows.rows(tme).enumerate() {
        let (before, after) = row.map_err(|e| SourceError::Definite(format!("unreadable row of {db}.{table}: {e}")))?;
        let image = |r: Option<mysql_async::binlog::row::BinlogRow>| -> Result<Option<Row>, SourceError> {
            let Some(r) = r else { return Ok(None) };
            let values = info
                .columns
                .iter()
                .enumerate()
                .map(|(c, col)| decode(r.as_ref(c), col))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SourceError::Definite(format!("{db}.{table}: {e}")))?;
            Ok(Some(Row(values)))
        };
        let (before, after) = (image(before)?, image(after)?);
        let op = match (&before, &after) {
            (None, Some(_)) => Op::Insert,
            (Some(_), None) => Op::Delete,
            _ => Op::Update,
        };
        let source = SourcePosition { row: i as u32, ..pos.clone() };
        let change = RowChange { schema: info.schema.clone(), op, before, after, source };
        if !out.push(SourceItem::Change(Change::Row(change))).await {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What mysql_common takes on trust in a table map before it reads rows
/// with it: each DECIMAL column's precision and scale.
fn check_table_map(tme: &TableMapEvent<'_>) -> Result<(), String> {
    use mysql_async::consts::ColumnType::MYSQL_TYPE_NEWDECIMAL;
    (0..tme.columns_count() as usize)
        .filter(|&i| matches!(tme.get_column_type(i), Ok(Some(MYSQL_TYPE_NEWDECIMAL))))
        .try_for_each(|i| crate::decode::check_decimal_column(tme.get_column_metadata(i).unwrap_or_default()))
}

/// The event's own view of its table: column kinds and fractional digits
/// from the table map, and whatever the server's `binlog_row_metadata`
/// level adds (MINIMAL: signedness, charsets; FULL: also names, ENUM/SET
/// labels and the primary key).
pub fn binlog_shape(tme: &TableMapEvent<'_>) -> BinlogShape {
    use mysql_async::consts::ColumnType;
    use mysql_async::consts::ColumnType::*;
    let count = tme.columns_count() as usize;
    let mut columns: Vec<BinlogColumn> = (0..count)
        .map(|i| {
            let t = tme.get_column_type(i).ok().flatten().unwrap_or(MYSQL_TYPE_NULL);
            let meta = tme.get_column_metadata(i).unwrap_or_default();
            let fsp = match t {
                MYSQL_TYPE_TIME2 | MYSQL_TYPE_DATETIME2 | MYSQL_TYPE_TIMESTAMP2 => meta.first().copied().unwrap_or(0),
                _ => 0,
            };
            BinlogColumn {
                name: None,
                kind: kind_of_binlog(t, meta.first().copied()),
                unsigned: None,
                charset: None,
                labels: None,
                fsp: fsp.min(6),
            }
        })
        .collect();
    let Ok(meta) = OptionalMetaExtractor::new(tme.iter_optional_meta()) else {
        return BinlogShape { columns, primary_key: None };
    };
    // Signedness covers the numeric columns (YEAR included) and charsets
    // the character ones (CHAR, VARCHAR, BLOB and TEXT, not ENUM or SET),
    // in order, by the table map's own column types.
    let raw: Vec<Option<ColumnType>> = (0..count).map(|i| tme.get_column_type(i).ok().flatten()).collect();
    let numeric = (0..count).filter(|&i| raw[i].is_some_and(|t| t.is_numeric_type()));
    for (i, unsigned) in numeric.zip(meta.iter_signedness()) {
        columns[i].unsigned = Some(unsigned);
    }
    let character: Vec<usize> = (0..count)
        .filter(|&i| {
            raw[i].is_some_and(|t| t.is_character_type())
                && !matches!(columns[i].kind, ColumnKind::Enum | ColumnKind::Set)
        })
        .collect();
    for (i, charset) in character.into_iter().zip(meta.iter_charset()) {
        let Ok(id) = charset else { break };
        let collation = mysql_common::collations::CollationId::from(id);
        if collation == mysql_common::collations::CollationId::UNKNOWN_COLLATION_ID {
            continue;
        }
        let name = mysql_common::collations::Collation::resolve(collation).charset().to_owned();
        if name == "binary" {
            columns[i].kind = ColumnKind::Binary;
        }
        columns[i].charset = Some(normalize_charset(&name));
    }
    let names: Vec<String> = meta.iter_column_name().map_while(Result::ok).map(|n| n.name().into_owned()).collect();
    if names.len() == count {
        for (c, n) in columns.iter_mut().zip(names) {
            c.name = Some(n);
        }
    }
    // ENUM and SET labels, each list in column order of its kind.
    for field in tme.iter_optional_meta().map_while(Result::ok) {
        let (kind, lists): (ColumnKind, Vec<Vec<String>>) = match field {
            OptionalMetadataField::EnumStrValue(v) => (
                ColumnKind::Enum,
                v.iter_values()
                    .map_while(Result::ok)
                    .map(|e| e.values().iter().map(|x| x.value().into_owned()).collect())
                    .collect(),
            ),
            OptionalMetadataField::SetStrValue(v) => (
                ColumnKind::Set,
                v.iter_values()
                    .map_while(Result::ok)
                    .map(|e| e.values().iter().map(|x| x.value().into_owned()).collect())
                    .collect(),
            ),
            _ => continue,
        };
        for (c, labels) in columns.iter_mut().filter(|c| c.kind == kind).zip(lists) {
            c.labels = Some(labels);
        }
    }
    let primary_key: Vec<usize> = meta.iter_primary_key().map_while(Result::ok).map(|i| i as usize).collect();
    let has_names = columns.iter().all(|c| c.name.is_some());
    BinlogShape { columns, primary_key: (has_names && count > 0).then_some(primary_key) }
}

/// MySQL 8.0.21+ logs CREATE TABLE ... SELECT as `CREATE TABLE ... START
/// TRANSACTION`, followed by the rows and an XID.
fn opens_transaction(query: &str) -> bool {
    let q = query.trim_end().trim_end_matches(';').trim_end();
    q.len() >= 17 && q[q.len() - 17..].eq_ignore_ascii_case("START TRANSACTION")
}

/// What the position bookkeeping needs of an event.
#[derive(Debug)]
enum Seen<'a> {
    FormatDescription,
    MysqlGtid { sid: [u8; 16], gno: u64 },
    Statement(Statement),
    Ddl(&'a str),
    Xid,
}

/// Position bookkeeping across events.
struct Tracker {
    flavor: Flavor,
    file: Arc<str>,
    mariadb: MariaGtidState,
    mysql: MysqlGtidSet,
    /// GTID of the transaction being read.
    txn_gtid: Arc<str>,
    /// MySQL GTID to add to the executed set at commit.
    pending_mysql: Option<(String, u64)>,
    /// Inside BEGIN ... COMMIT (or a DDL that opened a transaction).
    in_txn: bool,
    seen_fde: bool,
    checksums: bool,
}

impl Tracker {
    fn new(info: &ServerInfo, start: &Checkpoint) -> Result<Self, SourceError> {
        let bad = |e: crate::position::GtidParseError| SourceError::Definite(format!("checkpoint: {e}"));
        let (mariadb, mysql) = match info.flavor {
            Flavor::MariaDb => (MariaGtidState::parse(&start.gtid).map_err(bad)?, MysqlGtidSet::default()),
            Flavor::MySql => (MariaGtidState::default(), MysqlGtidSet::parse(&start.gtid).map_err(bad)?),
        };
        Ok(Self {
            flavor: info.flavor,
            file: start.file.as_str().into(),
            mariadb,
            mysql,
            txn_gtid: "".into(),
            pending_mysql: None,
            in_txn: false,
            seen_fde: false,
            checksums: info.checksums,
        })
    }

    fn rotate(&mut self, name: &[u8], before_format_description: bool) {
        // The server's first, synthetic ROTATE precedes the format
        // description, so its 4 checksum bytes are read as part of the name.
        let name =
            if before_format_description && self.checksums && name.len() > 4 { &name[..name.len() - 4] } else { name };
        self.file = String::from_utf8_lossy(name).into();
    }

    fn begin_mariadb(&mut self, domain: u32, server: u32, seq: u64, standalone: bool) {
        self.mariadb.update(domain, server, seq);
        self.txn_gtid = format!("{domain}-{server}-{seq}").into();
        self.in_txn = !standalone;
    }

    fn begin_mysql(&mut self, sid: [u8; 16], gno: u64) {
        let hex: String = sid.iter().map(|b| format!("{b:02x}")).collect();
        let uuid = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
        self.txn_gtid = format!("{uuid}:{gno}").into();
        // A transaction whose end dts did not recognise is over when the
        // next one starts: its GTID still belongs in the executed set.
        if let Some((previous, gno)) = self.pending_mysql.replace((uuid, gno)) {
            self.mysql.add(&previous, gno);
        }
        self.in_txn = false;
    }

    /// Follows transaction boundaries; true when `seen` ends a transaction
    /// (the caller then takes [`Tracker::commit`]).
    fn observe(&mut self, seen: Seen<'_>) -> bool {
        match seen {
            Seen::FormatDescription => {
                // A new binlog file (or a restarted server): a transaction
                // left open in the previous one was rolled back.
                self.seen_fde = true;
                self.in_txn = false;
                false
            }
            Seen::MysqlGtid { sid, gno } => {
                self.begin_mysql(sid, gno);
                false
            }
            Seen::Statement(Statement::Begin) => {
                self.in_txn = true;
                false
            }
            Seen::Statement(Statement::Commit | Statement::Rollback) | Seen::Xid => true,
            // Outside BEGIN ... COMMIT a statement is its own transaction
            // (GRANT, CREATE USER, ANALYZE TABLE, ...): its GTID must enter
            // the executed set, or a resumed set has a hole.
            Seen::Statement(_) => !self.in_txn,
            // A DDL statement commits implicitly, unless rows follow it in one
            // transaction (CREATE TABLE ... SELECT): MariaDB wraps those in
            // BEGIN ... COMMIT, MySQL 8 appends START TRANSACTION.
            Seen::Ddl(query) => {
                if opens_transaction(query) {
                    self.in_txn = true;
                }
                !self.in_txn
            }
        }
    }

    /// The checkpoint after the transaction that ends at `end_pos`.
    fn commit(&mut self, end_pos: u64, schemas: &SchemaHistory) -> Checkpoint {
        if let Some((uuid, gno)) = self.pending_mysql.take() {
            self.mysql.add(&uuid, gno);
        }
        self.in_txn = false;
        let gtid = match self.flavor {
            Flavor::MariaDb => self.mariadb.to_string(),
            Flavor::MySql => self.mysql.to_string(),
        };
        Checkpoint {
            flavor: self.flavor,
            file: self.file.to_string(),
            pos: end_pos,
            gtid,
            snapshot: None,
            schemas: schemas.clone(),
            copies: Default::default(),
        }
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    //! Transaction boundaries from recorded event sequences, for the MySQL
    //! paths no server here can produce.
    use super::*;

    const SID: [u8; 16] =
        [0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x63];
    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429563";

    fn tracker(flavor: Flavor) -> Tracker {
        Tracker {
            flavor,
            file: "bin.000001".into(),
            mariadb: MariaGtidState::default(),
            mysql: MysqlGtidSet::default(),
            txn_gtid: "".into(),
            pending_mysql: None,
            in_txn: false,
            seen_fde: true,
            checksums: true,
        }
    }

    fn gtid_set(t: &mut Tracker) -> String {
        t.commit(0, &SchemaHistory::default()).gtid
    }

    /// Feeds `events`, returning after which ones a checkpoint was taken.
    fn commits(t: &mut Tracker, events: Vec<Seen<'_>>) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, e) in events.into_iter().enumerate() {
            if t.observe(e) {
                out.push(i);
                t.commit(0, &SchemaHistory::default());
            }
        }
        out
    }

    fn gtid(gno: u64) -> Seen<'static> {
        Seen::MysqlGtid { sid: SID, gno }
    }

    fn stmt(query: &str) -> Seen<'static> {
        Seen::Statement(classify(query))
    }

    #[test]
    fn mysql_statements_without_begin_enter_the_executed_set() {
        let mut t = tracker(Flavor::MySql);
        let events = vec![
            gtid(1),
            stmt("GRANT SELECT ON *.* TO 'r'@'%'"),
            gtid(2),
            stmt("CREATE USER 'x'@'%' IDENTIFIED WITH 'caching_sha2_password' AS '...'"),
            gtid(3),
            stmt("ANALYZE TABLE t"),
            gtid(4),
            Seen::Ddl("DROP TABLE `t` /* generated by server */"),
            gtid(5),
            stmt("BEGIN"),
            Seen::Xid,
        ];
        assert_eq!(commits(&mut t, events), [1, 3, 5, 7, 10]);
        assert_eq!(gtid_set(&mut t), format!("{UUID}:1-5"));
    }

    #[test]
    fn mysql_create_table_select_checkpoints_only_at_its_end() {
        let mut t = tracker(Flavor::MySql);
        let events = vec![
            gtid(1),
            Seen::Ddl("CREATE TABLE `dst` (`id` int NOT NULL) START TRANSACTION"),
            // rows events commit nothing
            Seen::Xid,
        ];
        assert_eq!(commits(&mut t, events), [2]);
        assert_eq!(gtid_set(&mut t), format!("{UUID}:1"));
    }

    #[test]
    fn a_transaction_whose_end_was_not_seen_still_counts_when_the_next_starts() {
        let mut t = tracker(Flavor::MySql);
        // XA PREPARE ... or any end dts does not classify: the next GTID closes it.
        assert_eq!(
            commits(&mut t, vec![gtid(1), stmt("BEGIN"), stmt("XA END 'x'"), gtid(2), stmt("BEGIN"), Seen::Xid]),
            [5]
        );
        assert_eq!(gtid_set(&mut t), format!("{UUID}:1-2"));
    }

    #[test]
    fn mariadb_groups_follow_the_standalone_flag() {
        let mut t = tracker(Flavor::MariaDb);
        // CREATE TABLE ... SELECT: a transactional group opening with DDL.
        t.begin_mariadb(0, 1, 7, false);
        assert!(!t.observe(Seen::Ddl("CREATE TABLE `dst` (`id` int(11) NOT NULL)")));
        assert!(t.observe(Seen::Xid));
        // Plain DDL is a standalone group and commits by itself.
        t.begin_mariadb(0, 1, 8, true);
        assert!(t.observe(Seen::Ddl("ALTER TABLE t ADD c INT")));
        assert_eq!(gtid_set(&mut t), "0-1-8");
    }

    #[test]
    fn a_restart_mid_transaction_forgets_the_open_transaction() {
        let mut t = tracker(Flavor::MySql);
        assert!(!t.observe(gtid(1)));
        assert!(!t.observe(stmt("BEGIN")));
        assert!(!t.observe(Seen::FormatDescription));
        assert!(t.observe(stmt("GRANT SELECT ON *.* TO 'r'@'%'")), "after a restart, statements stand alone again");
    }
}
