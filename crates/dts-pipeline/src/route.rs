//! Topic, message key and partition of a change.
//!
//! - Topic: `topic_mode` 1 gives `{db}_{table}`, 0 gives `{db}`, absent the
//!   fixed `topic`. Names are escaped reversibly ([`escape_name`]), so no two
//!   databases or tables share a topic by accident.
//! - Key: `table` mode keys by `db.table`; `primary_key` by the key's values;
//!   `column` by `partition_columns`' values, falling back (per table) to
//!   `producer_partition_by_fallback` when the table lacks one of them.
//!   Tables without a primary key fall back to `table`, and so do tables
//!   whose key includes a column of `exclude_columns`: a key never carries
//!   an excluded value. One value keys as its text, several as a JSON array
//!   of their values.
//! - Partition: Kafka's murmur2 of the key, so consumers can compute it and
//!   every change of one key stays in order on one partition. DDL is keyed
//!   by `db.table`, so it shares the table's partition in `table` mode.

use std::borrow::Cow;

use dts_core::event::{Change, Row, RowChange, TableSchema};
use dts_core::spec::{KafkaSpec, PartitionFallback, PartitionMode, TopicMode};

use crate::murmur2::partition_for;

#[derive(Debug, Clone)]
enum TopicRule {
    Fixed(String),
    PerDatabase,
    PerTable,
}

#[derive(Debug, Clone)]
enum KeyRule {
    Table,
    PrimaryKey,
    Columns { columns: Vec<String>, fallback: PartitionFallback },
}

/// The routing decisions of one task.
#[derive(Debug, Clone)]
pub struct Router {
    topic: TopicRule,
    key: KeyRule,
    /// `exclude_columns`: (table as `db.table`, or `None` for every table; column).
    excludes: Vec<(Option<String>, String)>,
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub topic: Cow<'a, str>,
    pub key: Vec<u8>,
}

impl Route<'_> {
    pub fn partition(&self, partitions: u32) -> u32 {
        partition_for(&self.key, partitions)
    }
}

impl Router {
    pub fn new(kafka: &KafkaSpec) -> Self {
        let topic = match (kafka.topic_mode, &kafka.topic) {
            (Some(TopicMode::PerTable), _) => TopicRule::PerTable,
            (Some(TopicMode::PerDatabase), _) => TopicRule::PerDatabase,
            (None, topic) => TopicRule::Fixed(topic.clone().unwrap_or_default()),
        };
        let key = match kafka.partition_mode.unwrap_or(PartitionMode::Table) {
            PartitionMode::Table => KeyRule::Table,
            PartitionMode::PrimaryKey => KeyRule::PrimaryKey,
            PartitionMode::Column => KeyRule::Columns {
                columns: kafka.partition_columns.clone(),
                fallback: kafka.producer_partition_by_fallback.unwrap_or(PartitionFallback::Table),
            },
        };
        let excludes = kafka
            .exclude_columns
            .iter()
            .map(|e| match e.rsplit_once('.') {
                Some((table, column)) => (Some(table.to_owned()), column.to_owned()),
                None => (None, e.clone()),
            })
            .collect();
        Self { topic, key, excludes }
    }

    /// Whether `exclude_columns` drops `column` of this table.
    fn excluded(&self, schema: &TableSchema, column: &str) -> bool {
        self.excludes.iter().any(|(table, c)| {
            c == column
                && table.as_deref().is_none_or(|t| {
                    t.strip_prefix(schema.db.as_str()).and_then(|r| r.strip_prefix('.')) == Some(schema.table.as_str())
                })
        })
    }

    /// The primary-key key, or the table key when the primary key would
    /// carry an excluded value.
    fn pk_key(&self, schema: &TableSchema, row: &Row) -> Vec<u8> {
        if !self.excludes.is_empty() && schema.primary_key.iter().any(|&i| self.excluded(schema, &schema.columns[i])) {
            return table_key(&schema.db, &schema.table);
        }
        pk_key(schema, row)
    }

