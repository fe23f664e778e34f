//! The streams this node serves, read from the store (or, on a gateway,
//! from the control planes) and refreshed every second, with what serving them needs: a shared Kafka producer per
//! destination, a rate limiter and counters per stream.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dts_core::ingest::{StreamCount, StreamKey, StreamSpec};
use dts_kafka::{KafkaSink, SinkConfig, SinkError};
use dts_store::Store;
use governor::clock::DefaultClock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::Serialize;

/// How often each node re-reads the streams.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// A stream as a [`ConfigSource`] hands it over: its spec with secrets.
#[derive(Debug, Clone)]
pub struct LoadedStream {
    pub id: i64,
    pub version: i64,
    pub key: StreamKey,
    pub spec: StreamSpec,
}

/// Everything a node serves: streams and credentials (by lookup).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub streams: Vec<LoadedStream>,
    pub credentials: Vec<(String, Credential)>,
}

/// Why a snapshot could not be loaded; the last one stays in force.
#[derive(Debug, thiserror::Error)]
#[error("cannot load the ingest configuration: {what}")]
pub struct LoadError {
    pub what: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

type LoadFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Snapshot, LoadError>> + Send + 'a>>;

/// What a node reports of itself each time it loads its configuration:
/// its counters, so that every node can show every stream's totals.
#[derive(Debug, Clone, Default)]
pub struct CounterReport {
    /// This serving process: its node name and a random part.
    pub node: String,
    /// The streams whose counters changed since the last report.
    pub counts: Vec<StreamCount>,
}

/// Where a node learns its streams, and where it reports its counters: the
/// store (`standalone`, `control`) or the control planes (`gateway`).
pub trait ConfigSource: Send + Sync {
    fn load(&self, report: CounterReport) -> LoadFuture<'_>;
}

/// The streams and keys in the task store.
#[derive(Debug, Clone)]
pub struct StoreSource(pub Store);

impl StoreSource {
    /// Reads the store; a stream or key whose secrets cannot be opened is
    /// left out (and logged), the others are served.
    pub async fn snapshot(store: &Store) -> Result<Snapshot, dts_store::StoreError> {
        let mut snapshot = Snapshot::default();
        for record in store.list_streams().await? {
            let mut spec = record.spec.clone();
            match store.stream_secrets(&record) {
                Ok(secrets) => secrets.keep_in(spec.kafka.security.as_mut()),
                Err(e) => {
                    tracing::error!(error = %e, stream = record.id, "an ingest stream cannot be read; it is not served");
                    continue;
                }
            }
            snapshot.streams.push(LoadedStream { id: record.id, version: record.version, key: record.key, spec });
        }
        for key in store.list_keys().await? {
            match store.key_secret(&key) {
                Ok(secret) => snapshot.credentials.push((
                    key.lookup,
                    Credential { id: key.id, protocol: key.protocol, secret, streams: key.streams },
                )),
                Err(e) => tracing::error!(error = %e, key = key.id, "an ingest key cannot be read; it is not accepted"),
            }
        }
        Ok(snapshot)
    }
}

impl ConfigSource for StoreSource {
    fn load(&self, report: CounterReport) -> LoadFuture<'_> {
        Box::pin(async move {
            let failed = |e: dts_store::StoreError| LoadError { what: "the store".into(), source: Some(Box::new(e)) };
            self.0.record_ingest_counters(&report.node, &report.counts).await.map_err(failed)?;
            Self::snapshot(&self.0).await.map_err(failed)
        })
    }
}

/// Node-wide settings of ingest.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Partitions of topics dts creates when a stream names none.
    pub topic_partitions: i32,
    pub replication_factor: i32,
    /// The node's name, sent as the `dts-worker` header.
    pub origin: String,
    /// Record bytes in flight to Kafka on this node, over all requests;
    /// requests beyond it wait (see `wait`), bounding memory.
    pub max_inflight_bytes: usize,
    /// How long a request waits for room or for Kafka before it fails
    /// with the protocol's "retry later".
    pub wait: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Where per-stream records, bytes, errors and latency are counted.
    pub metrics: Option<dts_metrics::ingest::IngestMetrics>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            topic_partitions: 3,
            replication_factor: 1,
            origin: "dts".into(),
            max_inflight_bytes: 256 * 1024 * 1024,
            wait: Duration::from_secs(30),
            max_body_bytes: 8 * 1024 * 1024,
            metrics: None,
        }
    }
}

/// Per-stream counters on this node.
#[derive(Debug, Default)]
pub struct Counters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

/// A snapshot of [`Counters`] for the API.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CounterView {
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
}

