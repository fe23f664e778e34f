//! Push ingest through a broker outage, for each protocol: while the broker
//! is unreachable a request fails within the bounded wait with the
//! protocol's retry-later answer; once it is back, the client's retry and
//! new requests succeed, and Kafka holds every acknowledged record exactly
//! once (a record of a failed request at most once more, when the client
//! retried it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use dts_e2e::proxy::Proxy;
use dts_e2e::{free_port, read_until, required, unique_topic, Backend, Reply, TestApi};
use serde_json::json;

/// A broker of the test's own, reached only through a proxy it advertises,
/// so switching the proxy off is an outage for every client.
struct Broker {
    _child: tokio::process::Child,
    proxy: Proxy,
    inner: SocketAddr,
}

async fn proxied_broker() -> Option<Broker> {
    let Ok(bin) = std::env::var("DTS_TEST_TANSU_BIN") else {
        assert!(!required(), "DTS_TEST_TANSU_BIN is not set but DTS_REQUIRE_SERVICES=1");
        eprintln!("skipped: DTS_TEST_TANSU_BIN is not set (run scripts/services.sh up)");
        return None;
    };
    let inner: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start(inner).await;
    let child = tokio::process::Command::new(bin)
        .args(["broker", "--listener-url", &format!("tcp://{inner}")])
        .args(["--advertised-listener-url", &format!("tcp://{}", proxy.addr)])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start tansu");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(inner).await.is_err() {
        assert!(Instant::now() < deadline, "tansu did not listen on {inner}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(Broker { _child: child, proxy, inner })
}

/// One stream per protocol on the proxied broker, each with one partition so
/// Kafka's order is the order of sending.
struct Streams {
    topics: [String; 3],
    dis_token: String,
    timeplus_key: String,
}

async fn create_streams(api: &TestApi, kafka: &str) -> Streams {
    let topics = [unique_topic("out_inlong"), unique_topic("out_dis"), unique_topic("out_tp")];
    let kafka_of = |topic: &str| json!({"addr": kafka, "topic": topic, "partitions": 1});
    let specs = [
        json!({"protocol": "inlong", "group_id": "g", "stream_id": "out", "kafka": kafka_of(&topics[0])}),
        json!({"protocol": "dis", "project_id": "p1", "stream_name": "out", "kafka": kafka_of(&topics[1])}),
        json!({"protocol": "timeplus", "stream": "out", "kafka": kafka_of(&topics[2])}),
    ];
    let mut ids = Vec::new();
    for spec in specs {
        let r = api.call("POST", "/v1/ingest/streams", Some(&json!({ "stream": spec }).to_string())).await;
        ids.push(r.expect_ok()["id"].as_i64().unwrap());
    }
    let key = |protocol: &str, id: i64, kind: Option<&str>| {
        let mut key = json!({"protocol": protocol, "streams": [id]});
        if let Some(kind) = kind {
            key["type"] = json!(kind);
        }
        json!({ "key": key }).to_string()
    };
    let dis = api.call("POST", "/v1/ingest/keys", Some(&key("dis", ids[1], Some("token")))).await;
    let tp = api.call("POST", "/v1/ingest/keys", Some(&key("timeplus", ids[2], None))).await;
    Streams {
        topics,
        dis_token: dis.expect_ok()["token"].as_str().unwrap().to_owned(),
        timeplus_key: tp.expect_ok()["api_key"].as_str().unwrap().to_owned(),
    }
}

/// Sends `record` over each protocol; per protocol, whether it was stored,
/// and the answer when it was not.
async fn send_each(api: &TestApi, s: &Streams, record: &str) -> [Result<(), String>; 3] {
    let inlong = async {
        let body = format!("groupId=g&streamId=out&body={record}");
        let r = api
            .request(
                "POST",
                "/dataproxy/message",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                Some(body.as_bytes()),
            )
            .await;
        match r.body["code"].as_i64() {
            Some(0) => Ok(()),
            // InLong's "Send request to MQ failure": the client retries.
            Some(118) if r.status == 200 => Err(r.raw),
            _ => panic!("not InLong's retry-later answer: {} {}", r.status, r.raw),
        }
    };
    let dis = async {
        let data = base64::engine::general_purpose::STANDARD.encode(record);
        let body = json!({"stream_name": "out", "records": [{"data": data}]}).to_string();
        let headers = [("X-Auth-Token", s.dis_token.as_str()), ("Content-Type", "application/json")];
        let r = api.request("POST", "/v2/p1/records", &headers, Some(body.as_bytes())).await;
        match (r.status, r.body["failed_record_count"].as_i64()) {
            (200, Some(0)) => Ok(()),
            // A system error or a per-record failure: DIS clients retry both.
            (500, _) if r.body["error_code"] == "DIS.5000" => Err(r.raw),
            (200, Some(1)) if r.body["records"][0]["error_code"].is_string() => Err(r.raw),
            _ => panic!("not DIS's retry-later answer: {} {}", r.status, r.raw),
        }
    };
    let timeplus = async {
        let headers = [("X-Api-Key", s.timeplus_key.as_str()), ("Content-Type", "text/plain")];
        let path = "/api/v1beta2/streams/out/ingest?format=lines";
        let r: Reply = api.request("POST", path, &headers, Some(record.as_bytes())).await;
        match r.status {
            200 => Ok(()),
            503 => Err(r.raw),
            _ => panic!("not Timeplus's retry-later answer: {} {}", r.status, r.raw),
        }
    };
    let (a, b, c) = tokio::join!(inlong, dis, timeplus);
    [a, b, c]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_fails_cleanly_while_the_broker_is_down_and_recovers_without_loss() {
    let Some(broker) = proxied_broker().await else { return };
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let kafka = broker.proxy.addr.to_string();
    let streams = create_streams(&api, &kafka).await;
    for (protocol, sent) in ["inlong", "dis", "timeplus"].iter().zip(send_each(&api, &streams, "before").await) {
        assert!(sent.is_ok(), "{protocol} before the outage: {sent:?}");
    }

    // The outage: every connection to the broker is cut and new ones are refused.
    let nowhere: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    broker.proxy.switch(nowhere);
    let started = Instant::now();
    let during = send_each(&api, &streams, "during").await;
    for (protocol, sent) in ["inlong", "dis", "timeplus"].iter().zip(&during) {
        assert!(sent.is_err(), "{protocol} acknowledged a record while the broker was unreachable");
    }
    // The test API waits up to 15 s for Kafka, the three protocols at once.
    assert!(started.elapsed() < Duration::from_secs(40), "bounded wait: {:?}", started.elapsed());

    // Back: the clients retry what failed until it is stored, then go on.
    broker.proxy.switch(broker.inner);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let retried = send_each(&api, &streams, "during").await;
        if retried.iter().all(Result::is_ok) {
            break;
        }
        assert!(Instant::now() < deadline, "still failing after the broker came back: {retried:?}");
    }
    for (protocol, sent) in ["inlong", "dis", "timeplus"].iter().zip(send_each(&api, &streams, "after").await) {
        assert!(sent.is_ok(), "{protocol} after the outage: {sent:?}");
    }

    for (protocol, topic) in ["inlong", "dis", "timeplus"].iter().zip(&streams.topics) {
        let (kafka, topic) = (kafka.clone(), topic.clone());
        let got = tokio::task::spawn_blocking(move || {
            // One partition: once "after" is there, everything sent before it is too.
            read_until(&kafka, &[&topic], |m| m.iter().any(|m| m.text == "after"))
        })
        .await
        .unwrap();
        let count = |text: &str| got.iter().filter(|m| m.text == text).count();
        assert_eq!(count("before"), 1, "{protocol}: {got:?}");
        assert_eq!(count("after"), 1, "{protocol}: {got:?}");
        // Stored once for the successful retry, and possibly once more for
        // the failed attempt, delivered late when the broker came back:
        // duplicated only by what the client retried, never lost.
        let during = count("during");
        assert!((1..=2).contains(&during), "{protocol}: 'during' {during} times: {got:?}");
        let texts: Vec<&str> = got.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts.first(), Some(&"before"), "{protocol}: {texts:?}");
        assert_eq!(texts.last(), Some(&"after"), "{protocol}: {texts:?}");
    }
    api.stop().await;
}
