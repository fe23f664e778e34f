//! Schema churn across a catch-up: the task is stopped, the source changes
//! tables the way online schema-change tools and rotation jobs do, and the
//! restarted task must decode every row with the shape it was written with.
//!
//! Run against two MariaDB servers: one logging column names
//! (`binlog_row_metadata=FULL`), where the binlog itself describes every
//! event, and one logging none, where dts's schema history (persisted in the
//! checkpoint) and the catalogue, checked against the event's types, must
//! carry the decoding.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dts_e2e::{unique_topic, Consumed, Rig, SourceDb};
use serde_json::{json, Value};

/// `(table, op, image)` of each row message, in topic order.
fn rows(messages: &[Consumed]) -> Vec<(String, String, Value)> {
    messages
        .iter()
        .filter(|m| m.payload["op"] != "ddl")
        .map(|m| {
            let p = &m.payload;
            let image = if p["op"] == "d" { p["before"].clone() } else { p["after"].clone() };
            (p["source"]["table"].as_str().unwrap().to_owned(), p["op"].as_str().unwrap().to_owned(), image)
        })
        .collect()
}

fn images_of<'a>(rows: &'a [(String, String, Value)], table: &str) -> Vec<&'a Value> {
    rows.iter().filter(|(t, _, _)| t == table).map(|(_, _, v)| v).collect()
}

async fn stop_task(rig: &Rig, id: i64) {
    rig.api.call("POST", &format!("/v1/dispatch/stop/{id}"), None).await.expect_ok();
    rig.wait_task(id, "Stopped", |t| t["state"] == "Stopped").await;
}

async fn start_task(rig: &Rig, id: i64) {
    rig.api.call("POST", &format!("/v1/dispatch/start/{id}"), None).await.expect_ok();
}

/// Tables, one per kind of change, each with a first row the running task
/// reads (so dts has seen its shape).
const TABLES: &[&str] = &[
    "CREATE TABLE t_drop_col (id INT PRIMARY KEY, a INT, gone VARCHAR(10))",
    "CREATE TABLE t_rename_col (id INT PRIMARY KEY, a INT)",
    "CREATE TABLE t_reorder (id INT PRIMARY KEY, a INT, c VARCHAR(10))",
    "CREATE TABLE t_sign (id INT PRIMARY KEY, n INT)",
    "CREATE TABLE t_retype (id INT PRIMARY KEY, n INT)",
    "CREATE TABLE t_enum (id INT PRIMARY KEY, e ENUM('small','large'))",
    "CREATE TABLE logs_2026_11 (id INT PRIMARY KEY, msg VARCHAR(20))",
    "CREATE TABLE orders (id INT PRIMARY KEY, total INT)",
];

const FIRST_ROWS: &[&str] = &[
    "INSERT INTO t_drop_col VALUES (1, 10, 'x')",
    "INSERT INTO t_rename_col VALUES (1, 10)",
    "INSERT INTO t_reorder VALUES (1, 10, 'c1')",
    "INSERT INTO t_sign VALUES (1, 5)",
    "INSERT INTO t_retype VALUES (1, 5)",
    "INSERT INTO t_enum VALUES (1, 'small')",
    "INSERT INTO logs_2026_11 VALUES (1, 'first')",
    "INSERT INTO orders VALUES (1, 100)",
];

