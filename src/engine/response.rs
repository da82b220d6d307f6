//! A contact's response: what gdprd answers for one contact of a file.
//!
//! The [`Response`] is the outcome; its `Display` is the wire text customers read in the execution log and the
//! HTTP job response (`SUCCESS`, `SUCCESS: not found`, `ERROR: …`, see docs/file-format.md). Counts and decisions
//! come from the enum ([`Response::kind`]), never from matching the text. The journal keeps the text; reading it
//! back goes through [`Response::parse`] once, at the journal's boundary.

use crate::journal::Counts;
use crate::requests::{DeviceError, Kind, RuleError};
use crate::stores::StoreError;
use std::fmt;

/// The text of [`Response::Success`].
const SUCCESS: &str = "SUCCESS";
/// The text of [`Response::NotFound`].
const NOT_FOUND: &str = "SUCCESS: not found";
/// The text of [`Response::NotRecorded`].
const NOT_RECORDED: &str = "ERROR: no response was recorded for this contact; resubmit it";

/// What a contact was answered, in one of the three classes that are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseKind {
    /// `SUCCESS`: found and done.
    Success,
    /// `SUCCESS: not found`: no store holds the device.
    NotFound,
    /// `ERROR: …`: the contact was not (completely) done.
    Error,
}

impl ResponseKind {
    /// The class of a response text as the journal holds it, without building the whole [`Response`].
    pub fn of_text(text: &str) -> ResponseKind {
        match text {
            SUCCESS => ResponseKind::Success,
            NOT_FOUND => ResponseKind::NotFound,
            _ => ResponseKind::Error,
        }
    }
}

/// Why one store could not do its part for a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailure {
    /// The store's name.
    pub store: String,
    /// Whether the store could not be reached or opened (nothing was done there), rather than failed.
    pub unavailable: bool,
    /// The error, as the store reported it (no stored values).
    pub reason: String,
}

impl StoreFailure {
    /// The store `store` could not be opened or reached.
    pub fn unavailable(store: &str, reason: impl Into<String>) -> StoreFailure {
        StoreFailure {
            store: store.to_owned(),
            unavailable: true,
            reason: reason.into(),
        }
    }

    /// The store `store` failed with `error`: unavailable when the server could not be reached.
    pub fn from_error(store: &str, error: &StoreError) -> StoreFailure {
        StoreFailure {
            store: store.to_owned(),
            unavailable: matches!(error, StoreError::Unavailable(_)),
            reason: error.to_string(),
        }
    }
}

impl fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.unavailable {
            "unavailable"
        } else {
            "failed"
        };
        write!(f, "store {:?} {what}: {}", self.store, self.reason)
    }
}

/// A contact's response. `Display` gives its wire text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Found in at least one store, and done there (forgotten, exported or masked).
    Success,
    /// No store holds the device within the request's scope.
    NotFound,
    /// The contact is not a valid device; nothing was done for it.
    Malformed(DeviceError),
    /// The contact's request breaks its account's `[accounts.requests]` rules; nothing was done for it.
    Refused(RuleError),
    /// At least one store failed for the contact (even if another found it) during a file of `kind`.
    StoresFailed {
        /// What the file asked for: it says what is left undone.
        kind: Kind,
        /// Each failing store, in the account's order; never empty.
        failures: Vec<StoreFailure>,
    },
    /// No response was journaled for the contact.
    NotRecorded,
    /// An error response read back from the journal, as its whole text: the journal keeps the text, not the
    /// structure of a store failure.
    Recorded(String),
}

impl Response {
    /// Whether the response is a success, a not found or an error.
    pub fn kind(&self) -> ResponseKind {
        match self {
            Response::Success => ResponseKind::Success,
            Response::NotFound => ResponseKind::NotFound,
            Response::Malformed(_)
            | Response::Refused(_)
            | Response::StoresFailed { .. }
            | Response::NotRecorded
            | Response::Recorded(_) => ResponseKind::Error,
        }
    }

    /// Whether gdprd owes work for this response: an `ERROR` other than the refusal of a contact that is not a
    /// valid device (a store failed or was unavailable, or no response was recorded). Such a response keeps its
    /// file open (see [`crate::deadline`]); a refused device is an answer, its sender must send it again.
    pub fn is_owed(&self) -> bool {
        self.kind() == ResponseKind::Error && !matches!(self, Response::Malformed(_))
    }

