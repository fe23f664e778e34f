//! Push ingest: producers that speak another system's HTTP protocol send to
//! dts unchanged, and their records land in Kafka.
//!
//! # Layout
//! - [`registry`]: the streams a node serves (from the store, refreshed
//!   every second), one Kafka producer per destination, rate limits,
//!   counters, and delivery that answers only once Kafka acknowledged.
//! - [`inlong`]: the Apache InLong DataProxy HTTP report.
//! - [`dis`]: Huawei Cloud DIS SendRecords, with [`signing`] (AK/SK).
//! - [`timeplus`]: the Timeplus ingest API and the stream calls of its SDK.
//!
//! Each protocol answers in its own shape, errors included; none of them
//! goes through the dts API's Basic auth (each has its own, or none).

pub mod dis;
pub mod inlong;
pub mod registry;
pub mod signing;
pub mod timeplus;

pub use registry::{IngestSettings, Registry};

use actix_web::web;

/// The protocol endpoints, for `App::configure`. The registry must be in
/// the app's data as `web::Data<Registry>`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/dataproxy/message")
            .route(web::get().to(inlong::message))
            .route(web::post().to(inlong::message))
            .default_service(web::to(inlong::method_not_allowed)),
    )
    .service(
        web::resource("/dataproxy/heartbeat")
            .route(web::get().to(inlong::heartbeat))
            .route(web::post().to(inlong::heartbeat))
            .default_service(web::to(inlong::method_not_allowed)),
    )
    .service(web::resource("/v2/{project_id}/records").route(web::post().to(dis::send_records)))
    .service(
        web::resource("/v2/{project_id}/streams")
            .route(web::get().to(dis::list_streams))
            .route(web::post().to(dis::create_stream)),
    )
    .service(
        web::resource("/v2/{project_id}/streams/{stream_name}")
            .route(web::get().to(dis::show_stream))
            .route(web::delete().to(dis::delete_stream)),
    );
    // Timeplus: with a workspace segment and without.
    for prefix in ["/{workspace}/api/v1beta2", "/api/v1beta2"] {
        cfg.service(
            web::resource(format!("{prefix}/streams/{{stream}}/ingest")).route(web::post().to(timeplus::ingest)),
        )
        .service(
            web::resource(format!("{prefix}/streams"))
                .route(web::get().to(timeplus::list_streams))
                .route(web::post().to(timeplus::create_stream)),
        )
        .service(
            web::resource(format!("{prefix}/streams/{{stream}}"))
                .route(web::get().to(timeplus::get_stream))
                .route(web::delete().to(timeplus::delete_stream)),
        );
    }
}

/// True for paths served by [`routes`]: they skip the API's authentication.
pub fn is_protocol_path(path: &str) -> bool {
    if path.starts_with("/dataproxy/") || path.starts_with("/v2/") || path.starts_with("/api/v1beta2/") {
        return true;
    }
    // `/{workspace}/api/v1beta2/...`, never under the cluster's `/internal/`.
    let mut parts = path.split('/').skip(1);
    let first = parts.next().unwrap_or_default();
    first != "internal" && parts.next() == Some("api") && parts.next() == Some("v1beta2")
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit once decompressed.
    TooLarge,
    /// Cut off, or a compressed body that does not decompress.
    Unreadable,
}

/// The most a request body reserves before its bytes arrive.
const UPFRONT_BODY_BYTES: usize = 1024 * 1024;

/// Reads a request body, decompressing `Content-Encoding: gzip` (and the
/// other encodings actix supports); `limit` applies to the decompressed
/// bytes, so a small compressed body cannot expand without bound.
pub async fn read_body(
    req: &actix_web::HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, BodyError> {
    use futures_util::StreamExt;
    let mut stream = actix_web::dev::Decompress::from_headers(payload, req.headers());
    // Room for the declared length up front: growing chunk by chunk copied
    // a large body several times. At most 1 MiB before the bytes arrive, so
    // idle connections that declare big bodies cannot reserve memory.
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = web::BytesMut::with_capacity(declared.min(limit).min(UPFRONT_BODY_BYTES));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
