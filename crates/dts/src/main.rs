//! `dts`: the one binary. `standalone` runs the control plane and a local
//! worker in one process; `control` runs the control plane alone.

mod config;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use dts_control::auth::{generate_password, hash_password, Authenticator, Credential, UserEntry};
use dts_control::{AppState, Placement};
use dts_store::users::StoredUser;
use dts_store::{redact_url, SecretCipher, Store};
use dts_worker::{Worker, WorkerConfig};
use tracing_subscriber::EnvFilter;

use crate::config::{load_file, KeySource, ServeArgs, Settings};

/// The worker id of the local worker in `dts standalone`.
const STANDALONE_WORKER: &str = "standalone";

/// Name of the user generated at first start when none is configured.
const BOOTSTRAP_USER: &str = "admin";

#[derive(Debug, Parser)]
#[command(name = "dts", version, about = "MySQL/MariaDB binlog to Kafka data transmission service")]
struct Cli {
    /// TOML config file; flags and DTS_* variables override its values
    #[arg(long, global = true, env = "DTS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Control plane and a local worker in one process (embedded SQLite store by default)
    Standalone(ServeArgs),
    /// Control plane only: the REST API over a shared store
    Control(ServeArgs),
    /// A worker node that runs tasks dispatched by the control plane
    Worker,
    /// Read a password on stdin and print its argon2id hash for the config file
    HashPassword,
    /// Print a new random secret key (base64) for DTS_SECRET_KEY
    GenKey,
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("secret key: {0}")]
    Key(#[from] dts_store::KeyError),
    #[error("task store {url}: {source}")]
    Store { url: String, source: dts_store::StoreError },
    #[error("{0}")]
    Other(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Standalone(args) => serve(cli.config, args, Mode::Standalone),
        Command::Control(args) => serve(cli.config, args, Mode::Control),
        Command::Worker => Err(RunError::Other(
            "`dts worker` nodes are not available in this version yet; run `dts standalone`".into(),
        )),
        Command::HashPassword => hash_from_stdin(),
        Command::GenKey => {
            emit(&SecretCipher::generate_key_base64());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("dts: {e}");
            ExitCode::from(2)
        }
    }
}

/// Writes a command's result to stdout (the only place the binary does).
fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("DTS_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn hash_from_stdin() -> Result<(), RunError> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| RunError::Other(e.to_string()))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(RunError::Other("no password on stdin".into()));
    }
    emit(&hash_password(password).map_err(RunError::Other)?);
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Standalone,
    Control,
}

fn serve(config: Option<PathBuf>, args: ServeArgs, mode: Mode) -> Result<(), RunError> {
    let file = load_file(config.as_deref())?;
    let settings = Settings::resolve(args, file, std::env::var("DTS_AUTH_USERS").ok())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Other(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run(settings, mode))
}

async fn run(settings: Settings, mode: Mode) -> Result<(), RunError> {
    let cipher = match &settings.key {
        KeySource::Inline(key) => SecretCipher::from_base64(key.expose())?,
        KeySource::File(path) => SecretCipher::load_or_create_file(path)?,
    };
    let url = settings.store_url.expose();
    let store = Store::open(url, cipher).await.map_err(|source| RunError::Store { url: redact_url(url), source })?;
    tracing::info!(store = %redact_url(url), backend = store.backend().name(), "task store ready");

    let users = users_with_bootstrap(&store, settings.users).await?;
    let auth = Authenticator::new(users).map_err(|e| RunError::Other(e.to_string()))?;
    // One worker in standalone mode: a fixed id, so its tasks stay its own
    // whatever address it is started on.
    let worker_id = STANDALONE_WORKER.to_owned();
    if mode == Mode::Standalone {
        store
            .set_service_addr(&worker_id, &settings.advertise)
            .await
            .map_err(|source| RunError::Store { url: redact_url(url), source })?;
    }
    let placement = match mode {
        Mode::Standalone => Placement::Local { worker_id: worker_id.clone(), service_addr: settings.advertise.clone() },
        Mode::Control => Placement::Deferred,
    };
    let state = AppState { store: store.clone(), auth: Arc::new(auth), placement, limits: settings.limits };
    // Shutdown protocol: a signal stops the API (finishing requests in
    // flight), then the local worker flushes and checkpoints every task.
    let (stop_worker, worker_stopped) = tokio::sync::watch::channel(false);
    let mut worker_cfg = WorkerConfig::new(worker_id);
    worker_cfg.topic_partitions = settings.worker.topic_partitions;
    worker_cfg.replication_factor = settings.worker.topic_replication_factor;
    worker_cfg.server_id_base = settings.worker.server_id_base;
    worker_cfg.snapshot_chunk_rows = settings.worker.snapshot_chunk_rows;
    let worker =
        (mode == Mode::Standalone).then(|| tokio::spawn(Worker::new(store.clone(), worker_cfg).run(worker_stopped)));
    tracing::info!(listen = %settings.listen, advertise = %settings.advertise, data_dir = %settings.data_dir.display(), mode = ?mode, "serving the dts API");
    let served = dts_control::serve(state, settings.listen, settings.http_workers, shutdown_signal()).await;
    let _ = stop_worker.send(true);
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    served.map_err(|e| RunError::Other(format!("cannot serve on {}: {e}", settings.listen)))?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Configured users, plus the users dts stored itself. With none at all, a
/// user is generated, its argon2 hash stored, and its password printed once.
async fn users_with_bootstrap(store: &Store, mut users: Vec<UserEntry>) -> Result<Vec<UserEntry>, RunError> {
    let store_err = |source| RunError::Store { url: "(open)".into(), source };
    let mut stored = store.stored_users().await.map_err(store_err)?;
    if users.is_empty() && stored.is_empty() {
        let password = generate_password();
        let hash = hash_password(&password).map_err(RunError::Other)?;
        let user = StoredUser { name: BOOTSTRAP_USER.into(), password_hash: hash };
        if store.insert_user_if_absent(&user).await.map_err(store_err)? {
            eprintln!(
                "dts: no API users were configured, so one was created.\n\
                 dts:   user: {BOOTSTRAP_USER}\n\
                 dts:   password: {password}\n\
                 dts: This password is shown only once; only its hash is stored. \
                 Set DTS_AUTH_USERS or [[users]] in the config file to choose your own."
            );
        }
        stored = store.stored_users().await.map_err(store_err)?;
    }
    for u in stored {
        if !users.iter().any(|c| c.name == u.name) {
            users.push(UserEntry { name: u.name, credential: Credential::Hash(u.password_hash) });
        }
    }
    Ok(users)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}
