//! Huawei DIS SendRecords against the real API and a real Kafka-protocol
//! broker: Huawei's official Python SDK unchanged (AK/SK signing), the
//! seed's example with a token, per-record results and routing, every
//! error, scoped and revoked keys, replays, and rate limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dts_e2e::{kafka_addr, read_until, required, unique_topic, Backend, Consumed, Reply, TestApi};
use dts_ingest::signing;
use serde_json::{json, Value};

async fn create_stream(api: &TestApi, project: &str, name: &str, kafka: &str, topic: &str, extra: Value) -> i64 {
    let mut stream = json!({"protocol": "dis", "project_id": project, "stream_name": name,
                            "kafka": {"addr": kafka, "topic": topic}});
    if let Value::Object(more) = extra {
        stream.as_object_mut().unwrap().extend(more);
    }
    let r = api.call("POST", "/v1/ingest/streams", Some(&json!({ "stream": stream }).to_string())).await;
    r.expect_ok()["id"].as_i64().unwrap()
}

async fn create_key(api: &TestApi, streams: &[i64], kind: &str) -> Value {
    let body = json!({"key": {"protocol": "dis", "streams": streams, "type": kind}});
    api.call("POST", "/v1/ingest/keys", Some(&body.to_string())).await.expect_ok().clone()
}

async fn send_with_token(api: &TestApi, project: &str, token: &str, body: &Value) -> Reply {
    let text = body.to_string();
    let headers = [("X-Auth-Token", token), ("Content-Type", "application/json")];
    api.request("POST", &format!("/v2/{project}/records"), &headers, Some(text.as_bytes())).await
}

/// A request signed the way the SDKs sign it, with `date` as X-Sdk-Date.
async fn send_signed(api: &TestApi, project: &str, ak: &str, sk: &str, date: &str, body: &str) -> Reply {
    let path = format!("/v2/{project}/records");
    let host = api.addr.to_string();
    let lookup = |name: &str| match name {
        "host" => Some(host.clone()),
        "content-type" => Some("application/json".to_owned()),
        "x-sdk-date" => Some(date.to_owned()),
        _ => None,
    };
    let req = signing::Request { method: "POST", path: &path, query: "", header: &lookup, body: body.as_bytes() };
    let mut auth = signing::Authorization {
        access: ak.to_owned(),
        signed_headers: vec!["content-type".into(), "host".into(), "x-sdk-date".into()],
        signature: String::new(),
    };
    auth.signature = signing::sign(sk, &signing::string_to_sign(&req, &auth, date).unwrap());
    let header = format!(
        "SDK-HMAC-SHA256 Access={}, SignedHeaders={}, Signature={}",
        auth.access,
        auth.signed_headers.join(";"),
        auth.signature
    );
    let headers = [("Authorization", header.as_str()), ("X-Sdk-Date", date), ("Content-Type", "application/json")];
    api.request("POST", &path, &headers, Some(body.as_bytes())).await
}

fn sdk_date(offset_secs: i64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::seconds(offset_secs);
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

#[track_caller]
fn dis_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.raw);
    assert_eq!(r.body["error_code"], code, "{}", r.raw);
    assert_eq!(r.body["errorCode"], code, "{}", r.raw);
    assert!(r.body["error_msg"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.raw);
}

