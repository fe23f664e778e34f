//! Per-row hot path: decode a binlog row, filter it, encode it, route it.
//! `cargo bench -p dts-bench --bench hot_path`

#![allow(missing_docs, clippy::unwrap_used, missing_debug_implementations)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dts_core::event::{Change, Op, Row, RowChange, SourcePosition, TableSchema, Value};
use dts_core::spec::{FilterRule, KafkaSpec, PartitionMode};
use dts_pipeline::filter::TaskFilter;
use dts_pipeline::route::Router;
use dts_pipeline::shape::Shaper;
use dts_source::decode::decode;
use dts_source::schema::{ColumnInfo, ColumnKind};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::Value as My;

fn columns() -> Vec<ColumnInfo> {
    let col = |name: &str, kind| ColumnInfo {
        name: name.into(),
        kind,
        unsigned: false,
        charset: Some("utf8mb4".into()),
        labels: vec![],
        fsp: 0,
    };
    vec![
        col("id", ColumnKind::Int(8)),
        col("status", ColumnKind::Text),
        col("amount", ColumnKind::Decimal),
        col("created", ColumnKind::DateTime),
        col("note", ColumnKind::Text),
    ]
}

fn binlog_row() -> Vec<Option<BinlogValue<'static>>> {
    vec![
        Some(BinlogValue::Value(My::Int(123_456))),
        Some(BinlogValue::Value(My::Bytes(b"paid".to_vec()))),
        Some(BinlogValue::Value(My::Bytes(b"1234.50".to_vec()))),
        Some(BinlogValue::Value(My::Date(2026, 11, 21, 7, 30, 0, 0))),
        Some(BinlogValue::Value(My::Bytes(b"a short note".to_vec()))),
    ]
}

fn change() -> Change {
    let schema = Arc::new(TableSchema {
        db: "shop".into(),
        table: "orders".into(),
        columns: columns().into_iter().map(|c| c.name).collect(),
        primary_key: vec![0],
    });
    let row = Row(vec![
        Value::Int(123_456),
        Value::Text("paid".into()),
        Value::Decimal("1234.50".into()),
        Value::Temporal("2026-11-21 07:30:00".into()),
        Value::Text("a short note".into()),
    ]);
    Change::Row(RowChange { schema, op: Op::Insert, before: None, after: Some(row), source: SourcePosition::default() })
}

fn kafka() -> KafkaSpec {
    KafkaSpec {
        addr: "k:9092".into(),
        topic: Some("t".into()),
        flat_format: false,
        topic_mode: None,
        partition_mode: Some(PartitionMode::PrimaryKey),
        partition_columns: vec![],
        producer_partition_by_fallback: None,
        exclude_columns: vec![],
        security: None,
    }
}

fn hot_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("per_row");
    g.throughput(Throughput::Elements(1));
    let cols = columns();
    let raw = binlog_row();
    g.bench_function("decode", |b| {
        b.iter(|| {
            let row: Vec<Value> = cols.iter().zip(&raw).map(|(c, v)| decode(v.as_ref(), c).unwrap()).collect();
            black_box(row)
        })
    });
    let filter = TaskFilter::new(&[FilterRule {
        dbname: "shop".into(),
        table: "/orders|refunds/".into(),
        filter: Some("status IN ('paid', 'shipped') AND amount >= 100".into()),
    }])
    .unwrap();
    let ch = change();
    let Change::Row(row) = &ch else { unreachable!() };
    g.bench_function("filter", |b| b.iter(|| black_box(filter.passes(row))));
    let shaper = Shaper::new(&kafka());
    g.bench_function("encode_nested", |b| b.iter(|| black_box(shaper.encode(&ch, 1_763_710_000_000))));
    let mut flat = kafka();
    flat.flat_format = true;
    let flat_shaper = Shaper::new(&flat);
    g.bench_function("encode_flat", |b| b.iter(|| black_box(flat_shaper.encode(&ch, 1_763_710_000_000))));
    let router = Router::new(&kafka());
    g.bench_function("route_and_partition", |b| {
        b.iter(|| {
            let r = router.route(&ch);
            black_box(r.partition(12))
        })
    });
    g.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