/// While the task is stopped: a row in the old shape, the change, a row in
/// the new shape; a rotated table dropped; a gh-ost style cut-over that
/// renames `orders` away and a shadow table into its place, then drops the
/// old one; and churn on a table the task does not select.
const WHILE_STOPPED: &[&str] = &[
    "INSERT INTO t_drop_col VALUES (2, 20, 'y')",
    "ALTER TABLE t_drop_col DROP COLUMN gone",
    "INSERT INTO t_drop_col VALUES (3, 30)",
    "INSERT INTO t_rename_col VALUES (2, 20)",
    "ALTER TABLE t_rename_col RENAME COLUMN a TO b",
    "INSERT INTO t_rename_col VALUES (3, 30)",
    "INSERT INTO t_reorder VALUES (2, 20, 'c2')",
    "ALTER TABLE t_reorder MODIFY COLUMN a INT AFTER c",
    "INSERT INTO t_reorder VALUES (3, 'c3', 30)",
    "INSERT INTO t_sign VALUES (2, -1)",
    "DELETE FROM t_sign WHERE n < 0",
    "ALTER TABLE t_sign MODIFY n INT UNSIGNED",
    "INSERT INTO t_sign VALUES (3, 4294967295)",
    "INSERT INTO t_retype VALUES (2, 7)",
    "ALTER TABLE t_retype MODIFY n VARCHAR(20)",
    "INSERT INTO t_retype VALUES (3, 'seven')",
    "INSERT INTO t_enum VALUES (2, 'large')",
    "ALTER TABLE t_enum MODIFY e ENUM('tiny','large','small')",
    "INSERT INTO t_enum VALUES (3, 'tiny'), (4, 'small')",
    "INSERT INTO logs_2026_11 VALUES (2, 'last')",
    "DROP TABLE logs_2026_11",
    "INSERT INTO orders VALUES (2, 200)",
    "CREATE TABLE _orders_gho (id INT PRIMARY KEY, total BIGINT, note VARCHAR(10))",
    "INSERT INTO _orders_gho SELECT id, total, NULL FROM orders",
    "RENAME TABLE orders TO _orders_del, _orders_gho TO orders",
    "INSERT INTO orders VALUES (3, 300, 'new')",
    "DROP TABLE _orders_del",
    "CREATE TABLE other_db_table (id INT PRIMARY KEY, x INT)",
    "INSERT INTO other_db_table VALUES (1, 1)",
    "DROP TABLE other_db_table",
];

async fn catch_up_across_churn(src: SourceDb, names_logged: bool) {
    let Some(rig) = Rig::start_with(src).await else { return };
    let refs: Vec<&str> = TABLES.to_vec();
    rig.src.exec(&refs).await;
    let topic = unique_topic("churn");
    // Every table but `other_db_table`.
    let filters = json!([{"dbname": rig.src.db, "match": "/(t_|logs_|orders|_orders_).*/"}]);
    let id = rig.submit_running(&rig.task(json!({"addr": rig.kafka, "topic": topic}), filters)).await;
    rig.src.exec(FIRST_ROWS).await;
    let first = rig.messages(&topic, FIRST_ROWS.len()).await;
    assert_eq!(rows(&first).len(), FIRST_ROWS.len(), "{first:#?}");
    stop_task(&rig, id).await;
    rig.src.exec(WHILE_STOPPED).await;
    start_task(&rig, id).await;
    // Every row message (partitions interleave), then compare everything.
    const ROW_MESSAGES: usize = 27;
    let (addr, t) = (rig.kafka.clone(), topic.clone());
    let all = tokio::task::spawn_blocking(move || dts_e2e::read_until(&addr, &[&t], |m| rows(m).len() >= ROW_MESSAGES))
        .await
        .unwrap();
    let task = rig.wait_task(id, "Running", |t| t["state"] == "Running").await;
    assert_eq!(task["message"], "", "no warning or failure: {task}");
    let r = rows(&all);
    assert_eq!(r.len(), ROW_MESSAGES, "{r:#?}");
    assert_eq!(
        images_of(&r, "t_drop_col"),
        [&json!({"id": 1, "a": 10, "gone": "x"}), &json!({"id": 2, "a": 20, "gone": "y"}), &json!({"id": 3, "a": 30})]
    );
    assert_eq!(
        images_of(&r, "t_rename_col"),
        [&json!({"id": 1, "a": 10}), &json!({"id": 2, "a": 20}), &json!({"id": 3, "b": 30})]
    );
    assert_eq!(
        images_of(&r, "t_reorder"),
        [
            &json!({"id": 1, "a": 10, "c": "c1"}),
            &json!({"id": 2, "a": 20, "c": "c2"}),
            &json!({"id": 3, "c": "c3", "a": 30})
        ]
    );
    assert_eq!(
        images_of(&r, "t_sign"),
        [
            &json!({"id": 1, "n": 5}),
            &json!({"id": 2, "n": -1}),
            &json!({"id": 2, "n": -1}),
            &json!({"id": 3, "n": 4_294_967_295_u64})
        ]
    );
    assert_eq!(
        images_of(&r, "t_retype"),
        [&json!({"id": 1, "n": 5}), &json!({"id": 2, "n": 7}), &json!({"id": 3, "n": "seven"})]
    );
    assert_eq!(
        images_of(&r, "t_enum"),
        [
            &json!({"id": 1, "e": "small"}),
            &json!({"id": 2, "e": "large"}),
            &json!({"id": 3, "e": "tiny"}),
            &json!({"id": 4, "e": "small"})
        ]
    );
    assert_eq!(
        images_of(&r, "logs_2026_11"),
        [&json!({"id": 1, "msg": "first"}), &json!({"id": 2, "msg": "last"})],
        "rows of a dropped table decode"
    );
    // Rows written to `orders` before the cut-over go out under that name,
    // the shadow table's copy under its own, the new table's under `orders`.
    assert_eq!(
        images_of(&r, "orders"),
        [
            &json!({"id": 1, "total": 100}),
            &json!({"id": 2, "total": 200}),
            &json!({"id": 3, "total": 300, "note": "new"})
        ]
    );
    // The shadow table lived and died while the task was stopped: only
    // the binlog's own column names can name its rows.
    let shadow = if names_logged {
        [json!({"id": 1, "total": 100, "note": null}), json!({"id": 2, "total": 200, "note": null})]
    } else {
        [json!({"@1": 1, "@2": 100, "@3": null}), json!({"@1": 2, "@2": 200, "@3": null})]
    };
    assert_eq!(images_of(&r, "_orders_gho"), [&shadow[0], &shadow[1]]);
    assert!(images_of(&r, "other_db_table").is_empty());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catch_up_across_schema_churn_with_full_row_metadata() {
    let Some(src) = SourceDb::create().await else { return };
    catch_up_across_churn(src, true).await;
}

/// Without column names in the binlog, the same catch-up decodes from the
/// shapes persisted in the checkpoint (the stop and start go through the
/// store) and from the catalogue where it agrees with the event's types.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catch_up_across_schema_churn_without_row_metadata() {
    let Some(src) = SourceDb::create_without_metadata().await else { return };
    catch_up_across_churn(src, false).await;
}

