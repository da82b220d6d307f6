//! Requests: everything about a submitted file that needs no I/O. A file's name ([`name`]), its JSON content
//! ([`parse`]) and the devices it names ([`device`]). What exists here has been validated; downstream code does
//! not check again.

pub mod device;
pub mod name;
pub mod parse;

pub use device::{Device, DeviceError, DeviceKind};
pub use name::{Due, FileName, Kind, NameError};
pub use parse::{FileError, Limits, Request, RequestFile};

use chrono::NaiveDate;

/// What the name of a file found in `GDPR_Submit` means on `today` (in the account's time zone). The daemon and
/// `gdprd validate` both decide here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// An upload in progress (hidden or temporary name): ignored without notice.
    InProgress,
    /// Not to be executed; the text is the notice's `error`.
    Reject(String),
    /// Dated later: left in place until that day.
    Waiting(NaiveDate),
    /// Dated today: to be processed.
    Due(FileName),
}

/// Decides what a name means on `today`; `tz` names the time zone in the past-date message.
pub fn admit_name(name: &str, today: NaiveDate, tz: &str) -> Admission {
    if name::is_in_progress(name) {
        return Admission::InProgress;
    }
    let file_name = match FileName::parse(name) {
        Ok(f) => f,
        Err(e) => return Admission::Reject(e.to_string()),
    };
    match file_name.due(today) {
        Due::Today => Admission::Due(file_name),
        Due::Future => Admission::Waiting(file_name.stamp.date()),
        Due::Past => Admission::Reject(format!(
            "ERROR: file is dated {} but today is {today} ({tz}): only files dated today are processed; submit it again with today's date",
            file_name.stamp.date()
        )),
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
                e.contains("dated 2018-03-15 but today is 2026-11-22 (UTC)"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            admit_name("readme.txt", today, "UTC"),
            Admission::Reject(_)
        ));
    }
}
