//! Ingest streams: an external producer-side name (InLong `groupId` +
//! `streamId`, DIS `project_id` + `stream_name`, Timeplus workspace +
//! stream) mapped to a Kafka topic. The model and its checks; no I/O.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::spec::{echo, is_host_port, validate_kafka_security, KafkaSecrets, KafkaSecurity, SpecError};
use crate::ErrorCode;

/// Longest name part (group id, stream name, workspace ...).
pub const MAX_NAME: usize = 128;
/// Default and largest `max_record_bytes`.
pub const DEFAULT_MAX_RECORD_BYTES: u32 = 1024 * 1024;
pub const MAX_RECORD_BYTES_LIMIT: u32 = 8 * 1024 * 1024;
/// Most `allowed_sources` entries.
pub const MAX_ALLOWED_SOURCES: usize = 256;

/// Which wire protocol producers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Apache InLong DataProxy HTTP report.
    Inlong,
    /// Huawei Cloud DIS SendRecords.
    Dis,
    /// Timeplus ingest API.
    Timeplus,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inlong => "inlong",
            Self::Dis => "dis",
            Self::Timeplus => "timeplus",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "inlong" => Some(Self::Inlong),
            "dis" => Some(Self::Dis),
            "timeplus" => Some(Self::Timeplus),
            _ => None,
        }
    }
}

/// How producers name a stream: `(protocol, first part, second part)`.
/// InLong: group id and stream id; DIS: project id and stream name;
/// Timeplus: workspace (empty for none) and stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub protocol: Protocol,
    pub scope: String,
    pub name: String,
}

/// The Kafka side of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestKafka {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub addr: String,
    pub topic: String,
    /// Partitions of the topic when dts creates it; the node's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// TLS, mutual TLS and SASL, as for tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<KafkaSecurity>,
}

/// `{"stream": {...}}`: what `POST`/`PUT /v1/ingest/streams` take.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRequest {
    pub stream: StreamSpec,
}

/// An ingest stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    pub protocol: Protocol,
    /// InLong `groupId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// InLong `streamId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    /// DIS project id (the `{project_id}` of `/v2/{project_id}/records`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// DIS stream name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,
    /// Timeplus workspace; streams without one are served on the paths
    /// without a workspace segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Timeplus stream name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub kafka: IngestKafka,
    /// Records per second accepted for this stream on each node; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Largest accepted record in bytes [default: 1 MiB].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_record_bytes: Option<u32>,
    /// Client addresses (CIDR) allowed to send; everyone when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_sources: Vec<String>,
}

fn bad(code: ErrorCode, field: &str, message: impl Into<String>) -> SpecError {
    SpecError::new(code, format!("stream.{field}"), message)
}

/// A name part: 1 to 128 of `A-Z a-z 0-9 _ - .`, the characters the three
/// systems allow in their ids and that are safe in a URL path.
fn check_name(field: &str, value: Option<&str>) -> Result<String, SpecError> {
    let Some(v) = value else {
        return Err(bad(ErrorCode::InvalidStream, field, "is required"));
    };
    let ok = !v.is_empty()
        && v.len() <= MAX_NAME
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        return Err(bad(
            ErrorCode::InvalidStream,
            field,
            format!("must be 1 to {MAX_NAME} of A-Z a-z 0-9 _ - . (got {})", echo(v)),
        ));
    }
    Ok(v.to_owned())
}

fn must_be_absent(protocol: Protocol, fields: &[(&str, bool)]) -> Result<(), SpecError> {
    match fields.iter().find(|(_, set)| *set) {
        Some((field, _)) => {
            Err(bad(ErrorCode::InvalidStream, field, format!("is not used by protocol {}", protocol.as_str())))
        }
        None => Ok(()),
    }
}

