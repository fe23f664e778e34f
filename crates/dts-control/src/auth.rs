//! HTTP Basic authentication and roles for every endpoint but `/healthz`.
//!
//! Users come from the config file (argon2id hashes or plain passwords),
//! `DTS_AUTH_USERS`, and the store (users created over the API and the user
//! generated at first start; see [`crate::users`]). Configured users are
//! fixed for the life of the process; stored ones are replaced whenever the
//! store's table changes.
//! Plain passwords are kept only as SHA-256 digests and compared in constant
//! time. Argon2 verification is slow and takes ~19 MiB on purpose, so:
//! a successful check is remembered for a while under a digest of the
//! credentials (dashboards that poll every second do not pay each time), at
//! most [`Policy::argon2_parallel`] checks run at once, and failed logins
//! are throttled per user and per client address (429 with `Retry-After`)
//! before any hashing is done.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
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
/// Bound on throttling entries (users and addresses with recent failures).
const THROTTLE_MAX: usize = 10_000;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read only: list, detail, workers, metrics, dashboard.
    Viewer,
    /// Task and worker actions: submit, alter, stop, start, delete, drain.
    Operator,
    /// Everything, users included.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Self::Admin),
            "operator" => Some(Self::Operator),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
        }
    }
}

/// A configured user.
#[derive(Debug, Clone)]
pub struct UserEntry {
    pub name: String,
    pub credential: Credential,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub enum Credential {
    Plain(Secret),
    /// An argon2 PHC string (`$argon2id$...`).
    Hash(String),
}

/// Who a request comes from, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum UserConfigError {
    #[error(
        "DTS_AUTH_USERS entry {index} must be user:password or user:password:role (role: admin, operator or viewer)"
    )]
    Malformed { index: usize },
    #[error("user {0:?}: password_hash is not an argon2 PHC string: {1}")]
    BadHash(String, String),
    #[error("user {0:?} is configured twice")]
    Duplicate(String),
    #[error("user {0:?}: a user name is 1 to 80 characters without ':' or control characters")]
    BadName(String),
}

/// Parses `user:password[:role],user2:password2[:role]`. A password may
/// contain ':' but not ','; a last `:admin`, `:operator` or `:viewer` is
/// the role (default admin).
pub fn parse_users_env(text: &str) -> Result<Vec<UserEntry>, UserConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, entry)| {
            let (rest, role) = match entry.rsplit_once(':') {
                Some((rest, last)) if rest.contains(':') => match Role::parse(last) {
                    Some(role) => (rest, role),
                    None => (entry, Role::Admin),
                },
                _ => (entry, Role::Admin),
            };
            match rest.split_once(':') {
                Some((name, pw)) if !name.is_empty() && !pw.is_empty() => {
                    check_name(name)?;
                    Ok(UserEntry { name: name.to_owned(), credential: Credential::Plain(Secret::new(pw)), role })
                }
                _ => Err(UserConfigError::Malformed { index: i + 1 }),
            }
        })
        .collect()
}

/// A user name that can be sent in Basic credentials and logged as is.
pub fn check_name(name: &str) -> Result<(), UserConfigError> {
    let n = name.chars().count();
    if n == 0 || n > 80 || name.contains(':') || name.chars().any(char::is_control) {
        return Err(UserConfigError::BadName(name.chars().take(80).collect()));
    }
    Ok(())
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

#[derive(Clone)]
enum Verifier {
    Digest([u8; 32]),
    Argon2(String),
}

/// Limits on password checking.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failed logins allowed per user name, and per client address, in one window.
    pub failures_per_window: u32,
    pub window: Duration,
    /// Argon2 verifications running at once (each takes ~19 MiB).
    pub argon2_parallel: usize,
    /// How long a request waits for an argon2 slot before a 429.
    pub argon2_wait: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            failures_per_window: 10,
            window: Duration::from_secs(60),
            argon2_parallel: 2,
            argon2_wait: Duration::from_secs(5),
        }
    }
}

