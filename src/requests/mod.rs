//! Requests: everything about a submitted file that needs no I/O. A file's name ([`name`]), its JSON content
//! ([`parse`]), the devices it names ([`device`]) and what an account requires of each request ([`rules`]). What
//! exists here has been validated; downstream code does not check again.

pub mod device;
pub mod name;
pub mod parse;
pub mod rules;

pub use device::{Device, DeviceError, DeviceKind};
pub use name::{Due, FileName, Kind, NameError};
pub use parse::{FileError, Limits, Request, RequestFile};
pub use rules::{AccountIdRule, RequestRules, RuleError, ShortcodesRule};

use chrono::NaiveDate;
use serde::Deserialize;

/// `[limits]`: caps on what a file may hold and how much work is done between journal checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest submission accepted, in bytes (default 10 MiB).
    pub max_file_bytes: u64,
    /// Most contacts in one file (default 10,000).
    pub max_contacts: usize,
    /// Deepest JSON nesting accepted (default 16).
    pub max_depth: usize,
    /// Devices executed together, then journaled, in a forget (default 500).
    pub batch_size: usize,
    /// How many days ahead a file's name may be dated (default 31); a file dated later is rejected.
    pub max_future_days: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        LimitsConfig {
            max_file_bytes: l.max_file_bytes,
            max_contacts: l.max_contacts,
            max_depth: l.max_depth,
            batch_size: 500,
            max_future_days: DEFAULT_MAX_FUTURE_DAYS,
        }
    }
}

impl LimitsConfig {
    /// The parser's limits.
    pub fn request_limits(&self) -> Limits {
        Limits {
            max_file_bytes: self.max_file_bytes,
            max_contacts: self.max_contacts,
            max_depth: self.max_depth,
        }
    }

    /// Checks that every cap lets a valid file through.
    ///
    /// # Errors
    /// [`LimitsConfigError`].
    pub(crate) fn validate(&self) -> Result<(), LimitsConfigError> {
        // A valid file nests 5 levels: the object, requests, a request, contacts, a contact.
        if self.max_file_bytes == 0
            || self.max_contacts == 0
            || self.max_depth < 5
            || self.batch_size == 0
        {
            return Err(LimitsConfigError::TooSmall);
        }
        Ok(())
    }
}

/// What is wrong with `[limits]`, found at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsConfigError {
    /// A cap that would refuse every valid file.
    #[error("[limits]: max_file_bytes, max_contacts and batch_size must be positive, max_depth at least 5")]
    TooSmall,
}

/// What the name of a file found in `GDPR_Submit` means on `today` (in the account's time zone). The daemon and
/// `gdprd validate` both decide here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// An upload in progress (hidden or temporary name): ignored without notice.
    InProgress,
    /// Not to be executed, and why.
    Reject(NameRejection),
    /// Dated later: left in place until that day.
    Waiting(NaiveDate),
    /// Dated today: to be processed.
    Due(FileName),
}

/// Why a name is not admitted. The text is the rejection notice's `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameRejection {
    /// Not a submission name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Dated more than the horizon after today.
    #[error("ERROR: file is dated {date}, more than {max_future_days} days after today ({today}, {tz}): a file may be dated at most {max_future_days} days ahead; submit it again closer to its date, or with today's date")]
    TooFarAhead {
        /// The file's date.
        date: NaiveDate,
        /// Today in the account's time zone.
        today: NaiveDate,
        /// The account's time zone, as named in the message.
        tz: String,
        /// The horizon in days.
        max_future_days: u32,
    },
    /// Dated before today.
    #[error("ERROR: file is dated {date} but today is {today} ({tz}): only files dated today are processed; submit it again with today's date")]
    Past {
        /// The file's date.
        date: NaiveDate,
        /// Today in the account's time zone.
        today: NaiveDate,
        /// The account's time zone, as named in the message.
        tz: String,
    },
}

/// How many days ahead a file may be dated unless configured otherwise (`[limits] max_future_days`): a month,
/// the time the GDPR gives to answer a request.
pub const DEFAULT_MAX_FUTURE_DAYS: u32 = 31;

/// Decides what a name means on `today`, with the default horizon ([`DEFAULT_MAX_FUTURE_DAYS`]); `tz` names the
/// time zone in the messages.
pub fn admit_name(name: &str, today: NaiveDate, tz: &str) -> Admission {
    admit_name_within(name, today, tz, DEFAULT_MAX_FUTURE_DAYS)
}

/// Decides what a name means on `today`. A name dated more than `max_future_days` after today is refused: it
/// would otherwise wait, with its devices in clear, past every retention sweep.
pub fn admit_name_within(
    name: &str,
    today: NaiveDate,
    tz: &str,
    max_future_days: u32,
) -> Admission {
    if name::is_in_progress(name) {
        return Admission::InProgress;
    }
    let file_name = match FileName::parse(name) {
        Ok(f) => f,
        Err(e) => return Admission::Reject(e.into()),
    };
    match file_name.due(today) {
        Due::Today => Admission::Due(file_name),
        Due::Future
            if file_name
                .stamp
                .date()
                .signed_duration_since(today)
                .num_days()
                > i64::from(max_future_days) =>
        {
            Admission::Reject(NameRejection::TooFarAhead {
                date: file_name.stamp.date(),
                today,
                tz: tz.to_owned(),
                max_future_days,
            })
        }
        Due::Future => Admission::Waiting(file_name.stamp.date()),
        Due::Past => Admission::Reject(NameRejection::Past {
            date: file_name.stamp.date(),
            today,
            tz: tz.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_follows_name_and_date() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).expect("date");
        assert_eq!(
            admit_name("forget-20261122_120000.json.part", today, "UTC"),
            Admission::InProgress
        );
        assert!(matches!(
            admit_name("forget-20261122_120000.json", today, "UTC"),
            Admission::Due(_)
        ));
        assert_eq!(
            admit_name("export-20261123_000000.json", today, "UTC"),
            Admission::Waiting(NaiveDate::from_ymd_opt(2026, 11, 23).expect("date"))
        );
        match admit_name("forget-20180315_120000.json", today, "UTC") {
            Admission::Reject(e) => assert!(
                e.to_string()
                    .contains("dated 2018-03-15 but today is 2026-11-22 (UTC)"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            admit_name("readme.txt", today, "UTC"),
            Admission::Reject(_)
        ));
        // The horizon: 31 days ahead by default waits, 32 and the far future are refused.
        assert!(matches!(
            admit_name("forget-20261223_000000.json", today, "UTC"),
            Admission::Waiting(_)
        ));
        match admit_name("forget-20991231_000000.json", today, "UTC") {
            Admission::Reject(e) => assert!(
                e.to_string()
                    .contains("dated 2099-12-31, more than 31 days after today (2026-11-22, UTC)"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            admit_name("forget-20261224_000000.json", today, "UTC"),
            Admission::Reject(_)
        ));
        assert!(matches!(
            admit_name_within("forget-20261224_000000.json", today, "UTC", 400),
            Admission::Waiting(_)
        ));
    }
}
