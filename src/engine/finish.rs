//! How a file leaves: its execution log (or refusal, or rejection notice) written and the journal told, then the
//! submission taken out of `GDPR_Submit`, only if it is still the file that was claimed.

use super::{
    io_err, response, Engine, EngineError, Execution, Outcome, Refusal, Rejection, Response,
};
use crate::config::AccountConfig;
use crate::journal::{AuditEntry, Claim, Counts, Leaving};
use crate::requests::name::stem;
use crate::requests::Kind;
use crate::results::atomic::remove_if_present;
use crate::results::{atomic, log};
use chrono::Utc;
use serde_json::Value;
use std::path::Path;
use tracing::{info, warn};

impl Engine {
    /// Finishes an executed file: its execution log from the journaled responses, the ledger's counts, then
    /// the submission at `path` leaves `GDPR_Submit`. An export's archive is already written.
    ///
    /// # Errors
    /// [`EngineError`] when the journal fails or the log cannot be written.
    pub(super) fn finish_done(
        &mut self,
        ex: &Execution<'_>,
        path: &Path,
    ) -> Result<Outcome, EngineError> {
        let Execution {
            account,
            name,
            kind,
            claim,
            file,
            ..
        } = *ex;
        let log_name = log::log_name(stem(name));
        let mut results = vec![log_name.clone()];
        if kind == Kind::Export {
            results.push(log::archive_name(stem(name)));
        }
        let responses = claim.responses()?;
        let log_bytes = log::execution_log(&file.raw_requests, |r, c| {
            responses
                .get(&(r, c))
                .unwrap_or(&Response::NotRecorded)
                .to_string()
        });
        let counts = response::tally(responses.values());
        atomic::write(&Self::result_dir(account)?, &log_name, &log_bytes)
            .map_err(io_err(format!("cannot write {log_name}")))?;
        claim.finish(&results, counts, None)?;
        info!(
            account = %account.name, file = name, success = counts.success, not_found = counts.not_found,
            errors = counts.errors, "file done"
        );
        crate::metrics::get().file("done", counts.success, counts.not_found, counts.errors);
        self.leave_submit(account, name, path, claim)?;
        Ok(Outcome::Done)
    }

    /// Finishes a file refused whole (`error`): a log that says why, with its requests when they could be read
    /// (`raw`), an audit entry, then the submission leaves `GDPR_Submit`.
    pub(super) fn finish_refused(
        &mut self,
        account: &AccountConfig,
        name: &str,
        path: &Path,
        claim: &Claim,
        refusal: &Refusal,
        raw: Option<&[Value]>,
    ) -> Result<Outcome, EngineError> {
        let error = &refusal.to_string();
        let log_name = log::log_name(stem(name));
        atomic::write(
            &Self::result_dir(account)?,
            &log_name,
            &log::refused_log(name, error, raw),
        )
        .map_err(io_err(format!("cannot write {log_name}")))?;
        let now = Utc::now();
        claim.audit(&AuditEntry {
            account: account.name.clone(),
            file: name.to_owned(),
            requestcase: None,
            device_type: None,
            device_hmac: None,
            action: "refuse".into(),
            stores: "{}".into(),
            outcome: error.to_owned(),
            started: now,
            finished: now,
        })?;
        claim.finish(&[log_name], Counts::default(), Some(error))?;
        self.leave_submit(account, name, path, claim)?;
        Ok(Outcome::Done)
    }

    /// The submission leaves `GDPR_Submit` once its result is in place; the claimed copy goes with it (see
    /// [`Claim::leave_submit`]). A file under the name that is not the one claimed (it was replaced, or changed
    /// in place, while the claimed copy ran) is a new submission under a name already used: it gets the
    /// duplicate-name notice, like any other, instead of vanishing unread.
    pub(super) fn leave_submit(
        &mut self,
        account: &AccountConfig,
        name: &str,
        path: &Path,
        claim: &Claim,
    ) -> Result<(), EngineError> {
        let cap = self.config.limits.max_file_bytes.saturating_add(1);
        let submit = account.submit_dir();
        if let Leaving::Replaced(holding) = claim.leave_submit(&submit, path, cap)? {
            warn!(account = %account.name, file = name, "the file in GDPR_Submit is not the one claimed: it was replaced while the claimed one ran; it is rejected as a duplicate name");
            self.reject(
                account,
                name,
                &holding,
                Rejection::duplicate(name, claim.record()),
            )?;
        }
        claim.mark_removed(&submit)?;
        Ok(())
    }

    /// Rejects a name without executing it (`reason`): a rejection notice beside the earlier ones, an audit entry,
    /// and the file is removed from `GDPR_Submit`.
    pub(super) fn reject(
        &mut self,
        account: &AccountConfig,
        name: &str,
        path: &Path,
        rejection: Rejection,
    ) -> Result<Outcome, EngineError> {
        let reason = rejection.to_string();
        // A name rejected again (a duplicate resubmission) gets a notice of its own beside the earlier ones.
        atomic::write_new(
            &Self::result_dir(account)?,
            log::rejected_names(stem(name)),
            &log::rejection_notice(name, &reason),
        )
        .map_err(io_err(format!(
            "cannot write {}",
            log::rejected_name(stem(name))
        )))?;
        let now = Utc::now();
        let entry = AuditEntry {
            account: account.name.clone(),
            file: name.to_owned(),
            requestcase: None,
            device_type: None,
            device_hmac: None,
            action: "reject".into(),
            stores: "{}".into(),
            outcome: reason.clone(),
            started: now,
            finished: now,
        };
        self.journal.reject(&account.name, name, &reason, &entry)?;
        remove_if_present(path)
            .map_err(io_err(format!("cannot remove {name} from GDPR_Submit")))?;
        self.journal.mark_removed(&account.name, name)?;
        info!(account = %account.name, file = name, reason = %reason, "file rejected");
        crate::metrics::get().file("rejected", 0, 0, 0);
        Ok(Outcome::Rejected)
    }
}
