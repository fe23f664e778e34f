//! `kafka.security` end to end: TLS and mutual TLS to brokers behind TLS
//! terminators, SASL as far as the broker here allows, and secrets that are
//! stored encrypted, never returned and kept across an alter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use dts_e2e::{kafka_sasl, kafka_tls, read_until_with, unique_topic, Consumed, Rig};
use serde_json::{json, Value};

fn pem(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

/// A TLS consumer of `topic` until `n` messages arrived.
async fn consume(addr: &str, certs: &Path, mtls: bool, topic: &str, n: usize) -> Vec<Consumed> {
    let (addr, topic) = (addr.to_owned(), topic.to_owned());
    let (ca, cert, key) = (pem(certs, "ca.pem"), pem(certs, "client.pem"), pem(certs, "client.key"));
    tokio::task::spawn_blocking(move || {
        let mut settings = vec![("security.protocol", "SSL"), ("ssl.ca.pem", ca.as_str())];
        if mtls {
            settings.push(("ssl.certificate.pem", cert.as_str()));
            settings.push(("ssl.key.pem", key.as_str()));
        }
        read_until_with(&addr, &settings, &[&topic], |m| m.len() >= n)
    })
    .await
    .unwrap()
}

async fn task_with(rig: &Rig, addr: &str, security: Value) -> (i64, String, Value) {
    rig.src.exec(&["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let topic = unique_topic("ksec");
    let mut body: Value = serde_json::from_str(
        &rig.task(json!({"addr": addr, "topic": topic}), json!([{"dbname": rig.src.db, "match": "t"}])),
    )
    .unwrap();
    body["task"]["kafka"]["security"] = security;
    let id = rig.submit(&body.to_string()).await;
    (id, topic, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_to_the_brokers_verifies_their_certificate() {
    let Some((addr, certs)) = kafka_tls(false) else { return };
    let Some(rig) = Rig::start().await else { return };
    let security = json!({"protocol": "SSL", "ca_pem": pem(&certs, "ca.pem")});
    let (id, topic, _) = task_with(&rig, &addr, security).await;
    rig.wait_task(id, "Running", |t| t["state"] == "Running" && t["pos"] != "").await;
    rig.src.exec(&["INSERT INTO t VALUES (1), (2), (3)"]).await;
    assert_eq!(consume(&addr, &certs, false, &topic, 3).await.len(), 3);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_tls_sends_the_client_certificate_and_keeps_the_key_secret() {
    let Some((addr, certs)) = kafka_tls(true) else { return };
    let Some(rig) = Rig::start().await else { return };
    let key = pem(&certs, "client.key");
    let security = json!({
        "protocol": "SSL",
        "ca_pem": pem(&certs, "ca.pem"),
        "cert_pem": pem(&certs, "client.pem"),
        "key_pem": key,
    });
    let (id, topic, mut body) = task_with(&rig, &addr, security).await;
    rig.wait_task(id, "Running", |t| t["state"] == "Running" && t["pos"] != "").await;
    rig.src.exec(&["INSERT INTO t VALUES (1), (2)"]).await;
    assert_eq!(consume(&addr, &certs, true, &topic, 2).await.len(), 2);

    // The key is never returned; an alter that leaves it out keeps it.
    let detail = rig.api.call("GET", &format!("/v1/task/{id}"), None).await;
    assert!(!detail.raw.contains("PRIVATE KEY"), "{}", detail.raw);
    assert_eq!(detail.expect_ok()["task"]["kafka"]["security"]["protocol"], "SSL");
    let list = rig.api.call("GET", "/v1/task/list", None).await;
    assert!(!list.raw.contains("PRIVATE KEY"));
    body["task"]["kafka"]["security"].as_object_mut().unwrap().remove("key_pem");
    body["task"]["kafka"]["flat_format"] = json!(true);
    rig.api.call("PUT", &format!("/v1/dispatch/alter/{id}"), Some(&body.to_string())).await.expect_ok();
    // Rows until one arrives in the new (flat) format: the restarted task
    // still authenticates with the kept key.
    let mut flat = false;
    for i in 3..60 {
        rig.src.exec(&[&format!("INSERT INTO t VALUES ({i})")]).await;
        let got = consume(&addr, &certs, true, &topic, i as usize).await;
        if got.iter().any(|m| m.payload["id"].is_i64()) {
            flat = true;
            break;
        }
    }
    assert!(flat, "the altered task delivers with the kept key");
    // In the store the key is sealed, not in the spec.
    let record = rig.api.db.store.get_task(id).await.unwrap().unwrap();
    assert!(!serde_json::to_string(&record.spec).unwrap().contains("PRIVATE KEY"));
    assert_eq!(rig.api.db.store.kafka_secrets(&record).unwrap().key_pem.as_deref(), Some(key.as_str()));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_client_certificate_mutual_tls_refuses_and_the_task_says_why() {
    let Some((addr, certs)) = kafka_tls(true) else { return };
    let Some(rig) = Rig::start().await else { return };
    let (id, _, _) = task_with(&rig, &addr, json!({"protocol": "SSL", "ca_pem": pem(&certs, "ca.pem")})).await;
    rig.wait_task(id, "Running", |t| t["state"] == "Running" && t["pos"] != "").await;
    rig.src.exec(&["INSERT INTO t VALUES (1)"]).await;
    let t = rig
        .wait_task(id, "an SSL error in the task's message", |t| {
            t["message"].as_str().is_some_and(|m| m.contains("SSL") || m.contains("ssl"))
        })
        .await;
    assert_ne!(t["state"], "Failed", "a broker that refuses is retried, not given up on: {t}");
    rig.stop().await;
}

/// The broker here (tansu) negotiates SCRAM and looks the user up, but its
/// build cannot store users, so no login can succeed. This checks what can
/// be checked: over TLS, dts asks for the configured mechanism, the broker
/// accepts it and runs the SCRAM exchange up to the user lookup (its
/// `unknown-user` reaches the task's message), and the password is never
/// returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sasl_scram_runs_up_to_the_brokers_user_lookup_and_the_password_stays_secret() {
    let Some((addr, certs)) = kafka_sasl() else { return };
    let Some(rig) = Rig::start().await else { return };
    for (i, mechanism) in ["SCRAM-SHA-256", "SCRAM-SHA-512"].into_iter().enumerate() {
        let security = json!({
            "protocol": "SASL_SSL",
            "ca_pem": pem(&certs, "ca.pem"),
            "sasl": {"mechanism": mechanism, "username": "dts", "password": "sasl-secret-pw"},
        });
        if i > 0 {
            rig.src.exec(&["DROP TABLE t"]).await;
        }
        let (id, _, _) = task_with(&rig, &addr, security).await;
        rig.wait_task(id, "Running", |t| t["state"] == "Running" && t["pos"] != "").await;
        rig.src.exec(&["INSERT INTO t VALUES (1)"]).await;
        let t = rig
            .wait_task(id, "the broker's SCRAM answer in the task's message", |t| {
                t["message"].as_str().is_some_and(|m| m.contains("SCRAM") && m.contains("unknown-user"))
            })
            .await;
        assert_ne!(t["state"], "Failed", "a broker that refuses is retried, not given up on: {t}");
        assert!(!t.to_string().contains("sasl-secret-pw"));
        let detail = rig.api.call("GET", &format!("/v1/task/{id}"), None).await;
        assert!(!detail.raw.contains("sasl-secret-pw"), "{}", detail.raw);
        assert_eq!(detail.expect_ok()["task"]["kafka"]["security"]["sasl"]["username"], "dts");
        assert_eq!(detail.expect_ok()["task"]["kafka"]["security"]["sasl"]["mechanism"], mechanism);
        rig.api.call("DELETE", &format!("/v1/task/{id}"), None).await.expect_ok();
    }
    rig.stop().await;
}
