//! Reading what dts wrote to the broker, and checks over it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::{required, unique_topic, SourceDb};

/// A broker behind TLS (`mtls: false`) or mutual TLS, and the folder of its
/// test certificates (`ca.pem`, `client.pem`, `client.key`); `None` to skip.
pub fn kafka_tls(mtls: bool) -> Option<(String, std::path::PathBuf)> {
    let var = if mtls { "DTS_TEST_KAFKA_MTLS_ADDR" } else { "DTS_TEST_KAFKA_TLS_ADDR" };
    match (std::env::var(var), std::env::var("DTS_TEST_KAFKA_TLS_CERTS")) {
        (Ok(addr), Ok(certs)) => Some((addr, certs.into())),
        _ => {
            assert!(!required(), "{var} is not set but DTS_REQUIRE_SERVICES=1");
            eprintln!("skipped: {var} is not set (run scripts/services.sh up)");
            None
        }
    }
}

/// A broker behind TLS that demands SASL, and the folder of its test
/// certificates; `None` to skip.
pub fn kafka_sasl() -> Option<(String, std::path::PathBuf)> {
    match (std::env::var("DTS_TEST_KAFKA_SASL_ADDR"), std::env::var("DTS_TEST_KAFKA_TLS_CERTS")) {
        (Ok(addr), Ok(certs)) => Some((addr, certs.into())),
        _ => {
            assert!(!required(), "DTS_TEST_KAFKA_SASL_ADDR is not set but DTS_REQUIRE_SERVICES=1");
            eprintln!("skipped: DTS_TEST_KAFKA_SASL_ADDR is not set (run scripts/services.sh up)");
            None
        }
    }
}

/// The Kafka-protocol broker's bootstrap address, or `None` to skip.
pub fn kafka_addr() -> Option<String> {
    match std::env::var("DTS_TEST_KAFKA_ADDR") {
        Ok(addr) => Some(addr),
        Err(_) => {
            assert!(!required(), "DTS_TEST_KAFKA_ADDR is not set but DTS_REQUIRE_SERVICES=1");
            eprintln!("skipped: DTS_TEST_KAFKA_ADDR is not set (run scripts/services.sh up)");
            None
        }
    }
}

/// One consumed Kafka message.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    /// Producer create time (ms): when dts handed the message to Kafka.
    pub timestamp_ms: i64,
    pub offset: i64,
    pub key: String,
    pub payload: serde_json::Value,
    /// The `dts-worker` header: the node that produced the message.
    pub worker: Option<String>,
    /// Every header, in order (values as UTF-8, lossy).
    pub headers: Vec<(String, String)>,
    /// The payload's bytes as text (lossy), for payloads that are not JSON.
    pub text: String,
}