    pub fn topic<'a>(&'a self, db: &str, table: Option<&str>) -> Cow<'a, str> {
        match &self.topic {
            TopicRule::Fixed(t) => Cow::Borrowed(t),
            TopicRule::PerDatabase => Cow::Owned(fit(escape_name(db))),
            TopicRule::PerTable => match table {
                Some(table) => Cow::Owned(fit(format!("{}_{}", escape_name(db), escape_name(table)))),
                // A DDL naming no table (e.g. CREATE DATABASE) goes to the database's name.
                None => Cow::Owned(fit(escape_name(db))),
            },
        }
    }

    pub fn route<'a>(&'a self, change: &Change) -> Route<'a> {
        match change {
            Change::Row(row) => Route { topic: self.topic(row.db(), Some(row.table())), key: self.row_key(row) },
            Change::Ddl(ddl) => Route {
                topic: self.topic(&ddl.db, ddl.table.as_deref()),
                key: table_key(&ddl.db, ddl.table.as_deref().unwrap_or("")),
            },
        }
    }

    fn row_key(&self, change: &RowChange) -> Vec<u8> {
        let schema = &change.schema;
        // The image that identifies the row: the new one, or the old one for deletes.
        let Some(row) = change.after.as_ref().or(change.before.as_ref()) else {
            return table_key(&schema.db, &schema.table);
        };
        match &self.key {
            KeyRule::Table => table_key(&schema.db, &schema.table),
            KeyRule::PrimaryKey => self.pk_key(schema, row),
            KeyRule::Columns { columns, fallback } => {
                let idx: Option<Vec<usize>> = columns.iter().map(|c| schema.column_index(c)).collect();
                match (idx, fallback) {
                    // Submit refuses partition columns that are excluded.
                    (Some(idx), _) => values_key(row, &idx),
                    (None, PartitionFallback::PrimaryKey) => self.pk_key(schema, row),
                    (None, PartitionFallback::Table) => table_key(&schema.db, &schema.table),
                }
            }
        }
    }
}

fn table_key(db: &str, table: &str) -> Vec<u8> {
    format!("{db}.{table}").into_bytes()
}

fn pk_key(schema: &TableSchema, row: &Row) -> Vec<u8> {
    if schema.primary_key.is_empty() {
        return table_key(&schema.db, &schema.table);
    }
    values_key(row, &schema.primary_key)
}

fn values_key(row: &Row, idx: &[usize]) -> Vec<u8> {
    let value = |i: &usize| row.0.get(*i).unwrap_or(&dts_core::event::Value::Null);
    match idx {
        [one] => value(one).key_text().into_owned().into_bytes(),
        many => {
            let values: Vec<&dts_core::event::Value> = many.iter().map(value).collect();
            serde_json::to_vec(&values).unwrap_or_default()
        }
    }
}

/// A database or table name as a topic name part: Kafka topic names hold
/// `[a-zA-Z0-9._-]`, so every other character (and `.` itself) becomes its
/// UTF-8 bytes as `.XX` (`学生` is `.E5.AD.A6.E7.94.9F`, `a.b` is `a.2Eb`).
/// [`unescape_name`] reverses it.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!(".{b:02X}"));
            }
        }
    }
    out
}

/// The name [`escape_name`] escaped; `None` for text it cannot produce.
pub fn unescape_name(escaped: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut rest = escaped.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'.' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Kafka's 249-character limit: a longer name keeps its first 232
/// characters (never half an escape) and ends in `-` and 16 hex digits of
/// its SHA-256, so distinct long names stay distinct.
fn fit(name: String) -> String {
    const MAX: usize = 249;
    if name.len() <= MAX {
        return name;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let mut cut = MAX - 17;
    // An escape is `.XX`: do not end inside one.
    if let Some(dot) = name[..cut].rfind('.').filter(|&d| d + 3 > cut) {
        cut = dot;
    }
    format!("{}-{hash}", &name[..cut])
}

#[cfg(test)]
mod tests;
