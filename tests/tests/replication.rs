//! Tasks submitted through the API, run by the worker, from the real
//! MariaDB to the real Kafka-protocol broker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use dts_e2e::{kafka_addr, read_topic, unique_topic, wait_for, Backend, SourceDb, TestApi};
use dts_worker::{Worker, WorkerConfig};
use serde_json::{json, Value};

/// The API, a worker running its tasks, the source database and the broker.
struct Rig {
    api: TestApi,
    src: SourceDb,
    kafka: String,
    stop_worker: tokio::sync::watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
}

impl Rig {
    async fn start() -> Option<Self> {
        let kafka = kafka_addr()?;
        let src = SourceDb::create().await?;
        let api = TestApi::start(Backend::Sqlite).await?;
        let mut cfg = WorkerConfig::new("test-node");
        cfg.poll_interval = Duration::from_millis(100);
        cfg.checkpoint_interval = Duration::from_millis(100);
        cfg.server_id_base = dts_e2e::random_server_id();
        let (stop_worker, stopped) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(Worker::new(api.db.store.clone(), cfg).run(stopped));
        Some(Self { api, src, kafka, stop_worker, worker })
    }

    /// A task body like the seed's, pointing at the test servers.
    fn task(&self, kafka: Value, filters: Value) -> String {
        json!({"task": {
            "source": {"host": self.src.host, "port": self.src.port, "username": self.src.user, "password": self.src.password},
            "kafka": kafka,
            "filters": filters,
            "incr": true
        }})
        .to_string()
    }

    async fn submit(&self, body: &str) -> i64 {
        let r = self.api.call("POST", "/v1/dispatch/submit", Some(body)).await;
        r.expect_ok()["id"].as_i64().unwrap()
    }

    /// The task's list entry once `pred` holds for it.
    async fn wait_task(&self, id: i64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(30, what, || async {
            let r = self.api.call("GET", "/v1/task/list?per_page=1000", None).await;
            let tasks = r.expect_ok()["tasks"].as_array().cloned().unwrap_or_default();
            tasks.into_iter().find(|t| t["id"] == id && pred(t))
        })
        .await
    }

    async fn stop(self) {
        let _ = self.stop_worker.send(true);
        let _ = self.worker.await;
        self.api.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_shaped_task_replicates_inserts_updates_and_deletes() {
    let Some(rig) = Rig::start().await else { return };
    rig.src
        .exec(&[
            "CREATE TABLE xes_class_students_1 (id INT PRIMARY KEY, name VARCHAR(20), grade INT)",
            "CREATE TABLE check_delay (id INT PRIMARY KEY, ts BIGINT)",
            "CREATE TABLE ignored (id INT PRIMARY KEY)",
        ])
        .await;
    let topic = unique_topic("replicator_test");
    let db = rig.src.db.clone();
    let body = rig.task(
        json!({"addr": rig.kafka, "topic": topic, "flat_format": false}),
        json!([
            {"dbname": db, "match": "/xes_class_students_\\d+/", "filter": ""},
            {"dbname": db, "match": "check_delay", "filter": ""}
        ]),
    );
    let id = rig.submit(&body).await;
    let running = rig.wait_task(id, "Running with a position", |t| t["state"] == "Running" && t["pos"] != "").await;
    let first_pos = running["pos"].as_str().unwrap().to_owned();
    assert!(first_pos.starts_with("MariaDB/"), "{first_pos}");

    rig.src
        .exec(&[
            "INSERT INTO xes_class_students_1 VALUES (1, 'ann', 3), (2, 'bob', 4)",
            "INSERT INTO ignored VALUES (1)",
            "UPDATE xes_class_students_1 SET grade = 5 WHERE id = 1",
            "DELETE FROM xes_class_students_1 WHERE id = 2",
            "INSERT INTO check_delay VALUES (1, 1700000000)",
        ])
        .await;
    let (addr, t) = (rig.kafka.clone(), topic.clone());
    let messages = tokio::task::spawn_blocking(move || read_topic(&addr, &t, 5)).await.unwrap();
    assert_eq!(messages.len(), 5, "{messages:#?}");
    // One partition per table (partition_mode table), so per-table order is the binlog's.
    let students: Vec<&Value> =
        messages.iter().filter(|m| m.key == format!("{db}.xes_class_students_1")).map(|m| &m.payload).collect();
    assert_eq!(students.iter().map(|p| p["op"].as_str().unwrap()).collect::<Vec<_>>(), vec!["c", "c", "u", "d"]);
    assert_eq!(students[0]["after"], json!({"id": 1, "name": "ann", "grade": 3}));
    assert_eq!(students[0]["before"], Value::Null);
    assert_eq!(students[2]["before"]["grade"], 3);
    assert_eq!(students[2]["after"]["grade"], 5);
    assert_eq!(students[3]["before"], json!({"id": 2, "name": "bob", "grade": 4}));
    assert_eq!(students[3]["after"], Value::Null);
    let source = &students[0]["source"];
    assert_eq!((source["db"].as_str(), source["table"].as_str()), (Some(db.as_str()), Some("xes_class_students_1")));
    assert_eq!(source["snapshot"], false);
    assert!(source["gtid"].as_str().is_some_and(|g| !g.is_empty()));
    assert!(source["file"].as_str().is_some_and(|f| f.starts_with("mysql-bin.")));
    assert!(students[0]["ts_ms"].as_i64().unwrap() > 0);
    let delay: Vec<&Value> =
        messages.iter().filter(|m| m.key == format!("{db}.check_delay")).map(|m| &m.payload).collect();
    assert_eq!(delay[0]["after"], json!({"id": 1, "ts": 1_700_000_000_i64}));
    assert!(!messages.iter().any(|m| m.key.ends_with(".ignored")));

    // The list shows the position moving and the commit time of the last delivered transaction.
    let moved =
        rig.wait_task(id, "a newer position", |t| t["pos"] != first_pos.as_str() && t["transaction_time"] != "").await;
    assert_eq!(moved["state"], "Running");
    rig.stop().await;
}
