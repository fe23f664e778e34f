//! TLS to the source: every `source.tls.mode` against a MariaDB that
//! requires TLS and one that offers none, and a task streaming over a
//! verified connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use dts_core::spec::{SourceTls, TlsMode};
use dts_e2e::{random_server_id, unique_topic, PrivateMariaDb, Rig, SourceDb};
use dts_source::SourceError;
use serde_json::json;

fn config(src: &SourceDb, mode: TlsMode, ca_pem: Option<String>) -> dts_source::SourceConfig {
    let mut cfg = src.source_config(random_server_id());
    cfg.connect_timeout = Duration::from_secs(10);
    cfg.tls = SourceTls { mode, ca_pem };
    cfg
}

/// A CA that signed nothing the server has.
fn other_ca() -> String {
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/certs.sh");
    assert!(std::process::Command::new(script).arg(dir.path()).status().unwrap().success());
    std::fs::read_to_string(dir.path().join("ca.pem")).unwrap()
}

async fn cipher(conn: &mut mysql_async::Conn) -> String {
    use mysql_async::prelude::Queryable;
    let row: Option<(String, String)> = conn.query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'").await.unwrap();
    row.map(|r| r.1).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_against_a_server_that_requires_tls() {
    let Some(server) = PrivateMariaDb::start_tls() else { return };
    let ca = server.ca_pem().expect("the server's CA");
    let src = SourceDb::create_on(&server.url).await;
    for (mode, ca_pem) in [
        (TlsMode::Preferred, None),
        (TlsMode::Required, None),
        (TlsMode::VerifyCa, Some(ca.clone())),
        (TlsMode::VerifyIdentity, Some(ca.clone())),
    ] {
        let mut conn = config(&src, mode, ca_pem).connect().await.unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert!(!cipher(&mut conn).await.is_empty(), "{mode:?} speaks TLS");
    }
    // Plain TCP is refused by the server; a CA that did not sign its
    // certificate is refused by dts. Both are definite: retrying cannot help.
    for (mode, ca_pem) in [
        (TlsMode::Disabled, None),
        (TlsMode::VerifyCa, Some(other_ca())),
        (TlsMode::VerifyIdentity, Some(other_ca())),
        (TlsMode::VerifyIdentity, None),
    ] {
        let err = config(&src, mode, ca_pem).connect().await.err().unwrap_or_else(|| panic!("{mode:?} connected"));
        assert!(matches!(err, SourceError::Definite(_)), "{mode:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_falls_back_only_where_no_tls_is_offered() {
    let Some(server) = PrivateMariaDb::start() else { return };
    let src = SourceDb::create_on(&server.url).await;
    let mut conn = config(&src, TlsMode::Preferred, None).connect().await.unwrap();
    assert_eq!(cipher(&mut conn).await, "", "plain TCP after the fallback");
    for mode in [TlsMode::Required, TlsMode::VerifyCa, TlsMode::VerifyIdentity] {
        let err = config(&src, mode, None).connect().await.err().unwrap();
        assert!(matches!(&err, SourceError::Definite(m) if m.contains("does not offer TLS")), "{mode:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_streams_over_a_verified_connection() {
    let Some(server) = PrivateMariaDb::start_tls() else { return };
    let ca = server.ca_pem().unwrap();
    let src = SourceDb::create_on(&server.url).await;
    let Some(rig) = Rig::start_with(src).await else { return };
    rig.src.exec(&["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))"]).await;
    let topic = unique_topic("tls");
    let mut body: serde_json::Value = serde_json::from_str(
        &rig.task(json!({"addr": rig.kafka, "topic": topic}), json!([{"dbname": rig.src.db, "match": "t"}])),
    )
    .unwrap();
    body["task"]["source"]["tls"] = json!({"mode": "verify_identity", "ca_pem": ca});
    let id = rig.submit_running(&body.to_string()).await;
    rig.src.exec(&["INSERT INTO t VALUES (1, 'a'), (2, 'b')"]).await;
    let got = rig.messages(&topic, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    // The CA is part of the spec the API returns; it is not a secret.
    let detail = rig.api.call("GET", &format!("/v1/task/{id}"), None).await;
    assert_eq!(detail.expect_ok()["task"]["source"]["tls"]["mode"], "verify_identity");
    rig.stop().await;
}
