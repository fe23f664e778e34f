//! The task store over TLS: the options of the PostgreSQL and MySQL URLs
//! (`sslmode`/`sslrootcert`, `ssl-mode`/`ssl-ca`) work, the connection is
//! really encrypted, and a certificate from another CA is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dts_e2e::{fresh_database_url, required, Backend, PrivateMariaDb};
use dts_store::{SecretCipher, Store};
use sqlx::{Connection, Executor, Row};

fn cipher() -> SecretCipher {
    SecretCipher::from_base64(&SecretCipher::generate_key_base64()).unwrap()
}

/// A CA that signed nothing the servers present.
fn other_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/certs.sh");
    let status = std::process::Command::new(script).arg(dir).status().expect("scripts/certs.sh");
    assert!(status.success());
    dir.join("ca.pem")
}

#[tokio::test]
async fn postgres_store_verifies_the_server_certificate() {
    let Ok(ca) = std::env::var("DTS_TEST_PG_CA") else {
        assert!(!required(), "DTS_TEST_PG_CA is not set: start scripts/services.sh up");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_database_url(Backend::Postgres, dir.path()).await else { return };
    let db = url.rsplit('/').next().unwrap().to_owned();
    // `localhost` is in the certificate, so verify-full checks the name too.
    let tls_url = format!("{}?sslmode=verify-full&sslrootcert={ca}", url.replace("127.0.0.1", "localhost"));

    let store = Store::open(&tls_url, cipher()).await.expect("open over verified TLS");
    store.ping().await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let row = admin
        .fetch_one(
            sqlx::query(
                "SELECT count(*) FILTER (WHERE s.ssl) AS tls, count(*) AS all FROM pg_stat_activity a \
                 JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
            )
            .bind(&db),
        )
        .await
        .unwrap();
    let (tls, all): (i64, i64) = (row.get("tls"), row.get("all"));
    assert!(all > 0 && tls == all, "every store connection is encrypted: {tls} of {all}");
    store.close().await;

    let wrong = other_ca(&dir.path().join("other"));
    let err = Store::open(&format!("{url}?sslmode=verify-full&sslrootcert={}", wrong.display()), cipher())
        .await
        .expect_err("a server certificate from another CA is refused");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn mysql_store_over_tls_to_a_server_that_requires_it() {
    let Some(db) = PrivateMariaDb::start_tls() else { return };
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = ca_dir.path().join("ca.pem");
    std::fs::write(&ca, db.ca_pem().expect("the server's CA")).unwrap();
    let base = db.url.split('?').next().unwrap().to_owned();
    let name = format!("dts_t_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::MySqlConnection::connect(&format!("{base}?ssl-mode=REQUIRED")).await.unwrap();
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();

    let url =
        format!("{}/{name}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", base.replace("127.0.0.1", "localhost"), ca.display());
    let store = Store::open(&url, cipher()).await.expect("open over verified TLS");
    store.ping().await.unwrap();
    store.close().await;

    let err =
        Store::open(&format!("{base}/{name}?ssl-mode=DISABLED"), cipher()).await.expect_err("the server requires TLS");
    // MariaDB answers an insecure login to a require_secure_transport server
    // with "access denied" (1045); MySQL names secure transport (3159).
    let text = err.to_string();
    assert!(["1045", "3159", "secure transport"].iter().any(|w| text.contains(w)), "{err}");

    let wrong = other_ca(&ca_dir.path().join("other"));
    let err = Store::open(&format!("{base}/{name}?ssl-mode=VERIFY_CA&ssl-ca={}", wrong.display()), cipher())
        .await
        .expect_err("a server certificate from another CA is refused");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
}
