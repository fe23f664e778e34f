#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use dts_core::event::{Change, DdlChange, Op, Row, RowChange, SourcePosition, TableSchema, Value};
use dts_core::spec::{KafkaSpec, PartitionFallback, PartitionMode, TopicMode};

use super::{escape_name, unescape_name, Router};
use crate::murmur2::partition_for;

fn kafka(
    topic_mode: Option<TopicMode>,
    mode: Option<PartitionMode>,
    cols: &[&str],
    fb: Option<PartitionFallback>,
) -> KafkaSpec {
    KafkaSpec {
        addr: "k:9092".into(),
        topic: Some("fixed".into()),
        flat_format: false,
        topic_mode,
        partition_mode: mode,
        partition_columns: cols.iter().map(|s| (*s).to_owned()).collect(),
        producer_partition_by_fallback: fb,
        exclude_columns: vec![],
        security: None,
    }
}

fn row(db: &str, table: &str, pk: &[usize], op: Op) -> Change {
    let schema = Arc::new(TableSchema {
        db: db.into(),
        table: table.into(),
        columns: vec!["id".into(), "region".into(), "uid".into()],
        primary_key: pk.to_vec(),
    });
    let image = Row(vec![Value::Int(7), Value::Text("eu".into()), Value::UInt(99)]);
    let (before, after) = if op == Op::Delete { (Some(image), None) } else { (None, Some(image)) };
    Change::Row(RowChange { schema, op, before, after, source: SourcePosition::default() })
}

#[test]
fn topics_follow_topic_mode() {
    let c = row("shop", "orders", &[0], Op::Insert);
    assert_eq!(Router::new(&kafka(None, None, &[], None)).route(&c).topic, "fixed");
    assert_eq!(Router::new(&kafka(Some(TopicMode::PerDatabase), None, &[], None)).route(&c).topic, "shop");
    assert_eq!(Router::new(&kafka(Some(TopicMode::PerTable), None, &[], None)).route(&c).topic, "shop_orders");
    let odd = row("my$db", "tbl ü", &[0], Op::Insert);
    assert_eq!(
        Router::new(&kafka(Some(TopicMode::PerTable), None, &[], None)).route(&odd).topic,
        "my.24db_tbl.20.C3.BC"
    );
}

