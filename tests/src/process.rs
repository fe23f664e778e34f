//! A `dts` process as operators run it: its own data directory, port and
//! users, killed when the test ends however it ends.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// A `dts` command with a clean environment (no inherited `DTS_*`).
pub fn dts_command(bin: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir).env("DTS_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("DTS_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A running `dts standalone`.
#[derive(Debug)]
pub struct DtsNode {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// `user:password` of an admin.
    pub admin: String,
}

impl Drop for DtsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DtsNode {
    /// Starts `dts standalone` with `users` (`name:password[:role],...`);
    /// the first one is taken as the admin.
    pub fn standalone(bin: &str, users: &str) -> Self {
        Self::standalone_with(bin, users, &[])
    }

    /// As [`Self::standalone`], with extra environment variables.
    pub fn standalone_with(bin: &str, users: &str, env: &[(&str, &str)]) -> Self {
        Self::start(bin, &["standalone"], users, env)
    }

    /// `dts <command...> --listen 127.0.0.1:PORT` in a fresh data directory
    /// (`--data-dir` is added too), with `DTS_AUTH_USERS=users` and `env`.
    pub fn start(bin: &str, command: &[&str], users: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let data = dir.path().join("data");
        let child = dts_command(bin, dir.path())
            .args(command)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir", &data.to_string_lossy()])
            .env("DTS_AUTH_USERS", users)
            // Replica ids of its tasks, apart from every other test's.
            .env("DTS_SERVER_ID_BASE", crate::random_server_id().to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let admin = users.split(',').next().unwrap_or_default().splitn(3, ':').take(2).collect::<Vec<_>>().join(":");
        let mut node = Self { child, port, dir, admin };
        node.wait_ready();
        node
    }

    /// Kills the process and returns what it wrote on stderr.
    pub fn stop_and_read_stderr(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ureq::get(&self.url("/healthz")).timeout(Duration::from_secs(2)).call().is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("dts exited with {status} before serving: {err}");
            }
            assert!(Instant::now() < deadline, "dts did not serve on port {} in time", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `(status, body)` of a request as `user:password` (`None`: anonymous).
    pub fn call(&self, method: &str, path: &str, auth: Option<&str>, body: Option<&str>) -> (u16, String) {
        use base64::Engine;
        let mut req = ureq::request(method, &self.url(path)).timeout(Duration::from_secs(10));
        if let Some(a) = auth {
            let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(a));
            req = req.set("Authorization", &value);
        }
        let res = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        match res {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }
}
