//! The dts Kafka sink: an idempotent producer whose every message yields an
//! [`Ack`] future, and topic creation through the admin API.
//!
//! # Layout
//! - [`SinkConfig`]: brokers, partition count and replication factor of
//!   topics dts creates, and the producer's bounds.
//! - [`KafkaSink`]: `partitions(topic)` creates a missing topic and returns
//!   its partition count (cached); `send` enqueues one message and returns
//!   its acknowledgement.
//!
//! The checkpointer awaits acks in source order, so a position only advances
//! once every message before it is on the broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

/// How dts talks to Kafka.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Partitions of topics dts creates.
    pub topic_partitions: i32,
    /// Replication factor of topics dts creates.
    pub replication_factor: i32,
    /// Messages buffered in the producer; the bound that turns a slow broker
    /// into backpressure on the binlog reader instead of memory growth.
    pub max_buffered_messages: u32,
    /// How long librdkafka retries a message before reporting it failed.
    pub message_timeout: Duration,
    /// The largest message the producer sends (librdkafka's
    /// `message.max.bytes`); a broker or topic may accept less.
    pub max_message_bytes: u32,
    /// TLS and SASL to the brokers.
    pub security: Security,
    /// The node that produces, sent as the `dts-worker` header of every
    /// message: which node wrote a message can always be told.
    pub origin: Option<String>,
}

/// The header naming the node that produced a message.
pub const ORIGIN_HEADER: &str = "dts-worker";

/// Keeps the last error librdkafka reported about the brokers (connection,
/// TLS, SASL), which its request timeouts do not carry.
#[derive(Debug, Clone, Default)]
pub struct BrokerContext {
    last_error: std::sync::Arc<Mutex<Option<String>>>,
}

impl BrokerContext {
    fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
    /// The brokers answered: an older complaint no longer explains anything.
    fn clear(&self) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
    }
}

impl ClientContext for BrokerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "broker error");
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(reason.chars().take(300).collect());
        }
    }
}

/// librdkafka's security settings. Its `Debug` never shows the key or the
/// password.
#[derive(Clone, Default)]
pub struct Security {
    /// `security.protocol`: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    pub protocol: Option<String>,
    /// `ssl.ca.pem`, `ssl.certificate.pem`, `ssl.key.pem`.
    pub ca_pem: Option<String>,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
    /// `sasl.mechanisms`, `sasl.username`, `sasl.password`.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
}

impl From<&dts_core::spec::KafkaSecurity> for Security {
    /// A task's or an ingest stream's `kafka.security`, secrets included.
    fn from(sec: &dts_core::spec::KafkaSecurity) -> Self {
        let sasl = sec.sasl.as_ref();
        Self {
            protocol: Some(sec.protocol.as_str().to_owned()),
            ca_pem: sec.ca_pem.clone(),
            cert_pem: sec.cert_pem.clone(),
            key_pem: sec.key_pem.as_ref().map(|k| k.expose().to_owned()),
            sasl_mechanism: sasl.map(|s| s.mechanism.as_str().to_owned()),
            sasl_username: sasl.map(|s| s.username.clone()),
            sasl_password: sasl.and_then(|s| s.password.as_ref()).map(|p| p.expose().to_owned()),
        }
    }
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field("ca_pem", &self.ca_pem.is_some())
            .field("cert_pem", &self.cert_pem.is_some())
            .field("key_pem", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &self.sasl_password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Security {
    fn apply(&self, client: &mut ClientConfig) {
        let settings = [
            ("security.protocol", &self.protocol),
            ("ssl.ca.pem", &self.ca_pem),
            ("ssl.certificate.pem", &self.cert_pem),
            ("ssl.key.pem", &self.key_pem),
            ("sasl.mechanisms", &self.sasl_mechanism),
            ("sasl.username", &self.sasl_username),
            ("sasl.password", &self.sasl_password),
        ];
        for (key, value) in settings {
            if let Some(v) = value {
                client.set(key, v);
            }
        }
        if self.protocol.as_deref().is_some_and(|p| p.ends_with("SSL")) {
            // Brokers' host names are verified against their certificates.
            client.set("ssl.endpoint.identification.algorithm", "https");
        }
    }
}

impl SinkConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_partitions: 3,
            replication_factor: 1,
            max_buffered_messages: 100_000,
            message_timeout: Duration::from_secs(120),
            max_message_bytes: 1_000_000,
            security: Security::default(),
            origin: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration cannot work; retrying will not help.
    #[error("invalid Kafka configuration: {0}")]
    Config(String),
    /// A topic could not be created or described.
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String, transient: bool },
    /// A message was not delivered (broker down, timeout): retry from the checkpoint.
    #[error("Kafka delivery failed: {0}")]
    Delivery(String),
    /// A message larger than the producer or the broker accepts: resending
    /// it can never succeed, and skipping it would lose a row.
    #[error(
        "a {bytes}-byte message for topic {topic} is larger than Kafka accepts ({limit}); the task stops at this \
         row rather than skip it: drop large columns with exclude_columns, or raise the limit (the broker's \
         message.max.bytes, the topic's max.message.bytes) and start the task again"
    )]
    TooLarge { topic: String, bytes: usize, limit: String },
}

