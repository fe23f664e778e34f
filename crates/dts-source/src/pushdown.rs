//! Row filters pushed into snapshot queries as SQL `WHERE` clauses.
//!
//! A pushed clause may only ever keep *more* rows than the dts filter does
//! (the filter is always applied again to every row read): MySQL compares
//! text case-insensitively under the usual collations and converts text to
//! numbers differently, so only these forms are pushed:
//! - exact: comparisons, `IN`, `BETWEEN` of integer, DECIMAL and DOUBLE
//!   columns with numeric literals (dts compares decimals exactly, as MySQL
//!   does, and prints a float literal in the shortest form that reads back
//!   as the same number); `IS [NOT] NULL`; `NOT` of an exact form. FLOAT
//!   columns are never pushed: MySQL compares their single-precision value
//!   widened to double (`0.1` stored is not `= 0.1`), dts their decoded one;
//! - superset: text `=`, `IN` and `LIKE` with string literals (a
//!   case-insensitive match keeps every case-sensitive match);
//! - `AND` pushes whichever sides it can; `OR` only when both sides can.

use dts_core::filter::{CmpOp, Expr, Operand, RowFilter};

use crate::schema::{ColumnKind, TableInfo};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pushed {
    Exact(String),
    Superset(String),
}

impl Pushed {
    fn sql(&self) -> &str {
        match self {
            Pushed::Exact(s) | Pushed::Superset(s) => s,
        }
    }
    fn is_exact(&self) -> bool {
        matches!(self, Pushed::Exact(_))
    }
}

/// The `WHERE` condition for a table read by the snapshot, or `None` to read
/// every row. `filters` holds the row filter of every entry matching the
/// table (`None` for an entry without one).
pub fn where_clause(filters: &[Option<&RowFilter>], table: &TableInfo) -> Option<String> {
    let mut parts = Vec::new();
    for f in filters {
        // An entry without a filter, or one that cannot be pushed, needs every row.
        let pushed = push(f.as_ref()?.expr(), table)?;
        parts.push(format!("({})", pushed.sql()));
    }
    (!parts.is_empty()).then(|| parts.join(" OR "))
}

fn kind(table: &TableInfo, column: &str) -> Option<ColumnKind> {
    table.columns.iter().find(|c| c.name == column).map(|c| c.kind)
}

fn is_numeric(kind: Option<ColumnKind>) -> bool {
    matches!(kind, Some(ColumnKind::Int(_) | ColumnKind::Double | ColumnKind::Decimal | ColumnKind::Year))
}

fn is_text(kind: Option<ColumnKind>) -> bool {
    matches!(kind, Some(ColumnKind::Text | ColumnKind::Enum))
}

/// A numeric literal as SQL for a column of `kind`.
fn number(op: &Operand, kind: Option<ColumnKind>) -> Option<String> {
    match op {
        // MySQL compares a DOUBLE with an integer as doubles: past 2^53 the
        // integer rounds, where dts compares exactly.
        Operand::Int(v) if kind == Some(ColumnKind::Double) && v.unsigned_abs() > 1 << 53 => None,
        Operand::Int(v) => Some(v.to_string()),
        // `Display` writes plain decimal digits (no exponent, which MySQL
        // would read as a DOUBLE); past 65 digits MySQL reads DOUBLE too.
        Operand::Float(v) if v.is_finite() => Some(v.to_string()).filter(|t| t.len() <= 60),
        _ => None,
    }
}

fn string(op: &Operand) -> Option<String> {
    match op {
        Operand::Str(s) => Some(format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))),
        _ => None,
    }
}

fn column(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn cmp_sql(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::Ne => "<>",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}

/// `a op b` read from the column's side.
fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        other => other,
    }
}

/// `(a) op (b) op ...`, or nothing when no term was pushed.
fn joined(parts: &[Pushed], op: &str, exact: bool) -> Option<Pushed> {
    match parts {
        [] => return None,
        [one] => {
            return Some(if exact {
                Pushed::Exact(one.sql().to_owned())
            } else {
                Pushed::Superset(one.sql().to_owned())
            })
        }
        _ => {}
    }
    let sql = parts.iter().map(|p| format!("({})", p.sql())).collect::<Vec<_>>().join(op);
    Some(if exact { Pushed::Exact(sql) } else { Pushed::Superset(sql) })
}

