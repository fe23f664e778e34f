//! The seed's HTTP interface over real HTTP, on every store backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dts_core::ErrorCode;
use dts_e2e::{per_backend, TestApi, SEED_BODY, SEED_PASSWORD_IN_BODY};
use serde_json::{json, Value};

per_backend!(TestApi::start =>
    seed_examples_work_as_documented,
    every_endpoint_needs_credentials,
    bad_submissions_are_refused_and_write_nothing,
    alter_errors_leave_the_task_unchanged,
    list_pages_newest_first_with_bounds,
    detail_stop_start_delete,
    passwords_never_leave_the_server,
    unknown_routes_and_methods_get_envelopes,
    oversized_bodies_are_refused,
);

fn seed_with(edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(SEED_BODY).unwrap();
    edit(&mut v["task"]);
    v.to_string()
}

async fn submit(api: &TestApi, body: &str) -> i64 {
    let r = api.call("POST", "/v1/dispatch/submit", Some(body)).await;
    r.expect_ok()["id"].as_i64().unwrap()
}

async fn total(api: &TestApi) -> i64 {
    api.call("GET", "/v1/task/list", None).await.expect_ok()["total"].as_i64().unwrap()
}

async fn seed_examples_work_as_documented(api: TestApi) {
    // Submit: {"addr": <node address>, "id": <auto-increment id>}.
    let r = api.call("POST", "/v1/dispatch/submit", Some(SEED_BODY)).await;
    let data = r.expect_ok();
    assert_eq!(data, &json!({"addr": "127.0.0.1:8080", "id": 1}));
    assert_eq!(r.content_type, "application/json; charset=utf-8");
    assert!(r.request_id.as_deref().is_some_and(|id| !id.is_empty()));

    // List, with the seed's query.
    let r = api.call("GET", "/v1/task/list?per_page=5&page=1", None).await;
    let data = r.expect_ok();
    assert_eq!((data["total"].as_i64(), data["page"].as_i64(), data["per_page"].as_i64()), (Some(1), Some(1), Some(5)));
    let task = &data["tasks"][0];
    let keys: Vec<&str> = task.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "id",
        "source_addr",
        "dest_addr",
        "pos",
        "updated_at",
        "transaction_time",
        "state",
        "message",
        "service_addr",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want, "exactly the seed's fields");
    assert_eq!(task["id"], 1);
    assert_eq!(task["source_addr"], "127.0.0.1:5306");
    assert_eq!(task["dest_addr"], "127.0.0.1:9092");
    assert_eq!(task["state"], "Pending");
    assert_eq!(task["service_addr"], "127.0.0.1:8080");
    assert_eq!(task["message"], "");
    assert_eq!(task["transaction_time"], "");
    let updated = task["updated_at"].as_str().unwrap();
    assert!(is_seed_time(updated), "{updated}");

    // Alter: the seed's body again, answered with data {}.
    let r = api.call("PUT", "/v1/dispatch/alter/1", Some(SEED_BODY)).await;
    assert_eq!(r.raw, r#"{"code":0,"message":"0","ttl":1,"data":{}}"#);
    let detail = api.call("GET", "/v1/task/1", None).await;
    assert_eq!(detail.expect_ok()["version"], 2);

    // A real change reaches the stored spec.
    let retopic = seed_with(|t| {
        t["kafka"]["topic"] = json!("other_topic");
        t["rate_limit"] = json!({"rate": 100, "capacity": 200});
        t["kafka"]["partition_mode"] = json!("primary_key");
    });
    api.call("PUT", "/v1/dispatch/alter/1", Some(&retopic)).await.expect_ok();
    let detail = api.call("GET", "/v1/task/1", None).await;
    let spec = &detail.expect_ok()["task"];
    assert_eq!(spec["kafka"]["topic"], "other_topic");
    assert_eq!(spec["kafka"]["partition_mode"], "primary_key");
    assert_eq!(spec["rate_limit"], json!({"rate": 100, "capacity": 200}));
    api.stop().await;
}

/// `YYYY-MM-DD HH:MM:SS`, as the seed shows times.
fn is_seed_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

