//! The engine executes one submitted file from start to finish, durably.
//!
//! For each name found in an account's `GDPR_Submit` it decides (ignore, wait for its date, reject, resume),
//! claims the file in the [`Journal`] (which keeps a copy in the state folder), parses it, runs every request against the
//! account's stores, and writes the results. A forget runs in chunks of `batch_size` devices; each store's step is
//! planned in the journal before it changes anything and each chunk's responses are journaled when it completes,
//! so a restart resumes where it stopped: no chunk runs twice and no response changes. An export is read-only
//! and is simply run again if it was interrupted.
//!
//! The rooms, in the order a file goes through them: `intake` (reading a dropped file), `plan` (its devices as
//! targets), `forget` and `export` (running them; `survey` and `isolation` inside a forget), `chunk` (what a
//! completed chunk journals), [`response`] (each contact's answer, whose text is the wire text) and `finish`
//! (the execution log, and the submission leaving `GDPR_Submit`). Beside them, [`preview`] says what a file
//! would do without doing it.

use crate::audit::Secret;
use crate::config::{AccountConfig, Config};
use crate::journal::{Claim, Journal, JournalError, Known};
use crate::requests::name::is_in_progress;
use crate::requests::{admit_name_within, Admission, Kind, RequestFile};
use crate::results::atomic::remove_if_present;
use crate::stores::{self, Store};
use chrono::Utc;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod chunk;
mod config;
mod execute;
mod export;
mod finish;
mod forget;
mod intake;
mod isolation;
mod notice;
mod plan;
pub mod preview;
pub mod response;
mod retry;
mod survey;
pub use config::{EngineConfig, RetryWindow, RetryWindowError};
use intake::{read_capped, remove_account_leftovers, still_uploading};
pub use notice::{Refusal, Rejection};
use plan::Plan;
pub use response::{Response, ResponseKind, StoreFailure};

/// Why a file could not be handled now. The file stays where it is and is tried again later.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Reading the submission or writing a result or state file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: io::Error,
    },
    /// A retry whose original file the ledger does not have.
    #[error("retry {id} retries file {original}, which the ledger does not have")]
    RetryOrphan {
        /// The retry's ledger id.
        id: i64,
        /// The file it names.
        original: i64,
    },
    /// A claimed file whose type the ledger does not know and its name does not tell. It is not guessed (a
    /// forget cannot be undone): the file is left as it is, and tried again later.
    #[error("claimed file {id} has no known type (recorded: {recorded:?}) and its name does not say one; it is left as it is")]
    UnknownKind {
        /// The file's ledger id.
        id: i64,
        /// The type the ledger recorded, if any.
        recorded: Option<String>,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> EngineError {
    let context = context.into();
    move |source| EngineError::Io { context, source }
}

/// What happened to a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do: an upload in progress, a folder, or a file already gone.
    Ignored,
    /// Dated in the future: left in place until its day.
    Waiting,
    /// Not executed; a rejection notice was written.
    Rejected,
    /// Executed (or refused whole); its execution log is in place.
    Done,
    /// Stopped between two chunks by a shutdown; it resumes at the next start.
    Interrupted,
}

/// One file under execution: where it came from, what it asks for, and its plan.
#[derive(Clone, Copy)]
struct Execution<'a> {
    account: &'a AccountConfig,
    /// Its name in `GDPR_Submit`.
    name: &'a str,
    kind: Kind,
    /// Its claim in the journal.
    claim: &'a Claim,
    file: &'a RequestFile,
    plan: &'a Plan,
    /// The stores it runs on: the account's, or a retry's.
    stores: &'a [String],
    /// For a retry: what each store did before for each device of the file.
    prior: Option<&'a crate::journal::DeviceOutcomes>,
}

/// The stores that must not run twice at once (`StoreConfig::exclusive`), each with the lock a worker holds while
/// one of its files uses it. Shared by every worker's engine.
type StoreLocks = Arc<std::sync::Mutex<BTreeMap<String, Arc<std::sync::Mutex<()>>>>>;

/// Executes files for every account of a configuration. Each worker has its own engine (its own store
/// connections); the engines of one daemon share the journal, the secret, the stop and the exclusive stores'
/// locks ([`Engine::sibling`]).
pub struct Engine {
    config: Arc<Config>,
    journal: Journal,
    secret: Secret,
    stores: BTreeMap<String, Box<dyn Store>>,
    stop: CancellationToken,
    exclusive: StoreLocks,
}

impl Engine {
    /// Opens the journal and secret in the state folder (creating what is missing). Stores open on first use.
    /// Once `stop` is cancelled, a file in progress stops at its next checkpoint ([`Outcome::Interrupted`]).
    ///
    /// # Errors
    /// [`EngineError`] when the state folder cannot be prepared.
    pub fn new(config: Arc<Config>, stop: CancellationToken) -> Result<Engine, EngineError> {
        let journal = Journal::open_config(&config)?;
        let secret = Secret::load_or_create(&config.state_dir)
            .map_err(io_err("cannot load the installation secret"))?;
        let mut removed = journal.remove_leftovers()?;
        for account in &config.accounts {
            removed += remove_account_leftovers(account);
        }
        if removed > 0 {
            info!(
                removed,
                "removed files a crash left behind (claimed copies, export parts, partial writes)"
            );
        }
        Ok(Engine {
            config,
            journal,
            secret,
            stores: BTreeMap::new(),
            stop,
            exclusive: StoreLocks::default(),
        })
    }

