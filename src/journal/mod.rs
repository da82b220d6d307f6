//! The journal: the one owner of gdprd's durable protocol and of the state folder. The engine, the HTTP front
//! doors and `gdprd status` ask it; none of them reads its tables, names its files or keeps its counters.
//!
//! Three layers, each in its own file:
//! - [`Ledger`] is the durable record, an object-safe trait: files claimed or rejected (with a keyed digest of
//!   their bytes), each store's step per chunk of a forget, each contact's response as its chunk completes, and
//!   the append-only audit trail. [`SqliteLedger`] keeps it in `STATE/ledger.db` (WAL); another database can
//!   implement the trait (a PostgreSQL ledger shared by several daemons) without touching its callers.
//! - The state folder's layout (`folder.rs`): the lock `gdprd.lock` ([`StateLock`]), the claimed copies
//!   `claimed/ID.json`, HTTP copies not yet claimed `claimed/pending-TAG.json`, export parts `work/ID-N.zip`,
//!   HTTP jobs' facts and lines `jobs/ID.json` and `jobs/ID.lines.json` ([`JobFacts`]), the hidden holding name
//!   `GDPR_Submit/.gdprd-leaving-ID.json` of a file leaving, and what a crash leaves of them
//!   ([`Journal::remove_leftovers`]).
//! - [`Journal`] is the protocol over both, a cheap handle (clones share one ledger) that the workers and the HTTP
//!   front doors hold:
//!   - a dropped file: [`Journal::admit`] says what the journal knows of a name ([`Known`]); a new file is taken with
//!     [`Journal::claim`] (its record first, then its copy: until the copy is written the file is still in
//!     `GDPR_Submit`), a refused one with [`Journal::reject`];
//!   - an HTTP request: [`Journal::submit`] writes its copy under a pending name, claims it and renames the copy
//!     to the claimed name, so the request is durable before its client hears `202`; the worker then takes the
//!     [`Claim`] with [`Journal::claimed`], not through the crash-recovery path;
//!   - a [`Claim`] is a claimed file at work: it plans and finishes each store's steps, completes chunks with
//!     their responses and audit rows, finishes the file, and takes it out of `GDPR_Submit`;
//!   - read-only queries: [`Journal::job`] (what the front doors report of a job, including whether a worker is
//!     executing it right now) and [`Reader::files`] (what `gdprd status` lists, without taking the lock);
//!   - deadlines: every claim records when the file was received and when it is due ([`Dates`]);
//!     [`Journal::extend`] records its one extension with the reason, audited (the rules are
//!     [`crate::deadline`]'s).
//!
//! It never holds a device value in clear: the audit trail keeps a keyed hash (see [`crate::audit`]).

mod cluster;
mod folder;
mod jobs;
mod migrate;
mod postgres;
mod sqlite;

pub use cluster::{ClusterConfig, ClusterConfigError};
pub use folder::StateLock;
pub use jobs::JobFacts;
pub use migrate::{migrate_ledger, Migrated};
pub use postgres::PostgresLedger;
pub use sqlite::SqliteLedger;

use crate::audit::Secret;
use crate::deadline::{Dates, Due, Extension};
use crate::engine::Response;
use crate::requests::Kind;
use crate::results::atomic;
use chrono::{DateTime, Utc};
use folder::StateFolder;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Why the journal failed. Fatal for the file or request at hand (it is retried later), never for the daemon.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The ledger's database refused a statement.
    #[error("ledger database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored plan could not be read back.
    #[error("ledger holds an unreadable plan: {0}")]
    Corrupt(#[source] serde_json::Error),
    /// Another daemon holds the state folder.
    #[error("the state folder {} is in use by another gdprd (pid {holder}): a state folder serves one daemon; stop the other one first, or give this one its own state_dir", dir.display())]
    Locked {
        /// The state folder.
        dir: PathBuf,
        /// What the holder wrote in the lock file (its process id).
        holder: String,
    },
    /// The state folder's lock file could not be opened or locked, or its secret read.
    #[error("cannot lock the state folder {}: {source}", dir.display())]
    Lock {
        /// The state folder.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another node took the file over after this node's lease expired (a cluster's ledger): this node's
    /// write is refused, and nothing of it is recorded.
    #[error("file {id} was taken over by node {}: this node's lease on it expired, and its writes are refused", holder.as_deref().unwrap_or("(none)"))]
    Fenced {
        /// The file's ledger id.
        id: i64,
        /// The node holding it now.
        holder: Option<String>,
    },
    /// This node's installation secret is not the one the cluster's other nodes key their hashes with.
    #[error("{} is not the installation secret of the cluster's other nodes (their audit hashes and file digests would not compare): copy secret.key from a node of the cluster (or from the node whose ledger was migrated) before starting this one", path.display())]
    SecretMismatch {
        /// This node's secret file.
        path: PathBuf,
    },
    /// The cluster's ledger was migrated by a newer gdprd.
    #[error("the ledger's schema is at version {found}, newer than this gdprd knows ({known}): upgrade gdprd")]
    LedgerTooNew {
        /// The version found in `schema_version`.
        found: i32,
        /// The newest version this gdprd knows.
        known: i32,
    },
    /// `gdprd migrate-ledger` found the target ledger holding other rows than the SQLite ledger's.
    #[error("the PostgreSQL ledger is not empty and holds other rows than {}: {what}; nothing was copied", source_path.display())]
    MigrateConflict {
        /// The SQLite ledger.
        source_path: PathBuf,
        /// What differs.
        what: String,
    },
    /// The ledger's schema is not the one this gdprd reads: newer (a later gdprd wrote it), or older and opened
    /// read-only (only a read-write open upgrades it).
    #[error("the ledger's schema is version {found}, this gdprd reads version {known}: {}", if found > known { "it was written by a newer gdprd; run that one" } else { "start the daemon (or any gdprd command that writes the ledger) once to upgrade it" })]
    Outdated {
        /// The version the ledger has.
        found: u32,
        /// The version this gdprd reads.
        known: u32,
    },
    /// A file of the state folder (or the submission leaving `GDPR_Submit`) could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> JournalError {
    let context = context.into();
    move |source| JournalError::Io { context, source }
}

/// A contact's place in a file: (request, contact), both 0-based.
pub type Position = (usize, usize);

/// Where a file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Taken for processing; not finished.
    Claimed,
    /// Executed (or refused whole); its execution log is in place.
    Done,
    /// Not executed; its rejection notice is in place.
    Rejected,
}

/// A file's record in the ledger.
#[derive(Debug, Clone)]
pub struct FileRecord {
    /// Ledger id.
    pub id: i64,
    /// The account it came to.
    pub account: String,
    /// Its name in the account's `GDPR_Submit` (or the name the HTTP front doors made for it).
    pub name: String,
    /// Where it stands.
    pub state: FileState,
    /// The keyed digest of the bytes claimed (`hmac-sha256:` and hex); a bare hex SHA-256 in a file claimed
    /// before the upgrade that keyed it.
    pub sha256: Option<String>,
    /// Devices per journal chunk, fixed at claim time.
    pub batch_size: usize,
    /// Whether the submission has left `GDPR_Submit`.
    pub removed: bool,
    /// When it was received.
    pub received_at: String,
    /// Why it was rejected or refused.
    pub error: Option<String>,
    /// The request type claimed (`FORGET`, `EXPORT`, `PSEUDONYMISE`); none for a rejected name.
    pub kind: Option<String>,
    /// When it is due (see [`crate::deadline`]); none for a rejected name.
    pub due: Option<Due>,
    /// Its one extension, if it was extended.
    pub extension: Option<Extension>,
}

