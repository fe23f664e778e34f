//! Huawei Cloud DIS SendRecords: `POST /v2/{project_id}/records`.
//!
//! Authentication is an `X-Auth-Token` issued by dts, or the AK/SK request
//! signature of Huawei's SDKs ([`crate::signing`]). A request that fails
//! validation is refused whole (nothing written), with DIS's error body;
//! a valid one is answered 200 with one result per record, in order: the
//! partition and sequence number (the Kafka offset) of each stored record,
//! or the error of each that was not.

use std::borrow::Cow;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use dts_core::ingest::{Protocol, StreamKey};
use serde::Deserialize;

use crate::registry::{Credential, DeliverError, LiveStream, OutRecord, Registry};
use crate::signing;

/// DIS's documented limits.
pub const MAX_RECORDS: usize = 500;
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;

/// A DIS error answer. The body carries both spellings Huawei's SDKs read
/// (`error_code`/`error_msg` and `errorCode`/`message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl DisError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "DIS.4200", format!("Invalid request. {}", message.into()))
    }
    fn auth(message: impl Into<String>) -> Self {
        Self::new(401, "APIGW.0301", format!("Incorrect IAM authentication information: {}", message.into()))
    }

    pub fn response(&self) -> HttpResponse {
        let body = serde_json::json!({
            "error_code": self.code, "error_msg": self.message,
            "errorCode": self.code, "message": self.message,
        });
        HttpResponse::build(StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST))
            .content_type("application/json;charset=UTF-8")
            .body(body.to_string())
    }
}

/// `PutRecordsRequest`. Fields the SDKs may add beyond these are ignored.
/// Strings borrow from the body unless JSON escapes forced a copy.
#[derive(Debug, Deserialize)]
pub struct PutRecords<'a> {
    #[serde(borrow)]
    pub stream_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub stream_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub records: Vec<PutRecord<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct PutRecord<'a> {
    #[serde(borrow)]
    pub data: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub partition_key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub partition_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub explicit_hash_key: Option<Cow<'a, str>>,
}

/// What became of one record, as the SendRecords answer reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Stored { partition: u32, offset: i64 },
    Failed { code: &'static str, message: String },
}

/// The SendRecords answer: `failed_record_count` and one result per
/// record, in request order. Written straight into the body: a request
/// carries up to 500 of them.
pub fn answer_body(outcomes: &[Outcome]) -> Vec<u8> {
    use std::io::Write;
    let failed = outcomes.iter().filter(|o| matches!(o, Outcome::Failed { .. })).count();
    let mut body = Vec::with_capacity(48 + outcomes.len() * 72);
    let _ = write!(body, r#"{{"failed_record_count":{failed},"records":["#);
    // itoa, not `write!`: formatting machinery was a visible share of a request.
    let mut digits = itoa::Buffer::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        match outcome {
            Outcome::Stored { partition, offset } => {
                body.extend_from_slice(br#"{"partition_id":"shardId-"#);
                let p = digits.format(*partition).as_bytes();
                body.extend(std::iter::repeat_n(b'0', 10usize.saturating_sub(p.len())));
                body.extend_from_slice(p);
                body.extend_from_slice(br#"","sequence_number":""#);
                body.extend_from_slice(digits.format(*offset).as_bytes());
                body.extend_from_slice(b"\"}");
            }
            Outcome::Failed { code, message } => {
                let _ = write!(body, r#"{{"error_code":"{code}","error_message":"#);
                let _ = serde_json::to_writer(&mut body, message);
                body.push(b'}');
            }
        }
    }
    body.extend_from_slice(b"]}");
    body
}

/// `shardId-0000000002` for partition 2.
pub fn shard_id(partition: u32) -> String {
    format!("shardId-{partition:010}")
}

/// `"2"` or `"shardId-0000000002"`.
pub fn parse_partition_id(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("shardId-").unwrap_or(text);
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The partition of an explicit hash key in `0..=i64::MAX`: the range is
/// split evenly over the partitions, as DIS assigns hash ranges.
pub fn partition_of_hash(hash: u64, partitions: u32) -> u32 {
    let p = u128::from(hash) * u128::from(partitions.max(1)) / (u128::from(i64::MAX as u64) + 1);
    u32::try_from(p).unwrap_or(0).min(partitions.max(1) - 1)
}

/// A request's records checked and placed: their decoded data in one
/// buffer, and where each record's bytes are in it.
#[derive(Debug)]
pub struct Placed<'a> {
    data: Vec<u8>,
    pub records: Vec<PlacedRecord<'a>>,
}

#[derive(Debug)]
pub struct PlacedRecord<'a> {
    span: std::ops::Range<usize>,
    pub key: Option<&'a str>,
    pub partition: Option<u32>,
}

impl Placed<'_> {
    /// The records to hand to Kafka.
    pub fn out(&self) -> Vec<OutRecord<'_>> {
        self.records
            .iter()
            .map(|r| OutRecord {
                key: r.key.map(str::as_bytes),
                payload: &self.data[r.span.clone()],
                partition: r.partition,
            })
            .collect()
    }
}