impl Consumed {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads `topic` from the beginning of every partition until `expect`
/// messages arrived or 30 s passed. Returns them in (partition, offset) order.
pub fn read_topic(addr: &str, topic: &str, expect: usize) -> Vec<Consumed> {
    read_until(addr, &[topic], |m| m.len() >= expect)
}

/// Reads `topics` from the beginning (partitions assigned directly: no
/// group join to wait for) until `done` holds or 120 s pass (reads of a
/// million messages on a busy machine take a while; the condition ends it).
pub fn read_until(addr: &str, topics: &[&str], done: impl Fn(&[Consumed]) -> bool) -> Vec<Consumed> {
    read_until_with(addr, &[], topics, done)
}

/// [`read_until`] with extra client settings (TLS, SASL).
pub fn read_until_with(
    addr: &str,
    settings: &[(&str, &str)],
    topics: &[&str],
    done: impl Fn(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", addr).set("group.id", unique_topic("reader")).set("enable.auto.commit", "false");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().expect("consumer");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut tpl = rdkafka::TopicPartitionList::new();
    for topic in topics {
        // The worker creates topics on first use: wait until this one exists.
        let partitions = loop {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
            let n = metadata.topics().first().filter(|t| t.error().is_none()).map_or(0, |t| t.partitions().len());
            if n > 0 || std::time::Instant::now() >= deadline {
                break n;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Beginning).expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    while !done(&out) && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(Consumed {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                offset: m.offset(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                payload: serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(serde_json::Value::Null),
                worker: None,
                headers: m
                    .headers()
                    .map(|h| {
                        rdkafka::message::Headers::iter(h)
                            .map(|h| {
                                (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                text: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            });
            if let Some(last) = out.last_mut() {
                last.worker = last.header(dts_kafka::ORIGIN_HEADER).map(str::to_owned);
            }
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    out
}

/// The high watermark (next offset) of every partition of `topics`.
pub fn high_watermarks(addr: &str, topics: &[String]) -> std::collections::BTreeMap<(String, i32), i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", unique_topic("watermarks"))
        .create()
        .expect("consumer");
    let mut out = std::collections::BTreeMap::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
        for p in 0..partitions as i32 {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
            out.insert((topic.clone(), p), high);
        }
    }
    out
}

/// The latest producer timestamp (ms) among the last messages of every
/// partition of `topics`: when the last of them was handed to Kafka.
/// `None` when they hold no message.
pub fn last_timestamp_ms(addr: &str, topics: &[String]) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", unique_topic("last"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
        for p in 0..partitions as i32 {
            let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
            if high > low {
                tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(high - 1)).expect("partition");
            }
        }
    }
    let mut waiting = tpl.count();
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = None;
    let mut seen = std::collections::BTreeSet::new();
    while waiting > 0 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if seen.insert((m.topic().to_owned(), m.partition())) {
                waiting -= 1;
                last = last.max(m.timestamp().to_millis());
            }
        }
    }
    assert_eq!(waiting, 0, "the last message of every partition of {topics:?} within 30 s");
    last
}

/// Ids whose message keys (their decimal text, as `primary_key` mode keys
/// them) land on every one of `partitions` partitions: written after
/// everything else, seeing them all means a topic was read to its end.
pub fn fence_ids(partitions: u32) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    let mut id = 2_000_000_000_i64;
    while covered.len() < partitions as usize {
        if covered.insert(dts_pipeline::murmur2::partition_for(id.to_string().as_bytes(), partitions)) {
            ids.push(id);
        }
        id += 1;
    }
    ids
}

/// Writes one fence row per partition (3 partitions) into `fence (id BIGINT
/// PRIMARY KEY)`; returns their ids.
pub async fn write_fences(src: &SourceDb) -> Vec<i64> {
    let fences = fence_ids(3);
    let values: Vec<String> = fences.iter().map(|id| format!("({id})")).collect();
    src.exec(&[&format!("INSERT INTO fence VALUES {}", values.join(","))]).await;
    fences
}

/// Reads `topic` until every fence row arrived, i.e. to its end. The check
/// runs only when a fence message arrives, so reading stays linear.
pub fn read_to_fence(addr: &str, topic: &str, fences: &[i64]) -> Vec<Consumed> {
    let want: std::collections::BTreeSet<i64> = fences.iter().copied().collect();
    let is_fence = |x: &Consumed| x.payload["source"]["table"] == "fence";
    read_until(addr, &[topic], |m| {
        m.last().is_some_and(is_fence)
            && want.is_subset(
                &m.iter().filter(|x| is_fence(x)).filter_map(|x| x.payload["after"]["id"].as_i64()).collect(),
            )
    })
}

/// Checks the token-bucket bound on producer timestamps: in every window
/// starting at a message, at most `capacity + rate * t` messages (plus one
/// for millisecond rounding).
pub fn assert_rate_bound(timestamps_ms: &[i64], rate: f64, capacity: f64) {
    let mut ts = timestamps_ms.to_vec();
    ts.sort_unstable();
    for (i, start) in ts.iter().enumerate() {
        for (j, end) in ts.iter().enumerate().skip(i) {
            let t = (end - start) as f64 / 1000.0;
            let count = (j - i + 1) as f64;
            assert!(count <= capacity + rate * t + 1.0, "{count} rows in {t:.3}s (rate {rate}, capacity {capacity})");
        }
    }
}
