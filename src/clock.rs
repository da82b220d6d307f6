//! The time that expiry reads: retention sweeps, the HTTP front doors' job expiry, and the deadline clock's days
//! left and overdue requests (`gdprd status`, the metrics; a request's receipt is the system clock's). It is the
//! system clock, moved forward by `GDPRD_TEST_CLOCK_OFFSET_SECONDS` when that variable is set (read once): a test
//! hook that lets the integration tests see three days of retention, or forty of a deadline, pass without waiting.
//! Never set it in production.

use chrono::{DateTime, Utc};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// Seconds added to the system clock (0 unless the test hook is set).
fn offset() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("GDPRD_TEST_CLOCK_OFFSET_SECONDS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

/// Now, as expiry sees it.
pub fn now() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(offset())
}

/// Now, as a [`SystemTime`] (for comparing with file modification times).
pub fn system_now() -> SystemTime {
    let o = offset();
    let shift = Duration::from_secs(o.unsigned_abs());
    if o >= 0 {
        SystemTime::now() + shift
    } else {
        SystemTime::now() - shift
    }
}
