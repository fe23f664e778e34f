//! The task a user submits: the body of `POST /v1/dispatch/submit` and
//! `PUT /v1/dispatch/alter/:id`, exactly as the seed interface documents it.
//!
//! Parsing is strict (`deny_unknown_fields`): a misspelt option is an error,
//! never silently ignored. Semantic checks live in [`TaskSpec::validate`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::code::ErrorCode;
use crate::filter::RowFilter;
use crate::matcher::TableMatcher;

/// Upper bound of `rate_limit.rate` (rows per second): far above what one
/// task can produce, low enough to catch a typo such as an extra zero run.
pub const MAX_RATE: i64 = 10_000_000;
/// Upper bound of `rate_limit.capacity` (burst size in rows).
pub const MAX_CAPACITY: i64 = 100_000_000;

/// Longest accepted value of each text field, in characters. Far above any
/// real value (MySQL names have at most 64 characters, user names 80, DNS
/// names 253, Kafka topics 249), low enough that no request can grow the
/// store, a list page or a log line without bound.
pub mod max_len {
    pub const HOST: usize = 253;
    pub const USERNAME: usize = 80;
    pub const PASSWORD: usize = 1024;
    /// A PEM bundle (a few certificates).
    pub const PEM: usize = 64 * 1024;
    pub const KAFKA_ADDR: usize = 4096;
    pub const DBNAME: usize = 64;
    /// An exact table name has at most 64; a `/regex/` may be longer.
    pub const MATCH: usize = 1024;
    pub const FILTER: usize = 64 * 1024;
    /// `db.table.column`
    pub const COLUMN_REF: usize = 64 * 3 + 2;
    pub const FILTERS: usize = 1000;
    pub const COLUMN_LISTS: usize = 1000;
}

/// A user-supplied value as an error message may quote it: at most 64
/// characters (then how long it was), control characters escaped.
pub fn echo(value: &str) -> String {
    const SHOWN: usize = 64;
    let count = value.chars().count();
    let shown: String = value.chars().take(SHOWN).collect();
    if count > SHOWN {
        format!("{:?}... ({count} characters)", shown)
    } else {
        format!("{shown:?}")
    }
}

/// The request body: the seed sends only `task` ("只传task").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub task: TaskSpec,
}

/// Everything a replication task needs to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The MySQL/MariaDB server whose binlog is read.
    pub source: SourceSpec,
    /// Where and how messages are written.
    pub kafka: KafkaSpec,
    /// Which databases, tables and rows are replicated. The seed's parameter
    /// table calls it `filter`, its example `filters`: both are accepted.
    #[serde(alias = "filter")]
    pub filters: Vec<FilterRule>,
    /// Token bucket on rows per second; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// `true`: stream changes from the current position. `false`: copy the
    /// existing rows first, then stream. Kafka tasks normally use `true`.
    #[serde(default = "default_incr")]
    pub incr: bool,
}

const fn default_incr() -> bool {
    true
}

/// The source database connection.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub host: String,
    pub port: u16,
    pub username: String,
    /// Never serialized: the store keeps it encrypted in its own column and
    /// no endpoint returns it. Absent on alter means "keep the current one".
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    /// How the connection is secured; `preferred` when absent.
    #[serde(default, skip_serializing_if = "SourceTls::is_default")]
    pub tls: SourceTls,
}

impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceSpec")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.mode)
            .finish()
    }
}

/// `source.tls`: TLS to the source, with MySQL's `--ssl-mode` meanings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceTls {
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM certificate(s) of the CA that signed the server's certificate,
    /// for `verify_ca` and `verify_identity`; without it the public web
    /// roots are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl SourceTls {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// MySQL's `--ssl-mode` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain TCP.
    Disabled,
    /// TLS when the server offers it, plain otherwise; the certificate is
    /// not checked (protects against passive listeners only).
    #[default]
    Preferred,
    /// TLS or no connection; the certificate is not checked.
    Required,
    /// TLS with a certificate signed by the CA; any host name.
    VerifyCa,
    /// TLS with a certificate signed by the CA for the host connected to.
    VerifyIdentity,
}

impl SourceSpec {
    /// `host:port`, the list endpoint's `source_addr`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Same server and user: the parts of `source` that alter may not change.
    pub fn same_server_and_user(&self, other: &SourceSpec) -> bool {
        self.host.eq_ignore_ascii_case(&other.host) && self.port == other.port && self.username == other.username
    }
}