async fn every_endpoint_needs_credentials(api: TestApi) {
    let id = submit(&api, SEED_BODY).await;
    let wrong = format!("Basic {}", B64.encode("replicator:wrong"));
    let unknown = format!("Basic {}", B64.encode("nobody:dtsfor3.1415926"));
    let endpoints = [
        ("POST", "/v1/dispatch/submit".to_owned(), Some(SEED_BODY)),
        ("GET", "/v1/task/list".to_owned(), None),
        ("PUT", format!("/v1/dispatch/alter/{id}"), Some(SEED_BODY)),
        ("GET", format!("/v1/task/{id}"), None),
        ("POST", format!("/v1/dispatch/stop/{id}"), None),
        ("POST", format!("/v1/dispatch/start/{id}"), None),
        ("DELETE", format!("/v1/task/{id}"), None),
        ("GET", "/no/such/path".to_owned(), None),
    ];
    for (method, path, body) in &endpoints {
        for auth in [None, Some(wrong.as_str()), Some(unknown.as_str()), Some("Bearer token"), Some("Basic ???")] {
            let r = api.call_as(method, path, *body, auth).await;
            r.expect_error(ErrorCode::Unauthorized);
            assert!(r.www_authenticate.as_deref().is_some_and(|h| h.starts_with("Basic")), "{method} {path}");
        }
    }
    // Nothing changed: still one task, not stopped, not deleted.
    assert_eq!(total(&api).await, 1);
    let detail = api.call("GET", &format!("/v1/task/{id}"), None).await;
    assert_eq!(detail.expect_ok()["version"], 1);
    // Health checks need no credentials and reveal no tasks.
    let health = api.call_as("GET", "/healthz", None, None).await;
    assert_eq!(health.expect_ok()["status"], "ok");
    api.stop().await;
}

async fn bad_submissions_are_refused_and_write_nothing(api: TestApi) {
    let cases: Vec<(&str, String, ErrorCode)> = vec![
        ("malformed JSON", "{\"task\": {".into(), ErrorCode::MalformedJson),
        ("not JSON", "task=1".into(), ErrorCode::MalformedJson),
        ("empty body", String::new(), ErrorCode::MalformedJson),
        ("no task", "{}".into(), ErrorCode::InvalidField),
        (
            "unknown top-level field",
            SEED_BODY.replacen("{\"task\"", "{\"tusk\":1,\"task\"", 1),
            ErrorCode::InvalidField,
        ),
        ("unknown nested field", seed_with(|t| t["kafka"]["topik"] = json!("x")), ErrorCode::InvalidField),
        ("mistyped port", seed_with(|t| t["source"]["port"] = json!("5306")), ErrorCode::InvalidField),
        ("mistyped incr", seed_with(|t| t["incr"] = json!("yes")), ErrorCode::InvalidField),
        (
            "missing source",
            seed_with(|t| {
                t.as_object_mut().unwrap().remove("source");
            }),
            ErrorCode::InvalidField,
        ),
        (
            "missing kafka addr",
            seed_with(|t| {
                t["kafka"].as_object_mut().unwrap().remove("addr");
            }),
            ErrorCode::InvalidField,
        ),
        ("bad topic_mode", seed_with(|t| t["kafka"]["topic_mode"] = json!(7)), ErrorCode::InvalidField),
        ("bad partition_mode", seed_with(|t| t["kafka"]["partition_mode"] = json!("random")), ErrorCode::InvalidField),
        ("empty host", seed_with(|t| t["source"]["host"] = json!("")), ErrorCode::InvalidSource),
        ("port zero", seed_with(|t| t["source"]["port"] = json!(0)), ErrorCode::InvalidSource),
        ("bad kafka addr", seed_with(|t| t["kafka"]["addr"] = json!("nohostport")), ErrorCode::InvalidKafka),
        ("bad topic", seed_with(|t| t["kafka"]["topic"] = json!("has space")), ErrorCode::InvalidKafka),
        ("no filters", seed_with(|t| t["filters"] = json!([])), ErrorCode::InvalidFilters),
        (
            "invalid table regex",
            seed_with(|t| t["filters"][0]["match"] = json!("/students_(\\d+/")),
            ErrorCode::InvalidTableRegex,
        ),
        (
            "invalid row filter",
            seed_with(|t| t["filters"][1]["filter"] = json!("grade >= AND")),
            ErrorCode::InvalidRowFilter,
        ),
        ("rate zero", seed_with(|t| t["rate_limit"] = json!({"rate": 0})), ErrorCode::InvalidRateLimit),
        (
            "negative rate",
            seed_with(|t| t["rate_limit"] = json!({"rate": -10, "capacity": 10})),
            ErrorCode::InvalidRateLimit,
        ),
        (
            "capacity zero",
            seed_with(|t| t["rate_limit"] = json!({"rate": 10, "capacity": 0})),
            ErrorCode::InvalidRateLimit,
        ),
        (
            "rate too high",
            seed_with(|t| t["rate_limit"] = json!({"rate": 10_000_000_000_i64})),
            ErrorCode::InvalidRateLimit,
        ),
        ("fractional rate", seed_with(|t| t["rate_limit"] = json!({"rate": 1.5})), ErrorCode::InvalidField),
        (
            "column mode without columns",
            seed_with(|t| t["kafka"]["partition_mode"] = json!("column")),
            ErrorCode::InvalidPartition,
        ),
        (
            "columns without column mode",
            seed_with(|t| t["kafka"]["partition_columns"] = json!(["uid"])),
            ErrorCode::InvalidPartition,
        ),
        (
            "fallback without column mode",
            seed_with(|t| t["kafka"]["producer_partition_by_fallback"] = json!("table")),
            ErrorCode::InvalidPartition,
        ),
        (
            "bad fallback",
            seed_with(|t| {
                t["kafka"]["partition_mode"] = json!("column");
                t["kafka"]["partition_columns"] = json!(["uid"]);
                t["kafka"]["producer_partition_by_fallback"] = json!("column");
            }),
            ErrorCode::InvalidField,
        ),
        (
            "bad exclude column",
            seed_with(|t| t["kafka"]["exclude_columns"] = json!(["a..b"])),
            ErrorCode::InvalidExcludeColumns,
        ),
    ];
    for (what, body, code) in &cases {
        let r = api.call("POST", "/v1/dispatch/submit", Some(body)).await;
        assert_eq!(r.code(), i64::from(code.number()), "{what}: {}", r.raw);
        r.expect_error(*code);
    }
    // The messages name the field and say what to fix.
    let r = api.call("POST", "/v1/dispatch/submit", Some(&cases[18].1)).await;
    let msg = r.body["message"].as_str().unwrap();
    assert!(msg.starts_with("task.filters[1].filter: at position"), "{msg}");
    let r = api.call("POST", "/v1/dispatch/submit", Some(&cases[5].1)).await;
    assert!(r.body["message"].as_str().unwrap().contains("unknown field `topik`"), "{}", r.raw);
    assert_eq!(total(&api).await, 0, "no refused submission wrote a row");
    api.stop().await;
}

