//! The wait after a failed accept (for example `EMFILE`: no file handle left), shared by every listener so that
//! none spins: doubling from a first delay up to a cap, a warning when failures start (and at most every 10 s while
//! they last), and a line when accepting works again.

use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How often a listener that keeps failing repeats its warning.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// One listener's accept back-off.
pub struct AcceptBackoff {
    listener: &'static str,
    first: Duration,
    max: Duration,
    delay: Duration,
    failures: u64,
    warned: Option<Instant>,
}

impl AcceptBackoff {
    /// A back-off for `listener` (named in the log) that waits `first`, then twice as long each time, up to `max`.
    pub fn new(listener: &'static str, first: Duration, max: Duration) -> AcceptBackoff {
        AcceptBackoff {
            listener,
            first,
            max,
            delay: Duration::ZERO,
            failures: 0,
            warned: None,
        }
    }

    /// Counts a failed accept and returns how long to wait before the next one.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.failures += 1;
        self.delay = (self.delay * 2).clamp(self.first, self.max);
        if self.warned.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
            warn!(listener = self.listener, error = %error, failures = self.failures,
                "accept failed: cannot accept a connection (out of file handles?); backing off");
            self.warned = Some(Instant::now());
        }
        self.delay
    }

    /// Resets after a successful accept, saying so when it ends a run of failures.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            info!(
                listener = self.listener,
                failures = self.failures,
                "accepting connections again"
            );
        }
        self.delay = Duration::ZERO;
        self.failures = 0;
        self.warned = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset_after_a_success() {
        let e = std::io::Error::other("EMFILE");
        let mut b = AcceptBackoff::new("test", Duration::from_millis(50), Duration::from_secs(5));
        let waits: Vec<u128> = (0..9).map(|_| b.failed(&e).as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.succeeded();
        assert_eq!(b.failed(&e), Duration::from_millis(50));
    }
}