/// A secret string. Its `Debug` never shows the value and it has no
/// `Serialize`, so it cannot leak through logs or responses by accident.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The plain value, for the one place that needs it (encrypting, connecting).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The Kafka side of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSpec {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub addr: String,
    /// The fixed topic, used when `topic_mode` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// `true`: columns at the top level with `__` metadata fields.
    #[serde(default)]
    pub flat_format: bool,
    /// 1: a topic per table (`{db}_{table}`), 0: a topic per database (`{db}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_mode: Option<TopicMode>,
    /// How messages are spread over partitions; `table` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_mode: Option<PartitionMode>,
    /// The columns hashed by `partition_mode: column`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_columns: Vec<String>,
    /// What `column` mode falls back to when a table lacks a partition column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_partition_by_fallback: Option<PartitionFallback>,
    /// Columns dropped from every message: `column` or `db.table.column`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_columns: Vec<String>,
    /// TLS, mutual TLS and SASL to the brokers; plaintext when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<KafkaSecurity>,
}

/// `kafka.security`: how the producer authenticates and encrypts, as
/// Kafka's own client settings name it. Certificates and keys are inline
/// PEM text, since workers run elsewhere. `key_pem` and `sasl.password`
/// are secrets: stored encrypted, never returned; left out on alter, the
/// stored ones are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecurity {
    pub protocol: SecurityProtocol,
    /// CA certificate(s) that signed the brokers' certificates; the
    /// system's roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Client certificate for mutual TLS, with `key_pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
    #[serde(default, skip_serializing)]
    pub key_pem: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityProtocol {
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "SSL")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    /// The value of librdkafka's `security.protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// `kafka.security.sasl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSpec {
    pub mechanism: SaslMechanism,
    pub username: String,
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The value of librdkafka's `sasl.mechanisms`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The secrets of `kafka.security`, kept apart from the spec in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSecrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_password: Option<String>,
}

impl KafkaSecrets {
    /// The secrets `spec` carries.
    pub fn of(spec: &KafkaSpec) -> Self {
        Self::of_security(spec.security.as_ref())
    }

    /// The secrets a `kafka.security` carries.
    pub fn of_security(security: Option<&KafkaSecurity>) -> Self {
        Self {
            key_pem: security.and_then(|s| s.key_pem.as_ref()).map(|k| k.expose().to_owned()),
            sasl_password: security
                .and_then(|s| s.sasl.as_ref())
                .and_then(|s| s.password.as_ref())
                .map(|p| p.expose().to_owned()),
        }
    }

    /// These secrets where `new` left them out, where its settings still use them.
    pub fn keep_unless_given(&self, new: &mut KafkaSpec) {
        self.keep_in(new.security.as_mut());
    }

    /// [`Self::keep_unless_given`] for a bare `kafka.security`.
    pub fn keep_in(&self, security: Option<&mut KafkaSecurity>) {
        let Some(security) = security else { return };
        if security.key_pem.is_none() && security.cert_pem.is_some() {
            security.key_pem = self.key_pem.clone().map(Secret::new);
        }
        if let Some(sasl) = security.sasl.as_mut() {
            if sasl.password.is_none() {
                sasl.password = self.sasl_password.clone().map(Secret::new);
            }
        }
    }

    /// Puts the secrets into a spec read back from the store.
    pub fn fill(&self, spec: &mut KafkaSpec) {
        self.keep_unless_given(spec);
    }
}

/// `topic_mode`: the seed encodes it as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub enum TopicMode {
    /// 0: one topic per database, named `{db}`.
    PerDatabase,
    /// 1: one topic per table, named `{db}_{table}`.
    PerTable,
}

impl TryFrom<i64> for TopicMode {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        match v {
            0 => Ok(Self::PerDatabase),
            1 => Ok(Self::PerTable),
            other => Err(format!(
                "topic_mode must be 0 (a topic per database) or 1 (a topic per table, `db_table`), got {other}"
            )),
        }
    }
}

