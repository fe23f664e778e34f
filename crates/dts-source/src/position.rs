//! Where a task is in the source's binlog, and how it resumes.
//!
//! A [`Checkpoint`] names the last fully delivered transaction: its binlog
//! file and end position, and the GTID state that includes it (MariaDB
//! `domain-server-seq` per domain, MySQL `uuid:1-N` sets). With GTIDs the
//! task resumes by GTID, which survives failover to another server of the
//! same replication topology; without, by file and position.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::SchemaHistory;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    MariaDb,
    MySql,
}

/// A resumable position, stored as JSON in the task's `checkpoint` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub flavor: Flavor,
    pub file: String,
    pub pos: u64,
    /// MariaDB: the GTID state (`0-1-42,1-2-7`); MySQL: the executed GTID
    /// set. Empty when the server does not use GTIDs.
    #[serde(default)]
    pub gtid: String,
    /// Present while an `incr: false` task is still copying existing rows;
    /// the position above is then where streaming starts afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotProgress>,
    /// The shapes of the selected tables at this position, so events after
    /// it decode as written whatever the catalogue says when they are read.
    #[serde(default, skip_serializing_if = "SchemaHistory::is_empty")]
    pub schemas: SchemaHistory,
    /// What the task's copies have covered, carried by every checkpoint.
    #[serde(flatten)]
    pub copies: Copies,
}

/// What the task's copies have covered so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copies {
    /// The newest on-demand snapshot request whose tables were added to
    /// the copy (0: none), so a restart does not add them again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requests_taken: i64,
    /// The tables of the newest on-demand request once copied, so its
    /// progress stays visible after the copy ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_tables: Vec<TableProgress>,
    /// An `incr: false` task's filters (`dbname`, `match`) whose tables
    /// were copied: an alter that selects more tables copies those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered: Option<Vec<(String, String)>>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// How far the copy of existing rows has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// Every table to copy, in copy order.
    pub tables: Vec<TableProgress>,
    /// Rows delivered so far, all tables.
    pub rows_copied: u64,
    /// When the copy was planned (ms since the epoch; 0 when unknown).
    #[serde(default)]
    pub started_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableProgress {
    pub db: String,
    pub table: String,
    pub done: bool,
    /// Key values of the last delivered row (tagged JSON values); `None`
    /// before the first chunk, and for tables copied in one scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<Vec<serde_json::Value>>,
    /// Rows of this table delivered so far.
    #[serde(default)]
    pub rows: u64,
    /// Chunks of this table delivered so far.
    #[serde(default)]
    pub chunks: u64,
    /// The catalogue's row estimate when the copy was planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_rows: Option<u64>,
    /// The index the copy walks (`PRIMARY` or a unique index's name); empty
    /// when the table has none and is read in one scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Anything an operator should know about this table's copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The on-demand request that asked for this copy; `None` for the
    /// copy of an `incr: false` task's first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<i64>,
    /// The request's row filter: only rows it accepts are copied.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

impl TableProgress {
    pub fn new(db: String, table: String, estimated_rows: Option<u64>) -> Self {
        Self {
            db,
            table,
            done: false,
            last_key: None,
            rows: 0,
            chunks: 0,
            estimated_rows,
            key: None,
            note: None,
            request: None,
            condition: None,
        }
    }
}

impl SnapshotProgress {
    /// A copy of `tables` starting now.
    pub fn new(tables: Vec<TableProgress>) -> Self {
        Self { tables, rows_copied: 0, started_ms: dts_core::now_ms() }
    }

    pub fn tables_done(&self) -> usize {
        self.tables.iter().filter(|t| t.done).count()
    }
}

impl Checkpoint {
    /// The list endpoint's `pos`: `MariaDB/0-1-42`, `MySQL56/uuid:1-42`, or
    /// `mysql-bin.000003:1234` without GTIDs.
    pub fn display(&self) -> String {
        match (self.flavor, self.gtid.is_empty()) {
            (_, true) => format!("{}:{}", self.file, self.pos),
            (Flavor::MariaDb, false) => format!("MariaDB/{}", self.gtid),
            (Flavor::MySql, false) => format!("MySQL56/{}", self.gtid),
        }
    }
}

/// MariaDB's GTID state: the last GTID seen in each replication domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariaGtidState {
    domains: BTreeMap<u32, (u32, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed GTID {0:?}")]
pub struct GtidParseError(pub String);

impl MariaGtidState {
    /// Parses `domain-server-seq[,domain-server-seq...]` (empty is empty).
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        let mut domains = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || GtidParseError(part.to_owned());
            let mut it = part.split('-');
            let domain = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            let server = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            let seq = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            if it.next().is_some() {
                return Err(bad());
            }
            domains.insert(domain, (server, seq));
        }
        Ok(Self { domains })
    }

    pub fn update(&mut self, domain: u32, server: u32, seq: u64) {
        self.domains.insert(domain, (server, seq));
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

impl fmt::Display for MariaGtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (domain, (server, seq))) in self.domains.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{domain}-{server}-{seq}")?;
        }
        Ok(())
    }
}

