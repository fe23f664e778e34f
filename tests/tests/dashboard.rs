//! The dashboard's pages as HTTP sees them: paging, the state filter, bad
//! queries, escaping, headers, and the cross-site guard on changes. (The
//! browser test in `crates/dts/tests/browser.rs` drives the same pages in
//! Chromium.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dts_core::ErrorCode;
use dts_e2e::{Backend, TestApi, SEED_AUTH_HEADER};

fn body(host: &str) -> String {
    serde_json::json!({"task": {
        "source": {"host": host, "port": 3306, "username": "u", "password": "p"},
        "kafka": {"addr": "127.0.0.1:9092", "topic": "t"},
        "filters": [{"dbname": "db", "match": "t"}],
        "incr": true
    }})
    .to_string()
}

fn rows(html: &str) -> usize {
    html.matches("<tr data-task-id=").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_list_pages_filters_and_escapes() {
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    for i in 0..55 {
        api.call("POST", "/v1/dispatch/submit", Some(&body(&format!("db{i}.example")))).await.expect_ok();
    }
    let page = api.call("GET", "/", None).await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
    assert_eq!(rows(&page.raw), 50, "50 tasks a page");
    assert!(page.raw.contains("page 1 of 2") && page.raw.contains("href=\"/?page=2\""));
    assert!(page.raw.contains("Pending (55)"));
    let second = api.call("GET", "/?page=2", None).await;
    assert_eq!(rows(&second.raw), 5);
    let running = api.call("GET", "/?state=Running", None).await;
    assert_eq!(rows(&running.raw), 0);
    assert!(running.raw.contains("No tasks"));
    let pending = api.call("GET", "/?state=Pending&page=2", None).await;
    assert_eq!(rows(&pending.raw), 5);
    api.call("GET", "/?state=Sleeping", None).await.expect_error(ErrorCode::InvalidQuery);
    api.call("GET", "/?page=x", None).await.expect_error(ErrorCode::InvalidQuery);

    // Task pages: unknown and malformed ids, and a spec never shows a password.
    let detail = api.call("GET", "/ui/tasks/1", None).await;
    assert_eq!(detail.status, 200);
    assert!(detail.raw.contains("db0.example") || detail.raw.contains("db54.example"));
    assert!(!detail.raw.contains("\"password\""), "no password in the page");
    api.call("GET", "/ui/tasks/999", None).await.expect_error(ErrorCode::TaskNotFound);
    assert_eq!(api.call("GET", "/ui/tasks/abc", None).await.status, 400);
    let workers = api.call("GET", "/ui/workers", None).await;
    assert!(workers.raw.contains("No worker nodes"));

    // Pages are for logged-in users; the browser is told to ask.
    let anonymous = api.call_as("GET", "/", None, None).await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.www_authenticate.as_deref().is_some_and(|h| h.starts_with("Basic")));
    let asset = api.call("GET", "/ui/assets/dashboard.js", None).await;
    assert!(asset.content_type.starts_with("text/javascript") && asset.raw.contains("refresh"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_hosts_are_escaped() {
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    // Hosts are validated; a message comes from the source. Both go through the same escaping.
    let id = api.call("POST", "/v1/dispatch/submit", Some(&body("evil.example"))).await.expect_ok()["id"].as_i64();
    let id = id.unwrap();
    let epoch = api.call("GET", &format!("/v1/task/{id}"), None).await.expect_ok()["epoch"].as_i64().unwrap();
    let written =
        api.db.store.record_state(id, epoch, dts_core::TaskState::Failed, "<script>alert(1)</script>").await.unwrap();
    assert!(written);
    let page = api.call("GET", "/", None).await;
    assert!(!page.raw.contains("<script>alert"), "raw markup from a message");
    assert!(page.raw.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_from_other_sites_are_refused() {
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let id =
        api.call("POST", "/v1/dispatch/submit", Some(&body("db.example"))).await.expect_ok()["id"].as_i64().unwrap();
    let path = format!("/v1/dispatch/stop/{id}");
    let auth = ("Authorization", SEED_AUTH_HEADER);
    for forged in [("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Site", "same-site"), ("Origin", "http://evil.example")]
    {
        let r = api.request("POST", &path, &[auth, forged], None).await;
        r.expect_error(ErrorCode::Forbidden);
    }
    let host = api.addr.to_string();
    let origin = format!("http://{host}");
    let r = api.request("POST", &path, &[auth, ("Origin", &origin), ("Sec-Fetch-Site", "same-origin")], None).await;
    r.expect_ok();
    // Reads are not changes: a cross-site GET still answers (the browser keeps the answer from the other site).
    let r = api.request("GET", "/v1/task/list", &[auth, ("Sec-Fetch-Site", "cross-site")], None).await;
    r.expect_ok();
}
