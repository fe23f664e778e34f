//! The Kafka sink against a real Kafka-protocol broker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dts_e2e::{kafka_addr, unique_topic};
use dts_kafka::{KafkaSink, SinkConfig};
use dts_pipeline::murmur2::partition_for;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A consumer of `topic`'s partitions 0..n from their beginning.
fn reader(addr: &str, topic: &str, partitions: u32) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", unique_topic("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Every message of `topic` (partitions 0..n) as key -> (partition, payload).
fn read_all(addr: &str, topic: &str, partitions: u32, expect: usize) -> BTreeMap<String, (i32, String)> {
    let consumer = reader(addr, topic, partitions);
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < expect && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            let payload = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
            out.insert(key, (m.partition(), payload));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_topics_and_delivers_keyed_messages_to_their_partitions() {
    let Some(addr) = kafka_addr() else { return };
    let mut config = SinkConfig::new(addr.clone());
    config.topic_partitions = 3;
    let sink = KafkaSink::connect(config).unwrap();
    let topic = unique_topic("dts_sink");
    assert_eq!(sink.partitions(&topic).await.unwrap(), 3);
    assert_eq!(sink.partitions(&topic).await.unwrap(), 3, "cached or described, not re-created");

    let mut acks = Vec::new();
    for i in 0..300 {
        let key = format!("k{i}");
        let partition = partition_for(key.as_bytes(), 3);
        let ack = sink.send(&topic, partition, key.as_bytes(), format!("v{i}").as_bytes()).await.unwrap();
        acks.push((partition, ack));
    }
    for (partition, ack) in acks {
        let delivered = ack.wait().await.unwrap();
        assert_eq!(delivered.partition, partition as i32);
        assert!(delivered.offset >= 0);
    }
    let got = tokio::task::spawn_blocking(move || read_all(&addr, &topic, 3, 300)).await.unwrap();
    assert_eq!(got.len(), 300);
    for i in 0..300 {
        let key = format!("k{i}");
        let (partition, payload) = &got[&key];
        assert_eq!((*partition, payload.as_str()), (partition_for(key.as_bytes(), 3) as i32, format!("v{i}").as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_transient_delivery_error() {
    // Nothing listens on this port: the message times out and the task would
    // retry from its checkpoint rather than fail.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = SinkConfig::new(format!("127.0.0.1:{port}"));
    config.message_timeout = Duration::from_millis(1500);
    let sink = KafkaSink::connect(config).unwrap();
    let ack = sink.send("nowhere", 0, b"k", b"v").await.unwrap();
    let err = ack.wait().await.unwrap_err();
    assert!(err.is_transient(), "{err}");

    // A group of messages fails as one, with the same transient error.
    let group = dts_kafka::AckGroup::new();
    for i in 0..3u8 {
        sink.send_into(&group, "nowhere", 0, &[i], b"v").await.unwrap();
    }
    let err = group.wait().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

/// A sink whose producer refuses messages over 10,000 bytes, and a new
/// topic of `partitions` created through it.
async fn small_message_sink(addr: &str, prefix: &str, partitions: i32) -> (KafkaSink, String) {
    let mut config = SinkConfig::new(addr);
    config.topic_partitions = partitions;
    config.max_message_bytes = 10_000;
    let sink = KafkaSink::connect(config).unwrap();
    let topic = unique_topic(prefix);
    assert_eq!(sink.partitions(&topic).await.unwrap(), partitions as u32);
    (sink, topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_completes_once_every_message_is_on_the_broker() {
    let Some(addr) = kafka_addr() else { return };
    let (sink, topic) = small_message_sink(&addr, "dts_group", 3).await;
    let group = dts_kafka::AckGroup::new();
    for i in 0..500 {
        let key = format!("k{i}");
        sink.send_into(&group, &topic, partition_for(key.as_bytes(), 3), key.as_bytes(), b"v").await.unwrap();
    }
    // A message the producer refuses is the sender's error; it does not
    // fail the group.
    let refused = sink.send_into(&group, &topic, 0, b"big", &[0; 20_000]).await.unwrap_err();
    assert!(!refused.is_transient(), "{refused}");
    group.wait().await.unwrap();
    // librdkafka counts a report until its event is released, just after
    // the group learns of it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.in_flight() != 0 {
        assert!(Instant::now() < deadline, "{} messages still in flight", sink.in_flight());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = tokio::task::spawn_blocking(move || read_all(&addr, &topic, 3, 500)).await.unwrap();
    assert_eq!(got.len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reports_each_message_in_order_and_fails_only_the_one_that_cannot_go() {
    let Some(addr) = kafka_addr() else { return };
    let (sink, topic) = small_message_sink(&addr, "dts_batch", 2).await;

    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let big = vec![b'x'; 20_000];
    let payloads: Vec<Vec<u8>> =
        (0..40).map(|i| if i == 7 { big.clone() } else { format!("v{i}").into_bytes() }).collect();
    let messages = (0..40).map(|i| dts_kafka::Message {
        // Partition 5 does not exist: message 13 fails alone.
        partition: if i == 13 { 5 } else { i % 2 },
        key: Some(keys[i as usize].as_bytes()),
        payload: &payloads[i as usize],
    });
    let outcomes = sink.send_batch(&topic, messages, &sink.headers(&[])).await.wait().await;
    assert_eq!(outcomes.len(), 40);
    assert!(matches!(outcomes[7], Err(dts_kafka::SinkError::TooLarge { bytes: 20_002, .. })), "{:?}", outcomes[7]);
    assert!(outcomes[13].is_err(), "{:?}", outcomes[13]);
    let delivered: BTreeMap<String, (i32, i64)> = outcomes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7 && *i != 13)
        .map(|(i, o)| {
            let d = o.as_ref().unwrap();
            assert_eq!(d.partition, i as i32 % 2, "message {i}");
            (format!("k{i}"), (d.partition, d.offset))
        })
        .collect();
    assert_eq!(delivered.len(), 38);

    // Each reported (partition, offset) is where the consumer finds that key.
    let consumer = reader(&addr, &topic, 2);
    let found = tokio::task::spawn_blocking(move || {
        let mut found = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while found.len() < 38 && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
                found.insert(key, (m.partition(), m.offset()));
            }
        }
        found
    })
    .await
    .unwrap();
    assert_eq!(found, delivered);
}