/// Checks every record of a request against the limits and the topic's
/// partitions; the first problem refuses the whole request.
pub fn place<'a>(records: &'a [PutRecord<'_>], partitions: u32, max_record: usize) -> Result<Placed<'a>, DisError> {
    if records.is_empty() {
        return Err(DisError::new(400, "DIS.4202", "Empty request."));
    }
    if records.len() > MAX_RECORDS {
        return Err(DisError::invalid(format!(
            "a request carries at most {MAX_RECORDS} records, not {}",
            records.len()
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let encoded: usize = records.iter().map(|r| r.data.as_ref().map_or(0, |d| d.len())).sum();
    let mut placed =
        Placed { data: Vec::with_capacity(encoded / 4 * 3 + 3), records: Vec::with_capacity(records.len()) };
    for (i, r) in records.iter().enumerate() {
        let Some(data) = &r.data else {
            return Err(DisError::invalid(format!("records[{i}].data is required")));
        };
        let start = placed.data.len();
        b64.decode_vec(data.trim(), &mut placed.data)
            .map_err(|_| DisError::invalid(format!("records[{i}].data is not base64")))?;
        let len = placed.data.len() - start;
        if len > max_record {
            return Err(DisError::invalid(format!(
                "records[{i}].data is {len} bytes; a record holds at most {max_record}"
            )));
        }
        let partition = if let Some(id) = &r.partition_id {
            let p = parse_partition_id(id).ok_or_else(|| {
                DisError::new(
                    400,
                    "DIS.4201",
                    format!("Invalid partition_id. records[{i}]: {}", dts_core::spec::echo(id)),
                )
            })?;
            if p >= partitions {
                return Err(DisError::new(
                    400,
                    "DIS.4302",
                    format!("Partition does not exist. records[{i}]: {} (the stream has {partitions})", shard_id(p)),
                ));
            }
            Some(p)
        } else if let Some(h) = &r.explicit_hash_key {
            let hash: u64 = h.trim().parse().ok().filter(|v| *v <= i64::MAX as u64).ok_or_else(|| {
                DisError::invalid(format!("records[{i}].explicit_hash_key must be 0 to {}", i64::MAX))
            })?;
            Some(partition_of_hash(hash, partitions))
        } else {
            r.partition_key.as_ref().map(|k| dts_pipeline::murmur2::partition_for(k.as_bytes(), partitions))
        };
        if r.partition_key.as_ref().is_some_and(|k| k.len() > 256) {
            return Err(DisError::invalid(format!("records[{i}].partition_key is longer than 256 characters")));
        }
        placed.records.push(PlacedRecord {
            span: start..placed.data.len(),
            key: r.partition_key.as_deref(),
            partition,
        });
    }
    Ok(placed)
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Who sent the request: a token's or an access key's credential.
fn authenticate(registry: &Registry, req: &HttpRequest, body: &[u8]) -> Result<Arc<Credential>, DisError> {
    if let Some(token) = header(req, "x-auth-token") {
        return registry
            .credential(&crate::registry::digest(token.trim()))
            .filter(|c| c.protocol == Protocol::Dis && c.secret.is_none())
            .ok_or_else(|| DisError::auth("the X-Auth-Token is not valid"));
    }
    let Some(value) = header(req, "authorization") else {
        return Err(DisError::auth("send X-Auth-Token or sign the request with an access key (SDK-HMAC-SHA256)"));
    };
    let auth = signing::parse_authorization(&value).map_err(|e| DisError::auth(e.to_string()))?;
    let credential = registry
        .credential(&auth.access)
        .filter(|c| c.protocol == Protocol::Dis)
        .ok_or_else(|| DisError::auth("unknown access key"))?;
    let Some(secret) = &credential.secret else { return Err(DisError::auth("unknown access key")) };
    let lookup = |name: &str| header(req, name);
    let signed = signing::Request {
        method: req.method().as_str(),
        path: req.uri().path(),
        query: req.query_string(),
        header: &lookup,
        body,
    };
    signing::verify(&signed, &auth, secret.expose(), dts_core::now_ms() / 1000)
        .map_err(|e| DisError::auth(e.to_string()))?;
    if !registry.replays.first_use(&auth.signature) {
        return Err(DisError::auth(signing::SignError::Replayed.to_string()));
    }
    Ok(credential)
}

/// `POST /v2/{project_id}/records`.
pub async fn send_records(registry: web::Data<Registry>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let body = match crate::read_body(&req, payload, MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(crate::BodyError::TooLarge) => {
            return DisError::invalid(format!("a request is at most {MAX_REQUEST_BYTES} bytes")).response()
        }
        Err(crate::BodyError::Unreadable) => return DisError::invalid("the request body could not be read").response(),
    };
    match handle(&registry, &req, &body).await {
        Ok(resp) | Err(resp) => resp,
    }
}

async fn handle(registry: &Registry, req: &HttpRequest, body: &[u8]) -> Result<HttpResponse, HttpResponse> {
    let project = req.match_info().get("project_id").unwrap_or_default().to_owned();
    let credential = authenticate(registry, req, body).map_err(|e| e.response())?;
    let put: PutRecords = serde_json::from_slice(body)
        .map_err(|e| DisError::new(400, "DIS.4300", format!("Request error. {e}")).response())?;
    let stream = find_stream(registry, &project, &put).map_err(|e| e.response())?;
    if !credential.may_write(&stream) {
        return Err(DisError::new(403, "DIS.4116", "Invalid RBAC. this key may not write to this stream").response());
    }
    let partitions = registry.partitions(&stream).await.map_err(|e| unavailable(&stream, &e))?;
    let placed = place(&put.records, partitions, stream.spec.max_record_bytes()).map_err(|e| e.response())?;
    if !stream.admit(placed.records.len()) {
        let throttled = Outcome::Failed { code: "DIS.4303", message: "Exceeded traffic control limit.".into() };
        return Ok(answer(&vec![throttled; placed.records.len()]));
    }
    let default_partition = stream.next_partition(partitions);
    let delivered =
        registry.deliver(&stream, &placed.out(), default_partition, &[]).await.map_err(|e| unavailable(&stream, &e))?;
    let outcomes: Vec<Outcome> = delivered
        .into_iter()
        .map(|r| match r {
            Ok(d) => Outcome::Stored { partition: u32::try_from(d.partition).unwrap_or(0), offset: d.offset },
            Err(e) => Outcome::Failed { code: "DIS.5000", message: format!("System error. {e}") },
        })
        .collect();
    Ok(answer(&outcomes))
}

fn answer(outcomes: &[Outcome]) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json;charset=UTF-8").body(answer_body(outcomes))
}

/// By name within the project; by `stream_id` (the dts stream id) when
/// the name finds nothing, as DIS does.
fn find_stream(registry: &Registry, project: &str, put: &PutRecords<'_>) -> Result<Arc<LiveStream>, DisError> {
    let by_name = put.stream_name.as_ref().and_then(|name| {
        registry.get(&StreamKey { protocol: Protocol::Dis, scope: project.to_owned(), name: name.to_string() })
    });
    let found = by_name.or_else(|| {
        let id: i64 = put.stream_id.as_deref()?.trim().parse().ok()?;
        registry.get_by_id(id).filter(|s| s.key.protocol == Protocol::Dis && s.key.scope == project)
    });
    found.ok_or_else(|| {
        if put.stream_name.is_none() && put.stream_id.is_none() {
            DisError::invalid("stream_name is required")
        } else {
            let name = put.stream_name.as_deref().or(put.stream_id.as_deref()).unwrap_or_default();
            DisError::new(400, "DIS.4301", format!("The stream does not exist. [{}]", dts_core::spec::echo(name)))
        }
    })
}

fn unavailable(stream: &LiveStream, e: &DeliverError) -> HttpResponse {
    stream.counters.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(stream = stream.id, error = %e, "DIS records could not be stored");
    match e {
        DeliverError::Busy => DisError::new(400, "DIS.4305", "Too many stream requests.").response(),
        DeliverError::Timeout | DeliverError::Unavailable(_) => {
            DisError::new(500, "DIS.5000", format!("System error. {e}; retry later")).response()
        }
    }
}

/// What the stream-management calls answer for a dts stream.
fn stream_info(stream: &LiveStream, partitions: u32) -> serde_json::Value {
    serde_json::json!({
        "stream_name": stream.key.name,
        "stream_id": stream.id.to_string(),
        "create_time": 0,
        "last_modified_time": 0,
        "status": "RUNNING",
        "stream_type": "COMMON",
        "data_type": "BLOB",
        "retention_period": 24,
        "partition_count": partitions,
        "writable_partition_count": partitions,
        "readable_partition_count": partitions,
        "has_more_partitions": false,
        "auto_scale_enabled": false,
        "partitions": (0..partitions).map(|p| serde_json::json!({
            "partition_id": shard_id(p),
            "status": "ACTIVE",
            "hash_range": hash_range(p, partitions),
        })).collect::<Vec<_>>(),
    })
}

/// The `explicit_hash_key` range that lands on `partition`, as `[lo : hi]`.
fn hash_range(partition: u32, partitions: u32) -> String {
    // The smallest hash whose partition is `p` is ceil(span * p / n).
    let (span, n) = (u128::from(i64::MAX as u64) + 1, u128::from(partitions.max(1)));
    let first = |p: u128| (span * p).div_ceil(n);
    let (lo, hi) = (first(u128::from(partition)), first(u128::from(partition) + 1) - 1);
    format!("[{lo} : {hi}]")
}

fn project_stream(registry: &Registry, req: &HttpRequest) -> Option<Arc<LiveStream>> {
    let project = req.match_info().get("project_id").unwrap_or_default().to_owned();
    let name = req.match_info().get("stream_name").unwrap_or_default().to_owned();
    registry.get(&StreamKey { protocol: Protocol::Dis, scope: project, name })
}

/// A stream of the path's project this key may use.
fn usable_stream(registry: &Registry, req: &HttpRequest, credential: &Credential) -> Result<Arc<LiveStream>, DisError> {
    let stream =
        project_stream(registry, req).ok_or_else(|| DisError::new(400, "DIS.4301", "The stream does not exist."))?;
    if !credential.may_write(&stream) {
        return Err(DisError::new(403, "DIS.4116", "Invalid RBAC. this key may not use this stream"));
    }
    Ok(stream)
}

fn json_answer(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(status).content_type("application/json;charset=UTF-8").body(body.to_string())
}

// Streams are set up by dts operators (they choose the Kafka topic); the
// SDK workflows that create, describe, list or delete streams around
// SendRecords are answered from what exists.

/// `GET /v2/{project_id}/streams`: the project's streams this key may write.
pub async fn list_streams(registry: web::Data<Registry>, req: HttpRequest) -> HttpResponse {
    let credential = match authenticate(&registry, &req, b"") {
        Ok(c) => c,
        Err(e) => return e.response(),
    };
    let project = req.match_info().get("project_id").unwrap_or_default();
    let streams: Vec<Arc<LiveStream>> = credential
        .streams
        .iter()
        .filter_map(|id| registry.get_by_id(*id))
        .filter(|s| s.key.protocol == Protocol::Dis && s.key.scope == project)
        .collect();
    let mut infos = Vec::with_capacity(streams.len());
    for s in &streams {
        infos.push(stream_info(s, registry.partitions(s).await.unwrap_or(0)));
    }
    let names: Vec<&str> = streams.iter().map(|s| s.key.name.as_str()).collect();
    let body = serde_json::json!({
        "total_number": names.len(), "stream_names": names, "has_more_streams": false, "stream_info_list": infos,
    });
    json_answer(StatusCode::OK, &body)
}

/// `GET /v2/{project_id}/streams/{stream_name}`: its partitions are the topic's.
pub async fn show_stream(registry: web::Data<Registry>, req: HttpRequest) -> HttpResponse {
    let found = authenticate(&registry, &req, b"").and_then(|c| usable_stream(&registry, &req, &c));
    let stream = match found {
        Ok(s) => s,
        Err(e) => return e.response(),
    };
    match registry.partitions(&stream).await {
        Ok(n) => json_answer(StatusCode::OK, &stream_info(&stream, n)),
        Err(e) => unavailable(&stream, &e),
    }
}

/// `POST /v2/{project_id}/streams`: succeeds for a stream that exists and
/// this key may write (scripts that create before they send work
/// unchanged); other names are refused, since operators create streams.
pub async fn create_stream(registry: web::Data<Registry>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let created = authenticate(&registry, &req, &body).and_then(|credential| {
        let name = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["stream_name"].as_str().map(str::to_owned))
            .ok_or_else(|| DisError::invalid("stream_name is required"))?;
        let project = req.match_info().get("project_id").unwrap_or_default().to_owned();
        match registry.get(&StreamKey { protocol: Protocol::Dis, scope: project, name }) {
            Some(s) if credential.may_write(&s) => Ok(json_answer(StatusCode::CREATED, &serde_json::json!({}))),
            Some(_) => Err(DisError::new(403, "DIS.4116", "Invalid RBAC. this key may not use this stream")),
            None => Err(DisError::new(
                403,
                "DIS.4116",
                "Invalid RBAC. streams are created by dts operators (POST /v1/ingest/streams, naming the Kafka topic)",
            )),
        }
    });
    created.unwrap_or_else(|e| e.response())
}

/// `DELETE /v2/{project_id}/streams/{stream_name}`: refused; operators remove streams.
pub async fn delete_stream(registry: web::Data<Registry>, req: HttpRequest) -> HttpResponse {
    let refusal = match authenticate(&registry, &req, b"").and_then(|c| usable_stream(&registry, &req, &c)) {
        Err(e) => e,
        Ok(_) => DisError::new(
            403,
            "DIS.4116",
            "Invalid RBAC. streams are removed by dts operators (DELETE /v1/ingest/streams/:id)",
        ),
    };
    refusal.response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn rec(data: &str) -> PutRecord<'_> {
        PutRecord { data: Some(data.into()), partition_key: None, partition_id: None, explicit_hash_key: None }
    }

    #[test]
    fn partition_ids_in_both_spellings() {
        assert_eq!(parse_partition_id("0"), Some(0));
        assert_eq!(parse_partition_id("shardId-0000000002"), Some(2));
        assert_eq!(parse_partition_id("shardId-"), None);
        assert_eq!(parse_partition_id("-1"), None);
        assert_eq!(shard_id(2), "shardId-0000000002");
        assert_eq!(partition_of_hash(0, 3), 0);
        assert_eq!(partition_of_hash(i64::MAX as u64, 3), 2);
        assert_eq!(partition_of_hash(i64::MAX as u64 / 2, 2), 0);
        // The advertised hash ranges are the ones records are placed by.
        for n in [1, 3, 7] {
            for p in 0..n {
                let range = hash_range(p, n);
                let (lo, hi) = range.trim_matches(['[', ']']).split_once(" : ").unwrap();
                assert_eq!(partition_of_hash(lo.parse().unwrap(), n), p, "{range}");
                assert_eq!(partition_of_hash(hi.parse().unwrap(), n), p, "{range}");
            }
        }
    }

    #[test]
    fn partition_id_wins_over_the_hash_key_which_wins_over_the_partition_key() {
        let mut r = rec("ZGF0YQ==");
        r.partition_id = Some("shardId-0000000001".into());
        r.explicit_hash_key = Some("0".into());
        r.partition_key = Some("k".into());
        assert_eq!(place(&[r], 3, 1024).unwrap().records[0].partition, Some(1));
        let mut r = rec("ZGF0YQ==");
        r.explicit_hash_key = Some(i64::MAX.to_string().into());
        r.partition_key = Some("k".into());
        assert_eq!(place(&[r], 3, 1024).unwrap().records[0].partition, Some(2));
        let mut r = rec("ZGF0YQ==");
        r.partition_key = Some("k".into());
        let rs = [r, rec("eHl6"), rec(" YQ== ")];
        let p = place(&rs, 3, 1024).unwrap();
        assert_eq!(p.records[0].partition, Some(dts_pipeline::murmur2::partition_for(b"k", 3)));
        assert_eq!(p.records[0].key, Some("k"));
        // Some JSON writers escape '/': such strings are unescaped, not borrowed.
        let put: PutRecords<'_> = serde_json::from_slice(br#"{"records":[{"data":"\/\/\/\/"}]}"#).unwrap();
        assert_eq!(place(&put.records, 3, 1024).unwrap().out()[0].payload, [0xff; 3]);
        let out = p.out();
        assert_eq!(out.iter().map(|o| o.payload).collect::<Vec<_>>(), [&b"data"[..], b"xyz", b"a"]);
        assert_eq!((out[1].key, out[1].partition), (None, None));
    }

    #[test]
    fn the_answer_lists_each_record_in_order() {
        let body = answer_body(&[
            Outcome::Stored { partition: 2, offset: 41 },
            Outcome::Failed { code: "DIS.5000", message: "System error. \"quoted\"\n".into() },
            Outcome::Stored { partition: 0, offset: 0 },
            Outcome::Stored { partition: u32::MAX, offset: i64::MAX },
        ]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"failed_record_count": 1, "records": [
                {"partition_id": "shardId-0000000002", "sequence_number": "41"},
                {"error_code": "DIS.5000", "error_message": "System error. \"quoted\"\n"},
                {"partition_id": "shardId-0000000000", "sequence_number": "0"},
                {"partition_id": "shardId-4294967295", "sequence_number": i64::MAX.to_string()},
            ]})
        );
    }

    #[test]
    fn bad_records_refuse_the_request() {
        assert_eq!(place(&[], 3, 10).unwrap_err().code, "DIS.4202");
        assert_eq!(place(&[rec("!!")], 3, 10).unwrap_err().code, "DIS.4200");
        assert_eq!(place(&[rec("MTExMTExMTExMTE=")], 3, 4).unwrap_err().code, "DIS.4200");
        let many: Vec<PutRecord> = (0..501).map(|_| rec("eA==")).collect();
        assert_eq!(place(&many, 3, 10).unwrap_err().code, "DIS.4200");
        let mut r = rec("eA==");
        r.partition_id = Some("shardId-0000000003".into());
        assert_eq!(place(&[r], 3, 10).unwrap_err().code, "DIS.4302");
        let mut r = rec("eA==");
        r.partition_id = Some("x".into());
        assert_eq!(place(&[r], 3, 10).unwrap_err().code, "DIS.4201");
        let mut r = rec("eA==");
        r.explicit_hash_key = Some("-1".into());
        assert_eq!(place(&[r], 3, 10).unwrap_err().code, "DIS.4200");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn any_body_parses_or_is_refused(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(put) = serde_json::from_slice::<PutRecords>(&body) {
                let _ = place(&put.records, 3, 1024);
            }
        }

        #[test]
        fn placed_partitions_are_in_range(hash in 0u64..=(i64::MAX as u64), n in 1u32..64) {
            prop_assert!(partition_of_hash(hash, n) < n);
        }
    }
}
