//! The dts MySQL/MariaDB source: connects as a replica, checks the server's
//! replication settings, and turns the row-based binlog into row changes,
//! DDL events and transaction commits.
//!
//! # Layout
//! - [`checks`]: what the server must provide before a task streams (ROW
//!   format, FULL row image, privileges), failing with a clear reason.
//! - [`reader`]: the binlog stream loop: GTIDs, table maps, rows, DDL,
//!   commits; sends [`SourceItem`]s into a bounded channel (backpressure).
//! - [`snapshot`]: the copy of existing rows for `incr: false` tasks, in key
//!   ranges each read in a short snapshot of its own by chunk readers ahead
//!   of the stream, sent at the snapshot's place in it; resumable.
//! - [`pushdown`]: row filters as SQL `WHERE` clauses for the snapshot.
//! - [`schema`]: table shapes, from the binlog's own metadata first, then
//!   dts's [`history`] (kept in the checkpoint), then `information_schema`.
//! - [`decode`]: binlog values to [`dts_core::event::Value`].
//! - [`ddl`]: which QUERY statements are DDL and which table they name.
//! - [`position`]: checkpoints and GTID sets of both flavors.
//!
//! Errors are either transient (retry from the last checkpoint) or definite
//! (fail the task with the reason): see [`SourceError`].

pub mod charset;
pub mod checks;
pub mod ddl;
pub mod decode;
pub mod history;
pub mod position;
pub mod pushdown;
pub mod reader;
pub mod schema;
pub mod snapshot;

use std::time::Duration;

use dts_core::spec::{Secret, SourceTls, TlsMode};
use mysql_async::prelude::Queryable;

pub use position::{Checkpoint, Flavor};
pub use reader::SourceItem;

/// Server error codes after which retrying cannot help.
const DEFINITE_SERVER_ERRORS: [u16; 7] = [
    1044, // access denied to a database
    1045, // access denied (bad user or password)
    1142, // command denied on a table
    1227, // access denied: a privilege is missing
    1049, // unknown database
    1251, // client does not support the authentication protocol
    1698, // access denied (auth plugin)
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Connection lost, server restarting: retry from the checkpoint.
    #[error("{0}")]
    Transient(String),
    /// Wrong settings, missing privileges, purged binlog: the task fails.
    #[error("{0}")]
    Definite(String),
}

impl SourceError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }

    pub fn from_mysql(e: mysql_async::Error) -> Self {
        match &e {
            mysql_async::Error::Server(s) if s.code == 1236 => replication_refused(&s.message),
            mysql_async::Error::Server(s) if DEFINITE_SERVER_ERRORS.contains(&s.code) => {
                Self::Definite(format!("source error {}: {}", s.code, s.message))
            }
            mysql_async::Error::Url(_) => Self::Definite(format!("source address: {e}")),
            _ => Self::Transient(format!("source: {e}")),
        }
    }
}

/// Error 1236 covers every refusal of a replication request; its message
/// tells which: a purged binlog, another replica with the same server id
/// (MySQL and MariaDB disconnect the older one), or a position the server
/// never had (a source that diverged or was replaced).
fn replication_refused(message: &str) -> SourceError {
    let lower = message.to_ascii_lowercase();
    if lower.contains("same server_uuid") || lower.contains("same server_id") || lower.contains("same server id") {
        SourceError::Transient(format!(
            "source error 1236: {message} (another replica uses this task's server id: if it persists, give \
             each dts installation reading this source its own server_id_base)"
        ))
    } else if lower.contains("purged") || lower.contains("could not find first log file") || lower.contains("too old") {
        SourceError::Definite(format!(
            "source error 1236: {message} (the binlog at the task's checkpoint is gone from the source: resubmit \
             the task with incr=false to copy the data again)"
        ))
    } else {
        SourceError::Definite(format!(
            "source error 1236: {message} (the source does not have the task's position: it may have diverged \
             from the server the task read before, or be another server; check the source's GTID state)"
        ))
    }
}

/// How to reach the source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    /// Replica server id; unique among the source's replicas (one per task).
    pub server_id: u32,
    /// Silence after which the connection is presumed dead; the server
    /// sends heartbeats every second, so this only fires when it is gone.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub tls: SourceTls,
}