impl FileRecord {
    /// The record of `file` as a ledger has just claimed it, as `id`, received at `received_at`.
    fn claimed(id: i64, file: &NewClaim<'_>, received_at: String) -> FileRecord {
        FileRecord {
            id,
            account: file.account.to_owned(),
            name: file.name.to_owned(),
            state: FileState::Claimed,
            sha256: Some(file.digest.to_owned()),
            batch_size: file.batch_size,
            removed: false,
            received_at,
            error: None,
            kind: Some(file.kind.as_type().to_owned()),
            due: Some(file.dates.due),
            extension: None,
        }
    }
}

impl FileState {
    /// The state a ledger's `state` column names (`claimed`, `done`, `rejected`).
    fn parse(s: &str) -> FileState {
        match s {
            "done" => FileState::Done,
            "rejected" => FileState::Rejected,
            _ => FileState::Claimed,
        }
    }
}

/// A file to record as claimed (see [`Ledger::claim`]).
#[derive(Debug, Clone, Copy)]
pub struct NewClaim<'a> {
    /// The account.
    pub account: &'a str,
    /// The file's name.
    pub name: &'a str,
    /// Its request type.
    pub kind: Kind,
    /// The keyed digest of its bytes.
    pub digest: &'a str,
    /// Its size in bytes.
    pub size: u64,
    /// Devices per chunk.
    pub batch_size: usize,
    /// Its bytes: a ledger shared by several nodes keeps them, so that any node can resume the file.
    pub bytes: &'a [u8],
    /// When it was received and when it is due.
    pub dates: Dates,
}

/// Who holds the lease of a claimed file (see [`Ledger::acquire`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// This node, now; its writes of the file are fenced by the epoch it took.
    Here,
    /// Another node, whose lease has not expired.
    Elsewhere {
        /// The node's name.
        node: String,
        /// When its lease expires unless renewed (RFC 3339, UTC).
        until: String,
    },
}

/// A file's record as the HTTP front doors report it.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// Where it stands.
    pub state: FileState,
    /// Why it was refused whole or rejected.
    pub error: Option<String>,
    /// When it finished (RFC 3339).
    pub finished_at: Option<String>,
    /// Its result file names in `GDPR_Result`.
    pub results: Vec<String>,
    /// Whether its execution has begun: a journal chunk of it has completed, or a worker is executing it.
    pub started: bool,
    /// When it was received (RFC 3339).
    pub received_at: String,
    /// When it is due.
    pub due: Option<Due>,
    /// Its one extension, if it was extended.
    pub extension: Option<Extension>,
}

/// The outcome counts of a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Contacts answered `SUCCESS`.
    pub success: u64,
    /// Contacts answered `SUCCESS: not found`.
    pub not_found: u64,
    /// Contacts answered `ERROR: …`.
    pub errors: u64,
}

/// A file as `gdprd status` lists it.
#[derive(Debug, Clone)]
pub struct FileSummary {
    /// Ledger id (what `gdprd extend` and the HTTP job URLs name).
    pub id: i64,
    /// The account.
    pub account: String,
    /// The file name.
    pub name: String,
    /// Where it stands.
    pub state: FileState,
    /// Why it was rejected or refused.
    pub error: Option<String>,
    /// When it was received (RFC 3339).
    pub received_at: String,
    /// When it finished (RFC 3339).
    pub finished_at: Option<String>,
    /// The responses journaled so far, counted.
    pub counts: Counts,
    /// Of the `ERROR` responses, those gdprd owes work for ([`Response::is_owed`]): they keep the file open.
    pub owed_errors: u64,
    /// When it is due; none for a rejected name.
    pub due: Option<Due>,
    /// Its one extension, if it was extended.
    pub extension: Option<Extension>,
    /// The stores it waits for, while it waits (see [`Claim::wait_for`]).
    pub waiting: Option<Waiting>,
}

/// What makes a claimed file a retry of a finished one (see [`Journal::retry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryLink {
    /// The ledger id of the file it retries.
    pub original: i64,
    /// Its number: 2 for the first retry (its log is `<stem>-execution-log-2.json`), then 3, …
    pub attempt: u32,
    /// The stores it runs on.
    pub stores: Vec<String>,
}

/// Why `gdprd retry` refuses a file.
#[derive(Debug, thiserror::Error)]
pub enum RetryRefusal {
    /// No such file.
    #[error("no file {0} in the ledger")]
    NoFile(i64),
    /// The file is itself a retry.
    #[error("file {id} is a retry of file {original}: retry file {original}")]
    IsRetry {
        /// The file asked for.
        id: i64,
        /// The file it retries.
        original: i64,
    },
    /// Not finished yet (or rejected).
    #[error("file {id} ({name}) is not finished: only a finished forget or pseudonymisation can be retried")]
    NotFinished {
        /// The file.
        id: i64,
        /// Its name.
        name: String,
    },
    /// An export: its archive is written whole, so it is resubmitted.
    #[error("file {id} ({name}) is not a forget or pseudonymisation: resubmit an export")]
    NotForget {
        /// The file.
        id: i64,
        /// Its name.
        name: String,
    },
    /// A retry of it is waiting or running.
    #[error("file {id} has a retry waiting or running ({pending}); it runs once")]
    Pending {
        /// The file.
        id: i64,
        /// The pending retry's name.
        pending: String,
    },
    /// Nothing left that a store could fix.
    #[error("file {id} ({name}) has nothing to retry: no contact has a store error left{store}")]
    Nothing {
        /// The file.
        id: i64,
        /// Its name.
        name: String,
        /// ` on store S` when one store was asked for.
        store: String,
    },
    /// The store asked for is not one of the account's.
    #[error("store {store:?} is not one of account {account}'s stores")]
    UnknownStore {
        /// The store.
        store: String,
        /// The account.
        account: String,
    },
    /// The kept copy is gone (or does not hold the bytes claimed).
    #[error(
        "the devices of file {0} are not kept any more (state folder retry/): resubmit the file"
    )]
    CopyGone(i64),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What each store last did for each device, by device digest: rows found, or `None` when it failed (see
/// [`Journal::device_outcomes`]).
pub type DeviceOutcomes = HashMap<String, std::collections::BTreeMap<String, Option<u64>>>;

/// How a retry's name ends: `<original name>#retry-N`.
pub const RETRY_MARK: &str = "#retry-";

/// A claimed file waiting for stores that could not be reached or opened: it is tried again with a capped
/// back-off until `[engine] retry_window` has passed since it began to wait (see [`Claim::wait_for`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The stores it waits for, by name.
    pub stores: Vec<String>,
    /// When it began to wait (RFC 3339, UTC): the window counts from here, across restarts.
    pub since: String,
    /// How many times its stores were tried and found unavailable.
    pub tries: u32,
}

