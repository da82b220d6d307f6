//! Retention: results hold personal data, so files in `GDPR_Result` older than the account's retention period
//! are deleted, and so are uploads left half-way in `GDPR_Submit` (temporary names an interrupted client left,
//! which gdprd never processes). The ledger and its audit trail are kept (they hold no device in clear).

use crate::config::AccountConfig;
use std::io;
use std::time::{Duration, SystemTime};
use tracing::info;

/// How long an account keeps its results and finished HTTP jobs: `retention_days`, whole days, read at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    days: u32,
}

impl Retention {
    /// Three days: an account's retention when it does not say.
    pub const DEFAULT: Retention = Retention { days: 3 };

    /// `days` whole days.
    pub fn from_days(days: u32) -> Retention {
        Retention { days }
    }

    /// The number of days, as configured.
    pub fn days(self) -> u32 {
        self.days
    }

    /// The retention as a duration.
    pub fn duration(self) -> Duration {
        Duration::from_secs(u64::from(self.days) * 86_400)
    }

    /// Whether something `age` old is past it.
    pub fn is_past(self, age: Duration) -> bool {
        age > self.duration()
    }
}

/// Deletes the account's result files last modified longer ago than its [`Retention`]; returns how many.
///
/// # Errors
/// The I/O error reading the folder; files that cannot be removed are skipped and tried again next sweep.
pub fn sweep(account: &AccountConfig, now: SystemTime) -> io::Result<usize> {
    let mut removed = 0;
    let leftovers = std::fs::read_dir(account.submit_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(crate::requests::name::is_in_progress)
        });
    for entry in std::fs::read_dir(account.result_dir())?
        .flatten()
        .chain(leftovers)
    {
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| account.retention.is_past(age));
        if meta.is_file() && old && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        info!(account = %account.name, removed, "retention: old results deleted");
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_results_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let account: AccountConfig = toml::from_str(&format!(
            "name = \"a\"\nroot = {:?}\nstores = [\"s\"]\nretention_days = 3\n",
            dir.path()
        ))
        .expect("account");
        std::fs::create_dir_all(account.result_dir()).expect("mkdir");
        std::fs::create_dir_all(account.submit_dir()).expect("mkdir");
        for name in ["x-execution-log.json", "x-archive.zip", "y-rejected.json"] {
            std::fs::write(account.result_dir().join(name), b"{}").expect("write");
        }
        // An upload cut off half-way, and a file waiting for its date: only the first is a leftover.
        std::fs::write(
            account
                .submit_dir()
                .join("forget-20260101_000000.json.filepart"),
            b"{",
        )
        .expect("write");
        std::fs::write(
            account.submit_dir().join("forget-20990101_000000.json"),
            b"{}",
        )
        .expect("write");
        assert_eq!(sweep(&account, SystemTime::now()).expect("sweep"), 0);
        let later = SystemTime::now() + Duration::from_secs(4 * 86_400);
        assert_eq!(sweep(&account, later).expect("sweep"), 4);
        assert_eq!(
            std::fs::read_dir(account.result_dir()).expect("ls").count(),
            0
        );
        let left: Vec<_> = std::fs::read_dir(account.submit_dir())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["forget-20990101_000000.json"]);
    }
}
