//! `gdprd status`: what care engineers need to answer "did my request go through?". It asks the journal's
//! read-only [`Reader`] (safe while the daemon runs) and reads the accounts' folders: every file
//! received, its state (waiting for its date, processing, done, rejected and why), its per-contact counts and
//! where its result is, and where it stands against its deadline (due day, days left, open, overdue,
//! extension; see [`crate::deadline`]). It shows no device: the ledger holds responses, never the devices
//! themselves.

use crate::config::Config;
use crate::deadline::Standing;
use crate::journal::{FileFilter, FileState, JournalError, Reader};
use crate::requests::{admit_name_within, Admission};
use crate::results::log as names;
use serde::Serialize;
use std::path::PathBuf;

/// One file as a care engineer sees it.
#[derive(Debug, Serialize)]
pub struct FileStatus {
    /// The ledger id (what `gdprd extend` takes); none while waiting.
    pub id: Option<i64>,
    /// The account.
    pub account: String,
    /// The file name.
    pub name: String,
    /// `waiting` (for its date), `processing`, `retrying` (waiting for stores that are unavailable, see
    /// `[engine] retry_window`), `done` or `rejected`.
    pub state: String,
    /// Why it was refused or rejected, or the date it waits for.
    pub detail: Option<String>,
    /// When it was taken (RFC 3339, UTC); none while waiting.
    pub received_at: Option<String>,
    /// When its result was written.
    pub finished_at: Option<String>,
    /// Contacts answered `SUCCESS`.
    pub success: u64,
    /// Contacts answered `SUCCESS: not found`.
    pub not_found: u64,
    /// Contacts answered `ERROR: …`.
    pub errors: u64,
    /// The result files in place.
    pub results: Vec<PathBuf>,
    /// While `retrying`: the stores it waits for.
    pub waiting_for: Vec<String>,
    /// While `retrying`: when it began to wait (RFC 3339, UTC).
    pub waiting_since: Option<String>,
    /// The day it is due (`YYYY-MM-DD`, the account's calendar); none while waiting and for a rejected name.
    pub due: Option<String>,
    /// The instant its period runs out (RFC 3339, UTC): the end of the due day.
    pub due_at: Option<String>,
    /// Days left to the due day: 0 on the day, negative past it.
    pub days_left: Option<i64>,
    /// In work, or finished with an error gdprd owes work for (see [`crate::deadline::is_open`]).
    pub open: bool,
    /// Open past its due day.
    pub overdue: bool,
    /// Its one extension.
    pub extension: Option<ExtensionStatus>,
}

/// An extension as `gdprd status` shows it.
#[derive(Debug, Serialize)]
pub struct ExtensionStatus {
    /// The due day before it (`YYYY-MM-DD`).
    pub previous_due: String,
    /// Why (what the data subject was told).
    pub reason: String,
    /// When it was recorded (RFC 3339).
    pub at: String,
}

/// Which files [`files`] lists.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    /// Only this account's.
    pub account: Option<&'a str>,
    /// Only those received since (RFC 3339); all when none.
    pub since: Option<&'a str>,
    /// Only the overdue ones (no waiting file then).
    pub overdue: bool,
}

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The ledger could not be read.
    #[error("cannot read the ledger in the state folder: {0}")]
    Ledger(#[from] JournalError),
    /// No such account.
    #[error("no account {0:?} in the config")]
    UnknownAccount(String),
}

