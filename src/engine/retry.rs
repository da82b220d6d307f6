//! `gdprd retry`: a finished forget (or pseudonymisation) whose stores could not do some contacts is run again
//! for those contacts, on the stores that failed (or the one asked for), as a claimed file of its own linked to
//! the original ([`crate::journal::Journal::retry`]). It runs like any forget: planned and journaled per chunk,
//! so a restart resumes it and nothing runs twice. Each contact is answered from what every store last did for
//! its device (the audit trail of the original and its earlier retries, and this run), and the follow-up log
//! `<stem>-execution-log-N.json` holds every contact's answer as it stands now.

use super::plan::Plan;
use super::{io_err, response, Engine, EngineError, Execution, Outcome, Response};
use crate::config::AccountConfig;
use crate::journal::{Claim, DeviceOutcomes, FileRecord, Journal, Position, RetryLink};
use crate::requests::name::stem;
use crate::results::{atomic, log};
use std::collections::HashMap;
use std::path::Path;
use tracing::info;

/// A retry at work: what it retries, and what was answered and done before it.
pub(super) struct RetryRun {
    /// Its link to the original.
    pub(super) link: RetryLink,
    /// The original file's record.
    original: FileRecord,
    /// The responses of the original with its earlier retries' laid over them.
    earlier: HashMap<Position, Response>,
    /// What each store did before for each device.
    pub(super) prior: DeviceOutcomes,
}

impl RetryRun {
    /// The retry `claim` (linked by `link`) of a file of `account`; `plan`, the whole file's, keeps only the
    /// devices with a contact to retry.
    ///
    /// # Errors
    /// [`EngineError`] when the journal fails or the original is unknown.
    pub(super) fn new(
        journal: &Journal,
        claim: &Claim,
        account: &AccountConfig,
        link: RetryLink,
        plan: &mut Plan,
    ) -> Result<RetryRun, EngineError> {
        let original = journal
            .record(link.original)?
            .ok_or(EngineError::RetryOrphan {
                id: claim.id(),
                original: link.original,
            })?;
        let (earlier, names) = journal.retried_responses(&original, link.attempt)?;
        let prior = journal.device_outcomes(&account.name, &names)?;
        plan.targets.retain(|t| {
            t.positions
                .iter()
                .any(|p| earlier.get(p).is_none_or(Response::is_retryable))
        });
        plan.invalid.clear();
        Ok(RetryRun {
            link,
            original,
            earlier,
            prior,
        })
    }
}

impl Engine {
    /// Runs the retry `ex` and writes its follow-up log: every contact's answer as it stands now.
    ///
    /// # Errors
    /// [`EngineError`] when the journal fails or the log cannot be written.
    pub(super) fn execute_retry(
        &mut self,
        ex: &Execution<'_>,
        run: &RetryRun,
        path: &Path,
    ) -> Result<Outcome, EngineError> {
        if self.forget(ex)? == Outcome::Interrupted {
            return Ok(Outcome::Interrupted);
        }
        let Execution {
            account,
            name,
            claim,
            file,
            ..
        } = *ex;
        let own = claim.responses()?;
        let mut now = run.earlier.clone();
        now.extend(own.iter().map(|(p, r)| (*p, r.clone())));
        let log_name = log::numbered_log_name(stem(&run.original.name), run.link.attempt);
        let log_bytes = log::execution_log(&file.raw_requests, |r, c| {
            now.get(&(r, c))
                .unwrap_or(&Response::NotRecorded)
                .to_string()
        });
        atomic::write(&Self::result_dir(account)?, &log_name, &log_bytes)
            .map_err(io_err(format!("cannot write {log_name}")))?;
        let counts = response::tally(own.values());
        claim.finish(std::slice::from_ref(&log_name), counts, None)?;
        let left = now.values().filter(|r| r.is_retryable()).count();
        if left == 0 {
            // Nothing is left to retry: the devices kept for it go.
            self.journal.drop_retry_copy(run.original.id)?;
        }
        info!(
            account = %account.name, file = %run.original.name, retry = run.link.attempt, stores = ?run.link.stores,
            success = counts.success, not_found = counts.not_found, errors = counts.errors, still_open = left,
            "retry done"
        );
        crate::metrics::get().file("done", counts.success, counts.not_found, counts.errors);
        self.leave_submit(account, name, path, claim)?;
        Ok(Outcome::Done)
    }
}
