//! The Timeplus ingest API: `POST [/{workspace}]/api/v1beta2/streams/{stream}/ingest`
//! in four formats, and the stream calls Timeplus's Python SDK makes.
//!
//! - `compact` (the default for JSON): `{"columns": [...], "data": [[...], ...]}`;
//!   each row becomes one message, a JSON object keyed by column.
//! - `streaming`: JSON objects one after another (NDJSON, or not even
//!   separated); each object is one message, as sent.
//! - `lines`: each line of the body is one message.
//! - `raw`: the whole body is one message.
//!
//! The `format` query parameter decides; without it the content type does
//! (`application/x-ndjson` and `...;format=streaming` are streaming,
//! `text/plain` is raw, `text/plain;format=lines` lines, JSON compact).
//! The SDK posts every format as `application/json`, JSON-encoding a text
//! body into a string: such a body is decoded first for `lines` and `raw`.
//!
//! Auth: `X-Api-Key: KEY`, `Authorization: ApiKey KEY`, or Basic with the
//! key as the password. Success is 200 with an empty JSON object; errors
//! are `{"code": HTTP status, "message": ...}`.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use dts_core::ingest::{Protocol, StreamKey};
use serde_json::{json, Value};

use crate::registry::{Credential, DeliverError, LiveStream, OutRecord, Registry};

/// Most events in one request.
pub const MAX_EVENTS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Compact,
    Streaming,
    Lines,
    Raw,
}

/// A Timeplus error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpError {
    pub status: u16,
    pub message: String,
}

impl TpError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    pub fn response(&self) -> HttpResponse {
        HttpResponse::build(StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST))
            .content_type("application/json")
            .body(json!({ "code": self.status, "message": self.message }).to_string())
    }
}

/// The format from the query parameter, else from the content type.
pub fn format_of(query_format: Option<&str>, content_type: &str) -> Result<Format, TpError> {
    let by_name = |name: &str| match name.trim().to_ascii_lowercase().as_str() {
        "compact" | "compat" => Some(Format::Compact),
        "streaming" | "stream" => Some(Format::Streaming),
        "lines" => Some(Format::Lines),
        "raw" => Some(Format::Raw),
        _ => None,
    };
    if let Some(f) = query_format {
        return by_name(f).ok_or_else(|| {
            TpError::new(
                400,
                format!("format {} is not one of compact, streaming, lines, raw", dts_core::spec::echo(f)),
            )
        });
    }
    let ct = content_type.to_ascii_lowercase();
    let mut parts = ct.split(';').map(str::trim);
    let mime = parts.next().unwrap_or("");
    let param = parts.find_map(|p| p.strip_prefix("format=")).and_then(by_name);
    Ok(match (mime, param) {
        (_, Some(f)) => f,
        ("application/x-ndjson", None) => Format::Streaming,
        ("text/plain", None) => Format::Raw,
        _ => Format::Compact,
    })
}

/// A request's events: one buffer (the body itself where it can be) and
/// where each event is in it, so splitting copies nothing per event.
#[derive(Debug)]
pub struct Events<'a> {
    buf: Cow<'a, [u8]>,
    spans: Vec<Range<usize>>,
}

impl Events<'_> {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|s| &self.buf[s.clone()])
    }
}

