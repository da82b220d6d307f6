//! The installation secret and the keyed hash that stands for a device in the audit trail: HMAC-SHA256 of the
//! canonical device, so an auditor holding a device can check whether it was processed, while the trail itself
//! cannot be reversed by enumerating phone numbers.

use crate::requests::{Device, DeviceKind};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::path::Path;

/// The installation's HMAC key, kept in `state_dir/secret.key` (mode 0600).
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Loads the secret, creating it on first start.
    ///
    /// # Errors
    /// The I/O error, or `InvalidData` when the file is not 64 hex digits.
    pub fn load_or_create(state_dir: &Path) -> std::io::Result<Secret> {
        let path = state_dir.join("secret.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                let key: [u8; 32] = bytes.try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "secret.key must hold 32 bytes in hex",
                    )
                })?;
                Ok(Secret(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&path)?;
                file.write_all(hex::encode(key).as_bytes())?;
                file.sync_all()?;
                crate::results::atomic::sync_dir(state_dir)?;
                Ok(Secret(key))
            }
            Err(e) => Err(e),
        }
    }

    /// The keyed hash of a device, hex: over `type:canonical`, with an email address wholly lower-cased, so every
    /// spelling that matches the same records has the same hash (`email:test@test.com`, `phone:+17815551212`).
    pub fn device_hmac(&self, device: &Device) -> String {
        match device.kind() {
            DeviceKind::Email => self.hmac(&format!("email:{}", device.canonical().to_lowercase())),
            kind => self.hmac(&format!("{kind}:{}", device.canonical())),
        }
    }

    /// The keyed hash of any bytes, hex.
    pub fn hmac_bytes(&self, bytes: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(bytes);
        hex::encode(mac.finalize().into_bytes())
    }

    /// The keyed hash of any text, hex.
    pub fn hmac(&self, text: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_persists_and_hash_is_keyed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Secret::load_or_create(dir.path()).expect("create");
        let b = Secret::load_or_create(dir.path()).expect("reload");
        let d = Device::new(DeviceKind::Phone, "+1 781 555 1212").expect("valid");
        assert_eq!(a.device_hmac(&d), b.device_hmac(&d));
        assert!(!a.device_hmac(&d).contains("7815551212"));
        assert_eq!(a.device_hmac(&d), a.hmac("phone:+17815551212"));
        let upper = Device::new(DeviceKind::Email, "Test@Test.com").expect("valid");
        let lower = Device::new(DeviceKind::Email, "test@test.com").expect("valid");
        assert_eq!(
            a.device_hmac(&upper),
            a.device_hmac(&lower),
            "spellings that match alike hash alike"
        );
        assert_eq!(a.device_hmac(&lower), a.hmac("email:test@test.com"));
        let other = tempfile::tempdir().expect("tempdir");
        let c = Secret::load_or_create(other.path()).expect("create");
        assert_ne!(
            a.device_hmac(&d),
            c.device_hmac(&d),
            "another installation, another key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret.key"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
