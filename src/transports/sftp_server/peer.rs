//! How a client's address appears in the log: never in clear (an IP address is personal data), but as a short
//! pseudonym, the same for one address while the daemon runs, so that the lines of one flood or one customer can
//! still be followed. The key is random per process.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;

/// A source address, displayed as its pseudonym (`peer-1a2b3c4d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);

fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key()).map_err(|_| fmt::Error)?;
        match self.0 {
            IpAddr::V4(a) => mac.update(&a.octets()),
            IpAddr::V6(a) => mac.update(&a.octets()),
        }
        let digest = mac.finalize().into_bytes();
        write!(f, "peer-")?;
        for b in &digest[..4] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_shown_as_a_stable_pseudonym_never_in_clear() {
        let a = Peer("192.0.2.7".parse().expect("ip"));
        let shown = a.to_string();
        assert!(shown.starts_with("peer-") && shown.len() == 13, "{shown}");
        assert!(!shown.contains("192.0.2.7"));
        assert_eq!(shown, a.to_string());
        assert_ne!(shown, Peer("192.0.2.8".parse().expect("ip")).to_string());
    }
}
