//! Operators' view of worker nodes: list, drain, activate.

use actix_web::{web, HttpRequest, HttpResponse};
use dts_core::ErrorCode;
use serde::Serialize;

use crate::envelope::{ok, ApiError};
use crate::AppState;

#[derive(Debug, Serialize)]
struct WorkerView {
    id: String,
    addr: String,
    /// `active`, `draining`, or `dead` (no heartbeat within the lease).
    state: String,
    capacity: i64,
    tasks: usize,
    version: String,
    heartbeat_age_ms: i64,
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let now = dts_core::now_ms();
    let lease_ms = state.cluster.as_ref().map_or(10_000, |c| c.lease_ms);
    let placements = state.store.placements().await?;
    let workers: Vec<WorkerView> = state
        .store
        .workers()
        .await?
        .into_iter()
        .map(|w| WorkerView {
            tasks: placements.iter().filter(|p| p.worker_id.as_deref() == Some(w.id.as_str())).count(),
            state: if now - w.heartbeat_at > lease_ms { "dead".into() } else { w.state.clone() },
            heartbeat_age_ms: now - w.heartbeat_at,
            id: w.id,
            addr: w.addr,
            capacity: w.capacity,
            version: w.version,
        })
        .collect();
    Ok(ok(serde_json::json!({ "workers": workers })))
}

/// Moves a node's tasks away (each resumes elsewhere from its checkpoint)
/// and gives it no new ones, e.g. before maintenance.
pub async fn drain(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    set_state(state, req, "draining").await
}

pub async fn activate(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    set_state(state, req, "active").await
}

async fn set_state(state: web::Data<AppState>, req: HttpRequest, to: &str) -> Result<HttpResponse, ApiError> {
    let id = req.match_info().get("id").unwrap_or_default().to_owned();
    if !state.store.set_worker_state(&id, to).await? {
        return Err(ApiError::new(ErrorCode::WorkerNotFound, format!("worker {id:?} is not known")));
    }
    tracing::info!(worker = ?id, state = to, "worker state set");
    Ok(ok(serde_json::json!({ "id": id, "state": to })))
}
