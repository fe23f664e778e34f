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
    /// Totals over every node that served the stream, restarts included.
    counters: CounterView,
}

/// Every node's reported counters but this one's, whose live ones are
/// added instead (so a client reading after its own request sees it).
type Others = std::collections::HashMap<i64, dts_core::ingest::StreamCount>;

fn view(state: &AppState, others: &Others, r: StreamRecord) -> StreamView {
    let mut counters = state.ingest.counters(r.id);
    if let Some(c) = others.get(&r.id) {
        counters.records = counters.records.saturating_add(c.records);
        counters.bytes = counters.bytes.saturating_add(c.bytes);
        counters.errors = counters.errors.saturating_add(c.errors);
    }
    StreamView {
        id: r.id,
        counters,
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
    let others = state.store.ingest_counters(state.ingest.node()).await?;
    let streams: Vec<StreamView> =
        state.store.list_streams().await?.into_iter().map(|r| view(&state, &others, r)).collect();
    Ok(ok(json!({ "streams": streams })))
}

/// `GET /v1/ingest/streams/{id}`.
pub async fn detail(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = stream_id(&req)?;
    let record = state.store.get_stream(id).await?.ok_or_else(|| not_found(id))?;
    let others = state.store.ingest_counters(state.ingest.node()).await?;
    Ok(ok(view(&state, &others, record)))
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

/// `{"key": {"protocol", "streams", "type"?}}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    key: NewKey,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    protocol: dts_core::ingest::Protocol,
    streams: Vec<i64>,
    /// DIS: `aksk` (default, for signed requests) or `token` (X-Auth-Token).
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

fn random(chars: &[u8], n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..n).map(|_| char::from(chars[rng.gen_range(0..chars.len())])).collect()
}

const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `POST /v1/ingest/keys`: the secret is in this answer only.
pub async fn create_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    use dts_core::ingest::Protocol;
    let body = read_body(&req, body, state.limits.max_body_bytes).await?;
    let KeyBody { key } = serde_json::from_slice(&body).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() { ErrorCode::MalformedJson } else { ErrorCode::InvalidField };
        ApiError::new(code, format!("key: {e}"))
    })?;
    let invalid = |m: String| ApiError::new(ErrorCode::InvalidStream, m);
    if key.streams.is_empty() || key.streams.len() > 1000 {
        return Err(invalid("key.streams must list 1 to 1000 stream ids".into()));
    }
    for id in &key.streams {
        match state.store.get_stream(*id).await? {
            Some(s) if s.key.protocol == key.protocol => {}
            Some(_) => {
                return Err(invalid(format!("key.streams: stream {id} is not a {} stream", key.protocol.as_str())))
            }
            None => return Err(not_found(*id)),
        }
    }
    let kind = match (key.protocol, key.kind.as_deref()) {
        (Protocol::Dis, None | Some("aksk")) => "aksk",
        (Protocol::Dis, Some("token")) => "token",
        (Protocol::Timeplus, None | Some("api_key")) => "api_key",
        (Protocol::Inlong, _) => {
            return Err(invalid("key.protocol: InLong streams take no keys; limit them with allowed_sources".into()))
        }
        (p, Some(other)) => {
            return Err(invalid(format!("key.type {} is not a {} key type", dts_core::spec::echo(other), p.as_str())))
        }
    };
    let (data, id) = match kind {
        "aksk" => {
            let (ak, sk) = (random(UPPER_DIGITS, 20), random(ALNUM, 40));
            let id = state.store.create_key(key.protocol, kind, &ak, Some(&sk), &key.streams).await?;
            (json!({ "id": id, "access_key": ak, "secret_key": sk }), id)
        }
        "token" => {
            let token = random(ALNUM, 64);
            let id = state
                .store
                .create_key(key.protocol, kind, &dts_ingest::registry::digest(&token), None, &key.streams)
                .await?;
            (json!({ "id": id, "token": token }), id)
        }
        _ => {
            let api_key = random(ALNUM, 60);
            let id = state
                .store
                .create_key(key.protocol, kind, &dts_ingest::registry::digest(&api_key), None, &key.streams)
                .await?;
            (json!({ "id": id, "api_key": api_key }), id)
        }
    };
    reload(&state).await;
    tracing::info!(key = id, protocol = key.protocol.as_str(), kind, "ingest key created");
    Ok(ok(data))
}

/// `GET /v1/ingest/keys`: no secrets; DIS access keys are shown (they are names, not secrets).
pub async fn list_keys(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys: Vec<serde_json::Value> = state
        .store
        .list_keys()
        .await?
        .into_iter()
        .map(|k| {
            let mut v = json!({ "id": k.id, "protocol": k.protocol, "type": k.kind, "streams": k.streams,
                                "created_at": k.created_at });
            if k.kind == "aksk" {
                v["access_key"] = json!(k.lookup);
            }
            v
        })
        .collect();
    Ok(ok(json!({ "keys": keys })))
}

/// `DELETE /v1/ingest/keys/{id}`: revoked on this node at once, on the others within a second.
pub async fn delete_key(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = stream_id(&req)?;
    if !state.store.delete_key(id).await? {
        return Err(ApiError::new(ErrorCode::StreamNotFound, format!("ingest key {id} does not exist")));
    }
    reload(&state).await;
    tracing::info!(key = id, "ingest key revoked");
    Ok(ok(json!({})))
}
