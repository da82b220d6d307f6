//! Why a file is not executed: a name rejected before it is claimed ([`Rejection`], answered by a rejection
//! notice), or a claimed file refused whole ([`Refusal`], answered by an execution log without results). Each
//! `Display` is the `error` text the customer reads (see docs/file-format.md); the ledger keeps that text.

use crate::journal::FileRecord;
use crate::requests::{FileError, NameRejection};

/// Why a name in `GDPR_Submit` is rejected without being executed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The name is not valid UTF-8.
    #[error("ERROR: file name is not valid UTF-8")]
    NameNotUtf8,
    /// A link, a FIFO or another special file.
    #[error("ERROR: not a regular file (links and special files are not processed)")]
    NotRegularFile,
    /// The name was submitted before (or another file was put onto it while it ran).
    #[error("ERROR: a file named {name} was already submitted (received {received_at}); a name is processed once: submit it again under a new name")]
    Duplicate {
        /// The name.
        name: String,
        /// When the first file of that name was received (the ledger's timestamp).
        received_at: String,
    },
    /// The name is not a submission name, or its date is not admitted.
    #[error(transparent)]
    Name(#[from] NameRejection),
}

impl Rejection {
    /// The name `name` was already submitted, as `rec`.
    pub fn duplicate(name: &str, rec: &FileRecord) -> Rejection {
        Rejection::Duplicate {
            name: name.to_owned(),
            received_at: rec.received_at.clone(),
        }
    }
}

/// Why a claimed file is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its content is not a valid request file.
    #[error(transparent)]
    File(#[from] FileError),
    /// The copy kept at claim time is gone or differs from what was claimed.
    #[error("ERROR: the claimed copy of this file was lost or changed after it was claimed; resubmit it under a new name")]
    ClaimedCopyLost,
    /// A WCA database job whose database is no longer in the account's `[accounts.http] databases`.
    #[error("ERROR: database {0:?} is no longer configured for this account ([accounts.http] databases); nothing was done: submit the job again")]
    UnknownDatabase(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::NameError;
    use chrono::NaiveDate;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    /// The texts docs/file-format.md shows for rejected names and refused files.
    #[test]
    fn the_notices_read_as_documented() {
        let cases: [(String, &str); 7] = [
            (Rejection::NameNotUtf8.to_string(), "ERROR: file name is not valid UTF-8"),
            (
                Rejection::NotRegularFile.to_string(),
                "ERROR: not a regular file (links and special files are not processed)",
            ),
            (
                Rejection::Duplicate {
                    name: "forget-20261123_120000.json".into(),
                    received_at: "2026-11-23T00:38:48.499Z".into(),
                }
                .to_string(),
                "ERROR: a file named forget-20261123_120000.json was already submitted (received 2026-11-23T00:38:48.499Z); a name is processed once: submit it again under a new name",
            ),
            (
                Rejection::from(NameRejection::Past {
                    date: day(2018, 3, 15),
                    today: day(2026, 11, 23),
                    tz: "UTC".into(),
                })
                .to_string(),
                "ERROR: file is dated 2018-03-15 but today is 2026-11-23 (UTC): only files dated today are processed; submit it again with today's date",
            ),
            (
                Rejection::from(NameRejection::TooFarAhead {
                    date: day(2099, 12, 31),
                    today: day(2026, 11, 23),
                    tz: "UTC".into(),
                    max_future_days: 31,
                })
                .to_string(),
                "ERROR: file is dated 2099-12-31, more than 31 days after today (2026-11-23, UTC): a file may be dated at most 31 days ahead; submit it again closer to its date, or with today's date",
            ),
            (
                Rejection::from(NameRejection::from(NameError::Pattern)).to_string(),
                "ERROR: file name must be forget-YYYYMMDD_HHMMSS.json, export-YYYYMMDD_HHMMSS.json or pseudonymise-YYYYMMDD_HHMMSS.json (lowercase prefix, today's date)",
            ),
            (
                Refusal::File(FileError::TooLarge { limit: 10_485_760 }).to_string(),
                "ERROR: file is larger than the limit of 10485760 bytes",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        assert_eq!(
            Refusal::ClaimedCopyLost.to_string(),
            "ERROR: the claimed copy of this file was lost or changed after it was claimed; resubmit it under a new name"
        );
    }
}