static OVERSIZED: AtomicU64 = AtomicU64::new(0);

/// Messages refused as too large since the process started.
pub fn oversized_messages_total() -> u64 {
    OVERSIZED.load(Ordering::Relaxed)
}

fn too_large(topic: &str, bytes: usize, limit: String) -> SinkError {
    OVERSIZED.fetch_add(1, Ordering::Relaxed);
    SinkError::TooLarge { topic: topic.to_owned(), bytes, limit }
}

impl SinkError {
    /// True when the task should retry from its checkpoint rather than fail.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Config(_) => false,
            Self::Topic { transient, .. } => *transient,
            Self::Delivery(_) => true,
            Self::TooLarge { .. } => false,
        }
    }
}

/// Where an acknowledged message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// The acknowledgement of one message.
pub struct Ack(DeliveryFuture);

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ack")
    }
}

impl Ack {
    pub async fn wait(self) -> Result<Delivered, SinkError> {
        match self.0.await {
            Ok(Ok(d)) => Ok(Delivered { partition: d.partition, offset: d.offset }),
            Ok(Err((
                KafkaError::MessageProduction(
                    code @ (RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge),
                ),
                m,
            ))) => {
                use rdkafka::Message;
                let bytes = m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len);
                Err(too_large(m.topic(), bytes, format!("the broker answered {code}")))
            }
            Ok(Err((e, _))) => Err(SinkError::Delivery(e.to_string())),
            Err(_) => Err(SinkError::Delivery("the producer was closed before the message was acknowledged".into())),
        }
    }
}

/// Message headers built once and copied onto each message: building
/// them per message costs an allocation per header name.
#[derive(Clone, Default)]
pub struct Headers(Option<rdkafka::message::OwnedHeaders>);

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use rdkafka::message::Headers as _;
        f.debug_list().entries(self.0.iter().flat_map(|h| h.iter().map(|h| h.key))).finish()
    }
}

/// A producer and an admin client on one cluster.
pub struct KafkaSink {
    producer: FutureProducer<BrokerContext>,
    admin: AdminClient<BrokerContext>,
    context: BrokerContext,
    config: SinkConfig,
    /// The `dts-worker` header alone, for [`Self::send`].
    origin: Headers,
    /// Partition counts of topics already checked or created.
    partitions: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink").field("brokers", &self.config.brokers).finish_non_exhaustive()
    }
}

