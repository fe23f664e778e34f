//! Table shapes: what a rows event's columns are called and how their
//! values decode.
//!
//! The binlog itself is the first authority: the table map carries column
//! types, and with `binlog_row_metadata=FULL` also names, signedness,
//! charsets, ENUM/SET labels and the primary key, so an event decodes as it
//! was written even when the table has since changed, been renamed or
//! dropped. dts's own [`SchemaHistory`] (persisted in the checkpoint) fills
//! in what the binlog leaves out, and `information_schema` is consulted only
//! for tables whose shape is unknown or changed, and only when it agrees
//! with the event's column types. See [`SchemaCache::resolve`].

use std::collections::HashMap;
use std::sync::Arc;

use dts_core::event::TableSchema;
use mysql_async::binlog::events::TableMapEvent;
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};

use crate::ddl::Effect;
use crate::history::SchemaHistory;
use crate::SourceError;

/// How a column's binlog value is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// Integer of this many bytes.
    Int(u8),
    Float,
    Double,
    Decimal,
    Date,
    Time,
    DateTime,
    Timestamp,
    Year,
    /// Character data in `charset`.
    Text,
    /// BINARY, VARBINARY, BLOB.
    Binary,
    Enum,
    Set,
    Bit,
    Json,
    /// MariaDB's UUID type.
    Uuid,
    Geometry,
    /// Anything else (e.g. INET6): rendered as text.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    pub kind: ColumnKind,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsigned: bool,
    /// Character set name (`utf8mb4`, `latin1`, ...) of text columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
    /// ENUM and SET labels, in declaration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Fractional-second digits of TIME, DATETIME and TIMESTAMP.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fsp: u8,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

/// One column as a rows event's table map describes it; `None` where the
/// server's `binlog_row_metadata` level does not log the detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogColumn {
    pub name: Option<String>,
    /// From the column type; the string family is [`ColumnKind::Text`]
    /// (or `Binary` when the logged charset is `binary`).
    pub kind: ColumnKind,
    pub unsigned: Option<bool>,
    pub charset: Option<String>,
    pub labels: Option<Vec<String>>,
    pub fsp: u8,
}

/// A rows event's own view of its table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinlogShape {
    pub columns: Vec<BinlogColumn>,
    /// Primary-key column indexes, when logged (FULL metadata).
    pub primary_key: Option<Vec<usize>>,
}

impl BinlogShape {
    /// True when the event names its columns (`binlog_row_metadata=FULL`).
    pub fn has_names(&self) -> bool {
        !self.columns.is_empty() && self.columns.iter().all(|c| c.name.is_some())
    }
}

/// MySQL's and MariaDB's names for one charset differ (`utf8` is `utf8mb3`).
pub fn normalize_charset(name: &str) -> String {
    match name {
        "utf8" => "utf8mb3".to_owned(),
        other => other.to_owned(),
    }
}

/// The kind of a table-map column type (`real_type` is the first metadata
/// byte, which holds ENUM/SET for STRING columns).
pub fn kind_of_binlog(t: ColumnType, real_type: Option<u8>) -> ColumnKind {
    use ColumnType::*;
    let t = match (t, real_type.and_then(|b| ColumnType::try_from(b).ok())) {
        (MYSQL_TYPE_STRING, Some(real @ (MYSQL_TYPE_ENUM | MYSQL_TYPE_SET))) => real,
        (t, _) => t,
    };
    match t {
        MYSQL_TYPE_TINY => ColumnKind::Int(1),
        MYSQL_TYPE_SHORT => ColumnKind::Int(2),
        MYSQL_TYPE_INT24 => ColumnKind::Int(3),
        MYSQL_TYPE_LONG => ColumnKind::Int(4),
        MYSQL_TYPE_LONGLONG => ColumnKind::Int(8),
        MYSQL_TYPE_FLOAT => ColumnKind::Float,
        MYSQL_TYPE_DOUBLE => ColumnKind::Double,
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => ColumnKind::Decimal,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => ColumnKind::Date,
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => ColumnKind::Time,
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => ColumnKind::DateTime,
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => ColumnKind::Timestamp,
        MYSQL_TYPE_YEAR => ColumnKind::Year,
        MYSQL_TYPE_ENUM => ColumnKind::Enum,
        MYSQL_TYPE_SET => ColumnKind::Set,
        MYSQL_TYPE_BIT => ColumnKind::Bit,
        MYSQL_TYPE_JSON => ColumnKind::Json,
        MYSQL_TYPE_GEOMETRY => ColumnKind::Geometry,
        // Character or binary: the table map alone does not say; text is
        // the common case for a column that no longer exists.
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB => ColumnKind::Text,
        _ => ColumnKind::Other,
    }
}

