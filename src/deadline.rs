//! The deadline clock (GDPR Art. 12(3)): a request is answered within one month of its receipt, a period that
//! may be extended once by at most two further months, with the reason told to the data subject.
//!
//! Each file and HTTP job is given its dates when the journal claims it ([`Dates`]): when it was received, and the
//! day it is due ([`Due`]), counted in the account's time zone by its `deadline` ([`Period`], default one calendar
//! month). Periods are counted as EU law counts them (Regulation 1182/71, Art. 3): the day of receipt does not
//! count, and a period of months ends at the end of the day with the same date as the day of receipt in the last
//! month, or of that month's last day when it has no such date (received 31 January: due 28 February).
//!
//! A request is *open* ([`is_open`]) while it is in work, or finished with a contact answered with an ERROR that
//! gdprd owes work for (a store failed or was unavailable, or no response was recorded). It is *overdue* when it
//! is open past the end of its due day. [`extension`] checks an extension ([`gdprd extend`](Extension)); the
//! journal records it, once. [`backlog`] counts what the metrics show.

use crate::config::Config;
use crate::journal::{AuditEntry, FileFilter, FileState, FileSummary, Journal, JournalError};
use chrono::{DateTime, Days, Months, NaiveDate, TimeZone, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// A length of time counted on the calendar: `"1 month"`, `"2 months"`, `"30 days"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Calendar months.
    Months(u32),
    /// Days.
    Days(u32),
}

impl Default for Period {
    /// One calendar month: Art. 12(3).
    fn default() -> Self {
        Period::Months(1)
    }
}

/// The longest extension Art. 12(3) allows: two further months.
pub const MAX_EXTENSION: Period = Period::Months(2);

/// Why a period text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// Not a whole number followed by a unit.
    #[error("{0:?} is not a period: write a number and `months` or `days`, like \"1 month\" or \"30 days\"")]
    Shape(String),
    /// Zero, or longer than a year.
    #[error("{0:?}: a period is 1 to 12 months or 1 to 366 days")]
    Range(String),
}

impl std::str::FromStr for Period {
    type Err = PeriodError;

    /// Reads `"1 month"`, `"2 months"`, `"2months"`, `"30 days"`, `"1 day"`.
    fn from_str(text: &str) -> Result<Period, PeriodError> {
        let shape = || PeriodError::Shape(text.to_owned());
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(shape)?;
        let (number, unit) = t.split_at(split);
        let n: u32 = number.parse().map_err(|_| shape())?;
        let period = match unit.trim() {
            "month" | "months" => Period::Months(n),
            "day" | "days" => Period::Days(n),
            _ => return Err(shape()),
        };
        match period {
            Period::Months(1..=12) | Period::Days(1..=366) => Ok(period),
            _ => Err(PeriodError::Range(text.to_owned())),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Months(1) => f.write_str("1 month"),
            Period::Months(n) => write!(f, "{n} months"),
            Period::Days(1) => f.write_str("1 day"),
            Period::Days(n) => write!(f, "{n} days"),
        }
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Period {
    /// The day this period ends when it runs from `day` (the day of the event, which does not count).
    /// `None` past the calendar's end.
    pub fn after(self, day: NaiveDate) -> Option<NaiveDate> {
        match self {
            // chrono keeps the day of the month, or takes the month's last day when it has no such date.
            Period::Months(n) => day.checked_add_months(Months::new(n)),
            Period::Days(n) => day.checked_add_days(Days::new(u64::from(n))),
        }
    }

    /// When a request received at `received` is due, the period counted on the calendar of `zone`.
    pub fn due(self, received: DateTime<Utc>, zone: chrono_tz::Tz) -> Due {
        let day = received.with_timezone(&zone).date_naive();
        Due::on(self.after(day).unwrap_or(NaiveDate::MAX), zone)
    }
}

/// The day a request is due, and the instant its period runs out (the end of that day in the account's time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The last day of the period, in the account's time zone.
    pub on: NaiveDate,
    /// The end of that day (the start of the next), in UTC: from this instant an open request is overdue.
    pub at: DateTime<Utc>,
}

impl Due {
    /// Due on `day` of `zone`'s calendar: the period runs out when the next day starts there.
    pub fn on(day: NaiveDate, zone: chrono_tz::Tz) -> Due {
        let next = day.succ_opt().unwrap_or(day);
        // The first instant of the next day that exists there (a day can start in a gap of a clock change).
        let at = (0..=3)
            .find_map(|hour| {
                zone.from_local_datetime(&next.and_hms_opt(hour, 0, 0)?)
                    .earliest()
            })
            .map_or_else(
                || next.and_time(chrono::NaiveTime::MIN).and_utc(),
                |t| t.with_timezone(&Utc),
            );
        Due { on: day, at }
    }