impl FileSummary {
    /// Counts `n` responses of the text `text`, as a ledger reads them back: classified by [`Response`], in
    /// Rust, so that no rule about what a response says lives in a ledger's SQL.
    fn count_responses(&mut self, text: &str, n: u64) {
        let counts = &mut self.counts;
        match crate::engine::ResponseKind::of_text(text) {
            crate::engine::ResponseKind::Success => counts.success += n,
            crate::engine::ResponseKind::NotFound => counts.not_found += n,
            crate::engine::ResponseKind::Error => {
                counts.errors += n;
                if Response::parse(text).is_owed() {
                    self.owed_errors += n;
                }
            }
        }
    }
}

/// The deadline columns every ledger keeps in `files` (text, as [`time_text`] and [`day_text`] write them), in
/// the order [`deadline_of`] reads them.
const DEADLINE: &str = "due_on, due_at, extended_from, extension_reason, extended_at";

/// An instant as the ledgers keep it: RFC 3339, UTC, milliseconds.
fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A day as the ledgers keep it: `YYYY-MM-DD`.
fn day_text(d: chrono::NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// A file's due day and extension from its [`DEADLINE`] cells: none where they do not read.
fn deadline_of(cells: [Option<String>; 5]) -> (Option<Due>, Option<Extension>) {
    let [due_on, due_at, from, reason, at] = cells;
    let time = |t: Option<String>| {
        DateTime::parse_from_rfc3339(&t?)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let due = (|| {
        Some(Due {
            on: due_on?.parse().ok()?,
            at: time(due_at)?,
        })
    })();
    let extension = (|| {
        Some(Extension {
            previous_due: from?.parse().ok()?,
            reason: reason.unwrap_or_default(),
            at: time(at).unwrap_or(DateTime::UNIX_EPOCH),
        })
    })();
    (due, extension)
}

/// Which files [`Ledger::files`] lists.
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    /// Only this account's.
    pub account: Option<String>,
    /// Only those received since (RFC 3339); all when none.
    pub since: Option<String>,
    /// Only those that may be open: claimed, or finished with an `ERROR` response (the caller decides with
    /// [`crate::deadline::is_open`]).
    pub open_only: bool,
}

/// One row of the audit trail.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Account name.
    pub account: String,
    /// Submission file name.
    pub file: String,
    /// The request's `requestcase`.
    pub requestcase: Option<String>,
    /// `phone`, `email`, `ipaddr`, or none for a contact of unknown shape or a file-level event.
    pub device_type: Option<String>,
    /// HMAC-SHA256 of the canonical device, hex; none when the device was invalid.
    pub device_hmac: Option<String>,
    /// `forget`, `export`, `reject`, or `extend` (a deadline extended: its outcome says from and to what, and why).
    pub action: String,
    /// Rows found per store, as a JSON object.
    pub stores: String,
    /// The response given.
    pub outcome: String,
    /// When the work on it started.
    pub started: DateTime<Utc>,
    /// When it finished.
    pub finished: DateTime<Utc>,
}

/// A store's step for one chunk: the rows it found per target before it changed anything, and whether it
/// committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Rows found per target of the chunk.
    pub found: Vec<u64>,
    /// Whether the store committed its change.
    pub done: bool,
}

impl Step {
    /// A step as a ledger keeps it: its rows found as a JSON array, and whether it committed.
    ///
    /// # Errors
    /// [`JournalError::Corrupt`] when the array cannot be read.
    fn read(planned: &str, done: bool) -> Result<Step, JournalError> {
        serde_json::from_str::<Vec<u64>>(planned)
            .map(|found| Step { found, done })
            .map_err(JournalError::Corrupt)
    }
}

/// The durable record of the protocol: what a database keeps for the [`Journal`]. Every method is one
/// statement or one transaction; what needs the state folder or the installation secret is the journal's.
pub trait Ledger: Send + Sync {
    /// The record of `name` in `account`, if it was ever claimed or rejected.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn lookup(&self, account: &str, name: &str) -> Result<Option<FileRecord>, JournalError>;

    /// The record of file `id`.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn record(&self, id: i64) -> Result<Option<FileRecord>, JournalError>;

    /// Records a file as claimed; its name is then taken for good.
    ///
    /// # Errors
    /// [`JournalError::Database`], including when the name is already recorded.
    fn claim(&self, file: &NewClaim<'_>) -> Result<FileRecord, JournalError>;

    /// Records a name that was not executed, with the reason, and its audit entry, in one transaction. A name
    /// already recorded keeps its record; the audit entry is added all the same.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn reject(
        &self,
        account: &str,
        name: &str,
        reason: &str,
        audit: &AuditEntry,
    ) -> Result<(), JournalError>;

    /// Records an audit entry on its own (a file refused whole, say).
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn audit(&self, entry: &AuditEntry) -> Result<(), JournalError>;

    /// `store`'s step for `chunk` of file `id`, if one was recorded.
    ///
    /// # Errors
    /// [`JournalError`].
    fn step(&self, id: i64, chunk: usize, store: &str) -> Result<Option<Step>, JournalError>;

    /// Records (or replaces) `store`'s step for `chunk` of file `id`.
    ///
    /// # Errors
    /// [`JournalError`].
    fn record_step(
        &self,
        id: i64,
        chunk: usize,
        store: &str,
        step: &Step,
    ) -> Result<(), JournalError>;

    /// Whether `chunk` of file `id` has completed (its responses are journaled).
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn chunk_done(&self, id: i64, chunk: usize) -> Result<bool, JournalError>;

    /// Completes `chunk` of file `id`: its contacts' responses and audit entries, in one transaction; a chunk
    /// completes once.
    ///
    /// # Errors
    /// [`JournalError::Database`]; then nothing of the chunk is recorded.
    fn complete_chunk(
        &self,
        id: i64,
        chunk: usize,
        responses: &[(Position, Response)],
        audit: &[AuditEntry],
    ) -> Result<(), JournalError>;

    /// The journaled responses of file `id`, by position.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn responses(&self, id: i64) -> Result<HashMap<Position, Response>, JournalError>;