impl Counters {
    pub fn view(&self) -> CounterView {
        CounterView {
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;

/// A stream as served: its spec with secrets, and its runtime parts.
pub struct LiveStream {
    pub id: i64,
    pub version: i64,
    pub key: StreamKey,
    pub spec: StreamSpec,
    pub counters: Arc<Counters>,
    limiter: Option<Limiter>,
    sink_key: String,
    next_partition: AtomicU32,
}

impl std::fmt::Debug for LiveStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStream").field("id", &self.id).field("key", &self.key).finish_non_exhaustive()
    }
}

impl LiveStream {
    /// Takes `n` records from the stream's rate limit; false when over it.
    pub fn admit(&self, n: usize) -> bool {
        let Some(limiter) = &self.limiter else { return true };
        let Some(n) = u32::try_from(n).ok().and_then(NonZeroU32::new) else { return true };
        matches!(limiter.check_n(n), Ok(Ok(())))
    }

    /// The partition for a request's records: round robin over requests,
    /// so one request's records stay in order on one partition.
    pub fn next_partition(&self, partitions: u32) -> u32 {
        self.next_partition.fetch_add(1, Ordering::Relaxed) % partitions.max(1)
    }
}

/// A producer credential as served.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: i64,
    pub protocol: dts_core::ingest::Protocol,
    /// A DIS secret key; `None` for tokens and API keys.
    pub secret: Option<dts_core::spec::Secret>,
    /// The streams it may write.
    pub streams: Vec<i64>,
}

impl Credential {
    pub fn may_write(&self, stream: &LiveStream) -> bool {
        self.protocol == stream.key.protocol && self.streams.contains(&stream.id)
    }
}

#[derive(Default)]
struct Inner {
    by_key: HashMap<StreamKey, Arc<LiveStream>>,
    by_id: HashMap<i64, Arc<LiveStream>>,
    /// By access key (DIS AK/SK) or by the hex SHA-256 of a token / API key.
    credentials: HashMap<String, Arc<Credential>>,
}

