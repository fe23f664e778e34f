//! Task stores on every backend, each test on a fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dts_store::{SecretCipher, Store};
use sqlx::Executor;

use crate::required;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

/// A store of its own for one test, and what is needed to look inside it.
#[derive(Debug)]
pub struct TestStore {
    pub store: Store,
    pub url: String,
    pub key: String,
    _dir: tempfile::TempDir,
}

fn unique_name() -> String {
    format!("dts_t_{:016x}", rand::random::<u64>())
}

/// The URL of a fresh, empty database on `backend`, or `None` to skip.
pub async fn fresh_database_url(backend: Backend, dir: &std::path::Path) -> Option<String> {
    let var = match backend {
        Backend::Sqlite => return Some(format!("sqlite://{}", dir.join("dts.db").display())),
        Backend::Postgres => "DTS_TEST_PG_URL",
        Backend::MySql => "DTS_TEST_MYSQL_URL",
    };
    let Ok(admin) = std::env::var(var) else {
        assert!(!required(), "{var} is not set but DTS_REQUIRE_SERVICES=1: start scripts/services.sh up");
        eprintln!("skipped on {backend:?}: {var} is not set (run scripts/services.sh up)");
        return None;
    };
    let admin = admin.trim_end_matches('/').to_owned();
    let name = unique_name();
    sqlx::any::install_default_drivers();
    let admin_db = match backend {
        Backend::Postgres => format!("{admin}/postgres"),
        _ => admin.clone(),
    };
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&admin_db).await.expect(var);
    pool.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create database");
    pool.close().await;
    Some(format!("{admin}/{name}"))
}

/// Opens a store on a fresh database; `None` when the backend is skipped.
pub async fn fresh_store(backend: Backend) -> Option<TestStore> {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(backend, dir.path()).await?;
    let key = SecretCipher::generate_key_base64();
    let store = Store::open(&url, SecretCipher::from_base64(&key).unwrap()).await.expect("open store");
    Some(TestStore { store, url, key, _dir: dir })
}

/// Generates one `#[tokio::test]` per backend for each listed async test
/// function taking the harness value `$arg` built by `$make`.
#[macro_export]
macro_rules! per_backend {
    ($make:path => $($name:ident),* $(,)?) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() {
                   if let Some(h) = $make($crate::Backend::Sqlite).await { super::$name(h).await }
               } )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() {
                   if let Some(h) = $make($crate::Backend::Postgres).await { super::$name(h).await }
               } )*
        }
        mod mysql {
            #[allow(unused_imports)]
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() {
                   if let Some(h) = $make($crate::Backend::MySql).await { super::$name(h).await }
               } )*
        }
    };
}
