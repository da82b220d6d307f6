//! The survey: what each store holds for every contact of a file before any of it changes, so that a contact's
//! answer does not depend on the batch size.
//!
//! A forget runs in chunks, and one chunk can erase a record that a later chunk's contact also matched: the same
//! email in two requests, or a web session holding both an email and an IP address of the file. Run alone, the
//! later contact would find nothing and answer `SUCCESS: not found`, although the store held its device when the
//! file arrived. So before the first chunk of a file of several chunks, each store runs the forget's own scan for
//! every contact of the file and stops at its plan, changing nothing; the counts are journaled. Each contact's
//! count is then the larger of what the survey and its own chunk found: a record that held its device when the file
//! started counts for it, whichever contact's chunk erased it. A record holding the devices of two contacts counts
//! for both, as it does when both are in one batch.

use crate::journal::{Claim, JournalError};
use crate::requests::Kind;
use crate::stores::{Batch, Store, StoreError, Unreachable};
use std::collections::BTreeMap;
use tracing::warn;

/// Surveys every store of `names` for `batch` (all the targets of the claimed file), or reads the survey a run
/// before a restart journaled. Returns the counts per store; a store whose survey failed is left out.
///
/// # Errors
/// [`JournalError`] when the journal fails.
pub(super) fn survey(
    claim: &Claim,
    kind: Kind,
    stores: &mut BTreeMap<String, Box<dyn Store>>,
    names: &[String],
    batch: &Batch,
) -> Result<BTreeMap<String, Vec<u64>>, JournalError> {
    let n = batch.targets.len();
    let mut out = BTreeMap::new();
    for name in names {
        let found = match claim.survey(name)? {
            Some(found) => found,
            None => {
                let mut seen: Option<Vec<u64>> = None;
                if let Some(store) = stores.get_mut(name) {
                    let mut stop = |found: &[u64]| {
                        seen = Some(found.to_vec());
                        Err(StoreError::Journal(
                            "survey only: nothing is changed".into(),
                        ))
                    };
                    let result = match kind {
                        Kind::Pseudonymise => store.pseudonymise(batch, &mut stop),
                        _ => store.forget(batch, &mut stop),
                    };
                    match (&seen, result) {
                        // Stopping: the store is surveyed at the next start, before the first chunk.
                        (None, Err(StoreError::Unavailable(Unreachable::Stopped))) => continue,
                        (None, Err(e)) => {
                            warn!(store = %name, error = %e, "store could not be surveyed; each contact is answered from its own batch");
                        }
                        _ => {}
                    }
                }
                let found = seen.filter(|f| f.len() == n).unwrap_or_default();
                // An empty survey is journaled too: after a restart the store is not surveyed on changed data.
                claim.record_survey(name, &found)?;
                found
            }
        };
        if found.len() == n {
            out.insert(name.clone(), found);
        }
    }
    Ok(out)
}
