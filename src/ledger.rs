//! The ledger: a SQLite database (WAL mode) in the state folder that makes processing durable and exactly-once.
//!
//! It records each file claimed (with its hash), the plan and completion of each store's step for each chunk of
//! a forget, each contact's response as its chunk completes, and the append-only audit trail. After a crash a
//! claimed file resumes from here: completed chunks are not executed again and their responses do not change.
//! It never holds a device value in clear: the audit trail keeps a keyed hash (see [`crate::audit`]).

use crate::engine::Response;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Why the ledger failed. Fatal for the file at hand (it is retried later), never for the daemon.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database refused a statement.
    #[error("ledger database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A stored plan could not be read back.
    #[error("ledger holds an unreadable plan: {0}")]
    Corrupt(String),
    /// Another daemon holds the state folder.
    #[error("the state folder {} is in use by another gdprd (pid {holder}): a state folder serves one daemon; stop the other one first, or give this one its own state_dir", dir.display())]
    Locked {
        /// The state folder.
        dir: PathBuf,
        /// What the holder wrote in the lock file (its process id).
        holder: String,
    },
    /// The state folder's lock file could not be opened or locked.
    #[error("cannot lock the state folder {}: {source}", dir.display())]
    Lock {
        /// The state folder.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The lock of a state folder, held by the daemon for as long as it runs: two daemons on one state folder would
/// both run the same files. It is an advisory lock (`flock`) on `STATE/gdprd.lock`, which also holds the
/// holder's process id; the kernel releases it when the process ends, however it ends. Commands that only read
/// the state folder (`gdprd status`, `validate`) do not take it.
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// The lock file's name in the state folder.
    pub const FILE: &'static str = "gdprd.lock";

    /// Takes the lock of `state_dir` without waiting.
    ///
    /// # Errors
    /// [`LedgerError::Locked`] when another process holds it, [`LedgerError::Lock`] when it cannot be taken.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LedgerError> {
        let lock_err = |source| LedgerError::Lock {
            dir: state_dir.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(state_dir.join(Self::FILE))
            .map_err(lock_err)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(LedgerError::Locked {
                    dir: state_dir.to_owned(),
                    holder: holder.trim().to_owned(),
                });
            }
            Err(e) => return Err(lock_err(e.into())),
        }
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(lock_err)?;
        Ok(StateLock { _file: file })
    }
}

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

impl FileState {
    fn parse(s: &str) -> FileState {
        match s {
            "done" => FileState::Done,
            "rejected" => FileState::Rejected,
            _ => FileState::Claimed,
        }
    }
}

/// A file's row in the ledger.
#[derive(Debug, Clone)]
pub struct FileRecord {
    /// Ledger id.
    pub id: i64,
    /// Where it stands.
    pub state: FileState,
    /// The keyed digest of the bytes claimed (`hmac-sha256:` and hex, see [`Ledger::holds`]); a bare hex SHA-256
    /// in a file claimed before the upgrade that keyed it.
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
}

/// A file's row as the HTTP front doors report it.
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
    /// Whether a journal chunk of it has completed.
    pub started: bool,
}

/// The outcome counts of a finished file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Contacts answered `SUCCESS`.
    pub success: u64,
    /// Contacts answered `SUCCESS: not found`.
    pub not_found: u64,
    /// Contacts answered `ERROR: …`.
    pub errors: u64,
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
    /// `forget`, `export` or `reject`.
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

/// The chunk number under which a file's survey is kept in `steps` (chunks count from 0; this one never runs).
const SURVEY_CHUNK: usize = u32::MAX as usize;

/// The ledger database.
pub struct Ledger {
    conn: Connection,
    /// The installation secret, the key of the files' digests.
    secret: crate::audit::Secret,
}

/// How a keyed file digest starts in `files.sha256`; a value without it is a legacy, unkeyed SHA-256.
const KEYED: &str = "hmac-sha256:";

