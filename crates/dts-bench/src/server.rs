//! The process under test: a real `dts standalone` (the release binary
//! next to this one), driven over its API from this process, which only
//! generates load and reads results. Its peak RSS is read from its /proc
//! entry, from outside it.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const USER: &str = "bench";
pub const PASSWORD: &str = "bench-pw";

/// A running `dts standalone`; killed when dropped.
pub struct Dts {
    child: std::process::Child,
    pub base: String,
    pub http: reqwest::Client,
    /// Its data directory (the SQLite store), removed when dropped.
    _dir: tempfile::TempDir,
}

impl Drop for Dts {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the scenarios look at in a task's detail.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TaskView {
    pub state: String,
    pub pos: String,
    pub message: String,
}

/// The store URL of a data directory, as `dts standalone` is given it.
pub fn store_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("dts.db").display())
}

/// CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the whole line, in clock ticks (100 a second on
    // Linux).
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

impl Dts {
    /// Starts `dts standalone` with `args` on the store in `dir`, its key
    /// `secret_key` (base64), and waits until it answers.
    pub async fn start(args: &[String], dir: tempfile::TempDir, secret_key: &str) -> Result<Self, String> {
        let store = store_url(dir.path());
        Self::spawn("standalone", &store, args, dir, secret_key, &[]).await
    }

    /// Starts `dts <command>` on `store` with `args` and `env`, its data
    /// directory `dir`, and waits until it answers.
    pub async fn spawn(
        command: &str,
        store: &str,
        args: &[String],
        dir: tempfile::TempDir,
        secret_key: &str,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let bin = std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("dts");
        if !bin.exists() {
            return Err(format!("{} is missing: build it with cargo build --release -p dts", bin.display()));
        }
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let child = std::process::Command::new(bin)
            .args([command, "--listen", &format!("127.0.0.1:{port}")])
            .args(["--data-dir", &dir.path().display().to_string(), "--store", store])
            .args(args)
            .env("DTS_AUTH_USERS", format!("{USER}:{PASSWORD}"))
            .env("DTS_SECRET_KEY", secret_key)
            .env("DTS_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let dts = Self { child, base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new(), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while dts.http.get(format!("{}/healthz", dts.base)).send().await.is_err() {
            if Instant::now() > deadline {
                return Err(format!("dts {command} did not start"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(dts)
    }

    /// Starts one on a fresh store.
    pub async fn start_fresh(args: &[String]) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        Self::start(args, dir, &dts_store::SecretCipher::generate_key_base64()).await
    }

    /// Peak resident memory of the process in MiB (VmHWM).
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    /// CPU time the process has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.child.id())
    }

    /// Resets the peak, so the next reading covers only what follows.
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// The `data` of a successful call; panics with the answer otherwise
    /// (a benchmark that cannot drive its server has nothing to report).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).basic_auth(USER, Some(PASSWORD));
        if let Some(b) = body {
            req = req.json(b);
        }
        let answer: Value = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(answer["code"], 0, "{path}: {answer}");
        answer["data"].clone()
    }

    pub async fn submit(&self, body: &Value) -> i64 {
        let data = self.call(reqwest::Method::POST, "/v1/dispatch/submit", Some(body)).await;
        data["id"].as_i64().unwrap_or_else(|| panic!("submit answered {data}"))
    }

    pub async fn task(&self, id: i64) -> TaskView {
        let data = self.call(reqwest::Method::GET, &format!("/v1/task/{id}"), None).await;
        serde_json::from_value(data).unwrap_or_else(|e| panic!("task {id}: {e}"))
    }

    pub async fn start_task(&self, id: i64) {
        self.call(reqwest::Method::POST, &format!("/v1/dispatch/start/{id}"), None).await;
    }

    /// Stops a task and waits until it has stopped.
    pub async fn stop_task(&self, id: i64) {
        self.call(reqwest::Method::POST, &format!("/v1/dispatch/stop/{id}"), None).await;
        self.wait(id, "Stopped", |t| t.state == "Stopped").await;
    }

    /// Polls the task every `every` until `pred` holds (10 minutes at
    /// most); when it held.
    pub async fn wait_every(&self, id: i64, what: &str, every: Duration, pred: impl Fn(&TaskView) -> bool) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let task = self.task(id).await;
            if pred(&task) {
                return Instant::now();
            }
            assert!(task.state != "Failed", "task failed while waiting for {what}: {}", task.message);
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(every).await;
        }
    }

    /// [`Self::wait_every`] 25 ms: for conditions timed some other way.
    pub async fn wait(&self, id: i64, what: &str, pred: impl Fn(&TaskView) -> bool) -> Instant {
        self.wait_every(id, what, Duration::from_millis(25), pred).await
    }
}