/// Gives task `id` the checkpoint a worker would write.
async fn set_checkpoint(api: &TestApi, id: i64, pos: &str, checkpoint: &str) {
    let task = api.db.store.get_task(id).await.unwrap().unwrap();
    let progress = dts_store::tasks::Progress {
        state: task.state,
        message: String::new(),
        pos: pos.into(),
        checkpoint: Some(checkpoint.into()),
        transaction_time: None,
    };
    assert!(api.db.store.record_progress(id, task.epoch, &progress).await.unwrap());
}

async fn alter_errors_leave_the_task_unchanged(api: TestApi) {
    let id = submit(&api, SEED_BODY).await;
    // A binlog file and offset: valid on this server only.
    set_checkpoint(&api, id, "mysql-bin.000003:1234", r#"{"flavor":"mysql","file":"mysql-bin.000003","pos":1234}"#)
        .await;
    let before = api.call("GET", &format!("/v1/task/{id}"), None).await.expect_ok().clone();
    let path = format!("/v1/dispatch/alter/{id}");
    let cases: Vec<(String, String, ErrorCode)> = vec![
        (path.clone(), seed_with(|t| t["source"]["host"] = json!("10.9.9.9")), ErrorCode::ImmutableField),
        (path.clone(), seed_with(|t| t["source"]["port"] = json!(3307)), ErrorCode::ImmutableField),
        (path.clone(), seed_with(|t| t["source"]["username"] = json!("root")), ErrorCode::ImmutableField),
        (path.clone(), seed_with(|t| t["incr"] = json!(false)), ErrorCode::ImmutableField),
        (path.clone(), seed_with(|t| t["filters"][0]["match"] = json!("/(/")), ErrorCode::InvalidTableRegex),
        (path.clone(), "{bad json".into(), ErrorCode::MalformedJson),
        ("/v1/dispatch/alter/999999".into(), SEED_BODY.into(), ErrorCode::TaskNotFound),
        ("/v1/dispatch/alter/abc".into(), SEED_BODY.into(), ErrorCode::InvalidTaskId),
        ("/v1/dispatch/alter/-1".into(), SEED_BODY.into(), ErrorCode::InvalidTaskId),
        ("/v1/dispatch/alter/0".into(), SEED_BODY.into(), ErrorCode::InvalidTaskId),
    ];
    for (p, body, code) in &cases {
        api.call("PUT", p, Some(body)).await.expect_error(*code);
    }
    let after = api.call("GET", &format!("/v1/task/{id}"), None).await.expect_ok().clone();
    assert_eq!(before, after, "refused alters changed nothing");
    // With a GTID position the server may change: a failover to a replica.
    let gtid = seed_with(|t| t["source"]["host"] = json!("10.9.9.9"));
    set_checkpoint(
        &api,
        id,
        "MariaDB/0-1-42",
        r#"{"flavor":"mariadb","file":"mysql-bin.000003","pos":1234,"gtid":"0-1-42"}"#,
    )
    .await;
    api.call("PUT", &path, Some(&gtid)).await.expect_ok();
    let moved = api.call("GET", &format!("/v1/task/{id}"), None).await.expect_ok().clone();
    assert_eq!(moved["source_addr"], "10.9.9.9:5306", "{moved}");
    // Another user is still refused.
    let other_user = seed_with(|t| {
        t["source"]["host"] = json!("10.9.9.9");
        t["source"]["username"] = json!("root");
    });
    api.call("PUT", &path, Some(&other_user)).await.expect_error(ErrorCode::ImmutableField);
    // Rotating only the password is allowed.
    let rotated = seed_with(|t| t["source"]["password"] = json!("new-password"));
    api.call("PUT", &path, Some(&rotated)).await.expect_ok();
    // So is leaving it out, which keeps the stored one.
    let without = seed_with(|t| {
        t["source"].as_object_mut().unwrap().remove("password");
    });
    api.call("PUT", &path, Some(&without)).await.expect_ok();
    let task = api.db.store.get_task(id).await.unwrap().unwrap();
    assert_eq!(api.db.store.source_password(&task).unwrap().expose(), "new-password");
    api.stop().await;
}

async fn list_pages_newest_first_with_bounds(api: TestApi) {
    for _ in 0..25 {
        submit(&api, SEED_BODY).await;
    }
    let page = |q: &'static str| {
        let api = &api;
        async move { api.call("GET", &format!("/v1/task/list{q}"), None).await }
    };
    let first = page("").await;
    let data = first.expect_ok();
    assert_eq!((data["total"].as_i64(), data["per_page"].as_i64()), (Some(25), Some(20)));
    let ids: Vec<i64> = data["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (6..=25).rev().collect::<Vec<_>>());
    let second = page("?page=2&per_page=20").await;
    let ids: Vec<i64> =
        second.expect_ok()["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1..=5).rev().collect::<Vec<_>>());
    let beyond = page("?page=9&per_page=10").await;
    assert_eq!(beyond.expect_ok()["tasks"], json!([]));
    for bad in ["?page=0", "?page=-1", "?page=abc", "?per_page=0", "?per_page=1001", "?per_page=-5", "?page=2.5"] {
        page(bad).await.expect_error(ErrorCode::InvalidQuery);
    }
    api.stop().await;
}

async fn detail_stop_start_delete(api: TestApi) {
    let id = submit(&api, SEED_BODY).await;
    let detail = api.call("GET", &format!("/v1/task/{id}"), None).await;
    let d = detail.expect_ok();
    assert_eq!((d["state"].as_str(), d["desired_state"].as_str()), (Some("Pending"), Some("running")));
    assert_eq!(d["task"]["filters"][0]["match"], "/xes_class_students_\\d+/");
    assert_eq!(d["worker_id"], "test-node");

    let stop = api.call("POST", &format!("/v1/dispatch/stop/{id}"), None).await;
    assert_eq!(stop.expect_ok(), &json!({"id": id, "state": "Stopped", "desired_state": "stopped"}));
    let listed = api.call("GET", "/v1/task/list", None).await;
    assert_eq!(listed.expect_ok()["tasks"][0]["state"], "Stopped");
    // Idempotent.
    api.call("POST", &format!("/v1/dispatch/stop/{id}"), None).await.expect_ok();
    let start = api.call("POST", &format!("/v1/dispatch/start/{id}"), None).await;
    assert_eq!(start.expect_ok(), &json!({"id": id, "state": "Pending", "desired_state": "running"}));

    for (method, path) in [
        ("GET", "/v1/task/424242"),
        ("POST", "/v1/dispatch/stop/424242"),
        ("POST", "/v1/dispatch/start/424242"),
        ("DELETE", "/v1/task/424242"),
    ] {
        api.call(method, path, None).await.expect_error(ErrorCode::TaskNotFound);
    }
    for path in ["/v1/task/x1", "/v1/dispatch/stop/1.0", "/v1/dispatch/start/-3"] {
        let method = if path.starts_with("/v1/task") { "GET" } else { "POST" };
        api.call(method, path, None).await.expect_error(ErrorCode::InvalidTaskId);
    }

    let deleted = api.call("DELETE", &format!("/v1/task/{id}"), None).await;
    assert_eq!(deleted.expect_ok(), &json!({}));
    api.call("GET", &format!("/v1/task/{id}"), None).await.expect_error(ErrorCode::TaskNotFound);
    api.call("DELETE", &format!("/v1/task/{id}"), None).await.expect_error(ErrorCode::TaskNotFound);
    assert_eq!(total(&api).await, 0);
    api.stop().await;
}

async fn passwords_never_leave_the_server(api: TestApi) {
    let id = submit(&api, SEED_BODY).await;
    for path in [format!("/v1/task/{id}"), "/v1/task/list".into(), "/v1/task/list?per_page=1000".into()] {
        let r = api.call("GET", &path, None).await;
        r.expect_ok();
        assert!(!r.raw.contains(SEED_PASSWORD_IN_BODY), "{path}: {}", r.raw);
        assert!(!r.raw.contains("password"), "{path}: {}", r.raw);
    }
    api.stop().await;
}

async fn unknown_routes_and_methods_get_envelopes(api: TestApi) {
    api.call("GET", "/v2/anything", None).await.expect_error(ErrorCode::RouteNotFound);
    api.call("GET", "/v1/dispatch/submit", None).await.expect_error(ErrorCode::MethodNotAllowed);
    api.call("POST", "/v1/task/list", Some("{}")).await.expect_error(ErrorCode::MethodNotAllowed);
    api.call("DELETE", "/v1/dispatch/alter/1", None).await.expect_error(ErrorCode::MethodNotAllowed);
    api.stop().await;
}

async fn oversized_bodies_are_refused(api: TestApi) {
    // 1 MiB is the default limit: a body past it is refused before it is parsed.
    let padding = "x".repeat(1024 * 1024);
    let huge = seed_with(|t| t["filters"][0]["filter"] = json!(format!("name = '{padding}'")));
    api.call("POST", "/v1/dispatch/submit", Some(&huge)).await.expect_error(ErrorCode::BodyTooLarge);
    let id = submit(&api, SEED_BODY).await;
    api.call("PUT", &format!("/v1/dispatch/alter/{id}"), Some(&huge)).await.expect_error(ErrorCode::BodyTooLarge);
    assert_eq!(total(&api).await, 1);
    api.stop().await;
}

/// Sends `request` on a fresh connection and reads the answer until the
/// server closes it: (status, envelope).
async fn raw_exchange(api: &TestApi, request: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    // The server may answer and close before it read everything: a write
    // error then is expected, the answer is what is checked.
    let _ = conn.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), conn.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer within 20 s");
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}")))
}