/// The hex SHA-256 of a token or API key: how the store and the registry
/// know them.
pub fn digest(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The streams served by this node.
pub struct Registry {
    source: Box<dyn ConfigSource>,
    pub settings: IngestSettings,
    inner: RwLock<Inner>,
    /// Counters by stream id; they outlive a stream's versions.
    counters: RwLock<HashMap<i64, Arc<Counters>>>,
    /// One producer per destination (brokers, security, partitions).
    sinks: tokio::sync::Mutex<HashMap<String, Arc<KafkaSink>>>,
    /// Record bytes in flight, in KiB permits.
    inflight: tokio::sync::Semaphore,
    /// Signed requests already accepted (AK/SK signatures are single-use).
    pub replays: crate::signing::Replays,
    /// When the configuration was last read (Unix ms; 0: never).
    loaded_at_ms: std::sync::atomic::AtomicI64,
    /// This serving process in reported counters: the node's name, and a
    /// random part so a restarted node adds to its old totals.
    node: String,
    /// The counters last reported, so only changes are written again.
    reported: std::sync::Mutex<HashMap<i64, StreamCount>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// Why records could not be handed to Kafka at all.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// Too many bytes in flight on this node for longer than the wait.
    #[error("this node is at its in-flight limit; retry later")]
    Busy,
    /// Kafka did not answer in time.
    #[error("Kafka did not acknowledge in time; retry later")]
    Timeout,
    #[error("Kafka is unavailable: {0}")]
    Unavailable(#[source] SinkError),
}

/// A record to write.
#[derive(Debug)]
pub struct OutRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// A partition the producer chose; otherwise the request's one.
    pub partition: Option<u32>,
}

impl Registry {
    /// A registry of the streams in `store`.
    pub fn new(store: Store, settings: IngestSettings) -> Self {
        Self::with_source(Box::new(StoreSource(store)), settings)
    }

    pub fn with_source(source: Box<dyn ConfigSource>, settings: IngestSettings) -> Self {
        let permits = (settings.max_inflight_bytes / 1024).clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        let node = format!("{}#{:016x}", settings.origin, rand::random::<u64>());
        Self {
            source,
            settings,
            inner: RwLock::new(Inner::default()),
            counters: RwLock::new(HashMap::new()),
            sinks: tokio::sync::Mutex::new(HashMap::new()),
            inflight: tokio::sync::Semaphore::new(permits),
            replays: crate::signing::Replays::default(),
            loaded_at_ms: std::sync::atomic::AtomicI64::new(0),
            node,
            reported: std::sync::Mutex::default(),
        }
    }

    pub fn get(&self, key: &StreamKey) -> Option<Arc<LiveStream>> {
        self.inner.read().ok()?.by_key.get(key).cloned()
    }

    pub fn get_by_id(&self, id: i64) -> Option<Arc<LiveStream>> {
        self.inner.read().ok()?.by_id.get(&id).cloned()
    }

    /// The credential with this access key or digest.
    pub fn credential(&self, lookup: &str) -> Option<Arc<Credential>> {
        self.inner.read().ok()?.credentials.get(lookup).cloned()
    }

    /// This node's counters of stream `id`.
    pub fn counters(&self, id: i64) -> CounterView {
        self.counters.read().ok().and_then(|c| c.get(&id).map(|c| c.view())).unwrap_or_default()
    }

    /// This serving process's name in reported counters.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// This process's counters of the streams whose counters changed since
    /// the last report that reached the store.
    pub fn report(&self) -> CounterReport {
        let reported = self.reported.lock().map(|r| r.clone()).unwrap_or_default();
        let counts = self
            .counters
            .read()
            .map(|all| {
                all.iter()
                    .map(|(id, c)| {
                        let v = c.view();
                        StreamCount { stream_id: *id, records: v.records, bytes: v.bytes, errors: v.errors }
                    })
                    .filter(|c| reported.get(&c.stream_id).map_or(c.records + c.bytes + c.errors > 0, |r| r != c))
                    .collect()
            })
            .unwrap_or_default();
        CounterReport { node: self.node.clone(), counts }
    }

    fn counters_of(&self, id: i64) -> Arc<Counters> {
        if let Some(c) = self.counters.read().ok().and_then(|c| c.get(&id).cloned()) {
            return c;
        }
        let Ok(mut all) = self.counters.write() else { return Arc::default() };
        Arc::clone(all.entry(id).or_default())
    }

    fn live(&self, loaded: LoadedStream) -> LiveStream {
        let spec = loaded.spec;
        let limiter = spec.rate_limit.and_then(NonZeroU32::new).map(|n| RateLimiter::direct(Quota::per_second(n)));
        let sink_key =
            serde_json::json!([spec.kafka.addr, spec.kafka.partitions, spec.kafka.security, spec.secrets(),])
                .to_string();
        LiveStream {
            id: loaded.id,
            version: loaded.version,
            key: loaded.key,
            counters: self.counters_of(loaded.id),
            spec,
            limiter,
            sink_key,
            next_partition: AtomicU32::new(0),
        }
    }

    /// Loads the streams and serves them. A stream whose version did not
    /// change keeps its limiter and its place in the round robin.
    pub async fn reload(&self) -> Result<(), LoadError> {
        let report = self.report();
        let snapshot = self.source.load(report.clone()).await?;
        if let Ok(mut reported) = self.reported.lock() {
            reported.extend(report.counts.into_iter().map(|c| (c.stream_id, c)));
        }
        let current: HashMap<i64, Arc<LiveStream>> = self.inner.read().map(|i| i.by_id.clone()).unwrap_or_default();
        let mut next = Inner::default();
        for loaded in snapshot.streams {
            let live = match current.get(&loaded.id) {
                Some(s) if s.version == loaded.version => Arc::clone(s),
                _ => Arc::new(self.live(loaded)),
            };
            next.by_key.insert(live.key.clone(), Arc::clone(&live));
            next.by_id.insert(live.id, live);
        }
        for (lookup, credential) in snapshot.credentials {
            next.credentials.insert(lookup, Arc::new(credential));
        }
        if let Ok(mut inner) = self.inner.write() {
            *inner = next;
        }
        self.loaded_at_ms.store(dts_store::now_ms(), Ordering::Relaxed);
        Ok(())
    }

    /// True when the configuration was read in the last ten seconds (it is
    /// re-read every second): what a gateway's `/readyz` answers.
    pub fn loaded(&self) -> bool {
        dts_store::now_ms() - self.loaded_at_ms.load(Ordering::Relaxed) < 10_000
    }

    /// Keeps the streams current until `shutdown` completes.
    pub async fn follow(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            match self.reload().await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot read the ingest streams; serving the last ones read");
                }
                Err(_) => {}
            }
        }
        let sinks: Vec<Arc<KafkaSink>> = self.sinks.lock().await.values().cloned().collect();
        for sink in sinks {
            let _ = sink.flush(Duration::from_secs(5)).await;
        }
    }

    async fn sink(&self, stream: &LiveStream) -> Result<Arc<KafkaSink>, SinkError> {
        let mut sinks = self.sinks.lock().await;
        if let Some(s) = sinks.get(&stream.sink_key) {
            return Ok(Arc::clone(s));
        }
        let k = &stream.spec.kafka;
        let mut cfg = SinkConfig::new(k.addr.clone());
        cfg.topic_partitions = k.partitions.unwrap_or(self.settings.topic_partitions);
        cfg.replication_factor = self.settings.replication_factor;
        cfg.origin = Some(self.settings.origin.clone());
        if let Some(sec) = &k.security {
            cfg.security = dts_kafka::Security::from(sec);
        }
        let sink = Arc::new(KafkaSink::connect(cfg)?);
        sinks.insert(stream.sink_key.clone(), Arc::clone(&sink));
        Ok(sink)
    }

    /// The partition count of the stream's topic (created if missing).
    pub async fn partitions(&self, stream: &LiveStream) -> Result<u32, DeliverError> {
        let sink = self.sink(stream).await.map_err(DeliverError::Unavailable)?;
        tokio::time::timeout(self.settings.wait, sink.partitions(&stream.spec.kafka.topic))
            .await
            .map_err(|_| DeliverError::Timeout)?
            .map_err(DeliverError::Unavailable)
    }

    /// Writes `records` to the stream's topic and waits until Kafka has
    /// acknowledged each: one result per record, in order (the partition
    /// and offset, or why that record failed). `partition` is where
    /// records without their own go. Fails as a whole only when nothing
    /// could be handed to Kafka.
    pub async fn deliver(
        &self,
        stream: &LiveStream,
        records: &[OutRecord<'_>],
        partition: u32,
        headers: &[(&str, &[u8])],
    ) -> Result<Vec<Result<dts_kafka::Delivered, SinkError>>, DeliverError> {
        let bytes: usize = records.iter().map(|r| r.payload.len() + r.key.map_or(0, <[u8]>::len)).sum();
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let _room = tokio::time::timeout(self.settings.wait, self.inflight.acquire_many(kib))
            .await
            .map_err(|_| DeliverError::Busy)?
            .map_err(|_| DeliverError::Busy)?;
        let started = std::time::Instant::now();
        let sink = self.sink(stream).await.map_err(DeliverError::Unavailable)?;
        let topic = &stream.spec.kafka.topic;
        let headers = sink.headers(headers);
        let messages = records.iter().map(|r| dts_kafka::Message {
            partition: r.partition.unwrap_or(partition),
            key: r.key,
            payload: r.payload,
        });
        let sent = async { sink.send_batch(topic, messages, &headers).await.wait().await };
        let results = tokio::time::timeout(self.settings.wait, sent).await.map_err(|_| DeliverError::Timeout)?;
        let (mut ok, mut failed) = (0u64, 0u64);
        for r in &results {
            if r.is_ok() {
                ok += 1;
            } else {
                failed += 1;
            }
        }
        stream.counters.records.fetch_add(ok, Ordering::Relaxed);
        stream.counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        stream.counters.errors.fetch_add(failed, Ordering::Relaxed);
        if let Some(m) = &self.settings.metrics {
            m.observe(stream.id, stream.key.protocol.as_str(), ok, failed, bytes as u64, started.elapsed());
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A configuration source that serves no streams and keeps the reports
    /// it was given; it fails while `down` is set.
    #[derive(Default)]
    struct Recorder {
        reports: std::sync::Mutex<Vec<CounterReport>>,
        down: std::sync::atomic::AtomicBool,
    }

    impl ConfigSource for Arc<Recorder> {
        fn load(&self, report: CounterReport) -> LoadFuture<'_> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err(LoadError { what: "down".into(), source: None });
                }
                self.reports.lock().unwrap().push(report);
                Ok(Snapshot::default())
            })
        }
    }

    #[tokio::test]
    async fn counters_are_reported_when_they_change_until_a_report_lands() {
        let recorder = Arc::new(Recorder::default());
        let registry = Registry::with_source(Box::new(Arc::clone(&recorder)), IngestSettings::default());
        let last = || recorder.reports.lock().unwrap().last().cloned().unwrap();
        registry.reload().await.unwrap();
        assert!(last().counts.is_empty(), "nothing served yet");
        assert!(last().node.starts_with("dts#"), "{}", last().node);

        registry.counters_of(7).records.fetch_add(3, Ordering::Relaxed);
        registry.counters_of(8).errors.fetch_add(1, Ordering::Relaxed);
        registry.reload().await.unwrap();
        let mut counts = last().counts;
        counts.sort_by_key(|c| c.stream_id);
        assert_eq!(
            counts,
            [
                StreamCount { stream_id: 7, records: 3, bytes: 0, errors: 0 },
                StreamCount { stream_id: 8, records: 0, bytes: 0, errors: 1 }
            ]
        );
        registry.reload().await.unwrap();
        assert!(last().counts.is_empty(), "unchanged counters are not written again");

        // A report that does not land is made again.
        registry.counters_of(7).records.fetch_add(1, Ordering::Relaxed);
        recorder.down.store(true, Ordering::SeqCst);
        assert!(registry.reload().await.is_err());
        recorder.down.store(false, Ordering::SeqCst);
        registry.reload().await.unwrap();
        assert_eq!(last().counts, [StreamCount { stream_id: 7, records: 4, bytes: 0, errors: 0 }]);
    }
}
