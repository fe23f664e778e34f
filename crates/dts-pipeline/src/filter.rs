//! The `filters` of a task: which databases, tables and rows pass.

use dts_core::event::{Op, RowChange, RowRef};
use dts_core::filter::RowFilter;
use dts_core::matcher::TableMatcher;
use dts_core::spec::{FilterRule, SpecError};
use dts_core::ErrorCode;

#[derive(Debug, Clone)]
struct Rule {
    db: String,
    table: TableMatcher,
    rows: Option<RowFilter>,
}

/// Compiled `filters`. A row passes when any entry matches its database and
/// table and that entry's row filter (if any) holds.
#[derive(Debug, Clone)]
pub struct TaskFilter {
    rules: Vec<Rule>,
    /// Some entry has a row filter (fixed at construction: asked per row).
    filters_rows: bool,
}

impl TaskFilter {
    pub fn new(rules: &[FilterRule]) -> Result<Self, SpecError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let table = TableMatcher::parse(&r.table).map_err(|(code, message)| SpecError {
                    code,
                    field: format!("task.filters[{i}].match"),
                    message,
                })?;
                let rows = r.row_filter().map_err(|e| SpecError {
                    code: ErrorCode::InvalidRowFilter,
                    field: format!("task.filters[{i}].filter"),
                    message: e.to_string(),
                })?;
                Ok(Rule { db: r.dbname.clone(), table, rows })
            })
            .collect::<Result<Vec<Rule>, SpecError>>()?;
        let filters_rows = rules.iter().any(|r| r.rows.is_some());
        Ok(Self { rules, filters_rows })
    }

    /// True when some entry selects the table, whatever its rows: the source
    /// skips decoding events of other tables altogether.
    pub fn selects_table(&self, db: &str, table: &str) -> bool {
        self.rules.iter().any(|r| r.db == db && r.table.matches(table))
    }

    /// True when some entry filters rows; without one, every row of a
    /// selected table passes and [`TaskFilter::passes`] need not run.
    pub fn filters_rows(&self) -> bool {
        self.filters_rows
    }

    /// True when some entry names the database (for DDL that names no table).
    pub fn selects_database(&self, db: &str) -> bool {
        self.rules.iter().any(|r| r.db == db)
    }

    /// True when the change is replicated. Inserts and snapshot reads test
    /// the new row, deletes the old one; an update passes when either image
    /// passes, so consumers also see a row leave the filtered set.
    pub fn passes(&self, change: &RowChange) -> bool {
        let schema = change.schema.as_ref();
        let image_passes = |rows: &Option<RowFilter>, image: Option<&dts_core::event::Row>| match (rows, image) {
            (None, _) => true,
            (Some(f), Some(row)) => f.matches(&RowRef { schema, row }),
            (Some(_), None) => false,
        };
        self.rules.iter().filter(|r| r.db == schema.db && r.table.matches(&schema.table)).any(|r| match change.op {
            Op::Insert | Op::Read => image_passes(&r.rows, change.after.as_ref()),
            Op::Delete => image_passes(&r.rows, change.before.as_ref()),
            Op::Update => image_passes(&r.rows, change.before.as_ref()) || image_passes(&r.rows, change.after.as_ref()),
        })
    }

    /// The row filters that apply to a table, for pushing into snapshot
    /// queries; `None` in the list means "every row" (no pushdown possible).
    pub fn row_filters_for(&self, db: &str, table: &str) -> Vec<Option<&RowFilter>> {
        self.rules.iter().filter(|r| r.db == db && r.table.matches(table)).map(|r| r.rows.as_ref()).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use dts_core::event::{Row, SourcePosition, TableSchema, Value};

    use super::*;

    fn rule(db: &str, table: &str, filter: &str) -> FilterRule {
        FilterRule { dbname: db.into(), table: table.into(), filter: Some(filter.into()) }
    }

    fn change(db: &str, table: &str, op: Op, before: Option<i64>, after: Option<i64>) -> RowChange {
        let schema = Arc::new(TableSchema {
            db: db.into(),
            table: table.into(),
            columns: vec!["id".into(), "grade".into()],
            primary_key: vec![0],
        });
        let img = |g: i64| Row(vec![Value::Int(1), Value::Int(g)]);
        RowChange { schema, op, before: before.map(img), after: after.map(img), source: SourcePosition::default() }
    }

    #[test]
    fn databases_tables_and_rows_are_selected() {
        let f = TaskFilter::new(&[rule("school", r"/students_\d+/", "grade >= 3"), rule("school", "check_delay", "")])
            .unwrap();
        assert!(f.selects_table("school", "students_12"));
        assert!(f.selects_table("school", "check_delay"));
        assert!(!f.selects_table("school", "students_x"));
        assert!(!f.selects_table("other", "check_delay"));
        assert!(f.passes(&change("school", "students_1", Op::Insert, None, Some(3))));
        assert!(!f.passes(&change("school", "students_1", Op::Insert, None, Some(2))));
        assert!(f.passes(&change("school", "students_1", Op::Read, None, Some(5))));
        assert!(f.passes(&change("school", "check_delay", Op::Insert, None, Some(0))), "empty filter: every row");
        assert!(!f.passes(&change("other", "check_delay", Op::Insert, None, Some(9))));
        assert!(f.filters_rows());
        let plain = TaskFilter::new(&[rule("school", "check_delay", ""), rule("school", "/x/", " ")]).unwrap();
        assert!(!plain.filters_rows(), "empty and blank filters filter nothing");
    }

    #[test]
    fn deletes_test_the_old_row_and_updates_either() {
        let f = TaskFilter::new(&[rule("d", "t", "grade >= 3")]).unwrap();
        assert!(f.passes(&change("d", "t", Op::Delete, Some(4), None)));
        assert!(!f.passes(&change("d", "t", Op::Delete, Some(1), None)));
        assert!(f.passes(&change("d", "t", Op::Update, Some(4), Some(1))), "leaves the set");
        assert!(f.passes(&change("d", "t", Op::Update, Some(1), Some(4))), "enters the set");
        assert!(!f.passes(&change("d", "t", Op::Update, Some(1), Some(2))));
    }

    #[test]
    fn any_matching_entry_lets_a_row_through() {
        let f = TaskFilter::new(&[rule("d", "t", "grade = 1"), rule("d", "/t|u/", "grade = 2")]).unwrap();
        assert!(f.passes(&change("d", "t", Op::Insert, None, Some(1))));
        assert!(f.passes(&change("d", "t", Op::Insert, None, Some(2))));
        assert!(!f.passes(&change("d", "t", Op::Insert, None, Some(3))));
        assert_eq!(f.row_filters_for("d", "t").len(), 2);
    }
}
