use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::process::parse;

fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

#[test]
fn task_figures_render_with_their_labels() {
    let metrics = Metrics::new(NodeKind::WithStore);
    let t = metrics.tasks.task(7);
    t.read(OpKind::Insert);
    t.read(OpKind::Insert);
    t.filtered(OpKind::Insert);
    t.produced(OpKind::Insert, 100);
    t.produced(OpKind::Ddl, 30);
    t.throttled(Duration::from_millis(1500));
    let text = metrics.render(None);
    assert!(text.contains("# TYPE dts_task_rows counter"), "{text}");
    assert_eq!(
        line(&text, "dts_task_rows_total{task_id=\"7\",op=\"c\"}"),
        Some("dts_task_rows_total{task_id=\"7\",op=\"c\"} 1")
    );
    assert!(text.contains("dts_task_rows_total{task_id=\"7\",op=\"ddl\"} 1"), "{text}");
    assert!(text.contains("dts_task_rows_read_total{task_id=\"7\",op=\"c\"} 2"), "{text}");
    assert!(text.contains("dts_task_rows_filtered_total{task_id=\"7\",op=\"c\"} 1"), "{text}");
    assert!(text.contains("dts_task_bytes_total{task_id=\"7\"} 130"), "{text}");
    assert!(text.contains("dts_task_throttled_seconds_total{task_id=\"7\"} 1.5"), "{text}");
    // Nothing delivered and the source never seen idle: lag unknown.
    assert_eq!(line(&text, "dts_task_lag_seconds{"), Some("dts_task_lag_seconds{task_id=\"7\"} NaN"), "{text}");
    // States come from the store on such nodes, not from here.
    assert!(!text.contains("dts_task_state"), "{text}");
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn a_copy_under_way_has_series_per_table_that_travel_with_heartbeats() {
    let worker = TaskStats::default();
    worker.snapshot_tables(|t| {
        t.push(TableCopyFigures {
            table: "shop.orders".into(),
            rows: 5_000,
            chunks: 1,
            estimated_rows: Some(20_000),
            done: false,
        });
        t.push(TableCopyFigures { table: "shop.users".into(), rows: 12, chunks: 1, estimated_rows: None, done: true });
    });
    // A control plane shows what its workers report.
    let metrics = Metrics::new(NodeKind::WithStore);
    metrics.tasks.task(9).absorb(&worker.export(9));
    let text = metrics.render(None);
    assert!(text.contains("# TYPE dts_task_snapshot_table_rows gauge"), "{text}");
    assert!(text.contains("dts_task_snapshot_table_rows{task_id=\"9\",table=\"shop.orders\"} 5000"), "{text}");
    assert!(
        text.contains("dts_task_snapshot_table_estimated_rows{task_id=\"9\",table=\"shop.orders\"} 20000"),
        "{text}"
    );
    assert!(text.contains("dts_task_snapshot_table_chunks{task_id=\"9\",table=\"shop.users\"} 1"), "{text}");
    assert!(text.contains("dts_task_snapshot_table_done{task_id=\"9\",table=\"shop.users\"} 1"), "{text}");
    assert!(text.contains("dts_task_snapshot_table_done{task_id=\"9\",table=\"shop.orders\"} 0"), "{text}");
    // No estimate, no series: not a made-up zero.
    assert!(!text.contains("dts_task_snapshot_table_estimated_rows{task_id=\"9\",table=\"shop.users\"}"), "{text}");

    // Once the copy ended its tables leave.
    worker.snapshot_tables(Vec::clear);
    metrics.tasks.task(9).absorb(&worker.export(9));
    assert!(!metrics.render(None).contains("dts_task_snapshot_table_rows{"));
}

#[test]
fn lag_counts_from_the_later_of_delivery_and_idle_heartbeat() {
    let t = TaskStats::default();
    assert_eq!(t.lag_seconds(10_000), None);
    t.delivered(4_000);
    assert_eq!(t.lag_seconds(10_000), Some(6.0));
    // An idle source whose every change is delivered is not lagging.
    t.caught_up(9_500);
    assert_eq!(t.lag_seconds(10_000), Some(0.5));
    // The clock never makes lag negative.
    assert_eq!(t.lag_seconds(9_000), Some(0.0));
}

#[test]
fn worker_nodes_report_states_and_forget_departed_tasks() {
    let metrics = Metrics::new(NodeKind::Worker);
    metrics.tasks.task(3).set_state("Running");
    metrics.tasks.task(4);
    let text = metrics.render(None);
    assert!(text.contains("dts_task_state{task_id=\"3\",state=\"Running\"} 1"), "{text}");
    assert!(text.contains("dts_task_state{task_id=\"3\",state=\"Failed\"} 0"), "{text}");
    assert!(!text.contains("dts_task_state{task_id=\"4\""), "{text}");
    metrics.tasks.remove(3);
    assert!(!metrics.render(None).contains("task_id=\"3\""));
}

#[test]
fn store_view_and_http_join_one_exposition() {
    let metrics = Metrics::new(NodeKind::WithStore);
    metrics.http.observe("/v1/task/{id}", "GET", 200, Duration::from_millis(3));
    metrics.ingest.observe(7, "dis", 5, 1, 500, Duration::from_millis(20));
    let view = store_view::StoreView::default();
    view.task(9, "Stopped", &task::STATES);
    view.tasks_in("Stopped", 1);
    let text = metrics.render(Some(view.registry()));
    assert!(
        text.contains("dts_http_requests_total{route=\"/v1/task/{id}\",method=\"GET\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("dts_http_request_duration_seconds_count{route=\"/v1/task/{id}\",method=\"GET\"} 1"));
    assert!(text.contains("dts_ingest_records_total{stream_id=\"7\",protocol=\"dis\"} 5"), "{text}");
    assert!(text.contains("dts_ingest_errors_total{stream_id=\"7\",protocol=\"dis\"} 1"), "{text}");
    assert!(text.contains("dts_task_state{task_id=\"9\",state=\"Stopped\"} 1"), "{text}");
    assert!(text.contains("dts_tasks{state=\"Stopped\"} 1"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
}

#[test]
fn process_figures_parse_from_proc_text() {
    let status = "Name:\tdts\nVmRSS:\t   2048 kB\nThreads:\t9\n";
    let stat = "42 (dts (worker) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1000";
    let f = parse(status, stat);
    assert_eq!(f.resident_bytes, Some(2048 * 1024));
    assert_eq!(f.threads, Some(9));
    assert_eq!(f.cpu_seconds, Some(3.0));
    // This process's own files parse too.
    let live = parse(
        &std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
        &std::fs::read_to_string("/proc/self/stat").unwrap_or_default(),
    );
    assert!(live.resident_bytes.is_some_and(|b| b > 0), "{live:?}");
}

proptest! {
    #[test]
    fn process_parser_takes_any_text(status in ".{0,300}", stat in ".{0,300}") {
        let _ = parse(&status, &stat);
    }
}

/// A node with one of everything, as a scrape sees it.
fn full_exposition() -> String {
    let metrics = Metrics::new(NodeKind::Worker);
    let t = metrics.tasks.task(1);
    t.read(OpKind::Insert);
    t.produced(OpKind::Insert, 10);
    t.delivered(task::now_ms());
    metrics.http.observe("/v1/task/list", "GET", 200, Duration::from_millis(1));
    metrics.ingest.observe(1, "dis", 1, 0, 10, Duration::from_millis(1));
    metrics.node.heartbeat_ok();
    let view = store_view::StoreView::default();
    view.task(1, "Running", &task::STATES);
    view.tasks_in("Running", 1);
    view.workers_in("active", 1);
    view.worker_heartbeat_age("w1", 1.0);
    metrics.render(Some(view.registry()))
}

/// Metric names (`dts_...`, `process_...`) mentioned in `text`.
fn names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for start in ["dts_", "process_"] {
        for (i, _) in text.match_indices(start) {
            if i > 0 && text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            out.insert(name);
        }
    }
    out
}

/// Every metric the example alerts, the Grafana dashboard and the README
/// name is one a node exposes, and the README documents every one exposed.
#[test]
fn deploy_examples_and_readme_name_real_metrics() {
    let exposed: std::collections::BTreeSet<String> = full_exposition()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    for file in ["deploy/prometheus/alerts.yml", "deploy/grafana/dts-dashboard.json"] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap_or_default();
        for name in names_in(&text) {
            assert!(exposed.contains(&name), "{file} uses {name}, which no node exposes");
        }
    }
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap_or_default();
    let section = readme.split("## Metrics").nth(1).unwrap_or_default().split("\n## ").next().unwrap_or_default();
    let documented = names_in(section);
    for name in &exposed {
        let family =
            ["_bucket", "_count", "_sum", "_created"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(
            documented.contains(name) || documented.contains(family),
            "README's Metrics section does not document {name}"
        );
    }
}

proptest! {
    /// What a worker exports, a control plane takes back unchanged.
    #[test]
    fn figures_survive_a_heartbeat(reads in 0u64..50, bytes in 0usize..10_000, file in 0u64..1000, pos in 0u64..1_000_000) {
        let worker = TaskStats::default();
        for _ in 0..reads {
            worker.read(OpKind::Update);
            worker.produced(OpKind::Update, bytes);
        }
        worker.position(file, pos);
        worker.delivered(1_000);
        worker.set_state("Running");
        let wire = worker.export(5);
        let json = serde_json::to_string(&wire).unwrap_or_default();
        let back: task::TaskFigures = serde_json::from_str(&json).unwrap_or_default();
        let control = TaskStats::default();
        control.absorb(&back);
        prop_assert_eq!(control.export(5), wire);
        prop_assert_eq!(control.lag_seconds(3_000), Some(2.0));
    }
}

#[test]
fn absorbed_figures_say_when() {
    let own = TaskStats::default();
    own.produced(OpKind::Insert, 1);
    assert_eq!(own.absorbed_ms(), 0, "a node's own figures");
    let control = TaskStats::default();
    let before = task::now_ms();
    control.absorb(&own.export(1));
    assert!(control.absorbed_ms() >= before);
}
