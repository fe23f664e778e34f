//! The internal API worker nodes use (`/internal/v1/...`). Every request is
//! signed with a key derived from the cluster token and every answer
//! carries a proof bound to its body ([`dts_core::cluster_auth`]); the token
//! itself never crosses the wire, replays are refused, and task secrets in
//! answers are sealed for the asking worker. Operators' Basic credentials
//! do not open these endpoints.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use dts_core::cluster_auth::{
    AuthError, ClusterKey, ReplayGuard, MAX_SKEW_MS, NONCE_HEADER, PROOF_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use dts_core::wire::{AssignedTask, Heartbeat, HeartbeatReply, ProgressReport, ReportReply, StateReport, TaskSecrets};
use dts_core::{ErrorCode, TaskState};
use dts_store::tasks::Progress;
use futures_util::StreamExt;

use crate::envelope::{ok, ApiError};
use crate::handlers::{read_body, task_id};
use crate::AppState;

/// What the control plane needs to serve workers.
#[derive(Clone)]
pub struct ClusterSettings {
    key: ClusterKey,
    replays: Arc<ReplayGuard>,
    /// How long a heartbeat answer lets a worker run its tasks.
    pub lease_ms: i64,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings").field("lease_ms", &self.lease_ms).finish_non_exhaustive()
    }
}

impl ClusterSettings {
    pub fn new(token: &str, lease_ms: i64) -> Self {
        Self { key: ClusterKey::new(token), replays: Arc::new(ReplayGuard::default()), lease_ms }
    }
}

/// Checks the request's signature (over its body, which is read and put
/// back), refuses replays, runs the handler, and signs its answer. Unknown
/// internal paths and wrong methods are refused like any unsigned request.
pub(crate) async fn authenticate(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    state: web::Data<AppState>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let denied = |req: ServiceRequest, why: String| {
        tracing::info!(path = ?req.path(), peer = ?req.peer_addr(), reason = %why, "cluster authentication failed");
        Ok(req.into_response(ApiError::new(ErrorCode::Unauthorized, why).error_response()))
    };
    let Some(cluster) = state.cluster.clone() else {
        return denied(req, "this node does not serve workers: set DTS_CLUSTER_TOKEN on the control plane".into());
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (Some(ts), Some(nonce), Some(signature)) =
        (header(TIMESTAMP_HEADER), header(NONCE_HEADER), header(SIGNATURE_HEADER))
    else {
        return denied(req, AuthError::Missing.to_string());
    };
    let limit = state.limits.max_body_bytes;
    let mut payload = req.take_payload();
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            let err = ApiError::new(ErrorCode::BodyTooLarge, format!("the body is over {limit} bytes"));
            return Ok(req.into_response(err.error_response()));
        }
        body.extend_from_slice(&chunk);
    }
    let now = dts_core::now_ms();
    let checked = cluster.key.verify_request(req.method().as_str(), req.path(), &ts, &nonce, &signature, &body, now);
    let ts = match checked {
        Err(e) => return denied(req, e.to_string()),
        Ok(ts) if !cluster.replays.first_use(&nonce, ts, now) => return denied(req, AuthError::Replayed.to_string()),
        Ok(ts) => ts,
    };
    // The local guard answers cheaply; the store's record refuses a request
    // replayed to another control plane of the cluster.
    match state.store.claim_nonce(&nonce, ts + MAX_SKEW_MS).await {
        Ok(true) => {}
        Ok(false) => return denied(req, AuthError::Replayed.to_string()),
        Err(e) => return Ok(req.into_response(ApiError::from(e).error_response())),
    }
    req.set_payload(body.into());
    let res = next.call(req).await?.map_into_boxed_body();
    let status = res.status();
    let (req, res) = res.into_parts();
    let (res, body) = res.into_parts();
    let bytes = actix_web::body::to_bytes(body)
        .await
        .map_err(|e| actix_web::error::ErrorInternalServerError(format!("cannot read the answer: {e}")))?;
    let proof = cluster.key.prove_response(&nonce, status.as_u16(), &bytes);
    let mut res = res.set_body(BoxBody::new(bytes));
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&proof) {
        res.headers_mut().insert(actix_web::http::header::HeaderName::from_static(PROOF_HEADER), v);
    }
    Ok(ServiceResponse::new(req, res))
}

