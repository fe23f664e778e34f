//! The dts control plane: the seed-compatible REST API over the task store.
//!
//! # Layout
//! - [`routes`]: the URL table; every endpoint answers with the seed's
//!   envelope, unknown paths and methods included.
//! - [`handlers`]: submit, list, alter, detail, stop, start, delete, healthz.
//! - [`auth`]: HTTP Basic users (config, env, stored) and roles.
//! - [`users`]: API users managed over the API, shared through the store.
//! - [`streams`]: ingest streams (`/v1/ingest/streams`); the ingest
//!   protocols themselves are served by `dts-ingest` on the same listener.
//! - [`envelope`]: `{code,message,ttl,data}` and [`envelope::ApiError`].
//! - [`views`]: the JSON shapes of list items and task details.
//! - [`workers`]: operators' view of worker nodes (list, drain, activate).
//! - [`internal`]: the API worker nodes use, behind the cluster token.
//! - [`scheduler`]: places tasks on workers and moves them on failure.
//!
//! Request flow: request id -> access log -> Basic auth (or, for
//! `/internal/`, the cluster token) -> handler -> store.

pub mod auth;
pub mod dashboard;
pub mod envelope;
pub mod handlers;
pub mod internal;
pub mod listener;
pub mod metrics;
pub mod scheduler;
pub mod streams;
pub mod tls;
pub mod users;
pub mod views;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpMessage, ResponseError};
use dts_store::tasks::Assignment;
use dts_store::Store;

use crate::auth::Authenticator;

/// Request limits, from config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted request body; a task spec is a few KB.
    pub max_body_bytes: usize,
    /// Largest `per_page` of the list endpoint.
    pub max_per_page: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_body_bytes: 1024 * 1024, max_per_page: 1000 }
    }
}

/// Where new tasks go.
#[derive(Debug, Clone)]
pub enum Placement {
    /// `dts standalone`: the worker in this process runs every task.
    Local { worker_id: String, service_addr: String },
    /// `dts control`: the least loaded live worker node, if any; otherwise
    /// the task waits as `Pending` for the scheduler.
    Cluster,
}

