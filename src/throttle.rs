//! The throttle of failed logins, shared by the SFTP server (keyed by source address) and the HTTP front doors
//! (keyed by client address, by bearer token and by the account a request names).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Counts failed logins per key (by default a source address); past the limit, that key is refused until the
/// window passes.
#[derive(Debug)]
pub struct Throttle<K = IpAddr> {
    limit: u32,
    window: Duration,
    failures: HashMap<K, (u32, Instant)>,
}

impl<K: Hash + Eq> Throttle<K> {
    /// `limit` failures within `window` block a key for the rest of the window.
    pub fn new(limit: u32, window: Duration) -> Throttle<K> {
        Throttle {
            limit,
            window,
            failures: HashMap::new(),
        }
    }

    /// Takes up new settings (a reloaded config); the failures counted so far stay.
    pub fn set_limits(&mut self, limit: u32, window: Duration) {
        self.limit = limit;
        self.window = window;
    }

    /// Whether `key` is blocked now.
    pub fn blocked(&mut self, key: K, now: Instant) -> bool {
        match self.failures.get(&key) {
            Some((n, since)) if now.duration_since(*since) < self.window => *n >= self.limit,
            Some(_) => {
                self.failures.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Records a failed login for `key`.
    pub fn failed(&mut self, key: K, now: Instant) {
        let window = self.window;
        let entry = self.failures.entry(key).or_insert((0, now));
        if now.duration_since(entry.1) >= window {
            *entry = (0, now);
        }
        entry.0 += 1;
        if self.failures.len() > 100_000 {
            self.failures
                .retain(|_, (_, since)| now.duration_since(*since) < window);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_blocks_after_the_limit_until_the_window_passes() {
        let mut t = Throttle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let now = Instant::now();
        for _ in 0..3 {
            assert!(!t.blocked(ip, now));
            t.failed(ip, now);
        }
        assert!(t.blocked(ip, now));
        assert!(!t.blocked("127.0.0.2".parse().expect("ip"), now));
        assert!(!t.blocked(ip, now + Duration::from_secs(61)));
    }
}
