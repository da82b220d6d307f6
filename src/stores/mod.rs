//! Stores: the places where personal data lives. A store receives a [`Batch`] of canonical devices (all the
//! devices of a file, or of one journal chunk of it) and forgets or exports them in a few batched statements.
//!
//! The trait is small: [`Store::forget`] and [`Store::export`], plus a health [`Store::check`] and a read-only
//! [`Store::preview`] that counts what a request would do. Stores are
//! chosen by the `type` of their config ([`StoreConfig`], a closed enum; each store's config type and its checks
//! live in the store's file, the table mapping they share in [`mapping`]) and built by [`open`].

pub mod callback_http;
mod callback_state;
mod config_error;
pub mod csv;
mod csv_lines;
pub mod demo_load;
mod error;
pub mod mapping;
pub mod mask;
pub mod matching;
mod mysql;
mod postgres;
pub mod preview;
mod sql;
pub mod sqlite;
mod tls;

pub use callback_http::CallbackHttpConfig;
pub use config_error::StoreConfigError;
pub use csv::CsvConfig;
pub use error::{
    CallFailure, CallbackError, CsvProblem, DriverError, MappingError, StoreError, Unreachable,
};
pub use mapping::{ForgetMode, PhoneConfig, TableMapping};
pub(crate) use postgres::connect_client;
pub use preview::{Action, StorePreview, TablePreview};
pub use sql::{SqlConfig, TlsMode};
pub use sqlite::SqliteConfig;

use crate::requests::{DeviceKind, Kind};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// The limits a request puts on where a device is searched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Only rows of this account, in tables with an account column.
    pub accountid: Option<String>,
    /// When `accountid` is an enterprise number (`[accounts.requests] enterprises`): the enterprise's accounts,
    /// whose rows are searched too.
    pub enterprise: Vec<String>,
    /// Only SMS rows on these shortcodes, in tables with a shortcode column.
    pub shortcodes: Vec<String>,
}

impl Scope {
    /// Whether a row whose account column holds `account` is within the scope: any row when the request names
    /// no account, else the account it names or one of its enterprise's.
    pub fn admits_account(&self, account: Option<&str>) -> bool {
        match &self.accountid {
            None => true,
            Some(id) => {
                account == Some(id.as_str())
                    || account.is_some_and(|a| self.enterprise.iter().any(|e| e == a))
            }
        }
    }
}

/// One device to find, within a scope.
#[derive(Debug, Clone)]
pub struct Target {
    /// The device's kind.
    pub kind: DeviceKind,
    /// [`crate::requests::Device::match_key`].
    pub key: String,
    /// Index into [`Batch::scopes`].
    pub scope: usize,
    /// The installation's keyed hash of the device ([`crate::audit::Secret::device_hmac`]): what a forget
    /// leaves in a suppression list instead of the device.
    pub digest: String,
}

/// The devices a store works on at once.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Targets; results come back in this order.
    pub targets: Vec<Target>,
    /// Scopes the targets point into.
    pub scopes: Vec<Scope>,
}

/// Rows found for each target of a batch, in batch order.
pub type Found = Vec<u64>;

/// Receives exported rows, one table at a time.
pub trait ExportSink {
    /// Rows that follow belong to `store`'s `table`, whose columns are `columns`.
    ///
    /// # Errors
    /// The I/O error writing the archive.
    fn table(&mut self, store: &str, table: &str, columns: &[String]) -> std::io::Result<()>;
    /// One matching row, for `target` (index into the batch).
    ///
    /// # Errors
    /// The I/O error writing the archive.
    fn row(&mut self, target: usize, cells: &[String]) -> std::io::Result<()>;
}

/// A place where personal data lives.
pub trait Store: Send {
    /// The store's name from the config.
    fn name(&self) -> &str;

    /// Checks that the mapping fits the database (tables and columns exist), and returns warnings about what
    /// works but should be fixed (a device column without a usable index).
    ///
    /// # Errors
    /// [`StoreError`] naming what does not fit.
    fn check(&mut self) -> Result<Vec<String>, StoreError>;

    /// Finds every row matching the batch and erases it. `planned` is called with the rows found before
    /// anything changes, so the journal can record the outcome first; if it fails nothing changes.
    ///
    /// # Errors
    /// [`StoreError`]; nothing of the batch is then committed in this store, except callback cancellations.
    fn forget(
        &mut self,
        batch: &Batch,
        planned: &mut dyn FnMut(&[u64]) -> Result<(), StoreError>,
    ) -> Result<Found, StoreError>;