    /// Days left at `now` in `zone`: 0 on the due day, negative once overdue (-1 the day after).
    pub fn days_left(&self, now: DateTime<Utc>, zone: chrono_tz::Tz) -> i64 {
        (self.on - now.with_timezone(&zone).date_naive()).num_days()
    }
}

/// When a request was received and when it is due, fixed when the journal claims it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dates {
    /// When it was received.
    pub received: DateTime<Utc>,
    /// When it is due.
    pub due: Due,
}

impl Dates {
    /// A request received now, due after `period` on `zone`'s calendar.
    pub fn received_now(period: Period, zone: chrono_tz::Tz) -> Dates {
        let received = Utc::now();
        Dates {
            received,
            due: period.due(received, zone),
        }
    }
}

/// The one extension a request may have, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The due day before the extension.
    pub previous_due: NaiveDate,
    /// Why (what the data subject is told).
    pub reason: String,
    /// When it was extended.
    pub at: DateTime<Utc>,
}

/// Why a request cannot be extended.
#[derive(Debug, thiserror::Error)]
pub enum ExtendError {
    /// The ledger has no such file.
    #[error("no file {0} in the ledger (the ID column of `gdprd status`)")]
    Unknown(i64),
    /// A rejected name, never a request.
    #[error("file {id} ({name}) was rejected: it is not a request, it has no deadline")]
    Rejected {
        /// The file id.
        id: i64,
        /// Its name.
        name: String,
    },
    /// Finished with every contact answered: the deadline was met.
    #[error("file {id} ({name}) is not open: every contact was answered, there is no deadline to extend")]
    Closed {
        /// The file id.
        id: i64,
        /// Its name.
        name: String,
    },
    /// Extended before.
    #[error("file {id} ({name}) was already extended on {at}, from {previous} to {due} (reason: {reason:?}): Art. 12(3) allows one extension")]
    Again {
        /// The file id.
        id: i64,
        /// Its name.
        name: String,
        /// The due day before the extension.
        previous: NaiveDate,
        /// The due day now.
        due: NaiveDate,
        /// When it was extended.
        at: String,
        /// The reason given then.
        reason: String,
    },
    /// Longer than two months.
    #[error("--by {0}: an extension is at most two further months")]
    TooLong(Period),
    /// No reason given.
    #[error("--reason is empty: the reason is what the data subject is told")]
    NoReason,
    /// The ledger could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The due day after extending a request due on `due` by `by`: at most two months past `due`.
///
/// # Errors
/// [`ExtendError::TooLong`].
pub fn extended(due: NaiveDate, by: Period) -> Result<NaiveDate, ExtendError> {
    let limit = MAX_EXTENSION.after(due).unwrap_or(NaiveDate::MAX);
    match by.after(due) {
        Some(day) if day <= limit => Ok(day),
        _ => Err(ExtendError::TooLong(by)),
    }
}

/// An extension recorded by [`extend`].
#[derive(Debug, Clone)]
pub struct Extended {
    /// The account.
    pub account: String,
    /// The file's name.
    pub name: String,
    /// When it was due before.
    pub previous: Due,
    /// When it is due now.
    pub due: Due,
}

/// `gdprd extend`: extends the deadline of file `id` by `by` (at most two months), once, with `reason`, and
/// audits it (action `extend`). Only an open request is extended; the days are counted on the account's
/// calendar.
///
/// # Errors
/// [`ExtendError`]: what forbids it, or the ledger's failure.
pub fn extend(
    journal: &Journal,
    config: &Config,
    id: i64,
    by: Period,
    reason: &str,
) -> Result<Extended, ExtendError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ExtendError::NoReason);
    }
    let record = journal.file(id)?.ok_or(ExtendError::Unknown(id))?;
    let again = |record: crate::journal::FileRecord| match (record.extension, record.due) {
        (Some(e), Some(due)) => ExtendError::Again {
            id,
            name: record.name,
            previous: e.previous_due,
            due: due.on,
            at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            reason: e.reason,
        },
        _ => ExtendError::Rejected {
            id,
            name: record.name,
        },
    };
    let previous = match (record.state, record.due) {
        (FileState::Rejected, _) | (_, None) => {
            return Err(ExtendError::Rejected {
                id,
                name: record.name,
            })
        }
        _ if record.extension.is_some() => return Err(again(record)),
        (_, Some(due)) => due,
    };
    let owed = journal
        .responses(id)?
        .values()
        .filter(|r| r.is_owed())
        .count() as u64;
    if !is_open(record.state, owed) {
        return Err(ExtendError::Closed {
            id,
            name: record.name,
        });
    }
    let zone = config
        .account(&record.account)
        .map_or(chrono_tz::UTC, |a| a.timezone);
    let due = Due::on(extended(previous.on, by)?, zone);
    let now = Utc::now();
    let audit = AuditEntry {
        account: record.account.clone(),
        file: record.name.clone(),
        requestcase: None,
        device_type: None,
        device_hmac: None,
        action: "extend".into(),
        stores: "{}".into(),
        outcome: format!(
            "due {} extended by {by} to {}: {reason}",
            previous.on, due.on
        ),
        started: now,
        finished: now,
    };
    if !journal.extend(id, &due, reason, &audit)? {
        // Another `gdprd extend` came first.
        let record = journal.file(id)?.ok_or(ExtendError::Unknown(id))?;
        return Err(again(record));
    }
    Ok(Extended {
        account: record.account,
        name: record.name,
        previous,
        due,
    })
}

