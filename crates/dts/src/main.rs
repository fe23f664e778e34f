//! `dts`: the one binary. `standalone` runs the control plane and a local
//! worker in one process; `control` runs the control plane alone.

mod cli;
mod config;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use dts_control::auth::{generate_password, hash_password, Authenticator, Role};
use dts_control::internal::ClusterSettings;
use dts_control::scheduler::SchedulerConfig;
use dts_control::{AppState, Placement};
use dts_core::wire::Heartbeat;
use dts_metrics::{Metrics, NodeKind};
use dts_store::users::StoredUser;
use dts_store::{redact_url, SecretCipher, Store};
use dts_worker::client::{ControlClient, ControlTls};
use dts_worker::{Worker, WorkerConfig};
use tracing_subscriber::EnvFilter;

use crate::config::{load_file, ControlArgs, FileConfig, GatewayArgs, KeySource, ServeArgs, Settings, WorkerArgs};

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
    /// A worker node: runs the tasks the control plane assigns to it; or, with a subcommand, manage worker nodes
    Worker(WorkerCommand),
    /// An ingest-only node: serves the push-ingest protocols with the streams and keys of the control planes
    Gateway(GatewayArgs),
    /// Manage tasks through the REST API: list, get, submit, alter, stop, start, delete
    Task {
        #[command(subcommand)]
        action: cli::TaskAction,
        #[command(flatten)]
        api: cli::ApiArgs,
    },
    /// Read a password on stdin and print its argon2id hash for the config file
    HashPassword,
    /// Print a new random secret key (base64) for DTS_SECRET_KEY
    GenKey,
}

/// `dts worker [node flags]` runs a node; `dts worker list|drain|activate` manages nodes.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct WorkerCommand {
    #[command(subcommand)]
    action: Option<cli::WorkerAction>,
    #[command(flatten)]
    node: WorkerArgs,
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
        // API calls of the CLI: the result on stdout, the API's message on stderr.
        Command::Task { action, api } => return client(cli::task(&api, action)),
        Command::Worker(WorkerCommand { action: Some(action), .. }) => return client(cli::worker(action)),
        Command::Standalone(args) => serve(cli.config, args, Mode::Standalone),
        Command::Control(args) => serve(cli.config, args, Mode::Control),
        Command::Worker(WorkerCommand { node, .. }) => run_worker(cli.config, node),
        Command::Gateway(args) => run_gateway(cli.config, args),
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