    /// Finds every row matching the batch and masks its [`TableMapping::mask_columns`] in place
    /// ([`mask::mask`]); nothing is deleted. `planned` works as for [`Store::forget`]. Masking is idempotent, so
    /// a resumed step may run again.
    ///
    /// # Errors
    /// [`StoreError`]; nothing of the batch is then committed in this store. Stores that cannot mask say so.
    fn pseudonymise(
        &mut self,
        batch: &Batch,
        planned: &mut dyn FnMut(&[u64]) -> Result<(), StoreError>,
    ) -> Result<Found, StoreError> {
        let _ = (batch, planned);
        Err(StoreError::CannotPseudonymise {
            store: self.name().to_owned(),
        })
    }

    /// Called once a forget or pseudonymisation file has run all its chunks: the store's per-file clean-up
    /// (the `sqlite` store rebuilds its file, SQL stores may vacuum the tables the file changed), done once per
    /// file rather than once per chunk. Its failure does not change the file's responses.
    ///
    /// # Errors
    /// [`StoreError`]; the engine logs it.
    fn finish_forget(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Streams every row matching the batch into `sink`.
    ///
    /// # Errors
    /// [`StoreError`]; the caller discards the archive.
    fn export(&mut self, batch: &Batch, sink: &mut dyn ExportSink) -> Result<Found, StoreError>;

    /// Counts what a request of `kind` (forget, pseudonymise or export) would do for the batch, changing nothing:
    /// the same scan as the request, in a read snapshot, without locking a row or calling anything that changes
    /// (see [`preview`]). Stores that cannot say so.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read; the request itself would then fail in this store too.
    fn preview(&mut self, batch: &Batch, kind: Kind) -> Result<StorePreview, StoreError> {
        let _ = (batch, kind);
        Err(StoreError::CannotPreview {
            store: self.name().to_owned(),
        })
    }

    /// For each target of the batch, whether a suppression list of this store holds it, in clear or (after a
    /// forget) as its keyed hash ([`Target::digest`]). Stores without suppression lists hold nobody.
    ///
    /// # Errors
    /// [`StoreError`].
    fn suppressed(&mut self, batch: &Batch) -> Result<Vec<bool>, StoreError> {
        Ok(vec![false; batch.targets.len()])
    }
}

/// Marks in `out` the targets that a stored device value stands for: its keyed hash (`digests`: digest →
/// targets) or, read by `matcher`, its key (`index`: key → targets).
pub(crate) fn mark_suppressed(
    kind: DeviceKind,
    stored: &str,
    digests: &HashMap<&str, Vec<usize>>,
    index: &HashMap<String, Vec<usize>>,
    matcher: &mut matching::Matcher,
    out: &mut [bool],
) {
    let by_digest = digests.get(stored).into_iter().flatten();
    let key = matcher.find(kind, stored);
    let by_key = key
        .as_ref()
        .and_then(|k| index.get(k))
        .into_iter()
        .flatten();
    for &t in by_digest.chain(by_key) {
        if let Some(slot) = out.get_mut(t) {
            *slot = true;
        }
    }
}

/// The targets of a batch by digest.
pub(crate) fn digest_index(batch: &Batch) -> HashMap<&str, Vec<usize>> {
    let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in batch.targets.iter().enumerate() {
        index.entry(t.digest.as_str()).or_default().push(i);
    }
    index
}

/// `[stores.NAME]`: one place where personal data lives, selected by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StoreConfig {
    /// A SQLite database file.
    Sqlite(SqliteConfig),
    /// A PostgreSQL database.
    Postgres(SqlConfig),
    /// A MySQL or MariaDB database.
    Mysql(SqlConfig),
    /// A folder of CSV contact lists.
    Csv(CsvConfig),
    /// A callback service reached over its REST API.
    #[serde(rename = "callback-http")]
    CallbackHttp(CallbackHttpConfig),
}

impl StoreConfig {
    /// The tables the store maps.
    pub fn tables(&self) -> &[TableMapping] {
        match self {
            StoreConfig::Sqlite(s) => &s.tables,
            StoreConfig::Postgres(s) | StoreConfig::Mysql(s) => &s.tables,
            StoreConfig::Csv(c) => &c.files,
            StoreConfig::CallbackHttp(_) => &[],
        }
    }

    /// Whether the store must not run two files at once, so the workers take turns on it: a `csv` store
    /// rewrites its files whole (two forgets at once would each write a copy without the other's rows gone).
    /// Database stores and the callback service take concurrent files (their own transactions and locks).
    pub fn exclusive(&self) -> bool {
        matches!(self, StoreConfig::Csv(_))
    }

    /// How the store's phone numbers are written.
    pub fn phones(&self) -> &PhoneConfig {
        match self {
            StoreConfig::Sqlite(s) => &s.phones,
            StoreConfig::Postgres(s) | StoreConfig::Mysql(s) => &s.phones,
            StoreConfig::Csv(c) => &c.phones,
            StoreConfig::CallbackHttp(c) => &c.phones,
        }
    }