fn push(expr: &Expr, t: &TableInfo) -> Option<Pushed> {
    match expr {
        Expr::And(terms) => {
            // Dropping a conjunct keeps more rows: still safe, no longer exact.
            let pushed: Vec<Pushed> = terms.iter().filter_map(|e| push(e, t)).collect();
            let exact = pushed.len() == terms.len() && pushed.iter().all(Pushed::is_exact);
            joined(&pushed, " AND ", exact)
        }
        Expr::Or(terms) => {
            let pushed = terms.iter().map(|e| push(e, t)).collect::<Option<Vec<Pushed>>>()?;
            let exact = pushed.iter().all(Pushed::is_exact);
            joined(&pushed, " OR ", exact)
        }
        Expr::Not(e) => match push(e, t)? {
            Pushed::Exact(sql) => Some(Pushed::Exact(format!("NOT ({sql})"))),
            Pushed::Superset(_) => None,
        },
        Expr::Cmp(a, op, b) => {
            let (name, op, lit) = match (a, b) {
                (Operand::Column(c), lit) if !matches!(lit, Operand::Column(_)) => (c, *op, lit),
                (lit, Operand::Column(c)) if !matches!(lit, Operand::Column(_)) => (c, flip(*op), lit),
                _ => return None,
            };
            let k = kind(t, name);
            if is_numeric(k) {
                number(lit, k).map(|n| Pushed::Exact(format!("{} {} {n}", column(name), cmp_sql(op))))
            } else if is_text(k) && op == CmpOp::Eq {
                string(lit).map(|s| Pushed::Superset(format!("{} = {s}", column(name))))
            } else {
                None
            }
        }
        Expr::In { operand: Operand::Column(name), list, negated } => {
            let k = kind(t, name);
            let not = if *negated { "NOT " } else { "" };
            if is_numeric(k) {
                let items = list.iter().map(|l| number(l, k)).collect::<Option<Vec<_>>>()?;
                Some(Pushed::Exact(format!("{} {not}IN ({})", column(name), items.join(", "))))
            } else if is_text(k) && !negated {
                let items = list.iter().map(string).collect::<Option<Vec<_>>>()?;
                Some(Pushed::Superset(format!("{} IN ({})", column(name), items.join(", "))))
            } else {
                None
            }
        }
        Expr::IsNull { operand: Operand::Column(name), negated } => {
            kind(t, name)?;
            let not = if *negated { "NOT " } else { "" };
            Some(Pushed::Exact(format!("{} IS {not}NULL", column(name))))
        }
        Expr::Like { operand: Operand::Column(name), pattern, negated: false } if is_text(kind(t, name)) => {
            string(&Operand::Str(pattern.clone())).map(|s| Pushed::Superset(format!("{} LIKE {s}", column(name))))
        }
        Expr::Between { operand: Operand::Column(name), low, high, negated } if is_numeric(kind(t, name)) => {
            let k = kind(t, name);
            let (lo, hi) = (number(low, k)?, number(high, k)?);
            let not = if *negated { "NOT " } else { "" };
            Some(Pushed::Exact(format!("{} {not}BETWEEN {lo} AND {hi}", column(name))))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use dts_core::event::TableSchema;

    use super::*;
    use crate::schema::ColumnInfo;

    fn table() -> TableInfo {
        let col = |name: &str, kind| ColumnInfo {
            name: name.into(),
            kind,
            unsigned: false,
            charset: Some("utf8mb4".into()),
            labels: vec![],
            fsp: 0,
        };
        let columns =
            vec![col("id", ColumnKind::Int(4)), col("amount", ColumnKind::Decimal), col("status", ColumnKind::Text)];
        TableInfo {
            schema: Arc::new(TableSchema {
                db: "d".into(),
                table: "t".into(),
                columns: columns.iter().map(|c| c.name.clone()).collect(),
                primary_key: vec![0],
            }),
            columns,
        }
    }

    fn w(filters: &[&str]) -> Option<String> {
        let parsed: Vec<RowFilter> = filters.iter().map(|f| RowFilter::parse(f).unwrap()).collect();
        let refs: Vec<Option<&RowFilter>> = parsed.iter().map(Some).collect();
        where_clause(&refs, &table())
    }

    #[test]
    fn numeric_and_null_tests_are_pushed_exactly() {
        assert_eq!(w(&["id >= 10"]).unwrap(), "(`id` >= 10)");
        assert_eq!(w(&["10 < id"]).unwrap(), "(`id` > 10)");
        assert_eq!(w(&["amount BETWEEN 1.5 AND 9"]).unwrap(), "(`amount` BETWEEN 1.5 AND 9)");
        assert_eq!(w(&["id NOT IN (1, 2)"]).unwrap(), "(`id` NOT IN (1, 2))");
        assert_eq!(w(&["NOT status IS NULL"]).unwrap(), "(NOT (`status` IS NULL))");
    }

    #[test]
    fn only_superset_text_forms_are_pushed() {
        assert_eq!(w(&["status = 'it''s'"]).unwrap(), "(`status` = 'it''s')");
        assert_eq!(w(&["status IN ('a', 'b')"]).unwrap(), "(`status` IN ('a', 'b'))");
        assert_eq!(w(&["status LIKE 'pa%'"]).unwrap(), "(`status` LIKE 'pa%')");
        for unsafe_form in
            ["status != 'a'", "status > 'B'", "status NOT LIKE 'a%'", "status NOT IN ('a')", "NOT status = 'a'"]
        {
            assert_eq!(w(&[unsafe_form]), None, "{unsafe_form}");
        }
        // Numbers against text, text against numbers, columns against columns: never.
        assert_eq!(w(&["status = 1"]), None);
        assert_eq!(w(&["id = 'x'"]), None);
        assert_eq!(w(&["id = amount"]), None);
    }

    /// The longest chain a spec accepts renders without recursion per term.
    #[test]
    fn the_longest_accepted_chain_renders() {
        let n = dts_core::filter::MAX_PREDICATES;
        let chain = (0..n).map(|i| format!("id = {i}")).collect::<Vec<_>>().join(" OR ");
        let sql = w(&[&chain]).unwrap();
        assert_eq!(sql.matches(" OR ").count(), n - 1);
    }

    #[test]
    fn and_pushes_what_it_can_or_needs_both_and_entries_are_ored() {
        assert_eq!(w(&["id > 1 AND status != 'x'"]).unwrap(), "(`id` > 1)");
        assert_eq!(w(&["id > 1 OR status != 'x'"]), None);
        assert_eq!(w(&["id > 1 OR id < -1"]).unwrap(), "((`id` > 1) OR (`id` < -1))");
        assert_eq!(w(&["NOT (id > 1 AND status = 'a')"]), None, "NOT of a superset is not safe");
        assert_eq!(w(&["id = 1", "id = 2"]).unwrap(), "(`id` = 1) OR (`id` = 2)");
        assert_eq!(w(&["id = 1", "status != 'x'"]), None, "one entry needs every row");
        let parsed = RowFilter::parse("id = 1").unwrap();
        assert_eq!(where_clause(&[Some(&parsed), None], &table()), None, "an entry without a filter");
    }
}
