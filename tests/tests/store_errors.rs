//! Store errors a retry gets past (a lock held by another writer, a
//! server that is read-only during a failover) are transient, so a task
//! retries instead of failing; a broken statement is not. Each error is
//! produced by the real server, through the same driver the store uses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dts_e2e::{fresh_database_url, Backend};
use dts_store::StoreError;
use sqlx::any::AnyPoolOptions;
use sqlx::{Connection, Executor};

async fn connect(url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url).await.expect(url)
}

fn classify(result: Result<sqlx::any::AnyQueryResult, sqlx::Error>) -> StoreError {
    StoreError::from(result.expect_err("the statement should fail"))
}

#[tokio::test]
async fn sqlite_busy_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).await.unwrap() + "?mode=rwc";
    let mut holder = connect(&url).await;
    holder.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)").await.unwrap();
    holder.execute("BEGIN EXCLUSIVE").await.unwrap();
    let mut writer = connect(&url).await;
    writer.execute("PRAGMA busy_timeout = 0").await.unwrap();
    let e = classify(writer.execute("INSERT INTO t VALUES (1)").await);
    assert!(e.is_transient(), "{e}");
    holder.execute("ROLLBACK").await.unwrap();
    let e = classify(writer.execute("INSERT INTO missing VALUES (1)").await);
    assert!(!e.is_transient(), "{e}");
}

#[tokio::test]
async fn postgres_read_only_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_database_url(Backend::Postgres, dir.path()).await else { return };
    let mut conn = connect(&url).await;
    conn.execute("CREATE TABLE t (id INT PRIMARY KEY)").await.unwrap();
    // What a client of a demoted primary or a standby sees.
    conn.execute("SET default_transaction_read_only = on").await.unwrap();
    let e = classify(conn.execute("INSERT INTO t VALUES (1)").await);
    assert!(e.is_transient(), "{e}");
    conn.execute("SET default_transaction_read_only = off").await.unwrap();
    let e = classify(conn.execute("INSERT INTO t VALUES ('x')").await);
    assert!(!e.is_transient(), "{e}");
}

#[tokio::test]
async fn mysql_lock_wait_timeout_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_database_url(Backend::MySql, dir.path()).await else { return };
    let pool = AnyPoolOptions::new().max_connections(2).connect(&url).await.unwrap();
    let mut holder = pool.acquire().await.unwrap();
    holder.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB").await.unwrap();
    holder.execute("INSERT INTO t VALUES (1, 0)").await.unwrap();
    holder.execute("BEGIN").await.unwrap();
    holder.execute("UPDATE t SET v = 1 WHERE id = 1").await.unwrap();
    let mut writer = pool.acquire().await.unwrap();
    writer.execute("SET SESSION innodb_lock_wait_timeout = 1").await.unwrap();
    let e = classify(writer.execute("UPDATE t SET v = 2 WHERE id = 1").await);
    assert!(e.is_transient(), "{e}");
    let e = classify(writer.execute("UPDATE missing SET v = 2").await);
    assert!(!e.is_transient(), "{e}");
}
