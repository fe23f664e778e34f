//! The binlog stream loop.
//!
//! Reads events from the start checkpoint and sends, in binlog order:
//! a [`SourceItem::Change`] per selected row (and per DDL on a selected
//! table), and a [`SourceItem::Commit`] at every transaction end carrying
//! the checkpoint that resumes right after it. The channel is bounded: when
//! the pipeline is slow, `send` waits and the loop stops reading, so a huge
//! transaction never sits in memory.

use std::sync::Arc;

use dts_core::event::{Change, DdlChange, Op, Row, RowChange, SourcePosition};
use futures_util::StreamExt;
use mysql_async::binlog::events::{EventData, OptionalMetaExtractor, RowsEventData, TableMapEvent};
use mysql_async::prelude::Queryable;
use mysql_async::BinlogStreamRequest;
use tokio::sync::mpsc;

use crate::ddl::{classify, Statement};
use crate::decode::decode;
use crate::position::{Checkpoint, Flavor, MariaGtidState, MysqlGtidSet};
use crate::schema::{kind_of_binlog, BinlogShape, SchemaCache};
use crate::{ServerInfo, SourceConfig, SourceError};

/// MariaDB event types mysql_common does not know.
const MARIADB_ANNOTATE_ROWS: u8 = 160;
const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
const MARIADB_GTID: u8 = 162;
const MARIADB_GTID_LIST: u8 = 163;
/// MariaDB GTID event flag: the transaction is a single statement (DDL).
const MARIADB_FL_STANDALONE: u8 = 1;

/// What the source sends down the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    Change(Change),
    /// A transaction ended; resuming from `checkpoint` starts after it.
    Commit {
        checkpoint: Checkpoint,
        ts_ms: i64,
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
}

