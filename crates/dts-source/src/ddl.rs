//! Recognising DDL in QUERY events: which statements change a schema, and
//! which table they name, so the task can refresh that table's columns and
//! emit the statement as a `ddl` event on the table's topic.

/// What a QUERY event's statement is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Begin,
    Commit,
    Rollback,
    /// A schema change. `table` is the first table it names (with its
    /// database when qualified); `None` for database-level statements.
    Ddl {
        db: Option<String>,
        table: Option<String>,
    },
    /// Anything else (e.g. SAVEPOINT, statement-based DML): not replicated.
    Other,
}

const DDL_VERBS: [&str; 5] = ["CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE"];

pub fn classify(query: &str) -> Statement {
    let text = strip_comments(query);
    let words: Vec<&str> = text.split_whitespace().take(8).collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    match upper.first().map(String::as_str) {
        Some("BEGIN") => return Statement::Begin,
        Some("COMMIT") => return Statement::Commit,
        Some("ROLLBACK") => return Statement::Rollback,
        Some("XA") if upper.get(1).is_some_and(|w| w == "COMMIT") => return Statement::Commit,
        Some(v) if DDL_VERBS.contains(&v) => {}
        _ => return Statement::Other,
    }
    // Skip modifiers up to the object keyword, then read the name after
    // optional IF [NOT] EXISTS.
    let object = upper.iter().position(|w| {
        matches!(
            w.as_str(),
            "TABLE"
                | "TABLES"
                | "DATABASE"
                | "SCHEMA"
                | "INDEX"
                | "VIEW"
                | "TRIGGER"
                | "PROCEDURE"
                | "FUNCTION"
                | "EVENT"
                | "SEQUENCE"
                | "USER"
                | "ROLE"
                | "SERVER"
        )
    });
    let Some(object) = object else { return Statement::Ddl { db: None, table: None } };
    let mut rest = object + 1;
    while upper.get(rest).is_some_and(|w| matches!(w.as_str(), "IF" | "NOT" | "EXISTS")) {
        rest += 1;
    }
    match upper[object].as_str() {
        "TABLE" | "TABLES" => {
            let name = words.get(rest).map(|w| cut_name(w));
            match name.map(split_name) {
                Some((db, table)) => Statement::Ddl { db, table: Some(table) },
                None => Statement::Ddl { db: None, table: None },
            }
        }
        "DATABASE" | "SCHEMA" => {
            let db = words.get(rest).map(|w| unquote(w.trim_end_matches(';')));
            Statement::Ddl { db, table: None }
        }
        // CREATE INDEX i ON t (...): the table follows ON.
        "INDEX" => {
            let on = upper.iter().position(|w| w == "ON");
            match on.and_then(|i| words.get(i + 1)).map(|w| split_name(cut_name(w))) {
                Some((db, table)) => Statement::Ddl { db, table: Some(table) },
                None => Statement::Ddl { db: None, table: None },
            }
        }
        _ => Statement::Other,
    }
}

/// The name part of a word that may run into `(`, `;` or `,`.
fn cut_name(word: &str) -> &str {
    word.split(['(', ';', ',']).next().unwrap_or(word)
}

/// `db.table`, `` `db`.`table` `` or `table`.
fn split_name(name: &str) -> (Option<String>, String) {
    match split_qualified(name) {
        Some((db, table)) => (Some(unquote(db)), unquote(table)),
        None => (None, unquote(name)),
    }
}

