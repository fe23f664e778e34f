//! Settings from flags, `DTS_*` variables and a TOML file, in that order of
//! precedence, then the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use dts_control::auth::{check_name, parse_users_env, Credential, Role, UserEntry};
use dts_core::spec::Secret;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./data";

/// Options of the serving commands. clap reads the flag, else the variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address the REST API listens on [default: 127.0.0.1:8080]
    #[arg(long, env = "DTS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address returned to clients as this node's `addr`/`service_addr` [default: the listen address]
    #[arg(long, env = "DTS_ADVERTISE")]
    pub advertise: Option<String>,
    /// Task store URL: sqlite://PATH, postgres://..., mysql://... [default: sqlite://DATA_DIR/dts.db]
    #[arg(long = "store", env = "DTS_STORE_URL", hide_env_values = true)]
    pub store_url: Option<String>,
    /// Directory for the embedded store and the generated secret key [default: ./data]
    #[arg(long, env = "DTS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Base64 AES-256 key that encrypts source passwords in the store
    #[arg(long, env = "DTS_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// File holding the base64 secret key [default: DATA_DIR/secret.key, created if missing]
    #[arg(long, env = "DTS_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// HTTP worker threads [default: number of CPUs, at most 4]
    #[arg(long, env = "DTS_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
    /// Partitions of Kafka topics dts creates [default: 3]
    #[arg(long, env = "DTS_TOPIC_PARTITIONS")]
    pub topic_partitions: Option<i32>,
    /// Replication factor of Kafka topics dts creates [default: 1]
    #[arg(long, env = "DTS_TOPIC_REPLICATION_FACTOR")]
    pub topic_replication_factor: Option<i32>,
    /// Replica server id of task N is this plus N; keep it clear of your real replicas' ids [default: 1000000000]
    #[arg(long, env = "DTS_SERVER_ID_BASE")]
    pub server_id_base: Option<u32>,
    /// Rows per snapshot chunk of `incr: false` tasks [default: 5000]
    #[arg(long, env = "DTS_SNAPSHOT_CHUNK_ROWS")]
    pub snapshot_chunk_rows: Option<usize>,
    /// Connections per task reading snapshot chunks ahead of the stream [default: 1]
    #[arg(long, env = "DTS_SNAPSHOT_READERS")]
    pub snapshot_readers: Option<usize>,
    /// Shared secret between control planes and workers (required by `control` and `worker`)
    #[arg(long, env = "DTS_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
    /// Worker heartbeat lease in ms: a silent worker loses its tasks after this [default: 5000]
    #[arg(long, env = "DTS_LEASE_MS")]
    pub lease_ms: Option<i64>,
    /// PEM certificate chain: with --tls-key, the listener speaks HTTPS only (re-read when the files change)
    #[arg(long, env = "DTS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "DTS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): with it, every client must present a certificate it signed (mutual TLS)
    #[arg(long, env = "DTS_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

/// How a node reaches the control planes (`worker`, `gateway`).
#[derive(Debug, Clone, Default, Args)]
pub struct ControlArgs {
    /// Control-plane addresses, comma-separated (http://host:port)
    #[arg(long = "control", env = "DTS_CONTROL_URLS", value_delimiter = ',')]
    pub control: Vec<String>,
    /// PEM CA certificate(s) that signed the control planes' certificates (for https:// control URLs)
    #[arg(long, env = "DTS_CONTROL_CA")]
    pub control_ca: Option<PathBuf>,
    /// PEM client certificate chain this node presents to control planes that require one
    #[arg(long, env = "DTS_CONTROL_CERT", requires = "control_key")]
    pub control_cert: Option<PathBuf>,
    /// PEM private key of --control-cert
    #[arg(long, env = "DTS_CONTROL_KEY", requires = "control_cert")]
    pub control_key: Option<PathBuf>,
}

/// Options of `dts worker`, on top of the shared ones.
#[derive(Debug, Clone, Default, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub control: ControlArgs,
    /// Stable id of this node [default: generated once into DATA_DIR/worker.id]
    #[arg(long, env = "DTS_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Most tasks this node runs at once [default: 16]
    #[arg(long, env = "DTS_WORKER_CAPACITY")]
    pub capacity: Option<i64>,
}

/// Options of `dts gateway`: an ingest-only node fed by the control planes.
#[derive(Debug, Clone, Default, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub control: ControlArgs,
    /// Stable id of this node [default: generated once into DATA_DIR/worker.id]
    #[arg(long, env = "DTS_WORKER_ID")]
    pub worker_id: Option<String>,
}

