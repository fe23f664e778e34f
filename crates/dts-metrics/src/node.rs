//! The worker loop's view of the cluster: heartbeats and task leases.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::task::now_ms;

/// Counted by the worker loop of `dts worker` nodes.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    heartbeats_ok: AtomicU64,
    heartbeats_failed: AtomicU64,
    last_heartbeat_ms: AtomicI64,
    lease_renewals: AtomicU64,
    lease_losses: AtomicU64,
}

impl NodeMetrics {
    pub fn heartbeat_ok(&self) {
        self.heartbeats_ok.fetch_add(1, Relaxed);
        self.last_heartbeat_ms.store(now_ms(), Relaxed);
    }

    pub fn heartbeat_failed(&self) {
        self.heartbeats_failed.fetch_add(1, Relaxed);
    }

    /// When the control plane last answered a heartbeat (ms; 0: never).
    pub fn last_heartbeat_ms(&self) -> i64 {
        self.last_heartbeat_ms.load(Relaxed)
    }

    /// Task leases renewed by one heartbeat answer.
    pub fn leases_renewed(&self, n: usize) {
        self.lease_renewals.fetch_add(n as u64, Relaxed);
    }

    /// Tasks this node stopped because it lost them (lease expired or the
    /// control plane gave them to another node).
    pub fn leases_lost(&self, n: usize) {
        self.lease_losses.fetch_add(n as u64, Relaxed);
    }
}

#[derive(Debug)]
pub(crate) struct NodeCollector(pub(crate) std::sync::Arc<NodeMetrics>);

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        let mut beats = encoder.encode_descriptor(
            "dts_worker_heartbeats",
            "Heartbeats this worker node sent to the control plane, by result (ok, failed)",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [("ok", &m.heartbeats_ok), ("failed", &m.heartbeats_failed)] {
            ConstCounter::new(n.load(Relaxed)).encode(beats.encode_family(&[("result", result)])?)?;
        }
        let last = m.last_heartbeat_ms.load(Relaxed);
        if last > 0 {
            let age = encoder.encode_descriptor(
                "dts_worker_last_heartbeat_age_seconds",
                "Seconds since this worker node's last answered heartbeat",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new((now_ms() - last).max(0) as f64 / 1000.0).encode(age)?;
        }
        for (name, help, n) in [
            ("dts_worker_lease_renewals", "Task leases renewed by heartbeat answers", &m.lease_renewals),
            ("dts_worker_lease_losses", "Tasks stopped because this node lost them", &m.lease_losses),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(n.load(Relaxed)).encode(metric)?;
        }
        Ok(())
    }
}