impl StreamSpec {
    /// The name producers use, checked.
    pub fn key(&self) -> Result<StreamKey, SpecError> {
        let p = self.protocol;
        let (scope, name) = match p {
            Protocol::Inlong => {
                must_be_absent(
                    p,
                    &[
                        ("project_id", self.project_id.is_some()),
                        ("stream_name", self.stream_name.is_some()),
                        ("workspace", self.workspace.is_some()),
                        ("stream", self.stream.is_some()),
                    ],
                )?;
                (check_name("group_id", self.group_id.as_deref())?, check_name("stream_id", self.stream_id.as_deref())?)
            }
            Protocol::Dis => {
                must_be_absent(
                    p,
                    &[
                        ("group_id", self.group_id.is_some()),
                        ("stream_id", self.stream_id.is_some()),
                        ("workspace", self.workspace.is_some()),
                        ("stream", self.stream.is_some()),
                    ],
                )?;
                (
                    check_name("project_id", self.project_id.as_deref())?,
                    check_name("stream_name", self.stream_name.as_deref())?,
                )
            }
            Protocol::Timeplus => {
                must_be_absent(
                    p,
                    &[
                        ("group_id", self.group_id.is_some()),
                        ("stream_id", self.stream_id.is_some()),
                        ("project_id", self.project_id.is_some()),
                        ("stream_name", self.stream_name.is_some()),
                    ],
                )?;
                let workspace = match &self.workspace {
                    Some(w) => check_name("workspace", Some(w))?,
                    None => String::new(),
                };
                (workspace, check_name("stream", self.stream.as_deref())?)
            }
        };
        Ok(StreamKey { protocol: p, scope, name })
    }

    /// Every check; the first problem found is returned.
    pub fn validate(&self) -> Result<StreamKey, SpecError> {
        let key = self.key()?;
        let k = &self.kafka;
        if k.addr.trim().is_empty() || k.addr.len() > 1024 || !k.addr.split(',').map(str::trim).all(is_host_port) {
            return Err(bad(
                ErrorCode::InvalidKafka,
                "kafka.addr",
                format!("must be host:port[,host:port...], got {}", echo(&k.addr)),
            ));
        }
        crate::spec::check_topic_name(&k.topic).map_err(|why| bad(ErrorCode::InvalidKafka, "kafka.topic", why))?;
        if let Some(n) = k.partitions {
            if !(1..=10_000).contains(&n) {
                return Err(bad(ErrorCode::InvalidKafka, "kafka.partitions", "must be 1 to 10000"));
            }
        }
        if let Some(sec) = &k.security {
            validate_kafka_security(sec, "stream.kafka.security")?;
        }
        if self.rate_limit == Some(0) {
            return Err(bad(ErrorCode::InvalidRateLimit, "rate_limit", "must be at least 1 record per second"));
        }
        if let Some(n) = self.max_record_bytes {
            if !(1..=MAX_RECORD_BYTES_LIMIT).contains(&n) {
                return Err(bad(
                    ErrorCode::InvalidStream,
                    "max_record_bytes",
                    format!("must be 1 to {MAX_RECORD_BYTES_LIMIT}"),
                ));
            }
        }
        if self.allowed_sources.len() > MAX_ALLOWED_SOURCES {
            return Err(bad(
                ErrorCode::InvalidStream,
                "allowed_sources",
                format!("lists at most {MAX_ALLOWED_SOURCES} networks"),
            ));
        }
        for (i, cidr) in self.allowed_sources.iter().enumerate() {
            parse_source(cidr).map_err(|why| bad(ErrorCode::InvalidStream, &format!("allowed_sources[{i}]"), why))?;
        }
        Ok(key)
    }

    /// Secrets a new stream must carry (an alter may leave them out).
    pub fn check_secrets_present(&self) -> Result<(), SpecError> {
        let Some(sec) = &self.kafka.security else { return Ok(()) };
        if sec.cert_pem.is_some() && sec.key_pem.is_none() {
            return Err(bad(ErrorCode::InvalidKafka, "kafka.security.key_pem", "is required with cert_pem"));
        }
        if sec.sasl.as_ref().is_some_and(|s| s.password.is_none()) {
            return Err(bad(ErrorCode::InvalidKafka, "kafka.security.sasl.password", "is required"));
        }
        Ok(())
    }

    /// The stream's secrets, kept apart in the store.
    pub fn secrets(&self) -> KafkaSecrets {
        KafkaSecrets::of_security(self.kafka.security.as_ref())
    }

    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes.unwrap_or(DEFAULT_MAX_RECORD_BYTES) as usize
    }

    /// Whether `client` may send to this stream.
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        if self.allowed_sources.is_empty() {
            return true;
        }
        let Some(ip) = client else { return false };
        self.allowed_sources.iter().filter_map(|c| parse_source(c).ok()).any(|net| net.contains(&ip))
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a single address.
fn parse_source(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("must be an address or a CIDR network like 10.0.0.0/8, got {}", echo(text)))
}