fn cluster(state: &AppState) -> Result<&ClusterSettings, ApiError> {
    state.cluster.as_ref().ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "this node does not serve workers"))
}

/// The request's JSON body, within the API's body limit.
async fn json_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    let body = read_body(req, payload, state.limits.max_body_bytes).await?;
    serde_json::from_slice(&body).map_err(|e| ApiError::new(ErrorCode::InvalidField, e.to_string()))
}

/// Most streams one gateway report may count.
const MAX_REPORTED_STREAMS: usize = 100_000;

/// Most tasks one worker may take: far above what one process runs, low
/// enough that the scheduler's sums never overflow.
pub const MAX_CAPACITY: i64 = 10_000;

fn check_heartbeat(beat: &Heartbeat) -> Result<(), ApiError> {
    let bad = |msg: String| Err(ApiError::new(ErrorCode::InvalidField, msg));
    let sane = |s: &str, max: usize| s.chars().count() <= max && !s.chars().any(char::is_control);
    if beat.worker_id.is_empty() || !sane(&beat.worker_id, 128) {
        return bad("worker_id must be 1 to 128 characters without control characters".into());
    }
    if !(1..=MAX_CAPACITY).contains(&beat.capacity) {
        return bad(format!("capacity must be between 1 and {MAX_CAPACITY}, got {}", beat.capacity));
    }
    if beat.addr.is_empty() || !sane(&beat.addr, 260) || !sane(&beat.version, 64) {
        return bad("addr (host:port) and version must be short and without control characters".into());
    }
    // A worker reports the tasks it holds, a few more while some wind down.
    if beat.figures.len() as i64 > beat.capacity.saturating_mul(2).max(64) {
        return bad(format!("figures lists {} tasks, more than this worker can hold", beat.figures.len()));
    }
    Ok(())
}

pub async fn heartbeat(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let cluster = cluster(&state)?;
    let lease_ms = cluster.lease_ms;
    let nonce = req.headers().get(NONCE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let beat: Heartbeat = json_body(&state, &req, body).await?;
    check_heartbeat(&beat)?;
    state.store.worker_heartbeat(&beat.worker_id, &beat.addr, beat.capacity, &beat.version).await?;
    state.store.renew_task_leases(&beat.worker_id, lease_ms).await?;
    let mut tasks = Vec::new();
    let held = state.store.tasks_for_worker(&beat.worker_id).await?;
    // Only the figures of tasks this worker holds: a task that moved is
    // described by its new worker.
    for f in beat.figures.iter().filter(|f| held.iter().any(|t| t.id == f.id)) {
        state.metrics.tasks.task(f.id).absorb(f);
    }
    for task in held {
        let secrets = TaskSecrets {
            source_password: state.store.source_password(&task)?.expose().to_owned(),
            kafka: state.store.kafka_secrets(&task)?,
        };
        let secrets = serde_json::to_vec(&secrets).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        tasks.push(AssignedTask {
            id: task.id,
            version: task.version,
            epoch: task.epoch,
            desired_state: task.desired_state.as_str().into(),
            state: task.state.as_str().into(),
            spec: task.spec,
            secrets: cluster.key.seal(nonce, &secrets),
            checkpoint: task.checkpoint,
            transaction_time: task.transaction_time,
            snapshot_request: task.snapshot_request,
        });
    }
    Ok(ok(HeartbeatReply { lease_ms, tasks }))
}

/// What every task report shares: the token, the task id, the body, and
/// the state it reports.
async fn report<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: &HttpRequest,
    body: web::Payload,
    state_of: impl Fn(&T) -> &str,
) -> Result<(i64, T, TaskState), ApiError> {
    let id = task_id(req)?;
    let r: T = json_body(state, req, body).await?;
    let task_state = state_of(&r).parse().map_err(|e| ApiError::new(ErrorCode::InvalidField, format!("{e}")))?;
    Ok((id, r, task_state))
}

