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
}
