//! The endpoints. Each reads and checks all of its input before it writes
//! anything, so a refused request changes nothing.

use actix_web::{web, HttpRequest, HttpResponse};
use dts_core::snapshot::SnapshotBody;
use dts_core::spec::{parse_submit_body, Resumable};
use dts_core::{DesiredState, ErrorCode};
use dts_store::tasks::AlterOutcome;
use futures_util::StreamExt;
use serde_json::json;

use crate::envelope::{ok, ApiError};
use crate::views::{snapshot_status, ListItem, ListPage, StateChange, TaskDetail};
use crate::AppState;

/// Alters retried after losing an optimistic-concurrency race before answering 409.
const ALTER_ATTEMPTS: usize = 3;

pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, body, state.limits.max_body_bytes).await?;
    let spec = parse_submit_body(&body)?;
    spec.validate()?;
    spec.check_secrets_present()?;
    let lease_ms = state.cluster.as_ref().map_or(0, |c| c.lease_ms);
    let placement = state.placement.assignment(&state.store, lease_ms).await?;
    let task = state.store.create_task(&spec, placement.as_ref()).await?;
    tracing::info!(task = task.id, source = ?task.source_addr, dest = ?task.dest_addr, "task submitted");
    Ok(ok(json!({ "addr": task.service_addr, "id": task.id })))
}

pub async fn alter(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let id = task_id(&req)?;
    let body = read_body(&req, body, state.limits.max_body_bytes).await?;
    let spec = parse_submit_body(&body)?;
    spec.validate()?;
    for _ in 0..ALTER_ATTEMPTS {
        let current = state.store.get_task(id).await?.ok_or_else(|| ApiError::task_not_found(id))?;
        spec.check_alter(&current.spec, resumable(current.checkpoint.as_deref()))?;
        // Kafka secrets left out are kept, like the source password.
        let mut spec = spec.clone();
        state.store.kafka_secrets(&current)?.keep_unless_given(&mut spec.kafka);
        spec.check_secrets_present()?;
        match state.store.alter_task(id, current.version, &spec).await? {
            AlterOutcome::Altered(task) => {
                tracing::info!(task = id, version = task.version, "task altered");
                // A failed task meant to run is retried with its new settings
                // (the usual fix: the right password or address).
                if task.state == dts_core::TaskState::Failed && task.desired_state == DesiredState::Running {
                    state.store.set_desired_state(id, DesiredState::Running).await?;
                }
                return Ok(ok(json!({})));
            }
            AlterOutcome::NotFound => return Err(ApiError::task_not_found(id)),
            // The spec's fixed parts did not change, so the check above still holds: try again.
            AlterOutcome::VersionConflict { .. } => continue,
        }
    }
    Err(ApiError::new(ErrorCode::Conflict, format!("task {id} is being changed by other requests; retry the alter")))
}

/// Whether a stored checkpoint is a GTID state (or there is none yet). Only
/// its `gtid` field is read: the control plane does not decode positions.
fn resumable(checkpoint: Option<&str>) -> Resumable {
    #[derive(serde::Deserialize)]
    struct Position {
        #[serde(default)]
        gtid: String,
    }
    match checkpoint.map(serde_json::from_str::<Position>) {
        None => Resumable::OnAnyServer,
        Some(Ok(p)) if !p.gtid.is_empty() => Resumable::OnAnyServer,
        Some(_) => Resumable::OnThisServer,
    }
}

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (page, per_page) = paging(req.query_string(), state.limits.max_per_page)?;
    let offset = (page - 1) * per_page;
    let result = state.store.list_tasks(per_page, offset).await?;
    Ok(ok(ListPage {
        tasks: result.tasks.into_iter().map(ListItem::from).collect(),
        total: result.total,
        page,
        per_page,
    }))
}

pub async fn detail(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = task_id(&req)?;
    let task = state.store.get_task(id).await?.ok_or_else(|| ApiError::task_not_found(id))?;
    Ok(ok(TaskDetail::from(&task)))
}

pub async fn stop(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    change_state(state, req, DesiredState::Stopped).await
}

pub async fn start(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    change_state(state, req, DesiredState::Running).await
}

async fn change_state(
    state: web::Data<AppState>,
    req: HttpRequest,
    desired: DesiredState,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&req)?;
    let task = state.store.set_desired_state(id, desired).await?.ok_or_else(|| ApiError::task_not_found(id))?;
    tracing::info!(task = id, desired = desired.as_str(), state = %task.state, "task state requested");
    Ok(ok(StateChange { id, state: task.state.as_str(), desired_state: task.desired_state.as_str() }))
}

pub async fn delete(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = task_id(&req)?;
    if !state.store.delete_task(id).await? {
        return Err(ApiError::task_not_found(id));
    }
    tracing::info!(task = id, "task deleted");
    Ok(ok(json!({})))
}

