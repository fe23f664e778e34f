//! Tasks submitted through the API, run by the worker, from the real
//! MariaDB to the real Kafka-protocol broker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dts_e2e::{read_topic, unique_topic, Rig};
use serde_json::{json, Value};

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
