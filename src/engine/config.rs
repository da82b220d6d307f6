//! `[engine]`: how many workers execute files at once, and how long a forget waits for a store that is down.

/// `[engine]`: how many files run at once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// How many workers execute files at once (`workers`, default: the number of cores, at least 2). Files of
    /// one account still run one at a time, in name order; different accounts run at once. `0` is refused.
    pub workers: std::num::NonZeroUsize,
    /// How long a forget whose store is unavailable waits for it before its log is written with the remaining
    /// `ERROR`s (`retry_window`, default `"6h"`; a number and a unit: `d`, `h`, `m` or `s`; `"0s"` waits not at
    /// all). See [`RetryWindow`].
    pub retry_window: RetryWindow,
}

/// `[engine] retry_window`: how long a forget (or pseudonymisation) waits, retrying with a capped back-off, for
/// a store that could not be reached or opened before it answers its contacts `ERROR`. Written like
/// `gdprd status --since`: `"6h"`, `"30m"`, `"90s"`, `"1d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryWindow(pub std::time::Duration);

impl Default for RetryWindow {
    fn default() -> RetryWindow {
        RetryWindow(std::time::Duration::from_secs(6 * 3600))
    }
}

/// Why a `retry_window` text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryWindowError {
    /// Not a number and a unit.
    #[error("retry_window {0}")]
    Syntax(#[from] crate::status::SinceError),
    /// Below zero.
    #[error("retry_window {0:?}: it cannot be negative")]
    Negative(String),
}

impl std::str::FromStr for RetryWindow {
    type Err = RetryWindowError;

    fn from_str(text: &str) -> Result<RetryWindow, RetryWindowError> {
        let d = crate::status::parse_since(text)?;
        d.to_std()
            .map(RetryWindow)
            .map_err(|_| RetryWindowError::Negative(text.to_owned()))
    }
}

impl<'de> serde::Deserialize<'de> for RetryWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RetryWindow, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        EngineConfig {
            workers: std::num::NonZeroUsize::new(cores.max(2))
                .unwrap_or(std::num::NonZeroUsize::MIN),
            retry_window: RetryWindow::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{err, load, DEMO};

    #[test]
    fn workers_default_to_the_cores_at_least_two_and_zero_is_refused() {
        let c = load(DEMO).expect("demo config");
        assert!(c.engine.workers.get() >= 2);
        let c = load(&format!("{DEMO}\n[engine]\nworkers = 3\n")).expect("three workers");
        assert_eq!(c.engine.workers.get(), 3);
        let e = err(&format!("{DEMO}\n[engine]\nworkers = 0\n"));
        assert!(e.contains("workers") && e.contains("nonzero"), "{e}");
        let e = err(&format!("{DEMO}\n[engine]\nworker = 2\n"));
        assert!(e.contains("unknown field `worker`"), "{e}");
    }

    #[test]
    fn retry_window_defaults_to_six_hours_and_reads_a_number_and_a_unit() {
        use std::time::Duration;
        let c = load(DEMO).expect("demo config");
        assert_eq!(c.engine.retry_window.0, Duration::from_secs(6 * 3600));
        let c = load(&format!("{DEMO}\n[engine]\nretry_window = \"90s\"\n")).expect("90 s");
        assert_eq!(c.engine.retry_window.0, Duration::from_secs(90));
        let c = load(&format!("{DEMO}\n[engine]\nretry_window = \"0s\"\n")).expect("none");
        assert_eq!(c.engine.retry_window.0, Duration::ZERO);
        for bad in ["\"6\"", "\"6w\"", "\"-5m\"", "6"] {
            let e = err(&format!("{DEMO}\n[engine]\nretry_window = {bad}\n"));
            assert!(
                e.contains("retry_window") || e.contains("string"),
                "{bad}: {e}"
            );
        }
    }
}