    /// Another engine for another worker: the same configuration, journal, secret, stop and exclusive stores'
    /// locks, and its own store connections (opened on first use).
    pub fn sibling(&self) -> Engine {
        Engine {
            config: Arc::clone(&self.config),
            journal: self.journal.clone(),
            secret: self.secret.clone(),
            stores: BTreeMap::new(),
            stop: self.stop.clone(),
            exclusive: Arc::clone(&self.exclusive),
        }
    }

    /// The locks of the stores of `account` that must not run twice at once ([`StoreConfig::exclusive`]), in
    /// name order: taken in that order, two workers never wait for each other's.
    ///
    /// [`StoreConfig::exclusive`]: crate::stores::StoreConfig::exclusive
    fn exclusive_locks(&self, account: &AccountConfig) -> Vec<Arc<std::sync::Mutex<()>>> {
        let mut names: Vec<&String> = account
            .stores
            .iter()
            .filter(|name| self.config.stores.get(*name).is_some_and(|s| s.exclusive()))
            .collect();
        names.sort();
        names.dedup();
        let mut map = self
            .exclusive
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        names
            .into_iter()
            .map(|name| Arc::clone(map.entry(name.clone()).or_default()))
            .collect()
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The journal the engine records in: the HTTP front doors share it.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Files claimed but not finished, as (account, name), to resume at start.
    ///
    /// # Errors
    /// [`EngineError::Journal`].
    pub fn unfinished(&self) -> Result<Vec<(String, String)>, EngineError> {
        Ok(self.journal.unfinished()?)
    }

    /// Takes up a reloaded configuration for the files that follow. Open stores whose settings changed, or that
    /// are gone, are closed (a changed store opens again on first use).
    pub fn reload(&mut self, config: Arc<Config>) {
        let old = std::mem::replace(&mut self.config, config);
        let new = &self.config;
        self.stores.retain(
            |name, _| match (old.stores.get(name), new.stores.get(name)) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        );
    }

    /// Opens and checks every configured store once, logging what is wrong. A store that is down is not
    /// fatal: its contacts get an error response until it is back, and it is tried again for every file.
    pub fn check_stores(&mut self) {
        let names: Vec<String> = self.config.stores.keys().cloned().collect();
        for name in names {
            if self.open_store(&name).is_err() {
                continue;
            }
            let Some(store) = self.stores.get_mut(&name) else {
                continue;
            };
            match store.check() {
                Ok(warnings) => {
                    info!(store = %name, "store checked");
                    for w in warnings {
                        warn!(store = %name, "{w}");
                    }
                }
                Err(e) => {
                    warn!(store = %name, error = %e, "store check failed; its contacts get an error response until it is fixed")
                }
            }
        }
    }

    fn open_store(&mut self, name: &str) -> Result<(), StoreFailure> {
        if self.stores.contains_key(name) {
            return Ok(());
        }
        let Some(config) = self.config.stores.get(name) else {
            return Err(StoreFailure::unavailable(name, "not configured"));
        };
        match stores::open(name, config, &self.stop) {
            Ok(store) => {
                self.stores.insert(name.to_owned(), store);
                Ok(())
            }
            Err(e) => {
                warn!(store = name, error = %e, "store cannot be opened");
                Err(StoreFailure::unavailable(name, e.to_string()))
            }
        }
    }

    /// Handles the name `name` found in `account`'s `GDPR_Submit`.
    ///
    /// # Errors
    /// [`EngineError`] when the journal or the file system fails; the file is left for a later try.
    pub fn handle(
        &mut self,
        account: &AccountConfig,
        name: &OsStr,
    ) -> Result<Outcome, EngineError> {
        let path = account.submit_dir().join(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(format!("cannot stat {}", name.to_string_lossy()))(e)),
        };
        let Some(name) = name.to_str() else {
            if meta.as_ref().is_none_or(std::fs::Metadata::is_dir) {
                return Ok(Outcome::Ignored);
            }
            let lossy = name.to_string_lossy().into_owned();
            return self.reject(account, &lossy, &path, Rejection::NameNotUtf8);
        };
        if is_in_progress(name) {
            return Ok(Outcome::Ignored);
        }
        match self.journal.admit(&account.name, name)? {
            Known::Unfinished(claim) => {
                info!(account = %account.name, file = name, id = claim.id(), "resuming claimed file");
                return self.run(account, name, &path, &claim);
            }
            Known::Elsewhere { node } => {
                debug!(account = %account.name, file = name, node = %node, "claimed file held by another node");
                return Ok(Outcome::Ignored);
            }
            Known::Rejected => {
                remove_if_present(&path)
                    .map_err(io_err(format!("cannot remove {name} from GDPR_Submit")))?;
                self.journal.mark_removed(&account.name, name)?;
                return Ok(Outcome::Rejected);
            }
            Known::Finished(claim) => {
                self.leave_submit(account, name, &path, &claim)?;
                return Ok(Outcome::Done);
            }
            Known::Taken(rec) => {
                if meta.is_none() {
                    return Ok(Outcome::Ignored);
                }
                return self.reject(account, name, &path, Rejection::duplicate(name, &rec));
            }
            Known::New => {}
        }
        let Some(meta) = meta else {
            return Ok(Outcome::Ignored);
        };
        if meta.is_dir() {
            return Ok(Outcome::Ignored);
        }
        if !meta.is_file() {
            return self.reject(account, name, &path, Rejection::NotRegularFile);
        }
        let tz = account.timezone;
        let today = Utc::now().with_timezone(&tz).date_naive();
        let horizon = self.config.limits.max_future_days;
        let file_name = match admit_name_within(name, today, account.timezone.name(), horizon) {
            Admission::InProgress => return Ok(Outcome::Ignored),
            Admission::Waiting(_) => return Ok(Outcome::Waiting),
            Admission::Reject(reason) => return self.reject(account, name, &path, reason.into()),
            Admission::Due(f) => f,
        };
        let cap = self.config.limits.max_file_bytes.saturating_add(1);
        let bytes = read_capped(&path, cap).map_err(io_err(format!("cannot read {name}")))?;
        let timeout = self.config.intake.upload_timeout_seconds;
        if let Some(age) = still_uploading(&bytes, &meta, timeout) {
            info!(account = %account.name, file = name, seconds_since_written = age.as_secs(), "file ends in the middle of its JSON: an upload still being written; waiting for the rest");
            return Ok(Outcome::Waiting);
        }
        let claim = self.journal.claim(
            &account.name,
            name,
            file_name.kind,
            &bytes,
            self.config.limits.batch_size,
            account.received_now(),
        )?;
        info!(account = %account.name, file = name, id = claim.id(), bytes = bytes.len(), "file claimed");
        self.execute(account, name, &path, file_name.kind, &claim, &bytes)
    }

