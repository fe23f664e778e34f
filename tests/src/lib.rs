//! Shared harness of the end-to-end tests: real task stores on every backend
//! and the real API over real HTTP.
//!
//! Servers are found through environment variables that
//! `scripts/services.sh up` writes to `.services/env`:
//! - `DTS_TEST_MYSQL_URL`: admin URL of a MariaDB/MySQL server;
//! - `DTS_TEST_MYSQL_NOMETA_URL`: one with `binlog_row_metadata=NO_LOG`;
//! - `DTS_TEST_PG_URL`: admin URL of a PostgreSQL server;
//! - `DTS_TEST_KAFKA_ADDR`: a Kafka-protocol broker.
//!
//! A backend whose variable is unset is skipped with a notice, unless
//! `DTS_REQUIRE_SERVICES=1` (set by `scripts/test.sh` and CI), where a
//! missing server fails the test: a green run then means every backend ran.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dts_control::auth::{parse_users_env, Authenticator};
use dts_control::{AppState, Limits, Placement};
use dts_store::{SecretCipher, Store};
use sqlx::Executor;

/// The credentials of the seed's examples.
pub const SEED_USER: &str = "replicator";
pub const SEED_PASSWORD: &str = "dtsfor3.1415926";
pub const SEED_AUTH_HEADER: &str = "Basic cmVwbGljYXRvcjpkdHNmb3IzLjE0MTU5MjY=";

/// The seed's submit body, as its curl example sends it.
pub const SEED_BODY: &str = r#"{"task":{"source":{"host":"127.0.0.1","port":5306,"username":"xes_replicator","password":"IYQBXGil84d44ee92cLjLHankV2rVyCg+"},"kafka":{"addr":"127.0.0.1:9092","topic":"replicator_test","flat_format":false},"filters":[{"dbname":"oa_data_service","match":"/xes_class_students_\\d+/","filter":""},{"dbname":"oa_data_service","match":"check_delay","filter":""}],"incr":true}}"#;
pub const SEED_PASSWORD_IN_BODY: &str = "IYQBXGil84d44ee92cLjLHankV2rVyCg+";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

/// A store of its own for one test, and what is needed to look inside it.
#[derive(Debug)]
pub struct TestStore {
    pub store: Store,
    pub url: String,
    pub key: String,
    _dir: tempfile::TempDir,
}

fn required() -> bool {
    std::env::var("DTS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn unique_name() -> String {
    format!("dts_t_{:016x}", rand::random::<u64>())
}

/// The URL of a fresh, empty database on `backend`, or `None` to skip.
pub async fn fresh_database_url(backend: Backend, dir: &std::path::Path) -> Option<String> {
    let var = match backend {
        Backend::Sqlite => return Some(format!("sqlite://{}", dir.join("dts.db").display())),
        Backend::Postgres => "DTS_TEST_PG_URL",
        Backend::MySql => "DTS_TEST_MYSQL_URL",
    };
    let Ok(admin) = std::env::var(var) else {
        assert!(!required(), "{var} is not set but DTS_REQUIRE_SERVICES=1: start scripts/services.sh up");
        eprintln!("skipped on {backend:?}: {var} is not set (run scripts/services.sh up)");
        return None;
    };
    let admin = admin.trim_end_matches('/').to_owned();
    let name = unique_name();
    sqlx::any::install_default_drivers();
    let admin_db = match backend {
        Backend::Postgres => format!("{admin}/postgres"),
        _ => admin.clone(),
    };
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&admin_db).await.expect(var);
    pool.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create database");
    pool.close().await;
    Some(format!("{admin}/{name}"))
}

/// Opens a store on a fresh database; `None` when the backend is skipped.
pub async fn fresh_store(backend: Backend) -> Option<TestStore> {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(backend, dir.path()).await?;
    let key = SecretCipher::generate_key_base64();
    let store = Store::open(&url, SecretCipher::from_base64(&key).unwrap()).await.expect("open store");
    Some(TestStore { store, url, key, _dir: dir })
}

