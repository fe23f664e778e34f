//! Huawei Cloud's AK/SK request signing (`SDK-HMAC-SHA256`), as the
//! official SDKs compute it, verified on the server side.
//!
//! `Authorization: SDK-HMAC-SHA256 Access=AK, SignedHeaders=h1;h2, Signature=HEX`
//! with `X-Sdk-Date: YYYYMMDDTHHMMSSZ`. The signature is the HMAC-SHA256,
//! under the secret key, of `SDK-HMAC-SHA256\n{date}\n{hex sha256 of the
//! canonical request}`; the canonical request is the method, the URI (each
//! segment percent-encoded, with a trailing `/`), the sorted query, the
//! signed headers as `name:value` lines, their names, and the hex SHA-256
//! of the body.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// How far `X-Sdk-Date` may be from this node's clock.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Everything but the unreserved characters (`A-Z a-z 0-9 - _ . ~`).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The parts of an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why a signed request was refused. The messages never include a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the Authorization header is not SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...")]
    Malformed,
    #[error("X-Sdk-Date is missing or not YYYYMMDDTHHMMSSZ")]
    BadDate,
    #[error("X-Sdk-Date is more than 15 minutes from the server's time")]
    Expired,
    #[error("signed header {0} is not in the request")]
    MissingHeader(String),
    #[error("x-sdk-date must be among the signed headers")]
    DateNotSigned,
    #[error("unsigned payloads are not accepted")]
    UnsignedPayload,
    #[error("the signature does not match")]
    Mismatch,
    #[error("this signed request was already used")]
    Replayed,
}

pub fn parse_authorization(value: &str) -> Result<Authorization, SignError> {
    let rest = value.trim().strip_prefix(ALGORITHM).ok_or(SignError::Malformed)?;
    let (mut access, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(SignError::Malformed)?;
        match k.trim() {
            "Access" => access = Some(v.trim().to_owned()),
            "SignedHeaders" => signed = Some(v.trim().to_owned()),
            "Signature" => signature = Some(v.trim().to_owned()),
            _ => return Err(SignError::Malformed),
        }
    }
    let (Some(access), Some(signed), Some(signature)) = (access, signed, signature) else {
        return Err(SignError::Malformed);
    };
    if access.is_empty() || signed.is_empty() || signature.len() != 64 {
        return Err(SignError::Malformed);
    }
    let signed_headers: Vec<String> = signed.split(';').map(|h| h.trim().to_ascii_lowercase()).collect();
    Ok(Authorization { access, signed_headers, signature: signature.to_ascii_lowercase() })
}

/// `X-Sdk-Date` as Unix seconds.
pub fn parse_date(value: &str) -> Result<i64, SignError> {
    chrono::NaiveDateTime::parse_from_str(value.trim(), "%Y%m%dT%H%M%SZ")
        .map(|t| t.and_utc().timestamp())
        .map_err(|_| SignError::BadDate)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// The canonical URI: each segment decoded then encoded, ending in `/`.
pub fn canonical_uri(path: &str) -> String {
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    let mut uri: String = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// The canonical query: pairs decoded, sorted, encoded, joined with `&`.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (d(k), d(v))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// A request as the verifier needs it.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// Header lookup by lowercase name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    pub body: &'a [u8],
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("method", &self.method).field("path", &self.path).finish_non_exhaustive()
    }
}

/// The string the client signed.
pub fn string_to_sign(req: &Request<'_>, auth: &Authorization, date: &str) -> Result<String, SignError> {
    let mut headers = String::new();
    for name in &auth.signed_headers {
        let value = (req.header)(name).ok_or_else(|| SignError::MissingHeader(name.clone()))?;
        headers.push_str(name);
        headers.push(':');
        headers.push_str(value.trim());
        headers.push('\n');
    }
    let body_hash = sha256_hex(req.body);
    if let Some(claimed) = (req.header)("x-sdk-content-sha256") {
        if claimed.eq_ignore_ascii_case("UNSIGNED-PAYLOAD") {
            return Err(SignError::UnsignedPayload);
        }
        if !claimed.eq_ignore_ascii_case(&body_hash) {
            return Err(SignError::Mismatch);
        }
    }
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        canonical_uri(req.path),
        canonical_query(req.query),
        headers,
        auth.signed_headers.join(";"),
        body_hash
    );
    Ok(format!("{ALGORITHM}\n{date}\n{}", sha256_hex(canonical.as_bytes())))
}

