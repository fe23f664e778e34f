//! The real API over real HTTP, with the seed's credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dts_control::auth::{parse_users_env, Authenticator, Policy};
use dts_control::{AppState, Limits, Placement};

use crate::{fresh_store, Backend, TestStore};

/// The credentials of the seed's examples.
pub const SEED_USER: &str = "replicator";
pub const SEED_PASSWORD: &str = "dtsfor3.1415926";
pub const SEED_AUTH_HEADER: &str = "Basic cmVwbGljYXRvcjpkdHNmb3IzLjE0MTU5MjY=";

/// The seed's submit body, as its curl example sends it.
pub const SEED_BODY: &str = r#"{"task":{"source":{"host":"127.0.0.1","port":5306,"username":"xes_replicator","password":"IYQBXGil84d44ee92cLjLHankV2rVyCg+"},"kafka":{"addr":"127.0.0.1:9092","topic":"replicator_test","flat_format":false},"filters":[{"dbname":"oa_data_service","match":"/xes_class_students_\\d+/","filter":""},{"dbname":"oa_data_service","match":"check_delay","filter":""}],"incr":true}}"#;
pub const SEED_PASSWORD_IN_BODY: &str = "IYQBXGil84d44ee92cLjLHankV2rVyCg+";

/// A running API server on an ephemeral loopback port.
#[derive(Debug)]
pub struct TestApi {
    pub addr: SocketAddr,
    pub db: TestStore,
    /// The node's metrics, which a worker in the same process shares (as in
    /// `dts standalone`), so the dashboard shows its figures.
    pub metrics: Arc<dts_metrics::Metrics>,
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
    pub retry_after: Option<String>,
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
        // Tests send many wrong passwords from one address on purpose: only
        // the throttling tests use the real limits.
        let lenient = Policy { failures_per_window: 100_000, ..Policy::default() };
        Self::start_custom(backend, limits, &format!("{SEED_USER}:{SEED_PASSWORD}"), lenient).await
    }

    /// The API with users from a `DTS_AUTH_USERS`-style list and a login policy.
    pub async fn start_custom(backend: Backend, limits: Limits, users: &str, policy: Policy) -> Option<Self> {
        Self::start_full(backend, limits, users, policy, None).await
    }

    /// A control plane serving workers that hold `token` (with the seed's user).
    pub async fn start_control(backend: Backend, token: &str) -> Option<Self> {
        let lenient = Policy { failures_per_window: 100_000, ..Policy::default() };
        let users = format!("{SEED_USER}:{SEED_PASSWORD}");
        let cluster = dts_control::internal::ClusterSettings::new(token, 5_000);
        Self::start_full(backend, Limits::default(), &users, lenient, Some(cluster)).await
    }

    async fn start_full(
        backend: Backend,
        limits: Limits,
        users: &str,
        policy: Policy,
        cluster: Option<dts_control::internal::ClusterSettings>,
    ) -> Option<Self> {
        let db = fresh_store(backend).await?;
        let state = app_state(&db.store, limits, users, policy, cluster);
        let metrics = Arc::clone(&state.metrics);
        let (addr, handle) = serve(state);
        Some(Self { addr, db, metrics, handle })
    }

    /// Another control plane of the same cluster, over this one's store but
    /// with state of its own (the nonces it accepted, its login throttle).
    pub fn peer_control(&self, token: &str) -> PeerApi {
        let lenient = Policy { failures_per_window: 100_000, ..Policy::default() };
        let users = format!("{SEED_USER}:{SEED_PASSWORD}");
        let cluster = dts_control::internal::ClusterSettings::new(token, 5_000);
        let (addr, handle) = serve(app_state(&self.db.store, Limits::default(), &users, lenient, Some(cluster)));
        PeerApi { addr, handle }
    }

    /// Sends a request with the seed's credentials.
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.call_as(method, path, body, Some(SEED_AUTH_HEADER)).await
    }

    /// Sends a request with the given `Authorization` header (or none). The
    /// blocking client runs off the runtime so the server keeps serving.
    pub async fn call_as(&self, method: &str, path: &str, body: Option<&str>, auth: Option<&str>) -> Reply {
        let mut headers = Vec::new();
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        self.request(method, path, &headers, body.map(str::as_bytes)).await
    }

    /// Sends any request: headers as given, no credentials unless among them.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
        let url = format!("http://{}{}", self.addr, path);
        let method = method.to_owned();
        let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let body = body.map(<[u8]>::to_vec);
        tokio::task::spawn_blocking(move || {
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
            let mut req = agent.request(&method, &url);
            for (k, v) in &headers {
                req = req.set(k, v);
            }
            let result = match body {
                Some(b) => req.send_bytes(&b),
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
            let retry_after = resp.header("retry-after").map(str::to_owned);
            let raw = resp.into_string().unwrap();
            let body = serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
            Reply { status, body, raw, content_type, request_id, www_authenticate, retry_after }
        })
        .await
        .unwrap()
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.db.store.close().await;
    }
}

/// A second control plane started by [`TestApi::peer_control`].
#[derive(Debug)]
pub struct PeerApi {
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl PeerApi {
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

fn app_state(
    store: &dts_store::Store,
    limits: Limits,
    users: &str,
    policy: Policy,
    cluster: Option<dts_control::internal::ClusterSettings>,
) -> AppState {
    let users = parse_users_env(users).unwrap();
    let placement = match cluster {
        Some(_) => Placement::Cluster,
        None => Placement::Local { worker_id: "test-node".into(), service_addr: "127.0.0.1:8080".into() },
    };
    // Shorter than the default 30 s, so tests of a broker that is down
    // end sooner, yet long enough for a first topic creation on a busy machine.
    let ingest_settings = dts_ingest::IngestSettings { wait: Duration::from_secs(15), ..Default::default() };
    let ingest = Arc::new(dts_ingest::Registry::new(store.clone(), ingest_settings));
    AppState {
        store: store.clone(),
        auth: Arc::new(Authenticator::with_policy(users, policy).unwrap()),
        placement,
        limits,
        cluster,
        ingest,
        metrics: dts_metrics::Metrics::new(dts_metrics::NodeKind::WithStore),
        history: Default::default(),
    }
}

/// Serves `state` on an ephemeral loopback port.
fn serve(state: AppState) -> (SocketAddr, actix_web::dev::ServerHandle) {
    // The nodes' own listener, so early HTTP errors are answered as in production.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = dts_control::listener::serve_on(move || dts_control::app(state.clone()), listener, 2, None).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    (addr, handle)
}
