//! `gdprd migrate-ledger`: copies the SQLite ledger of a state folder into the PostgreSQL ledger of `[cluster]`,
//! the step from one node to a cluster (see docs/cluster.md). Every row keeps its id (file ids name claimed
//! copies, export parts and HTTP jobs), files still in work take their claimed copy along, and no lease is
//! held by anyone, so any node may take them. The copy is one transaction: it lands whole or not at all.
//! Running it again is harmless: a target holding the same rows is left as it is; a target holding other rows
//! is refused.

use super::{ClusterConfig, JournalError, PostgresLedger};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// What `gdprd migrate-ledger` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// Files copied (or found already there).
    pub files: usize,
    /// Audit rows copied (or found already there).
    pub audit: usize,
    /// Claimed copies of files still in work taken into the ledger.
    pub copies: usize,
    /// Whether the target already held the same rows, so nothing was written.
    pub already: bool,
}

/// A file's row as both ledgers keep it.
#[derive(Debug, Clone, PartialEq)]
struct FileRow {
    id: i64,
    account: String,
    name: String,
    kind: Option<String>,
    sha256: Option<String>,
    size: Option<i64>,
    batch_size: i64,
    state: String,
    error: Option<String>,
    received_at: String,
    finished_at: Option<String>,
    removed: bool,
    results: Option<String>,
    success: i64,
    not_found: i64,
    errors: i64,
    /// `due_on`, `due_at`, `extended_from`, `extension_reason`, `extended_at` (see [`super::DEADLINE`]).
    deadline: [Option<String>; 5],
}

/// An audit row, its id kept.
#[derive(Debug, Clone, PartialEq)]
struct AuditRow {
    id: i64,
    text: [Option<String>; 10],
}

/// Everything the SQLite ledger holds.
struct Rows {
    files: Vec<FileRow>,
    steps: Vec<(i64, i64, String, String, bool)>,
    chunks: Vec<(i64, i64)>,
    contacts: Vec<(i64, i64, i64, String)>,
    audit: Vec<AuditRow>,
}

const AUDIT_COLUMNS: &str =
    "account, file, requestcase, device_type, device_hmac, action, stores, outcome, started, finished";

const FILE_COLUMNS: &str = "id, account, name, kind, sha256, size, batch_size, state, error, received_at, finished_at, removed, results, success, not_found, errors, due_on, due_at, extended_from, extension_reason, extended_at";

