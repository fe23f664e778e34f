//! Tokens of the row-filter language.

use super::FilterError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Int(i128),
    Float(f64),
    Str(String),
    LParen,
    RParen,
    Comma,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Not,
    In,
    Is,
    Null,
    Like,
    Between,
    True,
    False,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(name) => format!("column `{name}`"),
            Tok::Int(v) => format!("number {v}"),
            Tok::Float(v) => format!("number {v}"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Eq => "'='".into(),
            Tok::Ne => "'!='".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
            Tok::And => "AND".into(),
            Tok::Or => "OR".into(),
            Tok::Not => "NOT".into(),
            Tok::In => "IN".into(),
            Tok::Is => "IS".into(),
            Tok::Null => "NULL".into(),
            Tok::Like => "LIKE".into(),
            Tok::Between => "BETWEEN".into(),
            Tok::True => "TRUE".into(),
            Tok::False => "FALSE".into(),
        }
    }
}

/// A token and the 1-based character position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned {
    pub tok: Tok,
    pub pos: usize,
}

pub(crate) fn tokenize(input: &str) -> Result<Vec<Spanned>, FilterError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let simple = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            '=' => Some(Tok::Eq),
            _ => None,
        };
        if let Some(tok) = simple {
            out.push(Spanned { tok, pos });
            i += 1;
            continue;
        }
        match c {
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Spanned { tok: Tok::Ne, pos });
                    i += 2;
                } else {
                    return Err(FilterError::new(pos, "'!=' (use NOT for negation)", "'!'"));
                }
            }
            '<' => {
                let (tok, len) = match chars.get(i + 1) {
                    Some('=') => (Tok::Le, 2),
                    Some('>') => (Tok::Ne, 2),
                    _ => (Tok::Lt, 1),
                };
                out.push(Spanned { tok, pos });
                i += len;
            }
            '>' => {
                let (tok, len) = match chars.get(i + 1) {
                    Some('=') => (Tok::Ge, 2),
                    _ => (Tok::Gt, 1),
                };
                out.push(Spanned { tok, pos });
                i += len;
            }
            '\'' | '"' => {
                let (s, next) = lex_string(&chars, i)?;
                out.push(Spanned { tok: Tok::Str(s), pos });
                i = next;
            }
            '`' => {
                let (name, next) = lex_quoted_ident(&chars, i)?;
                out.push(Spanned { tok: Tok::Ident(name), pos });
                i = next;
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit() || *d == '.'))
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let (tok, next) = lex_number(&chars, i)?;
                out.push(Spanned { tok, pos });
                i = next;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let tok = match word.to_ascii_uppercase().as_str() {
                    "AND" => Tok::And,
                    "OR" => Tok::Or,
                    "NOT" => Tok::Not,
                    "IN" => Tok::In,
                    "IS" => Tok::Is,
                    "NULL" => Tok::Null,
                    "LIKE" => Tok::Like,
                    "BETWEEN" => Tok::Between,
                    "TRUE" => Tok::True,
                    "FALSE" => Tok::False,
                    _ => Tok::Ident(word),
                };
                out.push(Spanned { tok, pos });
            }
            other => {
                return Err(FilterError::new(
                    pos,
                    "a column, a value, an operator or a parenthesis",
                    &format!("'{other}'"),
                ))
            }
        }
    }
    Ok(out)
}

/// A quoted string; the quote is doubled (`'it''s'`) or backslash-escaped to appear inside.
fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let quote = chars[start];
    let mut s = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(FilterError::new(
                    chars.len() + 1,
                    &format!("closing {quote} for the string opened at position {}", start + 1),
                    "end of input",
                ))
            }
            Some('\\') => {
                let escaped = chars
                    .get(i + 1)
                    .copied()
                    .ok_or_else(|| FilterError::new(i + 2, "an escaped character after '\\'", "end of input"))?;
                s.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    other => other,
                });
                i += 2;
            }
            Some(&c) if c == quote => {
                if chars.get(i + 1) == Some(&quote) {
                    s.push(quote);
                    i += 2;
                } else {
                    return Ok((s, i + 1));
                }
            }
            Some(&c) => {
                s.push(c);
                i += 1;
            }
        }
    }
}

fn lex_quoted_ident(chars: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let mut name = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(FilterError::new(
                    chars.len() + 1,
                    &format!("closing ` for the column name opened at position {}", start + 1),
                    "end of input",
                ))
            }
            Some('`') if chars.get(i + 1) == Some(&'`') => {
                name.push('`');
                i += 2;
            }
            Some('`') => break,
            Some(&c) => {
                name.push(c);
                i += 1;
            }
        }
    }
    if name.is_empty() {
        return Err(FilterError::new(start + 1, "a column name between backticks", "``"));
    }
    Ok((name, i + 1))
}

fn lex_number(chars: &[char], start: usize) -> Result<(Tok, usize), FilterError> {
    let mut i = start;
    if chars[i] == '-' {
        i += 1;
    }
    let mut is_float = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            i += 1;
        } else if c == '.' && !is_float {
            is_float = true;
            i += 1;
        } else if (c == 'e' || c == 'E')
            && (chars.get(i + 1).is_some_and(char::is_ascii_digit)
                || (matches!(chars.get(i + 1), Some('+' | '-')) && chars.get(i + 2).is_some_and(char::is_ascii_digit)))
        {
            is_float = true;
            i += 2;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            break;
        } else {
            break;
        }
    }
    if chars.get(i).is_some_and(|c| c.is_alphabetic() || *c == '_') {
        return Err(FilterError::new(
            i + 1,
            "an operator or whitespace after a number (column names cannot start with a digit unless quoted with backticks)",
            &format!("'{}'", chars[i]),
        ));
    }
    let text: String = chars[start..i].iter().collect();
    let invalid = || FilterError::new(start + 1, "a number", &format!("'{text}'"));
    if !is_float {
        if let Ok(v) = text.parse::<i128>() {
            return Ok((Tok::Int(v), i));
        }
    }
    let v: f64 = text.parse().map_err(|_| invalid())?;
    if !v.is_finite() {
        return Err(invalid());
    }
    Ok((Tok::Float(v), i))
}
