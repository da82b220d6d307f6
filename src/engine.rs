//! The engine executes one submitted file from start to finish, durably.
//!
//! For each name found in an account's `GDPR_Submit` it decides (ignore, wait for its date, reject, resume),
//! claims the file in the [`Ledger`] with a copy in the state folder, parses it, runs every request against the
//! account's stores, and writes the results. A forget runs in chunks of `batch_size` devices; each store's step is
//! planned in the journal before it changes anything and each chunk's responses are journaled when it completes,
//! so a restart resumes where it stopped: no chunk runs twice and no response changes. An export is read-only
//! and is simply run again if it was interrupted.

use crate::audit::Secret;
use crate::config::{AccountConfig, Config};
use crate::ledger::{AuditEntry, Counts, FileRecord, FileState, Ledger, LedgerError};
use crate::requests::name::{is_in_progress, stem};
use crate::requests::{admit_name_within, parse, Admission, Device, FileName, Kind, RequestFile};
use crate::results::atomic::remove_if_present;
use crate::results::{archive, atomic, log};
use crate::stores::{self, Batch, Scope, Store, StoreError, Target};
use chrono::Utc;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

mod isolation;
mod survey;
use isolation::{export_step, forget_step, StoreOutcome};

/// Why a file could not be handled now. The file stays where it is and is tried again later.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Reading the submission or writing a result or state file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: io::Error,
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

/// The ledger id of the file the engine is executing, 0 when idle: the HTTP front doors report such a job
/// `IN_PROGRESS` before its first chunk completes.
pub static WORKING: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Clears [`WORKING`] when an execution ends, however it ends.
struct Working;

impl Working {
    fn start(id: i64) -> Working {
        WORKING.store(id, Ordering::SeqCst);
        Working
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        WORKING.store(0, Ordering::SeqCst);
    }
}

/// Executes files for every account of a configuration.
pub struct Engine {
    config: Arc<Config>,
    ledger: Ledger,
    secret: Secret,
    stores: BTreeMap<String, Box<dyn Store>>,
    stop: Arc<AtomicBool>,
}

/// A file's valid devices, deduplicated per request, with where each appears.
struct Plan {
    targets: Vec<Target>,
    scopes: Vec<Scope>,
    devices: Vec<Device>,
    /// (request, contact) positions answered by each target.
    positions: Vec<Vec<Position>>,
    /// Request index of each target.
    request_of: Vec<usize>,
    /// The device text as the customer wrote it, per target.
    given: Vec<String>,
    /// Contacts that are not valid devices, with their response.
    invalid: Vec<(Position, String)>,
}

impl Plan {
    fn new(file: &RequestFile) -> Plan {
        let mut plan = Plan {
            targets: Vec::new(),
            scopes: Vec::new(),
            devices: Vec::new(),
            positions: Vec::new(),
            request_of: Vec::new(),
            given: Vec::new(),
            invalid: Vec::new(),
        };
        for (r, (request, raw)) in file.requests.iter().zip(&file.raw_requests).enumerate() {
            plan.scopes.push(Scope {
                accountid: request.accountid.clone(),
                shortcodes: request.shortcodes.clone(),
            });
            let mut seen: HashMap<String, usize> = HashMap::new();
            for (c, contact) in request.contacts.iter().enumerate() {
                let device = match contact {
                    Ok(d) => d,
                    Err(e) => {
                        plan.invalid.push(((r, c), e.to_string()));
                        continue;
                    }
                };
                let key = device.match_key();
                if let Some(&t) = seen.get(&key) {
                    plan.positions[t].push((r, c));
                    continue;
                }
                seen.insert(key.clone(), plan.targets.len());
                plan.targets.push(Target {
                    kind: device.kind(),
                    key,
                    scope: r,
                    digest: String::new(),
                });
                plan.devices.push(device.clone());
                plan.positions.push(vec![(r, c)]);
                plan.request_of.push(r);
                plan.given
                    .push(given_value(raw, c).unwrap_or_else(|| device.canonical().to_owned()));
            }
        }
        plan
    }

    /// Chunk ranges over the targets; always at least one, so invalid contacts are journaled too.
    fn chunks(&self, size: usize) -> Vec<Range<usize>> {
        let n = self.targets.len();
        if n == 0 {
            return std::iter::once(0..0).collect();
        }
        (0..n)
            .step_by(size.max(1))
            .map(|s| s..(s + size).min(n))
            .collect()
    }
}

