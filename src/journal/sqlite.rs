//! The ledger in SQLite: `STATE/ledger.db`, in WAL mode with full syncs, so a claim, a step or a chunk that
//! returned is on disk. A daemon's ledger has two connections, each behind a mutex: one for every write (and
//! the reads that decide one), and one for the reads the HTTP front doors poll ([`Ledger::job`],
//! [`Ledger::responses`]), so that a poll never waits for the worker's writes, nor the worker for a poll (WAL
//! lets a reader and a writer run at once). `gdprd status` opens its own, read-only.
//!
//! The schema is the first ledger's ([`SCHEMA`]) and the changes since, in order ([`MIGRATIONS`]):
//! `PRAGMA user_version` counts those a ledger has, and opening a ledger read-write applies the rest, each in
//! the transaction that raises the count, so a ledger any gdprd made upgrades in place.

use super::{
    day_text, deadline_of, time_text, AuditEntry, Counts, FileFilter, FileRecord, FileState,
    FileSummary, Holder, JobRecord, JournalError, Ledger, NewClaim, Position, RetryLink, Step,
    Waiting, DEADLINE, KEYED,
};
use crate::deadline::{Due, Extension, Period};
use crate::engine::Response;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

impl From<rusqlite::Error> for JournalError {
    fn from(e: rusqlite::Error) -> JournalError {
        JournalError::Database(Box::new(e))
    }
}

/// The ledger's file in the state folder.
pub(super) const FILE: &str = "ledger.db";

pub(super) const SCHEMA: &str = r"
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT,
    sha256 TEXT,
    size INTEGER,
    batch_size INTEGER NOT NULL DEFAULT 500,
    state TEXT NOT NULL,
    error TEXT,
    received_at TEXT NOT NULL,
    finished_at TEXT,
    removed INTEGER NOT NULL DEFAULT 0,
    results TEXT,
    success INTEGER NOT NULL DEFAULT 0,
    not_found INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account, name)
);
CREATE TABLE IF NOT EXISTS steps (
    file_id INTEGER NOT NULL REFERENCES files(id),
    chunk INTEGER NOT NULL,
    store TEXT NOT NULL,
    planned TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (file_id, chunk, store)
);
CREATE TABLE IF NOT EXISTS chunks (
    file_id INTEGER NOT NULL REFERENCES files(id),
    chunk INTEGER NOT NULL,
    PRIMARY KEY (file_id, chunk)
);
CREATE TABLE IF NOT EXISTS contacts (
    file_id INTEGER NOT NULL REFERENCES files(id),
    request INTEGER NOT NULL,
    contact INTEGER NOT NULL,
    response TEXT NOT NULL,
    PRIMARY KEY (file_id, request, contact)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    file TEXT NOT NULL,
    requestcase TEXT,
    device_type TEXT,
    device_hmac TEXT,
    action TEXT NOT NULL,
    stores TEXT NOT NULL,
    outcome TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS retries (
    file_id INTEGER PRIMARY KEY REFERENCES files(id),
    original INTEGER NOT NULL REFERENCES files(id),
    attempt INTEGER NOT NULL,
    stores TEXT NOT NULL,
    UNIQUE (original, attempt)
);
CREATE TABLE IF NOT EXISTS waiting (
    file_id INTEGER PRIMARY KEY REFERENCES files(id),
    stores TEXT NOT NULL,
    since TEXT NOT NULL,
    tries INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
";

/// The changes to [`SCHEMA`] since the first ledger, in order; a ledger's `PRAGMA user_version` counts those it
/// has. Append only: a migration that shipped is never edited.
const MIGRATIONS: &[&str] = &[
    // 1. Deadlines (see `crate::deadline`): the due day and the instant it runs out; the one extension. Rows
    //    claimed before get a due day of one calendar month (UTC) in `backfill_due`.
    r"
ALTER TABLE files ADD COLUMN due_on TEXT;
ALTER TABLE files ADD COLUMN due_at TEXT;
ALTER TABLE files ADD COLUMN extended_from TEXT;
ALTER TABLE files ADD COLUMN extension_reason TEXT;
ALTER TABLE files ADD COLUMN extended_at TEXT;
CREATE INDEX IF NOT EXISTS files_by_state ON files (state);
",
];

/// The schema version this gdprd reads and writes.
pub(super) const VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the ledger to [`VERSION`]: each missing migration in the transaction that raises `user_version`, taken
/// `IMMEDIATE` so that two processes opening the ledger at once apply it once.
fn migrate(conn: &mut Connection) -> Result<(), JournalError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Err(JournalError::Outdated {
            found: version,
            known: VERSION,
        });
    }
    for (done, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(migration)?;
        if done == 0 {
            backfill_due(&tx)?;
        }
        tx.pragma_update(None, "user_version", done + 1)?;
    }
    let applied = VERSION - version;
    tx.commit()?;
    if applied > 0 {
        tracing::info!(from = version, to = VERSION, "ledger schema upgraded");
    }
    Ok(())
}

