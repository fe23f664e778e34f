//! The `dts` binary as users run it: start-up, configuration precedence,
//! first-start credentials, and clean failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dts_e2e::{dts_command, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_dts");
const SEED_AUTH: &str = "Basic cmVwbGljYXRvcjpkdHNmb3IzLjE0MTU5MjY=";

/// A `dts` process that is killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `dts` command with a clean environment (no inherited DTS_* settings).
fn dts(dir: &Path) -> Command {
    dts_command(BIN, dir)
}

fn get(port: u16, path: &str, auth: Option<&str>) -> Result<(u16, String), String> {
    send(port, "GET", path, auth, None)
}

fn send(port: u16, method: &str, path: &str, auth: Option<&str>, body: Option<&str>) -> Result<(u16, String), String> {
    let mut req = ureq::request(method, &format!("http://127.0.0.1:{port}{path}")).timeout(Duration::from_secs(5));
    if let Some(a) = auth {
        req = req.set("Authorization", a);
    }
    let res = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None => req.call(),
    };
    match res {
        Ok(r) => Ok((r.status(), r.into_string().unwrap())),
        Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap())),
        Err(e) => Err(e.to_string()),
    }
}

/// Polls `/healthz` until the server answers or the deadline passes.
fn wait_ready(proc: &mut Proc, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = get(port, "/healthz", None) {
            return;
        }
        if let Some(status) = proc.0.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = proc.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("dts exited with {status} before serving: {err}");
        }
        assert!(Instant::now() < deadline, "dts did not serve on port {port} in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(cmd: &mut Command) -> Proc {
    Proc(cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
}

/// Stops the process with SIGTERM-free means (kill) and returns its stderr.
fn stop_and_read_stderr(mut proc: Proc) -> String {
    let _ = proc.0.kill();
    let _ = proc.0.wait();
    let mut err = String::new();
    if let Some(mut e) = proc.0.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    err
}

#[test]
fn first_start_generates_a_user_once_and_its_password_works() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = spawn(dts(dir.path()).args(["standalone", "--listen", &format!("127.0.0.1:{port}")]));
    wait_ready(&mut first, port);
    let err = stop_and_read_stderr(first);
    let password = err
        .lines()
        .find_map(|l| l.strip_prefix("dts:   password: "))
        .unwrap_or_else(|| panic!("no generated password printed: {err}"))
        .trim()
        .to_owned();
    assert_eq!(password.len(), 24);
    assert!(dir.path().join("data/dts.db").exists(), "embedded store in ./data by default");

    let mut second = spawn(dts(dir.path()).args(["standalone", "--listen", &format!("127.0.0.1:{port}")]));
    wait_ready(&mut second, port);
    use base64::Engine;
    let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}")));
    let (status, body) = get(port, "/v1/task/list", Some(&good)).unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(port, "/v1/task/list", Some(SEED_AUTH)).unwrap();
    assert_eq!(status, 401, "the seed's test user is not built in");
    let err = stop_and_read_stderr(second);
    assert!(!err.contains(&password), "the password is printed only once");
    let db = std::fs::read(dir.path().join("data/dts.db")).unwrap();
    assert!(!db.windows(password.len()).any(|w| w == password.as_bytes()), "only a hash is stored");

    // Once an admin is configured, the generated one opens nothing; a
    // configured viewer does not count.
    let mut third = spawn(
        dts(dir.path())
            .args(["standalone", "--listen", &format!("127.0.0.1:{port}")])
            .env("DTS_AUTH_USERS", "dash:pw:viewer"),
    );
    wait_ready(&mut third, port);
    assert_eq!(get(port, "/v1/task/list", Some(&good)).unwrap().0, 200, "no admin configured yet");
    drop(stop_and_read_stderr(third));
    let mut fourth = spawn(
        dts(dir.path())
            .args(["standalone", "--listen", &format!("127.0.0.1:{port}")])
            .env("DTS_AUTH_USERS", "replicator:dtsfor3.1415926"),
    );
    wait_ready(&mut fourth, port);
    assert_eq!(get(port, "/v1/task/list", Some(&good)).unwrap().0, 401, "the generated admin is disabled");
    assert_eq!(get(port, "/v1/task/list", Some(SEED_AUTH)).unwrap().0, 200);
    drop(stop_and_read_stderr(fourth));
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// The envelope's `code` of a call, after checking the HTTP status matches it.
#[track_caller]
fn code_of(port: u16, method: &str, path: &str, auth: &str, body: Option<&str>) -> i64 {
    let (status, text) = send(port, method, path, Some(auth), body).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let code = v["code"].as_i64().unwrap();
    assert_eq!(i64::from(status), if code == 0 { 200 } else { code / 100 }, "{text}");
    code
}

