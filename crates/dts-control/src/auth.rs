//! HTTP Basic authentication for every endpoint but `/healthz`.
//!
//! Users come from the config file (argon2id hashes or plain passwords),
//! `DTS_AUTH_USERS`, and the store (the user generated at first start).
//! Plain passwords are kept only as SHA-256 digests and compared in constant
//! time. Argon2 verification is slow on purpose, so a successful check is
//! remembered for a while under a digest of the credentials: dashboards that
//! poll every second do not pay for argon2 each time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dts_core::spec::Secret;
use dts_core::ErrorCode;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::envelope::ApiError;

/// How long a verified argon2 credential is remembered.
const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// Bound on remembered credentials, so random valid-looking logins cannot grow memory.
const VERIFIED_MAX: usize = 1024;

/// A configured user.
#[derive(Debug, Clone)]
pub struct UserEntry {
    pub name: String,
    pub credential: Credential,
}

#[derive(Debug, Clone)]
pub enum Credential {
    Plain(Secret),
    /// An argon2 PHC string (`$argon2id$...`).
    Hash(String),
}

#[derive(Debug, thiserror::Error)]
pub enum UserConfigError {
    #[error("DTS_AUTH_USERS entry {index} must be user:password")]
    Malformed { index: usize },
    #[error("user {0:?}: password_hash is not an argon2 PHC string: {1}")]
    BadHash(String, String),
    #[error("user {0:?} is configured twice")]
    Duplicate(String),
}

/// Parses `user:password,user2:password2`. A password may contain ':' but not ','.
pub fn parse_users_env(text: &str) -> Result<Vec<UserEntry>, UserConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, entry)| match entry.split_once(':') {
            Some((name, pw)) if !name.is_empty() && !pw.is_empty() => {
                Ok(UserEntry { name: name.to_owned(), credential: Credential::Plain(Secret::new(pw)) })
            }
            _ => Err(UserConfigError::Malformed { index: i + 1 }),
        })
        .collect()
}

/// An argon2id hash of `password`, for the config file and the stored user.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// A random password for the generated first-start user.
pub fn generate_password() -> String {
    use rand::Rng;
    rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(24).map(char::from).collect()
}

enum Verifier {
    Digest([u8; 32]),
    Argon2(String),
}

/// Checks `Authorization` headers against the known users.
pub struct Authenticator {
    users: HashMap<String, Verifier>,
    /// Digest of recently verified argon2 credentials -> when verified.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("users", &self.users.keys().collect::<Vec<_>>()).finish()
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

impl Authenticator {
    pub fn new(users: Vec<UserEntry>) -> Result<Self, UserConfigError> {
        let mut map = HashMap::new();
        for u in users {
            let verifier = match u.credential {
                Credential::Plain(pw) => Verifier::Digest(sha256(&[pw.expose().as_bytes()])),
                Credential::Hash(phc) => {
                    PasswordHash::new(&phc).map_err(|e| UserConfigError::BadHash(u.name.clone(), e.to_string()))?;
                    Verifier::Argon2(phc)
                }
            };
            if map.insert(u.name.clone(), verifier).is_some() {
                return Err(UserConfigError::Duplicate(u.name));
            }
        }
        Ok(Self { users: map, verified: Mutex::new(HashMap::new()) })
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Verifies an `Authorization` header value; Ok with the user name.
    pub async fn check(&self, header: Option<&str>) -> Result<String, ApiError> {
        let denied = |why: &str| ApiError::new(ErrorCode::Unauthorized, why.to_owned());
        let Some(value) = header else {
            return Err(denied("authentication required: send HTTP Basic credentials (Authorization: Basic ...)"));
        };
        let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
            return Err(denied("only HTTP Basic authentication is supported"));
        };
        let decoded = B64.decode(encoded.trim()).map_err(|_| denied("malformed Basic credentials"))?;
        let text = String::from_utf8(decoded).map_err(|_| denied("malformed Basic credentials"))?;
        let Some((name, password)) = text.split_once(':') else {
            return Err(denied("malformed Basic credentials"));
        };
        let bad = || denied("wrong user name or password");
        match self.users.get(name) {
            Some(Verifier::Digest(want)) => {
                let got = sha256(&[password.as_bytes()]);
                if bool::from(got.ct_eq(want)) {
                    Ok(name.to_owned())
                } else {
                    Err(bad())
                }
            }
            Some(Verifier::Argon2(phc)) => {
                let key = sha256(&[name.as_bytes(), password.as_bytes(), phc.as_bytes()]);
                if self.recently_verified(&key) {
                    return Ok(name.to_owned());
                }
                let (phc, password) = (phc.clone(), password.to_owned());
                let ok = tokio::task::spawn_blocking(move || {
                    PasswordHash::new(&phc)
                        .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
                        .unwrap_or(false)
                })
                .await
                .unwrap_or(false);
                if ok {
                    self.remember(key);
                    Ok(name.to_owned())
                } else {
                    Err(bad())
                }
            }
            None => {
                // Same work as a known user, so timing does not reveal which names exist.
                let _ = sha256(&[password.as_bytes()]).ct_eq(&[0u8; 32]);
                Err(bad())
            }
        }
    }