/// Runs one API call of the CLI and prints its result or why it failed.
fn client(call: impl std::future::Future<Output = Result<String, cli::CliError>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dts: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(call) {
        Ok(out) => {
            emit(&out);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dts: {e}");
            ExitCode::from(e.exit_code())
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
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // One JSON object per line for log pipelines; spans (a task's `task_id`)
    // come along as fields.
    match std::env::var("DTS_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().with_current_span(true).with_span_list(false).init(),
        Ok("text") | Err(_) => logs.init(),
        Ok(other) => {
            logs.init();
            tracing::warn!(format = ?other, "DTS_LOG_FORMAT is json or text; logging as text");
        }
    }
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

async fn run(mut settings: Settings, mode: Mode) -> Result<(), RunError> {
    let cipher = match &settings.key {
        KeySource::Inline(key) => SecretCipher::from_base64(key.expose())?,
        KeySource::File(path) => SecretCipher::load_or_create_file(path)?,
    };
    let url = settings.store_url.expose();
    let store = Store::open(url, cipher).await.map_err(|source| RunError::Store { url: redact_url(url), source })?;
    tracing::info!(store = %redact_url(url), backend = store.backend().name(), "task store ready");

    let users = std::mem::take(&mut settings.users);
    bootstrap_user(&store, users.is_empty()).await?;
    let auth = Arc::new(Authenticator::new(users).map_err(|e| RunError::Other(e.to_string()))?);
    dts_control::users::reload(&store, &auth)
        .await
        .map_err(|source| RunError::Store { url: redact_url(url), source })?;
    // One worker in standalone mode: a fixed id, so its tasks stay its own
    // whatever address it is started on.
    let worker_id = STANDALONE_WORKER.to_owned();
    let (placement, cluster) = match mode {
        Mode::Standalone => {
            store
                .set_service_addr(&worker_id, &settings.advertise)
                .await
                .map_err(|source| RunError::Store { url: redact_url(url), source })?;
            (Placement::Local { worker_id: worker_id.clone(), service_addr: settings.advertise.clone() }, None)
        }
        Mode::Control => {
            let token = settings.cluster_token.as_ref().ok_or_else(|| {
                RunError::Other("`dts control` needs a cluster token for its workers: set DTS_CLUSTER_TOKEN".into())
            })?;
            (Placement::Cluster, Some(ClusterSettings::new(token.expose(), settings.lease_ms)))
        }
    };
    // The store has every task's state; the local worker adds its own figures.
    let metrics = Metrics::new(NodeKind::WithStore);
    let ingest = Arc::new(dts_ingest::Registry::new(
        store.clone(),
        dts_ingest::IngestSettings {
            topic_partitions: settings.worker.topic_partitions,
            replication_factor: settings.worker.topic_replication_factor,
            origin: settings.advertise.clone(),
            metrics: Some(metrics.ingest.clone()),
            ..dts_ingest::IngestSettings::default()
        },
    ));
    ingest.reload().await.map_err(|e| RunError::Other(e.to_string()))?;
    let state = AppState {
        store: store.clone(),
        auth: Arc::clone(&auth),
        placement,
        limits: settings.limits,
        cluster,
        ingest: Arc::clone(&ingest),
        metrics: Arc::clone(&metrics),
        history: Default::default(),
    };
    // Shutdown protocol: a signal stops the API (finishing requests in
    // flight), then the scheduler and the local worker, which flushes and
    // checkpoints every task.
    let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
    let ingest_follower = {
        let mut stopped = background_stopped.clone();
        tokio::spawn(ingest.follow(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    };
    let sampler = {
        let mut stopped = background_stopped.clone();
        tokio::spawn(dts_control::dashboard::history::sample(state.clone(), async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    };
    let users_follower = {
        let mut stopped = background_stopped.clone();
        tokio::spawn(dts_control::users::follow(store.clone(), auth, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    };
    let background = match mode {
        Mode::Standalone => {
            let cfg = worker_config(worker_id, &settings, metrics);
            tokio::spawn(Worker::new(store.clone(), cfg).run(background_stopped))
        }
        Mode::Control => {
            let cfg = SchedulerConfig {
                holder: format!("control@{}#{}", settings.advertise, std::process::id()),
                tick: std::time::Duration::from_millis(500),
                lease_ms: settings.lease_ms,
            };
            tokio::spawn(dts_control::scheduler::run(store.clone(), cfg, background_stopped))
        }
    };
    tracing::info!(listen = %settings.listen, advertise = %settings.advertise, data_dir = %settings.data_dir.display(), mode = ?mode, "serving the dts API");
    let tls = listener_tls(&settings)?;
    let served = dts_control::serve(state, settings.listen, settings.http_workers, tls, shutdown_signal()).await;
    let _ = stop_background.send(true);
    let _ = background.await;
    let _ = users_follower.await;
    let _ = sampler.await;
    let _ = ingest_follower.await;
    served.map_err(|e| RunError::Other(format!("cannot serve on {}: {e}", settings.listen)))?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn listener_tls(settings: &Settings) -> Result<Option<rustls::ServerConfig>, RunError> {
    settings
        .tls
        .as_ref()
        .map(|(cert, key)| {
            dts_control::tls::server_config(cert, key, settings.tls_client_ca.as_deref())
                .map_err(|e| RunError::Other(e.to_string()))
        })
        .transpose()
}

fn worker_config(worker_id: String, settings: &Settings, metrics: Arc<Metrics>) -> WorkerConfig {
    let mut cfg = WorkerConfig::new(worker_id);
    cfg.metrics = metrics;
    cfg.topic_partitions = settings.worker.topic_partitions;
    cfg.replication_factor = settings.worker.topic_replication_factor;
    cfg.server_id_base = settings.worker.server_id_base;
    cfg.snapshot_chunk_rows = settings.worker.snapshot_chunk_rows;
    cfg.snapshot_readers = settings.worker.snapshot_readers;
    cfg
}

/// `dts worker`: heartbeats the control planes and runs what they assign.
fn run_worker(config: Option<PathBuf>, args: WorkerArgs) -> Result<(), RunError> {
    let file = load_file(config.as_deref())?;
    let capacity = args.capacity.or(file.capacity).unwrap_or(16);
    if capacity < 1 {
        return Err(RunError::Other("capacity must be at least 1".into()));
    }
    let Member { settings, id: worker_id, client, runtime } =
        join_cluster("worker", file, args.serve, args.control, args.worker_id)?;
    runtime.block_on(async move {
        let beat = Heartbeat {
            worker_id: worker_id.clone(),
            addr: settings.advertise.clone(),
            capacity,
            version: env!("CARGO_PKG_VERSION").into(),
            figures: Vec::new(),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let metrics = Metrics::new(NodeKind::Worker);
        let cfg = worker_config(worker_id.clone(), &settings, Arc::clone(&metrics));
        let worker = tokio::spawn(Worker::cluster(client, beat, cfg).run(stopped));
        tracing::info!(worker = %worker_id, listen = %settings.listen, "worker node serving /healthz, /readyz and /metrics");
        let health = serde_json::json!({"status": "ok", "worker_id": worker_id});
        // Ready while the control plane answers: a worker that cannot
        // heartbeat holds no leases (its tasks stop within one lease).
        let lease_ms = settings.lease_ms;
        let node = Arc::clone(&metrics.node);
        let ready = move || dts_metrics::task::now_ms() - node.last_heartbeat_ms() < lease_ms;
        let result = serve_node(&settings, 1, health, metrics, ready, |_| {}).await;
        let _ = stop.send(true);
        let _ = worker.await;
        result
    })
}

/// Serves a node without the operator API (`worker`, `gateway`): `/healthz`
/// answering `health`, `/readyz` while `ready()`, this node's `/metrics`
/// (no credentials: it holds counts, never data or secrets; restrict it with
/// `tls_client_ca` or the network), plus what `configure` adds, until
/// SIGINT/SIGTERM.
async fn serve_node(
    settings: &Settings,
    workers: usize,
    health: serde_json::Value,
    metrics: Arc<Metrics>,
    ready: impl Fn() -> bool + Clone + Send + 'static,
    configure: impl Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
) -> Result<(), RunError> {
    use actix_web::{web, HttpResponse};
    let app = move || {
        let health = health.clone();
        let (metrics, ready) = (Arc::clone(&metrics), ready.clone());
        actix_web::App::new()
            .route(
                "/healthz",
                web::get().to(move || {
                    let health = health.clone();
                    async move { dts_control::envelope::ok(health) }
                }),
            )
            .route(
                "/readyz",
                web::get().to(move || {
                    let ready = ready();
                    async move {
                        if ready {
                            dts_control::envelope::ok(serde_json::json!({"status": "ready"}))
                        } else {
                            let e = dts_control::envelope::ApiError::new(
                                dts_core::ErrorCode::StoreUnavailable,
                                "not ready: the control plane has not answered a heartbeat within the lease",
                            );
                            actix_web::ResponseError::error_response(&e)
                        }
                    }
                }),
            )
            .route(
                "/metrics",
                web::get().to(move || {
                    let body = metrics.render(None);
                    async move { HttpResponse::Ok().content_type(dts_metrics::CONTENT_TYPE).body(body) }
                }),
            )
            .configure(configure.clone())
    };
    let tls = listener_tls(settings)?;
    let served = std::net::TcpListener::bind(settings.listen)
        .and_then(|listener| dts_control::listener::serve_on(app, listener, workers, tls))
        .map_err(|e| RunError::Other(format!("cannot serve on {}: {e}", settings.listen)))?;
    let handle = served.handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        handle.stop(true).await;
    });
    served.await.map_err(|e| RunError::Other(e.to_string()))
}

/// A node that works through the control planes (`worker`, `gateway`).
struct Member {
    settings: Settings,
    /// Its stable id: `--worker-id`, or generated once into the data directory.
    id: String,
    client: ControlClient,
    runtime: tokio::runtime::Runtime,
}

/// What a `worker` or `gateway` (`command`) needs before it starts: its
/// settings, its id, a client of the control planes, and a runtime.
fn join_cluster(
    command: &str,
    file: FileConfig,
    serve: ServeArgs,
    control: ControlArgs,
    id: Option<String>,
) -> Result<Member, RunError> {
    let id = id.or(file.worker_id.clone());
    let (control, control_tls) = control_settings(control, &file)?;
    let settings = Settings::resolve(serve, file, None)?;
    if control.is_empty() {
        return Err(RunError::Other(format!(
            "`dts {command}` needs its control planes: set DTS_CONTROL_URLS or --control"
        )));
    }
    let token = settings
        .cluster_token
        .clone()
        .ok_or_else(|| RunError::Other(format!("`dts {command}` needs the cluster token: set DTS_CLUSTER_TOKEN")))?;
    let id = match id {
        Some(id) => id,
        None => stable_worker_id(&settings.data_dir)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Other(format!("cannot start the runtime: {e}")))?;
    let client = {
        let _inside = runtime.enter();
        ControlClient::new(control, token, std::time::Duration::from_secs(5), &control_tls).map_err(RunError::Other)?
    };
    Ok(Member { settings, id, client, runtime })
}

/// The control-plane URLs and TLS settings, from flags, variables or the file.
fn control_settings(args: ControlArgs, file: &FileConfig) -> Result<(Vec<String>, ControlTls), RunError> {
    let control = if args.control.is_empty() { file.control.clone().unwrap_or_default() } else { args.control };
    let read = |what: &str, path: Option<PathBuf>| -> Result<Option<Vec<u8>>, RunError> {
        path.map(|p| {
            std::fs::read(&p).map_err(|e| RunError::Other(format!("cannot read the {what} {}: {e}", p.display())))
        })
        .transpose()
    };
    let identity_pem =
        match (args.control_cert.or(file.control_cert.clone()), args.control_key.or(file.control_key.clone())) {
            (Some(cert), Some(key)) => {
                let mut pem = read("control client certificate", Some(cert))?.unwrap_or_default();
                pem.push(b'\n');
                pem.extend(read("control client key", Some(key))?.unwrap_or_default());
                Some(pem)
            }
            (None, None) => None,
            _ => return Err(RunError::Other("control_cert and control_key go together: set both or neither".into())),
        };
    let tls = ControlTls { ca_pem: read("control CA", args.control_ca.or(file.control_ca.clone()))?, identity_pem };
    Ok((control, tls))
}

/// The streams and keys of the control planes, for a gateway.
struct ControlSource {
    client: ControlClient,
    gateway_id: String,
}

impl dts_ingest::registry::ConfigSource for ControlSource {
    fn load(
        &self,
        report: dts_ingest::registry::CounterReport,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<dts_ingest::registry::Snapshot, dts_ingest::registry::LoadError>>
                + Send
                + '_,
        >,
    > {
        use dts_ingest::registry::{Credential, LoadError, LoadedStream, Snapshot};
        Box::pin(async move {
            let (reply, secrets) = self
                .client
                .ingest_config(&self.gateway_id, &report.node, report.counts)
                .await
                .map_err(|e| LoadError { what: format!("the control planes: {e}"), source: None })?;
            let mut snapshot = Snapshot::default();
            for s in reply.streams {
                let mut spec = s.spec;
                if let Some(sec) = secrets.streams.get(&s.id) {
                    sec.keep_in(spec.kafka.security.as_mut());
                }
                match spec.validate() {
                    Ok(key) => snapshot.streams.push(LoadedStream { id: s.id, version: s.version, key, spec }),
                    Err(e) => {
                        tracing::error!(stream = s.id, error = %e, "an ingest stream from the control plane is invalid")
                    }
                }
            }
            for k in reply.keys {
                let secret = secrets.keys.get(&k.id).map(|s| dts_core::spec::Secret::new(s.clone()));
                snapshot
                    .credentials
                    .push((k.lookup, Credential { id: k.id, protocol: k.protocol, secret, streams: k.streams }));
            }
            Ok(snapshot)
        })
    }
}

/// `dts gateway`: serves ingest with the control planes' streams and keys,
/// re-read every second; no store, no tasks.
fn run_gateway(config: Option<PathBuf>, args: GatewayArgs) -> Result<(), RunError> {
    let file = load_file(config.as_deref())?;
    let Member { settings, id: gateway_id, client, runtime } =
        join_cluster("gateway", file, args.serve, args.control, args.worker_id)?;
    runtime.block_on(async move {
        let metrics = Metrics::new(NodeKind::Worker);
        let source = ControlSource { client, gateway_id: gateway_id.clone() };
        let registry = Arc::new(dts_ingest::Registry::with_source(
            Box::new(source),
            dts_ingest::IngestSettings {
                topic_partitions: settings.worker.topic_partitions,
                replication_factor: settings.worker.topic_replication_factor,
                origin: gateway_id.clone(),
                metrics: Some(metrics.ingest.clone()),
                ..dts_ingest::IngestSettings::default()
            },
        ));
        // Serve even when the control planes are not reachable yet: the
        // follower keeps trying, and unknown streams are answered as such.
        if let Err(e) = registry.reload().await {
            tracing::warn!(error = %e, "no ingest configuration yet; retrying every second");
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let follower = {
            let mut stopped = stopped.clone();
            tokio::spawn(Arc::clone(&registry).follow(async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        };
        tracing::info!(gateway = %gateway_id, listen = %settings.listen, "gateway serving ingest");
        let data = actix_web::web::Data::from(Arc::clone(&registry));
        let health = serde_json::json!({"status": "ok", "gateway_id": gateway_id});
        let ready = {
            let registry = Arc::clone(&registry);
            move || registry.loaded()
        };
        let result = serve_node(&settings, settings.http_workers, health, metrics, ready, move |cfg| {
            cfg.app_data(data.clone()).configure(dts_ingest::routes);
        })
        .await;
        let _ = stop.send(true);
        let _ = follower.await;
        result
    })
}

/// A worker id generated once and kept in the data directory, so a
/// restarted node is the same node.
fn stable_worker_id(data_dir: &std::path::Path) -> Result<String, RunError> {
    let path = data_dir.join("worker.id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = format!("worker-{:016x}", rand_u64());
            std::fs::create_dir_all(data_dir)
                .and_then(|()| std::fs::write(&path, &id))
                .map_err(|e| RunError::Other(format!("cannot write {}: {e}", path.display())))?;
            Ok(id)
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}

/// With no user configured and none stored, generates an admin, stores its
/// argon2 hash, and prints its password once.
async fn bootstrap_user(store: &Store, none_configured: bool) -> Result<(), RunError> {
    let store_err = |source| RunError::Store { url: "(open)".into(), source };
    if !none_configured || !store.stored_users().await.map_err(store_err)?.is_empty() {
        return Ok(());
    }
    let password = generate_password();
    let hash = hash_password(&password).map_err(RunError::Other)?;
    let user = StoredUser {
        name: BOOTSTRAP_USER.into(),
        password_hash: hash,
        role: Role::Admin.as_str().into(),
        generated: true,
        created_at: 0,
    };
    if store.insert_user_if_absent(&user).await.map_err(store_err)? {
        eprintln!(
            "dts: no API users were configured, so one was created.\n\
             dts:   user: {BOOTSTRAP_USER}\n\
             dts:   password: {password}\n\
             dts: This password is shown only once; only its hash is stored. \
             Set DTS_AUTH_USERS or [[users]] in the config file, or create users with POST /v1/users."
        );
    }
    Ok(())
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