/// Polls until `path` answers `status` for `auth` on `port` (changes reach
/// every node within a second). Slowly: each wrong login counts towards
/// the node's throttling of this address (10 a minute).
#[track_caller]
fn wait_status(port: u16, path: &str, auth: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = get(port, path, Some(auth)).unwrap().0;
        if got == status {
            return;
        }
        assert!(Instant::now() < deadline, "{path} answered {got}, not {status}, on port {port}");
        std::thread::sleep(Duration::from_millis(700));
    }
}

#[test]
fn users_managed_over_the_api_apply_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_port(), free_port());
    let control = |port: u16| {
        let mut cmd = dts(dir.path());
        cmd.args(["control", "--listen", &format!("127.0.0.1:{port}")])
            .env("DTS_CLUSTER_TOKEN", "users-test-token")
            .env("DTS_LOG", "warn,dts::audit=info");
        cmd
    };
    let mut first = spawn(&mut control(a));
    wait_ready(&mut first, a);
    let err = stop_and_read_stderr(first);
    let generated = err.lines().find_map(|l| l.strip_prefix("dts:   password: ")).expect(&err).trim().to_owned();
    let gen = basic("admin", &generated);
    // Two control planes on one store.
    let mut node_a = spawn(&mut control(a));
    let mut node_b = spawn(&mut control(b));
    wait_ready(&mut node_a, a);
    wait_ready(&mut node_b, b);

    let list = |port: u16, auth: &str| {
        let (status, text) = get(port, "/v1/users", Some(auth)).unwrap();
        assert_eq!(status, 200, "{text}");
        assert!(!text.contains("password"), "no hash or password is listed: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["data"]["users"].as_array().unwrap().clone()
    };
    let users = list(a, &gen);
    assert_eq!(users.len(), 1);
    assert_eq!((users[0]["name"].as_str(), users[0]["source"].as_str()), (Some("admin"), Some("generated")));

    // An admin created on A logs in on B; the generated admin then stops working everywhere.
    let alice = basic("alice", "alice-pass-1");
    let body = r#"{"user":{"name":"alice","password":"alice-pass-1","role":"admin"}}"#;
    assert_eq!(code_of(a, "POST", "/v1/users", &gen, Some(body)), 0);
    assert_eq!(code_of(a, "POST", "/v1/users", &alice, Some(body)), 40900, "a name is taken once");
    wait_status(b, "/v1/task/list", &alice, 200);
    wait_status(b, "/v1/task/list", &gen, 401);
    assert_eq!(get(a, "/v1/task/list", Some(&gen)).unwrap().0, 401);
    let users = list(b, &alice);
    let generated_row = users.iter().find(|u| u["name"] == "admin").unwrap();
    assert_eq!(generated_row["active"], false);

    // Bad input is refused with the field's code and changes nothing.
    for bad in [
        r#"{"user":{"name":"x","password":"short","role":"viewer"}}"#,
        r#"{"user":{"name":"x","password":"long enough","role":"root"}}"#,
        r#"{"user":{"name":"a:b","password":"long enough","role":"viewer"}}"#,
        r#"{"user":{"name":"x","password":"long enough","role":"viewer","extra":1}}"#,
        r#"{"user":{"name":"x","password":"long enough"}}"#,
    ] {
        assert_eq!(code_of(a, "POST", "/v1/users", &alice, Some(bad)), 40002, "{bad}");
    }
    assert_eq!(code_of(a, "POST", "/v1/users", &alice, Some("{")), 40001);
    assert_eq!(code_of(a, "DELETE", "/v1/users/nobody", &alice, None), 40402);

    // A viewer reads tasks, cannot manage users, and may change its own password.
    let body = r#"{"user":{"name":"dash","password":"dash-pass-1","role":"viewer"}}"#;
    assert_eq!(code_of(b, "POST", "/v1/users", &alice, Some(body)), 0);
    let dash = basic("dash", "dash-pass-1");
    wait_status(a, "/v1/task/list", &dash, 200);
    assert_eq!(code_of(a, "GET", "/v1/users", &dash, None), 40300);
    assert_eq!(code_of(a, "POST", "/v1/users", &dash, Some(body)), 40300);
    assert_eq!(code_of(a, "PUT", "/v1/users/dash", &dash, Some(r#"{"user":{"role":"admin"}}"#)), 40300);
    assert_eq!(code_of(a, "PUT", "/v1/users/alice", &dash, Some(r#"{"user":{"password":"taken-over"}}"#)), 40300);
    assert_eq!(code_of(a, "PUT", "/v1/users/dash", &dash, Some(r#"{"user":{"password":"dash-pass-2"}}"#)), 0);
    wait_status(b, "/v1/task/list", &dash, 401);
    wait_status(b, "/v1/task/list", &basic("dash", "dash-pass-2"), 200);

    // No change may leave the cluster without an admin; the generated admin can be deleted.
    assert_eq!(code_of(a, "DELETE", "/v1/users/alice", &alice, None), 40900);
    assert_eq!(code_of(a, "PUT", "/v1/users/alice", &alice, Some(r#"{"user":{"role":"operator"}}"#)), 40900);
    assert_eq!(code_of(a, "DELETE", "/v1/users/admin", &alice, None), 0);
    // Revocation reaches the other node within a second.
    assert_eq!(code_of(a, "DELETE", "/v1/users/dash", &alice, None), 0);
    wait_status(b, "/v1/task/list", &basic("dash", "dash-pass-2"), 401);
    let names: Vec<_> = list(b, &alice).iter().map(|u| u["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["alice"]);

    let err = stop_and_read_stderr(node_a) + &stop_and_read_stderr(node_b);
    for secret in ["alice-pass-1", "dash-pass-1", "dash-pass-2"] {
        assert!(!err.contains(secret), "{secret} logged");
    }
    assert!(err.contains("user created") && err.contains("user deleted"), "audit lines: {err}");
    let db = std::fs::read(dir.path().join("data/dts.db")).unwrap();
    assert!(!db.windows(12).any(|w| w == b"alice-pass-1"), "only hashes are stored");
}

#[test]
fn flags_override_variables_which_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let config = dir.path().join("dts.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{file_port}\"\ndata_dir = \"{}\"\n[[users]]\nname = \"replicator\"\npassword = \"dtsfor3.1415926\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    let mut from_file = spawn(dts(dir.path()).args(["standalone", "--config", cfg]));
    wait_ready(&mut from_file, file_port);
    assert_eq!(get(file_port, "/v1/task/list", Some(SEED_AUTH)).unwrap().0, 200);
    drop(from_file);
    assert!(dir.path().join("state/dts.db").exists(), "data_dir from the file");

    let mut from_env =
        spawn(dts(dir.path()).args(["standalone", "--config", cfg]).env("DTS_LISTEN", format!("127.0.0.1:{env_port}")));
    wait_ready(&mut from_env, env_port);
    drop(from_env);

    let mut from_flag = spawn(
        dts(dir.path())
            .args(["standalone", "--config", cfg, "--listen", &format!("127.0.0.1:{flag_port}")])
            .env("DTS_LISTEN", format!("127.0.0.1:{env_port}")),
    );
    wait_ready(&mut from_flag, flag_port);
    assert!(get(env_port, "/healthz", None).is_err(), "the variable lost to the flag");
    drop(from_flag);

    // DTS_AUTH_USERS adds users; DTS_STORE_URL picks the store.
    let store = dir.path().join("other.db");
    let mut with_env = spawn(
        dts(dir.path())
            .args(["control", "--config", cfg, "--listen", &format!("127.0.0.1:{flag_port}")])
            .env("DTS_AUTH_USERS", "ops:pw1")
            .env("DTS_CLUSTER_TOKEN", "cluster-secret")
            .env("DTS_STORE_URL", format!("sqlite://{}", store.display())),
    );
    wait_ready(&mut with_env, flag_port);
    let ops = "Basic b3BzOnB3MQ==";
    assert_eq!(get(flag_port, "/v1/task/list", Some(ops)).unwrap().0, 200);
    assert!(store.exists());
}

#[test]
fn bad_settings_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let out = dts(dir.path()).args(args).envs(envs.iter().copied()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    std::fs::write(dir.path().join("typo.toml"), "lisen = \"127.0.0.1:1\"\n").unwrap();
    let (code, err) = run(&["standalone", "--config", "typo.toml"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown field `lisen`"), "{err}");

    let (code, err) = run(&["standalone", "--config", "missing.toml"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read config file missing.toml"), "{err}");

    let (code, err) = run(&["standalone"], &[("DTS_STORE_URL", "redis://127.0.0.1")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unsupported store URL"), "{err}");

    let (code, err) = run(&["standalone"], &[("DTS_SECRET_KEY", "c2hvcnQ=")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("must be 32 bytes"), "{err}");

    let (code, err) = run(&["standalone"], &[("DTS_AUTH_USERS", "no-password")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("must be user:password"), "{err}");

    let (code, err) = run(&["worker"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("DTS_CONTROL_URLS"), "{err}");

    let (code, err) = run(&["worker", "--control", "http://127.0.0.1:1"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("DTS_CLUSTER_TOKEN"), "{err}");

    let (code, err) = run(&["control"], &[("DTS_AUTH_USERS", "a:b")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("DTS_CLUSTER_TOKEN"), "{err}");
}

#[test]
fn a_store_refuses_another_secret_key() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let key_a = String::from_utf8(dts(dir.path()).arg("gen-key").output().unwrap().stdout).unwrap();
    let key_b = String::from_utf8(dts(dir.path()).arg("gen-key").output().unwrap().stdout).unwrap();
    assert_ne!(key_a, key_b);
    let mut first = spawn(
        dts(dir.path())
            .args(["standalone", "--listen", &format!("127.0.0.1:{port}")])
            .env("DTS_SECRET_KEY", key_a.trim())
            .env("DTS_AUTH_USERS", "a:b"),
    );
    wait_ready(&mut first, port);
    drop(first);
    let out = dts(dir.path())
        .args(["standalone", "--listen", &format!("127.0.0.1:{port}")])
        .env("DTS_SECRET_KEY", key_b.trim())
        .env("DTS_AUTH_USERS", "a:b")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another secret key"), "{err}");
    assert!(!err.contains(key_b.trim()), "the key is never printed");
}

#[test]
fn hash_password_output_logs_a_user_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = dts(dir.path()).arg("hash-password").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"correct horse\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let config = dir.path().join("dts.toml");
    std::fs::write(&config, format!("[[users]]\nname = \"ops\"\npassword_hash = '{hash}'\n")).unwrap();
    let port = free_port();
    let mut server = spawn(dts(dir.path()).args([
        "standalone",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]));
    wait_ready(&mut server, port);
    use base64::Engine;
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ops:correct horse"));
    assert_eq!(get(port, "/v1/task/list", Some(&auth)).unwrap().0, 200);
    let wrong = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ops:wrong horse"));
    assert_eq!(get(port, "/v1/task/list", Some(&wrong)).unwrap().0, 401);
}
