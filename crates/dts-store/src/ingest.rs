//! Ingest streams in the store. Their Kafka secrets are sealed like a
//! task's; the spec column never holds them.

use std::collections::HashMap;

use dts_core::ingest::{Protocol, StreamCount, StreamKey, StreamSpec};
use dts_core::spec::KafkaSecrets;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::text::{opt_text, text};
use crate::{now_ms, Backend, Store, StoreError};

const KAFKA_PURPOSE: &str = "dts/ingest_kafka_secrets";

/// A stored stream.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    pub id: i64,
    pub key: StreamKey,
    /// Without secrets; see [`Store::stream_secrets`].
    pub spec: StreamSpec,
    sealed_kafka: Option<String>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What an update did.
#[derive(Debug)]
pub enum StreamUpdate {
    Updated(Box<StreamRecord>),
    NotFound,
    /// Another stream already has the new name.
    NameTaken,
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl Store {
    fn seal_stream_secrets(&self, spec: &StreamSpec) -> Result<Option<String>, StoreError> {
        let secrets = spec.secrets();
        if secrets == KafkaSecrets::default() {
            return Ok(None);
        }
        let json = serde_json::to_string(&secrets).map_err(|e| StoreError::Corrupt(format!("kafka secrets: {e}")))?;
        Ok(Some(self.cipher.seal(KAFKA_PURPOSE, &json)?))
    }

    /// Adds a stream; `None` when another stream has its name.
    pub async fn create_stream(&self, spec: &StreamSpec, key: &StreamKey) -> Result<Option<StreamRecord>, StoreError> {
        let sealed = self.seal_stream_secrets(spec)?;
        let json = spec_json(spec)?;
        let now = now_ms();
        let insert =
            "INSERT INTO dts_ingest_streams (protocol, scope, name, spec, kafka_secrets, version, created_at, \
                      updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)";
        let sql = self.insert_id_sql(insert);
        let query = sqlx::query(&sql)
            .bind(key.protocol.as_str())
            .bind(key.scope.clone())
            .bind(key.name.clone())
            .bind(json)
            .bind(sealed)
            .bind(now)
            .bind(now);
        let id = match self.insert_id(query).await {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        self.get_stream(id).await
    }

    pub async fn get_stream(&self, id: i64) -> Result<Option<StreamRecord>, StoreError> {
        let select = format!("{SELECT} WHERE id = ?");
        let sql = self.backend.sql(&select);
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(record).transpose()
    }

    /// Every stream, by id.
    pub async fn list_streams(&self) -> Result<Vec<StreamRecord>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT} ORDER BY id")).fetch_all(&self.pool).await?;
        rows.iter().map(record).collect()
    }

    /// Replaces a stream's spec (and name); secrets left out of `spec` are kept.
    pub async fn update_stream(&self, id: i64, spec: &StreamSpec, key: &StreamKey) -> Result<StreamUpdate, StoreError> {
        let Some(current) = self.get_stream(id).await? else { return Ok(StreamUpdate::NotFound) };
        let mut spec = spec.clone();
        self.stream_secrets(&current)?.keep_in(spec.kafka.security.as_mut());
        let sealed = self.seal_stream_secrets(&spec)?;
        let sql = "UPDATE dts_ingest_streams SET protocol = ?, scope = ?, name = ?, spec = ?, kafka_secrets = ?, \
                   version = version + 1, updated_at = ? WHERE id = ?";
        let done = sqlx::query(&self.backend.sql(sql))
            .bind(key.protocol.as_str())
            .bind(key.scope.clone())
            .bind(key.name.clone())
            .bind(spec_json(&spec)?)
            .bind(sealed)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await;
        match done {
            Ok(d) if d.rows_affected() == 0 => Ok(StreamUpdate::NotFound),
            Ok(_) => {
                Ok(self.get_stream(id).await?.map_or(StreamUpdate::NotFound, |r| StreamUpdate::Updated(Box::new(r))))
            }
            Err(e) if is_unique_violation(&e) => Ok(StreamUpdate::NameTaken),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_stream(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.backend.sql("DELETE FROM dts_ingest_streams WHERE id = ?"))
            .bind(id)
            .execute(&self.pool)
            .await?;
        sqlx::query(&self.backend.sql("DELETE FROM dts_ingest_counters WHERE stream_id = ?"))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records serving process `node`'s counters (totals since it started,
    /// so writing them again is harmless).
    pub async fn record_ingest_counters(&self, node: &str, counts: &[StreamCount]) -> Result<(), StoreError> {
        let sql = match self.backend {
            Backend::MySql => {
                "INSERT INTO dts_ingest_counters (stream_id, node, records, bytes, errors, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE records = VALUES(records), \
                 bytes = VALUES(bytes), errors = VALUES(errors), updated_at = VALUES(updated_at)"
            }
            Backend::Sqlite | Backend::Postgres => {
                "INSERT INTO dts_ingest_counters (stream_id, node, records, bytes, errors, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (stream_id, node) DO UPDATE SET records = excluded.records, \
                 bytes = excluded.bytes, errors = excluded.errors, updated_at = excluded.updated_at"
            }
        };
        let sql = self.backend.sql(sql);
        let now = now_ms();
        let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for c in counts {
            sqlx::query(&sql)
                .bind(c.stream_id)
                .bind(node.to_owned())
                .bind(big(c.records))
                .bind(big(c.bytes))
                .bind(big(c.errors))
                .bind(now)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Every stream's counters summed over the serving processes other than
    /// `except` (the asking node adds its own live ones).
    pub async fn ingest_counters(&self, except: &str) -> Result<HashMap<i64, StreamCount>, StoreError> {
        let rows = sqlx::query(
            &self.backend.sql("SELECT stream_id, records, bytes, errors FROM dts_ingest_counters WHERE node <> ?"),
        )
        .bind(except.to_owned())
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<i64, StreamCount> = HashMap::new();
        for r in rows {
            let id: i64 = r.try_get("stream_id")?;
            let n = |col: &str| r.try_get::<i64, _>(col).map(|v| u64::try_from(v).unwrap_or(0));
            let c = out.entry(id).or_insert(StreamCount { stream_id: id, ..StreamCount::default() });
            c.records = c.records.saturating_add(n("records")?);
            c.bytes = c.bytes.saturating_add(n("bytes")?);
            c.errors = c.errors.saturating_add(n("errors")?);
        }
        Ok(out)
    }

    /// The secrets of a stored stream.
    pub fn stream_secrets(&self, stream: &StreamRecord) -> Result<KafkaSecrets, StoreError> {
        let Some(sealed) = stream.sealed_kafka.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(KafkaSecrets::default());
        };
        let text = self.cipher.open(KAFKA_PURPOSE, sealed)?;
        serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("ingest stream {}: kafka secrets: {e}", stream.id)))
    }
}

const SELECT: &str =
    "SELECT id, protocol, scope, name, spec, kafka_secrets, version, created_at, updated_at FROM dts_ingest_streams";

fn spec_json(spec: &StreamSpec) -> Result<String, StoreError> {
    serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(format!("cannot encode stream: {e}")))
}

