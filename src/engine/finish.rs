//! How a file leaves: its execution log (or refusal, or rejection notice) written and the ledger told, then the
//! submission taken out of `GDPR_Submit`, only if it is still the file that was claimed.

use super::intake::read_capped;
use super::{
    io_err, response, Engine, EngineError, Execution, Outcome, Refusal, Rejection, Response,
};
use crate::config::AccountConfig;
use crate::ledger::{AuditEntry, Counts, FileRecord};
use crate::requests::name::stem;
use crate::requests::Kind;
use crate::results::atomic::remove_if_present;
use crate::results::{atomic, log};
use chrono::Utc;
use serde_json::Value;
use std::io;
use std::path::Path;
use tracing::{info, warn};

/// The hidden name a finished submission holds while it leaves `GDPR_Submit` (see `Engine::leave_submit`).
fn holding_name(id: i64) -> String {
    format!(".gdprd-leaving-{id}.json")
}

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
            rec,
            file,
            ..
        } = *ex;
        let log_name = log::log_name(stem(name));
        let mut results = vec![log_name.clone()];
        if kind == Kind::Export {
            results.push(log::archive_name(stem(name)));
        }
        let responses = self.ledger.responses(rec.id)?;
        let log_bytes = log::execution_log(&file.raw_requests, |r, c| {
            responses
                .get(&(r, c))
                .unwrap_or(&Response::NotRecorded)
                .to_string()
        });
        let counts = response::tally(responses.values());
        atomic::write(&Self::result_dir(account)?, &log_name, &log_bytes)
            .map_err(io_err(format!("cannot write {log_name}")))?;
        self.ledger.finish(rec.id, &results, counts, None)?;
        info!(
            account = %account.name, file = name, success = counts.success, not_found = counts.not_found,
            errors = counts.errors, "file done"
        );
        crate::metrics::get().file("done", counts.success, counts.not_found, counts.errors);
        self.leave_submit(account, name, path, rec)?;
        Ok(Outcome::Done)
    }

    /// Finishes a file refused whole (`error`): a log that says why, with its requests when they could be read
    /// (`raw`), an audit entry, then the submission leaves `GDPR_Submit`.
    pub(super) fn finish_refused(
        &mut self,
        account: &AccountConfig,
        name: &str,
        path: &Path,
        rec: &FileRecord,
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
        self.ledger.audit(&AuditEntry {
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
        self.ledger
            .finish(rec.id, &[log_name], Counts::default(), Some(error))?;
        self.leave_submit(account, name, path, rec)?;
        Ok(Outcome::Done)
    }

    /// The submission leaves `GDPR_Submit` once its result is in place; the claimed copy goes with it.
    ///
    /// Only the file that was claimed leaves. It is first renamed to a hidden holding name of its own
    /// (`.gdprd-leaving-ID.json`), so that a file put onto the same name meanwhile is never removed in its
    /// place, and the held file is compared with the claim. If it is not the claimed file (it was replaced, or
    /// changed in place, while the claimed copy ran), it is a new submission under a name already used: it gets
    /// the duplicate-name notice, like any other, instead of vanishing unread. A crash after the rename leaves
    /// the holding file, which the next start settles the same way.
    pub(super) fn leave_submit(
        &mut self,
        account: &AccountConfig,
        name: &str,
        path: &Path,
        rec: &FileRecord,
    ) -> Result<(), EngineError> {
        let holding = account.submit_dir().join(holding_name(rec.id));
        let held = match std::fs::symlink_metadata(&holding) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match std::fs::symlink_metadata(path) {
                    // A link, a folder or a special file there is not the claimed file: it is left for the
                    // next rescan, which rejects it as a duplicate name.
                    Ok(m) if m.is_file() => {
                        std::fs::rename(path, &holding)
                            .map_err(io_err(format!("cannot take {name} out of GDPR_Submit")))?;
                        true
                    }
                    Ok(_) => false,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(io_err(format!("cannot stat {name}"))(e)),
                }
            }
            Err(e) => return Err(io_err(format!("cannot stat {}", holding.display()))(e)),
        };
        if held {
            let cap = self.config.limits.max_file_bytes.saturating_add(1);
            let bytes =
                read_capped(&holding, cap).map_err(io_err(format!("cannot read {name}")))?;
            if self.ledger.holds(rec, &bytes) {
                remove_if_present(&holding)
                    .map_err(io_err(format!("cannot remove {name} from GDPR_Submit")))?;
            } else {
                warn!(account = %account.name, file = name, "the file in GDPR_Submit is not the one claimed: it was replaced while the claimed one ran; it is rejected as a duplicate name");
                self.reject(account, name, &holding, Rejection::duplicate(name, rec))?;
            }
        }
        atomic::sync_dir(&account.submit_dir()).map_err(io_err("cannot sync GDPR_Submit"))?;
        self.ledger.mark_removed(&account.name, name)?;
        remove_if_present(&self.claimed_dir().join(format!("{}.json", rec.id)))
            .map_err(io_err("cannot remove the claimed copy"))?;
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
        self.ledger.reject(&account.name, name, &reason, &entry)?;
        remove_if_present(path)
            .map_err(io_err(format!("cannot remove {name} from GDPR_Submit")))?;
        self.ledger.mark_removed(&account.name, name)?;
        info!(account = %account.name, file = name, reason = %reason, "file rejected");
        crate::metrics::get().file("rejected", 0, 0, 0);
        Ok(Outcome::Rejected)
    }
}