/// Everything known about one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub schema: Arc<TableSchema>,
    pub columns: Vec<ColumnInfo>,
}

pub fn kind_of(data_type: &str, charset: Option<&str>) -> ColumnKind {
    match data_type {
        "tinyint" => ColumnKind::Int(1),
        "smallint" => ColumnKind::Int(2),
        "mediumint" => ColumnKind::Int(3),
        "int" | "integer" => ColumnKind::Int(4),
        "bigint" => ColumnKind::Int(8),
        "float" => ColumnKind::Float,
        "double" | "real" | "double precision" => ColumnKind::Double,
        "decimal" | "numeric" => ColumnKind::Decimal,
        "date" => ColumnKind::Date,
        "time" => ColumnKind::Time,
        "datetime" => ColumnKind::DateTime,
        "timestamp" => ColumnKind::Timestamp,
        "year" => ColumnKind::Year,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
            if charset.is_some_and(|c| c != "binary") {
                ColumnKind::Text
            } else {
                ColumnKind::Binary
            }
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => ColumnKind::Binary,
        "enum" => ColumnKind::Enum,
        "set" => ColumnKind::Set,
        "bit" => ColumnKind::Bit,
        "json" => ColumnKind::Json,
        "uuid" => ColumnKind::Uuid,
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
        | "geometrycollection" | "geomcollection" => ColumnKind::Geometry,
        _ => ColumnKind::Other,
    }
}

/// Labels of `enum('a','b''c')` / `set(...)` as `COLUMN_TYPE` spells them.
pub fn parse_labels(column_type: &str) -> Vec<String> {
    let Some(inner) = column_type.find('(').and_then(|i| column_type.rfind(')').map(|j| &column_type[i + 1..j])) else {
        return Vec::new();
    };
    let mut labels = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut label = String::new();
        loop {
            match chars.next() {
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                Some('\'') | None => break,
                Some('\\') => {
                    if let Some(e) = chars.next() {
                        label.push(e);
                    }
                }
                Some(other) => label.push(other),
            }
        }
        labels.push(label);
    }
    labels
}

/// Column names that MariaDB declares JSON through a `json_valid(col)` check
/// (its JSON type is LONGTEXT with that constraint).
pub fn json_columns_from_checks(clauses: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for clause in clauses {
        let lower = clause.to_ascii_lowercase();
        let mut rest = lower.as_str();
        while let Some(i) = rest.find("json_valid(") {
            let after = &rest[i + "json_valid(".len()..];
            if let Some(end) = after.find(')') {
                out.push(after[..end].trim().trim_matches('`').to_owned());
            }
            rest = after;
        }
    }
    out
}

/// How a rows event's table was resolved.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A shape with the columns' real names.
    Known(Arc<TableInfo>),
    /// Nothing tells the columns' names (no FULL metadata, no history, and
    /// the catalogue disagrees with the event): names are positional
    /// (`@1`, `@2`, ...) and types come from the table map alone.
    Positional(Arc<TableInfo>),
}

/// Table shapes: the persisted history, the live catalogue (read through a
/// metadata connection of its own, cached until DDL), and the positional
/// shapes of events nothing else describes.
pub struct SchemaCache {
    conn: mysql_async::Conn,
    history: SchemaHistory,
    catalogue: HashMap<(String, String), Option<Arc<TableInfo>>>,
    positional: HashMap<(String, String), Arc<TableInfo>>,
    positional_rows: u64,
    /// Charsets whose table was asked of the server (see [`crate::charset::learn`]).
    charsets_asked: std::collections::HashSet<String>,
    mariadb: bool,
    /// Shapes already resolved, by table map: reused while the event's
    /// table map is byte-for-byte the same and no DDL came since, so a
    /// table's shape is derived once, not at every rows event.
    by_map: HashMap<u64, (TableMapEvent<'static>, Arc<TableInfo>)>,
}

/// Table maps remembered at most; table ids are reassigned as tables are
/// reopened, so the map is cleared rather than left to grow.
const MAX_TABLE_MAPS: usize = 1024;

impl std::fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaCache")
            .field("history", &self.history.len())
            .field("catalogue", &self.catalogue.len())
            .finish_non_exhaustive()
    }
}

impl SchemaCache {
    pub fn new(conn: mysql_async::Conn, mariadb: bool, history: SchemaHistory) -> Self {
        Self {
            conn,
            history,
            catalogue: HashMap::new(),
            positional: HashMap::new(),
            positional_rows: 0,
            charsets_asked: Default::default(),
            mariadb,
            by_map: HashMap::new(),
        }
    }