/// Liveness and store reachability, without authentication (for load
/// balancers and orchestrators); it reveals nothing about tasks.
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => ok(json!({ "status": "ok", "store": state.store.backend().name() })),
        Err(e) => actix_web::ResponseError::error_response(&ApiError::from(e)),
    }
}

pub async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::RouteNotFound, format!("no such endpoint: {} {}", req.method(), req.path())))
}

pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::MethodNotAllowed, format!("{} is not allowed on {}", req.method(), req.path())))
}

/// `POST /v1/task/{id}/snapshot`: copies some of the task's tables again
/// (or the rows of them a `where` accepts) while it keeps streaming. A
/// stopped task takes the request up when it starts.
pub async fn request_snapshot(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&req)?;
    let body = read_body(&req, body, state.limits.max_body_bytes).await?;
    let asked = SnapshotBody::parse(&body)?;
    let task = state.store.get_task(id).await?.ok_or_else(|| ApiError::task_not_found(id))?;
    // Request ids increase per task, whatever the clock does.
    let previous = task.snapshot_request.as_ref().map_or(0, |r| r.id);
    let request = asked.validate_for(dts_store::now_ms().max(previous + 1), &task.spec.filters)?;
    if let Some(current) = &task.snapshot_request {
        if snapshot_status(Some(current), task.checkpoint.as_deref()).state != "done" {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "task {id} is still copying snapshot request {}: wait for it, or cancel it with DELETE",
                    current.id
                ),
            ));
        }
    }
    state.store.set_snapshot_request(id, Some(&request)).await?.ok_or_else(|| ApiError::task_not_found(id))?;
    tracing::info!(task = id, request = request.id, tables = request.tables.len(), "snapshot requested");
    Ok(ok(json!({ "id": id, "request": request.id })))
}

/// `GET /v1/task/{id}/snapshot`: the on-demand snapshot and its progress.
pub async fn snapshot_progress(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = task_id(&req)?;
    let task = state.store.get_task(id).await?.ok_or_else(|| ApiError::task_not_found(id))?;
    Ok(ok(snapshot_status(task.snapshot_request.as_ref(), task.checkpoint.as_deref())))
}

/// `DELETE /v1/task/{id}/snapshot`: cancels it; rows already sent stay sent.
pub async fn cancel_snapshot(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = task_id(&req)?;
    let task = state.store.get_task(id).await?.ok_or_else(|| ApiError::task_not_found(id))?;
    let Some(current) = task.snapshot_request else {
        return Ok(ok(json!({ "id": id, "cancelled": false })));
    };
    state.store.set_snapshot_request(id, None).await?;
    tracing::info!(task = id, request = current.id, "snapshot cancelled");
    Ok(ok(json!({ "id": id, "cancelled": true })))
}

/// The `{id}` path segment as a positive integer.
pub(crate) fn task_id(req: &HttpRequest) -> Result<i64, ApiError> {
    let raw = req.match_info().get("id").unwrap_or_default();
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::new(ErrorCode::InvalidTaskId, format!("task id must be a positive integer, got {raw:?}"))),
    }
}

/// `page` and `per_page` from the query string, with defaults and bounds.
pub fn paging(query: &str, max_per_page: i64) -> Result<(i64, i64), ApiError> {
    /// Far beyond any real task count; keeps `page * per_page` from overflowing.
    const MAX_PAGE: i64 = 1_000_000_000;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, format!("malformed query string: {e}")))?;
    let get = |name: &str, default: i64, max: i64| -> Result<i64, ApiError> {
        match pairs.iter().rev().find(|(k, _)| k == name) {
            None => Ok(default),
            Some((_, v)) if v.is_empty() => Ok(default),
            Some((_, v)) => match v.trim().parse::<i64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("{name} must be an integer from 1 to {max}, got {v:?}"),
                )),
            },
        }
    };
    Ok((get("page", 1, MAX_PAGE)?, get("per_page", DEFAULT_PER_PAGE, max_per_page)?))
}

pub const DEFAULT_PER_PAGE: i64 = 20;

/// Reads the whole body, refusing it as soon as it passes `limit` bytes.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let too_large =
        || ApiError::new(ErrorCode::BodyTooLarge, format!("the request body is larger than the {limit}-byte limit"));
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("the request body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paging_defaults_and_bounds() {
        assert_eq!(paging("", 1000).unwrap(), (1, 20));
        assert_eq!(paging("per_page=5&page=1", 1000).unwrap(), (1, 5));
        assert_eq!(paging("page=3&per_page=1000&_=123", 1000).unwrap(), (3, 1000));
        assert_eq!(paging("page=", 1000).unwrap(), (1, 20));
        for bad in ["page=0", "page=-1", "page=abc", "per_page=1001", "per_page=0", "page=1.5", "per_page=%ZZ"] {
            let err = paging(bad, 1000).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidQuery, "{bad}");
        }
    }
}