const SCHEMA: &str = r"
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
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
";

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Ledger {
    /// Opens (creating if needed) `state_dir/ledger.db`, with the installation secret of `state_dir` (created
    /// if missing) as the key of file digests. Digests an older gdprd stored unkeyed are migrated: a file still in
    /// work is keyed again from its claimed copy, and a finished file's digest, needed no more, is cleared.
    ///
    /// # Errors
    /// [`LedgerError::Database`] when it cannot be opened or migrated; [`LedgerError::Lock`] when the secret
    /// cannot be read.
    pub fn open(state_dir: &Path) -> Result<Ledger, LedgerError> {
        let secret = crate::audit::Secret::load_or_create(state_dir).map_err(|source| {
            LedgerError::Lock {
                dir: state_dir.to_owned(),
                source,
            }
        })?;
        let conn = Connection::open(state_dir.join("ledger.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute_batch(SCHEMA)?;
        let mut ledger = Ledger { conn, secret };
        ledger.key_legacy_digests(state_dir)?;
        Ok(ledger)
    }

    /// The keyed digest of a file's bytes: HMAC-SHA256 with the installation secret. An unkeyed hash of a small
    /// file from a known template can be reversed by trying the few devices it may hold.
    pub fn digest(&self, bytes: &[u8]) -> String {
        format!("{KEYED}{}", self.secret.hmac_bytes(bytes))
    }

    /// Whether `bytes` are the bytes claimed as `rec`.
    pub fn holds(&self, rec: &FileRecord, bytes: &[u8]) -> bool {
        use sha2::Digest;
        match rec.sha256.as_deref() {
            Some(d) if d.starts_with(KEYED) => d == self.digest(bytes),
            Some(legacy) => legacy == hex::encode(sha2::Sha256::digest(bytes)),
            None => false,
        }
    }

    fn key_legacy_digests(&mut self, state_dir: &Path) -> Result<(), LedgerError> {
        use sha2::Digest;
        let legacy: Vec<(i64, String, bool)> = {
            let mut stmt = self.conn.prepare(
                "SELECT id, sha256, state = 'claimed' OR removed = 0 FROM files
                 WHERE sha256 IS NOT NULL AND sha256 NOT LIKE 'hmac-sha256:%'",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        if legacy.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        for (id, sha, in_work) in &legacy {
            let copy = std::fs::read(state_dir.join("claimed").join(format!("{id}.json"))).ok();
            let keyed = copy
                .filter(|b| hex::encode(sha2::Sha256::digest(b)) == *sha)
                .map(|b| format!("{KEYED}{}", self.secret.hmac_bytes(&b)));
            match (keyed, in_work) {
                (Some(keyed), _) => {
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

    /// The record of `name` in `account`, if it was ever claimed or rejected.
    ///
    /// # Errors
    /// [`LedgerError::Database`].
    pub fn lookup(&self, account: &str, name: &str) -> Result<Option<FileRecord>, LedgerError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, state, sha256, batch_size, removed, received_at, error, kind FROM files WHERE account = ?1 AND name = ?2",
                params![account, name],
                |r| {
                    Ok(FileRecord {
                        id: r.get(0)?,
                        state: FileState::parse(&r.get::<_, String>(1)?),
                        sha256: r.get(2)?,
                        batch_size: usize::try_from(r.get::<_, i64>(3)?).unwrap_or(1).max(1),
                        removed: r.get(4)?,
                        received_at: r.get(5)?,
                        error: r.get(6)?,
                        kind: r.get(7)?,
                    })
                },
            )
            .optional()?)
    }

    /// Records a file as claimed; its name is then taken for good.
    ///
    /// # Errors
    /// [`LedgerError::Database`], including when the name is already recorded.
    pub fn claim(
        &self,
        account: &str,
        name: &str,
        kind: Option<&str>,
        bytes: &[u8],
        batch_size: usize,
    ) -> Result<FileRecord, LedgerError> {
        let sha256 = &self.digest(bytes);
        let size = bytes.len() as u64;
        let received = now();
        self.conn.execute(
            "INSERT INTO files (account, name, kind, sha256, size, batch_size, state, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'claimed', ?7)",
            params![account, name, kind, sha256, size as i64, batch_size as i64, received],
        )?;
        Ok(FileRecord {
            id: self.conn.last_insert_rowid(),
            state: FileState::Claimed,
            sha256: Some(sha256.to_owned()),
            batch_size,
            removed: false,
            received_at: received,
            error: None,
            kind: kind.map(str::to_owned),
        })
    }

    /// Records a file that was not executed, with the reason, and its audit entry.
    ///
    /// # Errors
    /// [`LedgerError::Database`].
    pub fn reject(
        &mut self,
        account: &str,
        name: &str,
        reason: &str,
        audit: &AuditEntry,
    ) -> Result<(), LedgerError> {
        let tx = self.conn.transaction()?;
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

    /// Records an audit entry on its own (a duplicate submission, say).
    ///
    /// # Errors
    /// [`LedgerError::Database`].
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), LedgerError> {
        insert_audit(&self.conn, entry)
    }

    /// The plan and completion of `store`'s step for `chunk` of file `id`.
    ///
    /// # Errors
    /// [`LedgerError`].
    pub fn step(
        &self,
        id: i64,
        chunk: usize,
        store: &str,
    ) -> Result<Option<(Vec<u64>, bool)>, LedgerError> {
        let row: Option<(String, bool)> = self
            .conn
            .query_row(
                "SELECT planned, done FROM steps WHERE file_id = ?1 AND chunk = ?2 AND store = ?3",
                params![id, chunk as i64, store],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(planned, done)| {
            serde_json::from_str::<Vec<u64>>(&planned)
                .map(|p| (p, done))
                .map_err(|e| LedgerError::Corrupt(e.to_string()))
        })
        .transpose()
    }

    /// Records what `store` found for `chunk` before it changes anything.
    ///
    /// # Errors
    /// [`LedgerError::Database`].
    pub fn plan_step(
        &self,
        id: i64,
        chunk: usize,
        store: &str,
        found: &[u64],
    ) -> Result<(), LedgerError> {
        self.upsert_step(id, chunk, store, found, false)
    }

    /// Records that `store` committed its step for `chunk`.
    ///
    /// # Errors
    /// [`LedgerError::Database`].
    pub fn finish_step(
        &self,
        id: i64,
        chunk: usize,
        store: &str,
        found: &[u64],
    ) -> Result<(), LedgerError> {
        self.upsert_step(id, chunk, store, found, true)
    }

    /// What `store` held for each target of file `id` before its first chunk changed anything (see
    /// [`Ledger::record_survey`]): `Some(empty)` when the survey failed, `None` when it has not run.
    ///
    /// # Errors
    /// [`LedgerError`].
    pub fn survey(&self, id: i64, store: &str) -> Result<Option<Vec<u64>>, LedgerError> {
        Ok(self.step(id, SURVEY_CHUNK, store)?.map(|(found, _)| found))
    }

    /// Records what `store` held for each target of file `id` before any chunk ran (a survey is kept as the step
    /// of a chunk that never runs).
    ///
    /// # Errors
    /// [`LedgerError::Database`].
    pub fn record_survey(&self, id: i64, store: &str, found: &[u64]) -> Result<(), LedgerError> {
        self.upsert_step(id, SURVEY_CHUNK, store, found, true)
    }

    fn upsert_step(
        &self,
        id: i64,
        chunk: usize,
        store: &str,
        found: &[u64],
        done: bool,
    ) -> Result<(), LedgerError> {
        let planned =
            serde_json::to_string(found).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO steps (file_id, chunk, store, planned, done) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (file_id, chunk, store) DO UPDATE SET planned = excluded.planned, done = excluded.done",
            params![id, chunk as i64, store, planned, done],
        )?;
        Ok(())
    }

    /// Whether `chunk` of file `id` has completed (its responses are journaled).
    ///
    /// # Errors
    /// [`LedgerError::Database`].
    pub fn chunk_done(&self, id: i64, chunk: usize) -> Result<bool, LedgerError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM chunks WHERE file_id = ?1 AND chunk = ?2",
                params![id, chunk as i64],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Completes `chunk` of file `id`: its contacts' responses and audit entries, in one transaction.
    ///
    /// # Errors
    /// [`LedgerError::Database`]; then nothing of the chunk is recorded.
    pub fn complete_chunk(
        &mut self,
        id: i64,
        chunk: usize,
        responses: &[((usize, usize), Response)],
        audit: &[AuditEntry],
    ) -> Result<(), LedgerError> {
        let tx = self.conn.transaction()?;
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

    /// The journaled responses of file `id`, by (request, contact), read back from their text.
    ///
    /// # Errors
    /// [`LedgerError::Database`].
    pub fn responses(
        &self,
        id: i64,
    ) -> Result<std::collections::HashMap<(usize, usize), Response>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT request, contact, response FROM contacts WHERE file_id = ?1")?;
        let rows = stmt.query_map([id], |r| {
            Ok((
                (r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as usize),
                Response::parse(&r.get::<_, String>(2)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// File `id` as the HTTP front doors report it, if the ledger has it.
    ///
    /// # Errors
    /// [`LedgerError::Database`].
    pub fn job(&self, id: i64) -> Result<Option<JobRecord>, LedgerError> {
        Ok(self
            .conn
            .query_row(
                "SELECT state, error, finished_at, results,
                        EXISTS (SELECT 1 FROM chunks WHERE file_id = files.id)
                 FROM files WHERE id = ?1",
                [id],
                |r| {
                    Ok(JobRecord {
                        state: FileState::parse(&r.get::<_, String>(0)?),
                        error: r.get(1)?,
                        finished_at: r.get(2)?,
                        results: r
                            .get::<_, Option<String>>(3)?
                            .unwrap_or_default()
                            .split_whitespace()
                            .map(str::to_owned)
                            .collect(),
                        started: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Marks file `id` done, with its result names, counts and file-level error if it was refused whole.
    ///
    /// # Errors
    /// [`LedgerError::Database`].
    pub fn finish(
        &self,
        id: i64,
        results: &[String],
        counts: Counts,
        error: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.conn.execute(
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

    /// Marks that the submission of `account`/`name` has left `GDPR_Submit`.
    ///
    /// # Errors
    /// [`LedgerError::Database`].
    pub fn mark_removed(&self, account: &str, name: &str) -> Result<(), LedgerError> {
        self.conn.execute(
            "UPDATE files SET removed = 1 WHERE account = ?1 AND name = ?2",
            params![account, name],
        )?;
        Ok(())
    }

    /// Files claimed but not finished, as (account, name): resumed at start.
    ///
    /// # Errors
    /// [`LedgerError::Database`].
    pub fn unfinished(&self) -> Result<Vec<(String, String)>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT account, name FROM files WHERE state = 'claimed' OR removed = 0 ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Whether `name` is a temporary file an atomic write left behind (`.NAME.gdprd-tmp`): a crash came between its
/// write and its rename, so nothing reads it.
pub fn is_stale_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".gdprd-tmp")
}

impl Ledger {
    /// Removes what a crash can leave in the state folder that nobody will read again, at start, before anything
    /// runs: claimed copies (`claimed/ID.json`) of files that are no longer `claimed`, or that the ledger does
    /// not know; copies of HTTP requests never claimed (`claimed/pending-*.json`); every export part in `work/`
    /// (an unfinished export runs again whole); HTTP job lines (`jobs/ID.lines.json`) whose job is expired or
    /// has no facts file (so no URL can read them); and temporary files of atomic writes. Each of these may hold
    /// devices in clear. Returns how many files went.
    ///
    /// # Errors
    /// [`LedgerError::Database`]; a file that cannot be removed is logged and tried again at the next start.
    pub fn remove_leftovers(&self, state_dir: &Path) -> Result<usize, LedgerError> {
        let mut doomed = Vec::new();
        for (entry, name) in entries(&state_dir.join("claimed")) {
            let id = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<i64>().ok());
            let stale = match id {
                Some(id) => !matches!(self.state_of(id)?, Some(FileState::Claimed)),
                None => name.starts_with("pending-") || is_stale_temporary(&name),
            };
            if stale {
                doomed.push(entry);
            }
        }
        doomed.extend(entries(&state_dir.join("work")).map(|(entry, _)| entry));
        let jobs = state_dir.join("jobs");
        for (entry, name) in entries(&jobs) {
            let stale = match name.strip_suffix(".lines.json") {
                Some(id) => match std::fs::read(jobs.join(format!("{id}.json"))) {
                    Ok(facts) => serde_json::from_slice::<serde_json::Value>(&facts)
                        .map_or(true, |f| {
                            f.get("expired") == Some(&serde_json::Value::Bool(true))
                        }),
                    Err(_) => true,
                },
                None => is_stale_temporary(&name),
            };
            if stale {
                doomed.push(entry);
            }
        }
        doomed.extend(
            entries(&state_dir.join("remote"))
                .filter(|(_, name)| is_stale_temporary(name))
                .map(|(entry, _)| entry),
        );
        let mut removed = 0;
        for path in doomed {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a leftover from the state folder; tried again at the next start");
                }
            }
        }
        Ok(removed)
    }

    fn state_of(&self, id: i64) -> Result<Option<FileState>, LedgerError> {
        Ok(self
            .conn
            .query_row("SELECT state FROM files WHERE id = ?1", [id], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .map(|s| FileState::parse(&s)))
    }
}

/// The regular files of `dir` with their names (none when it does not exist).
fn entries(dir: &Path) -> impl Iterator<Item = (PathBuf, String)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| Some((e.path(), e.file_name().into_string().ok()?)))
}

fn insert_audit(conn: &Connection, e: &AuditEntry) -> Result<(), LedgerError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
            account: "a".into(),
            file: "f".into(),
            requestcase: None,
            device_type: Some("phone".into()),
            device_hmac: Some("00".into()),
            action: "forget".into(),
            stores: "{}".into(),
            outcome: "SUCCESS".into(),
            started: Utc::now(),
            finished: Utc::now(),
        }
    }

    #[test]
    fn claim_plan_complete_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut l = Ledger::open(dir.path()).expect("open");
        assert!(l.lookup("a", "f").expect("lookup").is_none());
        let rec = l.claim("a", "f", Some("FORGET"), b"abc", 2).expect("claim");
        assert!(l.holds(&rec, b"abc") && !l.holds(&rec, b"abd"));
        assert!(
            l.claim("a", "f", None, b"abc", 2).is_err(),
            "a name is claimed once"
        );
        l.plan_step(rec.id, 0, "s", &[1, 0]).expect("plan");
        assert_eq!(
            l.step(rec.id, 0, "s").expect("step"),
            Some((vec![1, 0], false))
        );
        l.finish_step(rec.id, 0, "s", &[1, 0]).expect("finish");
        assert_eq!(
            l.step(rec.id, 0, "s").expect("step"),
            Some((vec![1, 0], true))
        );
        l.complete_chunk(rec.id, 0, &[((0, 0), Response::Success)], &[entry()])
            .expect("complete");
        assert!(l.chunk_done(rec.id, 0).expect("done"));
        assert!(
            l.complete_chunk(rec.id, 0, &[], &[]).is_err(),
            "a chunk completes once"
        );
        assert_eq!(
            l.responses(rec.id).expect("responses")[&(0, 0)],
            Response::Success
        );
        assert_eq!(
            l.unfinished().expect("unfinished"),
            vec![("a".to_owned(), "f".to_owned())]
        );
        l.finish(
            rec.id,
            &["f-execution-log.json".into()],
            Counts::default(),
            None,
        )
        .expect("finish");
        l.mark_removed("a", "f").expect("removed");
        assert!(l.unfinished().expect("unfinished").is_empty());
        assert_eq!(
            l.lookup("a", "f").expect("lookup").expect("some").state,
            FileState::Done
        );
    }

    #[test]
    fn file_digests_are_keyed_and_old_ledgers_are_migrated() {
        use sha2::Digest;
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = br#"{"requests":[{"type":"FORGET","contacts":[{"phone":"+1 781 555 4821"}]}]}"#;
        let plain = hex::encode(sha2::Sha256::digest(bytes));
        {
            let l = Ledger::open(dir.path()).expect("open");
            let rec = l.claim("a", "new", None, bytes, 1).expect("claim");
            let stored = rec.sha256.clone().expect("digest");
            assert!(stored.starts_with("hmac-sha256:") && !stored.contains(&plain));
            let other = tempfile::tempdir().expect("tempdir");
            let elsewhere = Ledger::open(other.path()).expect("open");
            assert_ne!(elsewhere.digest(bytes), stored, "keyed by the installation");
            // Rows as an older gdprd wrote them: a file in work with its claimed copy, one without, a finished one.
            for (id, state, removed) in [(10, "claimed", 0), (11, "claimed", 0), (12, "done", 1)] {
                l.conn
                    .execute(
                        "INSERT INTO files (id, account, name, sha256, state, received_at, removed)
                         VALUES (?1, 'a', ?1, ?2, ?3, 'then', ?4)",
                        params![id, plain, state, removed],
                    )
                    .expect("legacy row");
            }
        }
        std::fs::create_dir_all(dir.path().join("claimed")).expect("mkdir");
        std::fs::write(dir.path().join("claimed/10.json"), bytes).expect("copy");
        let l = Ledger::open(dir.path()).expect("reopen");
        let digest = |id: i64| -> Option<String> {
            l.conn
                .query_row("SELECT sha256 FROM files WHERE id = ?1", [id], |r| r.get(0))
                .expect("row")
        };
        assert_eq!(
            digest(10),
            Some(l.digest(bytes)),
            "keyed from its claimed copy"
        );
        assert_eq!(digest(11), Some(plain.clone()), "kept until it finishes");
        assert_eq!(digest(12), None, "a finished file's digest is cleared");
        let legacy = l.lookup("a", "11").expect("lookup").expect("row");
        assert!(l.holds(&legacy, bytes), "a legacy digest still compares");
        let none: i64 = l
            .conn
            .query_row(
                "SELECT count(*) FROM files WHERE sha256 = ?1",
                [&plain],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(none, 1);
    }

    #[test]
    fn audit_is_append_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Ledger::open(dir.path()).expect("open");
        l.audit(&entry()).expect("insert");
        let err = l
            .conn
            .execute("DELETE FROM audit", [])
            .expect_err("refused");
        assert!(err.to_string().contains("append-only"));
        assert!(l
            .conn
            .execute("UPDATE audit SET outcome = 'x'", [])
            .is_err());
    }
}