/// Splits a body into events (each one message payload).
pub fn events<'a>(format: Format, content_type: &str, body: &'a [u8]) -> Result<Events<'a>, TpError> {
    let bad = |m: String| TpError::new(400, m);
    let text_body = |body: &'a [u8]| -> Cow<'a, [u8]> {
        // The SDK JSON-encodes text bodies when it posts them as JSON.
        if content_type.to_ascii_lowercase().contains("json") {
            if let Ok(Value::String(s)) = serde_json::from_slice::<Value>(body) {
                return Cow::Owned(s.into_bytes());
            }
        }
        Cow::Borrowed(body)
    };
    let events = match format {
        Format::Raw => {
            let buf = text_body(body);
            Events { spans: std::iter::once(0..buf.len()).collect(), buf }
        }
        Format::Lines => {
            let buf = text_body(body);
            let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let mut spans = Vec::new();
            let mut start = 0;
            for line in text.split(|b| *b == b'\n') {
                let end = start + line.strip_suffix(b"\r").unwrap_or(line).len();
                if end > start {
                    spans.push(start..end);
                }
                start += line.len() + 1;
            }
            Events { buf, spans }
        }
        Format::Streaming => {
            // Each object is one message as sent: it is checked, not rewritten.
            let mut spans = Vec::new();
            let mut values = serde_json::Deserializer::from_slice(body).into_iter::<serde::de::IgnoredAny>();
            let mut end = 0;
            while let Some(value) = values.next() {
                let i = spans.len();
                value.map_err(|e| bad(format!("event {i} is not valid JSON: {e}")))?;
                let start = end + body[end..].iter().take_while(|b| b.is_ascii_whitespace()).count();
                end = values.byte_offset();
                if body.get(start) != Some(&b'{') {
                    return Err(bad(format!("event {i} is not a JSON object")));
                }
                spans.push(start..end);
                if spans.len() > MAX_EVENTS {
                    break;
                }
            }
            Events { buf: Cow::Borrowed(body), spans }
        }
        Format::Compact => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Compact {
                columns: Vec<String>,
                data: Vec<Vec<Value>>,
            }
            let c: Compact = serde_json::from_slice(body)
                .map_err(|e| bad(format!("the body is not {{\"columns\", \"data\"}}: {e}")))?;
            if c.columns.is_empty() {
                return Err(bad("columns must name at least one column".into()));
            }
            let mut buf = Vec::with_capacity(body.len() * 2);
            let mut spans = Vec::with_capacity(c.data.len());
            for (i, row) in c.data.into_iter().enumerate() {
                if row.len() != c.columns.len() {
                    return Err(bad(format!("row {i} has {} values for {} columns", row.len(), c.columns.len())));
                }
                let object: serde_json::Map<String, Value> = c.columns.iter().cloned().zip(row).collect();
                let start = buf.len();
                serde_json::to_writer(&mut buf, &object).map_err(|e| bad(format!("row {i}: {e}")))?;
                spans.push(start..buf.len());
            }
            Events { buf: Cow::Owned(buf), spans }
        }
    };
    if events.is_empty() {
        return Err(bad("the request carries no event".into()));
    }
    if events.len() > MAX_EVENTS {
        return Err(bad(format!("a request carries at most {MAX_EVENTS} events")));
    }
    Ok(events)
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_owned())
}

/// The API key of a request, from any of the three places it may be.
pub fn api_key(req: &HttpRequest) -> Option<String> {
    if let Some(k) = header(req, "x-api-key") {
        return Some(k);
    }
    let auth = header(req, "authorization")?;
    let (scheme, value) = auth.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("apikey") {
        return Some(value.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(_, pw)| pw.to_owned());
    }
    None
}

fn authenticate(registry: &Registry, req: &HttpRequest) -> Result<Arc<Credential>, TpError> {
    let key = api_key(req)
        .ok_or_else(|| TpError::new(401, "send the API key in X-Api-Key (or Authorization: ApiKey ...)"))?;
    registry
        .credential(&crate::registry::digest(&key))
        .filter(|c| c.protocol == Protocol::Timeplus && c.secret.is_none())
        .ok_or_else(|| TpError::new(401, "the API key is not valid"))
}

fn workspace(req: &HttpRequest) -> String {
    req.match_info().get("workspace").unwrap_or_default().to_owned()
}

fn find(registry: &Registry, req: &HttpRequest, credential: &Credential) -> Result<Arc<LiveStream>, TpError> {
    let name = req.match_info().get("stream").unwrap_or_default().to_owned();
    let key = StreamKey { protocol: Protocol::Timeplus, scope: workspace(req), name: name.clone() };
    let stream = registry
        .get(&key)
        .ok_or_else(|| TpError::new(404, format!("stream {} does not exist", dts_core::spec::echo(&name))))?;
    if !credential.may_write(&stream) {
        return Err(TpError::new(403, "this API key may not write to this stream"));
    }
    Ok(stream)
}

/// `POST .../streams/{stream}/ingest`.
pub async fn ingest(registry: web::Data<Registry>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let limit = registry.settings.max_body_bytes;
    let body = match crate::read_body(&req, payload, limit).await {
        Ok(b) => b,
        Err(crate::BodyError::TooLarge) => {
            return TpError::new(413, format!("a request is at most {limit} bytes")).response()
        }
        Err(crate::BodyError::Unreadable) => return TpError::new(400, "the request body could not be read").response(),
    };
    match handle(&registry, &req, &body).await {
        Ok(r) | Err(r) => r,
    }
}

