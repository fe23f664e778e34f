//! `incr: false`: copy the existing rows, then stream, with no gap.
//! Against the real MariaDB and Kafka-protocol broker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dts_e2e::{unique_topic, Consumed, Rig};
use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

/// Rows in the big table (`DTS_TEST_SNAPSHOT_ROWS`, at least 1M by default).
fn big_rows() -> i64 {
    std::env::var("DTS_TEST_SNAPSHOT_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// Reads `topic` to its end (every fence row).
async fn read_to_fence(rig: &Rig, topic: &str, fences: &[i64]) -> Vec<Consumed> {
    let (addr, topic, fences) = (rig.kafka.clone(), topic.to_owned(), fences.to_vec());
    tokio::task::spawn_blocking(move || dts_e2e::read_to_fence(&addr, &topic, &fences)).await.unwrap()
}

/// The last image of each key of `table`: `None` when its last change deleted it.
fn latest<'a>(messages: &'a [Consumed], table: &str) -> HashMap<&'a str, Option<&'a Value>> {
    let mut out = HashMap::new();
    // Per key, order is partition order: messages are sorted by (partition, offset).
    for m in messages.iter().filter(|m| m.payload["source"]["table"] == table) {
        let after = &m.payload["after"];
        out.insert(m.key.as_str(), (!after.is_null()).then_some(after));
    }
    out
}

/// The keys still present, with their images.
fn present<'a>(latest: &HashMap<&'a str, Option<&'a Value>>) -> BTreeMap<&'a str, &'a Value> {
    latest.iter().filter_map(|(k, v)| v.map(|v| (*k, v))).collect()
}

/// A task body copying `filters`' tables first (`incr: false`), keyed by
/// primary key, into `topic`.
fn copy_task(rig: &Rig, topic: &str, filters: Value) -> Value {
    let body = rig.task(json!({"addr": rig.kafka, "topic": topic, "partition_mode": "primary_key"}), filters);
    let mut body: Value = serde_json::from_str(&body).unwrap();
    body["task"]["incr"] = json!(false);
    body
}

