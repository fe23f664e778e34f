//! The worker's HTTP client of the control plane's internal API. Several
//! control-plane addresses may be given: each call tries them in turn, so a
//! control plane going away costs one failed attempt, not an outage.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dts_core::spec::Secret;
use dts_core::wire::{
    cluster_proof, Heartbeat, HeartbeatReply, ProgressReport, ReportReply, StateReport, CLUSTER_NONCE_HEADER,
    CLUSTER_PROOF_HEADER, CLUSTER_TOKEN_HEADER,
};
use dts_core::TaskState;
use dts_store::tasks::Progress;

use crate::error::RunError;

pub struct ControlClient {
    http: reqwest::Client,
    /// Base URLs, e.g. `http://10.0.0.1:8080`.
    bases: Vec<String>,
    token: Secret,
    /// The base that answered last, tried first next time.
    preferred: AtomicUsize,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient").field("bases", &self.bases).finish_non_exhaustive()
    }
}

impl ControlClient {
    /// `ca_pem`: the CA certificate(s) that signed `https://` control
    /// planes' certificates, besides the public roots. Host names are
    /// verified; redirects are never followed (a redirect could send the
    /// cluster's requests elsewhere).
    pub fn new(bases: Vec<String>, token: Secret, timeout: Duration, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        if bases.is_empty() {
            return Err("no control-plane address given".into());
        }
        let mut http = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_pem {
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
        Ok(Self { http, bases, token, preferred: AtomicUsize::new(0) })
    }

    async fn post<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, String> {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last_error = String::new();
        for k in 0..self.bases.len() {
            let i = (first + k) % self.bases.len();
            let url = format!("{}{path}", self.bases[i]);
            let nonce = format!("{:032x}", rand::random::<u128>());
            let sent = self
                .http
                .post(&url)
                .header(CLUSTER_TOKEN_HEADER, self.token.expose())
                .header(CLUSTER_NONCE_HEADER, &nonce)
                .json(body)
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    // Only a node that knows the token can answer: the other
                    // half of the mutual authentication.
                    let proof = resp.headers().get(CLUSTER_PROOF_HEADER).and_then(|v| v.to_str().ok());
                    if proof != Some(cluster_proof(self.token.expose(), &nonce).as_str()) {
                        last_error = format!("{url}: the answer does not prove knowledge of the cluster token");
                        continue;
                    }
                    self.preferred.store(i, Ordering::Relaxed);
                    let envelope: serde_json::Value = resp.json().await.map_err(|e| format!("{url}: {e}"))?;
                    return serde_json::from_value(envelope["data"].clone()).map_err(|e| format!("{url}: {e}"));
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    last_error = format!("{url}: HTTP {status}: {text}");
                    // A refusal (bad token, bad request) is the same everywhere.
                    if status.is_client_error() {
                        return Err(last_error);
                    }
                }
                Err(e) => last_error = format!("{url}: {e}"),
            }
        }
        Err(last_error)
    }

    pub async fn heartbeat(&self, beat: &Heartbeat) -> Result<HeartbeatReply, String> {
        self.post("/internal/v1/heartbeat", beat).await
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
        let reply: ReportReply = self
            .post(&format!("/internal/v1/tasks/{id}/progress"), &report)
            .await
            .map_err(|e| RunError::Transient(format!("control plane: {e}")))?;
        Ok(reply.accepted)
    }

    pub async fn state(&self, id: i64, epoch: i64, state: TaskState, message: &str) -> Result<bool, RunError> {
        let report = StateReport { epoch, state: state.as_str().into(), message: message.into() };
        let reply: ReportReply = self
            .post(&format!("/internal/v1/tasks/{id}/state"), &report)
            .await
            .map_err(|e| RunError::Transient(format!("control plane: {e}")))?;
        Ok(reply.accepted)
    }
}