fn given_value(raw_request: &Value, contact: usize) -> Option<String> {
    let contact = raw_request.get("contacts")?.get(contact)?.as_object()?;
    contact.values().next()?.as_str().map(str::to_owned)
}

fn device_type_of(raw_request: &Value, contact: usize) -> Option<String> {
    let c = raw_request.get("contacts")?.get(contact)?.as_object()?;
    match c.keys().next().map(String::as_str) {
        Some(k @ ("phone" | "email" | "ipaddr")) if c.len() == 1 => Some(k.to_owned()),
        _ => None,
    }
}

/// A contact's place in a file: (request, contact), both 0-based.
type Position = (usize, usize);

/// What a completed chunk journals: each contact's response, and the audit entries.
type Journal = (Vec<(Position, String)>, Vec<AuditEntry>);

/// One completed batch of a file, ready to journal.
struct Chunk<'a> {
    range: Range<usize>,
    per_store: &'a [StoreOutcome],
    /// The first chunk also answers the contacts that are not valid devices.
    with_invalid: bool,
    started: chrono::DateTime<Utc>,
}

fn response_text(kind: Kind, per_store: &[StoreOutcome], target: usize) -> String {
    let failed: Vec<&str> = per_store
        .iter()
        .filter_map(|s| s.errors.get(target).and_then(Option::as_deref))
        .collect();
    let found: u64 = per_store.iter().filter_map(|s| s.found.get(target)).sum();
    if !failed.is_empty() {
        let what = match kind {
            Kind::Forget => "the forget is not complete there (resubmit to finish it)",
            Kind::Export => "its data from there is not in the archive (resubmit)",
            Kind::Pseudonymise => {
                "the pseudonymisation is not complete there (resubmit to finish it)"
            }
        };
        return format!("ERROR: {}; {what}", failed.join("; "));
    }
    if found > 0 {
        "SUCCESS".into()
    } else {
        "SUCCESS: not found".into()
    }
}

fn stores_json(per_store: &[StoreOutcome], target: usize) -> String {
    let map: serde_json::Map<String, Value> = per_store
        .iter()
        .map(|s| {
            let v = match s.errors.get(target) {
                Some(Some(_)) => Value::from("error"),
                _ => Value::from(s.found.get(target).copied().unwrap_or(0)),
            };
            (s.name.clone(), v)
        })
        .collect();
    Value::Object(map).to_string()
}

fn count(responses: &HashMap<(usize, usize), String>) -> Counts {
    let mut c = Counts::default();
    for r in responses.values() {
        match r.as_str() {
            "SUCCESS" => c.success += 1,
            "SUCCESS: not found" => c.not_found += 1,
            _ => c.errors += 1,
        }
    }
    c
}

fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(cap)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The hidden name a finished submission holds while it leaves `GDPR_Submit` (see `Engine::leave_submit`).
fn holding_name(id: i64) -> String {
    format!(".gdprd-leaving-{id}.json")
}

/// The notice of a name already submitted.
fn duplicate(name: &str, rec: &FileRecord) -> String {
    format!(
        "ERROR: a file named {name} was already submitted (received {}); a name is processed once: submit it again under a new name",
        rec.received_at
    )
}

/// Removes the partial files a crash can leave in an account's folders, at start, before anything writes there:
/// temporaries of atomic writes in `GDPR_Result` (an execution log or archive half-written), partial downloads
/// of a remote SFTP account and partial uploads to the embedded SFTP server in `GDPR_Submit`. Returns how many.
fn remove_account_leftovers(account: &AccountConfig) -> usize {
    use crate::config::Transport;
    let partial_transfer = |name: &str| match account.transport {
        Transport::SftpRemote => name.ends_with(".gdprd-download"),
        Transport::SftpServer => name.ends_with(".upload"),
        Transport::Local => false,
    };
    let mut removed = 0;
    for (dir, doomed) in [
        (
            account.result_dir(),
            &crate::ledger::is_stale_temporary as &dyn Fn(&str) -> bool,
        ),
        (account.submit_dir(), &|n: &str| {
            n.starts_with('.') && partial_transfer(n)
        }),
    ] {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            let name = entry.file_name();
            if is_file && name.to_str().is_some_and(doomed) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        warn!(account = %account.name, file = %entry.path().display(), error = %e, "cannot remove a partial file; tried again at the next start")
                    }
                }
            }
        }
    }
    removed
}