    /// Marks file `id` done, with its result names, counts and file-level error if it was refused whole.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn finish(
        &self,
        id: i64,
        results: &[String],
        counts: Counts,
        error: Option<&str>,
    ) -> Result<(), JournalError>;

    /// Marks that the submission of `account`/`name` has left `GDPR_Submit`.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn mark_removed(&self, account: &str, name: &str) -> Result<(), JournalError>;

    /// Files claimed but not finished, or finished but not yet out of `GDPR_Submit`, as (account, name), in
    /// the order they came.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn unfinished(&self) -> Result<Vec<(String, String)>, JournalError>;

    /// File `id` as the HTTP front doors report it (its `started` from the ledger alone), if the ledger has it.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn job(&self, id: i64) -> Result<Option<JobRecord>, JournalError>;

    /// Takes the lease of the claimed file `id` for this node, to work it: granted when no node holds it, when
    /// this node does, or when the holder's lease has expired; each grant starts a new epoch, which fences the
    /// writes of any earlier holder. A ledger of one node (SQLite) always grants it.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn acquire(&self, id: i64) -> Result<Holder, JournalError>;

    /// Renews this node's lease of file `id` (every write of the file renews it too).
    ///
    /// # Errors
    /// [`JournalError::Fenced`] when another node took the file over; [`JournalError::Database`].
    fn renew(&self, id: i64) -> Result<(), JournalError>;

    /// The bytes claimed as file `id`, when the ledger keeps them (a cluster's); `None` for a ledger that leaves
    /// the copy to the state folder.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn claimed_copy(&self, id: i64) -> Result<Option<Vec<u8>>, JournalError>;

    /// What file `id` is waiting for, if it waits for unavailable stores.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn waiting(&self, id: i64) -> Result<Option<Waiting>, JournalError>;

    /// Records that file `id` waits (`Some`), or waits no more (`None`).
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn set_waiting(&self, id: i64, waiting: Option<&Waiting>) -> Result<(), JournalError>;

    /// Records a file as claimed, as [`Ledger::claim`], and as the retry `link`, in one transaction.
    ///
    /// # Errors
    /// [`JournalError::Database`], including when the name is already recorded.
    fn claim_retry(
        &self,
        file: &NewClaim<'_>,
        link: &RetryLink,
    ) -> Result<FileRecord, JournalError>;

    /// What file `id` retries, if it is a retry.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn retry_link(&self, id: i64) -> Result<Option<RetryLink>, JournalError>;

    /// The retries of file `original`, in the order of their attempts, with their records.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn retries(&self, original: i64) -> Result<Vec<(FileRecord, RetryLink)>, JournalError>;

    /// The audit rows of `files` of `account` that name a device, in the order they were written, as (device
    /// digest, rows found per store or `"error"` as JSON).
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn device_stores(
        &self,
        account: &str,
        files: &[String],
    ) -> Result<Vec<(String, String)>, JournalError>;

    /// Takes or renews this node's lease of the singleton task `name` (the retention sweep, say) for `lease`:
    /// granted when no node holds it, this node does, or the holder's lease has expired. Returns whether this
    /// node holds it now. A ledger of one node (SQLite) always grants it.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn hold_singleton(&self, name: &str, lease: std::time::Duration) -> Result<bool, JournalError>;

    /// Gives up this node's lease of the singleton task `name`, if it holds it, so another node may take it at
    /// once.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn release_singleton(&self, name: &str) -> Result<(), JournalError>;

    /// The files `filter` picks, newest first.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn files(&self, filter: &FileFilter) -> Result<Vec<FileSummary>, JournalError>;

    /// Extends the deadline of file `id` to `due`, with `reason`, at `at`, and records `audit`, in one
    /// transaction; the due day before is kept as the extension's `previous_due`. Returns `false`, recording
    /// nothing, when the file was extended before (a file is extended once) or is not a claimed or done file.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn extend(
        &self,
        id: i64,
        due: &Due,
        reason: &str,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, JournalError>;

    /// Files claimed and unfinished whose lease no node holds (expired, or never taken since a migration), as
    /// (account, name), in the order they came: a cluster node queues them to take them over. A ledger of one
    /// node (SQLite) has none: its daemon resumes its own files at start.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    fn orphans(&self) -> Result<Vec<(String, String)>, JournalError>;
}

/// The chunk number under which a file's survey is kept as a step (chunks count from 0; this one never runs).
const SURVEY_CHUNK: usize = u32::MAX as usize;

/// The text whose keyed hash tells whether two nodes share the installation secret.
const SECRET_CHECK: &str = "gdprd cluster: installation secret check";

/// How a keyed file digest starts; a digest without it is a legacy, unkeyed SHA-256.
const KEYED: &str = "hmac-sha256:";

/// What the journal knows of a name found in `GDPR_Submit` (see [`Journal::admit`]).
pub enum Known {
    /// Never claimed nor rejected: a new submission.
    New,
    /// Claimed and not finished: a crash came while it ran; it resumes.
    Unfinished(Claim),
    /// Claimed and not finished, and another node of the cluster holds its lease: it is that node's to work.
    Elsewhere {
        /// The node holding it.
        node: String,
    },
    /// Rejected, but not yet out of `GDPR_Submit` (a crash came before its removal).
    Rejected,
    /// Finished, but not yet out of `GDPR_Submit` (a crash came before its removal).
    Finished(Claim),
    /// Finished and gone from `GDPR_Submit`: a file under this name now is a new one under a name already used.
    Taken(FileRecord),
}

/// The journal: the protocol over the [`Ledger`] and the state folder. Clones share the same ledger.
#[derive(Clone)]
pub struct Journal {
    ledger: Arc<dyn Ledger>,
    folder: Arc<StateFolder>,
    secret: Arc<Secret>,
    /// The ids of the files the workers are executing now.
    executing: Arc<Mutex<HashSet<i64>>>,
    /// Whether the ledger is a cluster's, which keeps the claimed copies itself (none in the state folder).
    shared: bool,
    /// A cluster's lease renewal, stopped when the last clone goes.
    _renewal: Option<Arc<Renewal>>,
}

/// Renews the leases of the files a cluster node's workers execute, every third of `lease_seconds`, on a thread
/// of its own: a store step longer than the lease does not let another node take the file over while this one
/// works it. The thread ends when the journal's last clone drops this.
struct Renewal(tokio_util::sync::CancellationToken);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Renewal {
    fn start(
        ledger: &Arc<dyn Ledger>,
        executing: &Arc<Mutex<HashSet<i64>>>,
        every: std::time::Duration,
    ) -> Result<Renewal, JournalError> {
        let stop = tokio_util::sync::CancellationToken::new();
        let (ledger, executing, until) = (
            Arc::downgrade(ledger),
            Arc::downgrade(executing),
            stop.clone(),
        );
        std::thread::Builder::new()
            .name("gdprd-lease".into())
            .spawn(move || {
                while crate::backoff::sleep_blocking(&until, every) {
                    let (Some(ledger), Some(executing)) = (ledger.upgrade(), executing.upgrade())
                    else {
                        return;
                    };
                    let ids: Vec<i64> = executing
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .iter()
                        .copied()
                        .collect();
                    for id in ids {
                        if let Err(e) = ledger.renew(id) {
                            tracing::warn!(id, error = %e, "cannot renew the lease of a file at work");
                        }
                    }
                }
            })
            .map_err(io_err("cannot start the lease renewal thread"))?;
        Ok(Renewal(stop))
    }
}

impl Journal {
    /// Opens the journal of `state_dir`: its folders and ledger (created if missing), with the installation
    /// secret (created if missing) as the key of file digests. Digests an older gdprd stored unkeyed are
    /// migrated: a file still in work is keyed again from its claimed copy, and a finished file's digest, needed
    /// no more, is cleared.
    ///
    /// # Errors
    /// [`JournalError`] when the folders, the secret or the ledger cannot be prepared.
    pub fn open(state_dir: &Path) -> Result<Journal, JournalError> {
        Journal::open_with(state_dir, None)
    }

