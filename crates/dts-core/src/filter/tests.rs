#![allow(clippy::unwrap_used)]

use std::borrow::Cow;
use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

struct Row(HashMap<&'static str, Scalar<'static>>);

impl RowView for Row {
    fn column(&self, name: &str) -> Option<Scalar<'_>> {
        self.0.get(name).cloned()
    }
}

fn row(pairs: &[(&'static str, Scalar<'static>)]) -> Row {
    Row(pairs.iter().cloned().collect())
}

fn text(s: &'static str) -> Scalar<'static> {
    Scalar::Text(Cow::Borrowed(s))
}

fn check(expr: &str, r: &Row) -> bool {
    RowFilter::parse(expr).unwrap().matches(r)
}

#[test]
fn every_operator_evaluates() {
    let r = row(&[
        ("id", Scalar::Int(7)),
        ("name", text("alice")),
        ("score", Scalar::Float(9.5)),
        ("price", text("12.50")),
        ("gone", Scalar::Null),
    ]);
    let cases = [
        ("id = 7", true),
        ("id != 7", false),
        ("id <> 8", true),
        ("id < 8", true),
        ("id <= 7", true),
        ("id > 7", false),
        ("id >= 7", true),
        ("7 = id", true),
        ("name = 'alice'", true),
        ("name = \"alice\"", true),
        ("name IN ('bob', 'alice')", true),
        ("name NOT IN ('bob', 'alice')", false),
        ("id IN (1, 2, 3)", false),
        ("gone IS NULL", true),
        ("gone IS NOT NULL", false),
        ("name IS NOT NULL", true),
        ("name LIKE 'al%'", true),
        ("name LIKE '_lice'", true),
        ("name LIKE 'AL%'", false),
        ("name NOT LIKE 'b%'", true),
        ("id BETWEEN 1 AND 7", true),
        ("id NOT BETWEEN 1 AND 7", false),
        ("score BETWEEN 9 AND 10", true),
        ("price > 12", true),
        ("price = 12.5", true),
        ("id = 7 AND name = 'alice'", true),
        ("id = 8 OR name = 'alice'", true),
        ("NOT id = 8", true),
        ("not (id = 7 and name = 'bob')", true),
        ("(id = 1 OR id = 7) AND (score > 9)", true),
        ("`id` = 7", true),
        ("id = TRUE", false),
        ("missing_column = 1", false),
        ("missing_column IS NULL", true),
    ];
    for (expr, want) in cases {
        assert_eq!(check(expr, &r), want, "{expr}");
    }
}

#[test]
fn null_follows_three_valued_logic() {
    let r = row(&[("a", Scalar::Null), ("b", Scalar::Int(1))]);
    assert!(!check("a = 1", &r));
    assert!(!check("NOT a = 1", &r), "NOT unknown is unknown, which does not pass");
    assert!(check("a = 1 OR b = 1", &r));
    assert!(!check("a = 1 AND b = 1", &r));
    assert!(!check("a IN (1, 2)", &r));
    assert!(!check("a NOT IN (1, 2)", &r));
    assert!(!check("a LIKE '%'", &r));
    assert!(!check("a BETWEEN 0 AND 2", &r));
}

#[test]
fn errors_say_where_and_what_was_expected() {
    let cases = [
        ("", 1, "an expression"),
        ("id =", 5, "a column name or a value after the comparison"),
        ("id = 1 AND", 11, "a column name, a value, NOT or '('"),
        ("(id = 1", 8, "')' or AND/OR"),
        ("id IN 1, 2", 7, "'(' to open the IN list"),
        ("id IN (1, 2", 12, "',' or ')' in the IN list"),
        ("id LIKE 5", 9, "a quoted pattern after LIKE"),
        ("id BETWEEN 1 5", 14, "AND between the two bounds of BETWEEN"),
        ("id IS 5", 7, "NULL or NOT NULL after IS"),
        ("id", 3, "a comparison (=, !=, <>, <, <=, >, >=), IN, NOT IN, IS [NOT] NULL, LIKE or BETWEEN"),
        ("id = 1 id = 2", 8, "AND, OR or the end of the expression"),
        ("name = 'open", 13, "closing ' for the string opened at position 8"),
        ("id ! 3", 4, "'!=' (use NOT for negation)"),
        ("id = 1 ; drop", 8, "a column, a value, an operator or a parenthesis"),
        ("id = NULL", 6, "a column name or a value after the comparison (to test for NULL write `column IS NULL`)"),
        ("id NOT 5", 8, "IN, LIKE or BETWEEN after NOT"),
    ];
    for (expr, pos, expected) in cases {
        let err = RowFilter::parse(expr).unwrap_err();
        assert_eq!((err.position, err.expected.as_str()), (pos, expected), "{expr}: {err}");
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}id = 1{}", "(".repeat(500), ")".repeat(500));
    let err = RowFilter::parse(&deep).unwrap_err();
    assert!(err.expected.contains("levels of nesting"), "{err}");
}

#[test]
fn columns_are_listed_once_in_order() {
    let f = RowFilter::parse("b = 1 AND a IN (1) OR b IS NULL OR c BETWEEN a AND d").unwrap();
    assert_eq!(f.columns(), vec!["b", "a", "c", "d"]);
}

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}".prop_map(Operand::Column),
        any::<i64>().prop_map(|v| Operand::Int(i128::from(v))),
        (-1.0e6f64..1.0e6).prop_map(Operand::Float),
        ".{0,8}".prop_map(Operand::Str),
        any::<bool>().prop_map(Operand::Bool),
    ]
}

