//! The Apache InLong DataProxy HTTP report: `GET`/`POST /dataproxy/message`
//! with the form fields `groupId`, `streamId`, `body`, `dt` and `cnt`, and
//! `/dataproxy/heartbeat`.
//!
//! `body` holds `cnt` records joined by `\n`; each record becomes one Kafka
//! message with `groupId`, `streamId` and `dt` as headers. Answers are HTTP
//! 200 with `{"code":N,"msg":"..."}` and DataProxy's own error codes. Success
//! is `code` 0, as DataProxy sends it and its clients check it (InLong's
//! report page says 1; its own Java example and SDKs test for 0).

use std::borrow::Cow;
use std::net::IpAddr;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use dts_core::ingest::{Protocol, StreamKey};

use crate::registry::{DeliverError, OutRecord, Registry};

/// DataProxy's error codes (`DataProxyErrCode`) that dts answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    SinkServiceUnready = 1,
    IllegalVisitIp = 10,
    DecodeRequestFailure = 31,
    UnsupportedContentType = 36,
    MissingGroupId = 100,
    MissingStreamId = 101,
    MissingBody = 103,
    BodyExceedMaxLen = 104,
    EmptyMessage = 111,
    SendRequestToMqFailure = 118,
    MqReturnError = 119,
    StreamNotConfigured = 121,
}

impl Code {
    fn default_message(self) -> &'static str {
        match self {
            Self::Ok => "Ok",
            Self::SinkServiceUnready => "Service sink not ready",
            Self::IllegalVisitIp => "Illegal visit ip",
            Self::DecodeRequestFailure => "Decode request failure",
            Self::UnsupportedContentType => "Un-supported content type",
            Self::MissingGroupId => "Parameter groupId is required",
            Self::MissingStreamId => "Parameter streamId is required",
            Self::MissingBody => "Parameter body is required",
            Self::BodyExceedMaxLen => "Body length exceed the maximum length",
            Self::EmptyMessage => "Empty message",
            Self::SendRequestToMqFailure => "Send request to MQ failure",
            Self::MqReturnError => "MQ client return error",
            Self::StreamNotConfigured => "GroupId or StreamId not found in configure",
        }
    }
}

/// An answer in DataProxy's shape.
pub fn answer(code: Code, message: &str) -> HttpResponse {
    let body = serde_json::json!({ "code": code as i32, "msg": message });
    let mut resp = HttpResponse::Ok().body(body.to_string());
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;charset=utf-8"));
    resp
}

fn fail(code: Code) -> HttpResponse {
    answer(code, code.default_message())
}

/// The report's fields, from the query string and the body.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    pub group_id: Option<String>,
    pub stream_id: Option<String>,
    pub body: Option<String>,
    pub dt: Option<String>,
    pub cnt: Option<String>,
}

impl Report {
    fn set(&mut self, name: &str, value: String) {
        match name {
            "groupId" => self.group_id = Some(value),
            "streamId" => self.stream_id = Some(value),
            "body" => self.body = Some(value),
            "dt" => self.dt = Some(value),
            "cnt" => self.cnt = Some(value),
            _ => {}
        }
    }
}

/// Parses a report: form fields from the query string, then from a form
/// body (`application/x-www-form-urlencoded`, or no content type) or a JSON
/// object body (`application/json`, values as strings or numbers).
pub fn parse(query: &str, content_type: &str, body: &[u8]) -> Result<Report, Code> {
    let mut report = Report::default();
    for (k, v) in form_pairs(query.as_bytes()) {
        report.set(&k, v.into_owned());
    }
    if body.is_empty() {
        return Ok(report);
    }
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime == "application/json" {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).map_err(|_| Code::DecodeRequestFailure)?;
        for (k, v) in object {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Null => continue,
                _ => return Err(Code::DecodeRequestFailure),
            };
            report.set(&k, text);
        }
    } else if mime.is_empty() || mime == "application/x-www-form-urlencoded" || mime == "text/plain" {
        for (k, v) in form_pairs(body) {
            report.set(&k, v.into_owned());
        }
    } else {
        return Err(Code::UnsupportedContentType);
    }
    Ok(report)
}