    /// [`SchemaCache::resolve`] for a rows event's table map, with the
    /// table's charsets learnt; the answer is remembered for the same map.
    pub async fn resolve_map(&mut self, tme: &TableMapEvent<'_>) -> Result<Resolved, SourceError> {
        if let Some((map, info)) = self.by_map.get(&tme.table_id()) {
            if map == tme {
                return Ok(Resolved::Known(info.clone()));
            }
        }
        let (db, table) = (tme.database_name(), tme.table_name());
        let resolved = self.resolve(&db, &table, &crate::reader::binlog_shape(tme)).await?;
        if let Resolved::Known(info) = &resolved {
            self.learn_charsets(info).await?;
            if self.by_map.len() >= MAX_TABLE_MAPS {
                self.by_map.clear();
            }
            self.by_map.insert(tme.table_id(), (tme.clone().into_owned(), info.clone()));
        }
        Ok(resolved)
    }

    /// Makes sure every column's charset decodes: a single-byte charset
    /// encoding_rs lacks gets its table from the server, once per process.
    pub async fn learn_charsets(&mut self, table: &TableInfo) -> Result<(), SourceError> {
        for cs in table.columns.iter().filter_map(|c| c.charset.as_deref()) {
            if cs == "binary" || crate::charset::is_known(cs) || self.charsets_asked.contains(cs) {
                continue;
            }
            self.charsets_asked.insert(cs.to_owned());
            // A charset name is an identifier, not a bindable value.
            if !cs.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                continue;
            }
            let all_bytes: String = (0u8..=255).map(|b| format!("{b:02X}")).collect();
            let sql = format!("SELECT CONVERT(UNHEX('{all_bytes}') USING {cs})");
            let bytes: Option<Vec<u8>> = self.conn.query_first(sql).await.map_err(SourceError::from_mysql)?;
            let text = bytes.and_then(|b| String::from_utf8(b).ok());
            if !text.is_some_and(|t| crate::charset::learn(cs, &t)) {
                tracing::warn!(charset = cs, "no decoding table for this charset: its text is read as UTF-8");
            }
        }
        Ok(())
    }

    /// Counts rows sent with positional names; returns the total so far.
    pub fn note_positional(&mut self, rows: u64) -> u64 {
        self.positional_rows += rows;
        self.positional_rows
    }

    /// The history as of the last event read, for the next checkpoint.
    pub fn history(&self) -> &SchemaHistory {
        &self.history
    }

    /// Records what a DDL statement did: shapes of the tables it touched
    /// are re-derived at their next rows event, renamed ones move, dropped
    /// ones go; cached catalogue reads of those tables are forgotten.
    pub fn apply_ddl(&mut self, effects: &[Effect]) {
        self.history.apply(effects);
        if !effects.is_empty() {
            self.by_map.clear();
        }
        for effect in effects {
            match effect {
                Effect::Changed(t) | Effect::Dropped(t) => self.forget(&t.db, Some(&t.table)),
                Effect::Renamed { from, to } => {
                    self.forget(&from.db, Some(&from.table));
                    self.forget(&to.db, Some(&to.table));
                }
                Effect::DatabaseDropped(db) => self.forget(db, None),
            }
        }
    }

    /// Forgets cached catalogue reads of a table, or of every table of `db`.
    pub fn forget(&mut self, db: &str, table: Option<&str>) {
        let keep = |(d, t): &(String, String)| !(d == db && table.is_none_or(|x| x == t));
        self.catalogue.retain(|k, _| keep(k));
        self.positional.retain(|k, _| keep(k));
        self.by_map.clear();
    }

    /// The table's current info from the catalogue (for the snapshot).
    pub async fn current(&mut self, db: &str, table: &str) -> Result<Arc<TableInfo>, SourceError> {
        self.catalogue(db, table).await?.ok_or_else(|| {
            SourceError::Definite(format!(
                "table {db}.{table} is not visible in information_schema (missing SELECT privilege?)"
            ))
        })
    }

    /// The table's current info from the catalogue; `None` when it does not exist.
    pub async fn lookup(&mut self, db: &str, table: &str) -> Result<Option<Arc<TableInfo>>, SourceError> {
        self.catalogue(db, table).await
    }

    async fn catalogue(&mut self, db: &str, table: &str) -> Result<Option<Arc<TableInfo>>, SourceError> {
        let key = (db.to_owned(), table.to_owned());
        if let Some(info) = self.catalogue.get(&key) {
            return Ok(info.clone());
        }
        let info = self.fetch(db, table).await?.map(Arc::new);
        self.catalogue.insert(key, info.clone());
        Ok(info)
    }

    /// The shape to decode a rows event of `db.table` with. In order:
    /// 1. the recorded shape, unless a DDL touched the table since or it
    ///    disagrees with the event (column count, types, names, signedness,
    ///    labels or charsets the event logs);
    /// 2. with FULL metadata, the event's own description, completed by the
    ///    catalogue or the recorded shape for what the binlog cannot say
    ///    (MariaDB's JSON and UUID columns travel as strings);
    /// 3. without names: the catalogue if it agrees with the event, else
    ///    the recorded shape if it agrees;
    /// 4. else positional names ([`Resolved::Positional`]).
    ///
    /// A shape from 2 or 3 is recorded in the history.
    pub async fn resolve(&mut self, db: &str, table: &str, event: &BinlogShape) -> Result<Resolved, SourceError> {
        let prior = self.history.get(db, table).cloned();
        if let Some(p) = &prior {
            if !p.stale && agrees(&p.info, event) {
                return Ok(Resolved::Known(p.info.clone()));
            }
        }
        let key = (db.to_owned(), table.to_owned());
        if let Some(p) = self.positional.get(&key) {
            if same_types(p, event) {
                return Ok(Resolved::Positional(p.clone()));
            }
        }
        let catalogue = self.catalogue(db, table).await?;
        let info = if event.has_names() {
            let donor = catalogue.as_deref().filter(|c| agrees(c, event)).or(prior.as_ref().map(|p| p.info.as_ref()));
            Arc::new(from_event(db, table, event, donor))
        } else if let Some(c) = catalogue.filter(|c| agrees(c, event)) {
            c
        } else if let Some(p) = prior.filter(|p| agrees(&p.info, event)) {
            p.info
        } else {
            let p = Arc::new(from_event(db, table, event, None));
            self.positional.insert(key, p.clone());
            return Ok(Resolved::Positional(p));
        };
        self.history.record(info.clone());
        Ok(Resolved::Known(info))
    }

    async fn fetch(&mut self, db: &str, table: &str) -> Result<Option<TableInfo>, SourceError> {
        type ColRow = (String, String, String, Option<String>, Option<u32>);
        let rows: Vec<ColRow> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, DATETIME_PRECISION \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .map_err(SourceError::from_mysql)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let pk: Vec<String> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .map_err(SourceError::from_mysql)?;
        let json_cols = if self.mariadb {
            let clauses: Vec<String> = self
                .conn
                .exec(
                    "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                     WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                    (db, table),
                )
                .await
                .map_err(SourceError::from_mysql)?;
            json_columns_from_checks(&clauses)
        } else {
            Vec::new()
        };
        let columns: Vec<ColumnInfo> = rows
            .into_iter()
            .map(|(name, data_type, column_type, charset, fsp)| {
                let data_type = data_type.to_ascii_lowercase();
                let mut kind = kind_of(&data_type, charset.as_deref());
                if json_cols.contains(&name) {
                    kind = ColumnKind::Json;
                }
                let labels = if matches!(kind, ColumnKind::Enum | ColumnKind::Set) {
                    parse_labels(&column_type)
                } else {
                    vec![]
                };
                ColumnInfo {
                    unsigned: column_type.to_ascii_lowercase().contains("unsigned"),
                    name,
                    kind,
                    charset: charset.as_deref().map(normalize_charset),
                    labels,
                    fsp: fsp.unwrap_or(0).min(6) as u8,
                }
            })
            .collect();
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let primary_key = pk.iter().filter_map(|k| names.iter().position(|n| n == k)).collect();
        Ok(Some(TableInfo {
            schema: Arc::new(TableSchema { db: db.to_owned(), table: table.to_owned(), columns: names, primary_key }),
            columns,
        }))
    }
}

