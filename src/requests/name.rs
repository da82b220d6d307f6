//! Submission file names: `forget-YYYYMMDD_HHMMSS.json`, `export-YYYYMMDD_HHMMSS.json` and
//! `pseudonymise-YYYYMMDD_HHMMSS.json`, the names that are uploads still in progress, and when a named file is due.

use chrono::{NaiveDate, NaiveDateTime};
use std::fmt;

/// What a submission asks for, from its name's prefix or its requests' `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Right of erasure: anonymise or delete every matching record.
    Forget,
    /// Right of access: every matching record as CSV in a ZIP archive.
    Export,
    /// Pseudonymisation: the configured columns of every matching record are masked, nothing is deleted.
    Pseudonymise,
}

impl Kind {
    /// The `type` value in a request (`FORGET` / `EXPORT`).
    pub fn as_type(self) -> &'static str {
        match self {
            Kind::Forget => "FORGET",
            Kind::Export => "EXPORT",
            Kind::Pseudonymise => "PSEUDONYMISE",
        }
    }

    /// The file name prefix (`forget` / `export`).
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Forget => "forget",
            Kind::Export => "export",
            Kind::Pseudonymise => "pseudonymise",
        }
    }

    /// Reads a request's `type` value; exact, upper case.
    pub fn from_type(value: &str) -> Option<Kind> {
        match value {
            "FORGET" => Some(Kind::Forget),
            "EXPORT" => Some(Kind::Export),
            "PSEUDONYMISE" => Some(Kind::Pseudonymise),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_type())
    }
}

/// A well-formed submission name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    /// `forget`, `export` or `pseudonymise`.
    pub kind: Kind,
    /// The date and time written in the name.
    pub stamp: NaiveDateTime,
}

/// When a well-formed name is due, against today's date in the account's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Dated today: process now.
    Today,
    /// Dated later: leave it in place until that day.
    Future,
    /// Dated earlier: refuse it.
    Past,
}

/// Why a name is not a submission name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name does not have the `forget-YYYYMMDD_HHMMSS.json` / `export-…` shape.
    #[error("ERROR: file name must be forget-YYYYMMDD_HHMMSS.json, export-YYYYMMDD_HHMMSS.json or pseudonymise-YYYYMMDD_HHMMSS.json (lowercase prefix, today's date)")]
    Pattern,
    /// The shape is right but the digits are not a real calendar date and time.
    #[error("ERROR: file name has no real date and time: {0} is not a valid YYYYMMDD_HHMMSS")]
    Date(String),
}

/// True for names that are uploads in progress and must be ignored without notice: hidden names (lftp's
/// `.in.NAME.`, the embedded server's own temporaries) and the temporary suffixes SFTP clients use (WinSCP
/// `.filepart`, `.part`, `.tmp`, rclone `.partial`).
pub fn is_in_progress(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with(".filepart")
        || name.ends_with(".part")
        || name.ends_with(".partial")
        || name.ends_with(".tmp")
}

/// The origin, in a front-door file's name, of a job made by the WCA paths (`/rest/databases/{databaseId}/…`):
/// the database id follows it.
pub const WCA_ORIGIN: &str = "wca";

/// The name of a request file the HTTP front doors make: `<prefix>-<origin>-<stamp>-<tag>.json`, or for a WCA
/// database job `<prefix>-wca-<database>-<stamp>-<tag>.json`. The database is in the name so that the claimed file
/// carries it through a restart: its job runs against that database's stores only ([`job_database`]). A database
/// id is letters, digits and `_` (checked at load), so it never holds the `-` that separates the parts.
pub fn job_name(
    kind: Kind,
    origin: &str,
    database: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
    tag: u32,
) -> String {
    let origin = match database {
        Some(db) => format!("{WCA_ORIGIN}-{db}"),
        None => origin.to_owned(),
    };
    format!(
        "{}-{origin}-{}-{tag:08x}.json",
        kind.prefix(),
        at.format("%Y%m%d_%H%M%S")
    )
}

/// The WCA database a front-door file's name names ([`job_name`]), if any.
pub fn job_database(name: &str) -> Option<&str> {
    let mut parts = name.split('-');
    let _prefix = parts.next()?;
    (parts.next()? == WCA_ORIGIN).then_some(())?;
    let database = parts.next()?;
    // Then the stamp and the tag: a drop-folder name never has them after a third part.
    (parts.next().is_some() && parts.next().is_some() && parts.next().is_none()).then_some(database)
}

/// The name without its `.json` extension, the stem every result name starts with.
pub fn stem(name: &str) -> &str {
    name.strip_suffix(".json").unwrap_or(name)
}

