//! The dts task store: one SQL table of tasks (plus users and store facts)
//! on SQLite, PostgreSQL or MySQL/MariaDB, chosen by the URL.
//!
//! # Layout
//! - [`Store`]: the handle everyone uses; opening it connects, runs the
//!   backend's migrations (idempotent) and checks the secret key.
//! - [`tasks`]: task rows: create, read, page, alter with optimistic
//!   concurrency, desired state, progress writes fenced by epoch.
//! - [`users`]: API users that dts created itself.
//! - [`cluster`]: worker membership, the scheduler's lease, assignments.
//! - [`cipher`]: AES-256-GCM for source passwords at rest.
//! - [`backend`]: the three SQL dialects and their migrations.
//!
//! One runtime-generic pool (`sqlx::Any`) serves all three backends; the SQL
//! is written once with `?` placeholders and the few dialect differences are
//! in [`backend::Backend`]. Times are stored as Unix milliseconds everywhere.

pub mod backend;
pub mod cipher;
pub mod cluster;
pub mod ingest;
pub mod tasks;
mod text;
pub mod users;

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Executor;

pub use backend::Backend;
pub use cipher::{CryptoError, KeyError, SecretCipher};
pub use tasks::{Progress, TaskPage, TaskRecord, TaskSummary};

/// The purpose bound into the key-check canary.
const KEY_CHECK_PURPOSE: &str = "dts/key-check";
const KEY_CHECK_PLAIN: &str = "dts secret key check";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL {0:?}: use sqlite://PATH, postgres://... or mysql://...")]
    UnsupportedUrl(String),
    /// Connection lost, pool timed out: retrying later may succeed.
    #[error("the task store is unavailable: {0}")]
    Unavailable(String),
    #[error("task store query failed: {0}")]
    Query(String),
    #[error("task store migration failed: {0}")]
    Migration(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A row holds something this version cannot read.
    #[error("task store row is unreadable: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e.to_string()),
            sqlx::Error::Database(db) if passing(db.as_ref()) => Self::Unavailable(e.to_string()),
            _ => Self::Query(e.to_string()),
        }
    }
}

/// Database errors that a later retry of the same statement can get past:
/// lock contention, deadlocks, and a server that is (for now) read-only or
/// shutting down, as a primary is during a failover.
fn passing(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // Deadlock, lock wait timeout, --read-only, read-only transaction,
        // super_read_only, too many connections, killed or shut down.
        return matches!(my.number(), 1213 | 1205 | 1290 | 1792 | 1836 | 1040 | 1053 | 1927 | 4031);
    }
    let code = db.code().unwrap_or_default();
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLITE_BUSY and SQLITE_LOCKED, with their extended codes.
        return code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6));
    }
    // PostgreSQL: serialization failure, deadlock, read-only transaction,
    // lock not available, too many connections, shutdown, connection errors.
    matches!(code.as_ref(), "40001" | "40P01" | "25006" | "55P03" | "53300" | "57P01" | "57P02" | "57P03")
        || code.starts_with("08")
}

