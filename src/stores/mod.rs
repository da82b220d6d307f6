//! Stores: the places where personal data lives. A store receives a [`Batch`] of canonical devices (all the
//! devices of a file, or of one journal chunk of it) and forgets or exports them in a few batched statements.
//!
//! The trait is small: [`Store::forget`] and [`Store::export`], plus a health [`Store::check`]. Stores are
//! chosen by the `type` of their config ([`crate::config::StoreConfig`]) and built by [`open`].

pub mod matching;
pub mod sqlite;

use crate::config::StoreConfig;
use crate::requests::DeviceKind;

/// Why a store could not do its part. The affected contacts get an `ERROR:` response; other stores still run.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused a statement or could not be opened.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A file the store manages (a recording) could not be removed, or the export could not be written.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The mapping in the config does not fit the database.
    #[error("mapping error: {0}")]
    Mapping(String),
    /// The journal could not record the plan, so nothing was changed.
    #[error("journal error: {0}")]
    Journal(String),
}

/// The limits a request puts on where a device is searched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Only rows of this account, in tables with an account column.
    pub accountid: Option<String>,
    /// Only SMS rows on these shortcodes, in tables with a shortcode column.
    pub shortcodes: Vec<String>,
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

    /// Checks that the mapping fits the database (tables and columns exist).
    ///
    /// # Errors
    /// [`StoreError`] naming what does not fit.
    fn check(&mut self) -> Result<(), StoreError>;

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

    /// Streams every row matching the batch into `sink`.
    ///
    /// # Errors
    /// [`StoreError`]; the caller discards the archive.
    fn export(&mut self, batch: &Batch, sink: &mut dyn ExportSink) -> Result<Found, StoreError>;
}

/// Opens the store `name` as configured.
///
/// # Errors
/// [`StoreError`] when it cannot be opened.
pub fn open(name: &str, config: &StoreConfig) -> Result<Box<dyn Store>, StoreError> {
    match config {
        StoreConfig::Sqlite(c) => Ok(Box::new(sqlite::SqliteStore::open(name, c)?)),
    }
}