impl FileName {
    /// Parses a submission name.
    ///
    /// # Errors
    /// [`NameError::Pattern`] for any other shape, [`NameError::Date`] for an impossible date or time.
    pub fn parse(name: &str) -> Result<FileName, NameError> {
        let (kind, rest) = if let Some(rest) = name.strip_prefix("forget-") {
            (Kind::Forget, rest)
        } else if let Some(rest) = name.strip_prefix("export-") {
            (Kind::Export, rest)
        } else if let Some(rest) = name.strip_prefix("pseudonymise-") {
            (Kind::Pseudonymise, rest)
        } else {
            return Err(NameError::Pattern);
        };
        let stamp = rest.strip_suffix(".json").ok_or(NameError::Pattern)?;
        let b = stamp.as_bytes();
        let shape_ok = b.len() == 15
            && b[8] == b'_'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 8 || c.is_ascii_digit());
        if !shape_ok {
            return Err(NameError::Pattern);
        }
        let stamp_time = NaiveDateTime::parse_from_str(stamp, "%Y%m%d_%H%M%S")
            .map_err(|_| NameError::Date(stamp.to_owned()))?;
        Ok(FileName {
            kind,
            stamp: stamp_time,
        })
    }

    /// Whether the file is due on `today`.
    pub fn due(&self, today: NaiveDate) -> Due {
        let date = self.stamp.date();
        match date.cmp(&today) {
            std::cmp::Ordering::Equal => Due::Today,
            std::cmp::Ordering::Greater => Due::Future,
            std::cmp::Ordering::Less => Due::Past,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wca_jobs_name_carries_its_database() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .expect("time")
            .to_utc();
        let name = job_name(Kind::Forget, "api", Some("10091"), at, 0x1f);
        assert_eq!(name, "forget-wca-10091-20261129_120000-0000001f.json");
        assert_eq!(job_database(&name), Some("10091"));
        let plain = job_name(Kind::Export, "api", None, at, 7);
        assert_eq!(plain, "export-api-20261129_120000-00000007.json");
        assert_eq!(job_database(&plain), None);
        assert_eq!(job_database("forget-20261129_120000.json"), None);
        assert_eq!(job_database("forget-wca-20261129_120000.json"), None);
    }
    use proptest::prelude::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    #[test]
    fn seed_examples_parse() {
        let f = FileName::parse("forget-20180315_120000.json").expect("forget name");
        assert_eq!(f.kind, Kind::Forget);
        assert_eq!(f.stamp.to_string(), "2018-03-15 12:00:00");
        let e = FileName::parse("export-20180315_120000.json").expect("export name");
        assert_eq!(e.kind, Kind::Export);
        let p = FileName::parse("pseudonymise-20180315_120000.json").expect("pseudonymise name");
        assert_eq!(p.kind, Kind::Pseudonymise);
        assert_eq!(Kind::from_type("PSEUDONYMISE"), Some(Kind::Pseudonymise));
    }

    #[test]
    fn due_compares_the_date_only() {
        let f = FileName::parse("forget-20180315_235959.json").expect("name");
        assert_eq!(f.due(day("2018-03-15")), Due::Today);
        assert_eq!(f.due(day("2018-03-16")), Due::Past);
        assert_eq!(f.due(day("2018-03-14")), Due::Future);
    }

    #[test]
    fn wrong_shapes_are_refused() {
        for name in [
            "Forget-20180315_120000.json",
            "FORGET-20180315_120000.json",
            "delete-20180315_120000.json",
            "forget-20180315-120000.json",
            "forget-20180315_120000.JSON",
            "forget-20180315_120000.json.txt",
            "forget-2018315_120000.json",
            "forget-20180315_1200000.json",
            "forget-２0180315_120000.json",
            "forget_20180315_120000.json",
            "notes.txt",
            "",
        ] {
            assert_eq!(FileName::parse(name), Err(NameError::Pattern), "{name}");
        }
    }

    #[test]
    fn impossible_dates_are_refused() {
        for name in [
            "forget-20180230_120000.json",
            "forget-20181301_120000.json",
            "forget-20180315_246000.json",
            "export-20190229_000000.json",
        ] {
            assert!(
                matches!(FileName::parse(name), Err(NameError::Date(_))),
                "{name}"
            );
        }
        assert!(FileName::parse("export-20200229_000000.json").is_ok());
    }

    #[test]
    fn in_progress_names() {
        for name in [
            ".forget-x.json",
            "a.filepart",
            "forget-20180315_120000.json.part",
            "x.tmp",
            "forget-20180315_120000.json.a1b2c3d4.partial",
            ".in.forget-20180315_120000.json.",
        ] {
            assert!(is_in_progress(name), "{name}");
        }
        assert!(!is_in_progress("forget-20180315_120000.json"));
        assert_eq!(
            stem("forget-20180315_120000.json"),
            "forget-20180315_120000"
        );
        assert_eq!(stem("notes.txt"), "notes.txt");
    }

    proptest! {
        #[test]
        fn any_valid_stamp_round_trips(secs in 0i64..4_102_444_800i64, forget in any::<bool>()) {
            let t = chrono::DateTime::from_timestamp(secs, 0).expect("in range").naive_utc();
            let prefix = if forget { "forget" } else { "export" };
            let name = format!("{prefix}-{}.json", t.format("%Y%m%d_%H%M%S"));
            let parsed = FileName::parse(&name).expect("valid name");
            prop_assert_eq!(parsed.stamp, t);
            prop_assert_eq!(parsed.kind.prefix(), prefix);
            prop_assert_eq!(parsed.due(t.date()), Due::Today);
        }

        #[test]
        fn arbitrary_names_never_panic(name in ".{0,40}") {
            let _ = FileName::parse(&name);
            let _ = is_in_progress(&name);
        }

        #[test]
        fn names_with_extra_characters_are_refused(extra in "[a-z0-9_ .-]{1,5}") {
            let name = format!("forget-20180315_120000{extra}.json");
            prop_assert!(FileName::parse(&name).is_err());
        }
    }
}