/// A MySQL GTID set: per source UUID, sorted disjoint inclusive intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlGtidSet {
    sets: BTreeMap<String, Vec<(u64, u64)>>,
}

impl MysqlGtidSet {
    /// Parses `uuid:1-5:7,uuid2:3` (whitespace and newlines allowed, as
    /// `SHOW MASTER STATUS` prints them).
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        let mut set = Self::default();
        let cleaned: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        for part in cleaned.split(',').filter(|p| !p.is_empty()) {
            let bad = || GtidParseError(part.to_owned());
            let mut it = part.split(':');
            let uuid = it.next().filter(|u| u.len() == 36).ok_or_else(bad)?.to_ascii_lowercase();
            let mut any = false;
            for interval in it {
                let (a, b) = match interval.split_once('-') {
                    Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
                    None => {
                        let v: u64 = interval.parse().map_err(|_| bad())?;
                        (v, v)
                    }
                };
                if a == 0 || b < a {
                    return Err(bad());
                }
                set.add_range(&uuid, a, b);
                any = true;
            }
            if !any {
                return Err(bad());
            }
        }
        Ok(set)
    }

    pub fn add(&mut self, uuid: &str, gno: u64) {
        self.add_range(uuid, gno, gno);
    }

    fn add_range(&mut self, uuid: &str, start: u64, end: u64) {
        let intervals = self.sets.entry(uuid.to_ascii_lowercase()).or_default();
        intervals.push((start, end));
        intervals.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
        for &(a, b) in intervals.iter() {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *intervals = merged;
    }
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (uuid, intervals)) in self.sets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(uuid)?;
            for (a, b) in intervals {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mariadb_state_round_trips_and_updates_per_domain() {
        let mut s = MariaGtidState::parse("0-1-5, 2-7-9").unwrap();
        s.update(0, 1, 6);
        s.update(1, 3, 1);
        assert_eq!(s.to_string(), "0-1-6,1-3-1,2-7-9");
        assert!(MariaGtidState::parse("").unwrap().is_empty());
        for bad in ["0-1", "a-1-2", "0-1-2-3", "0-1-x"] {
            assert!(MariaGtidState::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mysql_sets_merge_intervals() {
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut s = MysqlGtidSet::parse(&format!("{u}:1-5:7-9,\n{}:3", u.replace('3', "4"))).unwrap();
        s.add(u, 6);
        s.add(u, 10);
        s.add(u, 12);
        assert_eq!(s.to_string(), format!("{u}:1-10:12,{}:3", u.replace('3', "4")));
        assert!(MysqlGtidSet::parse("nope:1").is_err());
        assert!(MysqlGtidSet::parse(&format!("{u}:0")).is_err());
        assert!(MysqlGtidSet::parse(&format!("{u}:5-3")).is_err());
    }

    #[test]
    fn checkpoints_display_like_the_seed() {
        let mut c = Checkpoint {
            flavor: Flavor::MariaDb,
            file: "mysql-bin.000003".into(),
            pos: 1234,
            gtid: "0-1-42".into(),
            snapshot: None,
            schemas: SchemaHistory::default(),
            copies: Default::default(),
        };
        assert_eq!(c.display(), "MariaDB/0-1-42");
        c.flavor = Flavor::MySql;
        c.gtid = "d48092bf-40ea-11e9-8663-b496913726e0:1-1202949000".into();
        assert_eq!(c.display(), "MySQL56/d48092bf-40ea-11e9-8663-b496913726e0:1-1202949000");
        c.gtid.clear();
        assert_eq!(c.display(), "mysql-bin.000003:1234");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), c);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// The GTID parsers' fuzz target: any text is parsed or refused, and
        /// what parses prints back to text that parses to the same value.
        #[test]
        fn gtid_text_never_panics_and_round_trips(text in "[0-9a-f:,\\- ]{0,48}") {
            if let Ok(state) = MariaGtidState::parse(&text) {
                proptest::prop_assert_eq!(MariaGtidState::parse(&state.to_string()).ok(), Some(state));
            }
            if let Ok(set) = MysqlGtidSet::parse(&text) {
                proptest::prop_assert_eq!(MysqlGtidSet::parse(&set.to_string()).ok(), Some(set));
            }
        }
    }
}