fn read_sqlite(path: &Path) -> Result<Rows, JournalError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let files = conn
        .prepare(&format!("SELECT {FILE_COLUMNS} FROM files ORDER BY id"))?
        .query_map([], |r| {
            Ok(FileRow {
                id: r.get(0)?,
                account: r.get(1)?,
                name: r.get(2)?,
                kind: r.get(3)?,
                sha256: r.get(4)?,
                size: r.get(5)?,
                batch_size: r.get(6)?,
                state: r.get(7)?,
                error: r.get(8)?,
                received_at: r.get(9)?,
                finished_at: r.get(10)?,
                removed: r.get(11)?,
                results: r.get(12)?,
                success: r.get(13)?,
                not_found: r.get(14)?,
                errors: r.get(15)?,
                deadline: [r.get(16)?, r.get(17)?, r.get(18)?, r.get(19)?, r.get(20)?],
            })
        })?
        .collect::<Result<_, _>>()?;
    let steps = conn
        .prepare("SELECT file_id, chunk, store, planned, done FROM steps")?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let chunks = conn
        .prepare("SELECT file_id, chunk FROM chunks")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let contacts = conn
        .prepare("SELECT file_id, request, contact, response FROM contacts")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let audit = conn
        .prepare(&format!(
            "SELECT id, {AUDIT_COLUMNS} FROM audit ORDER BY id"
        ))?
        .query_map([], |r| {
            let mut text: [Option<String>; 10] = Default::default();
            for (i, cell) in text.iter_mut().enumerate() {
                *cell = r.get(i + 1)?;
            }
            Ok(AuditRow {
                id: r.get(0)?,
                text,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Rows {
        files,
        steps,
        chunks,
        contacts,
        audit,
    })
}

fn pg_files(tx: &mut postgres::Transaction<'_>) -> Result<Vec<FileRow>, JournalError> {
    tx.query(
        &format!("SELECT {FILE_COLUMNS} FROM files ORDER BY id"),
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(FileRow {
            id: r.try_get(0)?,
            account: r.try_get(1)?,
            name: r.try_get(2)?,
            kind: r.try_get(3)?,
            sha256: r.try_get(4)?,
            size: r.try_get(5)?,
            batch_size: r.try_get(6)?,
            state: r.try_get(7)?,
            error: r.try_get(8)?,
            received_at: r.try_get(9)?,
            finished_at: r.try_get(10)?,
            removed: r.try_get(11)?,
            results: r.try_get(12)?,
            success: r.try_get(13)?,
            not_found: r.try_get(14)?,
            errors: r.try_get(15)?,
            deadline: [
                r.try_get(16)?,
                r.try_get(17)?,
                r.try_get(18)?,
                r.try_get(19)?,
                r.try_get(20)?,
            ],
        })
    })
    .collect()
}

fn pg_audit(tx: &mut postgres::Transaction<'_>) -> Result<Vec<AuditRow>, JournalError> {
    tx.query(
        &format!("SELECT id, {AUDIT_COLUMNS} FROM audit ORDER BY id"),
        &[],
    )?
    .iter()
    .map(|r| {
        let mut text: [Option<String>; 10] = Default::default();
        for (i, cell) in text.iter_mut().enumerate() {
            *cell = r.try_get(i + 1)?;
        }
        Ok(AuditRow {
            id: r.try_get(0)?,
            text,
        })
    })
    .collect()
}

fn count(tx: &mut postgres::Transaction<'_>, table: &str) -> Result<usize, JournalError> {
    let n: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
        .try_get(0)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// What differs between the target's rows and `rows`, if anything.
fn difference(
    tx: &mut postgres::Transaction<'_>,
    rows: &Rows,
) -> Result<Option<String>, JournalError> {
    if pg_files(tx)? != rows.files {
        return Ok(Some("the files differ".into()));
    }
    if pg_audit(tx)? != rows.audit {
        return Ok(Some("the audit trails differ".into()));
    }
    for (table, n) in [
        ("steps", rows.steps.len()),
        ("chunks", rows.chunks.len()),
        ("contacts", rows.contacts.len()),
    ] {
        if count(tx, table)? != n {
            return Ok(Some(format!("the {table} differ")));
        }
    }
    Ok(None)
}

fn insert(
    tx: &mut postgres::Transaction<'_>,
    rows: &Rows,
    copies: &[(i64, Vec<u8>)],
) -> Result<(), JournalError> {
    let file = tx.prepare(&format!(
        "INSERT INTO files ({FILE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
    ))?;
    for f in &rows.files {
        tx.execute(
            &file,
            &[
                &f.id,
                &f.account,
                &f.name,
                &f.kind,
                &f.sha256,
                &f.size,
                &f.batch_size,
                &f.state,
                &f.error,
                &f.received_at,
                &f.finished_at,
                &f.removed,
                &f.results,
                &f.success,
                &f.not_found,
                &f.errors,
                &f.deadline[0],
                &f.deadline[1],
                &f.deadline[2],
                &f.deadline[3],
                &f.deadline[4],
            ],
        )?;
    }
    let copy = tx.prepare("UPDATE files SET copy = $2 WHERE id = $1")?;
    for (id, bytes) in copies {
        tx.execute(&copy, &[id, bytes])?;
    }
    let step = tx.prepare(
        "INSERT INTO steps (file_id, chunk, store, planned, done) VALUES ($1, $2, $3, $4, $5)",
    )?;
    for (id, chunk, store, planned, done) in &rows.steps {
        tx.execute(&step, &[id, chunk, store, planned, done])?;
    }
    let chunk = tx.prepare("INSERT INTO chunks (file_id, chunk) VALUES ($1, $2)")?;
    for (id, n) in &rows.chunks {
        tx.execute(&chunk, &[id, n])?;
    }
    let contact = tx.prepare(
        "INSERT INTO contacts (file_id, request, contact, response) VALUES ($1, $2, $3, $4)",
    )?;
    for (id, request, n, response) in &rows.contacts {
        tx.execute(&contact, &[id, request, n, response])?;
    }
    let audit = tx.prepare(&format!(
        "INSERT INTO audit (id, {AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))?;
    for a in &rows.audit {
        let t = &a.text;
        tx.execute(
            &audit,
            &[
                &a.id, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7], &t[8], &t[9],
            ],
        )?;
    }
    // New rows take ids after the copied ones.
    for table in ["files", "audit"] {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table} HAVING max(id) IS NOT NULL"
            ),
            &[],
        )?;
    }
    Ok(())
}

/// Copies the SQLite ledger of `state_dir` (and the claimed copies of its files in work) into the PostgreSQL
/// ledger of `cluster`, creating its schema if needed. The daemon of `state_dir` must be stopped (the caller
/// holds the state folder's lock).
///
/// # Errors
/// [`JournalError::Io`] when `state_dir` has no ledger, [`JournalError::MigrateConflict`] when the target holds
/// other rows, [`JournalError::Database`].
pub fn migrate_ledger(state_dir: &Path, cluster: &ClusterConfig) -> Result<Migrated, JournalError> {
    let path = state_dir.join(super::sqlite::FILE);
    if !path.is_file() {
        return Err(JournalError::Io {
            context: format!("no ledger to migrate at {}", path.display()),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    // A ledger an older gdprd wrote is brought to this gdprd's schema first (the daemon is stopped).
    super::sqlite::upgrade(&path)?;
    let rows = read_sqlite(&path)?;
    let mut copies = Vec::new();
    for f in rows
        .files
        .iter()
        .filter(|f| f.state == "claimed" || !f.removed)
    {
        let copy = state_dir.join("claimed").join(format!("{}.json", f.id));
        match std::fs::read(&copy) {
            Ok(bytes) => copies.push((f.id, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(super::io_err(format!("cannot read {}", copy.display()))(e)),
        }
    }
    let secret = crate::audit::Secret::load_or_create(state_dir)
        .map_err(super::io_err("cannot read the installation secret"))?;
    let ledger = PostgresLedger::open(cluster, &cluster.node_name())?;
    ledger.check_secret(&secret.hmac(super::SECRET_CHECK), state_dir)?;
    let already = ledger.write_tx(|tx| {
        tx.batch_execute("LOCK TABLE files, steps, chunks, contacts, audit IN EXCLUSIVE MODE")?;
        if count(tx, "files")? == 0 && count(tx, "audit")? == 0 {
            insert(tx, &rows, &copies)?;
            return Ok(false);
        }
        match difference(tx, &rows)? {
            None => Ok(true),
            Some(what) => Err(JournalError::MigrateConflict {
                source_path: path.clone(),
                what,
            }),
        }
    })?;
    Ok(Migrated {
        files: rows.files.len(),
        audit: rows.audit.len(),
        copies: if already { 0 } else { copies.len() },
        already,
    })
}