    /// Makes the store's files and folders absolute with `resolve`.
    pub(crate) fn resolve_paths(&mut self, resolve: impl Fn(&Path) -> PathBuf) {
        match self {
            StoreConfig::Sqlite(s) => {
                s.path = resolve(&s.path);
                s.files_root = s.files_root.as_deref().map(&resolve);
            }
            StoreConfig::Csv(c) => c.folder = resolve(&c.folder),
            StoreConfig::CallbackHttp(c) => c.token_file = c.token_file.as_deref().map(&resolve),
            StoreConfig::Postgres(s) | StoreConfig::Mysql(s) => {
                s.files_root = s.files_root.as_deref().map(&resolve);
                s.password_file = s.password_file.as_deref().map(&resolve);
                s.ca_file = s.ca_file.as_deref().map(&resolve);
            }
        }
    }

    /// Checks the store's config without I/O (the catalogue is compared by `check-config`).
    ///
    /// # Errors
    /// [`StoreConfigError`] naming the store `name`.
    pub(crate) fn validate(&self, name: &str) -> Result<(), StoreConfigError> {
        match self {
            StoreConfig::Sqlite(s) => s.validate(name),
            StoreConfig::Postgres(s) => s.validate(name, sql::Dialect::Postgres),
            StoreConfig::Mysql(s) => s.validate(name, sql::Dialect::Mysql),
            StoreConfig::Csv(c) => c.validate(name),
            StoreConfig::CallbackHttp(c) => c.validate(name),
        }
    }
}

/// Opens the store `name` as configured.
/// Opens the store `name` as configured. A store that waits between tries (the callback service's) stops
/// waiting once `stop` is cancelled.
///
/// # Errors
/// [`StoreError`] when it cannot be opened.
pub fn open(
    name: &str,
    config: &StoreConfig,
    stop: &CancellationToken,
) -> Result<Box<dyn Store>, StoreError> {
    match config {
        StoreConfig::Sqlite(c) => Ok(Box::new(sqlite::SqliteStore::open(name, c)?)),
        StoreConfig::Postgres(c) => Ok(Box::new(sql::SqlStore::<postgres::PgConn>::new(name, c))),
        StoreConfig::Mysql(c) => Ok(Box::new(sql::SqlStore::<mysql::MyConn>::new(name, c))),
        StoreConfig::Csv(c) => Ok(Box::new(csv::CsvStore::open(name, c)?)),
        StoreConfig::CallbackHttp(c) => {
            Ok(Box::new(callback_http::CallbackStore::open(name, c, stop)?))
        }
    }
}

/// The targets of a batch by key, for looking up the key a stored value matched.
pub(crate) fn key_index(batch: &Batch) -> HashMap<String, Vec<usize>> {
    let mut index: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, t) in batch.targets.iter().enumerate() {
        index.entry(t.key.clone()).or_default().push(i);
    }
    index
}

/// Fills `out` with the targets a stored row answers: those whose key one of its device columns matched
/// (`keys`, one per device column), within their scope (the row's account and shortcode).
pub(crate) fn admitted(
    table: &TableMapping,
    batch: &Batch,
    index: &HashMap<String, Vec<usize>>,
    keys: &[Option<String>],
    account: Option<&str>,
    shortcode: Option<&str>,
    out: &mut Vec<usize>,
) {
    out.clear();
    for key in keys.iter().flatten() {
        for &t in index.get(key).map(Vec::as_slice).unwrap_or_default() {
            let scope = &batch.scopes[batch.targets[t].scope];
            let account_ok = table.account.is_none() || scope.admits_account(account);
            let shortcode_ok = table.shortcode.is_none()
                || shortcode.is_some_and(|s| scope.shortcodes.iter().any(|c| c == s));
            if account_ok && shortcode_ok && !out.contains(&t) {
                out.push(t);
            }
        }
    }
}

/// The path of a recording, which must stay inside `root`.
pub(crate) fn recording_path(root: Option<&Path>, stored: &str) -> Result<PathBuf, StoreError> {
    let root = root.ok_or(MappingError::NoFilesRoot)?;
    let rel = Path::new(stored);
    let inside = !stored.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        return Err(MappingError::RecordingOutside.into());
    }
    Ok(root.join(rel))
}

/// Deletes the recordings `files` (paths relative to `root`); one already gone is fine. Every path is checked
/// before any file is deleted.
pub(crate) fn remove_recordings<'a>(
    root: Option<&Path>,
    files: impl Iterator<Item = &'a str>,
) -> Result<(), StoreError> {
    let paths = files
        .map(|file| recording_path(root, file))
        .collect::<Result<Vec<_>, _>>()?;
    for path in paths {
        crate::results::atomic::remove_if_present(&path)?;
    }
    Ok(())
}
