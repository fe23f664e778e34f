//! Replication settings and privileges a task needs, checked before it
//! streams, so a misconfigured source fails the task with a message that
//! says what to change instead of failing obscurely later.

use mysql_async::prelude::Queryable;

use crate::{ServerInfo, SourceError};

/// Checks binlog settings and the user's privileges for `dbs`.
pub async fn check_source(conn: &mut mysql_async::Conn, info: &ServerInfo, dbs: &[String]) -> Result<(), SourceError> {
    let row: Option<(Option<String>, Option<String>, Option<String>)> = conn
        .query_first("SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image")
        .await
        .map_err(SourceError::from_mysql)?;
    let (log_bin, format, image) = row.unwrap_or_default();
    let mut problems = settings_problems(log_bin.as_deref(), format.as_deref(), image.as_deref());
    let metadata: Option<String> = conn.query_first("SELECT @@GLOBAL.binlog_row_metadata").await.unwrap_or(None);
    if metadata.as_deref().is_some_and(|m| !m.eq_ignore_ascii_case("FULL")) {
        tracing::warn!(
            version = %info.version,
            "binlog_row_metadata is not FULL: column names come from information_schema, which is wrong for events written before a DDL"
        );
    }
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.map_err(SourceError::from_mysql)?;
    problems.extend(missing_privileges(&grants, dbs));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SourceError::Definite(format!("the source cannot be replicated: {}", problems.join("; "))))
    }
}

fn settings_problems(log_bin: Option<&str>, format: Option<&str>, image: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    if !log_bin.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("ON")) {
        problems.push("binary logging is off (set log_bin)".to_owned());
    }
    if !format.is_some_and(|f| f.eq_ignore_ascii_case("ROW")) {
        problems.push(format!("binlog_format is {} but must be ROW", format.unwrap_or("unset")));
    }
    if !image.is_some_and(|i| i.eq_ignore_ascii_case("FULL")) {
        problems.push(format!("binlog_row_image is {} but must be FULL", image.unwrap_or("unset")));
    }
    problems
}

/// What `SHOW GRANTS` lacks: REPLICATION SLAVE and REPLICATION CLIENT (or
/// MariaDB's BINLOG MONITOR) globally, SELECT globally or on each database.
pub fn missing_privileges(grants: &[String], dbs: &[String]) -> Vec<String> {
    let mut global: Vec<String> = Vec::new();
    let mut per_db: Vec<(String, Vec<String>)> = Vec::new();
    for g in grants {
        let Some(rest) = g.strip_prefix("GRANT ") else { continue };
        let Some(on) = rest.find(" ON ") else { continue };
        let privs: Vec<String> = rest[..on].split(',').map(|p| p.trim().to_ascii_uppercase()).collect();
        let scope = rest[on + 4..].split(" TO ").next().unwrap_or("").trim().to_owned();
        if scope == "*.*" {
            global.extend(privs);
        } else if let Some(db) = scope.strip_suffix(".*") {
            per_db.push((db.trim_matches('`').replace("``", "`"), privs));
        }
    }
    let has = |privs: &[String], p: &str| privs.iter().any(|x| x == p || x == "ALL PRIVILEGES" || x == "ALL");
    let mut missing = Vec::new();
    if !has(&global, "REPLICATION SLAVE") {
        missing.push("REPLICATION SLAVE ON *.*".to_owned());
    }
    if !(has(&global, "REPLICATION CLIENT") || has(&global, "BINLOG MONITOR") || has(&global, "SUPER")) {
        missing.push("REPLICATION CLIENT (MariaDB: BINLOG MONITOR) ON *.*".to_owned());
    }
    if !has(&global, "SELECT") {
        for db in dbs {
            if !per_db.iter().any(|(d, p)| d == db && has(p, "SELECT")) {
                missing.push(format!("SELECT ON `{db}`.*"));
            }
        }
    }
    if missing.is_empty() {
        Vec::new()
    } else {
        vec![format!("the user lacks {}", missing.join(", "))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn settings_must_be_row_and_full() {
        assert!(settings_problems(Some("1"), Some("ROW"), Some("FULL")).is_empty());
        let p = settings_problems(Some("0"), Some("MIXED"), Some("MINIMAL"));
        assert_eq!(p.len(), 3);
        assert!(p[1].contains("binlog_format is MIXED but must be ROW"));
        assert!(p[2].contains("binlog_row_image is MINIMAL but must be FULL"));
    }

    #[test]
    fn privileges_are_read_from_grants() {
        let ok =
            s(&["GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `r`@`%`", "GRANT SELECT ON `shop`.* TO `r`@`%`"]);
        assert!(missing_privileges(&ok, &s(&["shop"])).is_empty());
        assert_eq!(missing_privileges(&ok, &s(&["shop", "hr"])), vec!["the user lacks SELECT ON `hr`.*"]);
        let all = s(&["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"]);
        assert!(missing_privileges(&all, &s(&["x"])).is_empty());
        let none = s(&["GRANT USAGE ON *.* TO `r`@`%`"]);
        let m = missing_privileges(&none, &s(&["x"]));
        assert!(m[0].contains("REPLICATION SLAVE ON *.*") && m[0].contains("SELECT ON `x`.*"), "{m:?}");
    }
}