async fn handle(registry: &Registry, req: &HttpRequest, body: &[u8]) -> Result<HttpResponse, HttpResponse> {
    let credential = authenticate(registry, req).map_err(|e| e.response())?;
    let stream = find(registry, req, &credential).map_err(|e| e.response())?;
    let query: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let format_param = query.iter().find(|(k, _)| k == "format").map(|(_, v)| v.as_str());
    let content_type = header(req, "content-type").unwrap_or_default();
    let format = format_of(format_param, &content_type).map_err(|e| e.response())?;
    let events = events(format, &content_type, body).map_err(|e| e.response())?;
    let max = stream.spec.max_record_bytes();
    if let Some((i, e)) = events.iter().enumerate().find(|(_, e)| e.len() > max) {
        return Err(TpError::new(413, format!("event {i} is {} bytes; at most {max} are accepted", e.len())).response());
    }
    if !stream.admit(events.len()) {
        return Err(TpError::new(429, "the stream's rate limit is reached; retry later").response());
    }
    let partitions = registry.partitions(&stream).await.map_err(|e| unavailable(&stream, &e))?;
    let out: Vec<OutRecord<'_>> =
        events.iter().map(|payload| OutRecord { key: None, payload, partition: None }).collect();
    let results = registry
        .deliver(&stream, &out, stream.next_partition(partitions), &[])
        .await
        .map_err(|e| unavailable(&stream, &e))?;
    if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
        // Timeplus has no per-event result: the whole request failed, to be retried.
        return Err(TpError::new(503, format!("not every event was stored ({e}); retry the request")).response());
    }
    Ok(HttpResponse::Ok().content_type("application/json").body("{}"))
}

fn unavailable(stream: &LiveStream, e: &DeliverError) -> HttpResponse {
    stream.counters.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(stream = stream.id, error = %e, "Timeplus events could not be stored");
    TpError::new(503, format!("{e}")).response()
}

/// The SDK's view of a stream.
fn stream_json(s: &LiveStream) -> Value {
    json!({
        "name": s.key.name,
        "columns": [{"name": "raw", "type": "string", "nullable": false, "default": "", "codec": ""}],
        "description": format!("dts ingest stream {} -> Kafka topic {}", s.id, s.spec.kafka.topic),
        "engine": "Stream",
        "is_external": false,
        "mode": "append",
        // Kafka keeps the data: no Timeplus retention or TTL applies.
        "logstore_retention_bytes": -1,
        "logstore_retention_ms": -1,
        "ttl": "",
        "ttl_expression": "",
    })
}

/// `GET .../streams`: the streams this key may write in this workspace.
pub async fn list_streams(registry: web::Data<Registry>, req: HttpRequest) -> HttpResponse {
    let credential = match authenticate(&registry, &req) {
        Ok(c) => c,
        Err(e) => return e.response(),
    };
    let ws = workspace(&req);
    let streams: Vec<Value> = credential
        .streams
        .iter()
        .filter_map(|id| registry.get_by_id(*id))
        .filter(|s| s.key.protocol == Protocol::Timeplus && s.key.scope == ws)
        .map(|s| stream_json(&s))
        .collect();
    HttpResponse::Ok().content_type("application/json").body(Value::Array(streams).to_string())
}

/// `GET .../streams/{stream}`.
pub async fn get_stream(registry: web::Data<Registry>, req: HttpRequest) -> HttpResponse {
    let found = authenticate(&registry, &req).and_then(|c| find(&registry, &req, &c));
    match found {
        Ok(s) => HttpResponse::Ok().content_type("application/json").body(stream_json(&s).to_string()),
        Err(e) => e.response(),
    }
}

/// `POST .../streams`: streams are created by dts operators (they choose
/// the Kafka topic); for a stream that exists and this key may write, the
/// SDK's create succeeds and answers the stream, so scripts that create
/// before they ingest work unchanged.
pub async fn create_stream(registry: web::Data<Registry>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let credential = match authenticate(&registry, &req) {
        Ok(c) => c,
        Err(e) => return e.response(),
    };
    let Some(name) = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["name"].as_str().map(str::to_owned))
    else {
        return TpError::new(400, "the body must name the stream: {\"name\": ..., \"columns\": [...]}").response();
    };
    let key = StreamKey { protocol: Protocol::Timeplus, scope: workspace(&req), name: name.clone() };
    match registry.get(&key) {
        Some(s) if credential.may_write(&s) => {
            HttpResponse::Created().content_type("application/json").body(stream_json(&s).to_string())
        }
        Some(_) => TpError::new(403, "this API key may not write to this stream").response(),
        None => TpError::new(
            404,
            format!(
                "stream {} is not set up in dts: an operator creates it with POST /v1/ingest/streams, naming its Kafka topic",
                dts_core::spec::echo(&name)
            ),
        )
        .response(),
    }
}