    /// Opens the journal `config` says: with `[cluster]`, the PostgreSQL ledger it names, this node's name in
    /// its leases, and the state folder for what stays local (export parts, HTTP jobs' files, the secret);
    /// without it, as [`Journal::open`].
    ///
    /// # Errors
    /// [`JournalError`] when the folders, the secret or the ledger cannot be prepared.
    pub fn open_config(config: &crate::config::Config) -> Result<Journal, JournalError> {
        Journal::open_with(&config.state_dir, config.cluster.as_ref())
    }

    /// Opens the journal of `state_dir` with the ledger of `cluster`, or the state folder's SQLite ledger.
    ///
    /// # Errors
    /// [`JournalError`] when the folders, the secret or the ledger cannot be prepared.
    pub fn open_with(
        state_dir: &Path,
        cluster: Option<&ClusterConfig>,
    ) -> Result<Journal, JournalError> {
        let folder = StateFolder::create(state_dir)?;
        let secret = Secret::load_or_create(state_dir).map_err(|source| JournalError::Lock {
            dir: state_dir.to_owned(),
            source,
        })?;
        let ledger: Arc<dyn Ledger> = match cluster {
            Some(cluster) => {
                let ledger = PostgresLedger::open(cluster, &cluster.node_name())?;
                ledger.check_secret(&secret.hmac(SECRET_CHECK), state_dir)?;
                Arc::new(ledger)
            }
            None => Arc::new(SqliteLedger::open(state_dir, &|id, legacy| {
                use sha2::Digest;
                let copy = std::fs::read(folder.claimed_copy(id)).ok()?;
                (hex::encode(sha2::Sha256::digest(&copy)) == legacy)
                    .then(|| format!("{KEYED}{}", secret.hmac_bytes(&copy)))
            })?),
        };
        let executing = Arc::default();
        let renewal = cluster
            .map(|c| Renewal::start(&ledger, &executing, c.lease_seconds / 3))
            .transpose()?
            .map(Arc::new);
        Ok(Journal {
            shared: cluster.is_some(),
            ledger,
            folder: Arc::new(folder),
            secret: Arc::new(secret),
            executing,
            _renewal: renewal,
        })
    }

    /// The keyed digest of a file's bytes: HMAC-SHA256 with the installation secret. An unkeyed hash of a small
    /// file from a known template can be reversed by trying the few devices it may hold.
    fn digest(&self, bytes: &[u8]) -> String {
        format!("{KEYED}{}", self.secret.hmac_bytes(bytes))
    }

    /// Whether `bytes` are the bytes claimed as `rec`.
    fn holds(&self, rec: &FileRecord, bytes: &[u8]) -> bool {
        use sha2::Digest;
        match rec.sha256.as_deref() {
            Some(d) if d.starts_with(KEYED) => d == self.digest(bytes),
            Some(legacy) => legacy == hex::encode(sha2::Sha256::digest(bytes)),
            None => false,
        }
    }

    fn claim_of(&self, record: FileRecord) -> Claim {
        Claim {
            journal: self.clone(),
            record,
        }
    }