/// The files `query` picks, newest first, then those waiting in `GDPR_Submit` for their date; days are
/// counted at [`crate::clock::now`] on each account's calendar.
///
/// # Errors
/// [`StatusError`].
pub fn files(config: &Config, query: &Query<'_>) -> Result<Vec<FileStatus>, StatusError> {
    let account = query.account;
    if let Some(a) = account {
        if config.account(a).is_none() {
            return Err(StatusError::UnknownAccount(a.to_owned()));
        }
    }
    let mut out = Vec::new();
    let filter = FileFilter {
        account: account.map(str::to_owned),
        since: query.since.map(str::to_owned),
        open_only: query.overdue,
    };
    let received = match Reader::open_config(config)? {
        Some(reader) => reader.files(&filter)?,
        None => Vec::new(),
    };
    let now = crate::clock::now();
    for file in received {
        let zone = config
            .account(&file.account)
            .map_or(chrono_tz::UTC, |a| a.timezone);
        let standing = Standing::of(&file, now, zone);
        if query.overdue && !standing.overdue {
            continue;
        }
        let results = config
            .account(&file.account)
            .map(|a| {
                // A retry's result is its original's follow-up log.
                if let Some((original, n)) = file.name.split_once(crate::journal::RETRY_MARK) {
                    let stem = crate::requests::name::stem(original);
                    return n
                        .parse()
                        .map(|n| a.result_dir().join(names::numbered_log_name(stem, n)))
                        .into_iter()
                        .filter(|p| p.exists())
                        .collect();
                }
                let stem = crate::requests::name::stem(&file.name);
                [
                    names::log_name(stem),
                    names::archive_name(stem),
                    names::rejected_name(stem),
                    names::rejected_name(&file.name),
                ]
                .into_iter()
                .map(|n| a.result_dir().join(n))
                .filter(|p| p.exists())
                .collect()
            })
            .unwrap_or_default();
        let waiting = file.waiting.filter(|_| file.state == FileState::Claimed);
        let detail = match &waiting {
            Some(w) => Some(format!(
                "waiting for store {} (unavailable since {}, {} tries); retried until [engine] retry_window has passed",
                w.stores
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                w.since,
                w.tries
            )),
            None => file.error,
        };
        let time = |t: chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        out.push(FileStatus {
            id: Some(file.id),
            due: file.due.map(|d| d.on.to_string()),
            due_at: file.due.map(|d| time(d.at)),
            days_left: standing.days_left,
            open: standing.open,
            overdue: standing.overdue,
            extension: file.extension.map(|e| ExtensionStatus {
                previous_due: e.previous_due.to_string(),
                reason: e.reason,
                at: time(e.at),
            }),
            account: file.account,
            name: file.name,
            state: match (file.state, &waiting) {
                (FileState::Claimed, Some(_)) => "retrying",
                (FileState::Claimed, None) => "processing",
                (FileState::Done, _) => "done",
                (FileState::Rejected, _) => "rejected",
            }
            .to_owned(),
            detail,
            waiting_since: waiting.as_ref().map(|w| w.since.clone()),
            waiting_for: waiting.map(|w| w.stores).unwrap_or_default(),
            received_at: Some(file.received_at),
            finished_at: file.finished_at,
            success: file.counts.success,
            not_found: file.counts.not_found,
            errors: file.counts.errors,
            results,
        });
    }
    for a in &config.accounts {
        if query.overdue || account.is_some_and(|want| want != a.name) {
            continue;
        }
        let today = chrono::Utc::now().with_timezone(&a.timezone).date_naive();
        let mut waiting: Vec<(String, String)> = std::fs::read_dir(a.submit_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                match admit_name_within(
                    &name,
                    today,
                    a.timezone.name(),
                    config.limits.max_future_days,
                ) {
                    Admission::Waiting(date) => Some((name, date.to_string())),
                    _ => None,
                }
            })
            .collect();
        waiting.sort();
        for (name, date) in waiting {
            out.push(FileStatus {
                id: None,
                due: None,
                due_at: None,
                days_left: None,
                open: false,
                overdue: false,
                extension: None,
                account: a.name.clone(),
                name,
                state: "waiting".into(),
                detail: Some(format!("dated {date}: taken on that day")),
                received_at: None,
                finished_at: None,
                success: 0,
                not_found: 0,
                errors: 0,
                results: Vec::new(),
                waiting_for: Vec::new(),
                waiting_since: None,
            });
        }
    }
    Ok(out)
}

/// Why a `--since` text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinceError {
    /// It does not start with a whole number.
    #[error("{0:?}: a number and a unit, like 7d, 12h, 30m")]
    NoNumber(String),
    /// Its unit is not one of `d`, `h`, `m`, `s`.
    #[error("{0:?}: the unit is d, h, m or s")]
    Unit(String),
}

/// Reads `7d`, `12h`, `30m` or `90s` as a duration.
///
/// # Errors
/// [`SinceError`]: what is wrong with the text.
pub fn parse_since(text: &str) -> Result<chrono::Duration, SinceError> {
    // The last character is the unit (split at a character boundary: `7é` is refused, not a panic).
    let last = text.char_indices().last().map_or(0, |(i, _)| i);
    let (number, unit) = text.split_at(last);
    let n: i64 = number
        .parse()
        .map_err(|_| SinceError::NoNumber(text.to_owned()))?;
    match unit {
        "d" => Ok(chrono::Duration::days(n)),
        "h" => Ok(chrono::Duration::hours(n)),
        "m" => Ok(chrono::Duration::minutes(n)),
        "s" => Ok(chrono::Duration::seconds(n)),
        _ => Err(SinceError::Unit(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since() {
        assert_eq!(parse_since("7d"), Ok(chrono::Duration::days(7)));
        assert_eq!(parse_since("12h"), Ok(chrono::Duration::hours(12)));
        assert!(parse_since("7").is_err());
        assert!(parse_since("d").is_err());
        assert!(parse_since("3w").is_err());
        assert!(parse_since("7é").is_err());
        assert!(parse_since("").is_err());
    }
}
