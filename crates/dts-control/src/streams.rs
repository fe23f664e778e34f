//! Ingest streams over the API: `/v1/ingest/streams`. Same envelope, roles
//! and validation as tasks. Changes apply on this node at once and on every
//! other node within a second (they re-read the store).

use actix_web::{web, HttpRequest, HttpResponse};
use dts_core::ingest::{parse_stream_body, StreamSpec};
use dts_core::ErrorCode;
use dts_ingest::registry::CounterView;
use dts_store::ingest::{StreamRecord, StreamUpdate};
use serde::Serialize;
use serde_json::json;

use crate::envelope::{ok, ApiError};
use crate::handlers::read_body;
use crate::AppState;

#[derive(Debug, Serialize)]
struct StreamView {
    id: i64,
    #[serde(flatten)]
    spec: StreamSpec,
    version: i64,
    created_at: i64,
    updated_at: i64,
    /// This node's counters since it started.
    counters: CounterView,
}

fn view(state: &AppState, r: StreamRecord) -> StreamView {
    StreamView {
        id: r.id,
        counters: state.ingest.counters(r.id),
        spec: r.spec,
        version: r.version,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

fn stream_id(req: &HttpRequest) -> Result<i64, ApiError> {
    let raw = req.match_info().get("id").unwrap_or_default();
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidTaskId, format!("the stream id must be a positive integer, got {raw:?}"))
    })
}

fn not_found(id: i64) -> ApiError {
    ApiError::new(ErrorCode::StreamNotFound, format!("ingest stream {id} does not exist"))
}

fn name_taken(spec: &StreamSpec) -> ApiError {
    ApiError::new(ErrorCode::Conflict, format!("another {} stream already has this name", spec.protocol.as_str()))
}

async fn reload(state: &AppState) {
    if let Err(e) = state.ingest.reload().await {
        tracing::warn!(error = %e, "cannot re-read the ingest streams; other nodes pick the change up within a second");
    }
}

/// `POST /v1/ingest/streams`.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, body, state.limits.max_body_bytes).await?;
    let spec = parse_stream_body(&body)?;
    let key = spec.validate()?;
    spec.check_secrets_present()?;
    let Some(record) = state.store.create_stream(&spec, &key).await? else {
        return Err(name_taken(&spec));
    };
    reload(&state).await;
    tracing::info!(stream = record.id, protocol = key.protocol.as_str(), "ingest stream created");
    Ok(ok(json!({ "id": record.id })))
}

/// `GET /v1/ingest/streams`.
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let streams: Vec<StreamView> = state.store.list_streams().await?.into_iter().map(|r| view(&state, r)).collect();
    Ok(ok(json!({ "streams": streams })))
}

/// `GET /v1/ingest/streams/{id}`.
pub async fn detail(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = stream_id(&req)?;
    let record = state.store.get_stream(id).await?.ok_or_else(|| not_found(id))?;
    Ok(ok(view(&state, record)))
}

/// `PUT /v1/ingest/streams/{id}`: the whole stream again; secrets left out are kept.
pub async fn alter(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let id = stream_id(&req)?;
    let body = read_body(&req, body, state.limits.max_body_bytes).await?;
    let spec = parse_stream_body(&body)?;
    let key = spec.validate()?;
    match state.store.update_stream(id, &spec, &key).await? {
        StreamUpdate::Updated(record) => {
            reload(&state).await;
            tracing::info!(stream = id, version = record.version, "ingest stream altered");
            Ok(ok(json!({})))
        }
        StreamUpdate::NotFound => Err(not_found(id)),
        StreamUpdate::NameTaken => Err(name_taken(&spec)),
    }
}

/// `DELETE /v1/ingest/streams/{id}`.
pub async fn delete(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = stream_id(&req)?;
    if !state.store.delete_stream(id).await? {
        return Err(not_found(id));
    }
    reload(&state).await;
    tracing::info!(stream = id, "ingest stream deleted");
    Ok(ok(json!({})))
}
