#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use dts_core::event::{Change, DdlChange, Op, Row, RowChange, SourcePosition, TableSchema, Value};
use dts_core::spec::{KafkaSpec, PartitionFallback, PartitionMode, TopicMode};

use super::Router;
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
    assert_eq!(Router::new(&kafka(Some(TopicMode::PerTable), None, &[], None)).route(&odd).topic, "my_db_tbl__");
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
