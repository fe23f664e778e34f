//! TLS on every hop of a cluster: the REST API over HTTPS only (HTTP/2 and
//! HTTP/1.1) with client certificates required, workers reaching the
//! control plane over verified mutual TLS, the task store, the source and
//! Kafka (mutual TLS) over verified TLS; plus a certificate renewed on disk
//! being served without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dts_e2e::{
    free_port, fresh_database_url, kafka_tls, read_until_with, unique_topic, Backend, PrivateMariaDb, SourceDb,
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_dts");
const AUTH: &str = "Basic b3BzOnB3"; // ops:pw
const TOKEN: &str = "tls-cluster-token";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(args).envs(envs.iter().copied()).env("DTS_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null());
    Proc(cmd.spawn().unwrap())
}

fn certs(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/certs.sh");
    assert!(Command::new(script).arg(dir).status().unwrap().success());
}

/// A client that trusts only `ca` (no public roots), HTTP/2 when offered,
/// presenting the certificate of `identity` (a certs.sh directory) if given.
fn client(ca: &Path, identity: Option<&Path>) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(5));
    if let Some(dir) = identity {
        let mut both = std::fs::read(dir.join("client.pem")).unwrap();
        both.extend(std::fs::read(dir.join("client.key")).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&both).unwrap());
    }
    b.build().unwrap()
}

