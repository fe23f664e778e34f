//! A cluster on one machine: two control planes on a real PostgreSQL store,
//! three worker processes, twenty tasks under write load; then a worker is
//! killed with `kill -9`, a control plane is killed, and a worker is frozen
//! (SIGSTOP) past its lease and woken (it must write nothing once awake:
//! every message names its node in a `dts-worker` header). Every source row must reach Kafka
//! and every task must be `Running` again within the stated bound.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dts_e2e::{
    free_port, fresh_database_url, high_watermarks, kafka_addr, read_until, unique_topic, Backend, SourceDb,
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_dts");
const AUTH: &str = "Basic b3BzOnB3"; // ops:pw
const TOKEN: &str = "test-cluster-token";
const LEASE_MS: u64 = 3000;
/// How soon every task must run again after a worker dies: the lease, a
/// scheduler pass and the new worker's start, with room for a busy machine.
const RECOVERY_BOUND: Duration = Duration::from_secs(15);
const TASKS: usize = 20;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.id().to_string()]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(args).envs(envs.iter().copied()).env("DTS_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null());
    Proc(cmd.spawn().unwrap())
}

fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("http://127.0.0.1:{port}/healthz")).call().is_err() {
        assert!(Instant::now() < deadline, "port {port} never became healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(port: u16, path: &str) -> Value {
    let r: Value = ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .set("Authorization", AUTH)
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .into_json()
        .unwrap();
    r["data"].clone()
}

fn tasks(port: u16) -> Vec<Value> {
    get(port, "/v1/task/list?per_page=100")["tasks"].as_array().cloned().unwrap_or_default()
}

fn workers(port: u16) -> Vec<Value> {
    get(port, "/v1/workers")["workers"].as_array().cloned().unwrap_or_default()
}

/// Polls until `check` holds; returns how long it took.
fn wait(what: &str, secs: u64, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(secs), "timed out after {secs}s waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

/// Every task Running on a worker outside `gone`.
fn all_running_off(port: u16, gone: &BTreeSet<String>) -> bool {
    let t = tasks(port);
    t.len() == TASKS
        && t.iter().all(|t| {
            let addr = t["service_addr"].as_str().unwrap_or("");
            t["state"] == "Running" && !addr.is_empty() && !gone.contains(addr)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_survives_a_dead_worker_a_lost_control_plane_and_a_frozen_worker() {
    let Some(kafka) = kafka_addr() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(store) = fresh_database_url(Backend::Postgres, dir.path()).await else { return };
    let Some(src) = SourceDb::create().await else { return };
    let key = String::from_utf8(Command::new(BIN).arg("gen-key").output().unwrap().stdout).unwrap();
    let key = key.trim().to_owned();
    let lease = LEASE_MS.to_string();
    let common: Vec<(&str, &str)> = vec![
        ("DTS_STORE_URL", store.as_str()),
        ("DTS_SECRET_KEY", key.as_str()),
        ("DTS_CLUSTER_TOKEN", TOKEN),
        ("DTS_AUTH_USERS", "ops:pw"),
        ("DTS_LEASE_MS", lease.as_str()),
    ];

    let (cp1_port, cp2_port) = (free_port(), free_port());
    let mut cp1 = Some(spawn(&["control", "--listen", &format!("127.0.0.1:{cp1_port}")], &common));
    let _cp2 = spawn(&["control", "--listen", &format!("127.0.0.1:{cp2_port}")], &common);
    wait_healthy(cp1_port);
    wait_healthy(cp2_port);
    let control = format!("http://127.0.0.1:{cp1_port},http://127.0.0.1:{cp2_port}");
    let mut nodes: BTreeMap<String, (u16, Proc)> = BTreeMap::new();
    for i in 1..=3 {
        let port = free_port();
        let data = dir.path().join(format!("w{i}"));
        let p = spawn(
            &[
                "worker",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--control",
                &control,
                "--worker-id",
                &format!("w{i}"),
                "--data-dir",
                data.to_str().unwrap(),
                "--capacity",
                "20",
            ],
            &[("DTS_CLUSTER_TOKEN", TOKEN)],
        );
        wait_healthy(port);
        nodes.insert(format!("127.0.0.1:{port}"), (port, p));
    }
    tokio::task::block_in_place(|| {
        wait("three active workers", 30, || workers(cp1_port).iter().filter(|w| w["state"] == "active").count() == 3)
    });

    // Twenty tasks, one table and topic each, submitted through both control planes.
    let mut topics = Vec::new();
    for k in 0..TASKS {
        src.exec(&[&format!("CREATE TABLE t{k} (id INT PRIMARY KEY, v INT)")]).await;
        let topic = unique_topic(&format!("cluster{k}"));
        let body = json!({"task": {
            "source": {"host": src.host, "port": src.port, "username": src.user, "password": src.password},
            "kafka": {"addr": kafka, "topic": topic, "partition_mode": "primary_key"},
            "filters": [{"dbname": src.db, "match": format!("t{k}")}],
            "incr": true
        }});
        let port = if k % 2 == 0 { cp1_port } else { cp2_port };
        let r: Value = tokio::task::block_in_place(|| {
            ureq::post(&format!("http://127.0.0.1:{port}/v1/dispatch/submit"))
                .set("Authorization", AUTH)
                .send_json(body)
                .unwrap()
                .into_json()
                .unwrap()
        });
        let addr = r["data"]["addr"].as_str().unwrap().to_owned();
        assert!(nodes.contains_key(&addr), "submit answers the worker that runs the task: {r}");
        topics.push(topic);
    }
    tokio::task::block_in_place(|| wait("all tasks Running", 60, || all_running_off(cp2_port, &BTreeSet::new())));
    let spread: BTreeSet<String> =
        tasks(cp1_port).iter().map(|t| t["service_addr"].as_str().unwrap().to_owned()).collect();
    assert!(spread.len() >= 2, "tasks spread over the workers: {spread:?}");

    // Internal endpoints open to nothing but the cluster token.
    for (header, value) in [("X-Nothing", "x"), ("Authorization", AUTH), ("X-DTS-Cluster-Token", "wrong")] {
        let r = ureq::post(&format!("http://127.0.0.1:{cp1_port}/internal/v1/heartbeat"))
            .set(header, value)
            .send_json(json!({"worker_id": "intruder", "addr": "x:1", "capacity": 1, "version": "0"}));
        assert!(matches!(r, Err(ureq::Error::Status(401, _))), "{header}: {r:?}");
    }
    assert!(!workers(cp1_port).iter().any(|w| w["id"] == "intruder"));

    // Stop and start reach the worker running the task within seconds.
    let first = tasks(cp2_port)[0]["id"].as_i64().unwrap();
    tokio::task::block_in_place(|| {
        ureq::post(&format!("http://127.0.0.1:{cp2_port}/v1/dispatch/stop/{first}"))
            .set("Authorization", AUTH)
            .call()
            .unwrap();
        wait("a stopped task", 10, || tasks(cp2_port).iter().any(|t| t["id"] == first && t["state"] == "Stopped"));
        ureq::post(&format!("http://127.0.0.1:{cp1_port}/v1/dispatch/start/{first}"))
            .set("Authorization", AUTH)
            .call()
            .unwrap();
        wait("the task running again", 10, || all_running_off(cp2_port, &BTreeSet::new()));
    });

    // Write load on every table until the end.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicI64::new(0));
    let writer = {
        let (pool, stop, written) = (src.pool.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = pool.get_conn().await.unwrap();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                for k in 0..TASKS {
                    conn.query_drop(format!("INSERT INTO t{k} VALUES ({i}, {i})")).await.unwrap();
                }
                written.store(i, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let wait_written =
        |n: i64| tokio::task::block_in_place(|| wait("rows written", 30, || written.load(Ordering::SeqCst) >= n));
    wait_written(20);

    // Metrics: each worker serves its own tasks; the control planes serve
    // every task from the figures workers send with their heartbeats.
    tokio::task::block_in_place(|| {
        let scrape = |port: u16, auth: bool| {
            let mut req = ureq::get(&format!("http://127.0.0.1:{port}/metrics"));
            if auth {
                req = req.set("Authorization", AUTH);
            }
            req.call().map(|r| r.into_string().unwrap()).unwrap_or_default()
        };
        let produced = |text: &str| -> BTreeSet<String> {
            text.lines()
                .filter(|l| l.starts_with("dts_task_rows_total{") && l.contains("op=\"c\"") && !l.ends_with(" 0"))
                .filter_map(|l| l.split("task_id=\"").nth(1)?.split('"').next().map(str::to_owned))
                .collect()
        };
        for (port, _) in nodes.values() {
            let text = scrape(*port, false);
            assert!(text.contains("dts_worker_heartbeats_total{result=\"ok\"}"), "{text}");
            let ready = ureq::get(&format!("http://127.0.0.1:{port}/readyz")).call().map(|r| r.status());
            assert_eq!(ready.ok(), Some(200), "a heartbeating worker is ready");
        }
        wait("every task's figures on the control planes", 30, || {
            let mut seen = produced(&scrape(cp1_port, true));
            seen.extend(produced(&scrape(cp2_port, true)));
            seen.len() == TASKS
        });
        let text = scrape(cp1_port, true);
        assert!(text.contains("dts_workers{state=\"active\"} 3"), "{text}");
        assert!(text.contains("dts_worker_heartbeat_age_seconds{worker_id=\"w1\"}"), "{text}");
        assert!(text.contains("dts_tasks{state=\"Running\"} 20"), "{text}");
    });

    // 1. kill -9 the busiest worker.
    let busiest = {
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for t in tasks(cp1_port) {
            *count.entry(t["service_addr"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        count.into_iter().max_by_key(|(_, c)| *c).unwrap().0
    };
    let (_, mut victim) = nodes.remove(&busiest).unwrap();
    victim.0.kill().unwrap();
    let mut gone = BTreeSet::from([busiest.clone()]);
    let recovery = tokio::task::block_in_place(|| {
        wait("tasks running again after kill -9", 60, || all_running_off(cp2_port, &gone))
    });
    eprintln!("every task Running again {recovery:?} after a worker was killed");
    assert!(recovery <= RECOVERY_BOUND, "recovery took {recovery:?}, bound {RECOVERY_BOUND:?}");
    wait_written(written.load(Ordering::SeqCst) + 20);

    // 2. Lose a control plane: workers go on through the other one.
    drop(cp1.take());
    tokio::task::block_in_place(|| {
        wait("workers heartbeating through the second control plane", 30, || {
            let w = workers(cp2_port);
            w.iter().filter(|w| w["state"] == "active" && w["heartbeat_age_ms"].as_i64().unwrap() < 1000).count() == 2
        })
    });
    wait_written(written.load(Ordering::SeqCst) + 20);

    // 3. Freeze a worker past its lease: its tasks move; woken, it runs none.
    let frozen_addr = nodes.keys().next().unwrap().clone();
    let frozen_pid = nodes[&frozen_addr].1 .0.id().to_string();
    let frozen_id = workers(cp2_port).iter().find(|w| w["addr"] == frozen_addr.as_str()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(tasks(cp2_port).iter().any(|t| t["service_addr"] == frozen_addr.as_str()), "the frozen node runs tasks");
    Command::new("kill").args(["-STOP", &frozen_pid]).status().unwrap();
    gone.insert(frozen_addr.clone());
    let moved = tokio::task::block_in_place(|| {
        wait("tasks moved off the frozen worker", 60, || all_running_off(cp2_port, &gone))
    });
    eprintln!("every task Running again {moved:?} after a worker froze");
    let epochs_before: BTreeMap<i64, i64> = tasks(cp2_port)
        .iter()
        .map(|t| {
            (t["id"].as_i64().unwrap(), get(cp2_port, &format!("/v1/task/{}", t["id"]))["epoch"].as_i64().unwrap())
        })
        .collect();
    // Whatever lands after these offsets was written after the node woke.
    let at_wake = {
        let (addr, topics) = (kafka.clone(), topics.clone());
        tokio::task::spawn_blocking(move || high_watermarks(&addr, &topics)).await.unwrap()
    };
    // Anything the node creates once awake has a timestamp from here on.
    let woke_at_ms = dts_core::now_ms();
    Command::new("kill").args(["-CONT", &frozen_pid]).status().unwrap();
    tokio::task::block_in_place(|| {
        wait("the woken worker heartbeats again", 30, || {
            workers(cp2_port)
                .iter()
                .any(|w| w["addr"] == frozen_addr.as_str() && w["heartbeat_age_ms"].as_i64().unwrap() < 1000)
        })
    });
    wait_written(written.load(Ordering::SeqCst) + 20);
    // Woken, it took nothing back: no task changed hands again.
    assert!(all_running_off(cp2_port, &BTreeSet::from([busiest.clone()])));
    for t in tasks(cp2_port) {
        let id = t["id"].as_i64().unwrap();
        assert_eq!(
            get(cp2_port, &format!("/v1/task/{id}"))["epoch"].as_i64().unwrap(),
            epochs_before[&id],
            "task {id}"
        );
        assert_ne!(t["service_addr"], frozen_addr.as_str());
    }

    // 4. Drain the node that now runs everything: its tasks move to the
    // woken node, each from its checkpoint.
    let busy_addr = nodes.keys().find(|a| **a != frozen_addr).unwrap().clone();
    let busy_id =
        workers(cp2_port).iter().find(|w| w["addr"] == busy_addr.as_str()).unwrap()["id"].as_str().unwrap().to_owned();
    // The woken node gets tasks again from here on.
    let at_drain = {
        let (addr, topics) = (kafka.clone(), topics.clone());
        tokio::task::spawn_blocking(move || high_watermarks(&addr, &topics)).await.unwrap()
    };
    tokio::task::block_in_place(|| {
        ureq::post(&format!("http://127.0.0.1:{cp2_port}/v1/workers/{busy_id}/drain"))
            .set("Authorization", AUTH)
            .call()
            .unwrap();
        let drained = BTreeSet::from([busiest.clone(), busy_addr.clone()]);
        let took = wait("tasks moved off the drained node", 60, || all_running_off(cp2_port, &drained));
        eprintln!("a drain moved every task in {took:?}");
    });
    assert!(workers(cp2_port).iter().any(|w| w["id"] == busy_id.as_str() && w["state"] == "draining"));
    wait_written(written.load(Ordering::SeqCst) + 20);

    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let last = written.load(Ordering::SeqCst);

    // Every source row reached its topic.
    let (mut frozen_wrote, mut queued_at_freeze) = (0, 0);
    for (k, topic) in topics.iter().enumerate() {
        let want: BTreeSet<i64> = (1..=last).collect();
        let (addr, t) = (kafka.clone(), topic.clone());
        let got = tokio::task::spawn_blocking(move || {
            read_until(&addr, &[&t], |m| {
                m.len() >= want.len()
                    && want.is_subset(&m.iter().filter_map(|x| x.payload["after"]["id"].as_i64()).collect())
            })
        })
        .await
        .unwrap();
        // The frozen node wrote before it froze, and produced nothing once
        // it woke, until the drain gave it tasks again. (Messages its Kafka client had queued but not sent at the
        // freeze may still go out as it wakes, before any of its code runs:
        // those were created before the freeze.)
        let from_frozen = |m: &&dts_e2e::Consumed| m.worker.as_deref() == Some(frozen_id.as_str());
        let after_wake: Vec<_> = got
            .iter()
            .filter(from_frozen)
            .filter(|m| {
                let at = |marks: &BTreeMap<(String, i32), i64>| marks.get(&(m.topic.clone(), m.partition)).copied();
                m.offset >= at(&at_wake).unwrap_or(0) && m.offset < at(&at_drain).unwrap_or(i64::MAX)
            })
            .collect();
        let produced_awake: Vec<_> = after_wake.iter().filter(|m| m.timestamp_ms >= woke_at_ms).collect();
        assert!(
            produced_awake.is_empty(),
            "t{k}: the frozen node produced {} messages after it woke, first {:?}",
            produced_awake.len(),
            produced_awake.first()
        );
        queued_at_freeze += after_wake.len();
        frozen_wrote += got.iter().filter(from_frozen).count();
        let ids: BTreeSet<i64> = got.iter().filter_map(|x| x.payload["after"]["id"].as_i64()).collect();
        let missing = (1..=last).filter(|i| !ids.contains(i)).count();
        assert_eq!(missing, 0, "t{k}: {missing} of {last} rows missing");
    }
    assert!(frozen_wrote > 0, "messages name the node that wrote them (the dts-worker header)");
    eprintln!(
        "the frozen node wrote {frozen_wrote} messages; {queued_at_freeze} queued at the freeze went out as it woke"
    );
}