/// Streams from `start` until the receiver goes away (`Ok`) or an error.
pub async fn stream(
    cfg: &SourceConfig,
    info: &ServerInfo,
    start: &Checkpoint,
    select: Arc<dyn Selection>,
    tx: mpsc::Sender<SourceItem>,
) -> Result<(), SourceError> {
    let mut schemas = SchemaCache::new(cfg.connect().await?, info.flavor == Flavor::MariaDb);
    let mut conn = cfg.connect().await?;
    let mut state = Tracker::new(info, start)?;
    // Heartbeats every second keep an idle stream provably alive.
    conn.query_drop("SET @master_heartbeat_period = 1000000000").await.map_err(SourceError::from_mysql)?;
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
    let mut binlog = conn.get_binlog_stream(request).await.map_err(SourceError::from_mysql)?;
    tracing::info!(from = %start.display(), server_id = cfg.server_id, "binlog stream started");

    loop {
        let next = tokio::time::timeout(cfg.idle_timeout, binlog.next()).await;
        let event = match next {
            Err(_) => {
                return Err(SourceError::Transient(format!(
                    "no event or heartbeat from the source in {:?}",
                    cfg.idle_timeout
                )))
            }
            Ok(None) => return Err(SourceError::Transient("the source closed the binlog stream".into())),
            Ok(Some(Err(e))) => return Err(SourceError::from_mysql(e)),
            Ok(Some(Ok(event))) => event,
        };
        let header = event.header();
        let raw_type = header.event_type_raw();
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
                state.begin_mariadb(domain, header.server_id(), seq, data[12] & MARIADB_FL_STANDALONE != 0);
                continue;
            }
            MARIADB_ANNOTATE_ROWS | MARIADB_BINLOG_CHECKPOINT | MARIADB_GTID_LIST => continue,
            _ => {}
        }
        let data = event.read_data().map_err(|e| SourceError::Definite(format!("unreadable binlog event: {e}")))?;
        let commit = match data {
            Some(EventData::RotateEvent(r)) => {
                state.rotate(r.name_raw(), header.log_pos() == 0 && !state.seen_fde);
                false
            }
            Some(EventData::FormatDescriptionEvent(_)) => {
                state.seen_fde = true;
                false
            }
            Some(EventData::GtidEvent(g)) => {
                state.begin_mysql(&g);
                false
            }
            Some(EventData::QueryEvent(q)) => match classify(&q.query()) {
                Statement::Begin => false,
                // A standalone MariaDB transaction is this one statement.
                Statement::Other => state.standalone,
                Statement::Commit | Statement::Rollback => true,
                Statement::Ddl { db, table } => {
                    let db = db.unwrap_or_else(|| q.schema().into_owned());
                    schemas.invalidate(&db, table.as_deref());
                    let selected = match &table {
                        Some(t) => select.table(&db, t),
                        None => select.database(&db),
                    };
                    if selected {
                        let ddl = DdlChange { db, table, statement: q.query().into_owned(), source: pos.clone() };
                        if tx.send(SourceItem::Change(Change::Ddl(ddl))).await.is_err() {
                            return Ok(());
                        }
                    }
                    // A DDL statement commits implicitly.
                    true
                }
            },
            Some(EventData::XidEvent(_)) => true,
            Some(EventData::RowsEvent(rows)) => {
                let Some(tme) = binlog.get_tme(rows.table_id()) else {
                    return Err(SourceError::Definite(format!("rows event for unknown table id {}", rows.table_id())));
                };
                let (db, table) = (tme.database_name().into_owned(), tme.table_name().into_owned());
                if select.table(&db, &table) && !send_rows(&rows, tme, &mut schemas, pos, &tx).await? {
                    return Ok(());
                }
                false
            }
            _ => false,
        };
        if commit {
            let checkpoint = state.commit(u64::from(header.log_pos()));
            let item = SourceItem::Commit { checkpoint, ts_ms: i64::from(header.timestamp()) * 1000 };
            if tx.send(item).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Decodes one rows event and sends its rows; false when the receiver is gone.
async fn send_rows(
    rows: &RowsEventData<'_>,
    tme: &TableMapEvent<'_>,
    schemas: &mut SchemaCache,
    pos: SourcePosition,
    tx: &mpsc::Sender<SourceItem>,
) -> Result<bool, SourceError> {
    let (db, table) = (tme.database_name(), tme.table_name());
    let info = schemas.get(&db, &table, &binlog_shape(tme)).await?;
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
        if tx.send(SourceItem::Change(Change::Row(change))).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The event's own view of its table: column kinds from the table map, and
/// names when the server logs them (`binlog_row_metadata=FULL`).
fn binlog_shape(tme: &TableMapEvent<'_>) -> BinlogShape {
    let count = tme.columns_count() as usize;
    let kinds = (0..count)
        .map(|i| {
            let t = tme.get_column_type(i).ok().flatten().unwrap_or(mysql_async::consts::ColumnType::MYSQL_TYPE_NULL);
            kind_of_binlog(t, tme.get_column_metadata(i).and_then(|m| m.first().copied()))
        })
        .collect();
    let names: Vec<String> = OptionalMetaExtractor::new(tme.iter_optional_meta())
        .map(|meta| meta.iter_column_name().filter_map(|n| n.ok().map(|n| n.name().into_owned())).collect())
        .unwrap_or_default();
    let names = if names.len() == count { names } else { Vec::new() };
    BinlogShape { names, kinds }
}

/// Position bookkeeping across events.
struct Tracker {
    flavor: Flavor,
    file: String,
    mariadb: MariaGtidState,
    mysql: MysqlGtidSet,
    /// GTID of the transaction being read.
    txn_gtid: String,
    /// MySQL GTID to add to the executed set at commit.
    pending_mysql: Option<(String, u64)>,
    /// A MariaDB standalone transaction (e.g. DDL) commits after its one event.
    standalone: bool,
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
            file: start.file.clone(),
            mariadb,
            mysql,
            txn_gtid: String::new(),
            pending_mysql: None,
            standalone: false,
            seen_fde: false,
            checksums: info.checksums,
        })
    }

    fn rotate(&mut self, name: &[u8], before_format_description: bool) {
        // The server's first, synthetic ROTATE precedes the format
        // description, so its 4 checksum bytes are read as part of the name.
        let name =
            if before_format_description && self.checksums && name.len() > 4 { &name[..name.len() - 4] } else { name };
        self.file = String::from_utf8_lossy(name).into_owned();
    }

    fn begin_mariadb(&mut self, domain: u32, server: u32, seq: u64, standalone: bool) {
        self.mariadb.update(domain, server, seq);
        self.txn_gtid = format!("{domain}-{server}-{seq}");
        self.standalone = standalone;
    }

    fn begin_mysql(&mut self, g: &mysql_async::binlog::events::GtidEvent) {
        let sid = g.sid();
        let hex: String = sid.iter().map(|b| format!("{b:02x}")).collect();
        let uuid = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
        self.txn_gtid = format!("{uuid}:{}", g.gno());
        self.pending_mysql = Some((uuid, g.gno()));
    }

    /// The checkpoint after the transaction that ends at `end_pos`.
    fn commit(&mut self, end_pos: u64) -> Checkpoint {
        if let Some((uuid, gno)) = self.pending_mysql.take() {
            self.mysql.add(&uuid, gno);
        }
        self.standalone = false;
        let gtid = match self.flavor {
            Flavor::MariaDb => self.mariadb.to_string(),
            Flavor::MySql => self.mysql.to_string(),
        };
        Checkpoint { flavor: self.flavor, file: self.file.clone(), pos: end_pos, gtid, snapshot: None }
    }
}
