//! Executing one claimed file: read back from its copy, parsed, narrowed to a WCA job's database, planned, and
//! run as a forget, an export or a retry, then finished.

use super::{retry, Engine, EngineError, Execution, Outcome, Plan, Refusal, Response};
use crate::config::AccountConfig;
use crate::journal::Claim;
use crate::requests::{parse, FileName, Kind};
use serde_json::Value;
use std::path::Path;
use tracing::warn;

impl Engine {
    /// Runs a file claimed before (after a crash, or by the HTTP front doors), read back from its claimed copy.
    pub(super) fn run(
        &mut self,
        account: &AccountConfig,
        name: &str,
        path: &Path,
        claim: &Claim,
    ) -> Result<Outcome, EngineError> {
        // The type recorded at claim time: names made by the HTTP front doors are not drop-folder names.
        let kind = claim
            .kind()
            .or_else(|| FileName::parse(name).ok().map(|f| f.kind))
            .ok_or_else(|| EngineError::UnknownKind {
                id: claim.id(),
                recorded: claim.record().kind.clone(),
            })?;
        let cap = self.config.limits.max_file_bytes.saturating_add(1);
        match claim.read_claimed(path, cap) {
            Some(bytes) => self.execute(account, name, path, kind, claim, &bytes),
            None => {
                self.finish_refused(account, name, path, claim, &Refusal::ClaimedCopyLost, None)
            }
        }
    }

    pub(super) fn execute(
        &mut self,
        account: &AccountConfig,
        name: &str,
        path: &Path,
        kind: Kind,
        claim: &Claim,
        bytes: &[u8],
    ) -> Result<Outcome, EngineError> {
        let _executing = claim.executing();
        let locks = self.exclusive_locks(account);
        let _held: Vec<_> = locks
            .iter()
            .map(|l| l.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            .collect();
        let limits = self.config.limits.request_limits();
        let mut file = match parse::parse(bytes, kind, &limits) {
            Ok(file) => file,
            Err(e) => {
                let raw =
                    parse::parse_json(bytes, &limits)
                        .ok()
                        .and_then(|v| match v.get("requests") {
                            Some(Value::Array(a)) => Some(a.clone()),
                            _ => None,
                        });
                warn!(account = %account.name, file = name, error = %e, "file refused whole");
                return self.finish_refused(
                    account,
                    name,
                    path,
                    claim,
                    &Refusal::File(e),
                    raw.as_deref(),
                );
            }
        };
        // A WCA database job runs against that database's stores only.
        let narrowed;
        let account = match crate::requests::name::job_database(name) {
            None => account,
            Some(database) => match account
                .http
                .as_ref()
                .and_then(|h| h.databases.get(database))
            {
                Some(stores) => {
                    narrowed = AccountConfig {
                        stores: stores.clone(),
                        ..account.clone()
                    };
                    &narrowed
                }
                None => {
                    warn!(account = %account.name, file = name, database, "the job's database is no longer configured");
                    let refusal = Refusal::UnknownDatabase(database.to_owned());
                    return self.finish_refused(
                        account,
                        name,
                        path,
                        claim,
                        &refusal,
                        Some(&file.raw_requests),
                    );
                }
            },
        };
        account.requests.apply(&mut file);
        let mut plan = Plan::new(&file, |device| self.secret.device_hmac(device));
        let retry = match self.journal.retry_link(claim.id())? {
            Some(link) => Some(retry::RetryRun::new(
                &self.journal,
                claim,
                account,
                link,
                &mut plan,
            )?),
            None => None,
        };
        let ex = Execution {
            account,
            name,
            kind,
            claim,
            file: &file,
            plan: &plan,
            stores: retry.as_ref().map_or(&account.stores, |r| &r.link.stores),
            prior: retry.as_ref().map(|r| &r.prior),
        };
        if let Some(run) = &retry {
            return self.execute_retry(&ex, run, path);
        }
        let outcome = match kind {
            Kind::Forget | Kind::Pseudonymise => self.forget(&ex)?,
            Kind::Export => self.export(&ex)?,
        };
        if outcome == Outcome::Interrupted {
            return Ok(Outcome::Interrupted);
        }
        if kind != Kind::Export && claim.responses()?.values().any(Response::is_retryable) {
            // Its devices are kept for `gdprd retry`, which runs the contacts a store could not do again.
            self.journal.keep_for_retry(claim.id(), bytes)?;
        }
        self.finish_done(&ex, path)
    }
}
