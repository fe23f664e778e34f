//! The Timeplus ingest API against the real API and a real Kafka-protocol
//! broker: the seed's curl as written, every format, the three ways to
//! send the key, Timeplus's official Python SDK unchanged, and errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dts_e2e::{kafka_addr, read_until, required, unique_topic, Backend, Consumed, TestApi};
use serde_json::{json, Value};

async fn setup(api: &TestApi, kafka: &str, workspace: Option<&str>, stream: &str, topic: &str) -> (i64, String) {
    let mut spec = json!({"protocol": "timeplus", "stream": stream, "kafka": {"addr": kafka, "topic": topic}});
    if let Some(ws) = workspace {
        spec["workspace"] = json!(ws);
    }
    let r = api.call("POST", "/v1/ingest/streams", Some(&json!({ "stream": spec }).to_string())).await;
    let id = r.expect_ok()["id"].as_i64().unwrap();
    let key = api
        .call("POST", "/v1/ingest/keys", Some(&json!({"key": {"protocol": "timeplus", "streams": [id]}}).to_string()))
        .await;
    let api_key = key.expect_ok()["api_key"].as_str().unwrap().to_owned();
    assert_eq!(api_key.len(), 60, "Timeplus keys are 60 characters");
    (id, api_key)
}

async fn read(kafka: &str, topic: &str, n: usize) -> Vec<Consumed> {
    let (kafka, topic) = (kafka.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_until(&kafka, &[&topic], |m| m.len() >= n)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_curl_and_every_format_reach_kafka() {
    let Some(kafka) = kafka_addr() else { return };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let topic = unique_topic("tp");
    let (_, key) = setup(&api, &kafka, Some("ws123456"), "foo", &topic).await;

    // The seed's curl, as written.
    let seed = "\n{\"key1\": \"value11\", \"key2\": 12}\n";
    let r = api
        .request(
            "POST",
            "/ws123456/api/v1beta2/streams/foo/ingest?format=raw",
            &[("X-Api-Key", key.as_str()), ("Content-Type", "text/plain")],
            Some(seed.as_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.raw);

    let path = "/ws123456/api/v1beta2/streams/foo/ingest";
    let apikey_auth = format!("ApiKey {key}");
    use base64::Engine;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("anyone:{key}")));
    for (auth_header, auth_value, ctype, url, body) in [
        (
            "X-Api-Key",
            key.as_str(),
            "application/json",
            path.to_owned(),
            r#"{"columns":["a","b"],"data":[[1,"x"],[2,"y"]]}"#,
        ),
        ("Authorization", apikey_auth.as_str(), "application/x-ndjson", path.to_owned(), "{\"s\":1}\n{\"s\":2}"),
        ("Authorization", basic.as_str(), "application/json", format!("{path}?format=streaming"), r#"{"s":3}{"s":4}"#),
        ("X-Api-Key", key.as_str(), "application/json", format!("{path}?format=lines"), "l1\nl2\nl3\n"),
    ] {
        let r = api
            .request("POST", &url, &[(auth_header, auth_value), ("Content-Type", ctype)], Some(body.as_bytes()))
            .await;
        assert_eq!(r.status, 200, "{url}: {}", r.raw);
    }
    let got = read(&kafka, &topic, 10).await;
    let texts: Vec<&str> = got.iter().map(|m| m.text.as_str()).collect();
    assert!(texts.contains(&seed), "raw keeps the whole body: {texts:?}");
    for want in [r#"{"a":1,"b":"x"}"#, r#"{"a":2,"b":"y"}"#, r#"{"s":1}"#, r#"{"s":4}"#, "l1", "l2", "l3"] {
        assert!(texts.contains(&want), "{want} in {texts:?}");
    }
    assert_eq!(got.len(), 10);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_write_nothing() {
    let Some(kafka) = kafka_addr() else { return };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let topic = unique_topic("tp_bad");
    let (_, key) = setup(&api, &kafka, None, "bar", &topic).await;
    let (_, other_key) = setup(&api, &kafka, None, "other", &unique_topic("tp_other")).await;
    let path = "/api/v1beta2/streams/bar/ingest";
    let wrong = "x".repeat(60);
    let compact = r#"{"columns":["a"],"data":[[1]]}"#;
    // (API key, content type, url, body, status)
    let cases: Vec<(Option<&str>, &str, String, &str, u16)> = vec![
        (None, "application/json", path.to_owned(), compact, 401),
        (Some(&wrong), "application/json", path.to_owned(), compact, 401),
        (Some(&other_key), "application/json", path.to_owned(), compact, 403),
        (Some(&key), "application/json", "/api/v1beta2/streams/nope/ingest".to_owned(), compact, 404),
        (Some(&key), "application/json", path.to_owned(), r#"{"columns":["a"],"data":[[1,2]]}"#, 400),
        (Some(&key), "application/json", format!("{path}?format=csv"), "a", 400),
        (Some(&key), "application/x-ndjson", path.to_owned(), "{\"a\":1}\n[2]", 400),
        // A workspace the stream is not in.
        (Some(&key), "application/json", "/ws000000/api/v1beta2/streams/bar/ingest".to_owned(), compact, 404),
    ];
    for (api_key, ctype, url, body, status) in cases {
        let mut headers = vec![("Content-Type", ctype)];
        if let Some(k) = api_key {
            headers.push(("X-Api-Key", k));
        }
        let r = api.request("POST", &url, &headers, Some(body.as_bytes())).await;
        assert_eq!(r.status, status, "{url} {body}: {}", r.raw);
        assert_eq!(r.body["code"], status, "{}", r.raw);
        assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.raw);
    }
    // A fence: only it was written.
    let r = api
        .request(
            "POST",
            &format!("{path}?format=raw"),
            &[("X-Api-Key", key.as_str()), ("Content-Type", "text/plain")],
            Some(b"fence"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let got = read(&kafka, &topic, 1).await;
    assert_eq!(got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["fence"]);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_ingests_unchanged() {
    let Some(kafka) = kafka_addr() else { return };
    let Ok(python) = std::env::var("DTS_TEST_CLIENT_PYTHON") else {
        assert!(!required(), "DTS_TEST_CLIENT_PYTHON is not set: run scripts/services.sh up");
        return;
    };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let topic = unique_topic("tp_sdk");
    let (_, key) = setup(&api, &kafka, Some("wsSDK001"), "sdkstream", &topic).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/timeplus_ingest.py");
    let endpoint = format!("http://{}", api.addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args([endpoint.as_str(), "wsSDK001", &key, "sdkstream"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!((seen["created"].as_str(), seen["got"].as_str()), (Some("sdkstream"), Some("sdkstream")), "{seen}");
    assert_eq!(seen["listed"], json!(["sdkstream"]));
    let got = read(&kafka, &topic, 5).await;
    let texts: Vec<&str> = got.iter().map(|m| m.text.as_str()).collect();
    for want in [r#"{"raw":"row-1"}"#, r#"{"raw":"row-2"}"#, "line-1", "line-2", "line-3"] {
        assert!(texts.contains(&want), "{want} in {texts:?}");
    }
    api.stop().await;
}
