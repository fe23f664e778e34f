//! How workers and control planes prove to each other that they hold the
//! cluster token, without ever sending it.
//!
//! - A worker signs each request: HMAC-SHA256 under a key derived from the
//!   token, over the method, path, a timestamp, a fresh nonce and the
//!   body's SHA-256. A control plane accepts it only within
//!   [`MAX_SKEW_MS`] of its clock and only once per nonce (replays fail).
//! - The control plane answers with a proof: an HMAC over the worker's
//!   nonce, the status and the response body's SHA-256. A worker drops
//!   answers without a valid proof, so nobody on the path can swap the
//!   tasks it is given (e.g. repoint `kafka.addr`).
//! - Secrets in answers (source passwords, Kafka keys) are sealed with
//!   AES-256-GCM under a key derived from the token and the request's
//!   nonce, so they are unreadable on the wire even without TLS.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Request headers: when it was signed (Unix ms), a fresh random value,
/// and the signature.
pub const TIMESTAMP_HEADER: &str = "x-dts-cluster-timestamp";
pub const NONCE_HEADER: &str = "x-dts-cluster-nonce";
pub const SIGNATURE_HEADER: &str = "x-dts-cluster-signature";
/// Response header: the control plane's proof.
pub const PROOF_HEADER: &str = "x-dts-cluster-proof";

/// How far a request's timestamp may be from the control plane's clock.
pub const MAX_SKEW_MS: i64 = 60_000;

/// Keys derived from the cluster token; its `Debug` shows nothing.
#[derive(Clone)]
pub struct ClusterKey {
    sign: [u8; 32],
    seal: [u8; 32],
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

fn derive(token: &str, purpose: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(purpose.as_bytes());
    h.update([0u8]);
    h.update(token.as_bytes());
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || text.len() > 128 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// Why a request or an answer was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the cluster signature headers are missing")]
    Missing,
    #[error("the request's timestamp is more than {} s from this node's clock", MAX_SKEW_MS / 1000)]
    Stale,
    #[error("the cluster signature is wrong (another cluster token, or a changed request)")]
    BadSignature,
    #[error("this request was already received (a replay)")]
    Replayed,
    #[error("the answer does not prove knowledge of the cluster token")]
    BadProof,
    #[error("the sealed secrets cannot be opened")]
    BadSeal,
}

impl ClusterKey {
    pub fn new(token: &str) -> Self {
        Self { sign: derive(token, "dts-cluster-sign-v1"), seal: derive(token, "dts-cluster-seal-v1") }
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // Any key length is valid for HMAC.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.sign).unwrap_or_else(|_| unreachable!());
        for p in parts {
            mac.update(&(p.len() as u64).to_le_bytes());
            mac.update(p);
        }
        mac
    }

    /// The signature of a request (hex).
    pub fn sign_request(&self, method: &str, path: &str, timestamp_ms: i64, nonce: &str, body: &[u8]) -> String {
        let body_hash = Sha256::digest(body);
        let ts = timestamp_ms.to_string();
        let mac =
            self.mac(&[b"request", method.as_bytes(), path.as_bytes(), ts.as_bytes(), nonce.as_bytes(), &body_hash]);
        hex(&mac.finalize().into_bytes())
    }