impl From<TopicMode> for i64 {
    fn from(m: TopicMode) -> i64 {
        match m {
            TopicMode::PerDatabase => 0,
            TopicMode::PerTable => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionMode {
    /// Hash of `db.table`: a table's changes stay in order on one partition.
    Table,
    /// Hash of `partition_columns`' values.
    Column,
    /// Hash of the primary key's values: a row's changes stay in order.
    PrimaryKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionFallback {
    Table,
    PrimaryKey,
}

/// One entry of `filters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRule {
    /// Exact database name (no regex, as the seed says).
    pub dbname: String,
    /// Exact table name, or `/regex/` matched against the whole table name.
    #[serde(rename = "match")]
    pub table: String,
    /// Row-filter expression; empty or absent means every row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

impl FilterRule {
    /// The row filter, or `None` when the entry has none.
    pub fn row_filter(&self) -> Result<Option<RowFilter>, crate::filter::FilterError> {
        match self.filter.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => RowFilter::parse(text).map(Some),
        }
    }
}

/// `rate_limit`: a token bucket of `capacity` rows refilled at `rate` rows/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub rate: i64,
    /// Burst size; defaults to `rate`, as the seed recommends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<i64>,
}

impl RateLimit {
    pub fn capacity(&self) -> i64 {
        self.capacity.unwrap_or(self.rate)
    }
}

/// Why a spec was refused: the error code, the field at fault and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub code: ErrorCode,
    /// Dotted path of the field, e.g. `task.filters[1].match`.
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub(crate) fn new(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code, field: field.into(), message: message.into() }
    }
}

/// Parses a submit/alter body. Syntax errors and shape errors (unknown,
/// missing or mistyped fields) get distinct codes and name the field.
pub fn parse_submit_body(body: &[u8]) -> Result<TaskSpec, SpecError> {
    parse_json::<SubmitRequest>(body).map(|req| req.task)
}

/// Parses a JSON request body; a syntax error and a shape error (unknown,
/// missing or mistyped field) get distinct codes, and the field is named.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, SpecError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let code = match inner.classify() {
            serde_json::error::Category::Data => ErrorCode::InvalidField,
            _ => ErrorCode::MalformedJson,
        };
        let field = if path == "." { "body".to_owned() } else { path };
        let message = if code == ErrorCode::MalformedJson {
            format!("the body is not valid JSON: {inner}")
        } else {
            inner.to_string()
        };
        SpecError::new(code, field, message)
    })
}