fn record(r: &AnyRow) -> Result<StreamRecord, StoreError> {
    let id: i64 = r.try_get("id")?;
    let corrupt = |what: String| StoreError::Corrupt(format!("ingest stream {id}: {what}"));
    let protocol = text(r, "protocol")?;
    let protocol = Protocol::parse(&protocol).ok_or_else(|| corrupt(format!("unknown protocol {protocol:?}")))?;
    let spec: StreamSpec = serde_json::from_str(&text(r, "spec")?).map_err(|e| corrupt(e.to_string()))?;
    Ok(StreamRecord {
        id,
        key: StreamKey { protocol, scope: text(r, "scope")?, name: text(r, "name")? },
        spec,
        sealed_kafka: opt_text(r, "kafka_secrets")?,
        version: r.try_get("version")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const KEY_PURPOSE: &str = "dts/ingest_secret_key";

/// An ingest credential.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: i64,
    pub protocol: Protocol,
    /// `aksk`, `token` or `api_key`.
    pub kind: String,
    /// The access key, or the hex SHA-256 of a token or API key.
    pub lookup: String,
    sealed_secret: Option<String>,
    pub streams: Vec<i64>,
    pub created_at: i64,
}

impl Store {
    /// Adds a credential; `secret` (a DIS secret key) is sealed.
    pub async fn create_key(
        &self,
        protocol: Protocol,
        kind: &str,
        lookup: &str,
        secret: Option<&str>,
        streams: &[i64],
    ) -> Result<i64, StoreError> {
        let sealed = secret.map(|s| self.cipher.seal(KEY_PURPOSE, s)).transpose()?;
        let streams = serde_json::to_string(streams).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let insert = "INSERT INTO dts_ingest_keys (protocol, kind, lookup, sealed_secret, streams, created_at) \
                      VALUES (?, ?, ?, ?, ?, ?)";
        let sql = self.insert_id_sql(insert);
        let query = sqlx::query(&sql)
            .bind(protocol.as_str())
            .bind(kind.to_owned())
            .bind(lookup.to_owned())
            .bind(sealed)
            .bind(streams)
            .bind(now_ms());
        Ok(self.insert_id(query).await?)
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, protocol, kind, lookup, sealed_secret, streams, created_at FROM dts_ingest_keys ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_record).collect()
    }

    pub async fn delete_key(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.backend.sql("DELETE FROM dts_ingest_keys WHERE id = ?"))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The secret of a credential that has one (a DIS secret key).
    pub fn key_secret(&self, key: &KeyRecord) -> Result<Option<dts_core::spec::Secret>, StoreError> {
        key.sealed_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| self.cipher.open(KEY_PURPOSE, s).map(dts_core::spec::Secret::new))
            .transpose()
            .map_err(Into::into)
    }
}

fn key_record(r: &AnyRow) -> Result<KeyRecord, StoreError> {
    let id: i64 = r.try_get("id")?;
    let corrupt = |what: String| StoreError::Corrupt(format!("ingest key {id}: {what}"));
    let protocol = text(r, "protocol")?;
    let protocol = Protocol::parse(&protocol).ok_or_else(|| corrupt(format!("unknown protocol {protocol:?}")))?;
    let streams = serde_json::from_str(&text(r, "streams")?).map_err(|e| corrupt(e.to_string()))?;
    Ok(KeyRecord {
        id,
        protocol,
        kind: text(r, "kind")?,
        lookup: text(r, "lookup")?,
        sealed_secret: opt_text(r, "sealed_secret")?,
        streams,
        created_at: r.try_get("created_at")?,
    })
}