/// When `bytes` end in the middle of their JSON (an empty file included) and the file was modified less than
/// `timeout` ago, it is an upload still being written (a writer that pauses longer than the settle time): the
/// time since its last write. A file left truncated longer is not waited for: it is refused like any invalid file.
fn still_uploading(bytes: &[u8], meta: &std::fs::Metadata, timeout: Duration) -> Option<Duration> {
    let age = meta
        .modified()
        .ok()
        .map(|m| {
            crate::clock::system_now()
                .duration_since(m)
                .unwrap_or(Duration::ZERO)
        })
        .unwrap_or(Duration::MAX);
    if age >= timeout {
        return None;
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
        Err(e) if e.classify() == serde_json::error::Category::Eof => Some(age),
        _ => None,
    }
}

/// How often a long forget logs its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The response text for contacts whose store failed: `unavailable` when the server could not be reached.
fn store_failure(name: &str, e: &StoreError) -> String {
    match e {
        StoreError::Unavailable(why) => format!("store {name:?} unavailable: {why}"),
        other => format!("store {name:?} failed: {other}"),
    }
}

impl Engine {
    /// Opens the ledger and secret in the state folder (creating what is missing). Stores open on first use.
    ///
    /// # Errors
    /// [`EngineError`] when the state folder cannot be prepared.
    pub fn new(config: Arc<Config>, stop: Arc<AtomicBool>) -> Result<Engine, EngineError> {
        for dir in [
            config.state_dir.clone(),
            config.state_dir.join("claimed"),
            config.state_dir.join("work"),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(io_err(format!("cannot create {}", dir.display())))?;
        }
        let ledger = Ledger::open(&config.state_dir)?;
        let secret = Secret::load_or_create(&config.state_dir)
            .map_err(io_err("cannot load the installation secret"))?;
        let mut removed = ledger.remove_leftovers(&config.state_dir)?;
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
            ledger,
            secret,
            stores: BTreeMap::new(),
            stop,
        })
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Files claimed but not finished, as (account, name), to resume at start.
    ///
    /// # Errors
    /// [`EngineError::Ledger`].
    pub fn unfinished(&self) -> Result<Vec<(String, String)>, EngineError> {
        Ok(self.ledger.unfinished()?)
    }

    /// Takes up a reloaded configuration for the files that follow. Open stores whose settings changed, or that
    /// are gone, are closed (a changed store opens again on first use).
    pub fn reload(&mut self, config: Arc<Config>) {
        let old = std::mem::replace(&mut self.config, config);
        let new = &self.config;
        self.stores.retain(
            |name, _| match (old.stores.get(name), new.stores.get(name)) {
                (Some(a), Some(b)) => format!("{a:?}") == format!("{b:?}"),
                _ => false,
            },
        );
    }

    /// Opens and checks every configured store once, logging what is wrong. A store that is down is not
    /// fatal: its contacts get an error response until it is back, and it is tried again for every file.
    pub fn check_stores(&mut self) {
        let names: Vec<String> = self.config.stores.keys().cloned().collect();
        for name in names {
            if self.open_store(&name).is_some() {
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

    fn open_store(&mut self, name: &str) -> Option<String> {
        if self.stores.contains_key(name) {
            return None;
        }
        let Some(config) = self.config.stores.get(name) else {
            return Some("not configured".into());
        };
        match stores::open(name, config) {
            Ok(store) => {
                self.stores.insert(name.to_owned(), store);
                None
            }
            Err(e) => {
                warn!(store = name, error = %e, "store cannot be opened");
                Some(e.to_string())
            }
        }
    }

    /// Handles the name `name` found in `account`'s `GDPR_Submit`.
    ///
    /// # Errors
    /// [`EngineError`] when the ledger or the file system fails; the file is left for a later try.
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
            return self.reject(
                account,
                &lossy,
                &path,
                "ERROR: file name is not valid UTF-8".into(),
            );
        };
        if is_in_progress(name) {
            return Ok(Outcome::Ignored);
        }
        match self.ledger.lookup(&account.name, name)? {
            Some(rec) if rec.state == FileState::Claimed => {
                return self.resume(account, name, &path, rec)
            }
            Some(rec) if !rec.removed && rec.state == FileState::Rejected => {
                remove_if_present(&path)
                    .map_err(io_err(format!("cannot remove {name} from GDPR_Submit")))?;
                self.ledger.mark_removed(&account.name, name)?;
                return Ok(Outcome::Rejected);
            }
            Some(rec) if !rec.removed => {
                self.leave_submit(account, name, &path, &rec)?;
                return Ok(Outcome::Done);
            }
            Some(rec) => {
                if meta.is_none() {
                    return Ok(Outcome::Ignored);
                }
                return self.reject(account, name, &path, duplicate(name, &rec));
            }
            None => {}
        }
        let Some(meta) = meta else {
            return Ok(Outcome::Ignored);
        };
        if meta.is_dir() {
            return Ok(Outcome::Ignored);
        }
        if !meta.is_file() {
            return self.reject(
                account,
                name,
                &path,
                "ERROR: not a regular file (links and special files are not processed)".into(),
            );
        }
        let tz = account.tz();
        let today = Utc::now().with_timezone(&tz).date_naive();
        let horizon = self.config.limits.max_future_days;
        let file_name = match admit_name_within(name, today, &account.timezone, horizon) {
            Admission::InProgress => return Ok(Outcome::Ignored),
            Admission::Waiting(_) => return Ok(Outcome::Waiting),
            Admission::Reject(reason) => return self.reject(account, name, &path, reason),
            Admission::Due(f) => f,
        };
        let cap = self.config.limits.max_file_bytes.saturating_add(1);
        let bytes = read_capped(&path, cap).map_err(io_err(format!("cannot read {name}")))?;
        let timeout = Duration::from_secs(self.config.intake.upload_timeout_seconds);
        if let Some(age) = still_uploading(&bytes, &meta, timeout) {
            info!(account = %account.name, file = name, seconds_since_written = age.as_secs(), "file ends in the middle of its JSON: an upload still being written; waiting for the rest");
            return Ok(Outcome::Waiting);
        }
        let rec = self.ledger.claim(
            &account.name,
            name,
            Some(file_name.kind.as_type()),
            &bytes,
            self.config.limits.batch_size,
        )?;
        atomic::write(&self.claimed_dir(), &format!("{}.json", rec.id), &bytes)
            .map_err(io_err("cannot keep a copy of the claimed file"))?;
        info!(account = %account.name, file = name, id = rec.id, bytes = bytes.len(), "file claimed");
        self.execute(account, name, &path, file_name.kind, &rec, &bytes)
    }

    /// The account's `GDPR_Result`, created again if an operator removed it.
    fn result_dir(account: &AccountConfig) -> Result<PathBuf, EngineError> {
        let dir = account.result_dir();
        std::fs::create_dir_all(&dir)
            .map_err(io_err(format!("cannot create {}", dir.display())))?;
        Ok(dir)
    }

    fn claimed_dir(&self) -> PathBuf {
        self.config.state_dir.join("claimed")
    }

    fn resume(
        &mut self,
        account: &AccountConfig,
        name: &str,
        path: &Path,
        rec: FileRecord,
    ) -> Result<Outcome, EngineError> {
        // The type recorded at claim time: names made by the HTTP front doors are not drop-folder names.
        let kind = rec
            .kind
            .as_deref()
            .and_then(Kind::from_type)
            .or_else(|| FileName::parse(name).ok().map(|f| f.kind))
            .unwrap_or(Kind::Forget);
        let copy = self.claimed_dir().join(format!("{}.json", rec.id));
        let cap = self.config.limits.max_file_bytes.saturating_add(1);
        let bytes = read_capped(&copy, cap).or_else(|_| read_capped(path, cap));
        let intact = bytes.as_ref().ok().filter(|b| self.ledger.holds(&rec, b));
        info!(account = %account.name, file = name, id = rec.id, "resuming claimed file");
        match intact {
            Some(bytes) => {
                let bytes = bytes.clone();
                self.execute(account, name, path, kind, &rec, &bytes)
            }
            None => {
                let error = "ERROR: the claimed copy of this file was lost or changed after it was claimed; resubmit it under a new name";
                self.finish_refused(account, name, path, &rec, error, None)
            }
        }
    }

    fn execute(
        &mut self,
        account: &AccountConfig,
        name: &str,
        path: &Path,
        kind: Kind,
        rec: &FileRecord,
        bytes: &[u8],
    ) -> Result<Outcome, EngineError> {
        let _working = Working::start(rec.id);
        let limits = self.config.limits.request_limits();
        let file = match parse::parse(bytes, kind, &limits) {
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
                    rec,
                    &e.to_string(),
                    raw.as_deref(),
                );
            }
        };
        let mut plan = Plan::new(&file);
        for (target, device) in plan.targets.iter_mut().zip(&plan.devices) {
            target.digest = self.secret.device_hmac(device);
        }
        let mut results = vec![log::log_name(stem(name))];
        match kind {
            Kind::Forget | Kind::Pseudonymise => {
                if self.forget(account, name, kind, rec, &file, &plan)? == Outcome::Interrupted {
                    return Ok(Outcome::Interrupted);
                }
            }
            Kind::Export => {
                self.export(account, name, rec, &file, &plan)?;
                results.push(log::archive_name(stem(name)));
            }
        }
        let responses = self.ledger.responses(rec.id)?;
        let log_bytes = log::execution_log(&file.raw_requests, |r, c| {
            responses.get(&(r, c)).cloned().unwrap_or_else(|| {
                "ERROR: no response was recorded for this contact; resubmit it".into()
            })
        });
        let counts = count(&responses);
        atomic::write(&Self::result_dir(account)?, &results[0], &log_bytes)
            .map_err(io_err(format!("cannot write {}", results[0])))?;
        self.ledger.finish(rec.id, &results, counts, None)?;
        info!(
            account = %account.name, file = name, success = counts.success, not_found = counts.not_found,
            errors = counts.errors, "file done"
        );
        crate::metrics::get().file("done", counts.success, counts.not_found, counts.errors);
        self.leave_submit(account, name, path, rec)?;
        Ok(Outcome::Done)
    }

    fn finish_refused(
        &mut self,
        account: &AccountConfig,
        name: &str,
        path: &Path,
        rec: &FileRecord,
        error: &str,
        raw: Option<&[Value]>,
    ) -> Result<Outcome, EngineError> {
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
    fn leave_submit(
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
                self.reject(account, name, &holding, duplicate(name, rec))?;
            }
        }
        atomic::sync_dir(&account.submit_dir()).map_err(io_err("cannot sync GDPR_Submit"))?;
        self.ledger.mark_removed(&account.name, name)?;
        remove_if_present(&self.claimed_dir().join(format!("{}.json", rec.id)))
            .map_err(io_err("cannot remove the claimed copy"))?;
        Ok(())
    }

    fn reject(
        &mut self,
        account: &AccountConfig,
        name: &str,
        path: &Path,
        reason: String,
    ) -> Result<Outcome, EngineError> {
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

    fn audit_entries(
        &self,
        account: &AccountConfig,
        name: &str,
        kind: Kind,
        file: &RequestFile,
        plan: &Plan,
        chunk: Chunk<'_>,
    ) -> Journal {
        let Chunk {
            range,
            per_store,
            with_invalid,
            started,
        } = chunk;
        let finished = Utc::now();
        let action = kind.prefix().to_owned();
        let mut responses = Vec::new();
        let mut audit = Vec::new();
        for (j, t) in range.enumerate() {
            let text = response_text(kind, per_store, j);
            responses.extend(plan.positions[t].iter().map(|p| (*p, text.clone())));
            audit.push(AuditEntry {
                account: account.name.clone(),
                file: name.to_owned(),
                requestcase: file.requests[plan.request_of[t]].requestcase.clone(),
                device_type: Some(plan.devices[t].kind().key().to_owned()),
                device_hmac: Some(self.secret.device_hmac(&plan.devices[t])),
                action: action.clone(),
                stores: stores_json(per_store, j),
                outcome: text,
                started,
                finished,
            });
        }
        if with_invalid {
            for ((r, c), error) in &plan.invalid {
                responses.push(((*r, *c), error.clone()));
                audit.push(AuditEntry {
                    account: account.name.clone(),
                    file: name.to_owned(),
                    requestcase: file.requests[*r].requestcase.clone(),
                    device_type: device_type_of(&file.raw_requests[*r], *c),
                    device_hmac: None,
                    action: action.clone(),
                    stores: "{}".into(),
                    outcome: error.clone(),
                    started,
                    finished,
                });
            }
        }
        (responses, audit)
    }

    fn forget(
        &mut self,
        account: &AccountConfig,
        name: &str,
        kind: Kind,
        rec: &FileRecord,
        file: &RequestFile,
        plan: &Plan,
    ) -> Result<Outcome, EngineError> {
        let chunks = plan.chunks(rec.batch_size);
        let total = plan.targets.len();
        let began = std::time::Instant::now();
        let mut last_report = began;
        let mut done_here = 0usize;
        let open_errors: BTreeMap<String, Option<String>> = account
            .stores
            .iter()
            .map(|s| (s.clone(), self.open_store(s)))
            .collect();
        // Several chunks: what every store held for each contact before the first one changed anything.
        let surveyed = if chunks.len() > 1 {
            let batch = Batch {
                targets: plan.targets.clone(),
                scopes: plan.scopes.clone(),
            };
            survey::survey(
                &self.ledger,
                kind,
                &mut self.stores,
                &account.stores,
                rec.id,
                &batch,
            )?
        } else {
            BTreeMap::new()
        };
        for (ci, range) in chunks.iter().enumerate() {
            if self.ledger.chunk_done(rec.id, ci)? {
                continue;
            }
            if self.stop.load(Ordering::SeqCst) {
                info!(account = %account.name, file = name, chunk = ci, "stopping between chunks; the file resumes at the next start");
                return Ok(Outcome::Interrupted);
            }
            let started = Utc::now();
            let batch = Batch {
                targets: plan.targets[range.clone()].to_vec(),
                scopes: plan.scopes.clone(),
            };
            let mut per_store = Vec::new();
            for store_name in &account.stores {
                let store = self.stores.get_mut(store_name);
                let open_error = open_errors.get(store_name).and_then(|e| e.as_deref());
                let mut outcome = forget_step(
                    &self.ledger,
                    kind,
                    store,
                    open_error,
                    rec.id,
                    ci,
                    store_name,
                    &batch,
                )?;
                if let Some(held) = surveyed.get(store_name) {
                    for (found, held) in outcome.found.iter_mut().zip(&held[range.clone()]) {
                        *found = (*found).max(*held);
                    }
                }
                per_store.push(outcome);
            }
            let (responses, audit) = self.audit_entries(
                account,
                name,
                kind,
                file,
                plan,
                Chunk {
                    range: range.clone(),
                    per_store: &per_store,
                    with_invalid: ci == 0,
                    started,
                },
            );
            self.ledger.complete_chunk(rec.id, ci, &responses, &audit)?;
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
        for store_name in &account.stores {
            if let Some(store) = self.stores.get_mut(store_name) {
                if let Err(e) = store.finish_forget() {
                    warn!(store = %store_name, file = name, error = %e, "clean-up after the forget failed; old copies of forgotten values may stay in the store's free space until the next forget");
                }
            }
        }
        Ok(Outcome::Done)
    }

    fn export(
        &mut self,
        account: &AccountConfig,
        name: &str,
        rec: &FileRecord,
        file: &RequestFile,
        plan: &Plan,
    ) -> Result<(), EngineError> {
        if self.ledger.chunk_done(rec.id, 0)? {
            return Ok(());
        }
        let started = Utc::now();
        let prefixes: Vec<[String; 3]> = (0..plan.targets.len())
            .map(|t| {
                [
                    file.requests[plan.request_of[t]]
                        .requestcase
                        .clone()
                        .unwrap_or_default(),
                    plan.devices[t].kind().key().to_owned(),
                    plan.given[t].clone(),
                ]
            })
            .collect();
        let batch = Batch {
            targets: plan.targets.clone(),
            scopes: plan.scopes.clone(),
        };
        let work = self.config.state_dir.join("work");
        let mut parts = Vec::new();
        let mut per_store = Vec::new();
        for (i, store_name) in account.stores.iter().enumerate() {
            let open_error = self.open_store(store_name);
            let part_path = work.join(format!("{}-{i}.zip", rec.id));
            let outcome = match (self.stores.get_mut(store_name), open_error) {
                (Some(store), None) => {
                    let began = std::time::Instant::now();
                    let mut new_part = || {
                        let _ = std::fs::remove_file(&part_path);
                        archive::PartArchive::create(part_path.clone(), prefixes.clone())
                    };
                    let (outcome, part) = export_step(store.as_mut(), &batch, &mut new_part)
                        .map_err(io_err("cannot create an export part in the state folder"))?;
                    crate::metrics::get().store_call(
                        store_name,
                        "export",
                        began.elapsed().as_secs_f64(),
                    );
                    match part {
                        Some(part) => parts.push(
                            part.finish()
                                .map_err(io_err("cannot finish an export part"))?,
                        ),
                        None => {
                            let _ = std::fs::remove_file(&part_path);
                        }
                    }
                    outcome
                }
                (_, e) => StoreOutcome::failed(
                    store_name,
                    plan.targets.len(),
                    format!(
                        "store {store_name:?} unavailable: {}",
                        e.unwrap_or_default()
                    ),
                ),
            };
            // Export progress: one line per store, with its rows and time (each store is one streamed pass).
            info!(
                account = %account.name,
                file = name,
                store = %store_name,
                stores_done = i + 1,
                stores = account.stores.len(),
                rows = outcome.found.iter().sum::<u64>(),
                errors = outcome.errors.iter().filter(|e| e.is_some()).count(),
                seconds = started.signed_duration_since(Utc::now()).num_milliseconds().unsigned_abs() as f64 / 1000.0,
                "export progress"
            );
            per_store.push(outcome);
        }
        let archive_name = log::archive_name(stem(name));
        archive::assemble(&Self::result_dir(account)?, &archive_name, &parts)
            .map_err(io_err(format!("cannot write {archive_name}")))?;
        for part in &parts {
            let _ = std::fs::remove_file(part);
        }
        let (responses, audit) = self.audit_entries(
            account,
            name,
            Kind::Export,
            file,
            plan,
            Chunk {
                range: 0..plan.targets.len(),
                per_store: &per_store,
                with_invalid: true,
                started,
            },
        );
        self.ledger.complete_chunk(rec.id, 0, &responses, &audit)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_follow_the_stores() {
        let ok = |found: Vec<u64>| StoreOutcome {
            name: "a".to_owned(),
            errors: vec![None; found.len()],
            found,
        };
        assert_eq!(response_text(Kind::Forget, &[ok(vec![2, 0])], 0), "SUCCESS");
        assert_eq!(
            response_text(Kind::Forget, &[ok(vec![2, 0])], 1),
            "SUCCESS: not found"
        );
        let failed = StoreOutcome {
            name: "b".to_owned(),
            found: vec![0, 0],
            errors: vec![Some("store \"b\" failed: boom".to_owned()), None],
        };
        let text = response_text(Kind::Forget, &[ok(vec![2, 0]), failed.clone()], 0);
        assert!(
            text.starts_with("ERROR: store \"b\" failed: boom;"),
            "{text}"
        );
        assert!(text.contains("resubmit"));
        assert_eq!(
            response_text(Kind::Forget, &[ok(vec![2, 1]), failed.clone()], 1),
            "SUCCESS",
            "a store's error for one target is not another's"
        );
        assert_eq!(
            stores_json(&[ok(vec![2, 1]), failed], 0),
            r#"{"a":2,"b":"error"}"#
        );
    }

    #[test]
    fn plan_dedupes_devices_within_a_request() {
        let text = r#"{"requests":[
            {"type":"FORGET","contacts":[{"email":"A@b.com"},{"email":"a@B.com"},{"phone":"617"}]},
            {"type":"FORGET","contacts":[{"email":"a@b.com"}]}]}"#;
        let file =
            parse::parse(text.as_bytes(), Kind::Forget, &Default::default()).expect("parses");
        let plan = Plan::new(&file);
        assert_eq!(
            plan.targets.len(),
            2,
            "same device twice in one request runs once; per request it runs again"
        );
        assert_eq!(plan.positions[0], vec![(0, 0), (0, 1)]);
        assert_eq!(plan.invalid.len(), 1);
        assert_eq!(plan.given[0], "A@b.com");
        assert_eq!(plan.chunks(1), vec![0..1, 1..2]);
        assert_eq!(plan.chunks(500), vec![0..2]);
    }
}
