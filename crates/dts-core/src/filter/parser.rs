//! Recursive-descent parser. Precedence, loosest first: OR, AND, NOT, predicate.

use super::ast::{CmpOp, Expr, Operand};
use super::lexer::{Spanned, Tok};
use super::FilterError;

/// Deeply nested input must not overflow the stack; real filters are shallow.
pub const MAX_DEPTH: usize = 64;
/// Predicates in one expression (comparisons, IN, LIKE, ...): the cost of
/// every row's evaluation and of the SQL a snapshot sends is bounded.
pub const MAX_PREDICATES: usize = 1_000;
/// Values in one IN list.
pub const MAX_IN_LIST: usize = 10_000;

pub(crate) struct Parser {
    toks: Vec<Spanned>,
    at: usize,
    end_pos: usize,
    depth: usize,
    predicates: usize,
}

impl Parser {
    pub(crate) fn new(toks: Vec<Spanned>, input_chars: usize) -> Self {
        Self { toks, at: 0, end_pos: input_chars + 1, depth: 0, predicates: 0 }
    }

    pub(crate) fn parse(mut self) -> Result<Expr, FilterError> {
        if self.toks.is_empty() {
            return Err(FilterError::new(1, "an expression", "end of input"));
        }
        let expr = self.or()?;
        match self.peek() {
            None => Ok(expr),
            Some(t) => Err(self.unexpected_at(t, "AND, OR or the end of the expression")),
        }
    }

    fn peek(&self) -> Option<&Spanned> {
        self.toks.get(self.at)
    }

    fn next_is(&self, tok: &Tok) -> bool {
        self.peek().is_some_and(|t| &t.tok == tok)
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.next_is(tok) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn unexpected_at(&self, t: &Spanned, expected: &str) -> FilterError {
        FilterError::new(t.pos, expected, &t.tok.describe())
    }

    fn unexpected(&self, expected: &str) -> FilterError {
        match self.peek() {
            Some(t) => self.unexpected_at(t, expected),
            None => FilterError::new(self.end_pos, expected, "end of input"),
        }
    }

    fn expect(&mut self, tok: &Tok, expected: &str) -> Result<(), FilterError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, FilterError>) -> Result<T, FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.unexpected(&format!("at most {MAX_DEPTH} levels of nesting")));
        }
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.and()?];
        while self.eat(&Tok::Or) {
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::Or(terms) })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.not()?];
        while self.eat(&Tok::And) {
            terms.push(self.not()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::And(terms) })
    }

    fn not(&mut self) -> Result<Expr, FilterError> {
        if self.eat(&Tok::Not) {
            let inner = self.nested(Self::not)?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, FilterError> {
        if self.eat(&Tok::LParen) {
            let inner = self.nested(Self::or)?;
            self.expect(&Tok::RParen, "')' or AND/OR")?;
            return Ok(inner);
        }
        self.predicates += 1;
        if self.predicates > MAX_PREDICATES {
            return Err(self.unexpected(&format!(
                "at most {MAX_PREDICATES} conditions in one filter (use IN (...) for long lists of values)"
            )));
        }
        let operand = self.operand("a column name, a value, NOT or '('")?;
        let cmp = match self.peek().map(|t| &t.tok) {
            Some(Tok::Eq) => Some(CmpOp::Eq),
            Some(Tok::Ne) => Some(CmpOp::Ne),
            Some(Tok::Lt) => Some(CmpOp::Lt),
            Some(Tok::Le) => Some(CmpOp::Le),
            Some(Tok::Gt) => Some(CmpOp::Gt),
            Some(Tok::Ge) => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = cmp {
            self.at += 1;
            let right = self.operand("a column name or a value after the comparison")?;
            return Ok(Expr::Cmp(operand, op, right));
        }
        if self.eat(&Tok::Is) {
            let negated = self.eat(&Tok::Not);
            self.expect(&Tok::Null, if negated { "NULL after IS NOT" } else { "NULL or NOT NULL after IS" })?;
            return Ok(Expr::IsNull { operand, negated });
        }
        let negated = self.eat(&Tok::Not);
        if self.eat(&Tok::In) {
            return self.in_list(operand, negated);
        }
        if self.eat(&Tok::Like) {
            return match self.peek().map(|t| t.tok.clone()) {
                Some(Tok::Str(pattern)) => {
                    self.at += 1;
                    Ok(Expr::Like { operand, pattern, negated })
                }
                _ => Err(self.unexpected("a quoted pattern after LIKE")),
            };
        }
        if self.eat(&Tok::Between) {
            let low = self.operand("the lower bound after BETWEEN")?;
            self.expect(&Tok::And, "AND between the two bounds of BETWEEN")?;
            let high = self.operand("the upper bound after BETWEEN ... AND")?;
            return Ok(Expr::Between { operand, low, high, negated });
        }
        if negated {
            return Err(self.unexpected("IN, LIKE or BETWEEN after NOT"));
        }
        Err(self.unexpected("a comparison (=, !=, <>, <, <=, >, >=), IN, NOT IN, IS [NOT] NULL, LIKE or BETWEEN"))
    }

    fn in_list(&mut self, operand: Operand, negated: bool) -> Result<Expr, FilterError> {
        self.expect(&Tok::LParen, "'(' to open the IN list")?;
        let mut list = vec![self.literal("a value in the IN list")?];
        while self.eat(&Tok::Comma) {
            if list.len() == MAX_IN_LIST {
                return Err(self.unexpected(&format!("')': at most {MAX_IN_LIST} values in one IN list")));
            }
            list.push(self.literal("a value after ',' in the IN list")?);
        }
        self.expect(&Tok::RParen, "',' or ')' in the IN list")?;
        Ok(Expr::In { operand, list, negated })
    }

    fn operand(&mut self, expected: &str) -> Result<Operand, FilterError> {
        if let Some(Tok::Ident(name)) = self.peek().map(|t| &t.tok) {
            let name = name.clone();
            self.at += 1;
            return Ok(Operand::Column(name));
        }
        self.literal(expected)
    }

    fn literal(&mut self, expected: &str) -> Result<Operand, FilterError> {
        let op = match self.peek().map(|t| &t.tok) {
            Some(Tok::Int(v)) => Operand::Int(*v),
            Some(Tok::Float(v)) => Operand::Float(*v),
            Some(Tok::Str(s)) => Operand::Str(s.clone()),
            Some(Tok::True) => Operand::Bool(true),
            Some(Tok::False) => Operand::Bool(false),
            Some(Tok::Null) => {
                return Err(self.unexpected(&format!("{expected} (to test for NULL write `column IS NULL`)")))
            }
            _ => return Err(self.unexpected(expected)),
        };
        self.at += 1;
        Ok(op)
    }
}
