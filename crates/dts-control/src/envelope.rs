//! The seed's response envelope `{"code":0,"message":"0","ttl":1,"data":..}`
//! and the one error type every handler returns.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use dts_core::{ErrorCode, SpecError};
use dts_store::StoreError;
use serde::Serialize;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    code: i32,
    message: &'a str,
    /// The seed documents it as "ignore"; its examples always send 1.
    ttl: i32,
    data: T,
}

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// A success envelope around `data`.
pub fn ok<T: Serialize>(data: T) -> HttpResponse {
    respond(StatusCode::OK, ErrorCode::Ok, "0", data)
}

fn respond<T: Serialize>(status: StatusCode, code: ErrorCode, message: &str, data: T) -> HttpResponse {
    let body = Envelope { code: code.number(), message, ttl: 1, data };
    match serde_json::to_vec(&body) {
        Ok(bytes) => HttpResponse::build(status).insert_header((header::CONTENT_TYPE, JSON_UTF8)).body(bytes),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a response");
            HttpResponse::InternalServerError()
                .insert_header((header::CONTENT_TYPE, JSON_UTF8))
                .body(r#"{"code":50000,"message":"cannot encode the response","ttl":1,"data":null}"#)
        }
    }
}

/// An error answer: a code from the public table and a message that says
/// what to fix. Its `Display` is the message, never a Debug dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: None }
    }

    /// A 429 that tells the client when to come back.
    pub fn too_many(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self { code: ErrorCode::TooManyRequests, message: message.into(), retry_after: Some(retry_after_secs.max(1)) }
    }

    pub fn task_not_found(id: i64) -> Self {
        Self::new(ErrorCode::TaskNotFound, format!("task {id} does not exist"))
    }
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        Self::new(e.code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            tracing::warn!(error = %e, "task store unavailable");
            Self::new(ErrorCode::StoreUnavailable, "the task store is unavailable; retry shortly")
        } else {
            tracing::error!(error = %e, "task store error");
            Self::new(ErrorCode::Internal, format!("internal error: {e}"))
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = respond(self.status_code(), self.code, &self.message, serde_json::Value::Null);
        if self.code == ErrorCode::Unauthorized {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"dts\", charset=\"UTF-8\""));
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
