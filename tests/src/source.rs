//! Source databases: a database of its own on the shared MariaDB, or a
//! MariaDB server of its own for tests that restart or fail it over.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::required;

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

    /// Creates a fresh database on the server at `url`
    /// (`mysql://user:pw@host:port[?client options]`).
    pub async fn create_on(url: &str) -> Self {
        let (url, params) = url.split_once('?').map_or((url, String::new()), |(u, p)| (u, format!("?{p}")));
        let url = url.to_owned();
        let rest = url.trim_start_matches("mysql://").trim_end_matches('/');
        let (userinfo, hostport) = rest.rsplit_once('@').expect("user@host in DTS_TEST_MYSQL_URL");
        let (user, password) = userinfo.split_once(':').expect("user:password in DTS_TEST_MYSQL_URL");
        let (host, port) = hostport.rsplit_once(':').expect("host:port in DTS_TEST_MYSQL_URL");
        let db = format!("src_{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let admin = mysql_async::Pool::new(format!("{url}{params}").as_str());
        {
            use mysql_async::prelude::Queryable;
            let mut conn = admin.get_conn().await.expect("connect to the test MariaDB");
            conn.query_drop(format!("CREATE DATABASE `{db}`")).await.expect("create database");
        }
        admin.disconnect().await.ok();
        let pool = mysql_async::Pool::new(format!("{url}/{db}{params}").as_str());
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
            tls: dts_core::spec::SourceTls::default(),
        }
    }
}

/// A MariaDB server of a test's own (started by `scripts/services.sh` into
/// a private folder), for tests that stop or restart it.
#[derive(Debug)]
pub struct PrivateMariaDb {
    pub url: String,
    /// The replica's URL, when started with [`PrivateMariaDb::start_replicated`].
    pub replica_url: Option<String>,
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
        Self::start_service("mariadb-single")
    }

    /// Starts one with a GTID replica of its own (`replica_url`), for
    /// failover tests.
    pub fn start_replicated() -> Option<Self> {
        Self::start_service("mariadb-replicated")
    }

    /// Starts one that accepts TLS connections only (`ca_path` names its CA).
    pub fn start_tls() -> Option<Self> {
        Self::start_service("mariadb-tls")
    }

    /// The CA certificate of a server started with [`PrivateMariaDb::start_tls`].
    pub fn ca_pem(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("mariadb-tls-certs/ca.pem")).ok()
    }

    fn start_service(service: &str) -> Option<Self> {
        if std::env::var("DTS_TEST_MYSQL_URL").is_err() {
            assert!(!required(), "DTS_TEST_MYSQL_URL is not set but DTS_REQUIRE_SERVICES=1");
            return None;
        }
        let mut me = Self { url: String::new(), replica_url: None, dir: tempfile::tempdir().expect("tempdir") };
        me.run(&["up", service]);
        let env = std::fs::read_to_string(me.dir.path().join("env")).expect("env file");
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}='")))
                .and_then(|l| l.strip_suffix('\''))
                .map(str::to_owned)
        };
        me.url = var("DTS_TEST_MYSQL_URL").expect("DTS_TEST_MYSQL_URL in env");
        if var("DTS_TEST_MYSQL_CA").is_some() {
            // The tests' own admin connections: TLS, the private CA unchecked.
            me.url.push_str("?require_ssl=true&verify_ca=false&verify_identity=false");
        }
        me.replica_url = var("DTS_TEST_MYSQL_REPLICA_URL");
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