    fn recently_verified(&self, key: &[u8; 32]) -> bool {
        let Ok(map) = self.verified.lock() else { return false };
        map.get(key).is_some_and(|at| at.elapsed() < VERIFIED_TTL)
    }

    fn remember(&self, key: [u8; 32]) {
        let Ok(mut map) = self.verified.lock() else { return };
        if map.len() >= VERIFIED_MAX {
            map.retain(|_, at| at.elapsed() < VERIFIED_TTL);
            if map.len() >= VERIFIED_MAX {
                map.clear();
            }
        }
        map.insert(key, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn basic(user: &str, pw: &str) -> String {
        format!("Basic {}", B64.encode(format!("{user}:{pw}")))
    }

    #[tokio::test]
    async fn plain_and_hashed_users_authenticate() {
        let mut users = parse_users_env("replicator:dtsfor3.1415926, ops:a:b:c").unwrap();
        users.push(UserEntry { name: "hashed".into(), credential: Credential::Hash(hash_password("s3cret").unwrap()) });
        let auth = Authenticator::new(users).unwrap();
        // The seed's own header.
        assert_eq!(auth.check(Some("Basic cmVwbGljYXRvcjpkdHNmb3IzLjE0MTU5MjY=")).await.unwrap(), "replicator");
        assert_eq!(auth.check(Some(&basic("ops", "a:b:c"))).await.unwrap(), "ops");
        assert_eq!(auth.check(Some(&basic("hashed", "s3cret"))).await.unwrap(), "hashed");
        assert_eq!(auth.check(Some(&basic("hashed", "s3cret"))).await.unwrap(), "hashed", "cached path");
        for header in [
            None,
            Some("Bearer abc".to_owned()),
            Some("Basic !!!".to_owned()),
            Some(basic("replicator", "wrong")),
            Some(basic("hashed", "wrong")),
            Some(basic("nobody", "x")),
            Some(format!("Basic {}", B64.encode("no-colon"))),
        ] {
            let err = auth.check(header.as_deref()).await.unwrap_err();
            assert_eq!(err.code, ErrorCode::Unauthorized, "{header:?}");
        }
    }

    #[test]
    fn user_config_errors_are_reported() {
        assert!(matches!(parse_users_env("nopassword"), Err(UserConfigError::Malformed { index: 1 })));
        assert!(matches!(parse_users_env("a:1,:2"), Err(UserConfigError::Malformed { index: 2 })));
        let dup = parse_users_env("a:1,a:2").unwrap();
        assert!(matches!(Authenticator::new(dup), Err(UserConfigError::Duplicate(_))));
        let bad_hash = vec![UserEntry { name: "x".into(), credential: Credential::Hash("plain".into()) }];
        assert!(matches!(Authenticator::new(bad_hash), Err(UserConfigError::BadHash(..))));
        assert_eq!(generate_password().len(), 24);
    }
}
