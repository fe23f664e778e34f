//! The worker's HTTP client of the control plane's internal API. Several
//! control-plane addresses may be given: each call tries them in turn, so a
//! control plane going away costs one failed attempt, not an outage.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dts_core::cluster_auth::{new_nonce, ClusterKey, NONCE_HEADER, PROOF_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use dts_core::spec::Secret;
use dts_core::wire::{Heartbeat, HeartbeatReply, ProgressReport, ReportReply, StateReport, TaskSecrets};
use dts_core::TaskState;
use dts_store::tasks::Progress;

use crate::error::RunError;

pub struct ControlClient {
    http: reqwest::Client,
    /// Base URLs, e.g. `http://10.0.0.1:8080`.
    bases: Vec<String>,
    key: ClusterKey,
    /// The base that answered last, tried first next time.
    preferred: AtomicUsize,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient").field("bases", &self.bases).finish_non_exhaustive()
    }
}

/// TLS settings of the connections to the control planes.
#[derive(Debug, Clone, Default)]
pub struct ControlTls {
    /// PEM CA certificates trusted besides the public roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain followed by its private key, for
    /// control planes that require client certificates.
    pub identity_pem: Option<Vec<u8>>,
}

impl ControlClient {
    /// `ca_pem`: the CA certificate(s) that signed `https://` control
    /// planes' certificates, besides the public roots. Host names are
    /// verified; redirects are never followed (a redirect could send the
    /// cluster's requests elsewhere).
    pub fn new(bases: Vec<String>, token: Secret, timeout: Duration, tls: &ControlTls) -> Result<Self, String> {
        if bases.is_empty() {
            return Err("no control-plane address given".into());
        }
        let mut http = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &tls.identity_pem {
            let identity = reqwest::Identity::from_pem(pem)
                .map_err(|e| format!("the client certificate and key are not usable PEM: {e}"))?;
            http = http.identity(identity);
        }
        if let Some(pem) = tls.ca_pem.as_deref() {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("the control CA is not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err("the control CA holds no CERTIFICATE block".into());
            }
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| e.to_string())?;
        let bases = bases
            .into_iter()
            .map(|b| {
                let b = b.trim_end_matches('/').to_owned();
                if b.starts_with("http://") || b.starts_with("https://") {
                    b
                } else {
                    format!("http://{b}")
                }
            })
            .collect();
        Ok(Self { http, bases, key: ClusterKey::new(token.expose()), preferred: AtomicUsize::new(0) })
    }

    /// Sends a signed request to each control plane in turn until one
    /// answers with a valid proof; returns the answer and the request's
    /// nonce (which opens the answer's sealed secrets).
    async fn post<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(R, String), String> {
        let body = serde_json::to_vec(body).map_err(|e| format!("cannot encode the request: {e}"))?;
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last_error = String::new();
        for k in 0..self.bases.len() {
            let i = (first + k) % self.bases.len();
            let url = format!("{}{path}", self.bases[i]);
            let nonce = new_nonce();
            let ts = dts_core::now_ms();
            let signature = self.key.sign_request("POST", path, ts, &nonce, &body);
            let sent = self
                .http
                .post(&url)
                .header(TIMESTAMP_HEADER, ts.to_string())
                .header(NONCE_HEADER, &nonce)
                .header(SIGNATURE_HEADER, signature)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let resp = match sent {
                Ok(resp) => resp,
                Err(e) => {
                    last_error = format!("{url}: {e}");
                    continue;
                }
            };
            let status = resp.status();
            let proof = resp.headers().get(PROOF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    last_error = format!("{url}: {e}");
                    continue;
                }
            };
            // Only a node that holds the token can answer, and nobody on the
            // way can change the answer: the proof covers its body.
            let proven = proof.is_some_and(|p| self.key.verify_response(&nonce, status.as_u16(), &bytes, &p).is_ok());
            if !proven {
                last_error =
                    format!("{url}: HTTP {status}, and the answer does not prove knowledge of the cluster token");
                continue;
            }
            if status.is_success() {
                self.preferred.store(i, Ordering::Relaxed);
                let envelope: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))?;
                let data = serde_json::from_value(envelope["data"].clone()).map_err(|e| format!("{url}: {e}"))?;
                return Ok((data, nonce));
            }
            last_error = format!("{url}: HTTP {status}: {}", String::from_utf8_lossy(&bytes));
            // A refusal (bad request, another cluster) is the same everywhere.
            if status.is_client_error() {
                return Err(last_error);
            }
        }
        Err(last_error)
    }

    /// This worker's tasks, with their secrets opened.
    pub async fn heartbeat(&self, beat: &Heartbeat) -> Result<(HeartbeatReply, Vec<TaskSecrets>), String> {
        let (reply, nonce): (HeartbeatReply, String) = self.post("/internal/v1/heartbeat", beat).await?;
        let secrets = reply
            .tasks
            .iter()
            .map(|t| {
                let plain = self.key.open(&nonce, &t.secrets).map_err(|e| format!("task {}: {e}", t.id))?;
                serde_json::from_slice(&plain).map_err(|e| format!("task {}: secrets: {e}", t.id))
            })
            .collect::<Result<Vec<TaskSecrets>, String>>()?;
        Ok((reply, secrets))
    }

    /// The ingest streams and keys a gateway serves, with their secrets opened.
    pub async fn ingest_config(
        &self,
        gateway_id: &str,
        node: &str,
        counts: Vec<dts_core::ingest::StreamCount>,
    ) -> Result<(dts_core::wire::IngestConfigReply, dts_core::wire::IngestSecrets), String> {
        let ask =
            dts_core::wire::IngestConfigRequest { gateway_id: gateway_id.to_owned(), node: node.to_owned(), counts };
        let (reply, nonce): (dts_core::wire::IngestConfigReply, String) =
            self.post("/internal/v1/ingest/config", &ask).await?;
        let plain = self.key.open(&nonce, &reply.secrets).map_err(|e| format!("ingest secrets: {e}"))?;
        let secrets = serde_json::from_slice(&plain).map_err(|e| format!("ingest secrets: {e}"))?;
        Ok((reply, secrets))
    }

    pub async fn progress(&self, id: i64, epoch: i64, p: &Progress) -> Result<bool, RunError> {
        let report = ProgressReport {
            epoch,
            state: p.state.as_str().into(),
            message: p.message.clone(),
            pos: p.pos.clone(),
            checkpoint: p.checkpoint.clone(),
            transaction_time: p.transaction_time,
        };
        let (reply, _): (ReportReply, _) = self
            .post(&format!("/internal/v1/tasks/{id}/progress"), &report)
            .await
            .map_err(|e| RunError::Transient(format!("control plane: {e}")))?;
        Ok(reply.accepted)
    }

    pub async fn state(&self, id: i64, epoch: i64, state: TaskState, message: &str) -> Result<bool, RunError> {
        let report = StateReport { epoch, state: state.as_str().into(), message: message.into() };
        let (reply, _): (ReportReply, _) = self
            .post(&format!("/internal/v1/tasks/{id}/state"), &report)
            .await
            .map_err(|e| RunError::Transient(format!("control plane: {e}")))?;
        Ok(reply.accepted)
    }
}
