//! Table matching for `filters[].match`: an exact name, or `/regex/`
//! matched against the whole table name.

use crate::code::ErrorCode;

/// Compiled regexes over this size are refused: a table pattern never needs it.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone)]
pub enum TableMatcher {
    Exact(String),
    Regex(regex::Regex),
}

impl TableMatcher {
    /// `/.../` is a regex, anchored at both ends; anything else is an exact name.
    pub fn parse(text: &str) -> Result<Self, (ErrorCode, String)> {
        if text.is_empty() {
            return Err((
                ErrorCode::InvalidFilters,
                "must be a table name or a /regex/ (use \"/.*/\" for every table)".into(),
            ));
        }
        match text.strip_prefix('/').and_then(|t| t.strip_suffix('/')) {
            Some(pattern) if text.len() >= 2 => {
                if pattern.is_empty() {
                    return Err((ErrorCode::InvalidTableRegex, "the regex between the slashes is empty".into()));
                }
                regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map(Self::Regex)
                    .map_err(|e| (ErrorCode::InvalidTableRegex, format!("invalid regex: {}", one_line(&e))))
            }
            _ if text.starts_with('/') => Err((
                ErrorCode::InvalidTableRegex,
                format!("{} opens a /regex/ but does not close it with '/'", crate::spec::echo(text)),
            )),
            _ if text.chars().any(char::is_control) => Err((
                ErrorCode::InvalidFilters,
                format!("a table name cannot contain control characters, got {}", crate::spec::echo(text)),
            )),
            _ if text.chars().count() > 64 => Err((
                ErrorCode::InvalidFilters,
                format!("a table name has at most 64 characters, got {}", text.chars().count()),
            )),
            _ => Ok(Self::Exact(text.to_owned())),
        }
    }

    pub fn matches(&self, table: &str) -> bool {
        match self {
            Self::Exact(name) => name == table,
            Self::Regex(re) => re.is_match(table),
        }
    }
}

/// The regex error on one line, at most 300 characters: its text quotes
/// the pattern, which may be long.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn regex_is_anchored_and_exact_is_literal() {
        let re = TableMatcher::parse(r"/xes_class_students_\d+/").unwrap();
        assert!(re.matches("xes_class_students_12"));
        assert!(!re.matches("xes_class_students_12_bak"));
        assert!(!re.matches("old_xes_class_students_1"));
        let exact = TableMatcher::parse("check_delay").unwrap();
        assert!(exact.matches("check_delay"));
        assert!(!exact.matches("check_delay2"));
        let dotted = TableMatcher::parse("a.b").unwrap();
        assert!(!dotted.matches("axb"), "an exact name is not a regex");
        assert_eq!(TableMatcher::parse("/").unwrap_err().0, ErrorCode::InvalidTableRegex, "a lone slash");
        assert_eq!(TableMatcher::parse("/abc").unwrap_err().0, ErrorCode::InvalidTableRegex, "an unclosed regex");
    }

    #[test]
    fn bad_regex_and_empty_names_are_refused() {
        assert_eq!(TableMatcher::parse("/orders_(\\d+/").unwrap_err().0, ErrorCode::InvalidTableRegex);
        assert_eq!(TableMatcher::parse("//").unwrap_err().0, ErrorCode::InvalidTableRegex);
        assert_eq!(TableMatcher::parse("").unwrap_err().0, ErrorCode::InvalidFilters);
    }
}
