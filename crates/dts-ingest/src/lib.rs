//! Push ingest: producers that speak another system's HTTP protocol send to
//! dts unchanged, and their records land in Kafka.
//!
//! # Layout
//! - [`registry`]: the streams a node serves (from the store, refreshed
//!   every second), one Kafka producer per destination, rate limits,
//!   counters, and delivery that answers only once Kafka acknowledged.
//! - [`inlong`]: the Apache InLong DataProxy HTTP report.
//! - [`dis`]: Huawei Cloud DIS SendRecords, with [`signing`] (AK/SK).
//!
//! Each protocol answers in its own shape, errors included; none of them
//! goes through the dts API's Basic auth (each has its own, or none).

pub mod dis;
pub mod inlong;
pub mod registry;
pub mod signing;

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
    .service(web::resource("/v2/{project_id}/records").route(web::post().to(dis::send_records)));
}

/// True for paths served by [`routes`]: they skip the API's authentication.
pub fn is_protocol_path(path: &str) -> bool {
    path.starts_with("/dataproxy/") || path.starts_with("/v2/")
}
