//! Every character set the server supports: a table per charset, a row
//! read by the snapshot and the same text streamed from the binlog must
//! both arrive as the text that was written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dts_e2e::{unique_topic, Consumed, Rig, SourceDb};
use mysql_async::prelude::*;
use serde_json::json;

/// Text in each charset's own script.
fn sample(charset: &str) -> &'static str {
    match charset {
        "big5" => "中文繁體",
        "dec8" | "cp850" | "hp8" | "macroman" => "Ñandú ç",
        "koi8r" | "cp866" | "cp1251" => "Привет мир",
        "koi8u" => "Україна їжак",
        "latin1" => "café € ÿ",
        "latin2" | "cp1250" => "Zażółć gęślą",
        "swe7" => "ÅÄÖåäö",
        "ascii" => "plain text",
        "ujis" | "sjis" => "日本語テキスト",
        "cp932" | "eucjpms" => "①日本語",
        "hebrew" => "שלום עולם",
        "tis620" => "ภาษาไทย",
        "euckr" => "한국어 텍스트",
        "gb2312" | "gbk" => "中文简体",
        "gb18030" => "中文 😀",
        "greek" => "Ελληνικά",
        "latin5" => "Türkçe ığş",
        "armscii8" => "Հայերեն",
        "keybcs2" | "macce" | "cp852" => "Čeština žluť",
        "latin7" | "cp1257" => "Lietuvių ąčę",
        "cp1256" => "مرحبا بالعالم",
        "geostd8" => "ქართული",
        // Basic Multilingual Plane only.
        "utf8mb3" | "ucs2" => "é中Д",
        _ => "é中Д 😀",
    }
}

async fn every_charset_streams_as_the_snapshot_reads_it(src: SourceDb) {
    let Some(rig) = Rig::start_with(src).await else { return };
    let mut conn = rig.src.pool.get_conn().await.unwrap();
    let charsets: Vec<String> =
        conn.query("SELECT CHARACTER_SET_NAME FROM information_schema.CHARACTER_SETS ORDER BY 1").await.unwrap();
    let charsets: Vec<String> = charsets.into_iter().filter(|c| c != "binary").collect();
    assert!(charsets.len() >= 30, "{charsets:?}");
    let mut expected = Vec::new();
    for cs in &charsets {
        let text = sample(cs);
        let round_trip: Option<String> =
            conn.exec_first(format!("SELECT CONVERT(CONVERT(? USING {cs}) USING utf8mb4)"), (text,)).await.unwrap();
        assert_eq!(round_trip.as_deref(), Some(text), "sample for {cs} is not representable in it");
        rig.src
            .exec(&[
                &format!("CREATE TABLE cs_{cs} (id INT PRIMARY KEY, v VARCHAR(40) CHARACTER SET {cs})"),
                &format!("INSERT INTO cs_{cs} VALUES (1, CONVERT(_utf8mb4'{text}' USING {cs}))"),
            ])
            .await;
        expected.push((format!("cs_{cs}"), text));
    }
    let topic = unique_topic("charsets");
    let task =
        rig.task(json!({"addr": rig.kafka, "topic": topic}), json!([{"dbname": rig.src.db, "match": "/cs_.*/"}]));
    let mut task: serde_json::Value = serde_json::from_str(&task).unwrap();
    task["task"]["incr"] = json!(false);
    let id = rig.submit_running(&task.to_string()).await;
    let inserts: Vec<String> = expected
        .iter()
        .map(|(table, text)| {
            let cs = &table[3..];
            format!("INSERT INTO {table} VALUES (2, CONVERT(_utf8mb4'{text}' USING {cs}))")
        })
        .collect();
    let refs: Vec<&str> = inserts.iter().map(String::as_str).collect();
    rig.src.exec(&refs).await;
    let want = expected.len() * 2;
    let (addr, t) = (rig.kafka.clone(), topic.clone());
    let messages: Vec<Consumed> =
        tokio::task::spawn_blocking(move || dts_e2e::read_until(&addr, &[&t], |m| m.len() >= want)).await.unwrap();
    for (table, text) in &expected {
        let rows: Vec<_> = messages.iter().filter(|m| m.payload["source"]["table"] == table.as_str()).collect();
        let ops: Vec<&str> = rows.iter().map(|m| m.payload["op"].as_str().unwrap()).collect();
        assert_eq!(ops, ["r", "c"], "{table}");
        for m in rows {
            assert_eq!(m.payload["after"]["v"], *text, "{table} {}", m.payload["op"]);
        }
    }
    let task = rig.wait_task(id, "Running", |t| t["state"] == "Running").await;
    assert_eq!(task["message"], "", "{task}");
    rig.stop().await;
}

/// Charsets named by the binlog's own metadata (collation ids).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_charset_with_row_metadata() {
    let Some(src) = SourceDb::create().await else { return };
    every_charset_streams_as_the_snapshot_reads_it(src).await;
}

/// Charsets from the catalogue, when the binlog names none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_charset_without_row_metadata() {
    let Some(src) = SourceDb::create_without_metadata().await else { return };
    every_charset_streams_as_the_snapshot_reads_it(src).await;
}
