//! Table shapes from `information_schema`, cached per table until a DDL
//! statement on it is seen.
//!
//! The binlog's own metadata (column names with `binlog_row_metadata=FULL`)
//! wins for names, because an old event must decode with the names it was
//! written with; `information_schema` adds what the binlog does not carry
//! (primary key order on MariaDB, JSON and UUID columns, charsets by name,
//! ENUM/SET labels, fractional-second precision).

use std::collections::HashMap;
use std::sync::Arc;

use dts_core::event::TableSchema;
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;

use crate::SourceError;

/// How a column's binlog value is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    pub kind: ColumnKind,
    pub unsigned: bool,
    /// Character set name (`utf8mb4`, `latin1`, ...) of text columns.
    pub charset: Option<String>,
    /// ENUM and SET labels, in declaration order.
    pub labels: Vec<String>,
    /// Fractional-second digits of TIME, DATETIME and TIMESTAMP.
    pub fsp: u8,
}

/// A rows event's own view of its table: names (with
/// `binlog_row_metadata=FULL`, else empty) and kinds from the table map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogShape {
    pub names: Vec<String>,
    pub kinds: Vec<ColumnKind>,
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

/// An older shape of `current`: columns still present keep their current
/// info, columns since dropped get the event's kind.
fn historic(current: &TableInfo, binlog: &BinlogShape) -> TableInfo {
    let columns: Vec<ColumnInfo> = binlog
        .names
        .iter()
        .zip(&binlog.kinds)
        .map(|(name, kind)| match current.columns.iter().find(|c| &c.name == name) {
            Some(c) => c.clone(),
            None => ColumnInfo {
                name: name.clone(),
                kind: *kind,
                unsigned: false,
                charset: Some("utf8mb4".into()),
                labels: Vec::new(),
                fsp: 6,
            },
        })
        .collect();
    let pk_names: Vec<&String> = current.schema.primary_key.iter().map(|&i| &current.schema.columns[i]).collect();
    let primary_key: Vec<usize> = pk_names.iter().filter_map(|n| binlog.names.iter().position(|x| x == *n)).collect();
    let primary_key = if primary_key.len() == pk_names.len() { primary_key } else { Vec::new() };
    TableInfo {
        schema: Arc::new(TableSchema {
            db: current.schema.db.clone(),
            table: current.schema.table.clone(),
            columns: binlog.names.clone(),
            primary_key,
        }),
        columns,
    }
}

/// Everything known about one table.
#[derive(Debug, Clone)]
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

/// Cached table shapes, read through a metadata connection of their own.
pub struct SchemaCache {
    conn: mysql_async::Conn,
    tables: HashMap<(String, String), Arc<TableInfo>>,
    /// Shapes of events older than the current table, by their column names.
    historic: HashMap<(String, String, Vec<String>), Arc<TableInfo>>,
    mariadb: bool,
}

impl std::fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaCache").field("tables", &self.tables.len()).finish_non_exhaustive()
    }
}

impl SchemaCache {
    pub fn new(conn: mysql_async::Conn, mariadb: bool) -> Self {
        Self { conn, tables: HashMap::new(), historic: HashMap::new(), mariadb }
    }

    /// Forgets a table (after DDL on it), or every table of `db` when `table` is `None`.
    pub fn invalidate(&mut self, db: &str, table: Option<&str>) {
        match table {
            Some(t) => {
                self.tables.remove(&(db.to_owned(), t.to_owned()));
                self.historic.retain(|(d, n, _), _| !(d == db && n == t));
            }
            None => {
                self.tables.retain(|(d, _), _| d != db);
                self.historic.retain(|(d, _, _), _| d != db);
            }
        }
    }

    /// The table's current info (for the snapshot).
    pub async fn current(&mut self, db: &str, table: &str) -> Result<Arc<TableInfo>, SourceError> {
        let key = (db.to_owned(), table.to_owned());
        if let Some(info) = self.tables.get(&key) {
            return Ok(info.clone());
        }
        let info = Arc::new(self.fetch(db, table).await?);
        self.tables.insert(key, info.clone());
        Ok(info)
    }

    /// The table's info as the event sees it. When the event's column count
    /// differs from the current table (it was written before a later DDL,
    /// e.g. while catching up), the shape is rebuilt from the event's own
    /// column names and types, reusing current column info by name.
    pub async fn get(&mut self, db: &str, table: &str, binlog: &BinlogShape) -> Result<Arc<TableInfo>, SourceError> {
        let info = self.current(db, table).await?;
        let count = binlog.kinds.len();
        let same_names = binlog.names.is_empty() || binlog.names == info.schema.columns;
        if info.columns.len() == count && same_names {
            return Ok(info);
        }
        if binlog.names.len() != count {
            return Err(SourceError::Definite(format!(
                "table {db}.{table} has {} columns but the binlog event has {count}: set binlog_row_metadata=FULL \
                 on the source so events written before a DDL can be decoded",
                info.columns.len()
            )));
        }
        let hkey = (db.to_owned(), table.to_owned(), binlog.names.clone());
        if let Some(h) = self.historic.get(&hkey) {
            return Ok(h.clone());
        }
        let h = Arc::new(historic(&info, binlog));
        self.historic.insert(hkey, h.clone());
        Ok(h)
    }

    async fn fetch(&mut self, db: &str, table: &str) -> Result<TableInfo, SourceError> {
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
            return Err(SourceError::Definite(format!(
                "table {db}.{table} is not visible in information_schema (missing SELECT privilege?)"
            )));
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
                    charset,
                    labels,
                    fsp: fsp.unwrap_or(0).min(6) as u8,
                }
            })
            .collect();
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let primary_key = pk.iter().filter_map(|k| names.iter().position(|n| n == k)).collect();
        Ok(TableInfo {
            schema: Arc::new(TableSchema { db: db.to_owned(), table: table.to_owned(), columns: names, primary_key }),
            columns,
        })
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
