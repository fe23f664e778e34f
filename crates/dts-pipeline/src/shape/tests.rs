#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use dts_core::event::{Change, DdlChange, Op, Row, RowChange, SourcePosition, TableSchema, Value};
use dts_core::spec::KafkaSpec;
use serde_json::{json, Value as J};

use super::Shaper;

fn kafka(flat: bool, exclude: &[&str]) -> KafkaSpec {
    KafkaSpec {
        addr: "k:9092".into(),
        topic: Some("t".into()),
        flat_format: flat,
        topic_mode: None,
        partition_mode: None,
        partition_columns: vec![],
        producer_partition_by_fallback: None,
        exclude_columns: exclude.iter().map(|s| (*s).to_owned()).collect(),
        security: None,
    }
}

fn pos() -> SourcePosition {
    SourcePosition {
        server_id: 1,
        gtid: "0-1-7".into(),
        file: "mysql-bin.000001".into(),
        pos: 1234,
        row: 2,
        ts_ms: 1_700_000_000_000,
        snapshot: false,
    }
}

fn change(op: Op, before: Option<(i64, &str)>, after: Option<(i64, &str)>) -> Change {
    let schema = Arc::new(TableSchema {
        db: "shop".into(),
        table: "users".into(),
        columns: vec!["id".into(), "name".into(), "secret".into()],
        primary_key: vec![0],
    });
    let img = |(id, name): (i64, &str)| Row(vec![Value::Int(id), Value::Text(name.into()), Value::Text("s".into())]);
    Change::Row(RowChange { schema, op, before: before.map(img), after: after.map(img), source: pos() })
}

fn encode(shaper: &Shaper, c: &Change) -> J {
    serde_json::from_slice(&shaper.encode(c, 42)).unwrap()
}

#[test]
fn nested_messages_carry_both_images_and_the_source() {
    let s = Shaper::new(&kafka(false, &["secret"]));
    let update = encode(&s, &change(Op::Update, Some((1, "a")), Some((1, "b"))));
    assert_eq!(
        update,
        json!({
            "before": {"id": 1, "name": "a"},
            "after": {"id": 1, "name": "b"},
            "op": "u",
            "ts_ms": 42,
            "source": {"db": "shop", "table": "users", "server_id": 1, "gtid": "0-1-7",
                       "file": "mysql-bin.000001", "pos": 1234, "row": 2, "ts_ms": 1_700_000_000_000_i64,
                       "snapshot": false}
        })
    );
    let insert = encode(&s, &change(Op::Insert, None, Some((2, "c"))));
    assert_eq!((insert["before"].clone(), insert["op"].clone()), (J::Null, json!("c")));
    let delete = encode(&s, &change(Op::Delete, Some((2, "c")), None));
    assert_eq!((delete["after"].clone(), delete["op"].clone()), (J::Null, json!("d")));
    assert_eq!(delete["before"], json!({"id": 2, "name": "c"}));
}

#[test]
fn flat_messages_put_columns_on_top() {
    let s = Shaper::new(&kafka(true, &["shop.users.secret"]));
    let insert = encode(&s, &change(Op::Insert, None, Some((1, "a"))));
    assert_eq!(
        insert,
        json!({"id": 1, "name": "a", "__db": "shop", "__table": "users", "__op": "c",
               "__ts_ms": 1_700_000_000_000_i64, "__gtid": "0-1-7"})
    );
    let delete = encode(&s, &change(Op::Delete, Some((1, "a")), None));
    assert_eq!(delete["__deleted"], true);
    assert_eq!((delete["id"].clone(), delete["__op"].clone()), (json!(1), json!("d")));
    let update = encode(&s, &change(Op::Update, Some((1, "a")), Some((1, "b"))));
    assert_eq!(update["name"], "b");
    assert!(update.get("__deleted").is_none());
}

#[test]
fn qualified_excludes_touch_only_their_table() {
    let s = Shaper::new(&kafka(false, &["other.users.name", "shop.users.secret"]));
    let insert = encode(&s, &change(Op::Insert, None, Some((1, "a"))));
    assert_eq!(insert["after"], json!({"id": 1, "name": "a"}));
}

#[test]
fn ddl_messages() {
    let ddl = Change::Ddl(DdlChange {
        db: "shop".into(),
        table: Some("users".into()),
        statement: "ALTER TABLE users ADD COLUMN age INT".into(),
        source: pos(),
    });
    let nested = encode(&Shaper::new(&kafka(false, &[])), &ddl);
    assert_eq!(nested["op"], "ddl");
    assert_eq!(nested["ddl"], "ALTER TABLE users ADD COLUMN age INT");
    assert_eq!(nested["source"]["table"], "users");
    let flat = encode(&Shaper::new(&kafka(true, &[])), &ddl);
    assert_eq!(
        (flat["__op"].clone(), flat["__ddl"].clone()),
        (json!("ddl"), json!("ALTER TABLE users ADD COLUMN age INT"))
    );
}