/// A handle on the task store. Cheap to clone; all clones share one pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Seals and opens source passwords; the same key must be given to every
    /// node that shares the store. Shared: the key schedule is large.
    cipher: std::sync::Arc<SecretCipher>,
    /// Bumped after every write that changes what a worker should run, so a
    /// worker in this process (standalone) acts at once instead of at its
    /// next poll. Other processes sharing the store still poll.
    task_changes: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl Store {
    /// Connects, migrates and checks that `cipher` is the store's key.
    pub async fn open(url: &str, cipher: SecretCipher) -> Result<Self, StoreError> {
        let backend = Backend::from_url(url).ok_or_else(|| StoreError::UnsupportedUrl(redact_url(url)))?;
        if backend == Backend::Sqlite {
            create_sqlite_parent_dir(url)?;
        }
        sqlx::any::install_default_drivers();
        let mut opts = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            // 32 for a server store: a control plane with 100 workers queued
            // their heartbeats behind 10 connections (p99 20-76 ms; 5 ms with
            // 32, measured by the bench's control scenario).
            .max_connections(if backend == Backend::Sqlite { 4 } else { 32 });
        if backend == Backend::Sqlite {
            // WAL lets dashboards read while a worker writes progress; the busy
            // timeout turns short write contention into waiting, not errors.
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&backend.normalize_url(url)).await?;
        backend.migrator().run(&pool).await.map_err(|e| StoreError::Migration(e.to_string()))?;
        let store = Self {
            pool,
            backend,
            cipher: std::sync::Arc::new(cipher),
            task_changes: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
        };
        store.check_key().await?;
        Ok(store)
    }

    /// An `INSERT` (with `?` placeholders) that yields the new row's id on
    /// every backend: `RETURNING id`, except on MySQL (its insert id).
    pub(crate) fn insert_id_sql(&self, insert: &str) -> String {
        if self.backend == Backend::MySql {
            self.backend.sql(insert).into_owned()
        } else {
            self.backend.sql(&format!("{insert} RETURNING id")).into_owned()
        }
    }

    /// Runs a query built on [`Self::insert_id_sql`]; the new row's id.
    pub(crate) async fn insert_id<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<i64, sqlx::Error> {
        use sqlx::Row;
        if self.backend == Backend::MySql {
            let done = query.execute(&self.pool).await?;
            done.last_insert_id().ok_or_else(|| sqlx::Error::Protocol("the server returned no insert id".into()))
        } else {
            query.fetch_one(&self.pool).await?.try_get::<i64, _>(0)
        }
    }

    /// Changes when a task is created, altered, started, stopped, given an
    /// on-demand snapshot or deleted through this handle (or a clone).
    pub fn task_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.task_changes.subscribe()
    }

    pub(crate) fn tasks_changed(&self) {
        self.task_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A round trip to the server, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Waits for in-flight queries and closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The first node to open the store seals a canary with its key; every
    /// later node must open it, or it would write rows nobody can read.
    async fn check_key(&self) -> Result<(), StoreError> {
        let canary = self.cipher.seal(KEY_CHECK_PURPOSE, KEY_CHECK_PLAIN)?;
        let insert = self.backend.insert_ignore("dts_meta (name, value)", "(?, ?)");
        sqlx::query(&self.backend.sql(&insert)).bind("key_check").bind(canary).execute(&self.pool).await?;
        let row = sqlx::query(&self.backend.sql("SELECT value FROM dts_meta WHERE name = ?"))
            .bind("key_check")
            .fetch_one(&self.pool)
            .await?;
        let stored = text::text(&row, "value")?;
        match self.cipher.open(KEY_CHECK_PURPOSE, &stored) {
            Ok(plain) if plain == KEY_CHECK_PLAIN => Ok(()),
            _ => Err(StoreError::Crypto(CryptoError::Decrypt)),
        }
    }
}

pub use dts_core::now_ms;

/// The URL without its password, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = rest.split_once('/').map_or((rest, ""), |(a, t)| (a, t));
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return url.to_owned() };
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    let slash = if rest.contains('/') { "/" } else { "" };
    format!("{scheme}://{user}:***@{host}{slash}{tail}")
}

fn create_sqlite_parent_dir(url: &str) -> Result<(), StoreError> {
    let path = url.split_once(':').map_or("", |(_, p)| p).trim_start_matches("//");
    let path = path.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(redact_url("postgres://dts:s3cret@db:5432/dts"), "postgres://dts:***@db:5432/dts");
        assert_eq!(redact_url("mysql://root:pw@127.0.0.1/x?ssl=1"), "mysql://root:***@127.0.0.1/x?ssl=1");
        assert_eq!(redact_url("sqlite://./data/dts.db"), "sqlite://./data/dts.db");
        assert_eq!(redact_url("postgres://u:p@h"), "postgres://u:***@h");
    }
}