/// `DELETE .../streams/{stream}`: refused; operators remove streams.
pub async fn delete_stream(registry: web::Data<Registry>, req: HttpRequest) -> HttpResponse {
    match authenticate(&registry, &req).and_then(|c| find(&registry, &req, &c)) {
        Ok(_) => TpError::new(403, "streams are removed by dts operators (DELETE /v1/ingest/streams/:id)").response(),
        Err(e) => e.response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn texts(v: Events<'_>) -> Vec<String> {
        v.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect()
    }

    #[test]
    fn the_format_parameter_decides_then_the_content_type() {
        assert_eq!(format_of(Some("raw"), "application/json").unwrap(), Format::Raw);
        assert_eq!(format_of(None, "text/plain").unwrap(), Format::Raw);
        assert_eq!(format_of(None, "text/plain;format=lines").unwrap(), Format::Lines);
        assert_eq!(format_of(None, "application/x-ndjson").unwrap(), Format::Streaming);
        assert_eq!(format_of(None, "application/vnd.timeplus+json;format=streaming").unwrap(), Format::Streaming);
        assert_eq!(format_of(None, "application/json").unwrap(), Format::Compact);
        assert_eq!(format_of(None, "").unwrap(), Format::Compact);
        assert_eq!(format_of(Some("csv"), "").unwrap_err().status, 400);
    }

    #[test]
    fn each_format_splits_into_events() {
        let seed = b"\n{\"key1\": \"value11\", \"key2\": 12}\n";
        assert_eq!(
            texts(events(Format::Raw, "text/plain", seed).unwrap()),
            [String::from_utf8(seed.to_vec()).unwrap()]
        );
        assert_eq!(texts(events(Format::Lines, "text/plain", b"a\r\nb\n\nc\n").unwrap()), ["a", "b", "c"]);
        assert_eq!(texts(events(Format::Lines, "application/json", br#""x\ny""#).unwrap()), ["x", "y"], "SDK-encoded");
        assert_eq!(
            texts(events(Format::Streaming, "", b"{\"a\":1}{\"a\":2}\n {\"a\": [3]}\r\n").unwrap()),
            [r#"{"a":1}"#, r#"{"a":2}"#, r#"{"a": [3]}"#],
            "each object as sent"
        );
        assert_eq!(texts(events(Format::Lines, "text/plain", b"\r\nx\r").unwrap()), ["x"]);
        let compact = br#"{"columns":["k","n"],"data":[["a",1],["b",2]]}"#;
        assert_eq!(
            texts(events(Format::Compact, "application/json", compact).unwrap()),
            [r#"{"k":"a","n":1}"#, r#"{"k":"b","n":2}"#]
        );
        for (f, body) in [
            (Format::Compact, &br#"{"columns":["k"],"data":[["a","b"]]}"#[..]),
            (Format::Compact, b"[1]"),
            (Format::Streaming, b"[1]"),
            (Format::Streaming, b"{\"a\":"),
            (Format::Lines, b"\n\n"),
        ] {
            assert_eq!(events(f, "", body).unwrap_err().status, 400, "{f:?} {body:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn lines_are_the_bodys_nonempty_lines(lines in proptest::collection::vec("[a-z ]{0,6}", 1..12)) {
            let body = lines.join("\n");
            let want: Vec<String> = lines.iter().filter(|l| !l.is_empty()).cloned().collect();
            match events(Format::Lines, "text/plain", body.as_bytes()) {
                Ok(e) => prop_assert_eq!(texts(e), want),
                Err(e) => prop_assert!(want.is_empty(), "{:?}", e),
            }
        }

        #[test]
        fn any_body_splits_or_is_refused(body in proptest::collection::vec(any::<u8>(), 0..256), ct in "(application/json|text/plain|)") {
            for f in [Format::Compact, Format::Streaming, Format::Lines, Format::Raw] {
                let _ = events(f, &ct, &body);
            }
        }
    }
}