/// Whether a file is open: in work, or finished with a contact whose ERROR gdprd owes work for
/// (`owed_errors`, see [`crate::engine::Response::is_owed`]). A rejected name is no request; a file refused
/// whole was answered (its sender must send a new one).
pub fn is_open(state: FileState, owed_errors: u64) -> bool {
    match state {
        FileState::Claimed => true,
        FileState::Done => owed_errors > 0,
        FileState::Rejected => false,
    }
}

/// Where a file stands against its deadline at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Open (see [`is_open`]).
    pub open: bool,
    /// Days left to its due day (0 on the day, negative after); none without a due day.
    pub days_left: Option<i64>,
    /// Open past its due day.
    pub overdue: bool,
}

impl Standing {
    /// Where `file` stands at `now`, counting days on `zone`'s calendar.
    pub fn of(file: &FileSummary, now: DateTime<Utc>, zone: chrono_tz::Tz) -> Standing {
        let open = is_open(file.state, file.owed_errors);
        let days_left = file.due.map(|d| d.days_left(now, zone));
        Standing {
            open,
            days_left,
            overdue: open && file.due.is_some_and(|d| now >= d.at),
        }
    }
}

/// The open requests, as the metrics show them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backlog {
    /// Open requests per account (every account asked for is there, with 0 when none is open).
    pub open: BTreeMap<String, u64>,
    /// Open requests past their due day.
    pub overdue: u64,
    /// Seconds since the oldest open request was received (0 when none is open).
    pub oldest_age_seconds: f64,
}