/// Kinds a table-map type can stand for: the binlog logs every character
/// and binary type (and MariaDB's JSON, UUID, INET6) as the string family.
fn kinds_agree(known: ColumnKind, logged: ColumnKind) -> bool {
    use ColumnKind::*;
    match logged {
        Text => matches!(known, Text | Binary | Json | Uuid | Other),
        Binary => matches!(known, Binary | Uuid | Other),
        _ => known == logged,
    }
}

fn is_numeric(kind: ColumnKind) -> bool {
    matches!(kind, ColumnKind::Int(_) | ColumnKind::Float | ColumnKind::Double | ColumnKind::Decimal)
}

fn is_temporal(kind: ColumnKind) -> bool {
    matches!(kind, ColumnKind::Time | ColumnKind::DateTime | ColumnKind::Timestamp)
}

/// True when `known` can decode the event: same column count and, per
/// column, types that agree and no logged detail (name, signedness, labels,
/// charset, fractional digits) that differs.
pub fn agrees(known: &TableInfo, event: &BinlogShape) -> bool {
    known.columns.len() == event.columns.len()
        && known.columns.iter().zip(&event.columns).all(|(k, e)| {
            kinds_agree(k.kind, e.kind)
                && e.name.as_ref().is_none_or(|n| n == &k.name)
                && (!is_numeric(k.kind) || e.unsigned.is_none_or(|u| u == k.unsigned))
                && e.labels.as_ref().is_none_or(|l| l == &k.labels)
                && (!matches!(k.kind, ColumnKind::Text) || e.charset.is_none() || e.charset == k.charset)
                && (!is_temporal(k.kind) || e.fsp == k.fsp)
        })
}

