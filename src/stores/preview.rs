//! A preview: what a store would do for a batch, counted without changing anything ([`Store::preview`]).
//!
//! Each store runs the scan its forget, pseudonymisation or export runs, inside a read snapshot and without
//! locking a row, and counts instead of changing: the rows found per target (what the contact's response is made
//! from), and per table (or CSV list) the rows that would be erased, deleted, masked or exported, the callbacks
//! that would be cancelled first and the recordings that would be deleted. A row whose own data would make the
//! change fail (a recording path outside `files_root`) is reported against the targets it answers, as the
//! per-contact isolation of a real run would answer them.
//!
//! [`Store::preview`]: super::Store::preview

use super::callback_state;
use super::{Found, MappingError, StoreError, TableMapping};
use crate::requests::Kind;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// What a request does to a matching row of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A forget anonymises the row in place (`forget = "anonymise"`): device columns get placeholders (or the
    /// keyed hash in a suppression list), personal columns are redacted.
    Erase,
    /// A forget deletes the row (`forget = "delete"`).
    Delete,
    /// A pseudonymisation masks the row's mask columns.
    Mask,
    /// An export copies the row into the archive.
    Export,
}

impl Action {
    /// What a request of `kind` does to the rows of `table`; `None` when it does not look at the table (an export
    /// of a table with `export = false`, a pseudonymisation of a table with nothing to mask).
    pub fn of(kind: Kind, table: &TableMapping) -> Option<Action> {
        match kind {
            Kind::Forget => Some(match table.forget {
                super::ForgetMode::Anonymise => Action::Erase,
                super::ForgetMode::Delete => Action::Delete,
            }),
            Kind::Pseudonymise => (!table.mask_columns().is_empty()).then_some(Action::Mask),
            Kind::Export => table.export.then_some(Action::Export),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Erase => "erase",
            Action::Delete => "delete",
            Action::Mask => "mask",
            Action::Export => "export",
        })
    }
}

/// What a request would do in one table (or CSV list, or a callback service's callbacks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TablePreview {
    /// The table's name (a CSV list's file name; `callbacks` for a callback service).
    pub table: String,
    /// What happens to each matching row.
    pub action: Action,
    /// Matching rows: each counted once, whatever number of contacts it answers.
    pub rows: u64,
    /// Of those, callbacks a dialer may be working on, cancelled before the forget (forget only).
    pub callbacks_cancelled: u64,
    /// Of those, rows naming a recording the forget deletes (forget only).
    pub recordings_deleted: u64,
}

impl TablePreview {
    /// Nothing counted yet in `table`.
    pub fn new(table: impl Into<String>, action: Action) -> TablePreview {
        TablePreview {
            table: table.into(),
            action,
            rows: 0,
            callbacks_cancelled: 0,
            recordings_deleted: 0,
        }
    }
}

/// What a store would do for a batch.
#[derive(Debug, Default)]
pub struct StorePreview {
    /// Rows found per target, as the forget (or export) would report them.
    pub found: Found,
    /// Targets whose own rows would make the change fail in this store, with the error they would get.
    pub refused: BTreeMap<usize, StoreError>,
    /// What each table would go through, in mapping order.
    pub tables: Vec<TablePreview>,
}

impl StorePreview {
    /// Nothing found yet for a batch of `n` targets.
    pub fn new(n: usize) -> StorePreview {
        StorePreview {
            found: vec![0; n],
            refused: BTreeMap::new(),
            tables: Vec::new(),
        }
    }

    /// Counts one matching row of `table` that answers `targets`. For a forget, `state` is its callback state
    /// (when the table maps one) and `file` its recording (when the table maps one), whose path must lie inside
    /// `files_root` or the row's targets are refused, as the forget would refuse them.
    pub(crate) fn row(
        &mut self,
        table: &mut TablePreview,
        targets: &[usize],
        state: Option<&str>,
        file: Option<&str>,
        files_root: Option<&Path>,
    ) {
        table.rows += 1;
        for &t in targets {
            if let Some(f) = self.found.get_mut(t) {
                *f += 1;
            }
        }
        if !matches!(table.action, Action::Erase | Action::Delete) {
            return;
        }
        if state.is_some_and(callback_state::is_in_flight) {
            table.callbacks_cancelled += 1;
        }
        if let Some(file) = file {
            match super::recording_path(files_root, file) {
                Ok(_) => table.recordings_deleted += 1,
                Err(_) => {
                    for &t in targets {
                        let why = if files_root.is_none() {
                            MappingError::NoFilesRoot
                        } else {
                            MappingError::RecordingOutside
                        };
                        self.refused.insert(t, why.into());
                    }
                }
            }
        }
    }
}
