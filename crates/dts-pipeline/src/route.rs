//! Topic, message key and partition of a change.
//!
//! - Topic: `topic_mode` 1 gives `{db}_{table}`, 0 gives `{db}`, absent the
//!   fixed `topic`. Characters Kafka does not allow in topic names become `_`.
//! - Key: `table` mode keys by `db.table`; `primary_key` by the key's values;
//!   `column` by `partition_columns`' values, falling back (per table) to
//!   `producer_partition_by_fallback` when the table lacks one of them.
//!   Tables without a primary key fall back to `table`. One value keys as its
//!   text, several as a JSON array of their values.
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
        Self { topic, key }
    }

    pub fn topic<'a>(&'a self, db: &str, table: Option<&str>) -> Cow<'a, str> {
        match &self.topic {
            TopicRule::Fixed(t) => Cow::Borrowed(t),
            TopicRule::PerDatabase => Cow::Owned(sanitize(db)),
            TopicRule::PerTable => match table {
                Some(table) => Cow::Owned(sanitize(&format!("{db}_{table}"))),
                // A DDL naming no table (e.g. CREATE DATABASE) goes to the database's name.
                None => Cow::Owned(sanitize(db)),
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
            KeyRule::PrimaryKey => pk_key(schema, row),
            KeyRule::Columns { columns, fallback } => {
                let idx: Option<Vec<usize>> = columns.iter().map(|c| schema.column_index(c)).collect();
                match (idx, fallback) {
                    (Some(idx), _) => values_key(row, &idx),
                    (None, PartitionFallback::PrimaryKey) => pk_key(schema, row),
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

/// Kafka topic names hold `[a-zA-Z0-9._-]`, at most 249 characters.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .take(249)
        .collect()
}

#[cfg(test)]
mod tests;