/// Parses a `{"stream": ...}` body; shape errors name the field.
pub fn parse_stream_body(body: &[u8]) -> Result<StreamSpec, SpecError> {
    crate::spec::parse_json::<StreamRequest>(body).map(|req| req.stream)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(body: &str) -> Result<StreamKey, SpecError> {
        parse_stream_body(body.as_bytes())?.validate()
    }

    #[test]
    fn each_protocol_names_its_streams() {
        let k = spec(r#"{"stream":{"protocol":"inlong","group_id":"g1","stream_id":"s1","kafka":{"addr":"h:9092","topic":"t1"}}}"#).unwrap();
        assert_eq!((k.protocol, k.scope.as_str(), k.name.as_str()), (Protocol::Inlong, "g1", "s1"));
        let k = spec(r#"{"stream":{"protocol":"dis","project_id":"p1","stream_name":"n1","kafka":{"addr":"h:9092","topic":"t1"}}}"#).unwrap();
        assert_eq!((k.scope.as_str(), k.name.as_str()), ("p1", "n1"));
        let k = spec(r#"{"stream":{"protocol":"timeplus","stream":"foo","kafka":{"addr":"h:9092","topic":"t1"}}}"#)
            .unwrap();
        assert_eq!((k.scope.as_str(), k.name.as_str()), ("", "foo"));
    }

    #[test]
    fn bad_streams_name_the_field() {
        let cases = [
            (
                r#"{"stream":{"protocol":"inlong","stream_id":"s","kafka":{"addr":"h:1","topic":"t"}}}"#,
                "stream.group_id",
            ),
            (
                r#"{"stream":{"protocol":"inlong","group_id":"g/x","stream_id":"s","kafka":{"addr":"h:1","topic":"t"}}}"#,
                "stream.group_id",
            ),
            (
                r#"{"stream":{"protocol":"inlong","group_id":"g","stream_id":"s","stream":"x","kafka":{"addr":"h:1","topic":"t"}}}"#,
                "stream.stream",
            ),
            (
                r#"{"stream":{"protocol":"dis","project_id":"p","stream_name":"n","kafka":{"addr":"nope","topic":"t"}}}"#,
                "stream.kafka.addr",
            ),
            (
                r#"{"stream":{"protocol":"dis","project_id":"p","stream_name":"n","kafka":{"addr":"h:1","topic":"__x"}}}"#,
                "stream.kafka.topic",
            ),
            (
                r#"{"stream":{"protocol":"dis","project_id":"p","stream_name":"n","kafka":{"addr":"h:1","topic":"t"},"rate_limit":0}}"#,
                "stream.rate_limit",
            ),
            (
                r#"{"stream":{"protocol":"inlong","group_id":"g","stream_id":"s","kafka":{"addr":"h:1","topic":"t"},"allowed_sources":["10.0.0.0/33"]}}"#,
                "stream.allowed_sources[0]",
            ),
            (r#"{"stream":{"protocol":"kafka","kafka":{"addr":"h:1","topic":"t"}}}"#, "stream.protocol"),
            (
                r#"{"stream":{"protocol":"dis","project_id":"p","stream_name":"n","kafka":{"addr":"h:1","topic":"t"},"x":1}}"#,
                "stream",
            ),
        ];
        for (body, field) in cases {
            let err = spec(body).unwrap_err();
            assert!(err.field.starts_with(field), "{body}: {err}");
        }
        assert_eq!(spec("{").unwrap_err().code, ErrorCode::MalformedJson);
    }

    #[test]
    fn allowed_sources_are_networks() {
        let s = parse_stream_body(
            br#"{"stream":{"protocol":"inlong","group_id":"g","stream_id":"s","kafka":{"addr":"h:1","topic":"t"},
                "allowed_sources":["10.1.0.0/16","192.168.1.7","::1"]}}"#,
        )
        .unwrap();
        s.validate().unwrap();
        for (ip, ok) in [("10.1.200.3", true), ("10.2.0.1", false), ("192.168.1.7", true), ("::1", true)] {
            assert_eq!(s.allows(Some(ip.parse().unwrap())), ok, "{ip}");
        }
        assert!(!s.allows(None));
    }
}

/// One serving process's counters of one stream since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCount {
    pub stream_id: i64,
    /// Records Kafka acknowledged.
    pub records: u64,
    /// Record bytes of the requests that reached Kafka.
    pub bytes: u64,
    /// Records or requests that failed.
    pub errors: u64,
}