impl TaskSpec {
    /// Every semantic check; the first problem found is returned.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.validate_sizes()?;
        self.validate_source()?;
        self.validate_kafka()?;
        self.validate_filters()?;
        self.validate_rate_limit()
    }

    /// Lengths first, so no later check (or its message) handles a huge value.
    fn validate_sizes(&self) -> Result<(), SpecError> {
        let too_long = |code: ErrorCode, field: String, value: &str, max: usize| {
            let n = value.chars().count();
            if n > max {
                Err(SpecError::new(code, field, format!("is {n} characters long; at most {max} are accepted")))
            } else {
                Ok(())
            }
        };
        let s = &self.source;
        too_long(ErrorCode::InvalidSource, "task.source.host".into(), &s.host, max_len::HOST)?;
        too_long(ErrorCode::InvalidSource, "task.source.username".into(), &s.username, max_len::USERNAME)?;
        if let Some(p) = &s.password {
            too_long(ErrorCode::InvalidSource, "task.source.password".into(), p.expose(), max_len::PASSWORD)?;
        }
        if let Some(ca) = &s.tls.ca_pem {
            too_long(ErrorCode::InvalidSource, "task.source.tls.ca_pem".into(), ca, max_len::PEM)?;
        }
        let k = &self.kafka;
        too_long(ErrorCode::InvalidKafka, "task.kafka.addr".into(), &k.addr, max_len::KAFKA_ADDR)?;
        if let Some(topic) = &k.topic {
            too_long(ErrorCode::InvalidKafka, "task.kafka.topic".into(), topic, 249)?;
        }
        for (name, list, code) in [
            ("partition_columns", &k.partition_columns, ErrorCode::InvalidPartition),
            ("exclude_columns", &k.exclude_columns, ErrorCode::InvalidExcludeColumns),
        ] {
            if list.len() > max_len::COLUMN_LISTS {
                return Err(SpecError::new(
                    code,
                    format!("task.kafka.{name}"),
                    format!("has {} entries; at most {} are accepted", list.len(), max_len::COLUMN_LISTS),
                ));
            }
            for (i, c) in list.iter().enumerate() {
                too_long(code, format!("task.kafka.{name}[{i}]"), c, max_len::COLUMN_REF)?;
            }
        }
        if self.filters.len() > max_len::FILTERS {
            return Err(SpecError::new(
                ErrorCode::InvalidFilters,
                "task.filters",
                format!("has {} entries; at most {} are accepted", self.filters.len(), max_len::FILTERS),
            ));
        }
        for (i, f) in self.filters.iter().enumerate() {
            too_long(ErrorCode::InvalidFilters, format!("task.filters[{i}].dbname"), &f.dbname, max_len::DBNAME)?;
            too_long(ErrorCode::InvalidFilters, format!("task.filters[{i}].match"), &f.table, max_len::MATCH)?;
            if let Some(text) = &f.filter {
                too_long(ErrorCode::InvalidRowFilter, format!("task.filters[{i}].filter"), text, max_len::FILTER)?;
            }
        }
        Ok(())
    }

    fn validate_source(&self) -> Result<(), SpecError> {
        let s = &self.source;
        let bad = |field: &str, msg: &str| Err(SpecError::new(ErrorCode::InvalidSource, field, msg));
        if s.host.trim().is_empty() || s.host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("task.source.host", "must be a host name or IP address without spaces or control characters");
        }
        if s.host.contains("://") || s.host.contains('/') {
            return bad("task.source.host", "must be a bare host name or IP address, without a scheme or path");
        }
        if s.host.contains(':') && s.host.parse::<std::net::Ipv6Addr>().is_err() {
            return bad(
                "task.source.host",
                "must be a host name or IP address without a port: put the port in task.source.port",
            );
        }
        if s.username.chars().any(char::is_control) {
            return bad("task.source.username", "must not contain control characters");
        }
        if let Some(ca) = &s.tls.ca_pem {
            if !ca.contains("-----BEGIN CERTIFICATE-----") {
                return bad("task.source.tls.ca_pem", "must be PEM text holding at least one CERTIFICATE block");
            }
            if !matches!(s.tls.mode, TlsMode::VerifyCa | TlsMode::VerifyIdentity) {
                return bad("task.source.tls.ca_pem", "is only used with mode verify_ca or verify_identity");
            }
        }
        if s.port == 0 {
            return bad("task.source.port", "must be between 1 and 65535");
        }
        if s.username.is_empty() {
            return bad("task.source.username", "must name the replication user");
        }
        Ok(())
    }

    fn validate_kafka(&self) -> Result<(), SpecError> {
        let k = &self.kafka;
        let bad = |code: ErrorCode, field: &str, msg: String| Err(SpecError::new(code, field, msg));
        let brokers: Vec<&str> = k.addr.split(',').map(str::trim).collect();
        if k.addr.trim().is_empty() || brokers.iter().any(|b| !is_host_port(b)) {
            return bad(
                ErrorCode::InvalidKafka,
                "task.kafka.addr",
                format!("must be host:port[,host:port...], got {}", echo(&k.addr)),
            );
        }
        match (&k.topic_mode, &k.topic) {
            (None, None) => {
                return bad(
                    ErrorCode::InvalidKafka,
                    "task.kafka.topic",
                    "is required unless topic_mode is set (0: a topic per database, 1: a topic per table)".into(),
                )
            }
            (_, Some(topic)) => {
                if let Err(why) = check_topic_name(topic) {
                    return bad(ErrorCode::InvalidKafka, "task.kafka.topic", why);
                }
            }
            (Some(_), None) => {}
        }
        let mode = k.partition_mode.unwrap_or(PartitionMode::Table);
        if mode == PartitionMode::Column {
            if k.partition_columns.is_empty() {
                return bad(
                    ErrorCode::InvalidPartition,
                    "task.kafka.partition_columns",
                    "partition_mode=column needs at least one column in partition_columns".into(),
                );
            }
            if let Some(i) = k.partition_columns.iter().position(|c| c.trim().is_empty()) {
                return bad(
                    ErrorCode::InvalidPartition,
                    &format!("task.kafka.partition_columns[{i}]"),
                    "must be a column name".into(),
                );
            }
        } else {
            if !k.partition_columns.is_empty() {
                return bad(
                    ErrorCode::InvalidPartition,
                    "task.kafka.partition_columns",
                    "is only used with partition_mode=column; remove it or set partition_mode to column".into(),
                );
            }
            if k.producer_partition_by_fallback.is_some() {
                return bad(
                    ErrorCode::InvalidPartition,
                    "task.kafka.producer_partition_by_fallback",
                    "is only used with partition_mode=column".into(),
                );
            }
        }
        for (i, col) in k.exclude_columns.iter().enumerate() {
            let parts: Vec<&str> = col.split('.').collect();
            if !(parts.len() == 1 || parts.len() == 3) || parts.iter().any(|p| p.trim().is_empty()) {
                return bad(
                    ErrorCode::InvalidExcludeColumns,
                    &format!("task.kafka.exclude_columns[{i}]"),
                    format!("must be `column` or `db.table.column`, got {}", echo(col)),
                );
            }
            // Keys would carry the values the task was told to drop.
            let column = parts[parts.len() - 1];
            if k.partition_mode == Some(PartitionMode::Column) && k.partition_columns.iter().any(|p| p == column) {
                return bad(
                    ErrorCode::InvalidExcludeColumns,
                    &format!("task.kafka.exclude_columns[{i}]"),
                    format!(
                        "{} is also in partition_columns, so message keys would carry its excluded values: \
                         remove it from one of the two",
                        echo(col)
                    ),
                );
            }
        }
        if let Some(sec) = &k.security {
            validate_kafka_security(sec, "task.kafka.security")?;
        }
        Ok(())
    }

    /// Secrets a new task must carry (an alter may leave them out to keep
    /// the stored ones): a key with a client certificate, a SASL password.
    pub fn check_secrets_present(&self) -> Result<(), SpecError> {
        let Some(sec) = &self.kafka.security else { return Ok(()) };
        if sec.cert_pem.is_some() && sec.key_pem.is_none() {
            return Err(SpecError::new(
                ErrorCode::InvalidKafka,
                "task.kafka.security.key_pem",
                "is required with cert_pem (the client certificate's private key, PEM)",
            ));
        }
        if sec.sasl.as_ref().is_some_and(|s| s.password.is_none()) {
            return Err(SpecError::new(ErrorCode::InvalidKafka, "task.kafka.security.sasl.password", "is required"));
        }
        Ok(())
    }

    fn validate_filters(&self) -> Result<(), SpecError> {
        if self.filters.is_empty() {
            return Err(SpecError::new(
                ErrorCode::InvalidFilters,
                "task.filters",
                "must list at least one {\"dbname\", \"match\"} entry (use \"match\": \"/.*/\" for every table)",
            ));
        }
        for (i, rule) in self.filters.iter().enumerate() {
            if rule.dbname.trim().is_empty() {
                return Err(SpecError::new(
                    ErrorCode::InvalidFilters,
                    format!("task.filters[{i}].dbname"),
                    "must name a database",
                ));
            }
            if rule.dbname.chars().any(char::is_control) {
                return Err(SpecError::new(
                    ErrorCode::InvalidFilters,
                    format!("task.filters[{i}].dbname"),
                    format!("must not contain control characters, got {}", echo(&rule.dbname)),
                ));
            }
            TableMatcher::parse(&rule.table)
                .map_err(|(code, msg)| SpecError::new(code, format!("task.filters[{i}].match"), msg))?;
            rule.row_filter().map_err(|e| {
                SpecError::new(ErrorCode::InvalidRowFilter, format!("task.filters[{i}].filter"), e.to_string())
            })?;
        }
        Ok(())
    }

    fn validate_rate_limit(&self) -> Result<(), SpecError> {
        let Some(rl) = self.rate_limit else { return Ok(()) };
        if !(1..=MAX_RATE).contains(&rl.rate) {
            return Err(SpecError::new(
                ErrorCode::InvalidRateLimit,
                "task.rate_limit.rate",
                format!("must be between 1 and {MAX_RATE} rows per second, got {}", rl.rate),
            ));
        }
        if let Some(cap) = rl.capacity {
            if !(1..=MAX_CAPACITY).contains(&cap) {
                return Err(SpecError::new(
                    ErrorCode::InvalidRateLimit,
                    "task.rate_limit.capacity",
                    format!("must be between 1 and {MAX_CAPACITY} rows, got {cap}"),
                ));
            }
        }
        Ok(())
    }

    /// The list endpoint's `dest_addr`.
    pub fn dest_addr(&self) -> String {
        self.kafka.addr.split(',').map(str::trim).collect::<Vec<_>>().join(",")
    }

    /// Checks that an alter keeps what cannot change: the source user and
    /// `incr`, and the source server while the task's position is a binlog
    /// file and offset (meaningful on that server only). A GTID position
    /// moves with the transactions, so such a task may be pointed at a
    /// replica that has them (a failover).
    pub fn check_alter(&self, current: &TaskSpec, resumable: Resumable) -> Result<(), SpecError> {
        let same_server = self.source.same_server_and_user(&current.source);
        let same_user = self.source.username == current.source.username;
        let may_move = same_user && resumable == Resumable::OnAnyServer;
        if !(same_server || may_move) {
            let why = if same_user {
                "the task's position is a binlog file and offset of that server, which no other server has"
            } else {
                "a different user may see other tables and privileges"
            };
            return Err(SpecError::new(
                ErrorCode::ImmutableField,
                "task.source",
                format!(
                    "cannot be changed by alter (the task reads {} as {:?}; {why}); submit a new task for another source. source.password may always change, and source.host/port may when the task resumes by GTID",
                    current.source.addr(),
                    current.source.username
                ),
            ));
        }
        if self.incr != current.incr {
            return Err(SpecError::new(
                ErrorCode::ImmutableField,
                "task.incr",
                format!("cannot be changed by alter (it is {}); submit a new task instead", current.incr),
            ));
        }
        Ok(())
    }
}

