//! A task's life through the real pipeline: DDL, alter, stop and start,
//! rate limiting, and failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use dts_e2e::{unique_topic, Consumed, Rig};
use serde_json::{json, Value};

/// The `id`s in the messages' row images.
fn ids(messages: &[Consumed]) -> BTreeSet<i64> {
    messages
        .iter()
        .filter_map(|m| {
            let p = &m.payload;
            let image = if p["op"] == "d" { &p["before"] } else { &p["after"] };
            image["id"].as_i64()
        })
        .collect()
}

/// Ids of nested (`after.id`/`before.id`) and flat (`id`) messages.
fn all_ids(messages: &[Consumed]) -> BTreeSet<i64> {
    let mut out = ids(messages);
    out.extend(messages.iter().filter_map(|m| m.payload["id"].as_i64()));
    out
}

fn inserts(from: i64, to: i64) -> Vec<String> {
    (from..=to).map(|i| format!("INSERT INTO t VALUES ({i}, 'v{i}')")).collect()
}

/// Table `t (id, v)` and a running task replicating it to a fresh topic.
async fn running_task(rig: &Rig, prefix: &str) -> (i64, String) {
    rig.src.exec(&["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"]).await;
    let topic = unique_topic(prefix);
    let body = rig.task(json!({"addr": rig.kafka, "topic": topic}), json!([{"dbname": rig.src.db, "match": "t"}]));
    (rig.submit_running(&body).await, topic)
}

