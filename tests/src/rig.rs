//! The API, a worker and the servers, together.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::{kafka_addr, random_server_id, read_topic, Backend, Consumed, SourceDb, TestApi};

/// The API, a worker running its tasks, the source database and the broker.
#[derive(Debug)]
pub struct Rig {
    pub api: TestApi,
    pub src: SourceDb,
    pub kafka: String,
    /// Task N replicates as server id `server_id_base + N`.
    pub server_id_base: u32,
    stop_worker: tokio::sync::watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
}

impl Rig {
    pub async fn start() -> Option<Self> {
        let src = SourceDb::create().await?;
        Self::start_with(src).await
    }

    /// A rig reading from `src`.
    pub async fn start_with(src: SourceDb) -> Option<Self> {
        Self::start_tuned(src, |_| {}).await
    }

    /// A rig reading from `src`, its worker's settings changed by `tune`.
    pub async fn start_tuned(src: SourceDb, tune: impl FnOnce(&mut dts_worker::WorkerConfig)) -> Option<Self> {
        let kafka = kafka_addr()?;
        let api = TestApi::start(Backend::Sqlite).await?;
        let mut cfg = dts_worker::WorkerConfig::new("test-node");
        cfg.poll_interval = Duration::from_millis(100);
        cfg.checkpoint_interval = Duration::from_millis(100);
        let server_id_base = random_server_id();
        cfg.server_id_base = server_id_base;
        cfg.metrics = std::sync::Arc::clone(&api.metrics);
        tune(&mut cfg);
        let (stop_worker, stopped) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(dts_worker::Worker::new(api.db.store.clone(), cfg).run(stopped));
        Some(Self { api, src, kafka, server_id_base, stop_worker, worker })
    }

    /// A task body like the seed's, pointing at the test servers.
    pub fn task(&self, kafka: serde_json::Value, filters: serde_json::Value) -> String {
        serde_json::json!({"task": {
            "source": {"host": self.src.host, "port": self.src.port, "username": self.src.user, "password": self.src.password},
            "kafka": kafka,
            "filters": filters,
            "incr": true
        }})
        .to_string()
    }

    pub async fn submit(&self, body: &str) -> i64 {
        let r = self.api.call("POST", "/v1/dispatch/submit", Some(body)).await;
        r.expect_ok()["id"].as_i64().unwrap()
    }

    /// The task's list entry once `pred` holds for it; on timeout, fails
    /// with the entry as it last was.
    pub async fn wait_task(&self, id: i64, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.api.call("GET", "/v1/task/list?per_page=1000", None).await;
            let tasks = r.expect_ok()["tasks"].as_array().cloned().unwrap_or_default();
            let task = tasks.into_iter().find(|t| t["id"] == id);
            if let Some(t) = task.as_ref().filter(|t| pred(t)) {
                return t.clone();
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}; task {id} is {task:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first `n` messages of `topic` (fewer if 30 s pass).
    pub async fn messages(&self, topic: &str, n: usize) -> Vec<Consumed> {
        let (addr, topic) = (self.kafka.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || read_topic(&addr, &topic, n)).await.expect("reader")
    }

    /// Submits a task and waits until it streams from a position.
    pub async fn submit_running(&self, body: &str) -> i64 {
        let id = self.submit(body).await;
        self.wait_task(id, "Running with a position", |t| t["state"] == "Running" && t["pos"] != "").await;
        id
    }

    pub async fn stop(self) {
        let _ = self.stop_worker.send(true);
        let _ = self.worker.await;
        self.api.stop().await;
    }
}