/// The Kafka-protocol broker's bootstrap address, or `None` to skip.
pub fn kafka_addr() -> Option<String> {
    match std::env::var("DTS_TEST_KAFKA_ADDR") {
        Ok(addr) => Some(addr),
        Err(_) => {
            assert!(!required(), "DTS_TEST_KAFKA_ADDR is not set but DTS_REQUIRE_SERVICES=1");
            eprintln!("skipped: DTS_TEST_KAFKA_ADDR is not set (run scripts/services.sh up)");
            None
        }
    }
}

/// A database of its own on the test MariaDB (row binlog, GTID), with the
/// admin connection details a task's `source` needs.
#[derive(Debug)]
pub struct SourceDb {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub db: String,
    pub pool: mysql_async::Pool,
}

impl SourceDb {
    /// Creates a fresh database; `None` to skip when no MariaDB is configured.
    pub async fn create() -> Option<Self> {
        Self::create_from("DTS_TEST_MYSQL_URL").await
    }

    /// A fresh database on the MariaDB that logs no row metadata (no column
    /// names in the binlog), `DTS_TEST_MYSQL_NOMETA_URL`.
    pub async fn create_without_metadata() -> Option<Self> {
        Self::create_from("DTS_TEST_MYSQL_NOMETA_URL").await
    }

    async fn create_from(var: &str) -> Option<Self> {
        let Ok(url) = std::env::var(var) else {
            assert!(!required(), "{var} is not set but DTS_REQUIRE_SERVICES=1");
            eprintln!("skipped: {var} is not set (run scripts/services.sh up)");
            return None;
        };
        Some(Self::create_on(&url).await)
    }