/// The TOML file. Unknown keys are errors, so a typo never goes unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub advertise: Option<String>,
    pub store: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub secret_key: Option<String>,
    pub secret_key_file: Option<PathBuf>,
    pub http_workers: Option<usize>,
    pub topic_partitions: Option<i32>,
    pub topic_replication_factor: Option<i32>,
    pub server_id_base: Option<u32>,
    pub snapshot_chunk_rows: Option<usize>,
    pub snapshot_readers: Option<usize>,
    pub cluster_token: Option<Secret>,
    pub lease_ms: Option<i64>,
    pub control: Option<Vec<String>>,
    pub worker_id: Option<String>,
    pub capacity: Option<i64>,
    pub control_ca: Option<PathBuf>,
    pub control_cert: Option<PathBuf>,
    pub control_key: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    /// Largest request body in bytes [default: 1 MiB].
    pub max_body_bytes: Option<usize>,
    /// Largest `per_page` of the task list [default: 1000].
    pub max_per_page: Option<i64>,
    /// API users; prefer `password_hash` (from `dts hash-password`).
    #[serde(default)]
    pub users: Vec<FileUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUser {
    pub name: String,
    pub password: Option<Secret>,
    pub password_hash: Option<String>,
    /// `admin` (the default), `operator` or `viewer`.
    pub role: Option<Role>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// Where the secret key comes from, in order of preference.
#[derive(Debug)]
pub enum KeySource {
    Inline(Secret),
    File(PathBuf),
}

/// What the local worker needs from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSettings {
    pub topic_partitions: i32,
    pub topic_replication_factor: i32,
    pub server_id_base: u32,
    pub snapshot_chunk_rows: usize,
    pub snapshot_readers: usize,
}

/// Every setting resolved.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub advertise: String,
    pub store_url: Secret,
    pub data_dir: PathBuf,
    pub key: KeySource,
    pub http_workers: usize,
    pub limits: dts_control::Limits,
    pub users: Vec<UserEntry>,
    pub worker: WorkerSettings,
    pub cluster_token: Option<Secret>,
    pub lease_ms: i64,
    /// Certificate and key files: the listener speaks HTTPS only.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// CA of the client certificates the listener requires.
    pub tls_client_ca: Option<PathBuf>,
}

pub fn load_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else { return Ok(FileConfig::default()) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.display().to_string(), reason: e.to_string() })
}