/// Brings the ledger at `path` to [`VERSION`] (see [`migrate`]), for `gdprd migrate-ledger`, which reads it raw.
///
/// # Errors
/// [`JournalError::Database`], [`JournalError::Outdated`] for a ledger of a newer gdprd.
pub(super) fn upgrade(path: &Path) -> Result<(), JournalError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    migrate(&mut conn)
}

/// Gives every claimed or done file without a due day one: a calendar month from its receipt, counted in UTC
/// (the account's `deadline` and time zone were not recorded then).
fn backfill_due(tx: &rusqlite::Transaction<'_>) -> Result<(), JournalError> {
    let rows: Vec<(i64, String)> = {
        let mut stmt = tx.prepare(
            "SELECT id, received_at FROM files WHERE due_on IS NULL AND state <> 'rejected'",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut update = tx.prepare("UPDATE files SET due_on = ?2, due_at = ?3 WHERE id = ?1")?;
    for (id, received) in rows {
        let Ok(received) = DateTime::parse_from_rfc3339(&received) else {
            continue;
        };
        let due = Period::default().due(received.with_timezone(&Utc), chrono_tz::UTC);
        update.execute(params![id, day_text(due.on), time_text(due.at)])?;
    }
    Ok(())
}

fn now() -> String {
    time_text(Utc::now())
}

/// Reads the [`DEADLINE`] columns of `r` from column `i` on.
fn deadline_at(
    r: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<(Option<Due>, Option<Extension>)> {
    let mut cells: [Option<String>; 5] = Default::default();
    for (k, cell) in cells.iter_mut().enumerate() {
        *cell = r.get(i + k)?;
    }
    Ok(deadline_of(cells))
}

fn state_text(state: FileState) -> &'static str {
    match state {
        FileState::Claimed => "claimed",
        FileState::Done => "done",
        FileState::Rejected => "rejected",
    }
}

fn parse_state(s: &str) -> FileState {
    FileState::parse(s)
}

/// The columns [`file_record`] reads, in its order.
const RECORD: &str = "id, account, name, state, sha256, batch_size, removed, received_at, error, kind, due_on, due_at, extended_from, extension_reason, extended_at";

fn file_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    let (due, extension) = deadline_at(r, 10)?;
    Ok(FileRecord {
        id: r.get(0)?,
        account: r.get(1)?,
        name: r.get(2)?,
        state: parse_state(&r.get::<_, String>(3)?),
        sha256: r.get(4)?,
        batch_size: usize::try_from(r.get::<_, i64>(5)?).unwrap_or(1).max(1),
        removed: r.get(6)?,
        received_at: r.get(7)?,
        error: r.get(8)?,
        kind: r.get(9)?,
        due,
        extension,
    })
}

/// The ledger database.
pub struct SqliteLedger {
    conn: Mutex<Connection>,
    /// For reads that decide nothing (see the module's documentation).
    reader: Mutex<Connection>,
}

impl SqliteLedger {
    /// Opens (creating if needed) `state_dir/ledger.db`. A digest an older gdprd stored unkeyed is handed to
    /// `rekey` with its file id: its keyed digest replaces it, or, when `rekey` has none (no claimed copy), a
    /// finished file's digest is cleared (nothing compares it again) and a file in work keeps it until it
    /// finishes.
    ///
    /// # Errors
    /// [`JournalError::Database`] when it cannot be opened or migrated.
    pub fn open(
        state_dir: &Path,
        rekey: &dyn Fn(i64, &str) -> Option<String>,
    ) -> Result<SqliteLedger, JournalError> {
        let mut conn = Connection::open(state_dir.join(FILE))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        let reader = Connection::open(state_dir.join(FILE))?;
        reader.busy_timeout(std::time::Duration::from_secs(30))?;
        let ledger = SqliteLedger {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
        };
        ledger.key_legacy_digests(rekey)?;
        Ok(ledger)
    }

    /// Opens `state_dir/ledger.db` read-only, if it exists.
    ///
    /// # Errors
    /// [`JournalError::Database`].
    pub fn open_read_only(state_dir: &Path) -> Result<Option<SqliteLedger>, JournalError> {
        let path = state_dir.join(FILE);
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version != VERSION {
            return Err(JournalError::Outdated {
                found: version,
                known: VERSION,
            });
        }
        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(Some(SqliteLedger {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
        }))
    }

    /// The connection. A panic that poisoned the mutex cannot have left a transaction open (a dropped
    /// transaction rolls back), so the connection is taken as it is.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection for reads that decide nothing.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn key_legacy_digests(
        &self,
        rekey: &dyn Fn(i64, &str) -> Option<String>,
    ) -> Result<(), JournalError> {
        let mut conn = self.conn();
        let legacy: Vec<(i64, String, bool)> = {
            let mut stmt = conn.prepare(
                "SELECT id, sha256, state = 'claimed' OR removed = 0 FROM files
                 WHERE sha256 IS NOT NULL AND sha256 NOT LIKE 'hmac-sha256:%'",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        if legacy.is_empty() {
            return Ok(());
        }
        let tx = conn.transaction()?;
        for (id, sha, in_work) in &legacy {
            match (rekey(*id, sha), in_work) {
                (Some(keyed), _) => {
                    debug_assert!(keyed.starts_with(KEYED));
                    tx.execute(
                        "UPDATE files SET sha256 = ?2 WHERE id = ?1",
                        params![id, keyed],
                    )?;
                }
                // Finished and gone from GDPR_Submit: nothing compares its digest again.
                (None, false) => {
                    tx.execute("UPDATE files SET sha256 = NULL WHERE id = ?1", [id])?;
                }
                // In work without its copy: kept, and compared unkeyed, until it finishes.
                (None, true) => {}
            }
        }
        tx.commit()?;
        tracing::info!(
            files = legacy.len(),
            "ledger: unkeyed file digests keyed with the installation secret, or cleared"
        );
        Ok(())
    }
}

impl Ledger for SqliteLedger {
    fn lookup(&self, account: &str, name: &str) -> Result<Option<FileRecord>, JournalError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {RECORD} FROM files WHERE account = ?1 AND name = ?2"),
                params![account, name],
                file_record,
            )
            .optional()?)
    }

    fn record(&self, id: i64) -> Result<Option<FileRecord>, JournalError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {RECORD} FROM files WHERE id = ?1"),
                [id],
                file_record,
            )
            .optional()?)
    }

    fn claim(&self, file: &NewClaim<'_>) -> Result<FileRecord, JournalError> {
        insert_claim(&self.conn(), file)
    }

    fn reject(
        &self,
        account: &str,
        name: &str,
        reason: &str,
        audit: &AuditEntry,
    ) -> Result<(), JournalError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let at = now();
        tx.execute(
            "INSERT INTO files (account, name, state, error, received_at, finished_at) VALUES (?1, ?2, 'rejected', ?3, ?4, ?4)
             ON CONFLICT (account, name) DO NOTHING",
            params![account, name, reason, at],
        )?;
        insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(())
    }

    fn audit(&self, entry: &AuditEntry) -> Result<(), JournalError> {
        insert_audit(&self.conn(), entry)
    }

    fn step(&self, id: i64, chunk: usize, store: &str) -> Result<Option<Step>, JournalError> {
        let row: Option<(String, bool)> = self
            .conn()
            .query_row(
                "SELECT planned, done FROM steps WHERE file_id = ?1 AND chunk = ?2 AND store = ?3",
                params![id, chunk as i64, store],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(planned, done)| Step::read(&planned, done))
            .transpose()
    }

    fn record_step(
        &self,
        id: i64,
        chunk: usize,
        store: &str,
        step: &Step,
    ) -> Result<(), JournalError> {
        let planned = serde_json::to_string(&step.found).map_err(JournalError::Corrupt)?;
        self.conn().execute(
            "INSERT INTO steps (file_id, chunk, store, planned, done) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (file_id, chunk, store) DO UPDATE SET planned = excluded.planned, done = excluded.done",
            params![id, chunk as i64, store, planned, step.done],
        )?;
        Ok(())
    }

    fn chunk_done(&self, id: i64, chunk: usize) -> Result<bool, JournalError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM chunks WHERE file_id = ?1 AND chunk = ?2",
                params![id, chunk as i64],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn complete_chunk(
        &self,
        id: i64,
        chunk: usize,
        responses: &[(Position, Response)],
        audit: &[AuditEntry],
    ) -> Result<(), JournalError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO chunks (file_id, chunk) VALUES (?1, ?2)",
            params![id, chunk as i64],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO contacts (file_id, request, contact, response) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for ((request, contact), response) in responses {
                insert.execute(params![
                    id,
                    *request as i64,
                    *contact as i64,
                    response.to_string()
                ])?;
            }
        }
        for entry in audit {
            insert_audit(&tx, entry)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn responses(&self, id: i64) -> Result<HashMap<Position, Response>, JournalError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare("SELECT request, contact, response FROM contacts WHERE file_id = ?1")?;
        let rows = stmt.query_map([id], |r| {
            Ok((
                (r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as usize),
                Response::parse(&r.get::<_, String>(2)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn finish(
        &self,
        id: i64,
        results: &[String],
        counts: Counts,
        error: Option<&str>,
    ) -> Result<(), JournalError> {
        self.conn().execute(
            "UPDATE files SET state = 'done', finished_at = ?2, results = ?3, success = ?4, not_found = ?5, errors = ?6, error = ?7 WHERE id = ?1",
            params![
                id,
                now(),
                results.join(" "),
                counts.success as i64,
                counts.not_found as i64,
                counts.errors as i64,
                error
            ],
        )?;
        Ok(())
    }

    fn mark_removed(&self, account: &str, name: &str) -> Result<(), JournalError> {
        self.conn().execute(
            "UPDATE files SET removed = 1 WHERE account = ?1 AND name = ?2",
            params![account, name],
        )?;
        Ok(())
    }

    fn unfinished(&self) -> Result<Vec<(String, String)>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT account, name FROM files WHERE state = 'claimed' OR removed = 0 ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn job(&self, id: i64) -> Result<Option<JobRecord>, JournalError> {
        Ok(self
            .reader()
            .query_row(
                &format!(
                    "SELECT state, error, finished_at, results,
                            EXISTS (SELECT 1 FROM chunks WHERE file_id = files.id), received_at, {DEADLINE}
                     FROM files WHERE id = ?1"
                ),
                [id],
                |r| {
                    let (due, extension) = deadline_at(r, 6)?;
                    Ok(JobRecord {
                        state: parse_state(&r.get::<_, String>(0)?),
                        error: r.get(1)?,
                        finished_at: r.get(2)?,
                        results: r
                            .get::<_, Option<String>>(3)?
                            .unwrap_or_default()
                            .split_whitespace()
                            .map(str::to_owned)
                            .collect(),
                        started: r.get(4)?,
                        received_at: r.get(5)?,
                        due,
                        extension,
                    })
                },
            )
            .optional()?)
    }

    fn files(&self, filter: &FileFilter) -> Result<Vec<FileSummary>, JournalError> {
        let conn = self.conn();
        // One row per file and distinct response text; the text is classified by `Response`, here in Rust,
        // so no rule about what a response says lives in SQL. `open_only` keeps the files in work and those
        // finished with an error (`errors` was counted from the responses as the file finished).
        let mut stmt = conn.prepare(&format!(
            "SELECT f.id, f.account, f.name, f.state, f.error, f.received_at, f.finished_at, c.response, count(c.response),
                    {DEADLINE}
             FROM files f LEFT JOIN contacts c ON c.file_id = f.id
             WHERE (?1 IS NULL OR f.received_at >= ?1) AND (?2 IS NULL OR f.account = ?2)
               AND (?3 = 0 OR f.state = 'claimed' OR (f.state = 'done' AND f.errors > 0))
             GROUP BY f.id, c.response ORDER BY f.received_at DESC, f.id DESC"
        ))?;
        let mut rows = stmt.query(params![filter.since, filter.account, filter.open_only])?;
        let mut files: Vec<FileSummary> = Vec::new();
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            if files.last().is_none_or(|last| last.id != id) {
                let (due, extension) = deadline_at(r, 9)?;
                files.push(FileSummary {
                    id,
                    account: r.get(1)?,
                    name: r.get(2)?,
                    state: parse_state(&r.get::<_, String>(3)?),
                    error: r.get(4)?,
                    received_at: r.get(5)?,
                    finished_at: r.get(6)?,
                    counts: Counts::default(),
                    owed_errors: 0,
                    due,
                    extension,
                    waiting: None,
                });
            }
            let (Some(text), Some(file)) = (r.get::<_, Option<String>>(7)?, files.last_mut())
            else {
                continue;
            };
            file.count_responses(&text, u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0));
        }
        drop(rows);
        drop(stmt);
        let mut waiting = all_waiting(&conn)?;
        for file in &mut files {
            file.waiting = waiting.remove(&file.id);
        }
        Ok(files)
    }

    fn extend(
        &self,
        id: i64,
        due: &Due,
        reason: &str,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, JournalError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = tx.execute(
            "UPDATE files SET extended_from = due_on, extension_reason = ?2, extended_at = ?3, due_on = ?4, due_at = ?5
             WHERE id = ?1 AND extended_from IS NULL AND due_on IS NOT NULL AND state <> 'rejected'",
            params![id, reason, time_text(at), day_text(due.on), time_text(due.at)],
        )?;
        if changed == 0 {
            return Ok(false);
        }
        insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(true)
    }

    /// One daemon holds the state folder (its lock): every claim is its own.
    fn acquire(&self, _id: i64) -> Result<Holder, JournalError> {
        Ok(Holder::Here)
    }

    fn renew(&self, _id: i64) -> Result<(), JournalError> {
        Ok(())
    }

    /// The copy is the state folder's (`claimed/ID.json`).
    fn claimed_copy(&self, _id: i64) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(None)
    }

    fn claim_retry(
        &self,
        file: &NewClaim<'_>,
        link: &RetryLink,
    ) -> Result<FileRecord, JournalError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let record = insert_claim(&tx, file)?;
        let stores = serde_json::to_string(&link.stores).map_err(JournalError::Corrupt)?;
        tx.execute(
            "INSERT INTO retries (file_id, original, attempt, stores) VALUES (?1, ?2, ?3, ?4)",
            params![record.id, link.original, link.attempt, stores],
        )?;
        tx.commit()?;
        Ok(record)
    }

    fn retry_link(&self, id: i64) -> Result<Option<RetryLink>, JournalError> {
        let conn = self.conn();
        let found = conn
            .prepare_cached("SELECT original, attempt, stores FROM retries WHERE file_id = ?1")?
            .query_row([id], retry_row)
            .optional()?;
        Ok(found)
    }

    fn retries(&self, original: i64) -> Result<Vec<(FileRecord, RetryLink)>, JournalError> {
        let conn = self.conn();
        let ids: Vec<(i64, RetryLink)> = conn
            .prepare_cached(
                "SELECT original, attempt, stores, file_id FROM retries WHERE original = ?1 ORDER BY attempt",
            )?
            .query_map([original], |r| Ok((r.get(3)?, retry_row(r)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (id, link) in ids {
            let record = conn
                .prepare_cached(&format!("SELECT {RECORD} FROM files WHERE id = ?1"))?
                .query_row([id], file_record)?;
            out.push((record, link));
        }
        Ok(out)
    }

    fn device_stores(
        &self,
        account: &str,
        files: &[String],
    ) -> Result<Vec<(String, String)>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, device_hmac, stores FROM audit WHERE account = ?1 AND file = ?2 AND device_hmac IS NOT NULL",
        )?;
        let mut rows: Vec<(i64, String, String)> = Vec::new();
        for file in files {
            let found = stmt.query_map(params![account, file], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            for row in found {
                rows.push(row?);
            }
        }
        rows.sort_by_key(|r| r.0);
        Ok(rows.into_iter().map(|(_, d, s)| (d, s)).collect())
    }

    fn waiting(&self, id: i64) -> Result<Option<Waiting>, JournalError> {
        let conn = self.reader();
        let found = conn
            .prepare_cached("SELECT stores, since, tries FROM waiting WHERE file_id = ?1")?
            .query_row([id], waiting_row)
            .optional()?;
        Ok(found.map(|(_, w)| w))
    }

    fn set_waiting(&self, id: i64, waiting: Option<&Waiting>) -> Result<(), JournalError> {
        let conn = self.conn();
        match waiting {
            Some(w) => {
                let stores = serde_json::to_string(&w.stores).map_err(JournalError::Corrupt)?;
                conn.prepare_cached(
                    "INSERT INTO waiting (file_id, stores, since, tries) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (file_id) DO UPDATE SET stores = ?2, since = ?3, tries = ?4",
                )?
                .execute(params![id, stores, w.since, w.tries])?;
            }
            None => {
                conn.prepare_cached("DELETE FROM waiting WHERE file_id = ?1")?
                    .execute([id])?;
            }
        }
        Ok(())
    }

    /// One daemon: every singleton task is its own.
    fn hold_singleton(
        &self,
        _name: &str,
        _lease: std::time::Duration,
    ) -> Result<bool, JournalError> {
        Ok(true)
    }

    fn release_singleton(&self, _name: &str) -> Result<(), JournalError> {
        Ok(())
    }

    fn orphans(&self) -> Result<Vec<(String, String)>, JournalError> {
        Ok(Vec::new())
    }
}

/// A row of `retries` (original, attempt, stores) read back.
fn retry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RetryLink> {
    let stores: String = r.get(2)?;
    Ok(RetryLink {
        original: r.get(0)?,
        attempt: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
        stores: serde_json::from_str(&stores).unwrap_or_default(),
    })
}

/// Inserts a claimed file's record.
fn insert_claim(conn: &Connection, file: &NewClaim<'_>) -> Result<FileRecord, JournalError> {
    let received = time_text(file.dates.received);
    let due = file.dates.due;
    conn.execute(
        "INSERT INTO files (account, name, kind, sha256, size, batch_size, state, received_at, due_on, due_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            file.account,
            file.name,
            file.kind.as_type(),
            file.digest,
            file.size as i64,
            file.batch_size as i64,
            state_text(FileState::Claimed),
            received,
            day_text(due.on),
            time_text(due.at)
        ],
    )?;
    Ok(FileRecord::claimed(
        conn.last_insert_rowid(),
        file,
        received,
    ))
}

/// A row of `waiting` (stores, since, tries) read back; its file id is `None` when not selected.
fn waiting_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Option<i64>, Waiting)> {
    let stores: String = r.get(0)?;
    Ok((
        r.get::<_, i64>(3).ok(),
        Waiting {
            stores: serde_json::from_str(&stores).unwrap_or_default(),
            since: r.get(1)?,
            tries: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(u32::MAX),
        },
    ))
}

/// Every file waiting for stores, by id (a short table: a file leaves it when its chunk completes). A ledger of
/// a gdprd older than the table has none.
fn all_waiting(conn: &Connection) -> Result<HashMap<i64, Waiting>, JournalError> {
    let table: bool = conn
        .prepare_cached(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'waiting'",
        )?
        .query_row([], |r| r.get::<_, i64>(0))?
        > 0;
    if !table {
        return Ok(HashMap::new());
    }
    let mut stmt = conn.prepare_cached("SELECT stores, since, tries, file_id FROM waiting")?;
    let rows = stmt.query_map([], waiting_row)?;
    let mut out = HashMap::new();
    for row in rows {
        if let (Some(id), w) = row? {
            out.insert(id, w);
        }
    }
    Ok(out)
}

fn insert_audit(conn: &Connection, e: &AuditEntry) -> Result<(), JournalError> {
    let ts = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    conn.prepare_cached(
        "INSERT INTO audit (account, file, requestcase, device_type, device_hmac, action, stores, outcome, started, finished)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        e.account,
        e.file,
        e.requestcase,
        e.device_type,
        e.device_hmac,
        e.action,
        e.stores,
        e.outcome,
        ts(&e.started),
        ts(&e.finished)
    ])?;
    Ok(())
}

/// Records `name` as claimed with the type `recorded` (any text, or none), through a connection of its own: a
/// ledger as another gdprd may have written it.
#[cfg(test)]
pub(super) fn insert_claimed(
    state_dir: &Path,
    account: &str,
    name: &str,
    recorded: Option<&str>,
    digest: &str,
) {
    Connection::open(state_dir.join(FILE))
        .and_then(|conn| {
            conn.execute(
                "INSERT INTO files (account, name, kind, sha256, batch_size, state, received_at)
                 VALUES (?1, ?2, ?3, ?4, 500, 'claimed', ?5)",
                params![account, name, recorded, digest, now()],
            )
        })
        .expect("a claimed row");
}
