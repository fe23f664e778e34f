//! The HTTP server's requests, by route pattern (never the raw path, so
//! ids in URLs do not become label values).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub(crate) type Labels = Vec<(&'static str, String)>;

/// Latency buckets from 0.5 ms to about 16 s, doubling.
#[derive(Debug, Clone, Copy, Default)]
pub struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.0005, 2.0, 16))
    }
}

#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, LatencyBuckets>,
}

impl HttpMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "dts_http_requests",
            "HTTP requests served, by route pattern, method and status",
            requests.clone(),
        );
        let duration = Family::new_with_constructor(LatencyBuckets);
        registry.register(
            "dts_http_request_duration_seconds",
            "Time to answer HTTP requests, by route pattern and method",
            duration.clone(),
        );
        Self { requests, duration }
    }

    /// One answered request; `route` is the matched pattern (`/v1/task/{id}`)
    /// or `unmatched`.
    pub fn observe(&self, route: &str, method: &str, status: u16, took: Duration) {
        let labels = vec![("route", route.to_owned()), ("method", method.to_owned())];
        self.duration.get_or_create(&labels).observe(took.as_secs_f64());
        let mut labels = labels;
        labels.push(("status", status.to_string()));
        self.requests.get_or_create(&labels).inc();
    }
}