fn split_qualified(name: &str) -> Option<(&str, &str)> {
    // A dot outside backticks separates database and table.
    let mut in_quote = false;
    for (i, c) in name.char_indices() {
        match c {
            '`' => in_quote = !in_quote,
            '.' if !in_quote => return Some((&name[..i], &name[i + 1..])),
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('`').replace("``", "`")
}

/// Drops `/* ... */` comments (MariaDB and MySQL add some to DDL) and `-- `
/// line comments.
fn strip_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find("*/") {
            Some(end) => {
                out.push(' ');
                rest = &rest[start + 2 + end + 2..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.lines().map(|l| l.split("-- ").next().unwrap_or("")).collect::<Vec<_>>().join(" ")
}

/// What a DDL statement does to the tables dts keeps shapes of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Columns may have changed (ALTER, CREATE, TRUNCATE, CREATE INDEX).
    Changed(TableName),
    Dropped(TableName),
    /// `RENAME TABLE a TO b` and `ALTER TABLE a RENAME TO b`.
    Renamed {
        from: TableName,
        to: TableName,
    },
    DatabaseDropped(String),
}

/// A table, qualified with the statement's default database when unqualified.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    pub db: String,
    pub table: String,
}

/// Every table a DDL statement touches, in statement order; `default_db` is
/// the QUERY event's schema. Statements it cannot read yield nothing: the
/// reader then relies on the next rows event's own metadata.
pub fn effects(query: &str, default_db: &str) -> Vec<Effect> {
    let tokens = tokenize(&strip_comments(query));
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => Some(w.to_ascii_uppercase()),
        _ => None,
    };
    // A name at `i`: `t` or `db.t`; returns it and the index after it.
    let name_at = |i: usize| -> Option<(TableName, usize)> {
        let first = tokens.get(i)?.ident()?;
        if tokens.get(i + 1) == Some(&Token::Dot) {
            let second = tokens.get(i + 2)?.ident()?;
            return Some((TableName { db: first.to_owned(), table: second.to_owned() }, i + 3));
        }
        Some((TableName { db: default_db.to_owned(), table: first.to_owned() }, i + 1))
    };
    let skip_if_exists = |mut i: usize| {
        while word(i).is_some_and(|w| matches!(w.as_str(), "IF" | "NOT" | "EXISTS")) {
            i += 1;
        }
        i
    };
    // Everything up to the object keyword is verbs and modifiers.
    let Some(verb) = word(0) else { return Vec::new() };
    let Some(object) = (1..tokens.len().min(8))
        .find(|&i| word(i).is_some_and(|w| matches!(w.as_str(), "TABLE" | "TABLES" | "DATABASE" | "SCHEMA" | "INDEX")))
    else {
        return Vec::new();
    };
    let object_word = word(object).unwrap_or_default();
    let mut out = Vec::new();
    match (verb.as_str(), object_word.as_str()) {
        ("DROP", "DATABASE" | "SCHEMA") => {
            if let Some(db) = tokens.get(skip_if_exists(object + 1)).and_then(Token::ident) {
                out.push(Effect::DatabaseDropped(db.to_owned()));
            }
        }
        ("DROP", "TABLE" | "TABLES") => {
            let mut i = skip_if_exists(object + 1);
            while let Some((name, next)) = name_at(i) {
                out.push(Effect::Dropped(name));
                if tokens.get(next) != Some(&Token::Comma) {
                    break;
                }
                i = next + 1;
            }
        }
        ("RENAME", "TABLE" | "TABLES") => {
            let mut i = object + 1;
            while let Some((from, next)) = name_at(i) {
                if word(next).as_deref() != Some("TO") {
                    break;
                }
                let Some((to, next)) = name_at(next + 1) else { break };
                out.push(Effect::Renamed { from, to });
                if tokens.get(next) != Some(&Token::Comma) {
                    break;
                }
                i = next + 1;
            }
        }
        ("ALTER", "TABLE") => {
            if let Some((table, mut i)) = name_at(skip_if_exists(object + 1)) {
                out.push(Effect::Changed(table.clone()));
                // `RENAME [TO|AS] new` renames the table; `RENAME COLUMN|INDEX|KEY` does not.
                while i < tokens.len() {
                    if word(i).as_deref() == Some("RENAME") {
                        let mut j = i + 1;
                        if word(j).is_some_and(|w| w == "TO" || w == "AS") {
                            j += 1;
                        } else if word(j).is_some_and(|w| matches!(w.as_str(), "COLUMN" | "INDEX" | "KEY")) {
                            i = j;
                            continue;
                        }
                        if let Some((to, _)) = name_at(j) {
                            out.push(Effect::Renamed { from: table.clone(), to });
                        }
                        break;
                    }
                    i += 1;
                }
            }
        }
        ("CREATE" | "TRUNCATE", "TABLE") => {
            if let Some((table, _)) = name_at(skip_if_exists(object + 1)) {
                out.push(Effect::Changed(table));
            }
        }
        (_, "INDEX") => {
            let on = (object..tokens.len()).find(|&i| word(i).as_deref() == Some("ON"));
            if let Some((table, _)) = on.and_then(|i| name_at(i + 1)) {
                out.push(Effect::Changed(table));
            }
        }
        _ => {}
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    /// A backquoted identifier, unquoted.
    Quoted(String),
    Dot,
    Comma,
    Other,
}

impl Token {
    fn ident(&self) -> Option<&str> {
        match self {
            Token::Word(w) | Token::Quoted(w) => Some(w),
            _ => None,
        }
    }
}

fn tokenize(sql: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('`') if chars.peek() == Some(&'`') => {
                            chars.next();
                            name.push('`');
                        }
                        Some('`') | None => break,
                        Some(other) => name.push(other),
                    }
                }
                out.push(Token::Quoted(name));
            }
            '.' => out.push(Token::Dot),
            ',' => out.push(Token::Comma),
            c if c.is_whitespace() => {}
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_alphanumeric() || n == '_' || n == '$' {
                        w.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(w));
            }
            _ => out.push(Token::Other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddl(db: Option<&str>, table: Option<&str>) -> Statement {
        Statement::Ddl { db: db.map(Into::into), table: table.map(Into::into) }
    }

    #[test]
    fn statements_are_classified() {
        assert_eq!(classify("BEGIN"), Statement::Begin);
        assert_eq!(classify("COMMIT"), Statement::Commit);
        assert_eq!(classify("XA COMMIT 'x'"), Statement::Commit);
        assert_eq!(classify("ROLLBACK"), Statement::Rollback);
        assert_eq!(classify("SAVEPOINT a"), Statement::Other);
        assert_eq!(classify("INSERT INTO t VALUES (1)"), Statement::Other);
        assert_eq!(classify("ALTER TABLE users ADD COLUMN age INT"), ddl(None, Some("users")));
        assert_eq!(classify("alter table `shop`.`users` drop age"), ddl(Some("shop"), Some("users")));
        assert_eq!(classify("CREATE TABLE IF NOT EXISTS t1(id INT)"), ddl(None, Some("t1")));
        assert_eq!(classify("CREATE TEMPORARY TABLE tmp (id int)"), ddl(None, Some("tmp")));
        assert_eq!(classify("DROP TABLE IF EXISTS `a.b` /* generated by server */"), ddl(None, Some("a.b")));
        assert_eq!(classify("TRUNCATE TABLE shop.orders"), ddl(Some("shop"), Some("orders")));
        assert_eq!(classify("RENAME TABLE a TO b"), ddl(None, Some("a")));
        assert_eq!(classify("CREATE DATABASE shop"), ddl(Some("shop"), None));
        assert_eq!(classify("DROP SCHEMA IF EXISTS `shop`;"), ddl(Some("shop"), None));
        assert_eq!(classify("CREATE INDEX i ON orders (a)"), ddl(None, Some("orders")));
        assert_eq!(classify("CREATE UNIQUE INDEX i ON shop.orders(a)"), ddl(Some("shop"), Some("orders")));
        assert_eq!(classify("/* comment */ ALTER TABLE t ADD x INT"), ddl(None, Some("t")));
        assert_eq!(classify("CREATE USER x"), Statement::Other);
        assert_eq!(classify(""), Statement::Other);
    }

    fn name(db: &str, table: &str) -> TableName {
        TableName { db: db.into(), table: table.into() }
    }

    #[test]
    fn effects_name_every_table_touched() {
        use Effect::*;
        assert_eq!(
            effects("RENAME TABLE `shop`.`t` TO `shop`.`_t_del`, `_t_gho` TO t", "shop"),
            vec![
                Renamed { from: name("shop", "t"), to: name("shop", "_t_del") },
                Renamed { from: name("shop", "_t_gho"), to: name("shop", "t") },
            ]
        );
        assert_eq!(
            effects("DROP TABLE IF EXISTS a, other.b /* generated by server */", "d"),
            vec![Dropped(name("d", "a")), Dropped(name("other", "b"))]
        );
        assert_eq!(
            effects("ALTER TABLE t RENAME COLUMN a TO b", "d"),
            vec![Changed(name("d", "t"))],
            "a column rename is no table rename"
        );
        assert_eq!(
            effects("alter table t add c int, rename to `new name`", "d"),
            vec![Changed(name("d", "t")), Renamed { from: name("d", "t"), to: name("d", "new name") }]
        );
        assert_eq!(effects("ALTER TABLE t RENAME AS u", "d")[1], Renamed { from: name("d", "t"), to: name("d", "u") });
        assert_eq!(effects("CREATE TABLE IF NOT EXISTS `学生` (id int)", "d"), vec![Changed(name("d", "学生"))]);
        assert_eq!(effects("TRUNCATE TABLE x.y", "d"), vec![Changed(name("x", "y"))]);
        assert_eq!(effects("CREATE UNIQUE INDEX i ON o.t (a)", "d"), vec![Changed(name("o", "t"))]);
        assert_eq!(effects("DROP DATABASE IF EXISTS `shop`", "d"), vec![DatabaseDropped("shop".into())]);
        assert!(effects("CREATE DATABASE shop", "d").is_empty());
        assert!(effects("GRANT ALL ON *.* TO x", "d").is_empty());
        assert!(effects("", "d").is_empty());
    }
}
