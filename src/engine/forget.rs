//! A forget (or pseudonymisation) runs in chunks: each store's step of a chunk is planned in the journal before
//! it changes anything, and the chunk's responses are journaled when it completes, so a restart resumes at the
//! first chunk not done. A file of several chunks is surveyed first (see `survey`).

use super::chunk::Chunk;
use super::isolation::{ForgetStep, Opened, StoreOutcome};
use super::{survey, Engine, EngineError, Execution, Outcome, StoreFailure};
use crate::backoff::Backoff;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use tracing::{info, warn};

/// The first wait for an unavailable store (see `[engine] retry_window`); it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest wait between two tries of an unavailable store.
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(300);

/// How often a file waiting for stores renews its lease.
const RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The stores of a chunk that could not be reached or opened for some of its targets, in the account's order.
fn unavailable_stores(per_store: &[StoreOutcome]) -> Vec<String> {
    per_store
        .iter()
        .filter(|s| {
            s.targets
                .iter()
                .any(|t| t.as_ref().is_err_and(|e| e.unavailable))
        })
        .map(|s| s.name.clone())
        .collect()
}

/// How often a long forget logs its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Engine {
    /// Runs the forget (or pseudonymisation) `ex`, from its first chunk not done; [`Outcome::Interrupted`] when
    /// a stop came between two chunks.
    ///
    /// # Errors
    /// [`EngineError`] when the journal fails.
    pub(super) fn forget(&mut self, ex: &Execution<'_>) -> Result<Outcome, EngineError> {
        let Execution {
            account,
            name,
            kind,
            claim,
            plan,
            stores,
            ..
        } = *ex;
        let chunks = plan.chunks(claim.batch_size());
        let total = plan.targets.len();
        let began = std::time::Instant::now();
        let mut last_report = began;
        let mut done_here = 0usize;
        let window = self.config.engine.retry_window.0;
        let mut opened: BTreeMap<String, Result<(), StoreFailure>> = stores
            .iter()
            .map(|s| (s.clone(), self.open_store(s)))
            .collect();
        // Several chunks: what every store held for each contact before the first one changed anything.
        let surveyed = if chunks.len() > 1 {
            let batch = plan.batch(0..total);
            survey::survey(claim, kind, &mut self.stores, stores, &batch)?
        } else {
            BTreeMap::new()
        };
        for (ci, range) in chunks.iter().enumerate() {
            if claim.chunk_done(ci)? {
                continue;
            }
            if self.stop.is_cancelled() {
                info!(account = %account.name, file = name, chunk = ci, "stopping between chunks; the file resumes at the next start");
                return Ok(Outcome::Interrupted);
            }
            let started = Utc::now();
            let batch = plan.batch(range.clone());
            let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX).with_jitter();
            let per_store = loop {
                let mut per_store = Vec::new();
                for store_name in stores {
                    if !self.stores.contains_key(store_name) {
                        opened.insert(store_name.clone(), self.open_store(store_name));
                    }
                    let step = ForgetStep {
                        claim,
                        kind,
                        chunk: ci,
                        name: store_name,
                        batch: &batch,
                    };
                    let store: Opened<'_> = match self.stores.get_mut(store_name) {
                        Some(store) => Ok(store.as_mut()),
                        None => Err(match opened.get(store_name) {
                            Some(Err(failure)) => failure.clone(),
                            _ => StoreFailure::unavailable(store_name, "not opened"),
                        }),
                    };
                    let mut outcome = step.run(store)?;
                    if let Some(held) = surveyed.get(store_name) {
                        outcome.at_least(&held[range.clone()]);
                    }
                    per_store.push(outcome);
                }
                let unavailable = unavailable_stores(&per_store);
                if unavailable.is_empty() || self.stop.is_cancelled() {
                    break per_store;
                }
                let waiting = claim.wait_for(&unavailable)?;
                let waited = DateTime::parse_from_rfc3339(&waiting.since)
                    .ok()
                    .and_then(|since| (Utc::now() - since.with_timezone(&Utc)).to_std().ok())
                    .unwrap_or_default();
                let Some(left) = window.checked_sub(waited).filter(|l| !l.is_zero()) else {
                    info!(account = %account.name, file = name, stores = ?unavailable, tries = waiting.tries, "the retry window has passed: the contacts these stores did not do are answered ERROR");
                    break per_store;
                };
                let pause = backoff.next_delay().min(left);
                info!(account = %account.name, file = name, stores = ?unavailable, tries = waiting.tries, retry_in_seconds = pause.as_secs_f64(), "stores unavailable: the file waits for them and tries again");
                // Slept in slices, renewing the file's lease (a cluster's ledger) so no other node takes it over.
                let mut rest = pause;
                while !rest.is_zero() {
                    let slice = rest.min(RENEW_EVERY);
                    if !crate::backoff::sleep_blocking(&self.stop, slice) {
                        info!(account = %account.name, file = name, chunk = ci, "stopping while waiting for stores; the file resumes at the next start");
                        return Ok(Outcome::Interrupted);
                    }
                    rest -= slice;
                    claim.renew()?;
                }
                // Each unavailable store is opened afresh for the next try (a new connection).
                for store in &unavailable {
                    self.stores.remove(store);
                }
            };
            if self.stop.is_cancelled() && per_store.iter().any(StoreOutcome::any_error) {
                // The stop may be what failed a store (it gave up waiting to try again): the chunk is left to the
                // next start, which runs its unfinished steps again.
                info!(account = %account.name, file = name, chunk = ci, "stopping in a chunk a store did not finish; the file resumes at the next start");
                return Ok(Outcome::Interrupted);
            }
            let (responses, audit) = Chunk {
                range: range.clone(),
                per_store: &per_store,
                with_invalid: ci == 0,
                started,
            }
            .journal(ex);
            claim.complete_chunk(ci, &responses, &audit)?;
            claim.done_waiting()?;
            done_here += range.len();
            let last = ci + 1 == chunks.len();
            if chunks.len() > 1 && (last || last_report.elapsed() >= PROGRESS_EVERY) {
                let secs = began.elapsed().as_secs_f64().max(0.001);
                info!(
                    account = %account.name,
                    file = name,
                    done = range.end,
                    total,
                    per_second = (done_here as f64 / secs).round(),
                    kind = kind.prefix(),
                    "forget progress"
                );
                last_report = std::time::Instant::now();
            }
        }
        for store_name in stores {
            if let Some(store) = self.stores.get_mut(store_name) {
                if let Err(e) = store.finish_forget() {
                    warn!(store = %store_name, file = name, error = %e, "clean-up after the forget failed; old copies of forgotten values may stay in the store's free space until the next forget");
                }
            }
        }
        Ok(Outcome::Done)
    }
}
