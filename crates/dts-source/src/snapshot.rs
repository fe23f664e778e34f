//! Copying existing rows for `incr: false` tasks, then handing over to the
//! binlog stream with no gap.
//!
//! How the copy stays consistent without a long lock: it reads inside one
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT`. MariaDB reports the exact
//! binlog position of that snapshot (`binlog_snapshot_file/position`), so
//! streaming from there neither misses nor repeats a change; no lock is
//! taken at all. MySQL has no such status, so the snapshot is opened under
//! `FLUSH TABLES WITH READ LOCK`, held only while the transaction starts and
//! `SHOW MASTER STATUS` is read (milliseconds).
//!
//! Tables are read in primary-key order in chunks (keyset pagination, never
//! OFFSET), streaming each row into the pipeline, so memory does not depend
//! on table size. After each chunk a commit carries the progress (the last
//! key of every table), and it becomes the task's checkpoint once Kafka has
//! acknowledged the chunk. A worker killed mid-copy resumes after the last
//! acknowledged chunk in a new snapshot and then streams from the *first*
//! snapshot's position: rows copied later than that position may be sent
//! again by the stream, which is the at-least-once a crash allows.
//!
//! A table without a primary key is read in one ordered-by-nothing scan;
//! after a crash that table is copied again from its start (duplicates, no
//! loss).

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dts_core::event::{Change, Op, Row, RowChange, SourcePosition};
use dts_core::now_ms;
use mysql_async::prelude::Queryable;
use mysql_async::Value as My;
use tokio::sync::mpsc;

use crate::decode::decode_query;
use crate::position::{Checkpoint, Flavor, SnapshotProgress, TableProgress};
use crate::pushdown::where_clause;
use crate::reader::{Selection, SourceItem};
use crate::schema::{SchemaCache, TableInfo};
use crate::{ServerInfo, SourceConfig, SourceError};

/// An open consistent snapshot and the binlog position it matches.
pub struct Snapshot {
    conn: mysql_async::Conn,
    pub position: Checkpoint,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("position", &self.position).finish_non_exhaustive()
    }
}

fn err(e: mysql_async::Error) -> SourceError {
    SourceError::from_mysql(e)
}

/// Opens a consistent snapshot.
pub async fn begin(cfg: &SourceConfig, info: &ServerInfo) -> Result<Snapshot, SourceError> {
    let mut conn = cfg.connect().await?;
    // TIMESTAMP values are read in UTC, like the binlog's.
    conn.query_drop("SET SESSION time_zone = '+00:00'").await.map_err(err)?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await.map_err(err)?;
    let position = match info.flavor {
        Flavor::MariaDb => {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await.map_err(err)?;
            let status: Vec<(String, String)> =
                conn.query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'").await.map_err(err)?;
            let get = |name: &str| status.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
            let (Some(file), Some(pos)) = (get("binlog_snapshot_file"), get("binlog_snapshot_position")) else {
                return Err(SourceError::Definite(
                    "the source reports no binlog snapshot position (is log_bin on?)".into(),
                ));
            };
            let pos: u64 =
                pos.parse().map_err(|_| SourceError::Definite(format!("bad binlog_snapshot_position {pos}")))?;
            let gtid: Option<String> =
                conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.clone(), pos)).await.map_err(err)?;
            Checkpoint {
                flavor: Flavor::MariaDb,
                file,
                pos,
                gtid: gtid.unwrap_or_default(),
                snapshot: None,
                schemas: Default::default(),
            }
        }
        Flavor::MySql => {
            conn.query_drop("FLUSH TABLES WITH READ LOCK").await.map_err(|e| {
                SourceError::Definite(format!(
                    "opening a consistent snapshot needs the RELOAD privilege (FLUSH TABLES WITH READ LOCK): {e}"
                ))
            })?;
            let started = async {
                conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await.map_err(err)?;
                crate::current_position(&mut conn, info).await
            }
            .await;
            conn.query_drop("UNLOCK TABLES").await.map_err(err)?;
            started?
        }
    };
    Ok(Snapshot { conn, position })
}

/// The tables the task copies, in a stable order.
pub async fn plan(
    snapshot: &mut Snapshot,
    dbs: &[String],
    select: &dyn Selection,
) -> Result<Vec<TableProgress>, SourceError> {
    let mut out = Vec::new();
    for db in dbs {
        let tables: Vec<String> = snapshot
            .conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
                (db,),
            )
            .await
            .map_err(err)?;
        out.extend(tables.into_iter().filter(|t| select.table(db, t)).map(|table| TableProgress {
            db: db.clone(),
            table,
            done: false,
            last_key: None,
        }));
    }
    Ok(out)
}

/// Copies every table not yet done in `start.snapshot`, sending rows and a
/// commit after each chunk. Returns the position streaming starts from.
pub async fn copy(
    mut snapshot: Snapshot,
    start: &Checkpoint,
    cfg: &SourceConfig,
    info: &ServerInfo,
    select: Arc<dyn Selection>,
    chunk_rows: usize,
    tx: &mpsc::Sender<SourceItem>,
) -> Result<Option<Checkpoint>, SourceError> {
    let mut progress = start.snapshot.clone().unwrap_or(SnapshotProgress { tables: Vec::new(), rows_copied: 0 });
    let mut schemas = SchemaCache::new(cfg.connect().await?, info.flavor == Flavor::MariaDb, Default::default());
    let stream_from = Checkpoint { snapshot: None, ..start.clone() };
    for i in 0..progress.tables.len() {
        if progress.tables[i].done {
            continue;
        }
        let (db, table) = (progress.tables[i].db.clone(), progress.tables[i].table.clone());
        let info = schemas.current(&db, &table).await?;
        let filters = select.row_filters(&db, &table);
        let condition = where_clause(&filters.iter().map(Option::as_ref).collect::<Vec<_>>(), &info);
        let reader = TableReader { info: &info, condition, chunk_rows, position: &stream_from };
        loop {
            let last_key = decode_key(progress.tables[i].last_key.as_deref())?;
            let Some(outcome) = reader.chunk(&mut snapshot.conn, last_key, tx).await? else { return Ok(None) };
            progress.rows_copied += outcome.rows;
            progress.tables[i].last_key = outcome.last_key.as_deref().map(encode_key);
            progress.tables[i].done = outcome.finished;
            let checkpoint = Checkpoint { snapshot: Some(progress.clone()), ..stream_from.clone() };
            if tx.send(SourceItem::Commit { checkpoint, ts_ms: now_ms() }).await.is_err() {
                return Ok(None);
            }
            if outcome.finished {
                break;
            }
        }
        tracing::info!(db = %db, table = %table, rows = progress.rows_copied, "table copied");
    }
    snapshot.conn.query_drop("COMMIT").await.map_err(err)?;
    Ok(Some(stream_from))
}

struct TableReader<'a> {
    info: &'a TableInfo,
    condition: Option<String>,
    chunk_rows: usize,
    position: &'a Checkpoint,
}

struct ChunkOutcome {
    rows: u64,
    last_key: Option<Vec<My>>,
    finished: bool,
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl TableReader<'_> {
    /// Reads and sends one chunk after `after` (or the whole table when it
    /// has no primary key). `None` when the receiver is gone.
    async fn chunk(
        &self,
        conn: &mut mysql_async::Conn,
        after: Option<Vec<My>>,
        tx: &mpsc::Sender<SourceItem>,
    ) -> Result<Option<ChunkOutcome>, SourceError> {
        let schema = &self.info.schema;
        let pk = &schema.primary_key;
        let columns: Vec<String> = schema.columns.iter().map(|c| quote(c)).collect();
        let pk_cols: Vec<String> = pk.iter().map(|&i| quote(&schema.columns[i])).collect();
        let mut conditions = Vec::new();
        let mut params: Vec<My> = Vec::new();
        if let Some(after) = &after {
            let marks = vec!["?"; after.len()].join(", ");
            conditions.push(format!("({}) > ({marks})", pk_cols.join(", ")));
            params.extend(after.iter().cloned());
        }
        if let Some(c) = &self.condition {
            conditions.push(format!("({c})"));
        }
        let mut sql = format!("SELECT {} FROM {}.{}", columns.join(", "), quote(&schema.db), quote(&schema.table));
        if !conditions.is_empty() {
            sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
        }
        let keyed = !pk.is_empty();
        if keyed {
            sql.push_str(&format!(" ORDER BY {} LIMIT {}", pk_cols.join(", "), self.chunk_rows));
        }
        let mut result = conn.exec_iter(sql, params).await.map_err(err)?;
        let mut rows = 0u64;
        let mut last_key = None;
        let source = SourcePosition {
            server_id: 0,
            gtid: String::new(),
            file: self.position.file.clone(),
            pos: self.position.pos,
            row: 0,
            ts_ms: now_ms(),
            snapshot: true,
        };
        while let Some(row) = result.next().await.map_err(err)? {
            let raw = row.unwrap();
            let values = raw
                .iter()
                .zip(&self.info.columns)
                .map(|(v, col)| decode_query(v, col))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SourceError::Definite(format!("{}.{}: {e}", schema.db, schema.table)))?;
            if keyed {
                last_key = Some(pk.iter().map(|&i| raw[i].clone()).collect());
            }
            let change = RowChange {
                schema: schema.clone(),
                op: Op::Read,
                before: None,
                after: Some(Row(values)),
                source: source.clone(),
            };
            if tx.send(SourceItem::Change(Change::Row(change))).await.is_err() {
                return Ok(None);
            }
            rows += 1;
        }
        let finished = !keyed || (rows as usize) < self.chunk_rows;
        Ok(Some(ChunkOutcome { rows, last_key: last_key.or(after), finished }))
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
