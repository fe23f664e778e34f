//! Evaluation with SQL's three-valued logic: a comparison with NULL is
//! unknown, and a row passes only when the whole expression is true.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::ast::{CmpOp, Expr, Operand};

/// A column value as the filter sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Int(i128),
    Float(f64),
    /// Text, and exact decimals rendered as text (compared numerically when
    /// the other side is a number).
    Text(Cow<'a, str>),
}

/// Read access to one row image by column name.
pub trait RowView {
    /// The column's value; `None` when the table has no such column, which
    /// the filter treats as NULL.
    fn column(&self, name: &str) -> Option<Scalar<'_>>;
}

/// Three-valued truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn from_bool(b: bool) -> Self {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }
    fn not(self) -> Self {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }
    fn negate_if(self, negated: bool) -> Self {
        if negated {
            self.not()
        } else {
            self
        }
    }
}

pub(crate) fn matches(expr: &Expr, like: &[regex::Regex], row: &dyn RowView) -> bool {
    let mut like_index = 0;
    eval(expr, like, &mut like_index, row) == Truth::True
}

fn eval(expr: &Expr, like: &[regex::Regex], li: &mut usize, row: &dyn RowView) -> Truth {
    match expr {
        // Every term is evaluated so the LIKE regex index stays in step with
        // the tree's pre-order numbering. Three-valued logic, as SQL's.
        Expr::And(terms) => terms.iter().fold(Truth::True, |acc, t| match (acc, eval(t, like, li, row)) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (Truth::True, Truth::True) => Truth::True,
            _ => Truth::Unknown,
        }),
        Expr::Or(terms) => terms.iter().fold(Truth::False, |acc, t| match (acc, eval(t, like, li, row)) {
            (Truth::True, _) | (_, Truth::True) => Truth::True,
            (Truth::False, Truth::False) => Truth::False,
            _ => Truth::Unknown,
        }),
        Expr::Not(e) => eval(e, like, li, row).not(),
        Expr::Cmp(a, op, b) => match compare(&resolve(a, row), &resolve(b, row)) {
            None => Truth::Unknown,
            Some(ord) => Truth::from_bool(match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Ne => ord != Ordering::Equal,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Le => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Ge => ord != Ordering::Less,
            }),
        },
        Expr::In { operand, list, negated } => {
            let value = resolve(operand, row);
            if value == Scalar::Null {
                return Truth::Unknown;
            }
            let found = list.iter().any(|item| compare(&value, &resolve(item, row)) == Some(Ordering::Equal));
            Truth::from_bool(found).negate_if(*negated)
        }
        Expr::IsNull { operand, negated } => {
            Truth::from_bool(resolve(operand, row) == Scalar::Null).negate_if(*negated)
        }
        Expr::Like { operand, negated, .. } => {
            let re = &like[*li];
            *li += 1;
            match resolve(operand, row) {
                Scalar::Null => Truth::Unknown,
                Scalar::Text(s) => Truth::from_bool(re.is_match(&s)).negate_if(*negated),
                Scalar::Int(v) => Truth::from_bool(re.is_match(&v.to_string())).negate_if(*negated),
                Scalar::Float(v) => Truth::from_bool(re.is_match(&v.to_string())).negate_if(*negated),
            }
        }
        Expr::Between { operand, low, high, negated } => {
            let v = resolve(operand, row);
            match (compare(&v, &resolve(low, row)), compare(&v, &resolve(high, row))) {
                (Some(lo), Some(hi)) => {
                    Truth::from_bool(lo != Ordering::Less && hi != Ordering::Greater).negate_if(*negated)
                }
                _ => Truth::Unknown,
            }
        }
    }
}

fn resolve<'r>(operand: &'r Operand, row: &'r dyn RowView) -> Scalar<'r> {
    match operand {
        Operand::Column(name) => row.column(name).unwrap_or(Scalar::Null),
        Operand::Int(v) => Scalar::Int(*v),
        Operand::Float(v) => Scalar::Float(*v),
        Operand::Str(s) => Scalar::Text(Cow::Borrowed(s)),
        Operand::Bool(b) => Scalar::Int(i128::from(*b)),
    }
}