    /// Checks a request's signature and freshness (not replays: see
    /// [`ReplayGuard`]). Constant time in the signature.
    #[allow(clippy::too_many_arguments)]
    pub fn verify_request(
        &self,
        method: &str,
        path: &str,
        timestamp: &str,
        nonce: &str,
        signature: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<i64, AuthError> {
        let ts: i64 = timestamp.parse().map_err(|_| AuthError::Missing)?;
        if nonce.len() < 16 || nonce.len() > 64 {
            return Err(AuthError::Missing);
        }
        if (now_ms - ts).abs() > MAX_SKEW_MS {
            return Err(AuthError::Stale);
        }
        let sig = unhex(signature).ok_or(AuthError::BadSignature)?;
        let body_hash = Sha256::digest(body);
        let ts_text = ts.to_string();
        self.mac(&[b"request", method.as_bytes(), path.as_bytes(), ts_text.as_bytes(), nonce.as_bytes(), &body_hash])
            .verify_slice(&sig)
            .map_err(|_| AuthError::BadSignature)?;
        Ok(ts)
    }

    /// The proof on an answer to the request with `nonce` (hex).
    pub fn prove_response(&self, nonce: &str, status: u16, body: &[u8]) -> String {
        let body_hash = Sha256::digest(body);
        let status = status.to_string();
        hex(&self.mac(&[b"response", nonce.as_bytes(), status.as_bytes(), &body_hash]).finalize().into_bytes())
    }

    pub fn verify_response(&self, nonce: &str, status: u16, body: &[u8], proof: &str) -> Result<(), AuthError> {
        let proof = unhex(proof).ok_or(AuthError::BadProof)?;
        let body_hash = Sha256::digest(body);
        let status = status.to_string();
        self.mac(&[b"response", nonce.as_bytes(), status.as_bytes(), &body_hash])
            .verify_slice(&proof)
            .map_err(|_| AuthError::BadProof)
    }

    fn cipher(&self, nonce: &str) -> Aes256Gcm {
        let mut h = Sha256::new();
        h.update(self.seal);
        h.update(nonce.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        Aes256Gcm::new(&key.into())
    }

    /// Seals `plain` for the worker that sent `nonce`: base64 of a random
    /// 96-bit IV and the AES-256-GCM ciphertext.
    pub fn seal(&self, nonce: &str, plain: &[u8]) -> String {
        let iv: [u8; 12] = rand::random();
        let mut out = iv.to_vec();
        // Encryption of an in-memory buffer cannot fail with a valid key.
        out.extend(self.cipher(nonce).encrypt(Nonce::from_slice(&iv), plain).unwrap_or_default());
        B64.encode(out)
    }

    pub fn open(&self, nonce: &str, sealed: &str) -> Result<Vec<u8>, AuthError> {
        let bytes = B64.decode(sealed).map_err(|_| AuthError::BadSeal)?;
        if bytes.len() < 12 {
            return Err(AuthError::BadSeal);
        }
        let (iv, ct) = bytes.split_at(12);
        self.cipher(nonce).decrypt(Nonce::from_slice(iv), ct).map_err(|_| AuthError::BadSeal)
    }
}

/// A fresh request nonce: 128 random bits, hex.
pub fn new_nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Remembers the nonces of accepted requests for the freshness window, so
/// each is accepted once. Bounded: entries older than the window go first.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

/// More than a cluster of 1,000 workers sends in two minutes.
const REPLAY_MAX: usize = 200_000;

impl ReplayGuard {
    /// Records `nonce` (timestamp `ts`); false when it was already seen.
    pub fn first_use(&self, nonce: &str, ts: i64, now_ms: i64) -> bool {
        let Ok(mut seen) = self.seen.lock() else { return false };
        if seen.len() >= REPLAY_MAX {
            seen.retain(|_, t| (now_ms - *t).abs() <= MAX_SKEW_MS);
            if seen.len() >= REPLAY_MAX {
                return false;
            }
        }
        seen.insert(nonce.to_owned(), ts).is_none()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn a_signed_request_verifies_once_and_only_unchanged() {
        let key = ClusterKey::new("token");
        let nonce = new_nonce();
        let sig = key.sign_request("POST", "/internal/v1/heartbeat", NOW, &nonce, b"{}");
        let ts = NOW.to_string();
        assert_eq!(key.verify_request("POST", "/internal/v1/heartbeat", &ts, &nonce, &sig, b"{}", NOW + 5), Ok(NOW));
        let bad = |method: &str, path: &str, body: &[u8], now: i64, k: &ClusterKey| {
            k.verify_request(method, path, &ts, &nonce, &sig, body, now).unwrap_err()
        };
        assert_eq!(bad("POST", "/internal/v1/heartbeat", b"{\"x\":1}", NOW, &key), AuthError::BadSignature);
        assert_eq!(bad("POST", "/internal/v1/tasks/1/state", b"{}", NOW, &key), AuthError::BadSignature);
        assert_eq!(bad("GET", "/internal/v1/heartbeat", b"{}", NOW, &key), AuthError::BadSignature);
        assert_eq!(
            bad("POST", "/internal/v1/heartbeat", b"{}", NOW, &ClusterKey::new("other")),
            AuthError::BadSignature
        );
        assert_eq!(bad("POST", "/internal/v1/heartbeat", b"{}", NOW + MAX_SKEW_MS + 1, &key), AuthError::Stale);
        let guard = ReplayGuard::default();
        assert!(guard.first_use(&nonce, NOW, NOW));
        assert!(!guard.first_use(&nonce, NOW, NOW), "a replay");
    }

    #[test]
    fn a_proof_binds_the_nonce_the_status_and_the_body() {
        let key = ClusterKey::new("token");
        let proof = key.prove_response("n1", 200, b"{\"tasks\":[]}");
        key.verify_response("n1", 200, b"{\"tasks\":[]}", &proof).unwrap();
        for (nonce, status, body) in
            [("n2", 200, &b"{\"tasks\":[]}"[..]), ("n1", 500, b"{\"tasks\":[]}"), ("n1", 200, b"{}")]
        {
            assert_eq!(key.verify_response(nonce, status, body, &proof), Err(AuthError::BadProof));
        }
        assert!(ClusterKey::new("other").verify_response("n1", 200, b"{\"tasks\":[]}", &proof).is_err());
    }

    #[test]
    fn sealed_secrets_open_only_for_the_same_nonce_and_token() {
        let key = ClusterKey::new("token");
        let sealed = key.seal("n1", b"source-password");
        assert!(!sealed.contains("source-password"));
        assert_eq!(key.open("n1", &sealed).unwrap(), b"source-password");
        assert_eq!(key.open("n2", &sealed), Err(AuthError::BadSeal));
        assert_eq!(ClusterKey::new("other").open("n1", &sealed), Err(AuthError::BadSeal));
        assert_eq!(key.open("n1", "!!"), Err(AuthError::BadSeal));
    }
}