impl KafkaSink {
    pub fn connect(config: SinkConfig) -> Result<Self, SinkError> {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &config.brokers);
        config.security.apply(&mut client);
        let context = BrokerContext::default();
        let admin: AdminClient<BrokerContext> =
            client.create_with_context(context.clone()).map_err(|e: KafkaError| SinkError::Config(e.to_string()))?;
        let producer: FutureProducer<BrokerContext> = client
            // Idempotence: broker-side dedup of retried batches, per-partition order kept.
            .set("enable.idempotence", "true")
            // dts creates topics itself with the configured partitions and
            // replication; a metadata request must not auto-create them.
            .set("allow.auto.create.topics", "false")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", config.max_buffered_messages.to_string())
            .set("message.timeout.ms", config.message_timeout.as_millis().to_string())
            .set("message.max.bytes", config.max_message_bytes.to_string())
            .create_with_context(context.clone())
            .map_err(|e: KafkaError| SinkError::Config(e.to_string()))?;
        let mut sink =
            Self { producer, admin, context, config, origin: Headers(None), partitions: Mutex::new(HashMap::new()) };
        sink.origin = sink.headers(&[]);
        Ok(sink)
    }

    /// The headers of messages sent with [`Self::send_with_headers`]: the
    /// `dts-worker` header (when the config names an origin), then `extra`.
    pub fn headers(&self, extra: &[(&str, &[u8])]) -> Headers {
        if self.config.origin.is_none() && extra.is_empty() {
            return Headers(None);
        }
        let mut owned = rdkafka::message::OwnedHeaders::new_with_capacity(extra.len() + 1);
        if let Some(origin) = &self.config.origin {
            owned = owned.insert(rdkafka::message::Header { key: ORIGIN_HEADER, value: Some(origin.as_bytes()) });
        }
        for (k, v) in extra {
            owned = owned.insert(rdkafka::message::Header { key: k, value: Some(*v) });
        }
        Headers(Some(owned))
    }

    /// The topic's partition count, creating the topic first if it is missing.
    pub async fn partitions(&self, topic: &str) -> Result<u32, SinkError> {
        if let Some(n) = self.partitions.lock().ok().and_then(|m| m.get(topic).copied()) {
            return Ok(n);
        }
        let n = match self.describe(topic).await? {
            Some(n) => n,
            None => self.create(topic).await?,
        };
        if let Ok(mut m) = self.partitions.lock() {
            m.insert(topic.to_owned(), n);
        }
        Ok(n)
    }

    /// Partition count from metadata, or `None` when the topic does not exist.
    async fn describe(&self, topic: &str) -> Result<Option<u32>, SinkError> {
        let producer = self.producer.clone();
        let name = topic.to_owned();
        let metadata =
            tokio::task::spawn_blocking(move || producer.client().fetch_metadata(Some(&name), Duration::from_secs(10)))
                .await
                .map_err(|e| self.topic_error(topic, e.to_string(), true))?
                .map_err(|e| self.topic_error(topic, e.to_string(), true))?;
        if metadata.brokers().is_empty() {
            return Err(self.topic_error(topic, format!("no broker of {} is reachable", self.config.brokers), true));
        }
        self.context.clear();
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
        match t.error() {
            None if !t.partitions().is_empty() => Ok(Some(t.partitions().len() as u32)),
            None => Ok(None),
            Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => Ok(None),
            Some(e) => Err(self.topic_error(topic, format!("{:?}", RDKafkaErrorCode::from(e)), true)),
        }
    }

    async fn create(&self, topic: &str) -> Result<u32, SinkError> {
        let new =
            NewTopic::new(topic, self.config.topic_partitions, TopicReplication::Fixed(self.config.replication_factor));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results =
            self.admin.create_topics([&new], &opts).await.map_err(|e| self.topic_error(topic, e.to_string(), true))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code @ (RDKafkaErrorCode::InvalidTopic | RDKafkaErrorCode::TopicAuthorizationFailed))) => {
                    return Err(self.topic_error(topic, format!("cannot be created: {code}"), false))
                }
                Err((_, code)) => return Err(self.topic_error(topic, format!("cannot be created: {code}"), true)),
            }
        }
        // Metadata can lag the creation: poll until the partitions show up.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(n) = self.describe(topic).await? {
                tracing::info!(topic, partitions = n, "created topic");
                return Ok(n);
            }
            if Instant::now() >= deadline {
                return Err(self.topic_error(topic, "created but its partitions never appeared".into(), true));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Names the brokers' own complaint (a TLS handshake or SASL failure)
    /// when there is one, since librdkafka's timeouts do not say why.
    fn topic_error(&self, topic: &str, reason: String, transient: bool) -> SinkError {
        let reason = match self.context.last_error() {
            Some(broker) => format!("{reason} (last broker error: {broker})"),
            None => reason,
        };
        SinkError::Topic { topic: topic.to_owned(), reason, transient }
    }

    /// Enqueues one message for `partition` of `topic`. When the producer's
    /// buffer is full this waits for room: the backpressure that bounds memory.
    pub async fn send(&self, topic: &str, partition: u32, key: &[u8], payload: &[u8]) -> Result<Ack, SinkError> {
        self.send_with_headers(topic, partition, Some(key), payload, &self.origin).await
    }

    /// [`Self::send`] with an optional key and headers from [`Self::headers`].
    pub async fn send_with_headers(
        &self,
        topic: &str,
        partition: u32,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &Headers,
    ) -> Result<Ack, SinkError> {
        let partition = i32::try_from(partition).map_err(|_| SinkError::Config("partition out of range".into()))?;
        let mut record = FutureRecord::to(topic).partition(partition).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(h) = &headers.0 {
            record = record.headers(h.clone());
        }
        loop {
            match self.producer.send_result(record) {
                Ok(ack) => return Ok(Ack(ack)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // librdkafka has no "room available" notification; its own
                    // blocking send polls the same way.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    let limit = format!("the producer's message.max.bytes is {}", self.config.max_message_bytes);
                    return Err(too_large(topic, key.map_or(0, <[u8]>::len) + payload.len(), limit));
                }
                Err((e, _)) => return Err(SinkError::Delivery(e.to_string())),
            }
        }
    }

    /// Drops the messages still queued or in flight; their acknowledgements
    /// fail. For a runner that lost its task to another worker.
    pub fn purge(&self) {
        self.producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    }

    /// Waits up to `timeout` for every buffered message to be acknowledged.
    pub async fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| SinkError::Delivery(e.to_string()))?
            .map_err(|e| SinkError::Delivery(e.to_string()))
    }
}
