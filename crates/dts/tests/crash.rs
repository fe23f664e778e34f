//! `kill -9` of a running `dts standalone` mid-stream, then a restart:
//! every source row still reaches Kafka (at least once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dts_e2e::{kafka_addr, read_until, unique_topic, SourceDb};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_dts");
const AUTH: &str = "Basic b3BzOnB3"; // ops:pw

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path, port: u16) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(["standalone", "--listen", &format!("127.0.0.1:{port}"), "--snapshot-chunk-rows", "5000"])
        .env("DTS_DATA_DIR", dir)
        .env("DTS_AUTH_USERS", "ops:pw")
        .env("DTS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let proc = Proc(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("http://127.0.0.1:{port}/healthz")).call().is_err() {
        assert!(Instant::now() < deadline, "dts did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    proc
}

fn list(port: u16) -> Vec<Value> {
    let r: Value = ureq::get(&format!("http://127.0.0.1:{port}/v1/task/list"))
        .set("Authorization", AUTH)
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    r["data"]["tasks"].as_array().cloned().unwrap_or_default()
}

fn detail(port: u16, id: i64) -> Value {
    let r: Value = ureq::get(&format!("http://127.0.0.1:{port}/v1/task/{id}"))
        .set("Authorization", AUTH)
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    r["data"].clone()
}

fn wait_task(port: u16, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = list(port).into_iter().find(|t| pred(t)) {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ids(messages: &[dts_e2e::Consumed]) -> BTreeSet<i64> {
    messages.iter().filter_map(|m| m.payload["after"]["id"].as_i64()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_nothing() {
    let Some(kafka) = kafka_addr() else { return };
    let Some(src) = SourceDb::create().await else { return };
    src.exec(&["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))"]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let topic = unique_topic("crash");
    let body = json!({"task": {
        "source": {"host": src.host, "port": src.port, "username": src.user, "password": src.password},
        "kafka": {"addr": kafka, "topic": topic, "partition_mode": "primary_key"},
        "filters": [{"dbname": src.db, "match": "t"}],
        "incr": true
    }});

    let first = tokio::task::block_in_place(|| {
        let p = start(dir.path(), port);
        ureq::post(&format!("http://127.0.0.1:{port}/v1/dispatch/submit"))
            .set("Authorization", AUTH)
            .send_json(body.clone())
            .unwrap();
        wait_task(port, "Running", |t| t["state"] == "Running" && t["pos"] != "");
        p
    });

    // Write steadily in small transactions until told to stop, so the kill
    // lands mid-stream however slow the machine is: once some rows are
    // checkpointed and more are in flight.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (pool, stop) = (src.pool.clone(), stop.clone());
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = pool.get_conn().await.unwrap();
            let mut batch = 0_i64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let values: Vec<String> = (1..=10).map(|i| format!("({}, 'row')", batch * 10 + i)).collect();
                conn.query_drop(format!("INSERT INTO t VALUES {}", values.join(","))).await.unwrap();
                batch += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            batch * 10
        })
    };
    let first_pos = tokio::task::block_in_place(|| {
        let t = wait_task(port, "a first checkpoint", |t| t["transaction_time"] != "");
        t["pos"].as_str().unwrap().to_owned()
    });
    let mut first = first;
    first.0.kill().unwrap(); // SIGKILL: no flush, no final checkpoint
    first.0.wait().unwrap();

    let _second = tokio::task::block_in_place(|| start(dir.path(), port));
    // More rows while the new process catches up, then stop.
    tokio::task::block_in_place(|| wait_task(port, "Running after restart", |t| t["state"] == "Running"));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let total = writer.await.unwrap();
    assert!(total > 0);
    // The old process's replication connection may linger on the server for
    // a heartbeat (error 4052, retried): wait until the task runs cleanly.
    tokio::task::block_in_place(|| {
        wait_task(port, "Running without an error after restart", |t| {
            t["state"] == "Running" && t["pos"] != first_pos.as_str() && t["message"] == ""
        })
    });
    let want: BTreeSet<i64> = (1..=total).collect();
    let (addr, t) = (kafka.clone(), topic.clone());
    let got =
        tokio::task::spawn_blocking(move || read_until(&addr, &[&t], |m| ids(m).is_superset(&want))).await.unwrap();
    let seen = ids(&got);
    let missing: Vec<i64> = (1..=total).filter(|i| !seen.contains(i)).collect();
    assert!(missing.is_empty(), "{} rows lost, e.g. {:?}", missing.len(), &missing[..missing.len().min(10)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_snapshot_resumes_from_the_last_chunk() {
    let Some(kafka) = kafka_addr() else { return };
    let Some(src) = SourceDb::create().await else { return };
    let rows = 200_000_i64;
    src.exec(&[
        "CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(20))",
        "CREATE TABLE fence (id BIGINT PRIMARY KEY)",
        &format!("INSERT INTO big SELECT seq, CONCAT('v', seq) FROM seq_1_to_{rows}"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let topic = unique_topic("crashsnap");
    let body = json!({"task": {
        "source": {"host": src.host, "port": src.port, "username": src.user, "password": src.password},
        "kafka": {"addr": kafka, "topic": topic, "partition_mode": "primary_key"},
        "filters": [{"dbname": src.db, "match": "/big|fence/"}],
        "incr": false
    }});
    let (first, copied) = tokio::task::block_in_place(|| {
        let p = start(dir.path(), port);
        ureq::post(&format!("http://127.0.0.1:{port}/v1/dispatch/submit"))
            .set("Authorization", AUTH)
            .send_json(body)
            .unwrap();
        // Kill once a few chunks are acknowledged and the copy is far from done.
        let deadline = Instant::now() + Duration::from_secs(60);
        let copied = loop {
            let d = detail(port, 1);
            let copied = d["snapshot"]["rows_copied"].as_i64().unwrap_or(0);
            if d["state"] == "Snapshotting" && copied >= 15_000 {
                break copied;
            }
            assert!(d["state"] != "Running", "the copy finished before the kill: {d}");
            assert!(Instant::now() < deadline, "no snapshot progress: {d}");
            std::thread::sleep(Duration::from_millis(20));
        };
        (p, copied)
    });
    assert!(copied < rows, "killed mid-copy");
    let mut first = first;
    first.0.kill().unwrap();
    first.0.wait().unwrap();

    let _second = tokio::task::block_in_place(|| {
        let p = start(dir.path(), port);
        let resumed = detail(port, 1);
        assert!(
            resumed["snapshot"]["rows_copied"].as_i64().unwrap_or(0) >= copied,
            "resumes from the last acknowledged chunk, not from scratch: {resumed}"
        );
        wait_task(port, "Running after the copy", |t| t["state"] == "Running");
        p
    });
    let fences = dts_e2e::write_fences(&src).await;
    let (addr, t) = (kafka.clone(), topic.clone());
    let got = tokio::task::spawn_blocking(move || dts_e2e::read_to_fence(&addr, &t, &fences)).await.unwrap();
    let big: Vec<&dts_e2e::Consumed> = got.iter().filter(|m| m.payload["source"]["table"] == "big").collect();
    let seen: BTreeSet<i64> = big.iter().filter_map(|m| m.payload["after"]["id"].as_i64()).collect();
    assert_eq!(seen.len() as i64, rows, "every row copied");
    // Only chunks not yet acknowledged at the kill are copied twice.
    let resent = big.len() as i64 - rows;
    assert!(resent <= 4 * 5_000, "{resent} rows copied twice: the copy restarted from scratch?");
}
