//! Encryption at rest for source passwords: AES-256-GCM with a random nonce
//! per value. The key comes from config or a key file that only the service
//! user can read; it never enters the store.

use std::fmt;
use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// Versioned so the format can change without guessing what old rows hold.
const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the secret key must be {KEY_LEN} bytes, base64-encoded (e.g. `openssl rand -base64 32`); got {0} bytes")]
    WrongLength(usize),
    #[error("the secret key is not valid base64: {0}")]
    NotBase64(String),
    #[error("cannot use key file {path}: {reason}")]
    File { path: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("a stored secret cannot be decrypted with this key (was the store created with another secret key?)")]
    Decrypt,
    #[error("a secret could not be encrypted")]
    Encrypt,
}

/// The key, ready to seal and open values. `Debug` never shows it.
#[derive(Clone)]
pub struct SecretCipher {
    aead: Aes256Gcm,
}

impl fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretCipher(<redacted>)")
    }
}

impl SecretCipher {
    pub fn from_key(key: &[u8]) -> Result<Self, KeyError> {
        if key.len() != KEY_LEN {
            return Err(KeyError::WrongLength(key.len()));
        }
        Ok(Self { aead: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)) })
    }

    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let key = B64.decode(text.trim()).map_err(|e| KeyError::NotBase64(e.to_string()))?;
        Self::from_key(&key)
    }

    /// A fresh random key, base64-encoded.
    pub fn generate_key_base64() -> String {
        let key: [u8; KEY_LEN] = rand::random();
        B64.encode(key)
    }

    /// Reads the key file, creating it (mode 0600) with a random key when it
    /// does not exist yet: the embedded store needs no setup.
    pub fn load_or_create_file(path: &Path) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::File { path: path.display().to_string(), reason };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                let key = Self::generate_key_base64();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                match opts.open(path) {
                    Ok(mut file) => {
                        file.write_all(key.as_bytes()).map_err(|e| err(e.to_string()))?;
                        file.sync_all().map_err(|e| err(e.to_string()))?;
                        Self::from_base64(&key)
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
                        Self::from_base64(&text)
                    }
                    Err(e) => Err(err(e.to_string())),
                }
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Seals `plain`; `purpose` is bound as associated data so a value cannot
    /// be moved to another field and still decrypt.
    pub fn seal(&self, purpose: &str, plain: &str) -> Result<String, CryptoError> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload { msg: plain.as_bytes(), aad: purpose.as_bytes() };
        let sealed = self.aead.encrypt(Nonce::from_slice(&nonce), payload).map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", B64.encode(out)))
    }

    pub fn open(&self, purpose: &str, sealed: &str) -> Result<String, CryptoError> {
        let raw = sealed.strip_prefix(PREFIX).ok_or(CryptoError::Decrypt)?;
        let bytes = B64.decode(raw).map_err(|_| CryptoError::Decrypt)?;
        if bytes.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let plain = self
            .aead
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: purpose.as_bytes() })
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let c = SecretCipher::from_base64(&SecretCipher::generate_key_base64()).unwrap();
        let sealed = c.seal("source_password", "p@ss").unwrap();
        assert!(!sealed.contains("p@ss"));
        assert_ne!(sealed, c.seal("source_password", "p@ss").unwrap(), "nonces differ");
        assert_eq!(c.open("source_password", &sealed).unwrap(), "p@ss");
        assert!(c.open("other_purpose", &sealed).is_err());
        let other = SecretCipher::from_base64(&SecretCipher::generate_key_base64()).unwrap();
        assert!(other.open("source_password", &sealed).is_err());
        assert!(c.open("source_password", "v1:AAAA").is_err());
        assert!(format!("{c:?}").contains("redacted"));
    }

    #[test]
    fn keys_are_checked_and_key_files_are_private() {
        assert!(matches!(SecretCipher::from_base64("c2hvcnQ="), Err(KeyError::WrongLength(5))));
        assert!(matches!(SecretCipher::from_base64("!!!"), Err(KeyError::NotBase64(_))));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secret.key");
        let first = SecretCipher::load_or_create_file(&path).unwrap();
        let again = SecretCipher::load_or_create_file(&path).unwrap();
        assert_eq!(again.open("x", &first.seal("x", "same key").unwrap()).unwrap(), "same key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