    /// Executes the file `id` that the HTTP front doors claimed for `account`. One that is no longer claimed
    /// (finished by the resume at start) is ignored.
    ///
    /// # Errors
    /// [`EngineError`] when the journal or the file system fails; the file resumes at the next start.
    pub fn handle_claimed(
        &mut self,
        account: &AccountConfig,
        id: i64,
    ) -> Result<Outcome, EngineError> {
        let Some(claim) = self.journal.claimed(id)? else {
            return Ok(Outcome::Ignored);
        };
        let name = claim.record().name.clone();
        let path = account.submit_dir().join(&name);
        self.run(account, &name, &path, &claim)
    }

    /// The account's `GDPR_Result`, created again if an operator removed it.
    fn result_dir(account: &AccountConfig) -> Result<PathBuf, EngineError> {
        let dir = account.result_dir();
        std::fs::create_dir_all(&dir)
            .map_err(io_err(format!("cannot create {}", dir.display())))?;
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16: a claimed file whose type is unknown is not resumed as a forget, which cannot be undone.
    #[test]
    fn a_claimed_file_of_unknown_type_is_left_alone_not_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::from_toml(crate::demo::DEMO_CONFIG, &dir.path().join("gdprd.toml"))
            .expect("demo config");
        let config = Arc::new(config);
        let account = config.account("demo").expect("demo account").clone();
        std::fs::create_dir_all(account.submit_dir()).expect("GDPR_Submit");
        let bytes = br#"{"requests":[{"type":"FORGET","contacts":[{"email":"a@b.com"}]}]}"#;
        let mut engine =
            Engine::new(Arc::clone(&config), CancellationToken::new()).expect("engine");
        let journal = engine.journal().clone();
        // Names made by the HTTP front doors are not drop-folder names: only the recorded type tells.
        for (name, recorded) in [("job-7.json", None), ("job-8.json", Some("ERASE"))] {
            std::fs::write(account.submit_dir().join(name), bytes).expect("file");
            let claim = journal.claim_recorded_as(&account.name, name, recorded, bytes);
            let err = engine
                .handle(&account, OsStr::new(name))
                .expect_err("an unknown type is an error");
            assert!(
                matches!(err, EngineError::UnknownKind { id, .. } if id == claim.id()),
                "{err}"
            );
            assert!(account.submit_dir().join(name).exists(), "the file stays");
            assert!(
                matches!(
                    journal.admit(&account.name, name).expect("admit"),
                    Known::Unfinished(_)
                ),
                "still claimed"
            );
            assert!(claim.responses().expect("responses").is_empty());
        }
    }
}