async fn write_fences(rig: &Rig) -> Vec<i64> {
    dts_e2e::write_fences(&rig.src).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_every_table_then_streams_with_no_gap_while_writes_go_on() {
    let Some(rig) = Rig::start().await else { return };
    let db = rig.src.db.clone();
    let n = big_rows();
    rig.src
        .exec(&[
            "CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(20), n INT)",
            "CREATE TABLE composite (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b))",
            "CREATE TABLE nokey (v INT, s VARCHAR(10))",
            "CREATE TABLE empty (id INT PRIMARY KEY)",
            "CREATE TABLE filtered (id INT PRIMARY KEY, grade INT)",
            "CREATE TABLE fence (id BIGINT PRIMARY KEY)",
            &format!("INSERT INTO big SELECT seq, CONCAT('v', seq), seq % 1000 FROM seq_1_to_{n}"),
            "INSERT INTO composite SELECT seq % 50, CONCAT('k', seq), seq FROM seq_1_to_500",
            "INSERT INTO nokey SELECT seq, 'x' FROM seq_1_to_300",
            "INSERT INTO filtered SELECT seq, seq FROM seq_1_to_100",
        ])
        .await;
    let topic = unique_topic("snapshot");
    let body = rig.task(
        json!({"addr": rig.kafka, "topic": topic, "partition_mode": "primary_key"}),
        json!([
            {"dbname": db, "match": "/big|composite|nokey|empty|fence/"},
            {"dbname": db, "match": "filtered", "filter": "grade >= 50"}
        ]),
    );
    let mut body: Value = serde_json::from_str(&body).unwrap();
    body["task"]["incr"] = json!(false);
    let id = rig.submit(&body.to_string()).await;

    // While it copies, the task shows its phase and progress.
    let copying = rig.wait_task(id, "Snapshotting", |t| t["state"] == "Snapshotting").await;
    assert!(copying["pos"].as_str().unwrap().starts_with("MariaDB/"), "{copying}");
    let detail = rig.api.call("GET", &format!("/v1/task/{id}"), None).await;
    let snap = detail.expect_ok()["snapshot"].clone();
    assert_eq!(snap["tables_total"], 6, "{snap}");

    // Writes during the copy, to rows already copied and rows still to come.
    rig.src
        .exec(&[
            "UPDATE big SET v = 'updated' WHERE id IN (1, 2, 500000, 999999)",
            "DELETE FROM big WHERE id IN (3, 700000)",
            &format!("INSERT INTO big SELECT seq, 'new', 0 FROM seq_{}_to_{}", n + 1, n + 100),
            "UPDATE composite SET v = -1 WHERE a = 7",
            "DELETE FROM composite WHERE a = 8",
            "UPDATE filtered SET grade = 10 WHERE id = 90",
            "UPDATE filtered SET grade = 99 WHERE id = 5",
        ])
        .await;
    rig.wait_task(id, "Running after the copy", |t| t["state"] == "Running").await;
    rig.src.exec(&["UPDATE big SET v = 'after' WHERE id = 4", "INSERT INTO big VALUES (-1, 'after', 1)"]).await;
    let fences = write_fences(&rig).await;
    let messages = read_to_fence(&rig, &topic, &fences).await;

    // Snapshot reads are marked as such.
    let reads: Vec<&Consumed> = messages.iter().filter(|m| m.payload["op"] == "r").collect();
    assert!(reads.iter().all(|m| m.payload["source"]["snapshot"] == true && m.payload["before"].is_null()));
    assert!(reads.len() as i64 >= n, "{} reads", reads.len());

    // The topic's latest value per key equals each source table.
    let mut conn = rig.src.pool.get_conn().await.unwrap();
    let big: Vec<(i64, String, i64)> = conn.query("SELECT id, v, n FROM big").await.unwrap();
    let latest_big = latest(&messages, "big");
    let got = present(&latest_big);
    assert_eq!(got.len(), big.len(), "rows in big");
    let wrong: Vec<i64> = big
        .iter()
        .filter(|(id, v, n)| got.get(id.to_string().as_str()) != Some(&&json!({"id": id, "v": v, "n": n})))
        .map(|(id, _, _)| *id)
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "big differs at {wrong:?}");
    assert_eq!(latest_big.get("3"), Some(&None), "a row deleted during the copy is gone");

    let composite: Vec<(i64, String, i64)> = conn.query("SELECT a, b, v FROM composite").await.unwrap();
    let want: BTreeMap<String, Value> =
        composite.into_iter().map(|(a, b, v)| (format!("[{a},\"{b}\"]"), json!({"a": a, "b": b, "v": v}))).collect();
    let latest_composite = latest(&messages, "composite");
    let got: BTreeMap<String, Value> =
        present(&latest_composite).into_iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
    assert_eq!(got, want, "composite");

    // The row filter: only rows that pass, plus the update of a row leaving the set.
    let passing: Vec<(i64, i64)> = conn.query("SELECT id, grade FROM filtered WHERE grade >= 50").await.unwrap();
    let want: BTreeMap<String, Value> =
        passing.into_iter().map(|(id, g)| (id.to_string(), json!({"id": id, "grade": g}))).collect();
    let latest_filtered = latest(&messages, "filtered");
    let got: BTreeMap<String, Value> = present(&latest_filtered)
        .into_iter()
        .filter(|(_, v)| v["grade"].as_i64().unwrap() >= 50)
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
    assert_eq!(got, want, "filtered");
    assert!(
        messages.iter().filter(|m| m.payload["source"]["table"] == "filtered" && m.payload["op"] == "r").all(|m| m
            .payload["after"]["grade"]
            .as_i64()
            .unwrap()
            >= 50),
        "the snapshot never sends rows the filter drops"
    );

    // The table without a key arrives whole; the empty one sends nothing.
    let nokey: BTreeSet<i64> = messages
        .iter()
        .filter(|m| m.payload["source"]["table"] == "nokey")
        .map(|m| m.payload["after"]["v"].as_i64().unwrap())
        .collect();
    assert_eq!(nokey, (1..=300).collect());
    assert!(!messages.iter().any(|m| m.payload["source"]["table"] == "empty"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_reads_respect_the_rate_limit() {
    let Some(rig) = Rig::start().await else { return };
    let db = rig.src.db.clone();
    rig.src
        .exec(&[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT)",
            "CREATE TABLE fence (id BIGINT PRIMARY KEY)",
            "INSERT INTO t SELECT seq, seq FROM seq_1_to_200",
        ])
        .await;
    let topic = unique_topic("snaprate");
    let mut body = copy_task(&rig, &topic, json!([{"dbname": db, "match": "/t|fence/"}]));
    body["task"]["rate_limit"] = json!({"rate": 100, "capacity": 20});
    let id = rig.submit(&body.to_string()).await;
    rig.wait_task(id, "Running after the copy", |t| t["state"] == "Running").await;
    let fences = write_fences(&rig).await;
    let messages = read_to_fence(&rig, &topic, &fences).await;
    let reads: Vec<i64> = messages.iter().filter(|m| m.payload["op"] == "r").map(|m| m.timestamp_ms).collect();
    assert_eq!(reads.len(), 200);
    dts_e2e::assert_rate_bound(&reads, 100.0, 20.0);
    rig.stop().await;
}

/// Replays `table`'s messages of a one-partition topic (binlog order): a
/// key that changes leaves under its old image. Keys are `id`, or `"a"/b`.
fn replay(messages: &[Consumed], table: &str) -> BTreeMap<String, Value> {
    let key = |image: &Value| match image.get("id") {
        Some(id) => id.to_string(),
        None => format!("{}/{}", image["a"], image["b"]),
    };
    let mut rows = BTreeMap::new();
    for m in messages.iter().filter(|m| m.payload["source"]["table"] == table) {
        if !m.payload["before"].is_null() {
            rows.remove(&key(&m.payload["before"]));
        }
        if !m.payload["after"].is_null() {
            rows.insert(key(&m.payload["after"]), m.payload["after"].clone());
        }
    }
    rows
}

/// A rig writing one-partition topics (so they keep binlog order), copying
/// in `chunk_rows`-row chunks with `readers` chunk readers, with the `race`,
/// `race2` and `fence` tables.
async fn race_rig(chunk_rows: usize, readers: usize) -> Option<Rig> {
    let src = dts_e2e::SourceDb::create().await?;
    let rig = Rig::start_tuned(src, |cfg| {
        cfg.snapshot_chunk_rows = chunk_rows;
        cfg.snapshot_readers = readers;
        cfg.topic_partitions = 1;
    })
    .await?;
    rig.src
        .exec(&[
            "CREATE TABLE race (id INT PRIMARY KEY, v INT)",
            "CREATE TABLE race2 (a VARCHAR(10), b INT, v INT, PRIMARY KEY (a, b))",
            "CREATE TABLE fence (id BIGINT PRIMARY KEY)",
        ])
        .await;
    Some(rig)
}

/// Writers hammering random keys while a copy in small chunks runs: every
/// chunk boundary races inserts, updates and deletes.
async fn hammer(pool: mysql_async::Pool, stop: tokio::sync::watch::Receiver<bool>, seed: u64) -> u64 {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut conn = pool.get_conn().await.unwrap();
    let mut ops = 0;
    // At most a thousand statements a second per writer: heavy, yet below
    // what the pipeline delivers, so the task's lag stays bounded.
    let mut pace = tokio::time::interval(std::time::Duration::from_millis(1));
    while !*stop.borrow() {
        pace.tick().await;
        let id = rng.gen_range(1..=2_400);
        let v = rng.gen_range(0..1_000_000);
        let (a, b) = (format!("k{}", rng.gen_range(0..40)), rng.gen_range(0..40));
        let sql = match rng.gen_range(0..8) {
            0 => format!("DELETE FROM race WHERE id = {id}"),
            1 => format!("INSERT INTO race VALUES ({id}, {v}) ON DUPLICATE KEY UPDATE v = {v}"),
            2 => format!("DELETE FROM race2 WHERE a = '{a}' AND b = {b}"),
            3 => format!("INSERT INTO race2 VALUES ('{a}', {b}, {v}) ON DUPLICATE KEY UPDATE v = {v}"),
            // Several rows in one transaction, across the key range.
            4 => format!(
                "UPDATE race SET v = {v} WHERE id IN ({id}, {}, {})",
                (id + 600) % 2_400 + 1,
                (id + 1_200) % 2_400 + 1
            ),
            // A key moved: its old image leaves, its new one arrives.
            5 => format!("UPDATE IGNORE race SET id = {} WHERE id = {id}", 3_000 + id),
            _ => format!("UPDATE race SET v = {v} WHERE id = {id}"),
        };
        conn.query_drop(sql).await.unwrap();
        ops += 1;
    }
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_racing_writes_at_every_chunk_boundary_ends_equal_to_the_table_copying_each_key_once() {
    // 40-row chunks: the copy of 2,000 rows crosses 50 boundaries, read
    // by three readers whose chunks finish out of order.
    let Some(rig) = race_rig(40, 3).await else { return };
    let db = rig.src.db.clone();
    rig.src
        .exec(&[
            "INSERT INTO race SELECT seq * 2, seq FROM seq_1_to_1000",
            "INSERT INTO race2 SELECT CONCAT('k', seq % 40), seq DIV 40, seq FROM seq_0_to_999",
        ])
        .await;
    let topic = unique_topic("snaprace");
    let body = copy_task(&rig, &topic, json!([{"dbname": db, "match": "/race|race2|fence/"}]));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writers: Vec<_> = (0..3)
        .map(|seed| {
            let (pool, stopped) = (rig.src.pool.clone(), stopped.clone());
            tokio::spawn(hammer(pool, stopped, seed))
        })
        .collect();
    let id = rig.submit(&body.to_string()).await;
    rig.wait_task(id, "Snapshotting", |t| t["state"] == "Snapshotting").await;
    rig.wait_task(id, "Running after the copy", |t| t["state"] == "Running").await;
    stop.send(true).unwrap();
    let mut ops = 0;
    for w in writers {
        ops += w.await.unwrap();
    }
    assert!(ops > 100, "only {ops} writes raced the copy");
    let fences = write_fences(&rig).await;
    let messages = read_to_fence(&rig, &topic, &fences).await;

    // One partition: the topic is in binlog order, so replaying it must
    // rebuild each table.
    let mut conn = rig.src.pool.get_conn().await.unwrap();
    let race: Vec<(i64, i64)> = conn.query("SELECT id, v FROM race").await.unwrap();
    let want: BTreeMap<String, Value> =
        race.iter().map(|(id, v)| (id.to_string(), json!({"id": id, "v": v}))).collect();
    let got = replay(&messages, "race");
    assert_eq!(got.len(), want.len(), "rows of race");
    assert!(got == want, "race differs at {:?}", want.iter().find(|(k, v)| got.get(*k) != Some(v)));

    let race2: Vec<(String, i64, i64)> = conn.query("SELECT a, b, v FROM race2").await.unwrap();
    let want: BTreeMap<String, Value> =
        race2.into_iter().map(|(a, b, v)| (format!("\"{a}\"/{b}"), json!({"a": a, "b": b, "v": v}))).collect();
    let got = replay(&messages, "race2");
    assert!(got == want, "race2 differs at {:?}", want.iter().find(|(k, v)| got.get(*k) != Some(v)));

    // The copy sends each key at most once.
    let mut copied: HashMap<(&Value, &str), usize> = HashMap::new();
    for m in messages.iter().filter(|m| m.payload["op"] == "r") {
        *copied.entry((&m.payload["source"]["table"], m.key.as_str())).or_default() += 1;
    }
    let twice: Vec<_> = copied.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "keys copied twice: {twice:?}");

    // Per-table progress is in the task's detail.
    let detail = rig.api.call("GET", &format!("/v1/task/{id}"), None).await;
    let detail = detail.expect_ok();
    assert!(detail["snapshot"].is_null(), "no copy section once streaming: {detail}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alter_table_on_a_table_being_copied_does_not_wait_for_the_copy() {
    let Some(src) = dts_e2e::SourceDb::create().await else { return };
    let Some(rig) = Rig::start_tuned(src, |cfg| cfg.snapshot_chunk_rows = 200).await else { return };
    let db = rig.src.db.clone();
    rig.src
        .exec(&[
            "CREATE TABLE alt (id INT PRIMARY KEY, v INT)",
            "CREATE TABLE fence (id BIGINT PRIMARY KEY)",
            "INSERT INTO alt SELECT seq, seq FROM seq_1_to_20000",
        ])
        .await;
    let topic = unique_topic("snapalter");
    let mut body = copy_task(&rig, &topic, json!([{"dbname": db, "match": "/alt|fence/"}]));
    // About ten seconds of copy.
    body["task"]["rate_limit"] = json!({"rate": 2000, "capacity": 200});
    let id = rig.submit(&body.to_string()).await;
    let copying = |d: &Value| {
        let rows = d["snapshot"]["rows_copied"].as_i64().unwrap_or(0);
        d["state"] == "Snapshotting" && rows > 0 && rows < 20_000
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let d = rig.api.call("GET", &format!("/v1/task/{id}"), None).await;
        if copying(d.expect_ok()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no copy progress: {}", d.expect_ok());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The server enforces the bound: the ALTER fails if it waits 2 s for
    // the table's metadata lock, as it would behind a copy-long transaction.
    let mut conn = rig.src.pool.get_conn().await.unwrap();
    conn.query_drop("SET SESSION lock_wait_timeout = 2").await.unwrap();
    conn.query_drop("ALTER TABLE alt ADD COLUMN extra INT NOT NULL DEFAULT 7").await.expect("ALTER during the copy");
    conn.query_drop("UPDATE alt SET v = -v WHERE id % 1000 = 0").await.unwrap();
    // A new binlog file with no transaction in it yet: the rest of the copy
    // must still line its snapshots up with the stream.
    conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let d = rig.api.call("GET", &format!("/v1/task/{id}"), None).await;
    assert!(copying(d.expect_ok()), "the ALTER ran mid-copy: {}", d.expect_ok());
    // Per-table progress, in the detail and on the dashboard's task page.
    let alt =
        d.expect_ok()["snapshot"]["tables"].as_array().unwrap().iter().find(|t| t["table"] == format!("{db}.alt"));
    let alt = alt.expect("alt's progress").clone();
    assert_eq!((alt["key"].as_str(), alt["done"].as_bool()), (Some("PRIMARY"), Some(false)), "{alt}");
    assert!(alt["rows"].as_u64() > Some(0) && alt["chunks"].as_u64() > Some(0), "{alt}");
    let page = rig.api.call("GET", &format!("/ui/tasks/{id}"), None).await;
    assert!(
        page.raw.contains("id=\"snapshot-tables\"") && page.raw.contains(&format!("<td>{db}.alt</td>")),
        "{}",
        page.raw
    );
    // The task list shows the copy's totals under the state.
    let list = rig.api.call("GET", "/", None).await;
    let row = list.raw.split(&format!("<tr data-task-id=\"{id}\">")).nth(1).and_then(|r| r.split("</tr>").next());
    let copy = row.and_then(|r| r.split("<div class=\"copy\">").nth(1)).and_then(|c| c.split("</div>").next());
    let copy = copy.unwrap_or_else(|| panic!("no copy progress in the task's row: {row:?}"));
    assert!(copy.starts_with("0/2 tables, ") || copy.starts_with("1/2 tables, "), "{copy}");
    assert!(copy.contains(" rows of ~") && copy.ends_with("%)"), "{copy}");

    rig.wait_task(id, "Running after the copy", |t| t["state"] == "Running").await;
    let fences = write_fences(&rig).await;
    let messages = read_to_fence(&rig, &topic, &fences).await;
    let rows: Vec<(i64, i64, i64)> = conn.query("SELECT id, v, extra FROM alt").await.unwrap();
    let want: BTreeMap<String, Value> =
        rows.iter().map(|(id, v, e)| (id.to_string(), json!({"id": id, "v": v, "extra": e}))).collect();
    let latest_alt = latest(&messages, "alt");
    let got: BTreeMap<String, Value> = present(&latest_alt)
        .into_iter()
        // Rows copied before the ALTER and not changed since lack the column.
        .map(|(k, v)| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().entry("extra").or_insert(json!(7));
            (k.to_owned(), v)
        })
        .collect();
    assert_eq!(got.len(), 20_000);
    assert!(got == want, "alt differs at {:?}", want.iter().find(|(k, v)| got.get(*k) != Some(v)));
    assert!(
        messages.iter().any(|m| m.payload["op"] == "r" && m.payload["after"]["extra"] == 7),
        "rows copied after the ALTER carry the new column"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_on_demand_snapshot_recopies_a_slice_of_a_table_during_heavy_writes() {
    let Some(rig) = race_rig(100, 1).await else { return };
    let db = rig.src.db.clone();
    rig.src.exec(&["INSERT INTO race SELECT seq, seq FROM seq_1_to_2400"]).await;
    let topic = unique_topic("snapdemand");
    let body = rig.task(
        json!({"addr": rig.kafka, "topic": topic, "partition_mode": "primary_key"}),
        json!([{"dbname": db, "match": "/race|race2|fence/"}]),
    );
    let id = rig.submit_running(&body).await;
    let path = format!("/v1/task/{id}/snapshot");
    assert_eq!(rig.api.call("GET", &path, None).await.expect_ok()["state"], "none");

    // Refused: a table the task does not select, a filter that does not parse.
    let r = rig.api.call("POST", &path, Some(&json!({"tables": ["other.race"]}).to_string())).await;
    assert_eq!((r.code(), r.body["message"].as_str().unwrap().contains("not selected")), (40002, true), "{}", r.raw);
    let r = rig
        .api
        .call("POST", &path, Some(&json!({"tables": [format!("{db}.race")], "where": "id <"}).to_string()))
        .await;
    assert_ne!(r.code(), 0, "{}", r.raw);

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writers: Vec<_> =
        (0..2).map(|seed| tokio::spawn(hammer(rig.src.pool.clone(), stopped.clone(), seed))).collect();
    let asked = json!({"tables": [format!("{db}.race")], "where": "id <= 1200"}).to_string();
    let r = rig.api.call("POST", &path, Some(&asked)).await;
    assert_eq!(r.expect_ok()["id"], id);
    // One at a time.
    let again = rig.api.call("POST", &path, Some(&asked)).await;
    assert_eq!(again.code() / 100, 409, "{}", again.raw);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = BTreeSet::new();
    let status = loop {
        let s = rig.api.call("GET", &path, None).await.expect_ok().clone();
        seen.insert(s["state"].as_str().unwrap().to_owned());
        if s["state"] == "done" {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the snapshot did not finish: {s}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(seen.contains("copying") || seen.contains("pending"), "{seen:?}");
    assert_eq!(status["tables"][0]["table"], format!("{db}.race"));
    assert_eq!(status["tables"][0]["where"], "id <= 1200");
    stop.send(true).unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let fences = write_fences(&rig).await;
    let messages = read_to_fence(&rig, &topic, &fences).await;

    // Only the slice was copied, each key once, and with the changes
    // streamed around it the topic holds the slice as the table does.
    let reads: Vec<&Consumed> = messages.iter().filter(|m| m.payload["op"] == "r").collect();
    assert!(reads.iter().all(|m| m.payload["after"]["id"].as_i64().unwrap() <= 1200));
    let keys: BTreeSet<&str> = reads.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys.len(), reads.len(), "a key copied twice");
    let mut conn = rig.src.pool.get_conn().await.unwrap();
    let rows: Vec<(i64, i64)> = conn.query("SELECT id, v FROM race WHERE id <= 1200").await.unwrap();
    let want: BTreeMap<String, Value> =
        rows.iter().map(|(id, v)| (id.to_string(), json!({"id": id, "v": v}))).collect();
    let got: BTreeMap<String, Value> =
        replay(&messages, "race").into_iter().filter(|(_, v)| v["id"].as_i64() <= Some(1200)).collect();
    assert!(got == want, "the slice differs at {:?}", want.iter().find(|(k, v)| got.get(*k) != Some(v)));

    // A cancelled request copies no more and the task streams on.
    let whole = json!({"tables": [format!("{db}.race")]}).to_string();
    rig.api.call("POST", &path, Some(&whole)).await.expect_ok();
    let cancelled = rig.api.call("DELETE", &path, None).await;
    assert_eq!(cancelled.expect_ok()["cancelled"], true);
    assert_eq!(rig.api.call("GET", &path, None).await.expect_ok()["state"], "none");
    rig.wait_task(id, "streaming after the cancel", |t| t["state"] == "Running").await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alter_that_selects_more_tables_copies_only_those() {
    let Some(rig) = Rig::start().await else { return };
    let db = rig.src.db.clone();
    rig.src
        .exec(&[
            "CREATE TABLE a (id INT PRIMARY KEY)",
            "CREATE TABLE b (id INT PRIMARY KEY)",
            "CREATE TABLE fence (id BIGINT PRIMARY KEY)",
            "INSERT INTO a SELECT seq FROM seq_1_to_300",
            "INSERT INTO b SELECT seq FROM seq_1_to_200",
        ])
        .await;
    let topic = unique_topic("snapalter2");
    let task = |tables: &str| {
        let body = rig.task(
            json!({"addr": rig.kafka, "topic": topic, "partition_mode": "primary_key"}),
            json!([{"dbname": db, "match": tables}]),
        );
        let mut body: Value = serde_json::from_str(&body).unwrap();
        body["task"]["incr"] = json!(false);
        body.to_string()
    };
    let id = rig.submit(&task("/^(a|fence)$/")).await;
    rig.wait_task(id, "Running after the first copy", |t| t["state"] == "Running").await;
    let r = rig.api.call("PUT", &format!("/v1/dispatch/alter/{id}"), Some(&task("/^(a|b|fence)$/"))).await;
    r.expect_ok();
    // The first copy's 300 rows, then b's 200.
    let first = rig.messages(&topic, 500).await;
    assert_eq!(first.len(), 500, "b was not copied after the alter");
    let fences = write_fences(&rig).await;
    let messages = read_to_fence(&rig, &topic, &fences).await;
    let reads = |table: &str| {
        messages.iter().filter(|m| m.payload["op"] == "r" && m.payload["source"]["table"] == table).count()
    };
    assert_eq!((reads("a"), reads("b")), (300, 200), "b copied, a not copied again");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_key_shape_is_copied_whole_and_once_in_ranges_read_ahead() {
    let Some(src) = dts_e2e::SourceDb::create().await else { return };
    // 7-row ranges read by three readers: each table crosses dozens of
    // range ends, planned from its own key's order.
    let Some(rig) = Rig::start_tuned(src, |cfg| {
        cfg.snapshot_chunk_rows = 7;
        cfg.snapshot_readers = 3;
        cfg.topic_partitions = 1;
    })
    .await
    else {
        return;
    };
    let db = rig.src.db.clone();
    rig.src
        .exec(&[
            // Binary keys, with the empty key, 0x00, 0xFF and bytes past 0x7F.
            "CREATE TABLE kbin (k VARBINARY(8) PRIMARY KEY, v INT)",
            "INSERT INTO kbin SELECT UNHEX(LPAD(HEX(seq * 2654435761 % 4294967296), 8, '0')), seq FROM seq_1_to_300",
            "INSERT INTO kbin VALUES ('', -1), (X'00', -2), (X'0000', -3), (X'FF', -4), (X'FFFFFFFFFF', -5)",
            // A descending, sparse key.
            "CREATE TABLE kdesc (id INT NOT NULL, v INT, PRIMARY KEY (id DESC))",
            "INSERT INTO kdesc SELECT seq * seq, seq FROM seq_1_to_300",
            // Text in a case- and accent-insensitive collation, multibyte.
            "CREATE TABLE ktext (k VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci PRIMARY KEY, v INT)",
            "INSERT INTO ktext SELECT CONCAT(ELT(seq % 4 + 1, 'a', 'B', 'é', '学'), seq), seq FROM seq_1_to_300",
            // A composite key led by a temporal column with repeats.
            "CREATE TABLE kdate (d DATETIME(6) NOT NULL, n INT NOT NULL, v INT, PRIMARY KEY (d, n))",
            "INSERT INTO kdate SELECT '2024-01-01' + INTERVAL (seq % 17) SECOND, seq, seq FROM seq_1_to_300",
            // No primary key: the narrowest NOT NULL unique index.
            "CREATE TABLE kuniq (a INT NULL, u BIGINT NOT NULL, v INT, UNIQUE KEY ua (a), UNIQUE KEY uu (u))",
            "INSERT INTO kuniq SELECT NULL, 1000 - seq, seq FROM seq_1_to_300",
            "CREATE TABLE fence (id BIGINT PRIMARY KEY)",
        ])
        .await;
    let topic = unique_topic("snapkeys");
    let body = copy_task(&rig, &topic, json!([{"dbname": db, "match": "/^(k.*|fence)$/"}]));
    let id = rig.submit(&body.to_string()).await;
    rig.wait_task(id, "Running after the copy", |t| t["state"] == "Running").await;
    let fences = write_fences(&rig).await;
    let messages = read_to_fence(&rig, &topic, &fences).await;
    let mut conn = rig.src.pool.get_conn().await.unwrap();
    for table in ["kbin", "kdesc", "ktext", "kdate", "kuniq"] {
        let want: BTreeSet<i64> = conn.query(format!("SELECT v FROM {table}")).await.unwrap().into_iter().collect();
        let copied: Vec<&Consumed> =
            messages.iter().filter(|m| m.payload["op"] == "r" && m.payload["source"]["table"] == table).collect();
        let got: BTreeSet<i64> = copied.iter().filter_map(|m| m.payload["after"]["v"].as_i64()).collect();
        assert_eq!(got, want, "{table}: rows copied");
        assert_eq!(copied.len(), want.len(), "{table}: a row copied twice");
    }
    let detail = rig.api.call("GET", &format!("/v1/task/{id}"), None).await;
    assert!(detail.expect_ok()["snapshot"].is_null(), "the copy ended: {}", detail.expect_ok());
    rig.stop().await;
}
