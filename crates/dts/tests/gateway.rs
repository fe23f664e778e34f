//! `dts gateway`: an ingest-only node that learns streams and keys from the
//! control planes over the signed cluster API. Streams and keys created
//! on the control plane are served by the gateway within seconds, revoked
//! keys stop working, and records land in Kafka named after the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dts_e2e::{free_port, kafka_addr, read_until, unique_topic};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_dts");
const AUTH: &str = "Basic b3BzOnB3"; // ops:pw
const TOKEN: &str = "gateway-cluster-token";

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
    for (k, _) in std::env::vars() {
        if k.starts_with("DTS_") && !envs.iter().any(|(e, _)| *e == k) {
            cmd.env_remove(k);
        }
    }
    Proc(cmd.spawn().unwrap())
}

fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, Value) {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(10));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let res = match body {
        Some(b) => req.send_string(b),
        None => req.call(),
    };
    let resp = match res {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return (0, json!({ "transport": e.to_string() })),
    };
    let status = resp.status();
    (status, resp.into_json().unwrap_or(Value::Null))
}

fn wait(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_gateway_serves_the_control_planes_streams_and_keys() {
    let Some(kafka) = kafka_addr() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cp_port, gw_port) = (free_port(), free_port());
    let store = format!("sqlite://{}", dir.path().join("dts.db").display());
    let key = String::from_utf8(Command::new(BIN).arg("gen-key").output().unwrap().stdout).unwrap();
    let _cp = spawn(
        &["control", "--listen", &format!("127.0.0.1:{cp_port}")],
        &[
            ("DTS_STORE_URL", &store),
            ("DTS_SECRET_KEY", key.trim()),
            ("DTS_CLUSTER_TOKEN", TOKEN),
            ("DTS_AUTH_USERS", "ops:pw"),
        ],
    );
    let gw_data = dir.path().join("gw");
    let _gw = spawn(
        &[
            "gateway",
            "--listen",
            &format!("127.0.0.1:{gw_port}"),
            "--control",
            &format!("http://127.0.0.1:{cp_port}"),
            "--worker-id",
            "gw1",
            "--data-dir",
            gw_data.to_str().unwrap(),
        ],
        &[("DTS_CLUSTER_TOKEN", TOKEN)],
    );
    let cp = format!("http://127.0.0.1:{cp_port}");
    let gw = format!("http://127.0.0.1:{gw_port}");
    wait("both nodes healthy", || {
        call("GET", &format!("{cp}/healthz"), &[], None).0 == 200
            && call("GET", &format!("{gw}/healthz"), &[], None).0 == 200
    });

    // A stream created on the control plane is served by the gateway.
    let topic = unique_topic("gw");
    let stream = json!({"stream": {"protocol": "inlong", "group_id": "g", "stream_id": "s",
                                   "kafka": {"addr": kafka, "topic": topic}}});
    let (status, body) =
        call("POST", &format!("{cp}/v1/ingest/streams"), &[("Authorization", AUTH)], Some(&stream.to_string()));
    assert_eq!(status, 200, "{body}");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    wait("the gateway to serve the new stream", || {
        call("POST", &format!("{gw}/dataproxy/message"), &form, Some("groupId=g&streamId=s&body=via-gateway")).1["code"]
            == 0
    });
    let got = read_until(&kafka, &[&topic], |m| !m.is_empty());
    assert_eq!(got[0].text, "via-gateway");
    assert_eq!(got[0].worker.as_deref(), Some("gw1"), "the gateway names itself in dts-worker");
    // The gateway counts what it wrote, per stream, on its own /metrics.
    let metrics = ureq::get(&format!("{gw}/metrics")).call().unwrap().into_string().unwrap();
    let written = metrics
        .lines()
        .find(|l| l.starts_with("dts_ingest_records_total{") && l.contains("protocol=\"inlong\""))
        .unwrap_or_else(|| panic!("no ingest records in {metrics}"));
    assert!(written.ends_with(" 1"), "{written}");
    assert!(metrics.contains("dts_ingest_request_duration_seconds_count{"), "{metrics}");
    assert_eq!(ureq::get(&format!("{gw}/readyz")).call().map(|r| r.status()).ok(), Some(200));
    // The control planes count it too: the gateway reports its counters
    // with every configuration read, and the streams list sums every node.
    wait("the control plane to count the gateway's record", || {
        let (_, list) = call("GET", &format!("{cp}/v1/ingest/streams"), &[("Authorization", AUTH)], None);
        list["data"]["streams"][0]["counters"]["records"] == 1
    });

    // Keys too: a DIS token works on the gateway, and stops once revoked.
    let dis = json!({"stream": {"protocol": "dis", "project_id": "p1", "stream_name": "d1",
                                "kafka": {"addr": kafka, "topic": unique_topic("gw_dis")}}});
    let (_, created) =
        call("POST", &format!("{cp}/v1/ingest/streams"), &[("Authorization", AUTH)], Some(&dis.to_string()));
    let id = created["data"]["id"].as_i64().unwrap();
    let ask = json!({"key": {"protocol": "dis", "streams": [id], "type": "token"}});
    let (_, key) = call("POST", &format!("{cp}/v1/ingest/keys"), &[("Authorization", AUTH)], Some(&ask.to_string()));
    let (key_id, token) = (key["data"]["id"].as_i64().unwrap(), key["data"]["token"].as_str().unwrap().to_owned());
    let records = json!({"stream_name": "d1", "records": [{"data": "eA=="}]}).to_string();
    let send = || {
        call(
            "POST",
            &format!("{gw}/v2/p1/records"),
            &[("X-Auth-Token", &token), ("Content-Type", "application/json")],
            Some(&records),
        )
    };
    wait("the gateway to accept the new token", || send().0 == 200);
    call("DELETE", &format!("{cp}/v1/ingest/keys/{key_id}"), &[("Authorization", AUTH)], None);
    wait("the gateway to refuse the revoked token", || send().0 == 401);

    // The gateway serves ingest only: no operator API, no cluster API.
    assert_eq!(call("GET", &format!("{gw}/v1/task/list"), &[("Authorization", AUTH)], None).0, 404);

    // With --tls-cert/--tls-key a gateway speaks HTTPS only, like the other nodes.
    let pki = dir.path().join("pki");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/certs.sh");
    assert!(Command::new(script).arg(&pki).status().unwrap().success());
    let tls_port = free_port();
    let _gw_tls = spawn(
        &[
            "gateway",
            "--listen",
            &format!("127.0.0.1:{tls_port}"),
            "--control",
            &cp,
            "--worker-id",
            "gw2",
            "--data-dir",
            dir.path().join("gw2").to_str().unwrap(),
            "--tls-cert",
            pki.join("server.pem").to_str().unwrap(),
            "--tls-key",
            pki.join("server.key").to_str().unwrap(),
        ],
        &[("DTS_CLUSTER_TOKEN", TOKEN)],
    );
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.pem")).unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let https = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let url = format!("https://localhost:{tls_port}/dataproxy/message");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sent = https
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("groupId=g&streamId=s&body=over-https")
                .send()
                .await;
            if let Ok(r) = sent {
                let v: Value = r.json().await.unwrap();
                if v["code"] == 0 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the TLS gateway did not serve the stream");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{tls_port}/healthz")).send().await;
        assert!(plain.is_err(), "plain HTTP is refused");
    });
    let got = read_until(&kafka, &[&topic], |m| m.iter().any(|m| m.text == "over-https"));
    assert!(got.iter().any(|m| m.text == "over-https" && m.worker.as_deref() == Some("gw2")));
}