/// The open requests in `journal` at `now`; `accounts` are listed with 0 when none of theirs is open.
///
/// # Errors
/// [`JournalError::Database`].
pub fn backlog<'a>(
    journal: &Journal,
    accounts: impl IntoIterator<Item = &'a str>,
    now: DateTime<Utc>,
) -> Result<Backlog, JournalError> {
    let mut b = Backlog {
        open: accounts.into_iter().map(|a| (a.to_owned(), 0)).collect(),
        ..Backlog::default()
    };
    let filter = FileFilter {
        open_only: true,
        ..FileFilter::default()
    };
    for file in journal.files(&filter)? {
        if !is_open(file.state, file.owed_errors) {
            continue;
        }
        *b.open.entry(file.account.clone()).or_default() += 1;
        if file.due.is_some_and(|d| now >= d.at) {
            b.overdue += 1;
        }
        if let Ok(received) = DateTime::parse_from_rfc3339(&file.received_at) {
            let age = (now - received.with_timezone(&Utc))
                .num_milliseconds()
                .max(0);
            b.oldest_age_seconds = b.oldest_age_seconds.max(age as f64 / 1000.0);
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn periods_read_as_written_and_refuse_the_rest() {
        assert_eq!("1 month".parse(), Ok(Period::Months(1)));
        assert_eq!("2months".parse(), Ok(Period::Months(2)));
        assert_eq!(" 30 days ".parse(), Ok(Period::Days(30)));
        assert_eq!("1 day".parse(), Ok(Period::Days(1)));
        for bad in [
            "",
            "month",
            "1",
            "1 week",
            "-1 month",
            "1.5 months",
            "1 mois",
        ] {
            assert!(
                matches!(bad.parse::<Period>(), Err(PeriodError::Shape(_))),
                "{bad}"
            );
        }
        for bad in ["0 months", "13 months", "0 days", "367 days"] {
            assert!(
                matches!(bad.parse::<Period>(), Err(PeriodError::Range(_))),
                "{bad}"
            );
        }
        assert_eq!(Period::Months(2).to_string(), "2 months");
    }

    #[test]
    fn a_month_ends_on_the_same_date_or_the_last_day_of_a_shorter_month() {
        let m = Period::Months(1);
        assert_eq!(m.after(day("2026-03-05")), Some(day("2026-04-05")));
        assert_eq!(m.after(day("2026-01-31")), Some(day("2026-02-28")));
        assert_eq!(m.after(day("2028-01-31")), Some(day("2028-02-29")));
        assert_eq!(m.after(day("2026-12-15")), Some(day("2027-01-15")));
        assert_eq!(
            Period::Days(30).after(day("2026-01-31")),
            Some(day("2026-03-02"))
        );
    }

    #[test]
    fn the_due_day_is_counted_on_the_accounts_calendar_and_runs_out_at_its_end() {
        let paris = chrono_tz::Europe::Paris;
        // 23:30 UTC on 31 March is already 1 April in Paris.
        let received: DateTime<Utc> = "2026-03-31T23:30:00Z".parse().expect("time");
        let due = Period::Months(1).due(received, paris);
        assert_eq!(due.on, day("2026-05-01"));
        assert_eq!(
            due.at,
            "2026-05-01T22:00:00Z".parse::<DateTime<Utc>>().expect("t")
        );
        assert_eq!(
            Period::Months(1).due(received, chrono_tz::UTC).on,
            day("2026-04-30")
        );
        let utc = Due::on(day("2026-04-30"), chrono_tz::UTC);
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        assert_eq!(utc.days_left(at("2026-04-30T23:59:59Z"), chrono_tz::UTC), 0);
        assert_eq!(
            utc.days_left(at("2026-05-01T00:00:00Z"), chrono_tz::UTC),
            -1
        );
        assert_eq!(
            utc.days_left(at("2026-04-20T08:00:00Z"), chrono_tz::UTC),
            10
        );
    }

    #[test]
    fn an_extension_is_at_most_two_months_past_the_due_day() {
        let due = day("2026-01-31");
        assert_eq!(
            extended(due, Period::Months(2)).ok(),
            Some(day("2026-03-31"))
        );
        assert_eq!(
            extended(due, Period::Days(59)).ok(),
            Some(day("2026-03-31"))
        );
        assert!(matches!(
            extended(due, Period::Days(60)),
            Err(ExtendError::TooLong(_))
        ));
        assert!(matches!(
            extended(due, Period::Months(3)),
            Err(ExtendError::TooLong(_))
        ));
    }

    #[test]
    fn open_means_in_work_or_owing_an_answer() {
        assert!(is_open(FileState::Claimed, 0));
        assert!(is_open(FileState::Done, 1));
        assert!(!is_open(FileState::Done, 0));
        assert!(!is_open(FileState::Rejected, 3));
    }
}