impl Placement {
    /// The node a new task goes to.
    pub async fn assignment(&self, store: &Store, lease_ms: i64) -> Result<Option<Assignment>, dts_store::StoreError> {
        match self {
            Self::Local { worker_id, service_addr } => {
                Ok(Some(Assignment { worker_id: worker_id.clone(), service_addr: service_addr.clone() }))
            }
            Self::Cluster => {
                let workers = store.workers().await?;
                let load = scheduler::loads(&store.placements().await?);
                Ok(scheduler::pick(&workers, &load, lease_ms)
                    .map(|w| Assignment { worker_id: w.id.clone(), service_addr: w.addr.clone() }))
            }
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub auth: Arc<Authenticator>,
    pub placement: Placement,
    pub limits: Limits,
    /// Set on control planes that serve worker nodes.
    pub cluster: Option<internal::ClusterSettings>,
    /// The ingest streams this node serves.
    pub ingest: Arc<dts_ingest::Registry>,
    /// This node's figures, served at `/metrics`.
    pub metrics: Arc<dts_metrics::Metrics>,
    /// The dashboard's last hour of samples.
    pub history: Arc<dashboard::history::History>,
}

/// The URL table, for `App::configure`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use handlers::*;
    let resource = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/readyz").route(web::get().to(metrics::readyz)))
        .service(resource("/metrics").route(web::get().to(metrics::metrics)))
        .service(resource("/openapi.json").route(web::get().to(openapi)))
        .service(resource("/v1/dispatch/submit").route(web::post().to(submit)))
        .service(resource("/v1/dispatch/alter/{id}").route(web::put().to(alter)))
        .service(resource("/v1/dispatch/stop/{id}").route(web::post().to(stop)))
        .service(resource("/v1/dispatch/start/{id}").route(web::post().to(start)))
        .service(resource("/v1/task/list").route(web::get().to(list)))
        .service(resource("/v1/task/{id}").route(web::get().to(detail)).route(web::delete().to(delete)))
        .service(
            resource("/v1/task/{id}/snapshot")
                .route(web::get().to(snapshot_progress))
                .route(web::post().to(request_snapshot))
                .route(web::delete().to(cancel_snapshot)),
        )
        .service(resource("/v1/users").route(web::get().to(users::list)).route(web::post().to(users::create)))
        .service(
            resource("/v1/users/{name}").route(web::put().to(users::change)).route(web::delete().to(users::delete)),
        )
        .service(
            resource("/v1/ingest/streams").route(web::get().to(streams::list)).route(web::post().to(streams::create)),
        )
        .service(
            resource("/v1/ingest/streams/{id}")
                .route(web::get().to(streams::detail))
                .route(web::put().to(streams::alter))
                .route(web::delete().to(streams::delete)),
        )
        .service(
            resource("/v1/ingest/keys")
                .route(web::get().to(streams::list_keys))
                .route(web::post().to(streams::create_key)),
        )
        .service(resource("/v1/ingest/keys/{id}").route(web::delete().to(streams::delete_key)))
        .service(resource("/v1/workers").route(web::get().to(workers::list)))
        .service(resource("/v1/workers/{id}/drain").route(web::post().to(workers::drain)))
        .service(resource("/v1/workers/{id}/activate").route(web::post().to(workers::activate)))
        .service(resource("/internal/v1/heartbeat").route(web::post().to(internal::heartbeat)))
        .service(resource("/internal/v1/tasks/{id}/progress").route(web::post().to(internal::progress)))
        .service(resource("/internal/v1/tasks/{id}/state").route(web::post().to(internal::task_state)))
        .service(resource("/internal/v1/ingest/config").route(web::post().to(internal::ingest_config)))
        .configure(dts_ingest::routes)
        .configure(dashboard::routes)
        .default_service(web::to(route_not_found));
}

/// The OpenAPI 3 document of every route above (checked by the
/// `openapi` test against this table and the running server).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}

/// Builds the application with its middleware, for the server and for tests.
pub fn app(
    state: AppState,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::from(Arc::clone(&state.ingest)))
        .app_data(web::Data::new(state))
        .configure(routes)
        .wrap(from_fn(authenticate))
        .wrap(from_fn(request_id_and_access_log))
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Tags each request with an id (the caller's `X-Request-Id` if it sent a
/// sane one), logs method, path, status and latency (never headers or
/// bodies), and counts it in the metrics by route pattern (never the raw
/// path: ids would make one series per task).
async fn request_id_and_access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let (method, path) = (req.method().clone(), req.path().to_owned());
    let route = req.match_pattern();
    let metrics = req.app_data::<web::Data<AppState>>().map(|s| Arc::clone(&s.metrics));
    let mut res = next.call(req).await?.map_into_boxed_body();
    let took = started.elapsed();
    if let Some(m) = metrics {
        m.http.observe(route.as_deref().unwrap_or("unmatched"), method.as_str(), res.status().as_u16(), took);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    tracing::debug!(
        request_id = %id, %method, path = ?path, status = res.status().as_u16(),
        elapsed_ms = took.as_secs_f64() * 1e3, "request"
    );
    Ok(res)
}

/// Every endpoint but `/healthz` and `/readyz` needs credentials, unknown paths and wrong
/// methods included, so nothing can be enumerated without them: Basic
/// credentials whose role allows the request, or for `/internal/` the
/// cluster's (checked again, with the body, in the handlers).
async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Ingest protocols authenticate in their own way (or, like InLong, not at all).
    if matches!(req.path(), "/healthz" | "/readyz") || dts_ingest::is_protocol_path(req.path()) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        let err = envelope::ApiError::new(dts_core::ErrorCode::Internal, "application state missing");
        return Ok(req.into_response(err.error_response()));
    };
    if req.path().starts_with("/internal/") {
        return internal::authenticate(req, next, state).await;
    }
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let client = req.peer_addr().map(|a| a.ip());
    let identity = match state.auth.check(header, client).await {
        Ok(identity) => identity,
        Err(err) => {
            tracing::info!(path = ?req.path(), peer = ?req.peer_addr(), code = err.code.number(), "authentication failed");
            return Ok(req.into_response(err.error_response()));
        }
    };
    let reads = matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD);
    if !reads && cross_site(&req) {
        // Browsers resend cached Basic credentials with forged cross-site
        // requests; a change must come from a page of this server.
        let err = envelope::ApiError::new(
            dts_core::ErrorCode::Forbidden,
            "cross-site request refused: changes must come from the dashboard's own pages or a non-browser client",
        );
        return Ok(req.into_response(err.error_response()));
    }
    // User management decides per request (everyone may change their own password).
    let users_path = req.path() == "/v1/users" || req.path().starts_with("/v1/users/");
    if identity.role == auth::Role::Viewer && !reads && !users_path {
        let err = envelope::ApiError::new(
            dts_core::ErrorCode::Forbidden,
            format!("user {:?} has the viewer role, which may only read; ask an operator or admin", identity.name),
        );
        return Ok(req.into_response(err.error_response()));
    }
    let changes = !reads;
    let (method, path, peer) = (req.method().clone(), req.path().to_owned(), req.peer_addr());
    req.extensions_mut().insert(identity.clone());
    let res = next.call(req).await?.map_into_boxed_body();
    if changes {
        // The audit trail: who changed what, from where, and how it ended.
        tracing::info!(
            target: "dts::audit", user = ?identity.name, role = identity.role.as_str(), %method, path = ?path,
            peer = ?peer, status = res.status().as_u16(), "change"
        );
    }
    Ok(res)
}

/// True when a browser says the request comes from another site's page:
/// `Sec-Fetch-Site`, or an `Origin` whose host is not the one addressed.
fn cross_site(req: &ServiceRequest) -> bool {
    let h = req.headers();
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    // The host the client addressed (a proxy's forwarded host first). A
    // request that names none is cross-site: the listener's own name is no
    // evidence of where the page came from.
    let named =
        ["host", "forwarded", "x-forwarded-host"].iter().any(|n| h.contains_key(*n)) || req.uri().authority().is_some();
    match h.get(actix_web::http::header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some("null") => true,
        Some(origin) => !named || origin.split_once("://").map(|(_, rest)| rest) != Some(req.connection_info().host()),
        None => false,
    }
}

/// Serves the API on `listen` until `shutdown` completes, then finishes the
/// requests in flight (up to 10 s) and returns.
/// With `tls`, the listener speaks HTTPS only (HTTP/2 and HTTP/1.1).
pub async fn serve(
    state: AppState,
    listen: SocketAddr,
    workers: usize,
    tls: Option<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = listener::serve_on(move || app(state.clone()), std::net::TcpListener::bind(listen)?, workers, tls)?;
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    server.await
}