/// Requests the HTTP layer refuses before any handler runs still get the
/// envelope, with the code's own status and a message that says what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_by_the_http_layer_get_envelopes() {
    let Some(api) = TestApi::start(dts_e2e::Backend::Sqlite).await else { return };
    let many_headers: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    let long_header = format!("x-long: {}\r\n", "a".repeat(200 * 1024));
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (format!("GET /v1/task/list HTTP/1.1\r\nhost: a\r\n{many_headers}\r\n").into_bytes(), ErrorCode::HeadTooLarge),
        (format!("GET /v1/task/list HTTP/1.1\r\nhost: a\r\n{long_header}\r\n").into_bytes(), ErrorCode::HeadTooLarge),
        (b"GET /v1/task/list HTTP/1.1\r\nbad header line\r\n\r\n".to_vec(), ErrorCode::MalformedRequest),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), ErrorCode::MalformedRequest),
        // The request line, then nothing: the head never completes.
        (b"GET /v1/task/list HTTP/1.1\r\n".to_vec(), ErrorCode::RequestTimeout),
    ];
    for (request, code) in cases {
        let (status, v) = raw_exchange(&api, &request).await;
        assert_eq!(status, code.http_status(), "{v}");
        assert_eq!(v["code"], code.number(), "{v}");
        assert_eq!(v["ttl"], 1);
        assert!(v["data"].is_null());
        assert!(v["message"].as_str().is_some_and(|m| m.len() > 20), "{v}");
    }
    // The same connection layer answers well-formed requests as before.
    api.call("GET", "/v1/task/list", None).await.expect_ok();
    api.stop().await;
}