    /// Whether `gdprd retry` can run the contact again: a store failed for it, or no response was recorded (a
    /// contact that is not a valid device, or that breaks its account's rules, is not).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Response::StoresFailed { .. } | Response::NotRecorded | Response::Recorded(_)
        )
    }

    /// Whether the device was found (and done) in a store.
    pub fn is_found(&self) -> bool {
        self.kind() == ResponseKind::Success
    }

    /// Reads a response text back, as the journal holds it; `parse(r.to_string())` displays as `r` does, and
    /// has the same [`kind`](Response::kind). A store failure comes back as [`Response::Recorded`].
    pub fn parse(text: &str) -> Response {
        match text {
            SUCCESS => return Response::Success,
            NOT_FOUND => return Response::NotFound,
            NOT_RECORDED => return Response::NotRecorded,
            _ => {}
        }
        if let Some(e) = DeviceError::ALL.into_iter().find(|e| e.to_string() == text) {
            return Response::Malformed(e);
        }
        RuleError::ALL
            .into_iter()
            .find(|e| e.to_string() == text)
            .map_or_else(|| Response::Recorded(text.to_owned()), Response::Refused)
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Success => f.write_str(SUCCESS),
            Response::NotFound => f.write_str(NOT_FOUND),
            Response::Malformed(e) => write!(f, "{e}"),
            Response::Refused(e) => write!(f, "{e}"),
            Response::StoresFailed { kind, failures } => {
                f.write_str("ERROR: ")?;
                for failure in failures {
                    write!(f, "{failure}; ")?;
                }
                f.write_str(match kind {
                    Kind::Forget => "the forget is not complete there (resubmit to finish it)",
                    Kind::Export => "its data from there is not in the archive (resubmit)",
                    Kind::Pseudonymise => {
                        "the pseudonymisation is not complete there (resubmit to finish it)"
                    }
                })
            }
            Response::NotRecorded => f.write_str(NOT_RECORDED),
            Response::Recorded(text) => f.write_str(text),
        }
    }
}

/// The counts of a file's responses.
pub fn tally<'a>(responses: impl IntoIterator<Item = &'a Response>) -> Counts {
    let mut counts = Counts::default();
    for response in responses {
        match response.kind() {
            ResponseKind::Success => counts.success += 1,
            ResponseKind::NotFound => counts.not_found += 1,
            ResponseKind::Error => counts.errors += 1,
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(store: &str, unavailable: bool, reason: &str) -> StoreFailure {
        StoreFailure {
            store: store.to_owned(),
            unavailable,
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn the_wire_text_is_todays() {
        assert_eq!(Response::Success.to_string(), "SUCCESS");
        assert_eq!(Response::NotFound.to_string(), "SUCCESS: not found");
        assert_eq!(
            Response::Malformed(DeviceError::Phone).to_string(),
            DeviceError::Phone.to_string()
        );
        assert_eq!(
            Response::StoresFailed {
                kind: Kind::Forget,
                failures: vec![failure("b", false, "boom")],
            }
            .to_string(),
            "ERROR: store \"b\" failed: boom; the forget is not complete there (resubmit to finish it)"
        );
        assert_eq!(
            Response::StoresFailed {
                kind: Kind::Export,
                failures: vec![failure("a", true, "refused"), failure("b", false, "x; y")],
            }
            .to_string(),
            "ERROR: store \"a\" unavailable: refused; store \"b\" failed: x; y; its data from there is not in the archive (resubmit)"
        );
        assert_eq!(
            Response::StoresFailed {
                kind: Kind::Pseudonymise,
                failures: vec![failure("c", true, "gone")],
            }
            .to_string(),
            "ERROR: store \"c\" unavailable: gone; the pseudonymisation is not complete there (resubmit to finish it)"
        );
        assert_eq!(
            Response::NotRecorded.to_string(),
            "ERROR: no response was recorded for this contact; resubmit it"
        );
    }

    #[test]
    fn parsing_the_text_back_keeps_its_text_and_kind() {
        let mut responses = vec![
            Response::Success,
            Response::NotFound,
            Response::NotRecorded,
            Response::StoresFailed {
                kind: Kind::Forget,
                failures: vec![failure("a", false, "boom"), failure("b", true, "down")],
            },
            Response::Recorded("ERROR: something older".to_owned()),
        ];
        responses.extend(DeviceError::ALL.into_iter().map(Response::Malformed));
        responses.extend(RuleError::ALL.into_iter().map(Response::Refused));
        for response in responses {
            let text = response.to_string();
            let back = Response::parse(&text);
            assert_eq!(back.to_string(), text);
            assert_eq!(back.kind(), response.kind(), "{text}");
            assert_eq!(ResponseKind::of_text(&text), response.kind(), "{text}");
            if !matches!(response, Response::StoresFailed { .. }) {
                assert_eq!(
                    back, response,
                    "only a store failure's structure is not kept"
                );
            }
        }
    }

    #[test]
    fn counts_come_from_the_kinds() {
        let responses = [
            Response::Success,
            Response::Success,
            Response::NotFound,
            Response::Malformed(DeviceError::Email),
            Response::Recorded("SUCCESS ".to_owned()),
        ];
        assert_eq!(
            tally(&responses),
            Counts {
                success: 2,
                not_found: 1,
                errors: 2
            }
        );
        assert!(Response::Success.is_found());
        assert!(!Response::NotFound.is_found());
    }
}