    /// Creates a fresh database on the server at `url` (`mysql://user:pw@host:port`).
    pub async fn create_on(url: &str) -> Self {
        let url = url.to_owned();
        let rest = url.trim_start_matches("mysql://").trim_end_matches('/');
        let (userinfo, hostport) = rest.rsplit_once('@').expect("user@host in DTS_TEST_MYSQL_URL");
        let (user, password) = userinfo.split_once(':').expect("user:password in DTS_TEST_MYSQL_URL");
        let (host, port) = hostport.rsplit_once(':').expect("host:port in DTS_TEST_MYSQL_URL");
        let db = format!("src_{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let admin = mysql_async::Pool::new(url.as_str());
        {
            use mysql_async::prelude::Queryable;
            let mut conn = admin.get_conn().await.expect("connect to the test MariaDB");
            conn.query_drop(format!("CREATE DATABASE `{db}`")).await.expect("create database");
        }
        admin.disconnect().await.ok();
        let pool = mysql_async::Pool::new(format!("{url}/{db}").as_str());
        Self {
            host: host.to_owned(),
            port: port.parse().expect("port"),
            user: user.to_owned(),
            password: password.to_owned(),
            db,
            pool,
        }
    }

    /// Runs statements in order on one connection.
    pub async fn exec(&self, statements: &[&str]) {
        use mysql_async::prelude::Queryable;
        let mut conn = self.pool.get_conn().await.expect("connect");
        for s in statements {
            conn.query_drop(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }

    pub fn source_config(&self, server_id: u32) -> dts_source::SourceConfig {
        dts_source::SourceConfig {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: dts_core::spec::Secret::new(self.password.clone()),
            server_id,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A MariaDB server of a test's own (started by `scripts/services.sh` into
/// a private folder), for tests that stop or restart it.
#[derive(Debug)]
pub struct PrivateMariaDb {
    pub url: String,
    dir: tempfile::TempDir,
}

impl PrivateMariaDb {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
    }

    fn run(&self, args: &[&str]) {
        let status = std::process::Command::new(Self::script())
            .args(args)
            .env("DTS_SERVICES_DIR", self.dir.path())
            .status()
            .expect("run scripts/services.sh");
        assert!(status.success(), "scripts/services.sh {args:?} failed");
    }

    /// Starts one; `None` to skip where MariaDB tests are not required and
    /// no server is configured.
    pub fn start() -> Option<Self> {
        if std::env::var("DTS_TEST_MYSQL_URL").is_err() {
            assert!(!required(), "DTS_TEST_MYSQL_URL is not set but DTS_REQUIRE_SERVICES=1");
            return None;
        }
        let mut me = Self { url: String::new(), dir: tempfile::tempdir().expect("tempdir") };
        me.run(&["up", "mariadb"]);
        let env = std::fs::read_to_string(me.dir.path().join("env")).expect("env file");
        let url = env
            .lines()
            .find_map(|l| l.strip_prefix("export DTS_TEST_MYSQL_URL='"))
            .and_then(|l| l.strip_suffix('\''))
            .expect("DTS_TEST_MYSQL_URL in env")
            .to_owned();
        me.url = url;
        Some(me)
    }

    /// Stops the server and starts it again with its data.
    pub fn restart(&self) {
        self.run(&["restart", "mariadb"]);
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        let _ =
            std::process::Command::new(Self::script()).arg("down").env("DTS_SERVICES_DIR", self.dir.path()).status();
    }
}

/// A random replica server id, so parallel tests never share one.
pub fn random_server_id() -> u32 {
    1_000_000 + (rand::random::<u32>() % 1_000_000_000)
}

/// One consumed Kafka message.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    /// Producer create time (ms): when dts handed the message to Kafka.
    pub timestamp_ms: i64,
    pub offset: i64,
    pub key: String,
    pub payload: serde_json::Value,
}

/// Reads `topic` from the beginning of every partition until `expect`
/// messages arrived or 30 s passed. Returns them in (partition, offset) order.
pub fn read_topic(addr: &str, topic: &str, expect: usize) -> Vec<Consumed> {
    read_until(addr, &[topic], |m| m.len() >= expect)
}

/// Reads `topics` from the beginning (partitions assigned directly: no
/// group join to wait for) until `done` holds or 120 s pass (reads of a
/// million messages on a busy machine take a while; the condition ends it).
pub fn read_until(addr: &str, topics: &[&str], done: impl Fn(&[Consumed]) -> bool) -> Vec<Consumed> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", unique_topic("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut tpl = rdkafka::TopicPartitionList::new();
    for topic in topics {
        // The worker creates topics on first use: wait until this one exists.
        let partitions = loop {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
            let n = metadata.topics().first().filter(|t| t.error().is_none()).map_or(0, |t| t.partitions().len());
            if n > 0 || std::time::Instant::now() >= deadline {
                break n;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Beginning).expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    while !done(&out) && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(Consumed {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                offset: m.offset(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                payload: serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(serde_json::Value::Null),
            });
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    out
}

/// Ids whose message keys (their decimal text, as `primary_key` mode keys
/// them) land on every one of `partitions` partitions: written after
/// everything else, seeing them all means a topic was read to its end.
pub fn fence_ids(partitions: u32) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    let mut id = 2_000_000_000_i64;
    while covered.len() < partitions as usize {
        if covered.insert(dts_pipeline::murmur2::partition_for(id.to_string().as_bytes(), partitions)) {
            ids.push(id);
        }
        id += 1;
    }
    ids
}

/// Writes one fence row per partition (3 partitions) into `fence (id BIGINT
/// PRIMARY KEY)`; returns their ids.
pub async fn write_fences(src: &SourceDb) -> Vec<i64> {
    let fences = fence_ids(3);
    let values: Vec<String> = fences.iter().map(|id| format!("({id})")).collect();
    src.exec(&[&format!("INSERT INTO fence VALUES {}", values.join(","))]).await;
    fences
}

/// Reads `topic` until every fence row arrived, i.e. to its end. The check
/// runs only when a fence message arrives, so reading stays linear.
pub fn read_to_fence(addr: &str, topic: &str, fences: &[i64]) -> Vec<Consumed> {
    let want: std::collections::BTreeSet<i64> = fences.iter().copied().collect();
    let is_fence = |x: &Consumed| x.payload["source"]["table"] == "fence";
    read_until(addr, &[topic], |m| {
        m.last().is_some_and(is_fence)
            && want.is_subset(
                &m.iter().filter(|x| is_fence(x)).filter_map(|x| x.payload["after"]["id"].as_i64()).collect(),
            )
    })
}

/// Checks the token-bucket bound on producer timestamps: in every window
/// starting at a message, at most `capacity + rate * t` messages (plus one
/// for millisecond rounding).
pub fn assert_rate_bound(timestamps_ms: &[i64], rate: f64, capacity: f64) {
    let mut ts = timestamps_ms.to_vec();
    ts.sort_unstable();
    for (i, start) in ts.iter().enumerate() {
        for (j, end) in ts.iter().enumerate().skip(i) {
            let t = (end - start) as f64 / 1000.0;
            let count = (j - i + 1) as f64;
            assert!(count <= capacity + rate * t + 1.0, "{count} rows in {t:.3}s (rate {rate}, capacity {capacity})");
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some` or `secs` pass.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}_{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// A running API server on an ephemeral loopback port.
#[derive(Debug)]
pub struct TestApi {
    pub addr: SocketAddr,
    pub db: TestStore,
    handle: actix_web::dev::ServerHandle,
}

/// A response: HTTP status, headers we check, and the parsed envelope.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
    pub raw: String,
    pub content_type: String,
    pub request_id: Option<String>,
    pub www_authenticate: Option<String>,
}

impl Reply {
    pub fn code(&self) -> i64 {
        self.body["code"].as_i64().unwrap_or(-1)
    }
    pub fn data(&self) -> &serde_json::Value {
        &self.body["data"]
    }
    /// Asserts the seed's envelope shape and a successful code.
    #[track_caller]
    pub fn expect_ok(&self) -> &serde_json::Value {
        assert_eq!((self.status, self.code()), (200, 0), "{}", self.raw);
        assert_eq!(self.body["message"], "0");
        assert_eq!(self.body["ttl"], 1);
        self.data()
    }
    /// Asserts an error envelope with `code` and a non-empty message.
    #[track_caller]
    pub fn expect_error(&self, code: dts_core::ErrorCode) {
        assert_eq!(self.code(), i64::from(code.number()), "{}", self.raw);
        assert_eq!(self.status, code.http_status(), "{}", self.raw);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty() && m != "0"), "{}", self.raw);
        assert_eq!(self.body["ttl"], 1);
        assert!(self.body["data"].is_null(), "{}", self.raw);
    }
}

impl TestApi {
    /// Starts the API on a fresh store of `backend` with the seed's user.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, Limits::default()).await
    }

    pub async fn start_with(backend: Backend, limits: Limits) -> Option<Self> {
        let db = fresh_store(backend).await?;
        let users = parse_users_env(&format!("{SEED_USER}:{SEED_PASSWORD}")).unwrap();
        let state = AppState {
            store: db.store.clone(),
            auth: Arc::new(Authenticator::new(users).unwrap()),
            placement: Placement::Local { worker_id: "test-node".into(), service_addr: "127.0.0.1:8080".into() },
            limits,
            cluster: None,
        };
        let server = actix_web::HttpServer::new(move || dts_control::app(state.clone()))
            .workers(2)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Some(Self { addr, db, handle })
    }

    /// Sends a request with the seed's credentials.
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.call_as(method, path, body, Some(SEED_AUTH_HEADER)).await
    }

    /// Sends a request with the given `Authorization` header (or none). The
    /// blocking client runs off the runtime so the server keeps serving.
    pub async fn call_as(&self, method: &str, path: &str, body: Option<&str>, auth: Option<&str>) -> Reply {
        let url = format!("http://{}{}", self.addr, path);
        let (method, body, auth) = (method.to_owned(), body.map(str::to_owned), auth.map(str::to_owned));
        tokio::task::spawn_blocking(move || {
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
            let mut req = agent.request(&method, &url);
            if let Some(auth) = auth {
                req = req.set("Authorization", &auth);
            }
            let result = match body {
                Some(b) => req.set("Content-Type", "application/json").send_string(&b),
                None => req.call(),
            };
            let resp = match result {
                Ok(r) | Err(ureq::Error::Status(_, r)) => r,
                Err(e) => panic!("{method} {url}: {e}"),
            };
            let status = resp.status();
            let content_type = resp.header("content-type").unwrap_or_default().to_owned();
            let request_id = resp.header("x-request-id").map(str::to_owned);
            let www_authenticate = resp.header("www-authenticate").map(str::to_owned);
            let raw = resp.into_string().unwrap();
            let body = serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
            Reply { status, body, raw, content_type, request_id, www_authenticate }
        })
        .await
        .unwrap()
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.db.store.close().await;
    }
}

/// The API, a worker running its tasks, the source database and the broker.
#[derive(Debug)]
pub struct Rig {
    pub api: TestApi,
    pub src: SourceDb,
    pub kafka: String,
    /// Task N replicates as server id `server_id_base + N`.
    pub server_id_base: u32,
    stop_worker: tokio::sync::watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
}

impl Rig {
    pub async fn start() -> Option<Self> {
        let src = SourceDb::create().await?;
        Self::start_with(src).await
    }

    /// A rig reading from `src`.
    pub async fn start_with(src: SourceDb) -> Option<Self> {
        let kafka = kafka_addr()?;
        let api = TestApi::start(Backend::Sqlite).await?;
        let mut cfg = dts_worker::WorkerConfig::new("test-node");
        cfg.poll_interval = Duration::from_millis(100);
        cfg.checkpoint_interval = Duration::from_millis(100);
        let server_id_base = random_server_id();
        cfg.server_id_base = server_id_base;
        let (stop_worker, stopped) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(dts_worker::Worker::new(api.db.store.clone(), cfg).run(stopped));
        Some(Self { api, src, kafka, server_id_base, stop_worker, worker })
    }

    /// A task body like the seed's, pointing at the test servers.
    pub fn task(&self, kafka: serde_json::Value, filters: serde_json::Value) -> String {
        serde_json::json!({"task": {
            "source": {"host": self.src.host, "port": self.src.port, "username": self.src.user, "password": self.src.password},
            "kafka": kafka,
            "filters": filters,
            "incr": true
        }})
        .to_string()
    }

    pub async fn submit(&self, body: &str) -> i64 {
        let r = self.api.call("POST", "/v1/dispatch/submit", Some(body)).await;
        r.expect_ok()["id"].as_i64().unwrap()
    }

    /// The task's list entry once `pred` holds for it; on timeout, fails
    /// with the entry as it last was.
    pub async fn wait_task(&self, id: i64, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.api.call("GET", "/v1/task/list?per_page=1000", None).await;
            let tasks = r.expect_ok()["tasks"].as_array().cloned().unwrap_or_default();
            let task = tasks.into_iter().find(|t| t["id"] == id);
            if let Some(t) = task.as_ref().filter(|t| pred(t)) {
                return t.clone();
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}; task {id} is {task:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first `n` messages of `topic` (fewer if 30 s pass).
    pub async fn messages(&self, topic: &str, n: usize) -> Vec<Consumed> {
        let (addr, topic) = (self.kafka.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || read_topic(&addr, &topic, n)).await.expect("reader")
    }

    /// Submits a task and waits until it streams from a position.
    pub async fn submit_running(&self, body: &str) -> i64 {
        let id = self.submit(body).await;
        self.wait_task(id, "Running with a position", |t| t["state"] == "Running" && t["pos"] != "").await;
        id
    }

    pub async fn stop(self) {
        let _ = self.stop_worker.send(true);
        let _ = self.worker.await;
        self.api.stop().await;
    }
}

/// Generates one `#[tokio::test]` per backend for each listed async test
/// function taking the harness value `$arg` built by `$make`.
#[macro_export]
macro_rules! per_backend {
    ($make:path => $($name:ident),* $(,)?) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() {
                   if let Some(h) = $make($crate::Backend::Sqlite).await { super::$name(h).await }
               } )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() {
                   if let Some(h) = $make($crate::Backend::Postgres).await { super::$name(h).await }
               } )*
        }
        mod mysql {
            #[allow(unused_imports)]
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() {
                   if let Some(h) = $make($crate::Backend::MySql).await { super::$name(h).await }
               } )*
        }
    };
}