async fn read(kafka: &str, topic: &str, n: usize) -> Vec<Consumed> {
    let (kafka, topic) = (kafka.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_until(&kafka, &[&topic], |m| m.len() >= n)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_sends_records_unchanged() {
    let Some(kafka) = kafka_addr() else { return };
    let Ok(python) = std::env::var("DTS_TEST_CLIENT_PYTHON") else {
        assert!(!required(), "DTS_TEST_CLIENT_PYTHON is not set: run scripts/services.sh up");
        return;
    };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let topic = unique_topic("dis_sdk");
    let id = create_stream(&api, "p1", "newstream", &kafka, &topic, json!({})).await;
    let key = create_key(&api, &[id], "aksk").await;
    let (ak, sk) = (key["access_key"].as_str().unwrap().to_owned(), key["secret_key"].as_str().unwrap().to_owned());
    assert_eq!((ak.len(), sk.len()), (20, 40));

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/dis_send.py");
    let endpoint = format!("http://{}", api.addr);
    let run = |sk: String, records: Vec<&'static str>| {
        let (python, script, endpoint, ak) = (python.clone(), script.clone(), endpoint.clone(), ak.clone());
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(python)
                .arg(script)
                .args([endpoint.as_str(), "p1", ak.as_str(), sk.as_str(), "newstream"])
                .args(records)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        })
    };
    let answer = run(sk.clone(), vec!["first", "second", "third"]).await.unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["failed_record_count"], 0);
    let results = answer["records"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    // The SDK's stream calls: create (it exists), describe, list.
    assert_eq!(answer["listed"], json!(["newstream"]), "{answer}");
    let partitions = answer["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3, "the topic's partitions: {answer}");
    assert_eq!(partitions[0], "shardId-0000000000");
    let got = read(&kafka, &topic, 3).await;
    for (i, r) in results.iter().enumerate() {
        let partition = r["partition_id"].as_str().unwrap().strip_prefix("shardId-").unwrap().parse::<i32>().unwrap();
        let offset: i64 = r["sequence_number"].as_str().unwrap().parse().unwrap();
        let m = got.iter().find(|m| m.partition == partition && m.offset == offset).expect("the answered offset");
        assert_eq!(m.text, ["first", "second", "third"][i]);
        assert_eq!(m.key, format!("k{i}"), "partition_key is the message key");
    }
    // A wrong secret key is refused by signature, as Huawei Cloud would.
    let refused = run("0".repeat(40), vec!["x"]).await.unwrap();
    assert_eq!((refused["ok"].as_bool(), refused["status"].as_i64()), (Some(false), Some(401)), "{refused}");
    assert_eq!(refused["error_code"], "APIGW.0301");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_with_a_token_and_per_record_results() {
    let Some(kafka) = kafka_addr() else { return };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let topic = unique_topic("dis_seed");
    let id = create_stream(&api, "p1", "newstream", &kafka, &topic, json!({})).await;
    let token = create_key(&api, &[id], "token").await["token"].as_str().unwrap().to_owned();

    // The seed's request body, as written.
    let seed =
        json!({"stream_name": "newstream", "records": [{"data": "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE="}]});
    let r = send_with_token(&api, "p1", &token, &seed).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.body["failed_record_count"], 0);
    let result = &r.body["records"][0];
    assert!(result["partition_id"].as_str().unwrap().starts_with("shardId-00000000"), "{result}");
    assert!(result["error_code"].is_null());
    let got = read(&kafka, &topic, 1).await;
    assert_eq!(got[0].text, "11111111111111111111111111111111");

    // partition_id in both spellings, explicit_hash_key, stream_id lookup.
    let body = json!({"stream_name": "nope", "stream_id": id.to_string(), "records": [
        {"data": "YQ==", "partition_id": "2"},
        {"data": "Yg==", "partition_id": "shardId-0000000001", "partition_key": "ignored-for-placement"},
        {"data": "Yw==", "explicit_hash_key": "0"},
        {"data": "ZA==", "explicit_hash_key": i64::MAX.to_string(), "partition_key": "k"},
    ]});
    let r = send_with_token(&api, "p1", &token, &body).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let shards: Vec<&str> =
        r.body["records"].as_array().unwrap().iter().map(|x| x["partition_id"].as_str().unwrap()).collect();
    assert_eq!(shards, ["shardId-0000000002", "shardId-0000000001", "shardId-0000000000", "shardId-0000000002"]);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_dis_errors_and_write_nothing() {
    let Some(kafka) = kafka_addr() else { return };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let topic = unique_topic("dis_bad");
    let id = create_stream(&api, "p1", "s1", &kafka, &topic, json!({"max_record_bytes": 16})).await;
    let other = create_stream(&api, "p1", "s2", &kafka, &unique_topic("dis_other"), json!({})).await;
    let token = create_key(&api, &[id], "token").await["token"].as_str().unwrap().to_owned();
    let key = create_key(&api, &[id], "aksk").await;
    let (ak, sk) = (key["access_key"].as_str().unwrap(), key["secret_key"].as_str().unwrap());

    let rec = |data: &str| json!({"data": data});
    let many: Vec<Value> = (0..501).map(|_| rec("eA==")).collect();
    for (body, status, code) in [
        (json!({"stream_name": "s1", "records": []}), 400, "DIS.4202"),
        (json!({"stream_name": "s1", "records": many}), 400, "DIS.4200"),
        (json!({"stream_name": "s1", "records": [rec("not base64!")]}), 400, "DIS.4200"),
        (json!({"stream_name": "s1", "records": [rec("eA=="), rec("MTExMTExMTExMTExMTExMTEx")]}), 400, "DIS.4200"),
        (
            json!({"stream_name": "s1", "records": [{"data": "eA==", "partition_id": "shardId-0000000009"}]}),
            400,
            "DIS.4302",
        ),
        (json!({"stream_name": "s1", "records": [{"data": "eA==", "partition_id": "p"}]}), 400, "DIS.4201"),
        (json!({"stream_name": "missing", "records": [rec("eA==")]}), 400, "DIS.4301"),
        (json!({"stream_name": "s2", "records": [rec("eA==")]}), 403, "DIS.4116"),
        (json!({"records": "x"}), 400, "DIS.4300"),
    ] {
        let r = send_with_token(&api, "p1", &token, &body).await;
        dis_error(&r, status, code);
    }
    // The project is part of the name.
    dis_error(
        &send_with_token(&api, "p2", &token, &json!({"stream_name": "s1", "records": [rec("eA==")]})).await,
        400,
        "DIS.4301",
    );
    // Credentials: none, a wrong token, a signature from the past, a replay.
    let body = json!({"stream_name": "s1", "records": [rec("eA==")]}).to_string();
    let r = api.request("POST", "/v2/p1/records", &[("Content-Type", "application/json")], Some(body.as_bytes())).await;
    dis_error(&r, 401, "APIGW.0301");
    dis_error(
        &send_with_token(&api, "p1", "wrong", &json!({"stream_name": "s1", "records": []})).await,
        401,
        "APIGW.0301",
    );
    dis_error(&send_signed(&api, "p1", ak, sk, &sdk_date(-20 * 60), &body).await, 401, "APIGW.0301");
    let date = sdk_date(0);
    let first = send_signed(&api, "p1", ak, sk, &date, &body).await;
    assert_eq!((first.status, first.body["failed_record_count"].as_i64()), (200, Some(0)), "{}", first.raw);
    dis_error(&send_signed(&api, "p1", ak, sk, &date, &body).await, 401, "APIGW.0301");

    // Only the one signed record was written.
    let got = read(&kafka, &topic, 1).await;
    assert_eq!(got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["x"]);
    let _ = other;

    // Stream management: operators own streams.
    let tok = [("X-Auth-Token", token.as_str()), ("Content-Type", "application/json")];
    let r = api.request("GET", "/v2/p1/streams/s1", &tok, None).await;
    assert_eq!((r.status, r.body["stream_id"].as_str()), (200, Some(id.to_string().as_str())), "{}", r.raw);
    dis_error(&api.request("GET", "/v2/p1/streams/s2", &tok, None).await, 403, "DIS.4116");
    dis_error(&api.request("GET", "/v2/p1/streams/none", &tok, None).await, 400, "DIS.4301");
    dis_error(&api.request("DELETE", "/v2/p1/streams/s1", &tok, None).await, 403, "DIS.4116");
    let create = br#"{"stream_name":"brand_new","partition_count":1}"#;
    dis_error(&api.request("POST", "/v2/p1/streams", &tok, Some(create)).await, 403, "DIS.4116");
    let listed = api.request("GET", "/v2/p1/streams", &tok, None).await;
    assert_eq!(listed.body["stream_names"], json!(["s1"]), "{}", listed.raw);

    // A revoked key stops working at once.
    let key_id = key["id"].as_i64().unwrap();
    api.call("DELETE", &format!("/v1/ingest/keys/{key_id}"), None).await.expect_ok();
    dis_error(&send_signed(&api, "p1", ak, sk, &sdk_date(0), &body).await, 401, "APIGW.0301");
    let keys = api.call("GET", "/v1/ingest/keys", None).await;
    assert!(!keys.raw.contains(sk) && !keys.raw.contains(&token), "secrets are never listed");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_stream_answers_traffic_control_per_record() {
    let Some(kafka) = kafka_addr() else { return };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let id = create_stream(&api, "p1", "slow", &kafka, &unique_topic("dis_slow"), json!({"rate_limit": 2})).await;
    let token = create_key(&api, &[id], "token").await["token"].as_str().unwrap().to_owned();
    let records: Vec<Value> = (0..3).map(|_| json!({"data": "eA=="})).collect();
    let r = send_with_token(&api, "p1", &token, &json!({"stream_name": "slow", "records": records})).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.body["failed_record_count"], 3, "{}", r.raw);
    assert_eq!(r.body["records"][0]["error_code"], "DIS.4303");
    assert_eq!(r.body["records"][0]["error_message"], "Exceeded traffic control limit.");
    api.stop().await;
}