fn same_types(known: &TableInfo, event: &BinlogShape) -> bool {
    known.columns.len() == event.columns.len()
        && known.columns.iter().zip(&event.columns).all(|(k, e)| {
            k.kind == e.kind && e.unsigned.is_none_or(|u| u == k.unsigned) && (!is_temporal(k.kind) || e.fsp == k.fsp)
        })
}

/// A shape from the event's own description. `donor` (a shape that agrees
/// with the event, or the last recorded one) supplies, by column name, what
/// the event does not log: the specific kind of string-family columns
/// (JSON, UUID), and signedness, charset and labels at lower metadata levels.
fn from_event(db: &str, table: &str, event: &BinlogShape, donor: Option<&TableInfo>) -> TableInfo {
    let columns: Vec<ColumnInfo> = event
        .columns
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let name = e.name.clone().unwrap_or_else(|| format!("@{}", i + 1));
            let d =
                donor.and_then(|d| d.columns.iter().find(|c| c.name == name)).filter(|d| kinds_agree(d.kind, e.kind));
            let kind = match (e.kind, d.map(|d| d.kind)) {
                (
                    ColumnKind::Text | ColumnKind::Binary,
                    Some(k @ (ColumnKind::Json | ColumnKind::Uuid | ColumnKind::Other)),
                ) => k,
                (ColumnKind::Text, Some(ColumnKind::Binary)) if e.charset.is_none() => ColumnKind::Binary,
                (k, _) => k,
            };
            ColumnInfo {
                unsigned: e.unsigned.or(d.map(|d| d.unsigned)).unwrap_or(false),
                charset: e.charset.clone().or_else(|| d.and_then(|d| d.charset.clone())),
                labels: e.labels.clone().or_else(|| d.map(|d| d.labels.clone())).unwrap_or_default(),
                fsp: e.fsp,
                kind,
                name,
            }
        })
        .collect();
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let primary_key = match &event.primary_key {
        Some(pk) => pk.iter().copied().filter(|&i| i < names.len()).collect(),
        None => donor
            .map(|d| {
                let pk: Vec<usize> = d
                    .schema
                    .primary_key
                    .iter()
                    .filter_map(|&i| names.iter().position(|n| *n == d.schema.columns[i]))
                    .collect();
                if pk.len() == d.schema.primary_key.len() {
                    pk
                } else {
                    Vec::new()
                }
            })
            .unwrap_or_default(),
    };
    TableInfo {
        schema: Arc::new(TableSchema { db: db.to_owned(), table: table.to_owned(), columns: names, primary_key }),
        columns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_labels() {
        assert_eq!(kind_of("bigint", None), ColumnKind::Int(8));
        assert_eq!(kind_of("varchar", Some("utf8mb4")), ColumnKind::Text);
        assert_eq!(kind_of("varchar", Some("binary")), ColumnKind::Binary);
        assert_eq!(kind_of("longtext", None), ColumnKind::Binary);
        assert_eq!(kind_of("point", None), ColumnKind::Geometry);
        assert_eq!(kind_of("inet6", None), ColumnKind::Other);
        assert_eq!(parse_labels("enum('a','b''c','d,e')"), vec!["a", "b'c", "d,e"]);
        assert_eq!(parse_labels("set('x')"), vec!["x"]);
        assert!(parse_labels("int(11)").is_empty());
        assert_eq!(
            json_columns_from_checks(&["json_valid(`doc`)".into(), "JSON_VALID(`b`) and x > 1".into()]),
            vec!["doc", "b"]
        );
    }
}
