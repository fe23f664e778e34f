//! On-demand snapshots: `POST /v1/task/{id}/snapshot` asks a running task
//! to copy some of its tables again (or a slice of them) while it streams.

use serde::{Deserialize, Serialize};

use crate::code::ErrorCode;
use crate::filter::RowFilter;
use crate::spec::{echo, max_len, SpecError};

/// Most tables one request may name.
pub const MAX_TABLES: usize = 1000;

/// The body of `POST /v1/task/{id}/snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotBody {
    /// `db.table` names, each selected by the task's filters.
    pub tables: Vec<String>,
    /// A row filter in the task's filter language: only rows it accepts
    /// are copied.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// A request as stored with the task and handed to its worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// Unique per task and increasing: the request's time in ms.
    pub id: i64,
    /// `(db, table)` pairs.
    pub tables: Vec<(String, String)>,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

impl SnapshotBody {
    /// Parses a request body, naming the field a shape error is in.
    pub fn parse(body: &[u8]) -> Result<Self, SpecError> {
        crate::spec::parse_json(body)
    }

    /// Checks the body against the filters of the task it is for.
    pub fn validate_for(&self, id: i64, filters: &[crate::spec::FilterRule]) -> Result<SnapshotRequest, SpecError> {
        let matchers: Vec<(&str, Option<crate::matcher::TableMatcher>)> =
            filters.iter().map(|f| (f.dbname.as_str(), crate::matcher::TableMatcher::parse(&f.table).ok())).collect();
        self.validate(id, |db, table| {
            matchers.iter().any(|(d, m)| *d == db && m.as_ref().is_some_and(|m| m.matches(table)))
        })
    }

    /// Checks the body; `selected(db, table)` says whether the task's
    /// filters select a table.
    pub fn validate(&self, id: i64, selected: impl Fn(&str, &str) -> bool) -> Result<SnapshotRequest, SpecError> {
        let bad = |field: &str, message: String| Err(SpecError::new(ErrorCode::InvalidField, field, message));
        if self.tables.is_empty() || self.tables.len() > MAX_TABLES {
            return bad("tables", format!("must name 1 to {MAX_TABLES} tables as \"db.table\""));
        }
        let mut tables: Vec<(String, String)> = Vec::with_capacity(self.tables.len());
        for (i, name) in self.tables.iter().enumerate() {
            let field = format!("tables[{i}]");
            let parts = name.split_once('.').filter(|(db, table)| {
                let ok =
                    |s: &str| !s.is_empty() && s.chars().count() <= max_len::DBNAME && !s.chars().any(char::is_control);
                ok(db) && ok(table)
            });
            let Some((db, table)) = parts else {
                return bad(&field, format!("must be \"db.table\" (names of 1 to 64 characters), got {}", echo(name)));
            };
            if !selected(db, table) {
                return bad(&field, format!("{} is not selected by the task's filters", echo(name)));
            }
            let pair = (db.to_owned(), table.to_owned());
            if !tables.contains(&pair) {
                tables.push(pair);
            }
        }
        let condition = match self.condition.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) if text.chars().count() > max_len::FILTER => {
                return Err(SpecError::new(
                    ErrorCode::InvalidRowFilter,
                    "where",
                    format!("must be at most {} characters", max_len::FILTER),
                ));
            }
            Some(text) => {
                RowFilter::parse(text)
                    .map_err(|e| SpecError::new(ErrorCode::InvalidRowFilter, "where", e.to_string()))?;
                Some(text.to_owned())
            }
        };
        Ok(SnapshotRequest { id, tables, condition })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn body(tables: &[&str], condition: Option<&str>) -> SnapshotBody {
        SnapshotBody { tables: tables.iter().map(|t| (*t).to_owned()).collect(), condition: condition.map(Into::into) }
    }

    #[test]
    fn requests_name_selected_tables_and_a_parsable_slice() {
        let shop = |db: &str, _: &str| db == "shop";
        let r = body(&["shop.orders", "shop.orders", "shop.a.b"], Some(" id > 5 ")).validate(7, shop).unwrap();
        assert_eq!(r.tables, [("shop".into(), "orders".into()), ("shop".into(), "a.b".into())]);
        assert_eq!((r.id, r.condition.as_deref()), (7, Some("id > 5")));
        let err = |b: SnapshotBody| b.validate(1, shop).unwrap_err();
        assert_eq!(err(body(&[], None)).field, "tables");
        assert_eq!(err(body(&["orders"], None)).field, "tables[0]");
        assert_eq!(err(body(&["shop.ok", ".x"], None)).field, "tables[1]");
        assert!(err(body(&["other.t"], None)).message.contains("not selected"));
        let e = err(body(&["shop.t"], Some("id >")));
        assert_eq!((e.code, e.field.as_str()), (ErrorCode::InvalidRowFilter, "where"));
        assert_eq!(body(&["shop.t"], Some("  ")).validate(1, shop).unwrap().condition, None);
        let parsed: Result<SnapshotBody, _> = serde_json::from_str(r#"{"tables":["a.b"],"other":1}"#);
        assert!(parsed.is_err(), "unknown fields are refused");
    }
}