/// The name/value pairs of an `application/x-www-form-urlencoded` text:
/// `&`-separated, empty ones skipped, split at the first `=`.
fn form_pairs(input: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    input.split(|b| *b == b'&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        (decode_component(name), decode_component(value))
    })
}

/// Decodes one form component: `+` is a space, `%XX` a byte, anything
/// else itself (a `%` without two hex digits too); then UTF-8 with invalid
/// sequences replaced, as browsers and `form_urlencoded` decode. Runs
/// without escapes are copied whole: a report's body is mostly such runs.
fn decode_component(input: &[u8]) -> Cow<'_, str> {
    let escape = |b: &u8| *b == b'%' || *b == b'+';
    let Some(first) = input.iter().position(escape) else {
        return String::from_utf8_lossy(input);
    };
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16)).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..first]);
    let mut i = first;
    while i < input.len() {
        match input[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (hex(input.get(i + 1)), hex(input.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                let run = input[i..].iter().position(escape).unwrap_or(input.len() - i);
                out.extend_from_slice(&input[i..i + run]);
                i += run;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(text) => Cow::Owned(text),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// `body` split into records: one per line; a final line break ends the
/// last record instead of starting an empty one.
pub fn records(body: &str) -> Vec<&str> {
    let body = body.strip_suffix('\n').unwrap_or(body);
    body.split('\n').collect()
}

/// `/dataproxy/heartbeat`: the node serves reports.
pub async fn heartbeat() -> HttpResponse {
    fail(Code::Ok)
}

/// A method DataProxy does not serve, answered as DataProxy does.
pub async fn method_not_allowed() -> HttpResponse {
    HttpResponse::build(StatusCode::METHOD_NOT_ALLOWED)
        .content_type("text/plain; charset=UTF-8")
        .body("Failure: 405 Method Not Allowed, Only support Get and Post methods\r\n")
}

/// `/dataproxy/message`.
pub async fn message(registry: web::Data<Registry>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let received_ms = dts_core::now_ms();
    let limit = registry.settings.max_body_bytes;
    let body = match crate::read_body(&req, payload, limit).await {
        Ok(b) => b,
        Err(crate::BodyError::TooLarge) => {
            return answer(Code::BodyExceedMaxLen, &format!("the request is larger than {limit} bytes"))
        }
        Err(crate::BodyError::Unreadable) => return fail(Code::DecodeRequestFailure),
    };
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let body = if req.method() == Method::GET { &[][..] } else { &body[..] };
    let report = match parse(req.query_string(), content_type, body) {
        Ok(r) => r,
        Err(code) => return fail(code),
    };
    let client = req.peer_addr().map(|a| a.ip());
    handle(&registry, report, client, received_ms).await
}

async fn handle(registry: &Registry, report: Report, client: Option<IpAddr>, received_ms: i64) -> HttpResponse {
    let Some(group_id) = report.group_id.filter(|g| !g.trim().is_empty()) else {
        return answer(Code::MissingGroupId, "Field groupId must exist and not blank!");
    };
    let Some(stream_id) = report.stream_id.filter(|s| !s.trim().is_empty()) else {
        return answer(Code::MissingStreamId, "Field streamId must exist and not blank!");
    };
    let key = StreamKey { protocol: Protocol::Inlong, scope: group_id.clone(), name: stream_id.clone() };
    let Some(stream) = registry.get(&key) else {
        return answer(
            Code::StreamNotConfigured,
            &format!("GroupId or StreamId not found in configure: {group_id}/{stream_id}"),
        );
    };
    if !stream.spec.allows(client) {
        return fail(Code::IllegalVisitIp);
    }
    let body = match report.body {
        None => return answer(Code::MissingBody, "Field body is not exist!"),
        Some(b) if b.trim().is_empty() => return answer(Code::EmptyMessage, "Field body is Blank!"),
        Some(b) => b,
    };
    let max = stream.spec.max_record_bytes();
    let lines = records(&body);
    if let Some(long) = lines.iter().find(|l| l.len() > max) {
        return answer(
            Code::BodyExceedMaxLen,
            &format!("Error msg, the body length({}) is bigger than allowed length({max})", long.len()),
        );
    }
    if !stream.admit(lines.len()) {
        return answer(Code::SinkServiceUnready, "the stream's rate limit is reached; retry later");
    }
    // DataProxy keeps the receive time when `dt` is missing or not a number.
    let dt = report.dt.as_deref().and_then(|d| d.trim().parse::<i64>().ok()).unwrap_or(received_ms).to_string();
    let headers: [(&str, &[u8]); 3] =
        [("groupId", group_id.as_bytes()), ("streamId", stream_id.as_bytes()), ("dt", dt.as_bytes())];
    let out: Vec<OutRecord<'_>> =
        lines.iter().map(|l| OutRecord { key: None, payload: l.as_bytes(), partition: None }).collect();
    let partitions = match registry.partitions(&stream).await {
        Ok(n) => n,
        Err(e) => return unavailable(&stream, &e),
    };
    match registry.deliver(&stream, &out, stream.next_partition(partitions), &headers).await {
        Ok(results) => match results.iter().find_map(|r| r.as_ref().err()) {
            None => fail(Code::Ok),
            Some(e) => {
                tracing::warn!(stream = stream.id, error = %e, "an InLong report was not fully stored");
                answer(Code::MqReturnError, &format!("MQ client return error: {e}"))
            }
        },
        Err(e) => unavailable(&stream, &e),
    }
}

fn unavailable(stream: &crate::registry::LiveStream, e: &DeliverError) -> HttpResponse {
    stream.counters.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(stream = stream.id, error = %e, "an InLong report could not be stored");
    match e {
        DeliverError::Busy => answer(Code::SinkServiceUnready, "Service sink not ready: retry later"),
        DeliverError::Timeout | DeliverError::Unavailable(_) => {
            answer(Code::SendRequestToMqFailure, &format!("Send request to MQ failure: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_seed_example_parses() {
        let r = parse(
            "",
            "application/x-www-form-urlencoded",
            b"groupId=give_your_group_id&streamId=give_your_stream_id&dt=data_time&body=give_your_data_body&cnt=1",
        )
        .unwrap();
        assert_eq!(r.group_id.as_deref(), Some("give_your_group_id"));
        assert_eq!(r.stream_id.as_deref(), Some("give_your_stream_id"));
        assert_eq!(r.body.as_deref(), Some("give_your_data_body"));
        assert_eq!((r.dt.as_deref(), r.cnt.as_deref()), (Some("data_time"), Some("1")));
    }

    #[test]
    fn query_json_and_form_bodies() {
        let r = parse("groupId=g&streamId=s&body=a%0Ab", "", b"").unwrap();
        assert_eq!(records(r.body.as_deref().unwrap()), ["a", "b"]);
        let r = parse("", "application/json; charset=utf-8", br#"{"groupId":"g","streamId":"s","dt":17,"body":"x"}"#)
            .unwrap();
        assert_eq!(r.dt.as_deref(), Some("17"));
        assert_eq!(parse("", "application/json", b"[1]"), Err(Code::DecodeRequestFailure));
        assert_eq!(parse("", "application/json", br#"{"body":[1]}"#), Err(Code::DecodeRequestFailure));
        assert_eq!(parse("", "application/octet-stream", b"x"), Err(Code::UnsupportedContentType));
        assert_eq!(records("a\nb\n"), ["a", "b"]);
        assert_eq!(records("a\n\nb"), ["a", "", "b"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn any_request_parses_or_is_refused(query in ".{0,64}", ctype in "(application/json|application/x-www-form-urlencoded|text/plain|)", body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&query, &ctype, &body);
        }

        #[test]
        fn form_decoding_matches_form_urlencoded(input in proptest::collection::vec(prop_oneof![
            Just(b'%'), Just(b'+'), Just(b'&'), Just(b'='), Just(b'a'), Just(b'F'), Just(b'0'), Just(b'9'),
            Just(0xc3u8), Just(0xa9u8), any::<u8>()
        ], 0..64)) {
            let ours: Vec<(String, String)> = form_pairs(&input).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            let theirs: Vec<(String, String)> = serde_urlencoded::from_bytes(&input).unwrap();
            prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn records_join_back_to_the_body(lines in proptest::collection::vec("[^\n]{1,8}", 1..8)) {
            let body = lines.join("\n");
            prop_assert_eq!(records(&body), lines.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
