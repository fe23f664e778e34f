//! The dts Kafka sink: an idempotent producer whose every message yields an
//! [`Ack`] future, and topic creation through the admin API.
//!
//! # Layout
//! - [`SinkConfig`]: brokers, partition count and replication factor of
//!   topics dts creates, and the producer's bounds.
//! - [`KafkaSink`]: `partitions(topic)` creates a missing topic and returns
//!   its partition count (cached); `send` enqueues one message and returns
//!   its acknowledgement; `send_batch` enqueues many and returns one
//!   acknowledgement with an outcome per message; `send_into` adds a
//!   message to an [`AckGroup`] that succeeds or fails as a whole.
//!
//! The checkpointer awaits acks in source order, so a position only advances
//! once every message before it is on the broker.

mod delivery;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

pub use delivery::{Ack, AckGroup, BatchAck, Delivered, Outcome};
use delivery::{Pending, SinkContext};

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
    /// How long the producer waits to fill a batch (`linger.ms`): longer
    /// batches cost the broker less per message and add this much to
    /// every acknowledgement.
    pub linger: Duration,
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
    last_error: Arc<Mutex<Option<String>>>,
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
            linger: Duration::from_millis(5),
            max_message_bytes: 1_000_000,
            security: Security::default(),
            origin: None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
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

/// One message of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub partition: u32,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// A producer on one cluster, and what it takes to create topics there.
pub struct KafkaSink {
    producer: Arc<ThreadedProducer<SinkContext>>,
    /// The cluster's address and security, for the admin client that
    /// [`Self::create`] makes when a topic is missing.
    admin_config: ClientConfig,
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
        let admin_config = client.clone();
        let producer: ThreadedProducer<SinkContext> = client
            // Idempotence: broker-side dedup of retried batches, per-partition order kept.
            .set("enable.idempotence", "true")
            // dts creates topics itself with the configured partitions and
            // replication; a metadata request must not auto-create them.
            .set("allow.auto.create.topics", "false")
            .set("acks", "all")
            .set("linger.ms", config.linger.as_millis().to_string())
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", config.max_buffered_messages.to_string())
            .set("message.timeout.ms", config.message_timeout.as_millis().to_string())
            .set("message.max.bytes", config.max_message_bytes.to_string())
            .create_with_context(SinkContext(context.clone()))
            .map_err(|e: KafkaError| SinkError::Config(e.to_string()))?;
        let mut sink = Self {
            producer: Arc::new(producer),
            admin_config,
            context,
            config,
            origin: Headers(None),
            partitions: Mutex::new(HashMap::new()),
        };
        sink.origin = sink.headers(&[]);
        Ok(sink)
    }

    /// The headers of messages sent with [`Self::send_batch`]: the
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
        // An admin client for this creation only: topics are created rarely,
        // and a standing one cost every task (and ingest stream) a librdkafka
        // instance of four threads.
        let admin: AdminClient<BrokerContext> = self
            .admin_config
            .create_with_context(self.context.clone())
            .map_err(|e: KafkaError| SinkError::Config(e.to_string()))?;
        let results = admin.create_topics([&new], &opts).await;
        // Destroying a client joins its threads: not on the async runtime.
        tokio::task::spawn_blocking(move || drop(admin));
        let results = results.map_err(|e| self.topic_error(topic, e.to_string(), true))?;
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

    /// Enqueues one message for `partition` of `topic`, with the
    /// `dts-worker` header. When the producer's buffer is full this waits
    /// for room: the backpressure that bounds memory.
    pub async fn send(&self, topic: &str, partition: u32, key: &[u8], payload: &[u8]) -> Result<Ack, SinkError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let message = Message { partition, key: Some(key), payload };
        match self.enqueue(topic, &message, &self.origin, Pending::One(tx)).await {
            Ok(()) => Ok(Ack(rx)),
            Err((e, _)) => Err(e),
        }
    }

    /// Enqueues one message whose acknowledgement joins `group` ([`Self::send`]'s
    /// headers). A message that cannot be enqueued is an error here and
    /// does not join.
    pub async fn send_into(
        &self,
        group: &AckGroup,
        topic: &str,
        partition: u32,
        key: &[u8],
        payload: &[u8],
    ) -> Result<(), SinkError> {
        let message = Message { partition, key: Some(key), payload };
        match self.enqueue(topic, &message, &self.origin, group.join()).await {
            Ok(()) => Ok(()),
            Err((e, pending)) => {
                // The caller has the error; the group need not carry it.
                pending.withdraw();
                Err(e)
            }
        }
    }

    /// Enqueues `messages` for `topic`, in order, and returns one
    /// acknowledgement for all of them, whose outcomes keep that order. A
    /// message that cannot be enqueued (too large, a partition out of
    /// range) fails alone; the others are still sent. Waits for room when
    /// the producer's buffer is full, as [`Self::send`] does.
    pub async fn send_batch<'m>(
        &self,
        topic: &str,
        messages: impl ExactSizeIterator<Item = Message<'m>>,
        headers: &Headers,
    ) -> BatchAck {
        let batch = BatchAck::new(messages.len());
        for (index, message) in messages.enumerate() {
            if let Err((e, pending)) = self.enqueue(topic, &message, headers, batch.member(index)).await {
                pending.complete(Err(e));
            }
        }
        batch.sealed()
    }

    /// Hands one message to librdkafka; on failure, the error and the
    /// report that will never come.
    async fn enqueue(
        &self,
        topic: &str,
        message: &Message<'_>,
        headers: &Headers,
        pending: Pending,
    ) -> Result<(), (SinkError, Pending)> {
        let Ok(partition) = i32::try_from(message.partition) else {
            return Err((SinkError::Config("partition out of range".into()), pending));
        };
        let mut record =
            BaseRecord::with_opaque_to(topic, Box::new(pending)).partition(partition).payload(message.payload);
        if let Some(key) = message.key {
            record = record.key(key);
        }
        if let Some(h) = &headers.0 {
            record = record.headers(h.clone());
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // librdkafka has no "room available" notification; its own
                    // blocking send polls the same way.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), back)) => {
                    let limit = format!("the producer's message.max.bytes is {}", self.config.max_message_bytes);
                    let bytes = message.key.map_or(0, <[u8]>::len) + message.payload.len();
                    return Err((too_large(topic, bytes, limit), *back.delivery_opaque));
                }
                Err((e, back)) => return Err((SinkError::Delivery(e.to_string()), *back.delivery_opaque)),
            }
        }
    }

    /// Messages handed to the producer and not yet acknowledged (or failed).
    pub fn in_flight(&self) -> usize {
        usize::try_from(self.producer.in_flight_count()).unwrap_or(0)
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