pub async fn progress(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (id, r, task_state) = report(&state, &req, body, |r: &ProgressReport| &r.state).await?;
    let p = Progress {
        state: task_state,
        message: r.message,
        pos: r.pos,
        checkpoint: r.checkpoint,
        transaction_time: r.transaction_time,
    };
    let accepted = state.store.record_progress(id, r.epoch, &p).await?;
    Ok(ok(ReportReply { accepted }))
}

pub async fn task_state(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (id, r, task_state) = report(&state, &req, body, |r: &StateReport| &r.state).await?;
    let accepted = state.store.record_state(id, r.epoch, task_state, &r.message).await?;
    Ok(ok(ReportReply { accepted }))
}

/// `POST /internal/v1/ingest/config`: the streams and keys a gateway
/// serves, secrets sealed for it.
pub async fn ingest_config(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    use dts_core::wire::{IngestConfigReply, IngestConfigRequest, IngestKeyWire, IngestSecrets, IngestStreamWire};
    let cluster = cluster(&state)?;
    let nonce = req.headers().get(NONCE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let ask: IngestConfigRequest = json_body(&state, &req, body).await?;
    if ask.gateway_id.is_empty() || ask.gateway_id.len() > 128 || ask.gateway_id.chars().any(char::is_control) {
        return Err(ApiError::new(ErrorCode::InvalidField, "gateway_id must be 1 to 128 characters"));
    }
    if !ask.counts.is_empty() {
        // A gateway's name plus its process's random part (`name#hex`).
        if ask.node.is_empty() || ask.node.len() > 160 || ask.node.chars().any(char::is_control) {
            return Err(ApiError::new(ErrorCode::InvalidField, "node must be 1 to 160 characters"));
        }
        if ask.counts.len() > MAX_REPORTED_STREAMS {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                format!("counts holds over {MAX_REPORTED_STREAMS} streams"),
            ));
        }
        state.store.record_ingest_counters(&ask.node, &ask.counts).await?;
    }
    let mut secrets = IngestSecrets::default();
    let mut streams = Vec::new();
    for s in state.store.list_streams().await? {
        secrets.streams.insert(s.id, state.store.stream_secrets(&s)?);
        streams.push(IngestStreamWire { id: s.id, version: s.version, spec: s.spec });
    }
    let mut keys = Vec::new();
    for k in state.store.list_keys().await? {
        if let Some(secret) = state.store.key_secret(&k)? {
            secrets.keys.insert(k.id, secret.expose().to_owned());
        }
        keys.push(IngestKeyWire { id: k.id, protocol: k.protocol, lookup: k.lookup, streams: k.streams });
    }
    let plain = serde_json::to_vec(&secrets).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(ok(IngestConfigReply { streams, keys, secrets: cluster.key.seal(&nonce, &plain) }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn beat(capacity: i64) -> Heartbeat {
        Heartbeat {
            worker_id: "w1".into(),
            addr: "10.0.0.1:8080".into(),
            capacity,
            version: "0.1.0".into(),
            figures: Vec::new(),
        }
    }

    #[test]
    fn heartbeats_out_of_range_are_refused() {
        assert!(check_heartbeat(&beat(16)).is_ok());
        for capacity in [0, -1, MAX_CAPACITY + 1, i64::MAX, i64::MIN] {
            assert_eq!(check_heartbeat(&beat(capacity)).unwrap_err().code, ErrorCode::InvalidField, "{capacity}");
        }
        let forged = Heartbeat { worker_id: "w1\nforged line".into(), ..beat(1) };
        assert!(check_heartbeat(&forged).is_err());
        let huge = Heartbeat { addr: "a".repeat(10_000), ..beat(1) };
        assert!(check_heartbeat(&huge).is_err());
    }
}