    /// What the journal knows of `name` in `account`.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn admit(&self, account: &str, name: &str) -> Result<Known, JournalError> {
        Ok(match self.ledger.lookup(account, name)? {
            None => Known::New,
            Some(rec) if rec.state == FileState::Claimed => match self.ledger.acquire(rec.id)? {
                Holder::Here => Known::Unfinished(self.claim_of(rec)),
                Holder::Elsewhere { node, .. } => Known::Elsewhere { node },
            },
            Some(rec) if !rec.removed && rec.state == FileState::Rejected => Known::Rejected,
            Some(rec) if !rec.removed => Known::Finished(self.claim_of(rec)),
            Some(rec) => Known::Taken(rec),
        })
    }

    /// Claims the dropped file `name` of `account` (read as `bytes`) and keeps a copy of it in the state folder;
    /// its name is then taken for good.
    ///
    /// # Errors
    /// [`JournalError`]; a file recorded but without its copy is read again from `GDPR_Submit` when it resumes.
    pub fn claim(
        &self,
        account: &str,
        name: &str,
        kind: Kind,
        bytes: &[u8],
        batch_size: usize,
        dates: Dates,
    ) -> Result<Claim, JournalError> {
        let record = self.ledger.claim(&NewClaim {
            account,
            name,
            kind,
            digest: &self.digest(bytes),
            size: bytes.len() as u64,
            batch_size,
            bytes,
            dates,
        })?;
        if !self.shared {
            self.folder.keep_copy(record.id, bytes)?;
        }
        Ok(self.claim_of(record))
    }

    /// Claims a request the HTTP front doors made (`bytes`, named `name`, for `account`). Its copy is in place
    /// under a pending name before the claim makes it visible, and renamed to its claimed name after: a crash
    /// in between leaves a pending copy that the next start removes, and the client, who heard no `202`, sends
    /// it again.
    ///
    /// # Errors
    /// [`JournalError`]; nothing is then claimed.
    pub fn submit(
        &self,
        account: &str,
        name: &str,
        kind: Kind,
        bytes: &[u8],
        batch_size: usize,
        dates: Dates,
    ) -> Result<Claim, JournalError> {
        self.submit_linked(account, name, kind, bytes, batch_size, dates, None)
    }

    /// [`Journal::submit`], recording the claim as the retry `link` when there is one.
    #[allow(clippy::too_many_arguments)]
    fn submit_linked(
        &self,
        account: &str,
        name: &str,
        kind: Kind,
        bytes: &[u8],
        batch_size: usize,
        dates: Dates,
        link: Option<&RetryLink>,
    ) -> Result<Claim, JournalError> {
        let claim = NewClaim {
            account,
            name,
            kind,
            digest: &self.digest(bytes),
            size: bytes.len() as u64,
            batch_size,
            bytes,
            dates,
        };
        let record = |claim: &NewClaim<'_>| match link {
            Some(link) => self.ledger.claim_retry(claim, link),
            None => self.ledger.claim(claim),
        };
        if self.shared {
            // The claim and the copy are one row of a cluster's ledger.
            return Ok(self.claim_of(record(&claim)?));
        }
        let pending = self.folder.write_pending(bytes)?;
        let record = match record(&claim) {
            Ok(record) => record,
            Err(e) => {
                let _ = atomic::remove_if_present(&pending);
                return Err(e);
            }
        };
        self.folder.promote_pending(&pending, record.id)?;
        Ok(self.claim_of(record))
    }

    /// Keeps the bytes of the finished file `id` in the state folder (`retry/ID.json`) for `gdprd retry`: it has
    /// contacts a store could not do.
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn keep_for_retry(&self, id: i64, bytes: &[u8]) -> Result<(), JournalError> {
        self.folder.keep_for_retry(id, bytes)
    }

    /// Removes the bytes of file `id` kept for `gdprd retry` (nothing is left to retry).
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn drop_retry_copy(&self, id: i64) -> Result<(), JournalError> {
        atomic::remove_if_present(&self.folder.retry_copy(id))
            .map_err(io_err("cannot remove the copy kept for gdprd retry"))
    }

    /// What the claimed file `id` retries, if it is a retry.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn retry_link(&self, id: i64) -> Result<Option<RetryLink>, JournalError> {
        self.ledger.retry_link(id)
    }

    /// The record of `name` in `account`, if it was ever claimed or rejected.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn lookup(&self, account: &str, name: &str) -> Result<Option<FileRecord>, JournalError> {
        self.ledger.lookup(account, name)
    }

    /// The record of file `id`.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn record(&self, id: i64) -> Result<Option<FileRecord>, JournalError> {
        self.ledger.record(id)
    }

    /// The responses of `original` with those of its finished retries numbered below `before` laid over them,
    /// and the names of those files (the original first).
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn retried_responses(
        &self,
        original: &FileRecord,
        before: u32,
    ) -> Result<(HashMap<Position, Response>, Vec<String>), JournalError> {
        let mut responses = self.ledger.responses(original.id)?;
        let mut names = vec![original.name.clone()];
        for (record, link) in self.ledger.retries(original.id)? {
            if link.attempt >= before || record.state != FileState::Done {
                continue;
            }
            responses.extend(self.ledger.responses(record.id)?);
            names.push(record.name);
        }
        Ok((responses, names))
    }

    /// What each store last did for each device of `files` of `account`, by device digest: rows found, or `None`
    /// when it failed. Later rows win.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn device_outcomes(
        &self,
        account: &str,
        files: &[String],
    ) -> Result<DeviceOutcomes, JournalError> {
        let mut out = DeviceOutcomes::new();
        for (digest, stores) in self.ledger.device_stores(account, files)? {
            let Ok(map) =
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&stores)
            else {
                continue;
            };
            let slot = out.entry(digest).or_default();
            for (store, v) in map {
                slot.insert(store, v.as_u64());
            }
        }
        Ok(out)
    }

    /// Records a retry of the finished forget (or pseudonymisation) `id` of an account whose stores are
    /// `account_stores`: its contacts that a store could not do run again on `store`, or on every store that
    /// failed for one of them. The retry is a claimed file of its own (`<name>#retry-N`, N from 2), linked to
    /// `id`, run by a worker exactly once like any claimed file; its log is `<stem>-execution-log-N.json`.
    ///
    /// # Errors
    /// [`RetryRefusal`]: why the file cannot be retried now.
    pub fn retry(
        &self,
        id: i64,
        store: Option<&str>,
        account_stores: &[String],
    ) -> Result<Claim, RetryRefusal> {
        let rec = self.ledger.record(id)?.ok_or(RetryRefusal::NoFile(id))?;
        if let Some(link) = self.ledger.retry_link(id)? {
            return Err(RetryRefusal::IsRetry {
                id,
                original: link.original,
            });
        }
        if rec.state != FileState::Done {
            return Err(RetryRefusal::NotFinished { id, name: rec.name });
        }
        let kind = rec.kind.as_deref().and_then(Kind::from_type);
        let Some(kind @ (Kind::Forget | Kind::Pseudonymise)) = kind else {
            return Err(RetryRefusal::NotForget { id, name: rec.name });
        };
        let retries = self.ledger.retries(id)?;
        if let Some((pending, _)) = retries.iter().find(|(r, _)| r.state != FileState::Done) {
            return Err(RetryRefusal::Pending {
                id,
                pending: pending.name.clone(),
            });
        }
        if let Some(s) = store {
            if !account_stores.iter().any(|a| a == s) {
                return Err(RetryRefusal::UnknownStore {
                    store: s.to_owned(),
                    account: rec.account,
                });
            }
        }
        let (responses, names) = self.retried_responses(&rec, u32::MAX)?;
        let outcomes = self.device_outcomes(&rec.account, &names)?;
        let failed: Vec<String> = account_stores
            .iter()
            .filter(|s| {
                outcomes
                    .values()
                    .any(|m| m.get(*s).is_some_and(Option::is_none))
            })
            .cloned()
            .collect();
        let stores: Vec<String> = match store {
            Some(s) => vec![s.to_owned()],
            None if failed.is_empty() => account_stores.to_vec(),
            None => failed.clone(),
        };
        let open = responses.values().any(Response::is_retryable);
        let on_store = store.is_none_or(|s| failed.iter().any(|f| f == s));
        if !open || !on_store {
            return Err(RetryRefusal::Nothing {
                id,
                name: rec.name,
                store: store
                    .map(|s| format!(" on store {s:?}"))
                    .unwrap_or_default(),
            });
        }
        let bytes = std::fs::read(self.folder.retry_copy(id))
            .ok()
            .filter(|b| self.holds(&rec, b))
            .ok_or(RetryRefusal::CopyGone(id))?;
        let attempt = retries
            .iter()
            .map(|(_, l)| l.attempt)
            .max()
            .unwrap_or(1)
            .saturating_add(1);
        let link = RetryLink {
            original: id,
            attempt,
            stores,
        };
        let name = format!("{}{RETRY_MARK}{attempt}", rec.name);
        // Received now, due when the request it finishes is due.
        let received = Utc::now();
        let dates = Dates {
            received,
            due: rec.due.unwrap_or(crate::deadline::Due {
                on: received.date_naive(),
                at: received,
            }),
        };
        Ok(self.submit_linked(
            &rec.account,
            &name,
            kind,
            &bytes,
            rec.batch_size,
            dates,
            Some(&link),
        )?)
    }

    /// The claimed file `id`, to execute, if it is still claimed (a file the HTTP front doors submitted) and no
    /// other node of a cluster holds it.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn claimed(&self, id: i64) -> Result<Option<Claim>, JournalError> {
        let Some(rec) = self
            .ledger
            .record(id)?
            .filter(|rec| rec.state == FileState::Claimed)
        else {
            return Ok(None);
        };
        Ok(match self.ledger.acquire(id)? {
            Holder::Here => Some(self.claim_of(rec)),
            Holder::Elsewhere { .. } => None,
        })
    }

    /// Records the name `name` of `account` as rejected, with the reason and its audit entry.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn reject(
        &self,
        account: &str,
        name: &str,
        reason: &str,
        audit: &AuditEntry,
    ) -> Result<(), JournalError> {
        self.ledger.reject(account, name, reason, audit)
    }

    /// Marks that the submission `name` of `account` has left `GDPR_Submit`.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn mark_removed(&self, account: &str, name: &str) -> Result<(), JournalError> {
        self.ledger.mark_removed(account, name)
    }

    /// Files claimed but not finished, or finished but not out of `GDPR_Submit`, as (account, name): resumed
    /// at start.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn unfinished(&self) -> Result<Vec<(String, String)>, JournalError> {
        self.ledger.unfinished()
    }

    /// Whether this node runs the singleton task `name` now: it takes or renews the task's lease for `lease`
    /// (see [`Ledger::hold_singleton`]). A ledger that cannot answer is taken for "no": the task waits for its
    /// next turn rather than run on two nodes.
    pub fn hold_singleton(&self, name: &str, lease: std::time::Duration) -> bool {
        self.ledger
            .hold_singleton(name, lease)
            .unwrap_or_else(|e| {
                tracing::warn!(task = name, error = %e, "cannot take the lease of a singleton task; it waits for its next turn");
                false
            })
    }

    /// Claimed files that no node works (their lease expired), as (account, name): see [`Ledger::orphans`].
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn orphans(&self) -> Result<Vec<(String, String)>, JournalError> {
        self.ledger.orphans()
    }

    /// Gives up this node's lease of the singleton task `name`.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn release_singleton(&self, name: &str) -> Result<(), JournalError> {
        self.ledger.release_singleton(name)
    }

    /// File `id` as the HTTP front doors report it, if the ledger has it.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn job(&self, id: i64) -> Result<Option<JobRecord>, JournalError> {
        let executing = self
            .executing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id);
        Ok(self.ledger.job(id)?.map(|mut job| {
            job.started |= executing && job.state == FileState::Claimed;
            job
        }))
    }

    /// The journaled responses of file `id`, by position.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn responses(&self, id: i64) -> Result<HashMap<Position, Response>, JournalError> {
        self.ledger.responses(id)
    }

    /// The record of file `id`, if the ledger has it.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn file(&self, id: i64) -> Result<Option<FileRecord>, JournalError> {
        self.ledger.record(id)
    }

    /// The files `filter` picks, newest first.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn files(&self, filter: &FileFilter) -> Result<Vec<FileSummary>, JournalError> {
        self.ledger.files(filter)
    }

    /// Extends the deadline of file `id` to `due` with `reason`, audited by `audit`; `false` when it was
    /// extended before (see [`Ledger::extend`]). The checks of an extension are [`crate::deadline`]'s.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn extend(
        &self,
        id: i64,
        due: &Due,
        reason: &str,
        audit: &AuditEntry,
    ) -> Result<bool, JournalError> {
        self.ledger.extend(id, due, reason, audit.finished, audit)
    }

    /// Removes what a crash can leave in the state folder that nobody will read again, at start, before
    /// anything runs: claimed copies (`claimed/ID.json`) of files that are no longer claimed, or that the
    /// ledger does not know; copies of HTTP requests never claimed (`claimed/pending-*.json`); every export part
    /// in `work/` (an unfinished export runs again whole); HTTP job lines (`jobs/ID.lines.json`) whose job is
    /// expired or has no facts file (so no URL can read them); and temporary files of atomic writes. Each of
    /// these may hold devices in clear. Returns how many files went.
    ///
    /// # Errors
    /// [`JournalError::Database`]; a file that cannot be removed is logged and tried again at the next start.
    pub fn remove_leftovers(&self) -> Result<usize, JournalError> {
        self.folder.remove_leftovers(&|id| {
            Ok(self
                .ledger
                .record(id)?
                .is_some_and(|r| r.state == FileState::Claimed))
        })
    }
}