/// Checks `kafka.security`; `at` is its path in the body (`task.kafka.security`).
pub(crate) fn validate_kafka_security(sec: &KafkaSecurity, at: &str) -> Result<(), SpecError> {
    let bad = |field: &str, msg: String| Err(SpecError::new(ErrorCode::InvalidKafka, format!("{at}.{field}"), msg));
    let p = sec.protocol;
    let tls_only =
        [("ca_pem", sec.ca_pem.is_some()), ("cert_pem", sec.cert_pem.is_some()), ("key_pem", sec.key_pem.is_some())];
    if !p.uses_tls() {
        if let Some((field, _)) = tls_only.iter().find(|(_, set)| *set) {
            return bad(field, format!("is only used with protocol SSL or SASL_SSL, not {}", p.as_str()));
        }
    }
    match (&sec.sasl, p.uses_sasl()) {
        (None, true) => return bad("sasl", format!("is required with protocol {}", p.as_str())),
        (Some(_), false) => {
            return bad("sasl", format!("is only used with protocol SASL_PLAINTEXT or SASL_SSL, not {}", p.as_str()))
        }
        _ => {}
    }
    if sec.key_pem.is_some() && sec.cert_pem.is_none() {
        return bad("cert_pem", "is required with key_pem (the client certificate, PEM)".into());
    }
    for (field, pem, marker) in [
        ("ca_pem", sec.ca_pem.as_deref(), "-----BEGIN CERTIFICATE-----"),
        ("cert_pem", sec.cert_pem.as_deref(), "-----BEGIN CERTIFICATE-----"),
        ("key_pem", sec.key_pem.as_ref().map(Secret::expose), "PRIVATE KEY-----"),
    ] {
        let Some(pem) = pem else { continue };
        if pem.len() > max_len::PEM {
            return bad(field, format!("is {} bytes long; at most {} are accepted", pem.len(), max_len::PEM));
        }
        if !pem.contains(marker) {
            return bad(field, "must be PEM text (-----BEGIN ...-----)".into());
        }
    }
    if let Some(sasl) = &sec.sasl {
        if sasl.username.is_empty()
            || sasl.username.chars().count() > 256
            || sasl.username.chars().any(char::is_control)
        {
            return bad("sasl.username", "must be 1 to 256 characters without control characters".into());
        }
        if sasl.password.as_ref().is_some_and(|p| p.expose().len() > max_len::PASSWORD) {
            return bad("sasl.password", format!("is longer than {} bytes", max_len::PASSWORD));
        }
    }
    Ok(())
}

/// Where a task's position can be resumed, as far as an alter cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumable {
    /// No position yet, or a GTID state: any server holding the same
    /// transactions serves it.
    OnAnyServer,
    /// A binlog file and offset: meaningful on the server that wrote it only.
    OnThisServer,
}

pub(crate) fn is_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    !host.is_empty() && !host.chars().any(char::is_whitespace) && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// Kafka's own topic-name rules: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 249 {
        return Err(format!("a topic name has 1 to 249 characters, got {}", topic.len()));
    }
    if topic == "." || topic == ".." {
        return Err("a topic cannot be named \".\" or \"..\"".into());
    }
    if let Some(c) = topic.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!(
            "a topic name holds only letters, digits, '.', '_' and '-', found {c:?} in {}",
            echo(topic)
        ));
    }
    // Kafka's own topics (__consumer_offsets, __transaction_state, ...).
    if topic.starts_with("__") {
        return Err(format!("{topic:?} is reserved for Kafka's internal topics (names starting with \"__\")"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
