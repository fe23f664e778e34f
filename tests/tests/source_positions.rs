//! Positions that never skip or stall, on servers of the tests' own behind a
//! proxy they steer: binlog rotations, a connection cut in the middle of a
//! transaction, a stop across rotations, and a failover to a GTID replica.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use dts_e2e::proxy::Proxy;
use dts_e2e::{unique_topic, wait_for, Consumed, PrivateMariaDb, Rig, SourceDb};
use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

/// How many messages carry each row id (`after.id`).
fn id_counts(messages: &[Consumed]) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for m in messages {
        if let Some(id) = m.payload["after"]["id"].as_i64() {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

fn addr_of(url: &str) -> SocketAddr {
    let hostport = url.trim_end_matches('/').rsplit_once('@').expect("user@host:port").1;
    hostport.parse().expect("host:port")
}

async fn query_one(url: &str, sql: &str) -> String {
    let pool = mysql_async::Pool::new(url);
    let mut conn = pool.get_conn().await.expect("connect");
    let v: Option<String> = conn.query_first(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(conn);
    pool.disconnect().await.ok();
    v.unwrap_or_default()
}

/// Table `t (id, pad)` and a running task reading it through `proxy`; its
/// id, topic and body.
async fn running_task(rig: &Rig, proxy: &Proxy) -> (i64, String, Value) {
    rig.src.exec(&["CREATE TABLE t (id INT PRIMARY KEY, pad VARCHAR(200))"]).await;
    let topic = unique_topic("positions");
    let mut body: Value = serde_json::from_str(
        &rig.task(json!({"addr": rig.kafka, "topic": topic}), json!([{"dbname": rig.src.db, "match": "t"}])),
    )
    .unwrap();
    body["task"]["source"]["port"] = json!(proxy.addr.port());
    (rig.submit_running(&body.to_string()).await, topic, body)
}

/// One transaction per row, on one connection of `pool`.
async fn insert_each(pool: &mysql_async::Pool, ids: std::ops::RangeInclusive<i64>) {
    let mut conn = pool.get_conn().await.expect("connect");
    for i in ids {
        conn.query_drop(format!("INSERT INTO t VALUES ({i}, 'r{i}')")).await.expect("insert");
    }
}

/// Waits until the task's position is the server's whole binlog state.
async fn wait_position(rig: &Rig, id: i64, url: &str) {
    let want = format!("MariaDB/{}", query_one(url, "SELECT @@gtid_binlog_pos").await);
    rig.wait_task(id, &format!("position {want}"), |t| t["state"] == "Running" && t["pos"] == want.as_str()).await;
}

async fn messages_until(
    rig: &Rig,
    topic: &str,
    done: impl Fn(&BTreeMap<i64, usize>) -> bool + Send + 'static,
) -> Vec<Consumed> {
    let (addr, topic) = (rig.kafka.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || dts_e2e::read_until(&addr, &[&topic], |m| done(&id_counts(m)))).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotations_a_cut_mid_transaction_and_a_stop_resume_exactly() {
    let Some(server) = PrivateMariaDb::start() else { return };
    let proxy = Proxy::start(addr_of(&server.url)).await;
    let src = SourceDb::create_on(&server.url).await;
    let Some(rig) = Rig::start_with(src).await else { return };
    let (id, topic, _) = running_task(&rig, &proxy).await;

    // A rotation between committed rows.
    insert_each(&rig.src.pool, 1..=10).await;
    rig.src.exec(&["FLUSH BINARY LOGS"]).await;
    insert_each(&rig.src.pool, 11..=20).await;
    wait_position(&rig, id, &server.url).await;

    // One transaction of 3,000 rows (about 600 KB of row events), with the
    // binlog connection cut 64 KB into it: the rows sent before the cut
    // are not checkpointed, so the task must resume at the transaction's
    // start, not in its middle and not after it.
    proxy.cut_after(64 * 1024);
    let pad = "x".repeat(180);
    let mut statements = vec!["BEGIN".to_owned()];
    for chunk in 0..30 {
        let values: Vec<String> = (0..100).map(|i| format!("({}, '{pad}')", 1000 + chunk * 100 + i)).collect();
        statements.push(format!("INSERT INTO t VALUES {}", values.join(",")));
    }
    statements.push("COMMIT".to_owned());
    rig.src.exec(&statements.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let got = messages_until(&rig, &topic, |c| (1000..4000).all(|i| c.contains_key(&i))).await;
    assert_eq!(proxy.cuts(), 1, "the cut fired");
    let counts = id_counts(&got);
    assert!((1000..4000).all(|i| counts.contains_key(&i)), "every row of the cut transaction arrived");
    wait_position(&rig, id, &server.url).await;

    // Stopped across two rotations.
    rig.api.call("POST", &format!("/v1/dispatch/stop/{id}"), None).await.expect_ok();
    rig.wait_task(id, "Stopped", |t| t["state"] == "Stopped").await;
    insert_each(&rig.src.pool, 21..=30).await;
    rig.src.exec(&["FLUSH BINARY LOGS", "FLUSH BINARY LOGS"]).await;
    insert_each(&rig.src.pool, 31..=40).await;
    rig.api.call("POST", &format!("/v1/dispatch/start/{id}"), None).await.expect_ok();
    let got = messages_until(&rig, &topic, |c| c.contains_key(&40)).await;
    let counts = id_counts(&got);
    for i in 1..=40 {
        assert_eq!(counts.get(&i), Some(&1), "row {i} exactly once: {counts:?}");
    }
    wait_position(&rig, id, &server.url).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_to_a_replica_with_the_same_gtids_resumes_exactly() {
    let Some(server) = PrivateMariaDb::start_replicated() else { return };
    let replica = server.replica_url.clone().expect("a replica");
    let proxy = Proxy::start(addr_of(&server.url)).await;
    let src = SourceDb::create_on(&server.url).await;
    let Some(rig) = Rig::start_with(src).await else { return };
    let (id, topic, mut body) = running_task(&rig, &proxy).await;
    insert_each(&rig.src.pool, 1..=20).await;
    wait_position(&rig, id, &server.url).await;
    let primary_pos = query_one(&server.url, "SELECT @@gtid_binlog_pos").await;
    wait_for(30, "the replica to catch up", || {
        let (replica, primary_pos) = (replica.clone(), primary_pos.clone());
        async move { (query_one(&replica, "SELECT @@gtid_slave_pos").await == primary_pos).then_some(()) }
    })
    .await;

    // The virtual IP moves: the replica is promoted and the old primary,
    // still up, takes a write that must never reach the topic.
    query_one(&replica, "STOP SLAVE").await;
    query_one(&replica, "RESET SLAVE ALL").await;
    proxy.switch(addr_of(&replica));
    rig.src.exec(&["INSERT INTO t VALUES (999, 'diverged')"]).await;
    let promoted = mysql_async::Pool::new(format!("{replica}/{}", rig.src.db).as_str());
    insert_each(&promoted, 21..=40).await;

    let got = messages_until(&rig, &topic, |c| c.contains_key(&40)).await;
    let counts = id_counts(&got);
    for i in 1..=40 {
        assert_eq!(counts.get(&i), Some(&1), "row {i} exactly once: {counts:?}");
    }
    assert!(!counts.contains_key(&999), "nothing from the old primary after the switch");
    wait_position(&rig, id, &replica).await;

    // An alter points the task at the promoted server itself, by its own
    // port: a GTID position may change servers.
    body["task"]["source"]["port"] = json!(addr_of(&replica).port());
    rig.api.call("PUT", &format!("/v1/dispatch/alter/{id}"), Some(&body.to_string())).await.expect_ok();
    rig.wait_task(id, "the alter applied", |t| {
        t["source_addr"].as_str().is_some_and(|a| a.ends_with(&format!(":{}", addr_of(&replica).port())))
    })
    .await;
    drop(proxy);
    insert_each(&promoted, 41..=50).await;
    let got = messages_until(&rig, &topic, |c| c.contains_key(&50)).await;
    let counts = id_counts(&got);
    for i in 1..=50 {
        assert_eq!(counts.get(&i), Some(&1), "row {i} exactly once: {counts:?}");
    }
    wait_position(&rig, id, &replica).await;
    rig.wait_task(id, "Running without an error", |t| t["state"] == "Running" && t["message"] == "").await;
    rig.stop().await;
}
