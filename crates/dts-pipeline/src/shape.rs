//! The JSON message of a change.
//!
//! Nested (`flat_format: false`, the default):
//! `{"before":{..}|null,"after":{..}|null,"op":"c|u|d|r","ts_ms":..,"source":{..}}`,
//! and for DDL `{"op":"ddl","ddl":"..","ts_ms":..,"source":{..}}`.
//!
//! Flat (`flat_format: true`): the row's columns at the top level (the new
//! row; the old row for deletes, with `"__deleted":true`) plus `__db`,
//! `__table`, `__op`, `__ts_ms` and `__gtid`.

use std::collections::{HashMap, HashSet};

use dts_core::event::{Change, DdlChange, Row, RowChange, SourcePosition, TableSchema};
use dts_core::spec::KafkaSpec;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// Drops `exclude_columns` and encodes messages in the task's format.
#[derive(Debug, Clone)]
pub struct Shaper {
    flat: bool,
    /// Excluded in every table.
    everywhere: HashSet<String>,
    /// Excluded in one table: column -> the (db, table) pairs it is
    /// excluded from. Keyed by column so the per-row check borrows only.
    per_table: HashMap<String, Vec<(String, String)>>,
}

impl Shaper {
    pub fn new(kafka: &KafkaSpec) -> Self {
        let mut everywhere = HashSet::new();
        let mut per_table: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for name in &kafka.exclude_columns {
            let parts: Vec<&str> = name.split('.').collect();
            match parts.as_slice() {
                [db, table, column] => {
                    per_table.entry((*column).to_owned()).or_default().push(((*db).to_owned(), (*table).to_owned()));
                }
                _ => {
                    everywhere.insert(name.clone());
                }
            }
        }
        Self { flat: kafka.flat_format, everywhere, per_table }
    }

    /// Which columns of `schema` go into messages (true = keep).
    pub fn kept_columns(&self, schema: &TableSchema) -> Vec<bool> {
        schema
            .columns
            .iter()
            .map(|c| {
                !self.everywhere.contains(c)
                    && !self
                        .per_table
                        .get(c)
                        .is_some_and(|tables| tables.iter().any(|(d, t)| *d == schema.db && *t == schema.table))
            })
            .collect()
    }

    /// Encodes a change as JSON. In the nested format `now_ms` is the
    /// message's `ts_ms` (when dts processed it) and `source.ts_ms` the
    /// source commit time; the flat format's `__ts_ms` is the commit time.
    pub fn encode(&self, change: &Change, now_ms: i64) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(change, now_ms, &mut out);
        out
    }

    /// [`Shaper::encode`] into `out` (cleared first), so one buffer serves
    /// every message of a run.
    pub fn encode_into(&self, change: &Change, now_ms: i64, out: &mut Vec<u8>) {
        out.clear();
        let encoded = match change {
            Change::Row(row) => {
                // Most tasks exclude nothing: no per-row column list then.
                let keep =
                    (!self.everywhere.is_empty() || !self.per_table.is_empty()).then(|| self.kept_columns(&row.schema));
                let keep = keep.as_deref();
                if self.flat {
                    serde_json::to_writer(&mut *out, &FlatRow { change: row, keep })
                } else {
                    serde_json::to_writer(&mut *out, &NestedRow { change: row, keep, now_ms })
                }
            }
            Change::Ddl(ddl) => {
                if self.flat {
                    serde_json::to_writer(&mut *out, &FlatDdl { ddl })
                } else {
                    serde_json::to_writer(&mut *out, &NestedDdl { ddl, now_ms })
                }
            }
        };
        // Our Serialize impls only fail on a broken writer, and Vec never fails.
        if encoded.is_err() {
            out.clear();
        }
    }
}

/// Which columns go out (`None`: all of them).
type Keep<'a> = Option<&'a [bool]>;

struct Image<'a> {
    schema: &'a TableSchema,
    row: &'a Row,
    keep: Keep<'a>,
}

