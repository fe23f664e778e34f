//! Row changes as they flow through the pipeline: source -> filter -> shape
//! -> route -> limit -> sink.
//!
//! Values are decoded once by the source into [`Value`], whose JSON form is
//! the same whether the row came from the binlog or from a snapshot SELECT,
//! so a consumer never sees two spellings of one value.

use std::borrow::Cow;
use std::sync::Arc;

use crate::filter::{RowView, Scalar};

/// One column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// Signed integers of every width.
    Int(i64),
    /// Unsigned integers (up to BIGINT UNSIGNED max), YEAR and BIT.
    UInt(u64),
    /// FLOAT and DOUBLE.
    Float(f64),
    /// DECIMAL, exact, as MySQL prints it (e.g. `"-12.3400"`).
    Decimal(String),
    /// Character data decoded from the column's charset; ENUM and SET by
    /// their labels (SET as MySQL prints it: `"a,c"`).
    Text(String),
    /// BINARY, VARBINARY and BLOB data: rendered as base64.
    Bytes(Vec<u8>),
    /// A JSON column, nested as JSON.
    Json(serde_json::Value),
    /// DATE `YYYY-MM-DD`, TIME `[-]HHH:MM:SS[.ffffff]`, DATETIME
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]`, TIMESTAMP as UTC ISO-8601
    /// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
    Temporal(String),
    /// GEOMETRY: SRID and well-known binary.
    Geometry {
        srid: u32,
        wkb: Vec<u8>,
    },
}

impl Value {
    /// The JSON form used in messages.
    pub fn to_json(&self) -> serde_json::Value {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Int(v) => (*v).into(),
            Value::UInt(v) => (*v).into(),
            Value::Float(v) => serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into),
            Value::Decimal(s) | Value::Text(s) | Value::Temporal(s) => s.clone().into(),
            Value::Bytes(b) => b64(b).into(),
            Value::Json(j) => j.clone(),
            Value::Geometry { srid, wkb } => serde_json::json!({ "srid": srid, "wkb": b64(wkb) }),
        }
    }

    /// Text that identifies the value in a message key; stable across
    /// sources, so the same row always lands on the same partition.
    pub fn key_text(&self) -> Cow<'_, str> {
        match self {
            Value::Null => Cow::Borrowed("null"),
            Value::Int(v) => Cow::Owned(v.to_string()),
            Value::UInt(v) => Cow::Owned(v.to_string()),
            Value::Float(v) => Cow::Owned(v.to_string()),
            Value::Decimal(s) | Value::Text(s) | Value::Temporal(s) => Cow::Borrowed(s),
            other => Cow::Owned(other.to_json().to_string()),
        }
    }

    fn scalar(&self) -> Scalar<'_> {
        match self {
            Value::Null | Value::Geometry { .. } => Scalar::Null,
            Value::Int(v) => Scalar::Int(i128::from(*v)),
            Value::UInt(v) => Scalar::Int(i128::from(*v)),
            Value::Float(v) => Scalar::Float(*v),
            Value::Decimal(s) | Value::Text(s) | Value::Temporal(s) => Scalar::Text(Cow::Borrowed(s)),
            Value::Bytes(b) => Scalar::Text(String::from_utf8_lossy(b)),
            Value::Json(j) => Scalar::Text(Cow::Owned(j.to_string())),
        }
    }
}

/// Serializes exactly as [`Value::to_json`], without building it first.
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match self {
            Value::Null => s.serialize_unit(),
            Value::Int(v) => s.serialize_i64(*v),
            Value::UInt(v) => s.serialize_u64(*v),
            Value::Float(v) if v.is_finite() => s.serialize_f64(*v),
            Value::Float(_) => s.serialize_unit(),
            Value::Decimal(t) | Value::Text(t) | Value::Temporal(t) => s.serialize_str(t),
            Value::Bytes(b) => s.serialize_str(&b64(b)),
            Value::Json(j) => j.serialize(s),
            Value::Geometry { srid, wkb } => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("srid", srid)?;
                m.serialize_entry("wkb", &b64(wkb))?;
                m.end()
            }
        }
    }
}

/// A table's shape, as known when the change was read.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub db: String,
    pub table: String,
    /// Column names in table order.
    pub columns: Vec<String>,
    /// Indexes into `columns` of the primary key, in key order; empty when
    /// the table has none.
    pub primary_key: Vec<usize>,
}

impl TableSchema {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// One row image, values in the schema's column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

/// A row image paired with its schema, for the filter.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub schema: &'a TableSchema,
    pub row: &'a Row,
}

impl RowView for RowRef<'_> {
    fn column(&self, name: &str) -> Option<Scalar<'_>> {
        let i = self.schema.column_index(name)?;
        self.row.0.get(i).map(Value::scalar)
    }
}

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
    /// Read by a snapshot (`incr: false`).
    Read,
}

impl Op {
    /// The code in messages: `c`, `u`, `d`, `r`.
    pub const fn code(self) -> &'static str {
        match self {
            Op::Insert => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
        }
    }
}

/// Where in the source a change was read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourcePosition {
    pub server_id: u32,
    /// GTID of the transaction (`0-1-42` on MariaDB, `uuid:42` on MySQL);
    /// empty when GTID is off or for snapshot reads. Shared by every row of
    /// a transaction, like `file`, so a row costs no string copies.
    pub gtid: Arc<str>,
    pub file: Arc<str>,
    pub pos: u64,
    /// Index of the row within its event.
    pub row: u32,
    /// Source commit time (ms since the epoch).
    pub ts_ms: i64,
    pub snapshot: bool,
}

/// A row change, or a DDL statement, with everything later stages need.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Row(RowChange),
    Ddl(DdlChange),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub schema: Arc<TableSchema>,
    pub op: Op,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub source: SourcePosition,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DdlChange {
    pub db: String,
    /// The table the statement changes, when it names one.
    pub table: Option<String>,
    pub statement: String,
    pub source: SourcePosition,
}

impl RowChange {
    pub fn db(&self) -> &str {
        &self.schema.db
    }
    pub fn table(&self) -> &str {
        &self.schema.table
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn serialize_matches_to_json_for_every_kind() {
        let values = [
            Value::Null,
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Float(1.5),
            Value::Decimal("-12.3400".into()),
            Value::Text("héllo 😀".into()),
            Value::Bytes(vec![0, 255, 7]),
            Value::Json(serde_json::json!({"a": [1, null]})),
            Value::Temporal("2026-11-21T07:30:00.123456Z".into()),
            Value::Geometry { srid: 4326, wkb: vec![1, 2] },
        ];
        for v in values {
            assert_eq!(serde_json::to_value(&v).unwrap(), v.to_json(), "{v:?}");
        }
        assert_eq!(Value::UInt(u64::MAX).to_json().to_string(), "18446744073709551615");
        assert_eq!(Value::Bytes(vec![0, 255, 7]).to_json(), "AP8H");
    }

    #[test]
    fn rows_are_visible_to_filters_by_column_name() {
        let schema = TableSchema {
            db: "d".into(),
            table: "t".into(),
            columns: vec!["id".into(), "amount".into(), "big".into()],
            primary_key: vec![0],
        };
        let row = Row(vec![Value::Int(1), Value::Decimal("99.50".into()), Value::UInt(u64::MAX)]);
        let view = RowRef { schema: &schema, row: &row };
        let f = crate::filter::RowFilter::parse("amount > 99 AND big = 18446744073709551615 AND id IN (1)").unwrap();
        assert!(f.matches(&view));
        assert!(!crate::filter::RowFilter::parse("missing = 1").unwrap().matches(&view));
    }
}
