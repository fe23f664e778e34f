//! The InLong DataProxy HTTP report against the real API and a real
//! Kafka-protocol broker: the seed's example as written, every field,
//! every error code, stream management, and a broker that is down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dts_core::ErrorCode;
use dts_e2e::{kafka_addr, read_until, unique_topic, Backend, Consumed, TestApi};
use serde_json::{json, Value};

const FORM: &str = "application/x-www-form-urlencoded";

async fn create(api: &TestApi, stream: Value) -> i64 {
    let r = api.call("POST", "/v1/ingest/streams", Some(&json!({ "stream": stream }).to_string())).await;
    r.expect_ok()["id"].as_i64().unwrap()
}

async fn report(api: &TestApi, content_type: &str, body: &str) -> Value {
    let r = api.request("POST", "/dataproxy/message", &[("Content-Type", content_type)], Some(body.as_bytes())).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.content_type.starts_with("application/json"), "{}", r.content_type);
    r.body
}

#[track_caller]
fn code(v: &Value) -> i64 {
    v["code"].as_i64().unwrap_or_else(|| panic!("no numeric code: {v}"))
}

async fn read(kafka: &str, topic: &str, n: usize) -> Vec<Consumed> {
    let (kafka, topic) = (kafka.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_until(&kafka, &[&topic], |m| m.len() >= n)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_and_every_field_reach_kafka() {
    let Some(kafka) = kafka_addr() else { return };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let topic = unique_topic("inlong");
    let id = create(
        &api,
        json!({"protocol": "inlong", "group_id": "give_your_group_id", "stream_id": "give_your_stream_id",
               "kafka": {"addr": kafka, "topic": topic}}),
    )
    .await;

    // The seed's curl, as written (no credentials; `dt` is not a number, so
    // the receive time is kept, as DataProxy does).
    let before = dts_core::now_ms();
    let seed = "groupId=give_your_group_id&streamId=give_your_stream_id&dt=data_time&body=give_your_data_body&cnt=1";
    let answer = report(&api, FORM, seed).await;
    assert_eq!(answer, json!({"code": 0, "msg": "Ok"}));
    let got = read(&kafka, &topic, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text, "give_your_data_body");
    assert_eq!(got[0].header("groupId"), Some("give_your_group_id"));
    assert_eq!(got[0].header("streamId"), Some("give_your_stream_id"));
    let dt: i64 = got[0].header("dt").unwrap().parse().unwrap();
    assert!(dt >= before && dt <= dts_core::now_ms(), "{dt}");

    // `cnt` records joined by \n, like the seed's Java client sends them:
    // one message each, in order, with the client's `dt`.
    let body = "groupId=give_your_group_id&streamId=give_your_stream_id&dt=1700000000000&body=r1%0Ar2%0Ar3&cnt=3";
    assert_eq!(code(&report(&api, FORM, body).await), 0);
    // The JSON variant and GET with a query string.
    let json_body =
        r#"{"groupId":"give_your_group_id","streamId":"give_your_stream_id","dt":1700000000001,"body":"j1"}"#;
    assert_eq!(code(&report(&api, "application/json", json_body).await), 0);
    let r = api
        .request("GET", "/dataproxy/message?groupId=give_your_group_id&streamId=give_your_stream_id&body=g1", &[], None)
        .await;
    assert_eq!(code(&r.body), 0, "{}", r.raw);

    let got = read(&kafka, &topic, 6).await;
    let texts: Vec<&str> = got.iter().map(|m| m.text.as_str()).collect();
    for want in ["r1", "r2", "r3", "j1", "g1"] {
        assert!(texts.contains(&want), "{want} in {texts:?}");
    }
    let batch: Vec<&Consumed> = got.iter().filter(|m| m.text.starts_with('r')).collect();
    assert!(batch.windows(2).all(|w| w[0].partition == w[1].partition && w[0].offset < w[1].offset), "in order");
    assert!(batch.iter().all(|m| m.header("dt") == Some("1700000000000")));

    // Counters in the list and the detail.
    let list = api.call("GET", "/v1/ingest/streams", None).await;
    let s = &list.expect_ok()["streams"][0];
    assert_eq!((s["id"].as_i64(), s["protocol"].as_str()), (Some(id), Some("inlong")));
    assert_eq!(s["counters"]["records"], 6);
    let detail = api.call("GET", &format!("/v1/ingest/streams/{id}"), None).await;
    assert_eq!(detail.expect_ok()["kafka"]["topic"], topic.as_str());

    // /dataproxy/heartbeat answers liveness; other methods are refused.
    let hb = api.request("GET", "/dataproxy/heartbeat", &[], None).await;
    assert_eq!(hb.body, json!({"code": 0, "msg": "Ok"}));
    let put = api.request("PUT", "/dataproxy/message", &[], Some(b"x")).await;
    assert_eq!(put.status, 405);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reports_get_dataproxy_error_codes_and_write_nothing() {
    let Some(kafka) = kafka_addr() else { return };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let topic = unique_topic("inlong_bad");
    create(
        &api,
        json!({"protocol": "inlong", "group_id": "g", "stream_id": "s", "max_record_bytes": 8,
               "kafka": {"addr": kafka, "topic": topic}}),
    )
    .await;
    create(
        &api,
        json!({"protocol": "inlong", "group_id": "g", "stream_id": "private", "allowed_sources": ["10.0.0.0/8"],
               "kafka": {"addr": kafka, "topic": topic}}),
    )
    .await;
    for (body, want) in [
        ("streamId=s&body=x", 100),
        ("groupId=&streamId=s&body=x", 100),
        ("groupId=g&body=x", 101),
        ("groupId=g&streamId=s", 103),
        ("groupId=g&streamId=s&body=%20", 111),
        ("groupId=g&streamId=nope&body=x", 121),
        ("groupId=g&streamId=s&body=123456789", 104),
        ("groupId=g&streamId=s&body=ok%0A123456789", 104),
        ("groupId=g&streamId=private&body=x", 10),
    ] {
        let answer = report(&api, FORM, body).await;
        assert_eq!(code(&answer), want, "{body}: {answer}");
        assert!(answer["msg"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    }
    assert_eq!(code(&report(&api, "application/json", "{not json").await), 31);
    assert_eq!(code(&report(&api, "application/octet-stream", "groupId=g").await), 36);

    // A fence written last: when it is read, everything before it was too.
    assert_eq!(code(&report(&api, FORM, "groupId=g&streamId=s&body=fence").await), 0);
    let got = read(&kafka, &topic, 1).await;
    assert_eq!(got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["fence"], "refused reports wrote nothing");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_managed_like_tasks() {
    let Some(kafka) = kafka_addr() else { return };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let (t1, t2) = (unique_topic("inlong_m1"), unique_topic("inlong_m2"));
    let stream = |topic: &str| {
        json!({"protocol": "inlong", "group_id": "g1", "stream_id": "s1",
                                      "kafka": {"addr": kafka, "topic": topic}})
    };
    let id = create(&api, stream(&t1)).await;

    // Management needs credentials; the protocol does not.
    let r = api.call_as("GET", "/v1/ingest/streams", None, None).await;
    r.expect_error(ErrorCode::Unauthorized);
    // One name, one stream.
    let dup = api.call("POST", "/v1/ingest/streams", Some(&json!({ "stream": stream(&t2) }).to_string())).await;
    dup.expect_error(ErrorCode::Conflict);
    for (bad, code) in [
        (
            json!({"protocol": "inlong", "group_id": "g1", "kafka": {"addr": kafka, "topic": t1}}),
            ErrorCode::InvalidStream,
        ),
        (
            json!({"protocol": "inlong", "group_id": "g1", "stream_id": "s2", "kafka": {"addr": "x", "topic": t1}}),
            ErrorCode::InvalidKafka,
        ),
        (
            json!({"protocol": "inlong", "group_id": "g1", "stream_id": "s2", "kafka": {"addr": kafka, "topic": t1}, "nope": 1}),
            ErrorCode::InvalidField,
        ),
    ] {
        let r = api.call("POST", "/v1/ingest/streams", Some(&json!({ "stream": bad }).to_string())).await;
        r.expect_error(code);
    }
    api.call("GET", "/v1/ingest/streams/999", None).await.expect_error(ErrorCode::StreamNotFound);

    // An alter takes effect at once: the next report goes to the new topic.
    let r =
        api.call("PUT", &format!("/v1/ingest/streams/{id}"), Some(&json!({ "stream": stream(&t2) }).to_string())).await;
    r.expect_ok();
    assert_eq!(code(&report(&api, FORM, "groupId=g1&streamId=s1&body=after-alter").await), 0);
    let got = read(&kafka, &t2, 1).await;
    assert_eq!(got[0].text, "after-alter");

    // Deleted, the stream is unknown at once.
    api.call("DELETE", &format!("/v1/ingest/streams/{id}"), None).await.expect_ok();
    assert_eq!(code(&report(&api, FORM, "groupId=g1&streamId=s1&body=x").await), 121);
    api.call("DELETE", &format!("/v1/ingest/streams/{id}"), None).await.expect_error(ErrorCode::StreamNotFound);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_fails_the_report_cleanly() {
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    // Nothing listens on port 1.
    create(
        &api,
        json!({"protocol": "inlong", "group_id": "g", "stream_id": "down",
                        "kafka": {"addr": "127.0.0.1:1", "topic": "t"}}),
    )
    .await;
    let started = std::time::Instant::now();
    let answer = report(&api, FORM, "groupId=g&streamId=down&body=x").await;
    assert_eq!(code(&answer), 118, "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(40), "bounded wait: {:?}", started.elapsed());
    let list = api.call("GET", "/v1/ingest/streams", None).await;
    assert_eq!(list.expect_ok()["streams"][0]["counters"]["errors"], 1);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_decompressed_within_the_limit() {
    use std::io::Write;
    let Some(kafka) = kafka_addr() else { return };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let topic = unique_topic("inlong_gz");
    create(
        &api,
        json!({"protocol": "inlong", "group_id": "g", "stream_id": "gz", "kafka": {"addr": kafka, "topic": topic}}),
    )
    .await;
    let gzip = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let headers = [("Content-Type", FORM), ("Content-Encoding", "gzip")];
    let r =
        api.request("POST", "/dataproxy/message", &headers, Some(&gzip(b"groupId=g&streamId=gz&body=zipped"))).await;
    assert_eq!(code(&r.body), 0, "{}", r.raw);
    // 64 MiB of zeros compress to ~64 KiB: refused once past the 8 MiB limit.
    let bomb = gzip(&vec![b'0'; 64 * 1024 * 1024]);
    let r = api.request("POST", "/dataproxy/message", &headers, Some(&bomb)).await;
    assert_eq!(code(&r.body), 104, "{}", r.raw);
    let r = api.request("POST", "/dataproxy/message", &headers, Some(b"not gzip")).await;
    assert_eq!(code(&r.body), 31, "{}", r.raw);
    let got = read(&kafka, &topic, 1).await;
    assert_eq!(got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["zipped"]);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_lose_and_duplicate_nothing() {
    let Some(kafka) = kafka_addr() else { return };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let topic = unique_topic("inlong_many");
    create(
        &api,
        json!({"protocol": "inlong", "group_id": "g", "stream_id": "many", "kafka": {"addr": kafka, "topic": topic}}),
    )
    .await;
    let (clients, reports, per_report) = (16, 20, 10);
    let api = std::sync::Arc::new(api);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let api = std::sync::Arc::clone(&api);
        tasks.push(tokio::spawn(async move {
            for r in 0..reports {
                let lines: Vec<String> = (0..per_report).map(|i| format!("{c}-{r}-{i}")).collect();
                let body = format!("groupId=g&streamId=many&cnt={per_report}&body={}", lines.join("%0A"));
                let answer = report(&api, FORM, &body).await;
                assert_eq!(code(&answer), 0, "{answer}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let want = clients * reports * per_report;
    let got = read(&kafka, &topic, want).await;
    let distinct: std::collections::BTreeSet<&str> = got.iter().map(|m| m.text.as_str()).collect();
    assert_eq!((got.len(), distinct.len()), (want, want), "every acknowledged record exactly once");
    // Each report's records are in order on one partition.
    for c in 0..clients {
        for r in 0..reports {
            let prefix = format!("{c}-{r}-");
            let batch: Vec<&Consumed> = got.iter().filter(|m| m.text.starts_with(&prefix)).collect();
            assert!(batch.windows(2).all(|w| w[0].partition == w[1].partition), "one partition per report");
            let order: Vec<String> = batch.iter().map(|m| m.text.clone()).collect();
            let sent: Vec<String> = (0..per_report).map(|i| format!("{prefix}{i}")).collect();
            assert_eq!(order, sent, "in the order sent");
        }
    }
}