async fn exec_all(rig: &Rig, statements: &[String]) {
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    rig.src.exec(&refs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ddl_is_emitted_on_the_tables_partition_and_the_stream_goes_on() {
    let Some(rig) = Rig::start().await else { return };
    let db = rig.src.db.clone();
    rig.src.exec(&["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"]).await;
    let topic = unique_topic("ddl");
    rig.submit_running(&rig.task(json!({"addr": rig.kafka, "topic": topic}), json!([{"dbname": db, "match": "t"}])))
        .await;
    rig.src
        .exec(&[
            "INSERT INTO t VALUES (1, 'a')",
            "ALTER TABLE t ADD COLUMN extra INT NOT NULL DEFAULT 0",
            "INSERT INTO t VALUES (2, 'b', 42)",
            "UPDATE t SET extra = 7 WHERE id = 1",
        ])
        .await;
    let m = rig.messages(&topic, 4).await;
    let ops: Vec<&str> = m.iter().map(|x| x.payload["op"].as_str().unwrap()).collect();
    assert_eq!(ops, vec!["c", "ddl", "c", "u"], "{m:#?}");
    assert!(m[1].payload["ddl"].as_str().unwrap().contains("ADD COLUMN extra"));
    assert_eq!(m[1].payload["source"]["table"], "t");
    assert_eq!(m[1].key, format!("{db}.t"));
    assert!(m.iter().all(|x| x.partition == m[0].partition), "DDL shares the table's partition");
    assert_eq!(m[2].payload["after"], json!({"id": 2, "v": "b", "extra": 42}));
    assert_eq!(m[3].payload["before"], json!({"id": 1, "v": "a", "extra": 0}));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alter_applies_to_the_running_task_without_losing_rows() {
    let Some(rig) = Rig::start().await else { return };
    let db = rig.src.db.clone();
    rig.src.exec(&["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"]).await;
    let (first, second) = (unique_topic("before_alter"), unique_topic("after_alter"));
    let filters = json!([{"dbname": db, "match": "t"}]);
    let id = rig.submit_running(&rig.task(json!({"addr": rig.kafka, "topic": first}), filters.clone())).await;
    exec_all(&rig, &inserts(1, 20)).await;
    let altered = rig.task(json!({"addr": rig.kafka, "topic": second, "flat_format": true}), filters);
    rig.api.call("PUT", &format!("/v1/dispatch/alter/{id}"), Some(&altered)).await.expect_ok();
    // The runner restarts from its checkpoint a moment later: keep writing
    // until rows reach the new topic.
    let stop_writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (pool, stop) = (rig.src.pool.clone(), stop_writing.clone());
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = pool.get_conn().await.unwrap();
            let mut next = 21;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && next <= 2000 {
                conn.query_drop(format!("INSERT INTO t VALUES ({next}, 'v')")).await.unwrap();
                next += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            next - 1
        })
    };
    let (addr, t2) = (rig.kafka.clone(), second.clone());
    let arrived = tokio::task::spawn_blocking(move || dts_e2e::read_until(&addr, &[&t2], |m| !m.is_empty()));
    assert!(!arrived.await.unwrap().is_empty(), "rows reach the new topic");
    stop_writing.store(true, std::sync::atomic::Ordering::SeqCst);
    let last = writer.await.unwrap();
    exec_all(&rig, &inserts(last + 1, last + 10)).await;
    let last = last + 10;
    // Nothing is lost across the restart: every row is in one of the topics
    // (rows near the alter may be in both), and later rows use the new format.
    // Each topic is read on its own: the later rows end the new topic, and
    // the old one is read until the two together hold every row.
    let (addr, t1, t2) = (rig.kafka.clone(), first.clone(), second.clone());
    let want: BTreeSet<i64> = (1..=last).collect();
    let both = tokio::task::spawn_blocking(move || {
        let mut newer = dts_e2e::read_until(&addr, &[&t2], |m| all_ids(m).contains(&last));
        let seen = all_ids(&newer);
        let older = dts_e2e::read_until(&addr, &[&t1], |m| {
            let mut ids = all_ids(m);
            ids.extend(&seen);
            ids.is_superset(&want)
        });
        newer.extend(older);
        newer
    })
    .await
    .unwrap();
    assert_eq!(all_ids(&both), (1..=last).collect::<BTreeSet<_>>());
    let after: Vec<&Consumed> = both.iter().filter(|m| m.topic == second).collect();
    assert!(after.iter().all(|m| m.payload["__op"] == "c"), "flat format after the alter");
    assert!(after.iter().any(|m| m.payload["id"] == last), "the last rows went to the new topic");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_and_start_resume_from_the_checkpoint() {
    let Some(rig) = Rig::start().await else { return };
    let (id, topic) = running_task(&rig, "stopstart").await;
    exec_all(&rig, &inserts(1, 10)).await;
    assert_eq!(ids(&rig.messages(&topic, 10).await), (1..=10).collect());
    rig.api.call("POST", &format!("/v1/dispatch/stop/{id}"), None).await.expect_ok();
    let stopped = rig.wait_task(id, "Stopped", |t| t["state"] == "Stopped").await;
    exec_all(&rig, &inserts(11, 20)).await;
    rig.api.call("POST", &format!("/v1/dispatch/start/{id}"), None).await.expect_ok();
    rig.wait_task(id, "Running again", |t| t["state"] == "Running" && t["pos"] != stopped["pos"]).await;
    exec_all(&rig, &inserts(21, 30)).await;
    let all = rig.messages(&topic, 30).await;
    assert_eq!(ids(&all), (1..=30).collect(), "rows written while stopped are delivered after start");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_local_worker_acts_on_submit_stop_and_start_without_waiting_for_its_poll() {
    let Some(src) = dts_e2e::SourceDb::create().await else { return };
    // Its first poll happens at start, before the submit; the next is an
    // hour away: only the store's change signal can move the task.
    let hour = std::time::Duration::from_secs(3600);
    let Some(rig) = Rig::start_tuned(src, |cfg| cfg.poll_interval = hour).await else { return };
    let (id, _) = running_task(&rig, "wake").await;
    rig.api.call("POST", &format!("/v1/dispatch/stop/{id}"), None).await.expect_ok();
    rig.wait_task(id, "Stopped", |t| t["state"] == "Stopped").await;
    rig.api.call("POST", &format!("/v1/dispatch/start/{id}"), None).await.expect_ok();
    rig.wait_task(id, "Running again", |t| t["state"] == "Running").await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rate_limit_bounds_rows_per_window() {
    let Some(rig) = Rig::start().await else { return };
    let db = rig.src.db.clone();
    rig.src.exec(&["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"]).await;
    let topic = unique_topic("ratelimit");
    let (rate, capacity) = (40_i64, 10_i64);
    let body = rig.task(json!({"addr": rig.kafka, "topic": topic}), json!([{"dbname": db, "match": "t"}]));
    let mut body: Value = serde_json::from_str(&body).unwrap();
    body["task"]["rate_limit"] = json!({"rate": rate, "capacity": capacity});
    rig.submit_running(&body.to_string()).await;
    let values: Vec<String> = (1..=120).map(|i| format!("({i}, 'v')")).collect();
    rig.src.exec(&[&format!("INSERT INTO t VALUES {}", values.join(","))]).await;
    let m = rig.messages(&topic, 120).await;
    assert_eq!(m.len(), 120);
    let mut ts: Vec<i64> = m.iter().map(|x| x.timestamp_ms).collect();
    ts.sort_unstable();
    dts_e2e::assert_rate_bound(&ts, rate as f64, capacity as f64);
    let span = (ts[119] - ts[0]) as f64 / 1000.0;
    assert!(span >= (120.0 - capacity as f64 - 1.0) / rate as f64 * 0.9, "throttled: 120 rows took {span:.2}s");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn definite_errors_fail_the_task_with_the_reason() {
    let Some(rig) = Rig::start().await else { return };
    let db = rig.src.db.clone();
    let mut body: Value = serde_json::from_str(
        &rig.task(json!({"addr": rig.kafka, "topic": unique_topic("fail")}), json!([{"dbname": db, "match": "t"}])),
    )
    .unwrap();
    body["task"]["source"]["password"] = json!("wrong-password");
    let id = rig.submit(&body.to_string()).await;
    let failed = rig.wait_task(id, "Failed", |t| t["state"] == "Failed").await;
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("1045"), "{message}");
    assert!(!message.contains("wrong-password"), "never the password: {message}");
    // An alter with the right password runs the failed task again.
    let first = id;
    body["task"]["source"]["password"] = json!(rig.src.password);
    rig.api.call("PUT", &format!("/v1/dispatch/alter/{first}"), Some(&body.to_string())).await.expect_ok();
    rig.wait_task(first, "Running after the alter", |t| t["state"] == "Running" && t["message"] == "").await;

    let user = format!("np{}", &db[4..]);
    rig.src.exec(&[&format!("CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'")]).await;
    body["task"]["source"]["username"] = json!(user);
    body["task"]["source"]["password"] = json!("pw");
    let id = rig.submit(&body.to_string()).await;
    let failed = rig.wait_task(id, "Failed", |t| t["state"] == "Failed").await;
    assert!(failed["message"].as_str().unwrap().contains("REPLICATION SLAVE"), "{failed}");
    rig.src.exec(&[&format!("DROP USER '{user}'@'127.0.0.1'")]).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_kafka_is_retried_and_an_alter_recovers_the_task() {
    let Some(rig) = Rig::start().await else { return };
    let db = rig.src.db.clone();
    rig.src.exec(&["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"]).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let topic = unique_topic("retry");
    let filters = json!([{"dbname": db, "match": "t"}]);
    let id = rig.submit_running(&rig.task(json!({"addr": dead.to_string(), "topic": topic}), filters.clone())).await;
    exec_all(&rig, &inserts(1, 5)).await;
    let retrying = rig
        .wait_task(id, "a retrying message", |t| t["message"].as_str().is_some_and(|m| m.starts_with("retrying after")))
        .await;
    assert_ne!(retrying["state"], "Failed", "a broker outage is transient");
    // Pointing the task at a live broker lets it deliver what it could not.
    let fixed = rig.task(json!({"addr": rig.kafka, "topic": topic}), filters);
    rig.api.call("PUT", &format!("/v1/dispatch/alter/{id}"), Some(&fixed)).await.expect_ok();
    assert_eq!(ids(&rig.messages(&topic, 5).await), (1..=5).collect());
    rig.wait_task(id, "Running without an error", |t| t["state"] == "Running" && t["message"] == "").await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_restart_is_survived_without_losing_rows() {
    let Some(server) = dts_e2e::PrivateMariaDb::start() else { return };
    let src = dts_e2e::SourceDb::create_on(&server.url).await;
    let Some(rig) = Rig::start_with(src).await else { return };
    let (id, topic) = running_task(&rig, "srcrestart").await;
    exec_all(&rig, &inserts(1, 20)).await;
    assert_eq!(ids(&rig.messages(&topic, 20).await), (1..=20).collect());
    // A transaction still open when the server goes down never happened.
    let mut open = rig.src.pool.get_conn().await.unwrap();
    {
        use mysql_async::prelude::Queryable;
        open.query_drop("BEGIN").await.unwrap();
        open.query_drop("INSERT INTO t VALUES (500, 'rollback')").await.unwrap();
    }
    let server_ref = &server;
    tokio::task::block_in_place(|| server_ref.restart());
    drop(open);
    exec_all(&rig, &inserts(21, 40)).await;
    let all = rig.messages(&topic, 40).await;
    assert_eq!(ids(&all), (1..=40).collect(), "rows written after the restart arrive, the open transaction's never");
    rig.wait_task(id, "Running without an error", |t| t["state"] == "Running" && t["message"] == "").await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purged_binlog_or_a_non_row_source_fails_the_task_with_the_reason() {
    let Some(server) = dts_e2e::PrivateMariaDb::start() else { return };
    let src = dts_e2e::SourceDb::create_on(&server.url).await;
    let Some(rig) = Rig::start_with(src).await else { return };
    let db = rig.src.db.clone();
    rig.src.exec(&["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"]).await;
    let topic = unique_topic("purged");
    let body = rig.task(json!({"addr": rig.kafka, "topic": topic}), json!([{"dbname": db, "match": "t"}]));
    let id = rig.submit_running(&body).await;
    exec_all(&rig, &inserts(1, 5)).await;
    assert_eq!(ids(&rig.messages(&topic, 5).await), (1..=5).collect());
    rig.api.call("POST", &format!("/v1/dispatch/stop/{id}"), None).await.expect_ok();
    rig.wait_task(id, "Stopped", |t| t["state"] == "Stopped").await;
    // While it is stopped, its checkpoint's binlog files are purged.
    exec_all(&rig, &inserts(6, 10)).await;
    rig.src.exec(&["FLUSH BINARY LOGS"]).await;
    let current: String = {
        use mysql_async::prelude::Queryable;
        let mut conn = rig.src.pool.get_conn().await.unwrap();
        let row: mysql_async::Row = conn.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        row.get(0).unwrap()
    };
    // The stopped task's replication connection may hold a file for a moment
    // on the server side: purge until only the current file is left.
    dts_e2e::wait_for(30, "the old binlog files to be purged", || async {
        use mysql_async::prelude::Queryable;
        let mut conn = rig.src.pool.get_conn().await.unwrap();
        conn.query_drop(format!("PURGE BINARY LOGS TO '{current}'")).await.unwrap();
        let logs: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.unwrap();
        (logs.len() == 1).then_some(())
    })
    .await;
    rig.api.call("POST", &format!("/v1/dispatch/start/{id}"), None).await.expect_ok();
    let failed = rig.wait_task(id, "Failed", |t| t["state"] == "Failed").await;
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("1236") && message.contains("incr=false"), "{message}");

    // A source whose binlog is not row-based is refused before streaming.
    rig.src.exec(&["SET GLOBAL binlog_format = 'MIXED'"]).await;
    let id = rig.submit(&body).await;
    let failed = rig.wait_task(id, "Failed", |t| t["state"] == "Failed").await;
    assert!(failed["message"].as_str().unwrap().contains("binlog_format is MIXED but must be ROW"), "{failed}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_running_task_stops_its_replication() {
    let Some(rig) = Rig::start().await else { return };
    let (id, _topic) = running_task(&rig, "delete").await;
    let server_id = rig.server_id_base.wrapping_add(id as u32);
    // The task's replica connection, as the source sees it.
    let connected = || async {
        use mysql_async::prelude::Queryable;
        let mut conn = rig.src.pool.get_conn().await.unwrap();
        let hosts: Vec<mysql_async::Row> = conn.query("SHOW SLAVE HOSTS").await.unwrap();
        hosts.iter().any(|h| h.get::<u32, _>(0) == Some(server_id))
    };
    dts_e2e::wait_for(30, "the task's replica connection", || async { connected().await.then_some(()) }).await;
    rig.api.call("DELETE", &format!("/v1/task/{id}"), None).await.expect_ok();
    dts_e2e::wait_for(30, "the deleted task's replica connection to close", || async {
        (!connected().await).then_some(())
    })
    .await;
    rig.stop().await;
}

/// A row too large for Kafka can never be delivered: the task fails at it
/// with a message saying what to change, instead of retrying forever or
/// skipping it, and the refusal is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_larger_than_kafka_accepts_fails_the_task_clearly() {
    let Some(rig) = Rig::start().await else { return };
    rig.src
        .exec(&[
            "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))",
            "CREATE TABLE big (id INT PRIMARY KEY, body LONGTEXT)",
        ])
        .await;
    let topic = unique_topic("oversized");
    let body =
        rig.task(json!({"addr": rig.kafka, "topic": topic}), json!([{"dbname": rig.src.db, "match": "/t|big/"}]));
    let id = rig.submit_running(&body).await;
    let before = dts_kafka::oversized_messages_total();
    rig.src.exec(&["INSERT INTO t VALUES (1, 'small')", "INSERT INTO big VALUES (1, REPEAT('x', 1500000))"]).await;
    let failed = rig.wait_task(id, "Failed", |t| t["state"] == "Failed").await;
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("larger than Kafka accepts") && message.contains("exclude_columns"), "{message}");
    assert!(dts_kafka::oversized_messages_total() > before);
    // The row before it was delivered; the position did not pass the big row.
    assert_eq!(ids(&rig.messages(&topic, 1).await), BTreeSet::from([1]));
    rig.stop().await;
}
