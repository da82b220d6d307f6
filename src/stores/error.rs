//! Why a store could not do its part: [`StoreError`] and the types it is made of. The engine answers the
//! affected contacts with its text (`ERROR: store "crm" failed: …`) and asks [`StoreError::is_store_wide`]
//! whether running fewer contacts could fare better.
//!
//! No text here holds a stored value: a database server's message is kept without what it quotes (PostgreSQL's
//! `DETAIL` and `HINT`, MySQL's quoted parts), and a driver's own error, whose text may quote a row, is kept
//! for matching but not offered as a [`std::error::Error::source`].

use crate::credentials::CredentialError;
use std::fmt;
use std::path::PathBuf;

/// Why a store could not do its part. The affected contacts get an `ERROR:` response; other stores still run.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A database refused a statement (a constraint, a missing privilege, a syntax the server does not
    /// know); it may concern some rows only.
    #[error("database error: {0}")]
    Server(DriverError),
    /// The database was busy: a lock it waited for, a statement timeout, a deadlock or a serialisation
    /// conflict. It says nothing about the rows themselves, and a later try may succeed.
    #[error("database error: {0}")]
    Busy(DriverError),
    /// The database server or service cannot be reached, or the connection broke; a later try reconnects.
    #[error("{0}")]
    Unavailable(#[from] Unreachable),
    /// A file the store manages (a CSV list, a recording) could not be read, written or removed, or the
    /// export could not be written.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The mapping in the config does not fit the data.
    #[error("mapping error: {0}")]
    Mapping(#[from] MappingError),
    /// The journal could not record the plan, so nothing was changed. The journal's own error is the source
    /// (boxed: the stores do not depend on the journal).
    #[error("journal error: {0}")]
    Journal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The callback service refused or failed an operation.
    #[error("{0}")]
    Callback(#[from] CallbackError),
    /// Callbacks that could not be forgotten, each with its reason; the others were.
    #[error("{}", Joined(.0.as_slice()))]
    Callbacks(Vec<CallbackError>),
    /// The store's type cannot mask columns, so it cannot pseudonymise.
    #[error("store {store:?} cannot pseudonymise (its type does not support masking)")]
    CannotPseudonymise {
        /// The store's name.
        store: String,
    },
    /// The store's type cannot count what a request would do without doing it.
    #[error("store {store:?} cannot preview a request (its type does not support it)")]
    CannotPreview {
        /// The store's name.
        store: String,
    },
    /// The state a store shares with its SQL functions was left poisoned by a panic.
    #[error("internal error: the match state was poisoned")]
    Poisoned,
}

impl StoreError {
    /// Whether the error concerns the store as a whole (it cannot be reached, it is busy, the journal failed), so
    /// that running fewer targets would fail the same way; any other error may come from some rows only.
    pub fn is_store_wide(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Journal(_) | StoreError::Busy(_)
        )
    }
}

impl From<rusqlite::Error> for StoreError {
    /// A SQLite error: busy when the database was locked by another connection for longer than the busy
    /// timeout, refused otherwise.
    fn from(e: rusqlite::Error) -> StoreError {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        if busy {
            StoreError::Busy(DriverError::Sqlite(e))
        } else {
            StoreError::Server(DriverError::Sqlite(e))
        }
    }
}

impl From<CredentialError> for StoreError {
    fn from(e: CredentialError) -> StoreError {
        StoreError::Unavailable(Unreachable::Credential(e))
    }
}

/// A database driver's error. Its text leaves out what a server quotes from rows; the error itself is kept
/// for matching on codes.
#[derive(Debug)]
pub enum DriverError {
    /// From SQLite (rusqlite), whose messages name tables and columns, not values.
    Sqlite(rusqlite::Error),
    /// From PostgreSQL: shown as `SEVERITY CODE: message`, without `DETAIL` and `HINT`.
    Postgres(postgres::Error),
    /// From MySQL or MariaDB: shown as `ERROR code (state): message`, with quoted parts left out.
    Mysql(mysql::Error),
}

impl DriverError {
    /// The text with the causes of an error that did not come from the server (what TLS refused:
    /// `invalid peer certificate: UnknownIssuer`), for a connection that could not be made.
    fn with_causes(&self) -> String {
        let mut text = self.to_string();
        if let DriverError::Postgres(e) = self {
            if e.as_db_error().is_none() {
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    text.push_str(&format!(": {c}"));
                    cause = c.source();
                }
            }
        }
        text
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::Sqlite(e) => write!(f, "{e}"),
            DriverError::Postgres(e) => match e.as_db_error() {
                Some(db) => write!(
                    f,
                    "{} {}: {}",
                    db.severity(),
                    db.code().code(),
                    db.message()
                ),
                None => write!(f, "{e}"),
            },
            DriverError::Mysql(mysql::Error::MySqlError(e)) => {
                write!(
                    f,
                    "ERROR {} ({}): {}",
                    e.code,
                    e.state,
                    redacted(&e.message)
                )
            }
            DriverError::Mysql(mysql::Error::FromValueError(_) | mysql::Error::FromRowError(_)) => {
                f.write_str("a value could not be read")
            }
            DriverError::Mysql(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DriverError {}

/// A MySQL server message with quoted parts (where MySQL puts values: `Duplicate entry '…'`) left out.
fn redacted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '\'' {
            if !quoted {
                out.push_str("'…'");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// Why a store's server or service cannot be reached now. It concerns the store as a whole; a later try may
/// succeed.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// The connection could not be made: refused, timed out, the login or TLS refused.
    #[error("cannot connect: {}", .0.with_causes())]
    Connect(DriverError),
    /// The connection broke, or the driver failed outside any statement.
    #[error("connection lost: {0}")]
    Lost(DriverError),
    /// No connection is open (the last one broke).
    #[error("not connected")]
    NotConnected,
    /// The password or token could not be read.
    #[error(transparent)]
    Credential(CredentialError),
    /// The `ca_file` could not be read.
    #[error("cannot read ca_file {}: {source}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// TLS could not be set up (the provider offers no protocol version).
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The callback service failed a call every time it was tried.
    #[error("callback service: {method} {path}: {failure} (after {tries} tries)")]
    Service {
        /// The HTTP method.
        method: &'static str,
        /// The path called, under `base_url`.
        path: String,
        /// The last try's failure.
        failure: CallFailure,
        /// How many times it was tried.
        tries: u32,
    },
    /// gdprd is stopping: the store gave up waiting to try again. The step runs again at the next start.
    #[error("stopped: gdprd is shutting down")]
    Stopped,
}

/// Why one call to the callback service failed.
#[derive(Debug, thiserror::Error)]
pub enum CallFailure {
    /// It answered with a status worth retrying (`429`, `5xx`).
    #[error("HTTP {0}")]
    Status(u16),
    /// It could not be reached, or the connection broke.
    #[error("{0}")]
    Transport(#[source] Box<ureq::Error>),
}

/// A mapping in the config that does not fit the data it names.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The `url` of a PostgreSQL store does not parse.
    #[error("url: {0}")]
    PostgresUrl(#[source] postgres::Error),
    /// The `url` of a MySQL store does not parse.
    #[error("url: {0}")]
    MysqlUrl(#[source] mysql::UrlError),
    /// A mapped table is not in the database.
    #[error("table {table:?} does not exist")]
    NoTable {
        /// The table.
        table: String,
    },
    /// A mapped SQLite table is not in the database (perhaps a view).
    #[error("table {table:?} does not exist (a view cannot be mapped: map the table that holds the data)")]
    NoTableOrView {
        /// The table.
        table: String,
    },
    /// A mapped table is not in the server's catalogue for the store's login.
    #[error("table {table:?} does not exist (or is not visible to this login)")]
    NotVisible {
        /// The table.
        table: String,
    },
    /// A mapped PostgreSQL relation is a view or another kind of relation that holds no rows of its own.
    #[error("{table:?} is not a plain table (a view?): map the table that holds the data")]
    NotPlainTable {
        /// The relation.
        table: String,
    },
    /// A mapped PostgreSQL table is partitioned.
    #[error("table {table:?} is partitioned: map its partitions instead")]
    Partitioned {
        /// The table.
        table: String,
    },
    /// A mapped SQLite table has no row id.
    #[error("table {table:?} is a WITHOUT ROWID table: gdprd names the rows it changes by their row id; map a table with one")]
    WithoutRowid {
        /// The table.
        table: String,
    },
    /// A mapped SQLite table has columns that hide all three names of its row id.
    #[error("table {table:?} has columns named _rowid_, rowid and oid, which hide its row id: gdprd could not name the rows it changes without touching others; rename one of them")]
    HiddenRowid {
        /// The table.
        table: String,
    },
    /// A mapped MySQL table has no primary key.
    #[error("table {table:?} has no primary key: gdprd names the rows it erases by a single-column primary key")]
    NoPrimaryKey {
        /// The table.
        table: String,
    },
    /// A mapped MySQL table's primary key has several columns.
    #[error(
        "table {table:?} has a primary key of several columns: gdprd needs a single-column one"
    )]
    CompositeKey {
        /// The table.
        table: String,
    },
    /// A mapped column is not in its table.
    #[error("table {table:?} has no column {column:?}")]
    NoColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A mapped column is not in a CSV file's header.
    #[error("{file} has no column {column:?}")]
    NoCsvColumn {
        /// The file's name.
        file: String,
        /// The column.
        column: String,
    },
    /// A CSV file cannot be read as CSV.
    #[error("{file}: not readable as CSV: {problem}")]
    NotCsv {
        /// The file's name.
        file: String,
        /// What is wrong, without the record's contents.
        problem: CsvProblem,
    },
    /// A column a forget must write can hold neither text nor NULL.
    #[error("table {table:?}, column {column:?}: not a text column and NOT NULL, {fix}")]
    NotWritable {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// What to do about it.
        fix: &'static str,
    },
    /// A device column of a suppression list is too narrow for a keyed hash.
    #[error("table {table:?}, column {column:?}: a suppression list keeps 64-character keyed hashes; widen the column")]
    NarrowSuppression {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A table maps a file column, but the store has no `files_root`.
    #[error("table {table:?} maps a file column: set files_root")]
    FileColumnWithoutRoot {
        /// The table.
        table: String,
    },
    /// A recording was found, but the store has no `files_root`.
    #[error("a file column needs files_root")]
    NoFilesRoot,
    /// A stored recording path leads outside `files_root`.
    #[error("a recording path points outside files_root; it was left alone")]
    RecordingOutside,
    /// The `ca_file` is not PEM.
    #[error("ca_file {}: {source}", path.display())]
    CaFilePem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader refused.
        source: rustls::pki_types::pem::Error,
    },
    /// The `ca_file` holds no certificate.
    #[error("ca_file {}: no PEM certificate in it", path.display())]
    CaFileEmpty {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the `ca_file` cannot be a trust root.
    #[error("ca_file {}: {source}", path.display())]
    CaFileRoot {
        /// The file.
        path: PathBuf,
        /// What rustls refused.
        source: Box<rustls::Error>,
    },
}

/// What is wrong with a CSV record, without its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsvProblem {
    /// A record is not UTF-8 or has another number of fields than the header.
    #[error("bad record at line {line}")]
    BadRecordAt {
        /// The record's line (0 when unknown).
        line: u64,
    },
    /// A record the reader refused for another reason.
    #[error("bad record")]
    BadRecord,
}

/// Why the callback service refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// A call answered a status it should not.
    #[error("callback service: {call} answered HTTP {status}")]
    Answered {
        /// The call (`GET /callbacks`).
        call: &'static str,
        /// The status.
        status: u16,
    },
    /// Listing callbacks did not answer a JSON array.
    #[error("callback service: GET /callbacks did not answer a JSON array")]
    NotAList,
    /// The health check's listing did not answer a JSON array.
    #[error("callback service: GET /callbacks answered HTTP {status}, not a JSON array")]
    CheckFailed {
        /// The status.
        status: u16,
    },
    /// The service refused to cancel an in-flight callback.
    #[error("callback {id} could not be cancelled (state {state})")]
    NotCancelled {
        /// The callback's id at the service.
        id: String,
        /// Its state, as the service said.
        state: String,
    },
    /// A cancelled callback never showed as cancelled.
    #[error("callback {id} was not confirmed cancelled (state {state})")]
    NotConfirmed {
        /// The callback's id at the service.
        id: String,
        /// Its last known state (`unknown` when it could not be read).
        state: String,
    },
    /// The service refused to delete a callback.
    #[error("callback {id} could not be deleted (HTTP {status}, state {state})")]
    NotDeleted {
        /// The callback's id at the service.
        id: String,
        /// The status it answered.
        status: u16,
        /// Its state, as the service said.
        state: String,
    },
    /// A call for one callback failed every time it was tried.
    #[error("{0}")]
    Unreachable(#[from] Unreachable),
}

/// Errors shown one after the other, separated by `; `.
struct Joined<'a>(&'a [CallbackError]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mysql_message_loses_its_quoted_values() {
        assert_eq!(
            redacted("Duplicate entry 'a@b.c' for key 'email'"),
            "Duplicate entry '…' for key '…'"
        );
    }

    #[test]
    fn busy_unreachable_and_journal_errors_are_store_wide_and_row_errors_are_not() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(StoreError::from(busy).is_store_wide());
        assert!(StoreError::from(Unreachable::NotConnected).is_store_wide());
        assert!(StoreError::Journal("full disk".into()).is_store_wide());
        let constraint = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            None,
        );
        assert!(!StoreError::from(constraint).is_store_wide());
        assert!(!StoreError::Mapping(MappingError::RecordingOutside).is_store_wide());
    }

    #[test]
    fn several_callback_failures_read_as_one_sentence_each() {
        let e = StoreError::Callbacks(vec![
            CallbackError::NotCancelled {
                id: "c3".into(),
                state: "PROCESSING".into(),
            },
            CallbackError::NotConfirmed {
                id: "c4".into(),
                state: "unknown".into(),
            },
        ]);
        assert_eq!(
            e.to_string(),
            "callback c3 could not be cancelled (state PROCESSING); callback c4 was not confirmed cancelled (state unknown)"
        );
    }
}