impl SourceConfig {
    fn opts(&self, ssl: Option<mysql_async::SslOpts>) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.expose().to_owned()))
            .prefer_socket(false)
            .ssl_opts(ssl)
            .into()
    }

    /// The TLS settings for `tls.mode`, as MySQL's `--ssl-mode` means them.
    fn ssl_opts(&self) -> Option<mysql_async::SslOpts> {
        let unchecked = || {
            mysql_async::SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true)
        };
        let with_ca = |opts: mysql_async::SslOpts| match &self.tls.ca_pem {
            Some(pem) => opts.with_root_certs(vec![pem.as_bytes().to_vec().into()]).with_disable_built_in_roots(true),
            None => opts,
        };
        match self.tls.mode {
            TlsMode::Disabled => None,
            TlsMode::Preferred | TlsMode::Required => Some(unchecked()),
            TlsMode::VerifyCa => {
                Some(with_ca(mysql_async::SslOpts::default().with_danger_skip_domain_validation(true)))
            }
            TlsMode::VerifyIdentity => Some(with_ca(mysql_async::SslOpts::default())),
        }
    }

    /// A fresh connection, bounded by `connect_timeout`. `preferred` falls
    /// back to plain TCP only when the server offers no TLS at all.
    pub async fn connect(&self) -> Result<mysql_async::Conn, SourceError> {
        match self.connect_with(self.ssl_opts()).await {
            Err(mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer))
                if self.tls.mode == TlsMode::Preferred =>
            {
                self.connect_with(None).await
            }
            other => other,
        }
        .map_err(|e| match e {
            mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
                SourceError::Definite(format!(
                    "source {}:{} does not offer TLS, which source.tls.mode {:?} requires",
                    self.host, self.port, self.tls.mode
                ))
            }
            e if is_tls_failure(&e) => SourceError::Definite(format!(
                "TLS to source {}:{} failed: {e} (check source.tls.mode and source.tls.ca_pem)",
                self.host, self.port
            )),
            e => SourceError::from_mysql(e),
        })
    }

    async fn connect_with(&self, ssl: Option<mysql_async::SslOpts>) -> Result<mysql_async::Conn, mysql_async::Error> {
        match tokio::time::timeout(self.connect_timeout, mysql_async::Conn::new(self.opts(ssl))).await {
            Ok(result) => result,
            Err(_) => Err(mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("source {}:{} did not answer within {:?}", self.host, self.port, self.connect_timeout),
            )))),
        }
    }
}

/// A certificate the client refused (or the server refused ours): retrying
/// does not help until the settings change.
fn is_tls_failure(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Tls(_)) => true,
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => {
            let text = io.to_string();
            text.contains("certificate") || text.contains("InvalidCertificate") || text.contains("UnknownIssuer")
        }
        _ => false,
    }
}

/// What the source server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub flavor: Flavor,
    pub version: String,
    /// MySQL `gtid_mode=ON`; always true on MariaDB, whose binlog always has GTIDs.
    pub gtids: bool,
    /// Events carry a CRC32 checksum.
    pub checksums: bool,
}

pub async fn server_info(conn: &mut mysql_async::Conn) -> Result<ServerInfo, SourceError> {
    let version: String =
        conn.query_first("SELECT VERSION()").await.map_err(SourceError::from_mysql)?.unwrap_or_default();
    let flavor = if version.to_ascii_lowercase().contains("mariadb") { Flavor::MariaDb } else { Flavor::MySql };
    let gtids = match flavor {
        Flavor::MariaDb => true,
        Flavor::MySql => {
            let mode: Option<String> = conn.query_first("SELECT @@GLOBAL.gtid_mode").await.unwrap_or(None);
            mode.is_some_and(|m| m.eq_ignore_ascii_case("ON"))
        }
    };
    let checksum: Option<String> =
        conn.query_first("SELECT @@GLOBAL.binlog_checksum").await.map_err(SourceError::from_mysql)?;
    Ok(ServerInfo { flavor, version, gtids, checksums: checksum.is_some_and(|c| !c.eq_ignore_ascii_case("NONE")) })
}

/// The source's binlog status row: file, position, ..., and (MySQL) the
/// executed GTID set in column 4.
pub(crate) async fn binlog_status(conn: &mut mysql_async::Conn) -> Result<mysql_async::Row, SourceError> {
    let status: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(row) => row,
        // MySQL 8.4 renamed it.
        Err(_) => conn.query_first("SHOW BINARY LOG STATUS").await.map_err(SourceError::from_mysql)?,
    };
    status.ok_or_else(|| SourceError::Definite("binary logging is off on the source (log_bin): enable it".into()))
}

/// The source's current end of binlog, where an `incr: true` task starts.
pub async fn current_position(conn: &mut mysql_async::Conn, info: &ServerInfo) -> Result<Checkpoint, SourceError> {
    let row = binlog_status(conn).await?;
    let file: String = row.get(0).unwrap_or_default();
    let pos: u64 = row.get(1).unwrap_or(4);
    let gtid = match info.flavor {
        Flavor::MariaDb => {
            let g: Option<String> =
                conn.query_first("SELECT @@GLOBAL.gtid_binlog_pos").await.map_err(SourceError::from_mysql)?;
            g.unwrap_or_default()
        }
        Flavor::MySql if info.gtids => row.get::<String, _>(4).unwrap_or_default(),
        Flavor::MySql => String::new(),
    };
    Ok(Checkpoint {
        flavor: info.flavor,
        file,
        pos,
        gtid,
        snapshot: None,
        schemas: Default::default(),
        copies: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(message: &str) -> SourceError {
        SourceError::from_mysql(mysql_async::Error::Server(mysql_async::ServerError {
            code: 1236,
            message: message.into(),
            state: "HY000".into(),
        }))
    }

    /// Messages as MySQL 8 and MariaDB 10.11 word them.
    #[test]
    fn error_1236_says_what_was_refused() {
        let dup = refused("A slave with the same server_uuid/server_id as this slave has connected to the master");
        assert!(dup.is_transient(), "{dup}");
        let purged = refused(
            "Cannot replicate because the master purged required binary logs. Replicate the missing transactions",
        );
        assert!(!purged.is_transient() && purged.to_string().contains("incr=false"), "{purged}");
        let gone = refused("Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.");
        assert!(gone.to_string().contains("incr=false"), "{gone}");
        let diverged = refused(
            "Error: connecting slave requested to start from GTID 0-1-999999, which is not in the master's binlog",
        );
        assert!(!diverged.is_transient(), "{diverged}");
        assert!(!diverged.to_string().contains("purged") && diverged.to_string().contains("diverged"), "{diverged}");
    }
}