/// The ledger of a state folder opened read-only, for `gdprd status`: safe while the daemon runs (the ledger is
/// in WAL mode), and it takes no lock and creates nothing. A cluster's ledger is read the same way.
pub struct Reader {
    ledger: Box<dyn Ledger>,
}

impl Reader {
    /// Opens the ledger of `state_dir` read-only; `None` when there is none yet (nothing was ever received).
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn open(state_dir: &Path) -> Result<Option<Reader>, JournalError> {
        Ok(
            SqliteLedger::open_read_only(state_dir)?.map(|ledger| Reader {
                ledger: Box::new(ledger),
            }),
        )
    }

    /// Opens the ledger `config` says (its `[cluster]` ledger, or the state folder's) to read it; `None` when
    /// there is none yet.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn open_config(config: &crate::config::Config) -> Result<Option<Reader>, JournalError> {
        match &config.cluster {
            Some(cluster) => Ok(
                PostgresLedger::open_existing(cluster)?.map(|ledger| Reader {
                    ledger: Box::new(ledger),
                }),
            ),
            None => Reader::open(&config.state_dir),
        }
    }

    /// The files `filter` picks, newest first.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn files(&self, filter: &FileFilter) -> Result<Vec<FileSummary>, JournalError> {
        self.ledger.files(filter)
    }
}

/// Where the submission of a finished file stands as it leaves `GDPR_Submit` (see [`Claim::leave_submit`]).
#[derive(Debug)]
pub enum Leaving {
    /// The claimed file is out of `GDPR_Submit` (or was not there).
    Gone,
    /// The file under the name was not the one claimed (replaced, or changed in place, while the claimed copy
    /// ran): a new submission under a used name, now held at this path for its duplicate-name notice.
    Replaced(PathBuf),
}

/// A claimed file at work: everything the engine records about it goes through here.
pub struct Claim {
    journal: Journal,
    record: FileRecord,
}

/// Marks a file a worker executes for the HTTP front doors while it lives (see [`Claim::executing`]).
pub struct Executing<'a> {
    set: &'a Mutex<HashSet<i64>>,
    id: i64,
}

impl Drop for Executing<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Claim {
    /// The file's ledger id.
    pub fn id(&self) -> i64 {
        self.record.id
    }

    /// Its record as claimed.
    pub fn record(&self) -> &FileRecord {
        &self.record
    }

    /// The request type recorded at claim time, if it is one gdprd knows.
    pub fn kind(&self) -> Option<Kind> {
        self.record.kind.as_deref().and_then(Kind::from_type)
    }

    /// Devices per chunk, fixed at claim time.
    pub fn batch_size(&self) -> usize {
        self.record.batch_size
    }

