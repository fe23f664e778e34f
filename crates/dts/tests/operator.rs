//! What an operator sees of a running `dts standalone`: `/metrics`,
//! `/readyz`, the dashboard's server-rendered list, the `dts task` and
//! `dts worker` CLI, and JSON logs. Real MariaDB, real broker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::time::{Duration, Instant};

use dts_e2e::{dts_command, kafka_addr, unique_topic, DtsNode, SourceDb};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_dts");
const USERS: &str = "admin:admin-pw-123:admin,watcher:watcher-pw-123:viewer";
const VIEWER: &str = "watcher:watcher-pw-123";

/// `dts <args>` as a client of `node`, with credentials from the environment.
fn cli(node: &DtsNode, user: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = dts_command(BIN, node.dir.path());
    cmd.env("DTS_SERVER", node.url("")).args(args);
    if let Some((u, p)) = user.and_then(|u| u.split_once(':')) {
        cmd.env("DTS_API_USER", u).env("DTS_API_PASSWORD", p);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `check` every 200 ms for up to `secs`.
fn poll<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn task_body(src: &SourceDb, kafka: &str, topic: &str) -> String {
    serde_json::json!({"task": {
        "source": {"host": src.host, "port": src.port, "username": src.user, "password": src.password},
        "kafka": {"addr": kafka, "topic": topic},
        "filters": [{"dbname": src.db, "match": "orders"}],
        "incr": true
    }})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_dashboard_and_cli_follow_a_running_task() {
    let Some(src) = SourceDb::create().await else { return };
    let Some(kafka) = kafka_addr() else { return };
    src.exec(&["CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(20))"]).await;
    let node = DtsNode::standalone(BIN, USERS);
    let admin = Some(node.admin.as_str());

    // Submit through the CLI, from a file.
    let file = node.dir.path().join("task.json");
    std::fs::write(&file, task_body(&src, &kafka, &unique_topic("ops"))).unwrap();
    let out = cli(&node, admin, &["task", "submit", "-f", file.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = serde_json::from_str::<Value>(&stdout(&out)).unwrap()["id"].as_i64().unwrap();

    let running = poll(60, "the task to run", || {
        let out = cli(&node, admin, &["task", "list", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let tasks: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
        tasks.into_iter().find(|t| t["id"] == id && t["state"] == "Running")
    });
    for field in
        ["source_addr", "dest_addr", "pos", "updated_at", "transaction_time", "state", "message", "service_addr"]
    {
        assert!(running.get(field).is_some(), "the list endpoint's {field} is missing: {running}");
    }
    let table = stdout(&cli(&node, admin, &["task", "list"]));
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.lines().any(|l| l.starts_with(&format!("{id} ")) && l.contains("Running")), "{table}");

    src.exec(&[
        "INSERT INTO orders VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "UPDATE orders SET note = 'z' WHERE id = 1",
        "DELETE FROM orders WHERE id = 2",
    ])
    .await;

    // Prometheus: the contract's series, with the counts written above.
    let rows = |op: &str| format!("dts_task_rows_total{{task_id=\"{id}\",op=\"{op}\"}}");
    let text = poll(60, "the rows in /metrics", || {
        let (status, text) = node.call("GET", "/metrics", Some(VIEWER), None);
        assert_eq!(status, 200, "a viewer may scrape: {text}");
        (sample(&text, &rows("d")) == Some(1.0)).then_some(text)
    });
    assert_eq!(sample(&text, &rows("c")), Some(3.0), "{text}");
    assert_eq!(sample(&text, &rows("u")), Some(1.0), "{text}");
    assert!(text.contains("# TYPE dts_task_rows counter"), "{text}");
    assert!(text.contains("# TYPE dts_task_lag_seconds gauge"), "{text}");
    let lag = sample(&text, &format!("dts_task_lag_seconds{{task_id=\"{id}\"}}")).expect("lag of a delivering task");
    assert!((0.0..30.0).contains(&lag), "lag {lag}");
    assert_eq!(sample(&text, &format!("dts_task_state{{task_id=\"{id}\",state=\"Running\"}}")), Some(1.0));
    assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0), "{text}");
    assert!(text.contains("dts_http_requests_total{route=\"/v1/dispatch/submit\",method=\"POST\",status=\"200\"} 1"));
    assert!(text.trim_end().ends_with("# EOF"));
    // An idle source keeps lag near zero: heartbeats say nothing is pending.
    poll(30, "an idle task's lag to stay low", || {
        let (_, text) = node.call("GET", "/metrics", Some(VIEWER), None);
        let lag = sample(&text, &format!("dts_task_lag_seconds{{task_id=\"{id}\"}}"))?;
        (lag < 5.0).then_some(())
    });
    let (status, _) = node.call("GET", "/metrics", None, None);
    assert_eq!(status, 401, "metrics need credentials like the API");
    let (status, body) = node.call("GET", "/readyz", None, None);
    assert_eq!(status, 200, "{body}");

    // The dashboard's list is in the HTML itself.
    let (status, html) = node.call("GET", "/", Some(VIEWER), None);
    assert_eq!(status, 200);
    let row = html.split(&format!("<tr data-task-id=\"{id}\">")).nth(1).expect("the task's row").split("</tr>").next();
    let row = row.unwrap_or_default();
    assert!(row.contains(">Running<"), "{row}");
    assert!(row.contains("class=\"lag num\">") && row.contains(" s</td>"), "lag in seconds: {row}");
    let (_, detail) = node.call("GET", &format!("/ui/tasks/{id}"), Some(VIEWER), None);
    assert!(!detail.contains("data-action"), "a viewer gets no action buttons");
    assert!(!detail.contains(&src.password), "the source password never reaches a page");
    let (_, detail) = node.call("GET", &format!("/ui/tasks/{id}"), admin, None);
    assert!(detail.contains("data-action=\"stop\""));

    // An on-demand copy of the table, through the CLI.
    let qualified = format!("{}.orders", src.db);
    let out = cli(&node, admin, &["task", "snapshot", &id.to_string(), "--table", &qualified, "--where", "id > 0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("requested"), "{}", stdout(&out));
    poll(60, "the snapshot to be done", || {
        let out = cli(&node, admin, &["task", "snapshot", &id.to_string()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        (text.contains("snapshot done") && text.contains(&qualified)).then_some(())
    });
    let out = cli(&node, admin, &["task", "snapshot", &id.to_string(), "--table", "other.orders"]);
    assert_eq!(out.status.code(), Some(1), "a table the task does not select is refused");
    assert!(stderr(&out).contains("not selected"), "{}", stderr(&out));
    let out = cli(&node, admin, &["task", "snapshot", &id.to_string(), "--cancel"]);
    assert!(stdout(&out).contains("snapshot cancelled"), "{}", stdout(&out));

    // Failures: the API's message on stderr and a code scripts can trust.
    let out = cli(&node, admin, &["task", "get", "999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("task 999999 does not exist"), "{}", stderr(&out));
    let out = cli(&node, Some("admin:wrong-password"), &["task", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401") || stderr(&out).to_lowercase().contains("credentials"), "{}", stderr(&out));
    let out = cli(&node, Some(VIEWER), &["task", "stop", &id.to_string()]);
    assert_eq!(out.status.code(), Some(1), "a viewer cannot stop tasks");
    assert!(stderr(&out).contains("viewer"), "{}", stderr(&out));
    let mut gone = dts_command(BIN, node.dir.path());
    let out = gone.args(["task", "list", "--server", "http://127.0.0.1:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "cannot connect");

    // Stop, start, workers, delete.
    let out = cli(&node, admin, &["task", "stop", &id.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("desired stopped"), "{}", stdout(&out));
    poll(30, "the stop", || {
        let out = cli(&node, admin, &["task", "get", &id.to_string()]);
        let t: Value = serde_json::from_str(&stdout(&out)).unwrap();
        (t["state"] == "Stopped").then_some(())
    });
    assert!(cli(&node, admin, &["task", "start", &id.to_string()]).status.success());
    let out = cli(&node, admin, &["worker", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&out)).unwrap(), serde_json::json!([]), "standalone has no nodes");
    let out = cli(&node, admin, &["task", "delete", &id.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cli(&node, admin, &["task", "get", &id.to_string()]).status.code(), Some(1));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let node = DtsNode::standalone_with(BIN, USERS, &[("DTS_LOG_FORMAT", "json"), ("DTS_LOG", "info")]);
    let err = node.stop_and_read_stderr();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("serving the dts API")), "{err}");
}

#[test]
fn the_cli_explains_a_missing_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = dts_command(BIN, dir.path()).args(["task", "list", "--user", "admin"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("password"), "{}", stderr(&out));
}