/// The signature of `string_to_sign` under `secret`.
pub fn sign(secret: &str, string_to_sign: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(string_to_sign.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Checks the date window and the signature (not replays: see [`Replays`]).
pub fn verify(req: &Request<'_>, auth: &Authorization, secret: &str, now_secs: i64) -> Result<(), SignError> {
    if !auth.signed_headers.iter().any(|h| h == "x-sdk-date") {
        return Err(SignError::DateNotSigned);
    }
    let date = (req.header)("x-sdk-date").ok_or(SignError::BadDate)?;
    let at = parse_date(&date)?;
    if (now_secs - at).unsigned_abs() > WINDOW.as_secs() {
        return Err(SignError::Expired);
    }
    let expected = sign(secret, &string_to_sign(req, auth, date.trim())?);
    if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(())
    } else {
        Err(SignError::Mismatch)
    }
}

/// Signatures seen within the window: a signed request is accepted once.
#[derive(Debug, Default)]
pub struct Replays {
    seen: Mutex<HashMap<String, Instant>>,
}

/// Bound on remembered signatures; past it the oldest half is dropped.
const REPLAYS_MAX: usize = 1_000_000;

impl Replays {
    /// False when `signature` was already used within the window.
    pub fn first_use(&self, signature: &str) -> bool {
        let Ok(mut seen) = self.seen.lock() else { return true };
        if seen.len() >= REPLAYS_MAX {
            // Twice the window: a date that old is refused anyway.
            seen.retain(|_, at| at.elapsed() < WINDOW * 2);
        }
        if seen.len() >= REPLAYS_MAX {
            seen.clear();
        }
        match seen.get(signature) {
            Some(at) if at.elapsed() < WINDOW * 2 => false,
            _ => {
                seen.insert(signature.to_owned(), Instant::now());
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn headers(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            list.iter().map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned())).collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn uris_and_queries_are_canonical() {
        assert_eq!(canonical_uri("/v2/p1/records"), "/v2/p1/records/");
        assert_eq!(canonical_uri("/v2/a%20b/records/"), "/v2/a%20b/records/");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("k=a b"), "k=a%20b");
        assert_eq!(canonical_query(""), "");
    }

    #[test]
    fn a_signature_made_like_the_sdk_verifies_and_nothing_else_does() {
        let h = headers(&[
            ("Host", "127.0.0.1:8080"),
            ("X-Sdk-Date", "20261122T010203Z"),
            ("Content-Type", "application/json"),
            ("X-Project-Id", "p1"),
        ]);
        let body = br#"{"stream_name":"s","records":[{"data":"ZGF0YQ=="}]}"#;
        let req = Request { method: "POST", path: "/v2/p1/records", query: "", header: &h, body };
        let mut auth = Authorization {
            access: "AK".into(),
            signed_headers: vec!["content-type".into(), "host".into(), "x-project-id".into(), "x-sdk-date".into()],
            signature: String::new(),
        };
        auth.signature = sign("SK", &string_to_sign(&req, &auth, "20261122T010203Z").unwrap());
        let now = parse_date("20261122T010203Z").unwrap();
        assert_eq!(verify(&req, &auth, "SK", now), Ok(()));
        assert_eq!(verify(&req, &auth, "SK2", now), Err(SignError::Mismatch));
        assert_eq!(verify(&req, &auth, "SK", now + 16 * 60), Err(SignError::Expired));
        let other = Request { body: b"{}", ..req };
        assert_eq!(verify(&other, &auth, "SK", now), Err(SignError::Mismatch));
        let header = format!(
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=content-type;host;x-project-id;x-sdk-date, Signature={}",
            auth.signature
        );
        assert_eq!(parse_authorization(&header).unwrap(), auth);
        let replays = Replays::default();
        assert!(replays.first_use(&auth.signature));
        assert!(!replays.first_use(&auth.signature));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn any_authorization_header_parses_or_is_refused(s in ".{0,200}") {
            let _ = parse_authorization(&s);
            let _ = parse_date(&s);
            let _ = canonical_uri(&s);
            let _ = canonical_query(&s);
        }
    }
}