fn pem(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

async fn call(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<&Value>) -> Value {
    let mut req = http.request(method, url).header("Authorization", AUTH);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    resp.json().await.unwrap()
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, secs: u64, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_with_tls_on_every_hop() {
    let Some((kafka, kafka_certs)) = kafka_tls(true) else { return };
    let Ok(store_ca) = std::env::var("DTS_TEST_PG_CA") else {
        assert!(!dts_e2e::required(), "DTS_TEST_PG_CA is not set: start scripts/services.sh up");
        return;
    };
    let Some(server) = PrivateMariaDb::start_tls() else { return };
    let source_ca = server.ca_pem().unwrap();
    let src = SourceDb::create_on(&server.url).await;
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki);
    let (cert, key, ca) = (pki.join("server.pem"), pki.join("server.key"), pki.join("ca.pem"));
    let tls_args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];

    let cp_port = free_port();
    // The task store over verified TLS (`localhost` is the name in its certificate).
    let store = fresh_database_url(Backend::Postgres, dir.path()).await.expect("DTS_TEST_PG_URL");
    let store = format!("{}?sslmode=verify-full&sslrootcert={store_ca}", store.replace("127.0.0.1", "localhost"));
    let key_b64 = String::from_utf8(Command::new(BIN).arg("gen-key").output().unwrap().stdout).unwrap();
    let listen = format!("127.0.0.1:{cp_port}");
    let mut args = vec!["control", "--listen", &listen, "--tls-client-ca", ca.to_str().unwrap()];
    args.extend(tls_args);
    let _cp = spawn(
        &args,
        &[
            ("DTS_STORE_URL", &store),
            ("DTS_SECRET_KEY", key_b64.trim()),
            ("DTS_CLUSTER_TOKEN", TOKEN),
            ("DTS_AUTH_USERS", "ops:pw"),
        ],
    );
    let http = client(&ca, Some(&pki));
    let base = format!("https://localhost:{cp_port}");
    wait_for("the control plane over HTTPS", 30, || {
        let (http, url) = (http.clone(), format!("{base}/healthz"));
        async move { http.get(url).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;

    // Client certificates are required: without one, or with one from
    // another CA, the handshake fails before any HTTP.
    let stranger = dir.path().join("stranger");
    certs(&stranger);
    let url = format!("{base}/healthz");
    assert!(client(&ca, None).get(&url).send().await.is_err(), "no client certificate");
    assert!(client(&ca, Some(&stranger)).get(&url).send().await.is_err(), "a certificate from another CA");

    // HTTPS only: plain HTTP on the same port gets no answer.
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    assert!(plain.get(format!("http://127.0.0.1:{cp_port}/healthz")).send().await.is_err(), "plain HTTP refused");
    // HTTP/2 is offered (ALPN) and used.
    let h2 = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);

    // A worker that verifies the control plane's certificate.
    let w_port = free_port();
    let (w_listen, w_data) = (format!("127.0.0.1:{w_port}"), dir.path().join("w1"));
    let (client_cert, client_key) = (pki.join("client.pem"), pki.join("client.key"));
    let mut wargs = vec![
        "worker",
        "--listen",
        &w_listen,
        "--control",
        &base,
        "--control-ca",
        ca.to_str().unwrap(),
        "--control-cert",
        client_cert.to_str().unwrap(),
        "--control-key",
        client_key.to_str().unwrap(),
        "--worker-id",
        "w1",
        "--data-dir",
        w_data.to_str().unwrap(),
    ];
    wargs.extend(tls_args);
    let _worker = spawn(&wargs, &[("DTS_CLUSTER_TOKEN", TOKEN)]);
    wait_for("the worker to join over HTTPS", 30, || {
        let (http, url) = (http.clone(), format!("{base}/v1/workers"));
        async move {
            let Ok(r) = http.get(url).header("Authorization", AUTH).send().await else { return false };
            let v: Value = r.json().await.unwrap_or_default();
            v["data"]["workers"].as_array().is_some_and(|w| w.iter().any(|w| w["id"] == "w1"))
        }
    })
    .await;

    // A task reading the source over verified TLS and writing to Kafka over mutual TLS.
    src.exec(&["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))"]).await;
    let topic = unique_topic("tlshops");
    let body = json!({"task": {
        "source": {"host": src.host, "port": src.port, "username": src.user, "password": src.password,
                   "tls": {"mode": "verify_identity", "ca_pem": source_ca}},
        "kafka": {"addr": kafka, "topic": topic, "security": {"protocol": "SSL",
                  "ca_pem": pem(&kafka_certs, "ca.pem"), "cert_pem": pem(&kafka_certs, "client.pem"),
                  "key_pem": pem(&kafka_certs, "client.key")}},
        "filters": [{"dbname": src.db, "match": "t"}],
    }});
    let r = call(&http, reqwest::Method::POST, &format!("{base}/v1/dispatch/submit"), Some(&body)).await;
    assert_eq!(r["code"], 0, "{r}");
    let id = r["data"]["id"].as_i64().unwrap();
    wait_for("the task Running on w1", 30, || {
        let (http, url) = (http.clone(), format!("{base}/v1/task/{id}"));
        async move {
            let v = call(&http, reqwest::Method::GET, &url, None).await;
            v["data"]["state"] == "Running" && v["data"]["pos"] != ""
        }
    })
    .await;
    src.exec(&["INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')"]).await;
    let (ca_pem, cert_pem, key_pem) =
        (pem(&kafka_certs, "ca.pem"), pem(&kafka_certs, "client.pem"), pem(&kafka_certs, "client.key"));
    let got = tokio::task::spawn_blocking(move || {
        let settings = [
            ("security.protocol", "SSL"),
            ("ssl.ca.pem", ca_pem.as_str()),
            ("ssl.certificate.pem", cert_pem.as_str()),
            ("ssl.key.pem", key_pem.as_str()),
        ];
        read_until_with(&kafka, &settings, &[&topic], |m| m.len() >= 3)
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 3);

    // A renewed certificate (from another CA) is served without a restart.
    let renewed = dir.path().join("renewed");
    certs(&renewed);
    std::fs::copy(renewed.join("server.key"), &key).unwrap();
    std::fs::copy(renewed.join("server.pem"), &cert).unwrap();
    let fresh = client(&renewed.join("ca.pem"), Some(&pki));
    wait_for("the renewed certificate", 30, || {
        let (fresh, url) = (fresh.clone(), format!("{base}/healthz"));
        async move { fresh.get(url).send().await.is_ok() }
    })
    .await;
}