fn literal() -> impl Strategy<Value = Operand> {
    operand().prop_filter("IN lists hold literals", |o| !matches!(o, Operand::Column(_)))
}

fn expr() -> impl Strategy<Value = Expr> {
    let cmp = prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::Ne),
        Just(CmpOp::Lt),
        Just(CmpOp::Le),
        Just(CmpOp::Gt),
        Just(CmpOp::Ge)
    ];
    let leaf = prop_oneof![
        (operand(), cmp, operand()).prop_map(|(a, op, b)| Expr::Cmp(a, op, b)),
        (operand(), prop::collection::vec(literal(), 1..4), any::<bool>())
            .prop_map(|(operand, list, negated)| Expr::In { operand, list, negated }),
        (operand(), any::<bool>()).prop_map(|(operand, negated)| Expr::IsNull { operand, negated }),
        (operand(), ".{0,6}", any::<bool>()).prop_map(|(operand, pattern, negated)| Expr::Like {
            operand,
            pattern,
            negated
        }),
        (operand(), operand(), operand(), any::<bool>()).prop_map(|(operand, low, high, negated)| Expr::Between {
            operand,
            low,
            high,
            negated
        }),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

proptest! {
    #[test]
    fn printing_then_parsing_gives_the_same_tree(e in expr()) {
        let text = e.to_string();
        let parsed = RowFilter::parse(&text).map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
        prop_assert_eq!(parsed.expr(), &e);
    }

    #[test]
    fn arbitrary_input_never_panics_and_errors_point_inside(text in ".{0,64}") {
        if let Err(err) = RowFilter::parse(&text) {
            prop_assert!(err.position >= 1 && err.position <= text.chars().count() + 1, "{}", err);
        }
    }

    #[test]
    fn token_soup_never_panics(words in prop::collection::vec(
        prop_oneof![Just("a"), Just("1"), Just("'x'"), Just("("), Just(")"), Just(","), Just("="),
                    Just("AND"), Just("OR"), Just("NOT"), Just("IN"), Just("IS"), Just("NULL"),
                    Just("LIKE"), Just("BETWEEN"), Just("<>"), Just(">=")], 0..16)) {
        let text = words.join(" ");
        if let Err(err) = RowFilter::parse(&text) {
            prop_assert!(err.position <= text.chars().count() + 1);
        }
    }
}

/// DECIMAL values (text) compare exactly with integer and decimal literals,
/// as MySQL compares them, even where a binary float would round.
#[test]
fn decimals_compare_exactly() {
    let r = row(&[
        ("amount", text("99.99999999999999999")),
        ("neg", text("-0.10")),
        ("big", text("12345678901234567890.5")),
    ]);
    let cases = [
        ("amount >= 100", false),
        ("amount < 100", true),
        ("amount = 100.0", false),
        ("amount > 99.9999999", true),
        ("neg = -0.1", true),
        ("neg < 0", true),
        ("neg > -1", true),
        ("neg BETWEEN -0.1 AND 0", true),
        ("big > 12345678901234567890", true),
        ("big < 12345678901234567891", true),
        ("amount IN (100, 99.9)", false),
        ("big > 1.5", true),
    ];
    for (expr, want) in cases {
        assert_eq!(check(expr, &r), want, "{expr}");
    }
}

fn decimal_text() -> impl Strategy<Value = (String, i128, u32)> {
    // (text, scaled integer, scale): 123.45 is (12345, 2).
    (-1_000_000_000i128..1_000_000_000, 0u32..6).prop_map(|(v, scale)| {
        let p = 10i128.pow(scale);
        let sign = if v < 0 { "-" } else { "" };
        let (i, f) = (v.abs() / p, v.abs() % p);
        let text =
            if scale == 0 { format!("{sign}{i}") } else { format!("{sign}{i}.{f:0width$}", width = scale as usize) };
        (text, v, scale)
    })
}

proptest! {
    // Exact decimal order agrees with integer arithmetic on scaled values.
    #[test]
    fn decimal_order_is_exact((a, av, asc) in decimal_text(), (b, bv, bsc) in decimal_text()) {
        let (x, y) = (av * 10i128.pow(6 - asc), bv * 10i128.pow(6 - bsc));
        let r = Row([("a", Scalar::Text(Cow::Owned(a.clone()))), ("b", Scalar::Text(Cow::Owned(b.clone())))]
            .into_iter().collect());
        prop_assert_eq!(check(&format!("a < {b}"), &r), x < y, "{} < {}", a, b);
        prop_assert_eq!(check(&format!("a = {b}"), &r), x == y, "{} = {}", a, b);
    }
}