    /// Marks this file as one a worker executes until the guard drops: the HTTP front doors report it
    /// `IN_PROGRESS` before its first chunk completes. Several workers mark their files at once.
    pub fn executing(&self) -> Executing<'_> {
        let set = &*self.journal.executing;
        set.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.record.id);
        Executing {
            set,
            id: self.record.id,
        }
    }

    /// The bytes claimed, read back from the claimed copy, or from `submitted` (the file in `GDPR_Submit`) when
    /// the copy was never written; at most `cap` bytes. `None` when neither holds the bytes claimed.
    pub fn read_claimed(&self, submitted: &Path, cap: u64) -> Option<Vec<u8>> {
        let copy = self.journal.folder.claimed_copy(self.record.id);
        read_capped(&copy, cap)
            .ok()
            .or_else(|| match self.journal.ledger.claimed_copy(self.record.id) {
                Ok(Some(bytes)) if bytes.len() as u64 <= cap => Some(bytes),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(id = self.record.id, error = %e, "cannot read the claimed copy from the ledger");
                    None
                }
            })
            .or_else(|| read_capped(submitted, cap).ok())
            .filter(|bytes| self.journal.holds(&self.record, bytes))
    }

    /// Renews this node's lease of the file (a cluster's ledger; every journal write renews it too).
    ///
    /// # Errors
    /// [`JournalError::Fenced`] when another node has taken the file over.
    pub fn renew(&self) -> Result<(), JournalError> {
        self.journal.ledger.renew(self.record.id)
    }

    /// `store`'s step for `chunk`, if one was recorded.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn step(&self, chunk: usize, store: &str) -> Result<Option<Step>, JournalError> {
        self.journal.ledger.step(self.record.id, chunk, store)
    }

    /// Records what `store` found for `chunk` before it changes anything.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn plan_step(&self, chunk: usize, store: &str, found: &[u64]) -> Result<(), JournalError> {
        let step = Step {
            found: found.to_vec(),
            done: false,
        };
        self.journal
            .ledger
            .record_step(self.record.id, chunk, store, &step)
    }

    /// Records that `store` committed its step for `chunk`.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn finish_step(
        &self,
        chunk: usize,
        store: &str,
        found: &[u64],
    ) -> Result<(), JournalError> {
        let step = Step {
            found: found.to_vec(),
            done: true,
        };
        self.journal
            .ledger
            .record_step(self.record.id, chunk, store, &step)
    }

    /// What `store` held for each target before the first chunk changed anything (see
    /// [`Claim::record_survey`]): `Some(empty)` when the survey failed, `None` when it has not run.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn survey(&self, store: &str) -> Result<Option<Vec<u64>>, JournalError> {
        Ok(self.step(SURVEY_CHUNK, store)?.map(|s| s.found))
    }

    /// Records what `store` held for each target before any chunk ran.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn record_survey(&self, store: &str, found: &[u64]) -> Result<(), JournalError> {
        self.finish_step(SURVEY_CHUNK, store, found)
    }

    /// Records that the file waits for `stores`, which could not be reached or opened, and returns the wait: it
    /// keeps the time the file began to wait (the retry window counts from there, across restarts) and counts
    /// the tries.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn wait_for(&self, stores: &[String]) -> Result<Waiting, JournalError> {
        let earlier = self.journal.ledger.waiting(self.record.id)?;
        let waiting = Waiting {
            stores: stores.to_vec(),
            since: earlier.as_ref().map_or_else(
                || Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                |w| w.since.clone(),
            ),
            tries: earlier.map_or(1, |w| w.tries.saturating_add(1)),
        };
        self.journal
            .ledger
            .set_waiting(self.record.id, Some(&waiting))?;
        Ok(waiting)
    }

    /// Records that the file waits for no store any more (its chunk completed).
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn done_waiting(&self) -> Result<(), JournalError> {
        self.journal.ledger.set_waiting(self.record.id, None)
    }

    /// Whether `chunk` has completed (its responses are journaled).
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn chunk_done(&self, chunk: usize) -> Result<bool, JournalError> {
        self.journal.ledger.chunk_done(self.record.id, chunk)
    }

    /// Completes `chunk`: its contacts' responses and audit entries, in one transaction.
    ///
    /// # Errors
    /// [`JournalError::Database`]; then nothing of the chunk is recorded.
    pub fn complete_chunk(
        &self,
        chunk: usize,
        responses: &[(Position, Response)],
        audit: &[AuditEntry],
    ) -> Result<(), JournalError> {
        self.journal
            .ledger
            .complete_chunk(self.record.id, chunk, responses, audit)
    }

    /// The journaled responses, by position.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn responses(&self) -> Result<HashMap<Position, Response>, JournalError> {
        self.journal.ledger.responses(self.record.id)
    }

    /// Records an audit entry of this file (its refusal, say).
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), JournalError> {
        self.journal.ledger.audit(entry)
    }

    /// Where the `n`th export part of this file is written (`STATE/work/ID-N.zip`).
    pub fn work_part(&self, n: usize) -> PathBuf {
        self.journal.folder.work_part(self.record.id, n)
    }

    /// Marks the file done, with its result names, counts and file-level error if it was refused whole.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn finish(
        &self,
        results: &[String],
        counts: Counts,
        error: Option<&str>,
    ) -> Result<(), JournalError> {
        self.journal
            .ledger
            .finish(self.record.id, results, counts, error)
    }

    /// Takes the finished file out of `submit_dir` (where it is `path`), reading at most `cap` bytes of it.
    ///
    /// Only the file that was claimed leaves. It is first renamed to a hidden holding name of its own
    /// (`.gdprd-leaving-ID.json`), so that a file put onto the same name meanwhile is never removed in its place,
    /// and the held file is compared with the claim. A crash after the rename leaves the holding file, which the
    /// next start settles the same way. A link, a folder or a special file under the name is not the claimed
    /// file: it is left there, for the next rescan to reject as a duplicate name. Once every file is settled,
    /// [`Claim::mark_removed`] records it.
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn leave_submit(
        &self,
        submit_dir: &Path,
        path: &Path,
        cap: u64,
    ) -> Result<Leaving, JournalError> {
        let name = &self.record.name;
        let holding = submit_dir.join(folder::holding_name(self.record.id));
        let held = match std::fs::symlink_metadata(&holding) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::symlink_metadata(path) {
                    Ok(m) if m.is_file() => {
                        std::fs::rename(path, &holding)
                            .map_err(io_err(format!("cannot take {name} out of GDPR_Submit")))?;
                        true
                    }
                    Ok(_) => false,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                    Err(e) => return Err(io_err(format!("cannot stat {name}"))(e)),
                }
            }
            Err(e) => return Err(io_err(format!("cannot stat {}", holding.display()))(e)),
        };
        if !held {
            return Ok(Leaving::Gone);
        }
        let bytes = read_capped(&holding, cap).map_err(io_err(format!("cannot read {name}")))?;
        if self.journal.holds(&self.record, &bytes) {
            atomic::remove_if_present(&holding)
                .map_err(io_err(format!("cannot remove {name} from GDPR_Submit")))?;
            Ok(Leaving::Gone)
        } else {
            Ok(Leaving::Replaced(holding))
        }
    }

    /// Records that the submission has left `submit_dir` (synced first), and deletes the claimed copy.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn mark_removed(&self, submit_dir: &Path) -> Result<(), JournalError> {
        atomic::sync_dir(submit_dir).map_err(io_err("cannot sync GDPR_Submit"))?;
        self.journal
            .ledger
            .mark_removed(&self.record.account, &self.record.name)?;
        atomic::remove_if_present(&self.journal.folder.claimed_copy(self.record.id))
            .map_err(io_err("cannot remove the claimed copy"))
    }
}

#[cfg(test)]
impl Journal {
    /// Claims `name` as another gdprd may have recorded it, with any type or none (a test's old ledger).
    pub(crate) fn claim_recorded_as(
        &self,
        account: &str,
        name: &str,
        recorded: Option<&str>,
        bytes: &[u8],
    ) -> Claim {
        sqlite::insert_claimed(
            self.folder.dir(),
            account,
            name,
            recorded,
            &self.digest(bytes),
        );
        match self.admit(account, name).expect("admit") {
            Known::Unfinished(claim) => claim,
            _ => panic!("{name} is claimed"),
        }
    }
}

/// At most `cap` bytes of the file at `path`.
fn read_capped(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(cap)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests;
