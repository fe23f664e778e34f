//! Push ingest, per stream: records and bytes written, records refused,
//! and the time from a request's arrival to Kafka's acknowledgement.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::http::{Labels, LatencyBuckets};

#[derive(Debug, Clone)]
pub struct IngestMetrics {
    records: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, LatencyBuckets>,
}

impl IngestMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let records = Family::<Labels, Counter>::default();
        registry.register("dts_ingest_records", "Records written to Kafka, by stream and protocol", records.clone());
        let bytes = Family::<Labels, Counter>::default();
        registry.register("dts_ingest_bytes", "Payload bytes written to Kafka, by stream and protocol", bytes.clone());
        let errors = Family::<Labels, Counter>::default();
        registry.register(
            "dts_ingest_errors",
            "Records refused or not acknowledged by Kafka, by stream and protocol",
            errors.clone(),
        );
        let latency = Family::new_with_constructor(LatencyBuckets);
        registry.register(
            "dts_ingest_request_duration_seconds",
            "Time from handing a request's records to Kafka to the acknowledgement of the last one, by stream and protocol",
            latency.clone(),
        );
        Self { records, bytes, errors, latency }
    }

    /// One request's outcome on stream `stream_id` over `protocol`.
    pub fn observe(&self, stream_id: i64, protocol: &str, ok: u64, failed: u64, bytes: u64, took: Duration) {
        let labels = vec![("stream_id", stream_id.to_string()), ("protocol", protocol.to_owned())];
        self.records.get_or_create(&labels).inc_by(ok);
        self.bytes.get_or_create(&labels).inc_by(bytes);
        self.errors.get_or_create(&labels).inc_by(failed);
        self.latency.get_or_create(&labels).observe(took.as_secs_f64());
    }
}
