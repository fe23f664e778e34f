//! The internal API worker nodes use (`/internal/v1/...`). Every request
//! carries the cluster token (`X-DTS-Cluster-Token`), compared in constant
//! time; there is no anonymous internal endpoint, and operators' Basic
//! credentials do not open it.

use actix_web::{web, HttpRequest, HttpResponse};
use dts_core::wire::{
    AssignedTask, Heartbeat, HeartbeatReply, ProgressReport, ReportReply, StateReport, CLUSTER_NONCE_HEADER,
    CLUSTER_PROOF_HEADER, CLUSTER_TOKEN_HEADER,
};
use dts_core::{ErrorCode, TaskState};
use dts_store::tasks::Progress;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::envelope::{ok, ApiError};
use crate::handlers::{read_body, task_id};
use crate::AppState;

/// What the control plane needs to serve workers.
#[derive(Clone)]
pub struct ClusterSettings {
    /// SHA-256 of the cluster token, to check workers' tokens in constant time.
    pub token_digest: [u8; 32],
    /// The token itself, only to prove this node to workers (never logged).
    token: dts_core::spec::Secret,
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
        Self {
            token_digest: Sha256::digest(token.as_bytes()).into(),
            token: dts_core::spec::Secret::new(token),
            lease_ms,
        }
    }
}

/// Wraps an internal answer with this control plane's proof for the
/// worker's nonce.
fn proven(state: &AppState, req: &HttpRequest, mut resp: HttpResponse) -> HttpResponse {
    let nonce = req.headers().get(CLUSTER_NONCE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if let (Some(cluster), false) = (&state.cluster, nonce.is_empty()) {
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&dts_core::wire::cluster_proof(
            cluster.token.expose(),
            nonce,
        )) {
            resp.headers_mut().insert(actix_web::http::header::HeaderName::from_static(CLUSTER_PROOF_HEADER), v);
        }
    }
    resp
}

pub(crate) fn check_token(state: &AppState, req: &HttpRequest) -> Result<i64, ApiError> {
    let denied = |why: &str| ApiError::new(ErrorCode::Unauthorized, why.to_owned());
    let Some(cluster) = &state.cluster else {
        return Err(denied("this node does not serve workers: set DTS_CLUSTER_TOKEN on the control plane"));
    };
    let Some(token) = req.headers().get(CLUSTER_TOKEN_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(denied("the cluster token is missing (X-DTS-Cluster-Token)"));
    };
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if bool::from(digest.ct_eq(&cluster.token_digest)) {
        Ok(cluster.lease_ms)
    } else {
        Err(denied("wrong cluster token"))
    }
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
    Ok(())
}

pub async fn heartbeat(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let lease_ms = check_token(&state, &req)?;
    let beat: Heartbeat = json_body(&state, &req, body).await?;
    check_heartbeat(&beat)?;
    state.store.worker_heartbeat(&beat.worker_id, &beat.addr, beat.capacity, &beat.version).await?;
    state.store.renew_task_leases(&beat.worker_id, lease_ms).await?;
    let mut tasks = Vec::new();
    for task in state.store.tasks_for_worker(&beat.worker_id).await? {
        let password = state.store.source_password(&task)?;
        let kafka_secrets = state.store.kafka_secrets(&task)?;
        tasks.push(AssignedTask {
            id: task.id,
            version: task.version,
            epoch: task.epoch,
            desired_state: task.desired_state.as_str().into(),
            state: task.state.as_str().into(),
            spec: task.spec,
            source_password: password.expose().to_owned(),
            kafka_secrets,
            checkpoint: task.checkpoint,
            transaction_time: task.transaction_time,
        });
    }
    Ok(proven(&state, &req, ok(HeartbeatReply { lease_ms, tasks })))
}

/// What every task report shares: the token, the task id, the body, and
/// the state it reports.
async fn report<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: &HttpRequest,
    body: web::Payload,
    state_of: impl Fn(&T) -> &str,
) -> Result<(i64, T, TaskState), ApiError> {
    check_token(state, req)?;
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
    Ok(proven(&state, &req, ok(ReportReply { accepted })))
}

pub async fn task_state(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (id, r, task_state) = report(&state, &req, body, |r: &StateReport| &r.state).await?;
    let accepted = state.store.record_state(id, r.epoch, task_state, &r.message).await?;
    Ok(proven(&state, &req, ok(ReportReply { accepted })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn beat(capacity: i64) -> Heartbeat {
        Heartbeat { worker_id: "w1".into(), addr: "10.0.0.1:8080".into(), capacity, version: "0.1.0".into() }
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