#[test]
fn names_outside_topic_characters_escape_reversibly() {
    let per_db = Router::new(&kafka(Some(TopicMode::PerDatabase), None, &[], None));
    let (a, b) = (row("学生", "t", &[0], Op::Insert), row("老师", "t", &[0], Op::Insert));
    assert_eq!(per_db.route(&a).topic, ".E5.AD.A6.E7.94.9F");
    assert_ne!(per_db.route(&a).topic, per_db.route(&b).topic);
    assert_eq!(unescape_name(".E5.AD.A6.E7.94.9F").as_deref(), Some("学生"));
    assert_eq!(escape_name("a.b"), "a.2Eb", "the escape character escapes too");
    assert_eq!(unescape_name(".ZZ"), None);
    assert_eq!(unescape_name("a."), None);
    // Too long for Kafka: cut, with a hash that keeps long names apart.
    let per_table = Router::new(&kafka(Some(TopicMode::PerTable), None, &[], None));
    let long = |t: &str| per_table.route(&row(&"库".repeat(64), t, &[0], Op::Insert)).topic.into_owned();
    let (x, y) = (long("表一"), long("表二"));
    assert!(x.len() <= 249 && y.len() <= 249, "{x}");
    assert_ne!(x, y);
    assert!(x.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{x}");
}

#[test]
fn keys_never_carry_an_excluded_column() {
    let key = |excl: &[&str], mode, cols: &[&str], fb| {
        let mut k = kafka(None, Some(mode), cols, fb);
        k.exclude_columns = excl.iter().map(|s| (*s).to_owned()).collect();
        String::from_utf8(Router::new(&k).route(&row("shop", "orders", &[0, 1], Op::Insert)).key).unwrap()
    };
    assert_eq!(key(&["region"], PartitionMode::PrimaryKey, &[], None), "shop.orders");
    assert_eq!(key(&["shop.orders.id"], PartitionMode::PrimaryKey, &[], None), "shop.orders");
    assert_eq!(key(&["other.orders.id"], PartitionMode::PrimaryKey, &[], None), r#"[7,"eu"]"#);
    assert_eq!(key(&["uid"], PartitionMode::PrimaryKey, &[], None), r#"[7,"eu"]"#);
    let fb = Some(PartitionFallback::PrimaryKey);
    assert_eq!(key(&["id"], PartitionMode::Column, &["tenant"], fb), "shop.orders");
}

proptest::proptest! {
    #[test]
    fn escaping_round_trips_and_is_a_valid_topic(name in "\\PC{0,40}") {
        let e = escape_name(&name);
        proptest::prop_assert!(e.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
        proptest::prop_assert_eq!(unescape_name(&e), Some(name));
    }
}

#[test]
fn keys_follow_partition_mode_and_fallbacks() {
    let c = row("shop", "orders", &[0], Op::Insert);
    let key = |k: KafkaSpec, c: &Change| String::from_utf8(Router::new(&k).route(c).key).unwrap();
    assert_eq!(key(kafka(None, None, &[], None), &c), "shop.orders");
    assert_eq!(key(kafka(None, Some(PartitionMode::Table), &[], None), &c), "shop.orders");
    assert_eq!(key(kafka(None, Some(PartitionMode::PrimaryKey), &[], None), &c), "7");
    let composite = row("shop", "orders", &[0, 1], Op::Insert);
    assert_eq!(key(kafka(None, Some(PartitionMode::PrimaryKey), &[], None), &composite), r#"[7,"eu"]"#);
    let keyless = row("shop", "log", &[], Op::Insert);
    assert_eq!(key(kafka(None, Some(PartitionMode::PrimaryKey), &[], None), &keyless), "shop.log");
    assert_eq!(key(kafka(None, Some(PartitionMode::Column), &["uid"], None), &c), "99");
    assert_eq!(key(kafka(None, Some(PartitionMode::Column), &["region", "uid"], None), &c), r#"["eu",99]"#);
    // A table without the column falls back.
    let fb_table = kafka(None, Some(PartitionMode::Column), &["tenant"], Some(PartitionFallback::Table));
    assert_eq!(key(fb_table, &c), "shop.orders");
    let fb_pk = kafka(None, Some(PartitionMode::Column), &["tenant"], Some(PartitionFallback::PrimaryKey));
    assert_eq!(key(fb_pk.clone(), &c), "7");
    assert_eq!(key(fb_pk, &keyless), "shop.log", "no primary key either: table");
    // Deletes key by the old row, so they follow their row's inserts.
    let delete = row("shop", "orders", &[0], Op::Delete);
    assert_eq!(key(kafka(None, Some(PartitionMode::PrimaryKey), &[], None), &delete), "7");
}

#[test]
fn partitions_are_murmur2_of_the_key_and_ddl_follows_its_table() {
    let r = Router::new(&kafka(Some(TopicMode::PerTable), Some(PartitionMode::Table), &[], None));
    let c = row("shop", "orders", &[0], Op::Insert);
    let route = r.route(&c);
    assert_eq!(route.partition(12), partition_for(b"shop.orders", 12));
    let ddl = Change::Ddl(DdlChange {
        db: "shop".into(),
        table: Some("orders".into()),
        statement: "ALTER TABLE orders ADD x INT".into(),
        source: SourcePosition::default(),
    });
    let ddl_route = r.route(&ddl);
    assert_eq!((ddl_route.topic.as_ref(), ddl_route.partition(12)), ("shop_orders", route.partition(12)));
}
