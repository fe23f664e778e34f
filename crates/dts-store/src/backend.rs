//! Which SQL server holds the store, chosen by the URL's scheme, and the few
//! places where their SQL dialects differ.

use std::borrow::Cow;

use sqlx::migrate::Migrator;

static SQLITE: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("../../migrations/postgres");
static MYSQL: Migrator = sqlx::migrate!("../../migrations/mysql");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::MySql),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
        }
    }

    pub(crate) fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &SQLITE,
            Self::Postgres => &POSTGRES,
            Self::MySql => &MYSQL,
        }
    }

    /// Queries are written with `?` placeholders; PostgreSQL wants `$1, $2, ...`.
    /// No query of ours has a `?` inside a string literal.
    pub(crate) fn sql(self, query: &str) -> Cow<'_, str> {
        if self != Self::Postgres {
            return Cow::Borrowed(query);
        }
        let mut out = String::with_capacity(query.len() + 8);
        let mut n = 0;
        for c in query.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }

    /// `INSERT` that does nothing when the key exists.
    pub(crate) fn insert_ignore(self, table_and_columns: &str, values: &str) -> String {
        match self {
            Self::Sqlite => format!("INSERT OR IGNORE INTO {table_and_columns} VALUES {values}"),
            Self::Postgres => format!("INSERT INTO {table_and_columns} VALUES {values} ON CONFLICT DO NOTHING"),
            Self::MySql => format!("INSERT IGNORE INTO {table_and_columns} VALUES {values}"),
        }
    }

    /// The mysql driver's URL scheme is `mysql`; accept `mariadb://` as a synonym.
    pub(crate) fn normalize_url(self, url: &str) -> String {
        match self {
            Self::MySql if url.to_ascii_lowercase().starts_with("mariadb:") => format!("mysql:{}", &url[8..]),
            Self::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_backends() {
        assert_eq!(Backend::from_url("sqlite://./data/dts.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgres://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("postgresql://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("MYSQL://u@h/db"), Some(Backend::MySql));
        assert_eq!(Backend::from_url("mariadb://u@h/db"), Some(Backend::MySql));
        assert_eq!(Backend::from_url("redis://h"), None);
        assert_eq!(Backend::from_url("no-scheme"), None);
    }

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        let q = "UPDATE t SET a = ?, b = ? WHERE id = ?";
        assert_eq!(Backend::Postgres.sql(q), "UPDATE t SET a = $1, b = $2 WHERE id = $3");
        assert_eq!(Backend::MySql.sql(q), q);
        assert_eq!(Backend::Sqlite.sql(q), q);
    }

    #[test]
    fn urls_are_normalized() {
        assert_eq!(Backend::Sqlite.normalize_url("sqlite://x.db"), "sqlite://x.db?mode=rwc");
        assert_eq!(Backend::Sqlite.normalize_url("sqlite://x.db?mode=ro"), "sqlite://x.db?mode=ro");
        assert_eq!(Backend::MySql.normalize_url("mariadb://u@h/d"), "mysql://u@h/d");
    }
}
