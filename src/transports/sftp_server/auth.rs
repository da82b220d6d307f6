//! Who may log in: each `sftp-server` account's authorised public keys and argon2 password hash, and the
//! throttle (in [`crate::throttle`]) that slows down guessing from one source address.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use russh::keys::PublicKey;

/// An account's credentials.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Keys that may log in.
    pub keys: Vec<PublicKey>,
    /// An argon2 PHC string (`$argon2id$…`), if password login is allowed.
    pub password_hash: Option<String>,
}

impl Credentials {
    /// Whether `key` is one of the account's keys (compared by key data, not comment).
    pub fn has_key(&self, key: &PublicKey) -> bool {
        self.keys.iter().any(|k| k.key_data() == key.key_data())
    }

    /// Whether `password` matches the account's hash. Slow by design (argon2): call off the async threads.
    pub fn password_ok(&self, password: &str) -> bool {
        let Some(hash) = &self.password_hash else {
            return false;
        };
        PasswordHash::new(hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    }
}

/// Reads keys in `authorized_keys` format (one per line; blank lines and `#` comments skipped; options before
/// the key type are not supported).
///
/// # Errors
/// [`KeyLineError`]: the line number and parse error of the first bad line.
pub fn parse_authorized_keys(text: &str) -> Result<Vec<PublicKey>, KeyLineError> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(line, l)| PublicKey::from_openssh(l).map_err(|source| KeyLineError { line, source }))
        .collect()
}

/// A line of an `authorized_keys` text that is not a public key.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {source}")]
pub struct KeyLineError {
    /// The line's number, from 1.
    pub line: usize,
    /// Why it is not a key.
    pub source: russh::keys::ssh_key::Error,
}

/// Makes an argon2id hash of `password` for the config's `password_hash`.
///
/// # Errors
/// The hashing error (none in practice).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
}

/// The throttle of failed logins, shared with the HTTP front doors.
pub use crate::throttle::Throttle;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("demo").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        let c = Credentials {
            keys: vec![],
            password_hash: Some(hash),
        };
        assert!(c.password_ok("demo"));
        assert!(!c.password_ok("Demo"));
        assert!(!Credentials::default().password_ok("demo"));
        let broken = Credentials {
            keys: vec![],
            password_hash: Some("not a hash".into()),
        };
        assert!(!broken.password_ok("not a hash"));
    }

    #[test]
    fn authorized_keys_parse_and_match() {
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDbGMNdkyZ3Xx3PHBBdY8MB4dXlffbgytEGjeYZCfZam demo";
        let keys = parse_authorized_keys(&format!("# demo\n\n{line}\n")).expect("keys");
        assert_eq!(keys.len(), 1);
        let c = Credentials {
            keys: keys.clone(),
            password_hash: None,
        };
        let same_other_comment =
            PublicKey::from_openssh(&line.replace(" demo", " x")).expect("key");
        assert!(c.has_key(&same_other_comment));
        assert!(parse_authorized_keys("ssh-ed25519 garbage")
            .unwrap_err()
            .to_string()
            .starts_with("line 1:"));
    }
}
