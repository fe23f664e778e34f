//! Every task option through the real pipeline: MariaDB -> worker -> Kafka.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use dts_e2e::{unique_topic, Consumed, Rig};
use dts_pipeline::murmur2::partition_for;
use serde_json::{json, Value};

fn payloads(messages: &[Consumed]) -> Vec<&Value> {
    messages.iter().map(|m| &m.payload).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_column_type_is_rendered_faithfully() {
    let Some(rig) = Rig::start().await else { return };
    rig.src
        .exec(&["CREATE TABLE all_types (
            id INT PRIMARY KEY,
            ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
            mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
            dec1 DECIMAL(20,6), f FLOAT, d DOUBLE,
            dt DATE, tm TIME(3), tmn TIME, dtm DATETIME(6), ts TIMESTAMP(3) NULL, yr YEAR,
            c CHAR(5), vc VARCHAR(50), tx TEXT, emoji VARCHAR(20) CHARACTER SET utf8mb4,
            lat VARCHAR(20) CHARACTER SET latin1,
            bin BINARY(3), vb VARBINARY(10), bl BLOB,
            b1 BIT(1), b12 BIT(12),
            e ENUM('small','medium','large'), s SET('a','b','c'),
            j JSON, g GEOMETRY, u UUID, n INT NULL
        )"])
        .await;
    let topic = unique_topic("types");
    let body =
        rig.task(json!({"addr": rig.kafka, "topic": topic}), json!([{"dbname": rig.src.db, "match": "all_types"}]));
    rig.submit_running(&body).await;
    rig.src
        .exec(&[
            "SET time_zone = '+00:00'",
            "INSERT INTO all_types VALUES (1,
                -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
                -9223372036854775808, 18446744073709551615,
                '-12345678901234.123456', 1.5, -2.25e100,
                '2024-02-29', '-100:02:03.456', '25:00:00', '2024-02-29 23:59:58.123456', '2024-01-02 03:04:05.678', 2155,
                'ab', 'hello', 'long text', '😀🎉', 'café',
                X'0102FF', X'00FF10', X'DEADBEEF',
                b'1', b'101010101010',
                'large', 'a,c',
                '{\"k\": [1, \"x\", null]}', ST_GeomFromText('POINT(1 2)'), '123e4567-e89b-12d3-a456-426614174000', NULL)",
        ])
        .await;
    let messages = rig.messages(&topic, 1).await;
    assert_eq!(messages.len(), 1);
    let after = &messages[0].payload["after"];
    let want = json!({
        "id": 1,
        "ti": -128, "tiu": 255, "si": -32768, "siu": 65535, "mi": -8388608, "miu": 16777215,
        "i": -2147483648_i64, "iu": 4294967295_u64, "bi": i64::MIN, "biu": u64::MAX,
        "dec1": "-12345678901234.123456", "f": 1.5, "d": -2.25e100,
        "dt": "2024-02-29", "tm": "-100:02:03.456", "tmn": "25:00:00", "dtm": "2024-02-29 23:59:58.123456",
        "ts": "2024-01-02T03:04:05.678Z", "yr": 2155,
        "c": "ab", "vc": "hello", "tx": "long text", "emoji": "😀🎉", "lat": "café",
        "bin": "AQL/", "vb": "AP8Q", "bl": "3q2+7w==",
        "b1": 1, "b12": 2730,
        "e": "large", "s": "a,c",
        "j": {"k": [1, "x", null]},
        "g": {"srid": 0, "wkb": "AQEAAAAAAAAAAADwPwAAAAAAAABA"},
        "u": "123e4567-e89b-12d3-a456-426614174000",
        "n": null
    });
    let (got, want) = (after.as_object().unwrap(), want.as_object().unwrap());
    for (column, value) in want {
        assert_eq!(got.get(column), Some(value), "column {column}");
    }
    assert_eq!(got.len(), want.len(), "no other columns: {got:?}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filters_select_databases_tables_and_rows() {
    let Some(rig) = Rig::start().await else { return };
    let db = rig.src.db.clone();
    rig.src
        .exec(&[
            "CREATE TABLE orders_1 (id INT PRIMARY KEY, status VARCHAR(10), amount DECIMAL(8,2), note VARCHAR(10))",
            "CREATE TABLE orders_2 (id INT PRIMARY KEY, status VARCHAR(10), amount DECIMAL(8,2), note VARCHAR(10))",
            "CREATE TABLE orders_x (id INT PRIMARY KEY, status VARCHAR(10), amount DECIMAL(8,2), note VARCHAR(10))",
        ])
        .await;
    let topic = unique_topic("filters");
    let filter = "status IN ('paid', 'shipped') AND amount BETWEEN 10 AND 100 AND note IS NOT NULL \
                  AND NOT (note LIKE 'test%' OR id <> id) AND id >= 1";
    let body = rig.task(
        json!({"addr": rig.kafka, "topic": topic, "partition_mode": "primary_key"}),
        json!([{"dbname": db, "match": "/orders_\\d+/", "filter": filter}]),
    );
    rig.submit_running(&body).await;
    rig.src
        .exec(&[
            "INSERT INTO orders_1 VALUES (1, 'paid', 50, 'ok')",       // passes
            "INSERT INTO orders_1 VALUES (2, 'new', 50, 'ok')",        // status
            "INSERT INTO orders_1 VALUES (3, 'paid', 500, 'ok')",      // amount
            "INSERT INTO orders_1 VALUES (4, 'paid', 50, NULL)",       // IS NOT NULL
            "INSERT INTO orders_1 VALUES (5, 'shipped', 10, 'test1')", // NOT LIKE
            "INSERT INTO orders_2 VALUES (6, 'shipped', 100, 'ok')",   // passes, other table
            "INSERT INTO orders_x VALUES (7, 'paid', 50, 'ok')",       // table regex
            "UPDATE orders_1 SET status = 'void' WHERE id = 1",        // leaves the set: passes
            "UPDATE orders_1 SET status = 'paid' WHERE id = 2",        // enters the set: passes
            "UPDATE orders_1 SET note = 'x' WHERE id = 3",             // never in the set
            "DELETE FROM orders_1 WHERE id = 4",                       // old row fails: dropped
            "DELETE FROM orders_2 WHERE id = 6",                       // old row passes
            // A last passing row: once the reader has 6 messages, any
            // message that should have been dropped would be among them.
            "INSERT INTO orders_2 VALUES (99, 'paid', 20, 'end')",
        ])
        .await;
    let messages = rig.messages(&topic, 6).await;
    let mut seen: Vec<(String, String, i64)> = payloads(&messages)
        .iter()
        .map(|p| {
            let image = if p["op"] == "d" { &p["before"] } else { &p["after"] };
            (
                p["source"]["table"].as_str().unwrap().to_owned(),
                p["op"].as_str().unwrap().to_owned(),
                image["id"].as_i64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![
        ("orders_1".to_owned(), "c".to_owned(), 1),
        ("orders_1".into(), "u".into(), 1),
        ("orders_1".into(), "u".into(), 2),
        ("orders_2".into(), "c".into(), 6),
        ("orders_2".into(), "d".into(), 6),
        ("orders_2".into(), "c".into(), 99),
    ];
    want.sort();
    assert_eq!(seen, want, "{messages:#?}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topic_modes_and_flat_format_with_excluded_columns() {
    let Some(rig) = Rig::start().await else { return };
    let db = rig.src.db.clone();
    rig.src
        .exec(&[
            "CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(10), secret VARCHAR(10), phone VARCHAR(10))",
            "CREATE TABLE shops (id INT PRIMARY KEY, name VARCHAR(10), phone VARCHAR(10))",
        ])
        .await;
    let filters = json!([{"dbname": db, "match": "/users|shops/"}]);
    // topic_mode 1: a topic per table, flat format, columns excluded.
    let per_table = rig.task(
        json!({"addr": rig.kafka, "topic_mode": 1, "flat_format": true,
               "exclude_columns": ["secret", format!("{db}.users.phone")]}),
        filters.clone(),
    );
    rig.submit_running(&per_table).await;
    // topic_mode 0: a topic per database, nested.
    let per_db = rig.task(json!({"addr": rig.kafka, "topic_mode": 0}), filters);
    rig.submit_running(&per_db).await;
    rig.src
        .exec(&[
            "INSERT INTO users VALUES (1, 'ann', 's3', '555')",
            "INSERT INTO shops VALUES (9, 'corner', '777')",
            "DELETE FROM users WHERE id = 1",
        ])
        .await;
    let users = rig.messages(&format!("{db}_users"), 2).await;
    assert_eq!(
        users[0].payload,
        json!({"id": 1, "name": "ann", "__db": db, "__table": "users", "__op": "c",
               "__ts_ms": users[0].payload["__ts_ms"], "__gtid": users[0].payload["__gtid"]})
    );
    assert!(users[0].payload["__ts_ms"].as_i64().unwrap() > 0);
    assert_eq!(users[1].payload["__op"], "d");
    assert_eq!(users[1].payload["__deleted"], true);
    assert_eq!(users[1].payload["id"], 1);
    let shops = rig.messages(&format!("{db}_shops"), 1).await;
    assert_eq!(shops[0].payload["phone"], "777", "the qualified exclude touches only users");
    assert!(shops[0].payload.get("secret").is_none());
    let whole_db = rig.messages(&db, 3).await;
    assert_eq!(whole_db.len(), 3);
    let tables: Vec<&str> = whole_db.iter().map(|m| m.payload["source"]["table"].as_str().unwrap()).collect();
    assert!(tables.contains(&"users") && tables.contains(&"shops"));
    assert!(whole_db.iter().any(|m| m.payload["after"]["secret"] == "s3"), "nothing excluded in this task");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_modes_and_fallbacks_place_each_message() {
    let Some(rig) = Rig::start().await else { return };
    let db = rig.src.db.clone();
    rig.src
        .exec(&[
            "CREATE TABLE with_uid (id INT PRIMARY KEY, uid INT)",
            "CREATE TABLE without_uid (a INT, b INT, PRIMARY KEY (a, b))",
            "CREATE TABLE no_key (v INT)",
        ])
        .await;
    let filters = json!([{"dbname": db, "match": "/with_uid|without_uid|no_key/"}]);
    let modes = [
        ("table", json!({"partition_mode": "table"})),
        ("pk", json!({"partition_mode": "primary_key"})),
        (
            "col_table",
            json!({"partition_mode": "column", "partition_columns": ["uid"], "producer_partition_by_fallback": "table"}),
        ),
        (
            "col_pk",
            json!({"partition_mode": "column", "partition_columns": ["uid"], "producer_partition_by_fallback": "primary_key"}),
        ),
    ];
    let mut topics = Vec::new();
    for (name, mode) in &modes {
        let topic = unique_topic(name);
        let mut kafka = mode.clone();
        kafka["addr"] = json!(rig.kafka);
        kafka["topic"] = json!(topic);
        rig.submit_running(&rig.task(kafka, filters.clone())).await;
        topics.push(topic);
    }
    let mut statements = Vec::new();
    for i in 0..20 {
        statements.push(format!("INSERT INTO with_uid VALUES ({i}, {})", i * 7));
        statements.push(format!("INSERT INTO without_uid VALUES ({i}, {})", i + 100));
        statements.push(format!("INSERT INTO no_key VALUES ({i})"));
    }
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    rig.src.exec(&refs).await;
    for ((name, _), topic) in modes.iter().zip(&topics) {
        let messages = rig.messages(topic, 60).await;
        assert_eq!(messages.len(), 60, "{name}");
        let mut per_key_partitions: BTreeMap<String, i32> = BTreeMap::new();
        for m in &messages {
            let p = &m.payload;
            let (table, after) = (p["source"]["table"].as_str().unwrap(), &p["after"]);
            let want_key = match (*name, table) {
                ("table", t)
                | ("pk", t @ "no_key")
                | ("col_table", t @ ("without_uid" | "no_key"))
                | ("col_pk", t @ "no_key") => {
                    format!("{db}.{t}")
                }
                ("pk", "with_uid") => after["id"].to_string(),
                ("pk" | "col_pk", "without_uid") => format!("[{},{}]", after["a"], after["b"]),
                ("col_table" | "col_pk", "with_uid") => after["uid"].to_string(),
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(m.key, want_key, "{name} {table}");
            // Kafka's own partitioner would put the key on the same partition (3 partitions).
            assert_eq!(m.partition, partition_for(m.key.as_bytes(), 3) as i32, "{name} {}", m.key);
            per_key_partitions.insert(m.key.clone(), m.partition);
        }
        if *name != "table" {
            let used: std::collections::BTreeSet<i32> = per_key_partitions.values().copied().collect();
            assert!(used.len() > 1, "{name}: keys spread over partitions");
        }
    }
    rig.stop().await;
}