impl Settings {
    /// Flag/env (already merged by clap) over file over default.
    pub fn resolve(args: ServeArgs, file: FileConfig, users_env: Option<String>) -> Result<Self, ConfigError> {
        let listen = match args.listen.or(file.listen) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN.parse().map_err(|_| ConfigError::Invalid("bad default listen address".into()))?,
        };
        let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let store_url =
            args.store_url.or(file.store).unwrap_or_else(|| format!("sqlite://{}", data_dir.join("dts.db").display()));
        let key = match (args.secret_key.or(file.secret_key), args.secret_key_file.or(file.secret_key_file)) {
            (Some(inline), _) => KeySource::Inline(Secret::new(inline)),
            (None, Some(path)) => KeySource::File(path),
            (None, None) => KeySource::File(data_dir.join("secret.key")),
        };
        let http_workers = args
            .http_workers
            .or(file.http_workers)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get().min(4)));
        // The worker's defaults are declared once, in dts-worker.
        let d = dts_worker::WorkerConfig::new("defaults");
        let worker = WorkerSettings {
            topic_partitions: args.topic_partitions.or(file.topic_partitions).unwrap_or(d.topic_partitions),
            topic_replication_factor: args
                .topic_replication_factor
                .or(file.topic_replication_factor)
                .unwrap_or(d.replication_factor),
            server_id_base: args.server_id_base.or(file.server_id_base).unwrap_or(d.server_id_base),
            snapshot_chunk_rows: args.snapshot_chunk_rows.or(file.snapshot_chunk_rows).unwrap_or(d.snapshot_chunk_rows),
            snapshot_readers: args.snapshot_readers.or(file.snapshot_readers).unwrap_or(d.snapshot_readers),
        };
        if worker.topic_partitions < 1
            || worker.topic_replication_factor < 1
            || worker.snapshot_chunk_rows < 1
            || !(1..=64).contains(&worker.snapshot_readers)
        {
            return Err(ConfigError::Invalid(
                "topic_partitions, topic_replication_factor and snapshot_chunk_rows must be at least 1, \
                 snapshot_readers from 1 to 64"
                    .into(),
            ));
        }
        let lease_ms = args.lease_ms.or(file.lease_ms).unwrap_or(5_000);
        if lease_ms < 1_000 {
            return Err(ConfigError::Invalid("lease_ms must be at least 1000".into()));
        }
        let mut limits = dts_control::Limits::default();
        if let Some(n) = file.max_body_bytes {
            limits.max_body_bytes = n;
        }
        if let Some(n) = file.max_per_page {
            if n < 1 {
                return Err(ConfigError::Invalid("max_per_page must be at least 1".into()));
            }
            limits.max_per_page = n;
        }
        let tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(ConfigError::Invalid("tls_cert and tls_key go together: set both or neither".into())),
        };
        let tls_client_ca = args.tls_client_ca.or(file.tls_client_ca);
        if tls_client_ca.is_some() && tls.is_none() {
            return Err(ConfigError::Invalid(
                "tls_client_ca needs tls_cert and tls_key: client certificates need TLS".into(),
            ));
        }
        let mut users = Vec::new();
        for u in file.users {
            let credential = match (u.password, u.password_hash) {
                (Some(pw), None) => Credential::Plain(pw),
                (None, Some(hash)) => Credential::Hash(hash),
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "user {:?} needs exactly one of password or password_hash",
                        u.name
                    )))
                }
            };
            check_name(&u.name).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            users.push(UserEntry { name: u.name, credential, role: u.role.unwrap_or(Role::Admin) });
        }
        if let Some(text) = users_env {
            users.extend(parse_users_env(&text).map_err(|e| ConfigError::Invalid(e.to_string()))?);
        }
        Ok(Self {
            listen,
            advertise: args.advertise.unwrap_or_else(|| file.advertise.unwrap_or_else(|| listen.to_string())),
            store_url: Secret::new(store_url),
            data_dir,
            key,
            http_workers,
            limits,
            users,
            worker,
            cluster_token: args.cluster_token.map(Secret::new).or(file.cluster_token),
            lease_ms,
            tls,
            tls_client_ca,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nstore = \"sqlite:///tmp/x.db\"\ndata_dir = \"/var/lib/dts\"\n\
             [[users]]\nname = \"ops\"\npassword = \"pw\"\n",
        )
        .unwrap();
        let args = ServeArgs { listen: Some("127.0.0.1:9100".parse().unwrap()), ..Default::default() };
        let s = Settings::resolve(args, file, Some("a:b".into())).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(s.advertise, "127.0.0.1:9100");
        assert_eq!(s.store_url.expose(), "sqlite:///tmp/x.db");
        assert!(matches!(s.key, KeySource::File(ref p) if p == Path::new("/var/lib/dts/secret.key")));
        assert_eq!(s.users.len(), 2);

        let d = Settings::resolve(ServeArgs::default(), FileConfig::default(), None).unwrap();
        assert_eq!(d.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(d.store_url.expose(), "sqlite://./data/dts.db");
    }

    #[test]
    fn worker_defaults_come_from_the_worker_and_help_says_them() {
        let d = dts_worker::WorkerConfig::new("defaults");
        let s = Settings::resolve(ServeArgs::default(), FileConfig::default(), None).unwrap().worker;
        assert_eq!(
            (s.topic_partitions, s.topic_replication_factor, s.server_id_base),
            (d.topic_partitions, d.replication_factor, d.server_id_base)
        );
        assert_eq!((s.snapshot_chunk_rows, s.snapshot_readers), (d.snapshot_chunk_rows, d.snapshot_readers));
        // `--help` states them in words: keep the words true.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let cli = <Cli as clap::CommandFactory>::command();
        let help = |id: &str| {
            cli.get_arguments().find(|a| a.get_id() == id).and_then(|a| a.get_help()).map(ToString::to_string)
        };
        for (id, value) in [
            ("topic_partitions", d.topic_partitions.to_string()),
            ("topic_replication_factor", d.replication_factor.to_string()),
            ("server_id_base", d.server_id_base.to_string()),
            ("snapshot_chunk_rows", d.snapshot_chunk_rows.to_string()),
            ("snapshot_readers", d.snapshot_readers.to_string()),
        ] {
            let text = help(id).unwrap_or_default();
            assert!(text.ends_with(&format!("[default: {value}]")), "--{id}: {text}");
        }
    }

    #[test]
    fn the_shipped_example_configs_parse() {
        for text in [
            include_str!("../../../deploy/config/dts.example.toml"),
            include_str!("../../../deploy/config/cluster/control.toml"),
            include_str!("../../../deploy/config/cluster/worker.toml"),
        ] {
            let file: FileConfig = toml::from_str(text).unwrap();
            Settings::resolve(ServeArgs::default(), file, None).unwrap();
        }
        let worker: FileConfig = toml::from_str(include_str!("../../../deploy/config/cluster/worker.toml")).unwrap();
        assert_eq!(worker.control.map(|c| c.len()), Some(3));
        assert_eq!(worker.capacity, Some(32));
    }

    #[test]
    fn bad_files_and_users_are_refused() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
        let both: FileConfig =
            toml::from_str("[[users]]\nname = \"a\"\npassword = \"x\"\npassword_hash = \"y\"\n").unwrap();
        assert!(Settings::resolve(ServeArgs::default(), both, None).is_err());
        assert!(Settings::resolve(ServeArgs::default(), FileConfig::default(), Some("nopw".into())).is_err());
    }
}
