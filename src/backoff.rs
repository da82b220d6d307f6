//! Waiting before trying again, one way for all of gdprd: a [`Backoff`] doubles from a first delay up to a cap
//! (with random jitter where many clients may retry at once against one server), and every wait ends early when
//! the daemon stops ([`sleep`] in async code, [`sleep_blocking`] on a worker thread). Used by the listeners'
//! accept loops ([`AcceptBackoff`]), the remote SFTP links' reconnects and the callback store's retries.
//!
//! [`AcceptBackoff`] is the wait after a failed accept (for example `EMFILE`: no file handle left), so that no
//! listener spins: a warning when failures start (and at most every 10 s while they last), and a line when
//! accepting works again.

use rand::Rng;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A capped exponential back-off: `first`, then twice as long each time, up to `max`; with jitter, each wait
/// is lengthened by a random part of up to half of it.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    jitter: bool,
    delay: Duration,
}

impl Backoff {
    /// A back-off that waits `first`, then twice as long each time, up to `max`.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max: max.max(first),
            jitter: false,
            delay: Duration::ZERO,
        }
    }

    /// The same, each wait lengthened by a random part of up to half of it, so that clients that failed
    /// together do not all come back at once.
    pub fn with_jitter(self) -> Backoff {
        Backoff {
            jitter: true,
            ..self
        }
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        self.delay = (self.delay.saturating_mul(2)).clamp(self.first, self.max);
        if !self.jitter {
            return self.delay;
        }
        let half = u64::try_from(self.delay.as_millis() / 2).unwrap_or(u64::MAX);
        self.delay + Duration::from_millis(rand::rng().random_range(0..=half))
    }

    /// Starts again from the first delay (after a success).
    pub fn reset(&mut self) {
        self.delay = Duration::ZERO;
    }
}

/// Waits `wait` unless `stop` is cancelled first; returns whether the whole wait passed.
pub async fn sleep(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = stop.cancelled() => false,
    }
}

/// Wakes a parked thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// [`sleep`] for a thread outside the async runtime (a store on a worker thread): parks the thread until
/// `wait` has passed or `stop` is cancelled; returns whether the whole wait passed.
pub fn sleep_blocking(stop: &CancellationToken, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut cancelled = std::pin::pin!(stop.cancelled());
    loop {
        if let Poll::Ready(()) = cancelled.as_mut().poll(&mut cx) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::park_timeout(deadline - now);
    }
}

/// How often a listener that keeps failing repeats its warning.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// One listener's accept back-off.
pub struct AcceptBackoff {
    listener: &'static str,
    backoff: Backoff,
    failures: u64,
    warned: Option<Instant>,
}

impl AcceptBackoff {
    /// A back-off for `listener` (named in the log) that waits `first`, then twice as long each time, up to `max`.
    pub fn new(listener: &'static str, first: Duration, max: Duration) -> AcceptBackoff {
        AcceptBackoff {
            listener,
            backoff: Backoff::new(first, max),
            failures: 0,
            warned: None,
        }
    }

    /// Counts a failed accept and returns how long to wait before the next one.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.failures += 1;
        if self.warned.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
            warn!(listener = self.listener, error = %error, failures = self.failures,
                "accept failed: cannot accept a connection (out of file handles?); backing off");
            self.warned = Some(Instant::now());
        }
        self.backoff.next_delay()
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
        self.backoff.reset();
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

    #[test]
    fn jitter_lengthens_each_wait_by_at_most_half() {
        let mut b =
            Backoff::new(Duration::from_millis(100), Duration::from_millis(400)).with_jitter();
        for base in [100, 200, 400, 400] {
            let wait = b.next_delay().as_millis();
            assert!(
                (base..=base + base / 2).contains(&wait),
                "{wait} for {base}"
            );
        }
    }

    #[test]
    fn a_blocking_sleep_ends_when_stopped() {
        let stop = CancellationToken::new();
        assert!(sleep_blocking(&stop, Duration::from_millis(1)));
        let ready = Arc::new(std::sync::Barrier::new(2));
        let canceller = {
            let (stop, ready) = (stop.clone(), Arc::clone(&ready));
            std::thread::spawn(move || {
                ready.wait();
                stop.cancel();
            })
        };
        ready.wait();
        let began = Instant::now();
        assert!(!sleep_blocking(&stop, Duration::from_secs(60)));
        assert!(began.elapsed() < Duration::from_secs(30));
        canceller.join().expect("canceller");
    }
}