/// A number parsed from text, for comparing text with numbers.
enum Num<'a> {
    Int(i128),
    /// Plain decimal text (`-12.50`), compared exactly, as MySQL compares
    /// DECIMAL values with integer and decimal literals.
    Dec(Decimal<'a>),
    Float(f64),
}

fn as_num<'a>(s: &'a Scalar<'_>) -> Option<Num<'a>> {
    match s {
        Scalar::Int(v) => Some(Num::Int(*v)),
        Scalar::Float(v) => Some(Num::Float(*v)),
        Scalar::Text(t) => {
            let t = t.trim();
            t.parse::<i128>()
                .map(Num::Int)
                .ok()
                .or_else(|| Decimal::parse(t).map(Num::Dec))
                .or_else(|| t.parse::<f64>().ok().filter(|f| f.is_finite()).map(Num::Float))
        }
        Scalar::Null => None,
    }
}

fn cmp_num(a: Num<'_>, b: Num<'_>) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (Num::Dec(x), Num::Dec(y)) => Some(x.cmp(&y)),
        (Num::Dec(x), Num::Int(y)) => Some(x.cmp(&Decimal::parse(&y.to_string())?)),
        (Num::Int(x), Num::Dec(y)) => Some(Decimal::parse(&x.to_string())?.cmp(&y)),
        // A float reads as its shortest round-trip decimal form (a literal:
        // the decimal it was written as, like a MySQL decimal literal).
        (Num::Dec(x), Num::Float(y)) => Some(x.cmp(&Decimal::parse(&float_text(y)?)?)),
        (Num::Float(x), Num::Dec(y)) => Some(Decimal::parse(&float_text(x)?)?.cmp(&y)),
        (Num::Int(x), Num::Float(y)) => Some(Decimal::parse(&x.to_string())?.cmp(&Decimal::parse(&float_text(y)?)?)),
        (Num::Float(x), Num::Int(y)) => Some(Decimal::parse(&float_text(x)?)?.cmp(&Decimal::parse(&y.to_string())?)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y),
    }
}

/// A finite float as plain decimal text (`Display` never uses exponents).
fn float_text(f: f64) -> Option<String> {
    f.is_finite().then(|| f.to_string())
}

/// `[+-]digits[.digits]`, normalised for exact comparison: no leading
/// zeros in the integer part, no trailing zeros in the fraction.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let (negative, unsigned) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        // -0 and 0 are one number.
        let negative = negative && !(int.is_empty() && frac.is_empty());
        Some(Self { negative, int, frac })
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac))
    }
}

impl Ord for Decimal<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Text compares with text as strings (byte order, case-sensitive); when
/// either side is a number both are compared as numbers if the text parses
/// as one, otherwise as strings.
fn compare(a: &Scalar<'_>, b: &Scalar<'_>) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Null, _) | (_, Scalar::Null) => None,
        (Scalar::Text(x), Scalar::Text(y)) => Some(x.as_ref().cmp(y.as_ref())),
        _ => match (as_num(a), as_num(b)) {
            (Some(x), Some(y)) => cmp_num(x, y),
            _ => Some(text_of(a).cmp(&text_of(b))),
        },
    }
}

fn text_of<'a>(s: &'a Scalar<'_>) -> Cow<'a, str> {
    match s {
        Scalar::Text(t) => Cow::Borrowed(t.as_ref()),
        Scalar::Int(v) => Cow::Owned(v.to_string()),
        Scalar::Float(v) => Cow::Owned(v.to_string()),
        Scalar::Null => Cow::Borrowed(""),
    }
}

/// SQL LIKE to an anchored regex: `%` any run, `_` one character, `\` escapes.
pub(crate) fn like_to_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    let mut re = String::from("(?s)^");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            '\\' => re.push_str(&regex::escape(&chars.next().unwrap_or('\\').to_string())),
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re)
}