/// A table the task never saw, created and dropped while it was stopped on
/// a server that logs no column names: nothing can name its columns. With
/// no filter on it, its rows go out under positional names; where a row
/// filter names its columns, the task fails saying which setting to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_shapes_go_out_positionally_or_fail_naming_the_setting() {
    let Some(src) = SourceDb::create_without_metadata().await else { return };
    let Some(rig) = Rig::start_with(src).await else { return };
    rig.src.exec(&["CREATE TABLE seen (id INT PRIMARY KEY)"]).await;
    let (plain, filtered) = (unique_topic("positional"), unique_topic("named"));
    let db = rig.src.db.clone();
    let a = rig
        .submit_running(&rig.task(json!({"addr": rig.kafka, "topic": plain}), json!([{"dbname": db, "match": "/.*/"}])))
        .await;
    let b = rig
        .submit_running(&rig.task(
            json!({"addr": rig.kafka, "topic": filtered}),
            json!([{"dbname": db, "match": "seen"}, {"dbname": db, "match": "/tmp_.*/", "filter": "v > 1"}]),
        ))
        .await;
    stop_task(&rig, a).await;
    stop_task(&rig, b).await;
    rig.src
        .exec(&[
            "CREATE TABLE tmp_shard_17 (id INT PRIMARY KEY, v INT, s VARCHAR(5))",
            "INSERT INTO tmp_shard_17 VALUES (1, 2, 'x')",
            "DROP TABLE tmp_shard_17",
            "INSERT INTO seen VALUES (1)",
        ])
        .await;
    start_task(&rig, a).await;
    start_task(&rig, b).await;
    let (addr, t) = (rig.kafka.clone(), plain.clone());
    let m =
        tokio::task::spawn_blocking(move || dts_e2e::read_until(&addr, &[&t], |m| rows(m).len() >= 2)).await.unwrap();
    let r = rows(&m);
    assert_eq!(images_of(&r, "tmp_shard_17"), [&json!({"@1": 1, "@2": 2, "@3": "x"})], "{m:#?}");
    assert_eq!(images_of(&r, "seen"), [&json!({"id": 1})]);
    let failed = rig.wait_task(b, "Failed", |t| t["state"] == "Failed").await;
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("binlog_row_metadata=FULL") && message.contains("tmp_shard_17"), "{message}");
    rig.stop().await;
}
