//! dts's own schema history: the shape each selected table had at a
//! checkpoint, carried inside the checkpoint itself.
//!
//! The reader updates it in binlog order (a table's shape is recorded when
//! its rows are first decoded and after every DDL on it), and every commit's
//! checkpoint holds the history as of that commit. A task resumed from a
//! checkpoint, on this node or another, therefore decodes the events after
//! it with the shapes they were written with, even when the live catalogue
//! has moved on (columns changed, table renamed or dropped).
//!
//! Clones are cheap (shared, copy-on-write), so a checkpoint per
//! transaction costs a pointer copy, not a copy of every shape.

use std::collections::BTreeMap;
use std::sync::Arc;

use dts_core::event::TableSchema;
use serde::{Deserialize, Serialize};

use crate::ddl::{Effect, TableName};
use crate::schema::{ColumnInfo, TableInfo};

/// One table's recorded shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub info: Arc<TableInfo>,
    /// A DDL touched the table after this shape was recorded: the next rows
    /// event re-derives the shape before trusting it.
    pub stale: bool,
}

/// Shapes by table, as of one point in the binlog.
#[derive(Debug, Clone, Default)]
pub struct SchemaHistory {
    tables: Arc<BTreeMap<TableName, Entry>>,
}

impl PartialEq for SchemaHistory {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.tables, &other.tables) || self.tables == other.tables
    }
}

// Shapes hold no floating point: equality is total.
impl Eq for SchemaHistory {}

impl SchemaHistory {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn get(&self, db: &str, table: &str) -> Option<&Entry> {
        self.tables.get(&TableName { db: db.to_owned(), table: table.to_owned() })
    }

    pub fn record(&mut self, info: Arc<TableInfo>) {
        let name = TableName { db: info.schema.db.clone(), table: info.schema.table.clone() };
        Arc::make_mut(&mut self.tables).insert(name, Entry { info, stale: false });
    }

    /// Applies a DDL statement's effects. Only tables already recorded are
    /// touched, so the history holds no more than the tables the task read.
    pub fn apply(&mut self, effects: &[Effect]) {
        for effect in effects {
            let applies = match effect {
                Effect::Changed(t) | Effect::Dropped(t) => self.tables.contains_key(t),
                Effect::Renamed { from, to } => self.tables.contains_key(from) || self.tables.contains_key(to),
                Effect::DatabaseDropped(db) => self.tables.keys().any(|t| &t.db == db),
            };
            if !applies {
                continue;
            }
            let tables = Arc::make_mut(&mut self.tables);
            match effect {
                Effect::Changed(t) => {
                    if let Some(e) = tables.get_mut(t) {
                        e.stale = true;
                    }
                }
                Effect::Dropped(t) => {
                    tables.remove(t);
                }
                Effect::Renamed { from, to } => {
                    tables.remove(to);
                    if let Some(e) = tables.remove(from) {
                        // The same columns under the new name, until its rows say otherwise.
                        let schema = TableSchema {
                            db: to.db.clone(),
                            table: to.table.clone(),
                            ..e.info.schema.as_ref().clone()
                        };
                        let info = TableInfo { schema: Arc::new(schema), columns: e.info.columns.clone() };
                        tables.insert(to.clone(), Entry { info: Arc::new(info), stale: true });
                    }
                }
                Effect::DatabaseDropped(db) => tables.retain(|t, _| &t.db != db),
            }
        }
    }
}

/// The stored form: a list, so table names need no escaping as map keys.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredTable {
    db: String,
    table: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    stale: bool,
    columns: Vec<ColumnInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    primary_key: Vec<usize>,
}

impl Serialize for SchemaHistory {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.tables.iter().map(|(name, e)| StoredTable {
            db: name.db.clone(),
            table: name.table.clone(),
            stale: e.stale,
            columns: e.info.columns.clone(),
            primary_key: e.info.schema.primary_key.clone(),
        }))
    }
}

impl<'de> Deserialize<'de> for SchemaHistory {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = Vec::<StoredTable>::deserialize(d)?;
        let mut tables = BTreeMap::new();
        for t in stored {
            if t.primary_key.iter().any(|&i| i >= t.columns.len()) {
                return Err(serde::de::Error::custom(format!("{}.{}: primary key column out of range", t.db, t.table)));
            }
            let schema = TableSchema {
                db: t.db.clone(),
                table: t.table.clone(),
                columns: t.columns.iter().map(|c| c.name.clone()).collect(),
                primary_key: t.primary_key,
            };
            let info = TableInfo { schema: Arc::new(schema), columns: t.columns };
            tables.insert(TableName { db: t.db, table: t.table }, Entry { info: Arc::new(info), stale: t.stale });
        }
        Ok(Self { tables: Arc::new(tables) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::schema::ColumnKind;

    fn info(db: &str, table: &str, cols: &[&str]) -> Arc<TableInfo> {
        let columns: Vec<ColumnInfo> = cols
            .iter()
            .map(|n| ColumnInfo {
                name: (*n).into(),
                kind: ColumnKind::Int(4),
                unsigned: false,
                charset: None,
                labels: vec![],
                fsp: 0,
            })
            .collect();
        Arc::new(TableInfo {
            schema: Arc::new(TableSchema {
                db: db.into(),
                table: table.into(),
                columns: cols.iter().map(|c| (*c).into()).collect(),
                primary_key: vec![0],
            }),
            columns,
        })
    }

    fn name(db: &str, table: &str) -> TableName {
        TableName { db: db.into(), table: table.into() }
    }

    #[test]
    fn ddl_effects_move_mark_and_drop_shapes() {
        let mut h = SchemaHistory::default();
        h.record(info("d", "t", &["id", "a"]));
        h.record(info("d", "_t_gho", &["id", "a", "b"]));
        h.record(info("e", "x", &["id"]));
        let before = h.clone();
        h.apply(&[
            Effect::Renamed { from: name("d", "t"), to: name("d", "_t_del") },
            Effect::Renamed { from: name("d", "_t_gho"), to: name("d", "t") },
        ]);
        assert_eq!(h.get("d", "t").unwrap().info.schema.columns, ["id", "a", "b"]);
        assert_eq!(h.get("d", "t").unwrap().info.schema.table, "t");
        assert!(h.get("d", "t").unwrap().stale);
        assert_eq!(h.get("d", "_t_del").unwrap().info.schema.columns, ["id", "a"]);
        assert!(h.get("d", "_t_gho").is_none());
        assert_eq!(before.get("d", "t").unwrap().info.schema.columns, ["id", "a"], "earlier checkpoints keep theirs");
        h.apply(&[Effect::Dropped(name("d", "_t_del")), Effect::Changed(name("nope", "nope"))]);
        assert!(h.get("d", "_t_del").is_none());
        h.apply(&[Effect::DatabaseDropped("e".into())]);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn round_trips_through_json() {
        let mut h = SchemaHistory::default();
        h.record(info("d", "学生", &["id", "名字"]));
        h.apply(&[Effect::Changed(name("d", "学生"))]);
        let json = serde_json::to_string(&h).unwrap();
        let back: SchemaHistory = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert!(back.get("d", "学生").unwrap().stale);
        let bad = r#"[{"db":"d","table":"t","columns":[],"primary_key":[3]}]"#;
        assert!(serde_json::from_str::<SchemaHistory>(bad).is_err());
    }
}
