//! Shared harness of the end-to-end tests: real task stores on every backend
//! and the real API over real HTTP.
//!
//! Servers are found through environment variables that
//! `scripts/services.sh up` writes to `.services/env`:
//! - `DTS_TEST_MYSQL_URL`: admin URL of a MariaDB/MySQL server;
//! - `DTS_TEST_MYSQL_NOMETA_URL`: one with `binlog_row_metadata=NO_LOG`;
//! - `DTS_TEST_PG_URL`: admin URL of a PostgreSQL server;
//! - `DTS_TEST_KAFKA_ADDR`: a Kafka-protocol broker.
//!
//! A backend whose variable is unset is skipped with a notice, unless
//! `DTS_REQUIRE_SERVICES=1` (set by `scripts/test.sh` and CI), where a
//! missing server fails the test: a green run then means every backend ran.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod kafka;
mod process;
pub mod proxy;
mod rig;
mod source;
mod store;

use std::time::Duration;

pub use api::*;
pub use kafka::*;
pub use process::*;
pub use rig::*;
pub use source::*;
pub use store::*;

/// True where a missing server must fail the test instead of skipping it.
pub fn required() -> bool {
    std::env::var("DTS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Polls `check` every 100 ms until it returns `Some` or `secs` pass.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}_{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}
