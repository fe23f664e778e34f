//! The row-filter language of a task's `filters[].filter`.
//!
//! A SQL-like boolean expression over the columns of one row:
//! `=, !=, <>, <, <=, >, >=`, `[NOT] IN (...)`, `IS [NOT] NULL`, `[NOT] LIKE`,
//! `[NOT] BETWEEN .. AND ..`, `AND`, `OR`, `NOT`, parentheses, numbers,
//! `'quoted'`/`"quoted"` strings, `TRUE`/`FALSE`, and column names (bare or
//! in backticks). Keywords are case-insensitive.
//!
//! ```
//! use dts_core::filter::RowFilter;
//! let f = RowFilter::parse("status IN ('paid', 'shipped') AND amount >= 100").unwrap();
//! assert_eq!(f.columns(), vec!["status", "amount"]);
//! let err = RowFilter::parse("amount >= ").unwrap_err();
//! assert_eq!(err.to_string(), "at position 11: expected a column name or a value after the comparison, found end of input");
//! ```

mod ast;
mod eval;
mod lexer;
mod parser;

pub use ast::{CmpOp, Expr, Operand};
pub use eval::{RowView, Scalar};
pub use parser::{MAX_DEPTH, MAX_IN_LIST, MAX_PREDICATES};

/// Why a filter expression does not parse: where, what was expected, what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: expected {expected}, found {found}")]
pub struct FilterError {
    /// 1-based character position in the expression.
    pub position: usize,
    pub expected: String,
    pub found: String,
}

impl FilterError {
    pub(crate) fn new(position: usize, expected: &str, found: &str) -> Self {
        Self { position, expected: expected.to_owned(), found: found.to_owned() }
    }
}

/// A parsed, ready-to-evaluate row filter.
#[derive(Debug, Clone)]
pub struct RowFilter {
    expr: Expr,
    /// LIKE patterns compiled once, in the order the evaluator meets them.
    like: Vec<regex::Regex>,
}

impl RowFilter {
    /// Parses an expression. Blank text is not a filter: callers treat an
    /// empty `filter` field as "no filter" before calling this.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let toks = lexer::tokenize(text)?;
        let expr = parser::Parser::new(toks, text.chars().count()).parse()?;
        let mut like = Vec::new();
        collect_like(&expr, &mut like)?;
        Ok(Self { expr, like })
    }

    /// True when the row image passes the filter.
    pub fn matches(&self, row: &dyn RowView) -> bool {
        eval::matches(&self.expr, &self.like, row)
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The columns the filter reads.
    pub fn columns(&self) -> Vec<&str> {
        self.expr.columns()
    }
}

/// Pre-order walk matching the evaluator's order.
fn collect_like(expr: &Expr, out: &mut Vec<regex::Regex>) -> Result<(), FilterError> {
    match expr {
        Expr::And(terms) | Expr::Or(terms) => terms.iter().try_for_each(|t| collect_like(t, out)),
        Expr::Not(e) => collect_like(e, out),
        Expr::Like { pattern, .. } => {
            let re = eval::like_to_regex(pattern)
                .map_err(|e| FilterError::new(1, "a LIKE pattern of reasonable size", &e.to_string()))?;
            out.push(re);
            Ok(())
        }
        Expr::Cmp(..) | Expr::In { .. } | Expr::IsNull { .. } | Expr::Between { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests;