impl Serialize for Image<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        write_columns(&mut m, self.schema, self.row, self.keep)?;
        m.end()
    }
}

fn write_columns<M: SerializeMap>(m: &mut M, schema: &TableSchema, row: &Row, keep: Keep<'_>) -> Result<(), M::Error> {
    for (i, (name, value)) in schema.columns.iter().zip(&row.0).enumerate() {
        if keep.is_none_or(|k| k.get(i).copied().unwrap_or(false)) {
            m.serialize_entry(name, value)?;
        }
    }
    Ok(())
}

fn image<'a>(schema: &'a TableSchema, row: Option<&'a Row>, keep: Keep<'a>) -> Option<Image<'a>> {
    row.map(|row| Image { schema, row, keep })
}

struct Source<'a> {
    db: &'a str,
    table: Option<&'a str>,
    pos: &'a SourcePosition,
}

impl Serialize for Source<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(9))?;
        m.serialize_entry("db", self.db)?;
        m.serialize_entry("table", &self.table)?;
        m.serialize_entry("server_id", &self.pos.server_id)?;
        m.serialize_entry("gtid", &*self.pos.gtid)?;
        m.serialize_entry("file", &*self.pos.file)?;
        m.serialize_entry("pos", &self.pos.pos)?;
        m.serialize_entry("row", &self.pos.row)?;
        m.serialize_entry("ts_ms", &self.pos.ts_ms)?;
        m.serialize_entry("snapshot", &self.pos.snapshot)?;
        m.end()
    }
}

struct NestedRow<'a> {
    change: &'a RowChange,
    keep: Keep<'a>,
    now_ms: i64,
}

impl Serialize for NestedRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.change;
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("before", &image(&c.schema, c.before.as_ref(), self.keep))?;
        m.serialize_entry("after", &image(&c.schema, c.after.as_ref(), self.keep))?;
        m.serialize_entry("op", c.op.code())?;
        m.serialize_entry("ts_ms", &self.now_ms)?;
        m.serialize_entry("source", &Source { db: c.db(), table: Some(c.table()), pos: &c.source })?;
        m.end()
    }
}

struct FlatRow<'a> {
    change: &'a RowChange,
    keep: Keep<'a>,
}

impl Serialize for FlatRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.change;
        let deleted = c.op == dts_core::event::Op::Delete;
        let mut m = s.serialize_map(None)?;
        let image = if deleted { c.before.as_ref() } else { c.after.as_ref() };
        if let Some(row) = image {
            write_columns(&mut m, &c.schema, row, self.keep)?;
        }
        m.serialize_entry("__db", c.db())?;
        m.serialize_entry("__table", c.table())?;
        m.serialize_entry("__op", c.op.code())?;
        m.serialize_entry("__ts_ms", &c.source.ts_ms)?;
        m.serialize_entry("__gtid", &*c.source.gtid)?;
        if deleted {
            m.serialize_entry("__deleted", &true)?;
        }
        m.end()
    }
}

struct NestedDdl<'a> {
    ddl: &'a DdlChange,
    now_ms: i64,
}

impl Serialize for NestedDdl<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.ddl;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("op", "ddl")?;
        m.serialize_entry("ddl", &d.statement)?;
        m.serialize_entry("ts_ms", &self.now_ms)?;
        m.serialize_entry("source", &Source { db: &d.db, table: d.table.as_deref(), pos: &d.source })?;
        m.end()
    }
}

struct FlatDdl<'a> {
    ddl: &'a DdlChange,
}

impl Serialize for FlatDdl<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.ddl;
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("__db", &d.db)?;
        m.serialize_entry("__table", &d.table)?;
        m.serialize_entry("__op", "ddl")?;
        m.serialize_entry("__ddl", &d.statement)?;
        m.serialize_entry("__ts_ms", &d.source.ts_ms)?;
        m.serialize_entry("__gtid", &*d.source.gtid)?;
        m.end()
    }
}

#[cfg(test)]
mod tests;
