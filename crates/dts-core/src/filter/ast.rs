//! The parsed form of a row filter, and its canonical text.

use std::fmt;

/// A literal or a column reference: the operands of a predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Column(String),
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A boolean expression over one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Two or more terms. Chains are n-ary, not nested pairs, so a long
    /// `a AND b AND ...` costs no recursion in any walk over the tree.
    And(Vec<Expr>),
    /// Two or more terms.
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, CmpOp, Operand),
    In {
        operand: Operand,
        list: Vec<Operand>,
        negated: bool,
    },
    IsNull {
        operand: Operand,
        negated: bool,
    },
    Like {
        operand: Operand,
        pattern: String,
        negated: bool,
    },
    Between {
        operand: Operand,
        low: Operand,
        high: Operand,
        negated: bool,
    },
}

impl Expr {
    /// Every column the expression reads, in order of first appearance.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        self.visit_operands(&mut |op| {
            if let Operand::Column(name) = op {
                if !out.contains(&name.as_str()) {
                    out.push(name);
                }
            }
        });
        out
    }

    fn visit_operands<'a>(&'a self, f: &mut impl FnMut(&'a Operand)) {
        match self {
            Expr::And(terms) | Expr::Or(terms) => {
                for t in terms {
                    t.visit_operands(f);
                }
            }
            Expr::Not(e) => e.visit_operands(f),
            Expr::Cmp(a, _, b) => {
                f(a);
                f(b);
            }
            Expr::In { operand, list, .. } => {
                f(operand);
                list.iter().for_each(&mut *f);
            }
            Expr::IsNull { operand, .. } | Expr::Like { operand, .. } => f(operand),
            Expr::Between { operand, low, high, .. } => {
                f(operand);
                f(low);
                f(high);
            }
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Column(name) => write!(f, "`{}`", name.replace('`', "``")),
            Operand::Int(v) => write!(f, "{v}"),
            // `{:?}` keeps a decimal point or exponent, so the text reads back as a float.
            Operand::Float(v) => write!(f, "{v:?}"),
            Operand::Str(s) => write_quoted(f, s),
            Operand::Bool(true) => f.write_str("TRUE"),
            Operand::Bool(false) => f.write_str("FALSE"),
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in s.chars() {
        match c {
            '\'' => f.write_str("''")?,
            '\\' => f.write_str("\\\\")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        })
    }
}

/// Canonical text: every compound is parenthesised, so printing and parsing
/// again gives the same tree (the property tests rely on it).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not = |negated: bool| if negated { "NOT " } else { "" };
        match self {
            Expr::And(terms) => write_joined(f, terms, " AND "),
            Expr::Or(terms) => write_joined(f, terms, " OR "),
            Expr::Not(e) => write!(f, "(NOT {e})"),
            Expr::Cmp(a, op, b) => write!(f, "{a} {op} {b}"),
            Expr::In { operand, list, negated } => {
                write!(f, "{operand} {}IN (", not(*negated))?;
                for (i, item) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(")")
            }
            Expr::IsNull { operand, negated } => write!(f, "{operand} IS {}NULL", not(*negated)),
            Expr::Like { operand, pattern, negated } => {
                write!(f, "{operand} {}LIKE ", not(*negated))?;
                write_quoted(f, pattern)
            }
            Expr::Between { operand, low, high, negated } => {
                write!(f, "{operand} {}BETWEEN {low} AND {high}", not(*negated))
            }
        }
    }
}

fn write_joined(f: &mut fmt::Formatter<'_>, terms: &[Expr], sep: &str) -> fmt::Result {
    f.write_str("(")?;
    for (i, t) in terms.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{t}")?;
    }
    f.write_str(")")
}
