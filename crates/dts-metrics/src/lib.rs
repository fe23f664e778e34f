//! What a dts node measures, in the Prometheus/OpenMetrics text format.
//!
//! # Layout
//! - [`Metrics`] (this file): one node's registry: its tasks, HTTP server,
//!   worker loop, ingest streams and process, encoded on each scrape.
//! - [`task`]: per-task figures the runner updates with plain atomics and the
//!   collector reads at scrape time (lag is computed then, never stale).
//! - [`node`]: the worker loop's heartbeats and leases.
//! - [`http`]: requests by route and status, with latency histograms.
//! - [`ingest`]: push-ingest records, bytes, errors and latency per stream.
//! - [`process`]: resident memory, CPU time, open descriptors.
//!
//! Every metric is documented in the README's "Metrics" section.

pub mod http;
pub mod ingest;
pub mod node;
pub mod process;
pub mod task;

use std::sync::Arc;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::registry::Registry;

pub use task::{OpKind, TableCopyFigures, TaskStats, TaskTable};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One node's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub tasks: Arc<TaskTable>,
    pub http: http::HttpMetrics,
    pub node: Arc<node::NodeMetrics>,
    pub ingest: ingest::IngestMetrics,
}

/// What kind of node serves the metrics: it decides which view of task
/// state this node's own collector adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Has the task store: task states come from there (see [`store_view`]),
    /// so the runners' view leaves them out to avoid a second family.
    WithStore,
    /// A worker or gateway node: its runners report their tasks' states.
    Worker,
}

impl Metrics {
    pub fn new(kind: NodeKind) -> Arc<Self> {
        let mut registry = Registry::default();
        let tasks = Arc::new(TaskTable::default());
        registry.register_collector(Box::new(task::TaskCollector::new(tasks.clone(), kind == NodeKind::Worker)));
        let node = Arc::new(node::NodeMetrics::default());
        registry.register_collector(Box::new(node::NodeCollector(node.clone())));
        registry.register_collector(Box::new(process::ProcessCollector));
        let http = http::HttpMetrics::register(&mut registry);
        let ingest = ingest::IngestMetrics::register(&mut registry);
        Arc::new(Self { registry, tasks, http, node, ingest })
    }

    /// This node's metrics, then `extra` (figures gathered for this scrape,
    /// such as the store's view of the cluster), in one exposition.
    pub fn render(&self, extra: Option<&Registry>) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; a collector's error would
        // only cut the exposition short, which Prometheus then rejects.
        let _ = encode_registry(&mut out, &self.registry);
        if let Some(extra) = extra {
            let _ = encode_registry(&mut out, extra);
        }
        let _ = encode_eof(&mut out);
        out
    }
}

pub mod store_view {
    //! Figures read from the task store for one scrape (control planes and
    //! standalone): every task's state, tasks and workers by state, and the
    //! age of each worker's last heartbeat.

    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;
    use std::sync::atomic::AtomicU64;

    type Labels = Vec<(&'static str, String)>;

    /// A registry holding one scrape's store figures.
    #[derive(Debug)]
    pub struct StoreView {
        registry: Registry,
        task_state: Family<Labels, Gauge>,
        tasks: Family<Labels, Gauge>,
        workers: Family<Labels, Gauge>,
        heartbeat_age: Family<Labels, Gauge<f64, AtomicU64>>,
    }

    impl Default for StoreView {
        fn default() -> Self {
            let mut registry = Registry::default();
            let task_state = Family::<Labels, Gauge>::default();
            registry.register(
                "dts_task_state",
                "1 for the task's current state, 0 for the others (from the task store)",
                task_state.clone(),
            );
            let tasks = Family::<Labels, Gauge>::default();
            registry.register("dts_tasks", "Tasks in each state (from the task store)", tasks.clone());
            let workers = Family::<Labels, Gauge>::default();
            registry.register("dts_workers", "Worker nodes in each state (cluster only)", workers.clone());
            let heartbeat_age = Family::<Labels, Gauge<f64, AtomicU64>>::default();
            registry.register(
                "dts_worker_heartbeat_age_seconds",
                "Seconds since each worker node's last heartbeat reached the control plane (cluster only)",
                heartbeat_age.clone(),
            );
            Self { registry, task_state, tasks, workers, heartbeat_age }
        }
    }

    impl StoreView {
        /// Task `id` is in `state`, one of `states` (all are written, so a
        /// state change moves a 1 between series instead of ending one).
        pub fn task(&self, id: i64, state: &str, states: &[&str]) {
            for s in states {
                let labels = vec![("task_id", id.to_string()), ("state", (*s).to_owned())];
                self.task_state.get_or_create(&labels).set(i64::from(*s == state));
            }
        }

        pub fn tasks_in(&self, state: &str, n: usize) {
            self.tasks.get_or_create(&vec![("state", state.to_owned())]).set(n as i64);
        }

        pub fn workers_in(&self, state: &str, n: usize) {
            self.workers.get_or_create(&vec![("state", state.to_owned())]).set(n as i64);
        }

        pub fn worker_heartbeat_age(&self, worker: &str, seconds: f64) {
            self.heartbeat_age.get_or_create(&vec![("worker_id", worker.to_owned())]).set(seconds);
        }

        pub fn registry(&self) -> &Registry {
            &self.registry
        }
    }
}

#[cfg(test)]
mod tests;