/// Checks `Authorization` headers against the known users.
pub struct Authenticator {
    /// From the config file and `DTS_AUTH_USERS`; they win over stored ones.
    users: HashMap<String, (Verifier, Role)>,
    /// From the store, replaced as a whole by [`Authenticator::set_stored`].
    stored: RwLock<HashMap<String, (Verifier, Role)>>,
    /// Digest of recently verified argon2 credentials -> when verified.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// Recent failures per `user:NAME` / `addr:IP`: (count, window start).
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    argon2_slots: tokio::sync::Semaphore,
    policy: Policy,
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
        Self::with_policy(users, Policy::default())
    }

    pub fn with_policy(users: Vec<UserEntry>, policy: Policy) -> Result<Self, UserConfigError> {
        let mut map = HashMap::new();
        for u in users {
            let verifier = match u.credential {
                Credential::Plain(pw) => Verifier::Digest(sha256(&[pw.expose().as_bytes()])),
                Credential::Hash(phc) => {
                    PasswordHash::new(&phc).map_err(|e| UserConfigError::BadHash(u.name.clone(), e.to_string()))?;
                    Verifier::Argon2(phc)
                }
            };
            if map.insert(u.name.clone(), (verifier, u.role)).is_some() {
                return Err(UserConfigError::Duplicate(u.name));
            }
        }
        Ok(Self {
            users: map,
            stored: RwLock::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            argon2_slots: tokio::sync::Semaphore::new(policy.argon2_parallel.max(1)),
            policy,
        })
    }

    /// Users configured in the file or `DTS_AUTH_USERS`, with their roles.
    pub fn configured(&self) -> Vec<(String, Role)> {
        let mut v: Vec<_> = self.users.iter().map(|(n, (_, r))| (n.clone(), *r)).collect();
        v.sort();
        v
    }

    /// Replaces the users read from the store (argon2 hashes only). A
    /// stored user with the name of a configured one is ignored.
    pub fn set_stored(&self, users: Vec<(String, String, Role)>) {
        let map = users
            .into_iter()
            .filter(|(name, _, _)| !self.users.contains_key(name))
            .map(|(name, phc, role)| (name, (Verifier::Argon2(phc), role)))
            .collect();
        if let Ok(mut stored) = self.stored.write() {
            *stored = map;
        }
    }

    /// How many users can log in now.
    pub fn user_count(&self) -> usize {
        self.users.len() + self.stored.read().map_or(0, |s| s.len())
    }

    fn lookup(&self, name: &str) -> Option<(Verifier, Role)> {
        if let Some(found) = self.users.get(name) {
            return Some(found.clone());
        }
        self.stored.read().ok()?.get(name).cloned()
    }

    /// An argon2id hash of `password`, computed on a blocking thread within
    /// the same bound as verifications.
    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let busy = || ApiError::too_many("too many password checks at once; retry shortly", 1);
        let _slot = tokio::time::timeout(self.policy.argon2_wait, self.argon2_slots.acquire())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("password hashing stopped: {e}")))?
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot hash the password: {e}")))
    }

    /// Verifies an `Authorization` header value from `client`.
    pub async fn check(&self, header: Option<&str>, client: Option<IpAddr>) -> Result<Identity, ApiError> {
        let denied = |why: &str| ApiError::new(ErrorCode::Unauthorized, why.to_owned());
        let Some(value) = header else {
            return Err(denied("authentication required: send HTTP Basic credentials (Authorization: Basic ...)"));
        };
        // The scheme is case-insensitive (RFC 7235).
        let (scheme, encoded) = value.trim().split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(denied("only HTTP Basic authentication is supported"));
        }
        let decoded = B64.decode(encoded.trim()).map_err(|_| denied("malformed Basic credentials"))?;
        let text = String::from_utf8(decoded).map_err(|_| denied("malformed Basic credentials"))?;
        let Some((name, password)) = text.split_once(':') else {
            return Err(denied("malformed Basic credentials"));
        };
        let keys = [format!("user:{name}"), client.map_or_else(String::new, |ip| format!("addr:{ip}"))];
        self.throttled(&keys)?;
        let user = self.lookup(name);
        let ok = match &user {
            Some((Verifier::Digest(want), _)) => bool::from(sha256(&[password.as_bytes()]).ct_eq(want)),
            Some((Verifier::Argon2(phc), _)) => self.verify_argon2(name, password, phc).await?,
            None => {
                // Same work as a known plain user, so timing does not reveal which names exist.
                let _ = sha256(&[password.as_bytes()]).ct_eq(&[0u8; 32]);
                false
            }
        };
        match (ok, user) {
            (true, Some((_, role))) => Ok(Identity { name: name.to_owned(), role }),
            _ => {
                self.failed(&keys);
                Err(denied("wrong user name or password"))
            }
        }
    }

    async fn verify_argon2(&self, name: &str, password: &str, phc: &str) -> Result<bool, ApiError> {
        let key = sha256(&[name.as_bytes(), password.as_bytes(), phc.as_bytes()]);
        if self.recently_verified(&key) {
            return Ok(true);
        }
        let busy = || ApiError::too_many("too many password checks at once; retry shortly", 1);
        let _slot = tokio::time::timeout(self.policy.argon2_wait, self.argon2_slots.acquire())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let (phc, password) = (phc.to_owned(), password.to_owned());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc)
                .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if ok {
            self.remember(key);
        }
        Ok(ok)
    }

    /// A 429 when any of `keys` has used up its failures in this window.
    fn throttled(&self, keys: &[String]) -> Result<(), ApiError> {
        let Ok(map) = self.failures.lock() else { return Ok(()) };
        for key in keys.iter().filter(|k| !k.is_empty()) {
            if let Some((count, since)) = map.get(key) {
                let left = self.policy.window.saturating_sub(since.elapsed());
                if *count >= self.policy.failures_per_window && !left.is_zero() {
                    let what = if key.starts_with("user:") { "this user" } else { "this address" };
                    return Err(ApiError::too_many(
                        format!("too many failed logins for {what}; retry after {} s", left.as_secs().max(1)),
                        left.as_secs() + 1,
                    ));
                }
            }
        }
        Ok(())
    }

    fn failed(&self, keys: &[String]) {
        let Ok(mut map) = self.failures.lock() else { return };
        let window = self.policy.window;
        if map.len() >= THROTTLE_MAX {
            map.retain(|_, (_, since)| since.elapsed() < window);
            if map.len() >= THROTTLE_MAX {
                map.clear();
            }
        }
        for key in keys.iter().filter(|k| !k.is_empty()) {
            let entry = map.entry(key.clone()).or_insert((0, Instant::now()));
            if entry.1.elapsed() >= window {
                *entry = (0, Instant::now());
            }
            entry.0 += 1;
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

    async fn name_of(auth: &Authenticator, header: &str) -> String {
        auth.check(Some(header), None).await.unwrap().name
    }

    #[tokio::test]
    async fn plain_and_hashed_users_authenticate() {
        let mut users = parse_users_env("replicator:dtsfor3.1415926, ops:a:b:c").unwrap();
        users.push(UserEntry {
            name: "hashed".into(),
            credential: Credential::Hash(hash_password("s3cret").unwrap()),
            role: Role::Admin,
        });
        let auth = Authenticator::new(users).unwrap();
        // The seed's own header, and the scheme in any case (RFC 7235).
        assert_eq!(name_of(&auth, "Basic cmVwbGljYXRvcjpkdHNmb3IzLjE0MTU5MjY=").await, "replicator");
        assert_eq!(name_of(&auth, "BASIC cmVwbGljYXRvcjpkdHNmb3IzLjE0MTU5MjY=").await, "replicator");
        assert_eq!(name_of(&auth, "bAsIc cmVwbGljYXRvcjpkdHNmb3IzLjE0MTU5MjY=").await, "replicator");
        assert_eq!(name_of(&auth, &basic("ops", "a:b:c")).await, "ops");
        assert_eq!(name_of(&auth, &basic("hashed", "s3cret")).await, "hashed");
        assert_eq!(name_of(&auth, &basic("hashed", "s3cret")).await, "hashed", "cached path");
        for header in [
            None,
            Some("Bearer abc".to_owned()),
            Some("Basic !!!".to_owned()),
            Some("Basicabc".to_owned()),
            Some(basic("replicator", "wrong")),
            Some(basic("hashed", "wrong")),
            Some(basic("nobody", "x")),
            Some(format!("Basic {}", B64.encode("no-colon"))),
        ] {
            let err = auth.check(header.as_deref(), None).await.unwrap_err();
            assert_eq!(err.code, ErrorCode::Unauthorized, "{header:?}");
        }
    }

    #[tokio::test]
    async fn roles_come_from_the_entry_and_default_to_admin() {
        let users = parse_users_env("a:pw, v:pw:viewer, o:p:w:operator, x:pw:unknown").unwrap();
        let roles: Vec<(&str, Role)> = users.iter().map(|u| (u.name.as_str(), u.role)).collect();
        assert_eq!(
            roles,
            [("a", Role::Admin), ("v", Role::Viewer), ("o", Role::Operator), ("x", Role::Admin)],
            "an unknown last part is part of the password"
        );
        let auth = Authenticator::new(users).unwrap();
        assert_eq!(auth.check(Some(&basic("v", "pw")), None).await.unwrap().role, Role::Viewer);
        assert_eq!(auth.check(Some(&basic("o", "p:w")), None).await.unwrap().role, Role::Operator);
        assert_eq!(auth.check(Some(&basic("x", "pw:unknown")), None).await.unwrap().role, Role::Admin);
    }

    #[tokio::test]
    async fn failed_logins_are_throttled_per_user_and_per_address() {
        let policy = Policy { failures_per_window: 3, window: Duration::from_secs(60), ..Policy::default() };
        let auth = Authenticator::with_policy(parse_users_env("a:pw,b:pw").unwrap(), policy).unwrap();
        let here: IpAddr = "10.0.0.1".parse().unwrap();
        let there: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            let e = auth.check(Some(&basic("a", "bad")), Some(here)).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthorized);
        }
        // User `a` is locked from every address, even with the right password...
        for ip in [here, there] {
            let e = auth.check(Some(&basic("a", "pw")), Some(ip)).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::TooManyRequests);
            assert!(e.retry_after.is_some_and(|s| (1..=61).contains(&s)), "{e:?}");
        }
        // ... and the address is locked for every user; others are not.
        let e = auth.check(Some(&basic("b", "pw")), Some(here)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::TooManyRequests);
        assert_eq!(auth.check(Some(&basic("b", "pw")), Some(there)).await.unwrap().name, "b");
    }

    #[tokio::test]
    async fn argon2_checks_are_bounded() {
        let policy = Policy { argon2_parallel: 1, argon2_wait: Duration::from_millis(1), ..Policy::default() };
        let users = vec![UserEntry {
            name: "h".into(),
            credential: Credential::Hash(hash_password("pw").unwrap()),
            role: Role::Admin,
        }];
        let auth = std::sync::Arc::new(Authenticator::with_policy(users, policy).unwrap());
        let attempts: Vec<_> = (0..8)
            .map(|i| {
                let auth = std::sync::Arc::clone(&auth);
                tokio::spawn(async move { auth.check(Some(&basic("h", &format!("bad{i}"))), None).await })
            })
            .collect();
        let mut codes = Vec::new();
        for a in attempts {
            codes.push(a.await.unwrap().unwrap_err().code);
        }
        assert!(codes.contains(&ErrorCode::TooManyRequests), "{codes:?}");
        assert!(codes.contains(&ErrorCode::Unauthorized), "{codes:?}");
    }

    #[test]
    fn user_config_errors_are_reported() {
        assert!(matches!(parse_users_env("nopassword"), Err(UserConfigError::Malformed { index: 1 })));
        assert!(matches!(parse_users_env("a:1,:2"), Err(UserConfigError::Malformed { index: 2 })));
        assert!(matches!(parse_users_env("a\nforged:1"), Err(UserConfigError::BadName(_))));
        let dup = parse_users_env("a:1,a:2").unwrap();
        assert!(matches!(Authenticator::new(dup), Err(UserConfigError::Duplicate(_))));
        let bad_hash =
            vec![UserEntry { name: "x".into(), credential: Credential::Hash("plain".into()), role: Role::Admin }];
        assert!(matches!(Authenticator::new(bad_hash), Err(UserConfigError::BadHash(..))));
        assert_eq!(generate_password().len(), 24);
    }
}
