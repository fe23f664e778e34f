//! The dashboard in a real headless Chromium, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`, which `scripts/test.sh`
//! installs): the list shows a task submitted through the API, a chart
//! renders for it, Stop and Delete pressed in the page reach the task, the
//! alter editor shows errors inline, a viewer sees no buttons. Screenshots
//! go to `target/tmp/browser/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dts_e2e::{free_port, kafka_addr, required, unique_topic, DtsNode, SourceDb};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_dts");
const USERS: &str = "admin:admin-pw-123:admin,watcher:watcher-pw-123:viewer";

/// A chromedriver process, killed at the end of the test.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<Driver> {
    let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].into_iter().find(|p| Path::new(p).exists());
    let Some(bin) = bin else {
        assert!(!required(), "chromedriver is missing: install chromium and chromium-driver (scripts/test.sh does)");
        eprintln!("skipped: no chromedriver");
        return None;
    };
    let port = free_port();
    let child =
        Command::new(bin).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let driver = Driver(child, port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("http://127.0.0.1:{port}/status")).call().is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(driver)
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    let args =
        ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1000"];
    caps.insert("goog:chromeOptions".into(), serde_json::json!({ "args": args, "binary": "/usr/bin/chromium" }));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a WebDriver session")
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(page: &Client, name: &str) {
    let png = page.screenshot().await.unwrap();
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

/// Polls `check` every 250 ms for up to `secs`.
async fn poll<T, F: std::future::Future<Output = Option<T>>>(secs: u64, what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Clicks the element, again if the page re-rendered it in between.
async fn click(page: &Client, css: &str) {
    poll(20, css, || async { page.find(Locator::Css(css)).await.ok()?.click().await.ok() }).await;
}

fn api(node: &DtsNode, method: &str, path: &str, body: Option<&str>) -> Value {
    let (_, text) = node.call(method, path, Some(&node.admin), body);
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_and_steers_tasks_in_a_real_browser() {
    let Some(src) = SourceDb::create().await else { return };
    let Some(kafka) = kafka_addr() else { return };
    let Some(driver) = chromedriver() else { return };
    src.exec(&["CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(20))"]).await;
    let node = DtsNode::standalone(BIN, USERS);
    let body = serde_json::json!({"task": {
        "source": {"host": src.host, "port": src.port, "username": src.user, "password": src.password},
        "kafka": {"addr": kafka, "topic": unique_topic("ui")},
        "filters": [{"dbname": src.db, "match": "orders"}],
        "incr": true
    }})
    .to_string();
    let id = api(&node, "POST", "/v1/dispatch/submit", Some(&body))["data"]["id"].as_i64().unwrap();
    src.exec(&["INSERT INTO orders VALUES (1, 'a'), (2, 'b')"]).await;

    let page = browser(&driver).await;
    let origin = format!("http://127.0.0.1:{}", node.port);
    // Credentials in the first URL; Chromium keeps them for the origin.
    page.goto(&format!("http://admin:admin-pw-123@127.0.0.1:{}/", node.port)).await.unwrap();
    let row = format!("tr[data-task-id=\"{id}\"]");
    poll(60, "the task running in the list", || async {
        page.goto(&format!("{origin}/")).await.ok()?;
        let text = page.find(Locator::Css(&row)).await.ok()?.text().await.ok()?;
        text.contains("Running").then_some(())
    })
    .await;
    screenshot(&page, "tasks").await;

    // The detail page refreshes itself; its charts fill as samples come.
    page.goto(&format!("{origin}/ui/tasks/{id}")).await.unwrap();
    poll(60, "the lag chart's line", || async {
        src.exec(&["UPDATE orders SET note = CAST(FLOOR(RAND() * 1e9) AS CHAR) WHERE id = 1"]).await;
        page.find(Locator::Css("#lag-chart polyline.series")).await.ok()
    })
    .await;
    let points = page.find(Locator::Css("#lag-chart polyline.series")).await.unwrap().attr("points").await.unwrap();
    assert!(points.unwrap_or_default().split(' ').count() >= 2);
    screenshot(&page, "task").await;

    // The alter editor reports errors in place: the browser's and the API's.
    let editor = page.find(Locator::Id("spec-editor")).await.unwrap();
    editor.clear().await.unwrap();
    editor.send_keys("{not json").await.unwrap();
    click(&page, "button[data-action=\"alter\"]").await;
    let error = page.wait().for_element(Locator::Css("#alter-error:not([hidden])")).await.unwrap();
    assert!(error.text().await.unwrap().contains("Not valid JSON"));
    editor.clear().await.unwrap();
    editor.send_keys(r#"{"task": {"incr": true}}"#).await.unwrap();
    click(&page, "button[data-action=\"alter\"]").await;
    let message = poll(20, "the API's answer in the editor", || async {
        let text = page.find(Locator::Id("alter-error")).await.ok()?.text().await.ok()?;
        (!text.contains("Not valid JSON") && !text.is_empty()).then_some(text)
    })
    .await;
    assert!(message.contains("code 4"), "the API's code is shown: {message}");
    screenshot(&page, "alter-error").await;

    // Stop pressed in the page reaches the task.
    click(&page, "button[data-action=\"stop\"]").await;
    poll(30, "the stop to reach the task", || async {
        let t = api(&node, "GET", &format!("/v1/task/{id}"), None);
        (t["data"]["desired_state"] == "stopped" && t["data"]["state"] == "Stopped").then_some(())
    })
    .await;
    poll(20, "the page to show it", || async {
        let state = page.find(Locator::Id("task-state")).await.ok()?.text().await.ok()?;
        (state == "Stopped").then_some(())
    })
    .await;

    // A viewer, in a session of its own, sees the task and no buttons.
    let viewer = browser(&driver).await;
    viewer.goto(&format!("http://watcher:watcher-pw-123@127.0.0.1:{}/ui/tasks/{id}", node.port)).await.unwrap();
    viewer.find(Locator::Id("task-state")).await.unwrap();
    assert!(viewer.find_all(Locator::Css("button[data-action]")).await.unwrap().is_empty());
    viewer.goto(&format!("{origin}/ui/workers")).await.unwrap();
    viewer.find(Locator::Css("table#workers")).await.unwrap();
    viewer.close().await.unwrap();

    // Delete asks first, then goes back to the list.
    click(&page, "button[data-action=\"delete\"]").await;
    let prompt = poll(10, "the confirmation", || async { page.get_alert_text().await.ok() }).await;
    assert!(prompt.contains(&format!("Delete task {id}")), "{prompt}");
    page.accept_alert().await.unwrap();
    poll(20, "the task to be gone", || async {
        let t = api(&node, "GET", &format!("/v1/task/{id}"), None);
        (t["code"] != 0).then_some(())
    })
    .await;
    poll(20, "the list page", || async {
        let url = page.current_url().await.ok()?;
        (url.path() == "/").then_some(())
    })
    .await;
    screenshot(&page, "after-delete").await;
    page.close().await.unwrap();
}

/// A control plane with one worker node: Drain and Activate pressed on the
/// workers page reach the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_drained_and_activated_from_the_page() {
    let Some(driver) = chromedriver() else { return };
    let token = [("DTS_CLUSTER_TOKEN", "browser-test-token")];
    let control = DtsNode::start(BIN, &["control"], USERS, &token);
    let control_url = control.url("");
    let _worker = DtsNode::start(BIN, &["worker", "--control", &control_url, "--worker-id", "w-ui"], "", &token);
    let state = || {
        let v = api(&control, "GET", "/v1/workers", None);
        v["data"]["workers"].as_array().and_then(|w| w.first().map(|w| w["state"].as_str().unwrap_or("").to_owned()))
    };
    poll(30, "the worker to join", || async { (state().as_deref() == Some("active")).then_some(()) }).await;

    let page = browser(&driver).await;
    page.goto(&format!("http://admin:admin-pw-123@127.0.0.1:{}/ui/workers", control.port)).await.unwrap();
    let row = page.find(Locator::Css("tr[data-worker-id=\"w-ui\"]")).await.unwrap();
    assert!(row.text().await.unwrap().contains("active"));
    click(&page, "button[data-action=\"drain\"]").await;
    poll(20, "the drain to reach the node", || async { (state().as_deref() == Some("draining")).then_some(()) }).await;
    let activate = poll(20, "the Activate button", || async {
        page.find(Locator::Css("button[data-action=\"activate\"]")).await.ok()
    })
    .await;
    screenshot(&page, "workers-draining").await;
    activate.click().await.unwrap();
    poll(20, "the node active again", || async { (state().as_deref() == Some("active")).then_some(()) }).await;
    page.close().await.unwrap();
}
