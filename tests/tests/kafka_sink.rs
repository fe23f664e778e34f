//! The Kafka sink against a real Kafka-protocol broker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dts_e2e::{kafka_addr, unique_topic};
use dts_kafka::{KafkaSink, SinkConfig};
use dts_pipeline::murmur2::partition_for;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Every message of `topic` (partitions 0..n) as key -> (partition, payload).
fn read_all(addr: &str, topic: &str, partitions: u32, expect: usize) -> BTreeMap<String, (i32, String)> {
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
}
