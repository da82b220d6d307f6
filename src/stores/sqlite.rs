//! The `sqlite` store: a SQLite database mapped by [`TableMapping`]s, configured by [`SqliteConfig`]. It works on a whole batch
//! with one scan per table: a SQL function, `gdprd_match`, reads each stored device value the way
//! [`super::matching`] says and looks it up in the batch's set of keys, in memory.

use super::callback_state::{self, CANCELLED, IN_FLIGHT};
use super::mapping::{validate_tables, ForgetMode, Names, PhoneConfig, TableMapping};
use super::matching::Matcher;
use super::{
    Action, Batch, ExportSink, Found, MappingError, Store, StoreConfigError, StoreError,
    StorePreview, TablePreview,
};
use crate::config::de;
use crate::requests::{DeviceKind, Kind};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A `type = "sqlite"` store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file.
    pub path: PathBuf,
    /// How stored phone numbers are read.
    #[serde(default)]
    pub phones: PhoneConfig,
    /// Folder that recording paths in `file` columns are relative to; files outside it are never touched.
    #[serde(default)]
    pub files_root: Option<PathBuf>,
    /// Shortcodes shared between customers: their SMS rows are never exported.
    #[serde(default)]
    pub shared_shortcodes: Vec<String>,
    /// How long to wait for a lock held by another writer (`busy_timeout_seconds`, default 10).
    #[serde(default = "default_busy", deserialize_with = "de::seconds")]
    pub busy_timeout_seconds: Duration,
    /// Whether a forget file that changed rows ends by rebuilding the database file (`VACUUM`, then a WAL
    /// checkpoint) so no copy of a forgotten value stays in free pages or unused page space, whoever left it there
    /// (default true).
    #[serde(default = "de::yes")]
    pub vacuum_after_forget: bool,
    /// The tables holding personal data.
    pub tables: Vec<TableMapping>,
}

fn default_busy() -> Duration {
    Duration::from_secs(10)
}

impl SqliteConfig {
    /// Checks what the mapping can be checked for without opening the database.
    ///
    /// # Errors
    /// [`StoreConfigError`] naming the store `name`.
    pub(crate) fn validate(&self, name: &str) -> Result<(), StoreConfigError> {
        validate_tables(name, &self.tables, &self.phones, Names::Identifiers)?;
        if let Some(t) = self.tables.iter().find(|t| !t.normalised.is_empty()) {
            return Err(StoreConfigError::SqliteNormalised {
                store: name.to_owned(),
                table: t.name.clone(),
            });
        }
        Ok(())
    }
}

/// A SQLite database holding personal data.
pub struct SqliteStore {
    name: String,
    conn: Connection,
    config: SqliteConfig,
    matcher: Arc<Mutex<Matcher>>,
    /// The keyed hash of each wanted key, for suppression lists.
    digests: Arc<Mutex<HashMap<String, String>>>,
    /// Whether a forget may have left old values in free space since the last [`SqliteStore::scrub`]: true at
    /// open, since a crash may have come between a forget's commit and its scrub.
    unscrubbed: bool,
}

/// What a forget scan keeps of a matching row.
struct Hit {
    rowid: i64,
    state: Option<String>,
    file: Option<String>,
}

/// One matching row as the scan sees it.
struct RowMatch<'a> {
    rowid: i64,
    targets: &'a [usize],
    shortcode: Option<String>,
    state: Option<String>,
    file: Option<String>,
    cells: Vec<String>,
}

fn kind_code(kind: DeviceKind) -> i64 {
    match kind {
        DeviceKind::Phone => 0,
        DeviceKind::Email => 1,
        DeviceKind::Ipaddr => 2,
    }
}

fn kind_of(code: i64) -> DeviceKind {
    match code {
        0 => DeviceKind::Phone,
        1 => DeviceKind::Email,
        _ => DeviceKind::Ipaddr,
    }
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn text_of(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(hex::encode(b)),
    }
}

impl SqliteStore {
    /// Opens an existing database; a missing file is an error, not a new empty database.
    ///
    /// # Errors
    /// [`StoreError::Server`] when it cannot be opened.
    pub fn open(name: &str, config: &SqliteConfig) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_with_flags(
            &config.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(config.busy_timeout_seconds)?;
        // What a forget deletes or overwrites is zeroed in the file, not left in free space.
        conn.pragma_update(None, "secure_delete", "ON")?;
        // A rollback journal holds the old pages of a transaction: ours is deleted at commit, not kept
        // (`PERSIST`) or left to be truncated. WAL, a property of the database file, stays as it is.
        let journal: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !journal.eq_ignore_ascii_case("wal") {
            conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
        }
        let matcher = Arc::new(Mutex::new(Matcher::new(config.phones.clone())));
        let shared = Arc::clone(&matcher);
        conn.create_scalar_function("gdprd_match", 2, FunctionFlags::SQLITE_UTF8, move |ctx| {
            let kind = kind_of(ctx.get::<i64>(0)?);
            let mut m = shared.lock().map_err(|_| rusqlite::Error::InvalidQuery)?;
            Ok(match ctx.get_raw(1) {
                ValueRef::Null | ValueRef::Blob(_) => None,
                ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(|v| m.find(kind, v)),
                other => text_of(other).and_then(|v| m.find(kind, &v)),
            })
        })?;
        let digests: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let (shared, shared_digests) = (Arc::clone(&matcher), Arc::clone(&digests));
        conn.create_scalar_function("gdprd_digest", 2, FunctionFlags::SQLITE_UTF8, move |ctx| {
            let kind = kind_of(ctx.get::<i64>(0)?);
            let Some(stored) = text_of(ctx.get_raw(1)) else {
                return Ok(None);
            };
            let key = shared
                .lock()
                .map_err(|_| rusqlite::Error::InvalidQuery)?
                .find(kind, &stored);
            let digests = shared_digests
                .lock()
                .map_err(|_| rusqlite::Error::InvalidQuery)?;
            Ok(key.and_then(|k| digests.get(&k).cloned()))
        })?;
        conn.create_scalar_function(
            "gdprd_mask",
            1,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| Ok(text_of(ctx.get_raw(0)).map(|v| super::mask::mask(&v))),
        )?;
        conn.execute_batch("CREATE TEMP TABLE IF NOT EXISTS gdprd_rows(id INTEGER PRIMARY KEY);")?;
        Ok(SqliteStore {
            name: name.to_owned(),
            conn,
            config: config.clone(),
            matcher,
            digests,
            unscrubbed: true,
        })
    }

    /// In WAL mode the old pages stay in the database file until a checkpoint copies the new ones over them, and
    /// earlier WAL frames may hold old values: after a change, copy now and empty the WAL.
    fn checkpoint(&self) -> Result<(), StoreError> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            tracing::warn!(store = %self.name, "another connection holds the database: old page images stay in its WAL until the next checkpoint");
        }
        Ok(())
    }

    /// After a forget that changed rows: rebuild the database file (`VACUUM`) so that no free page and no unused
    /// space inside a page keeps an old copy of a forgotten value, whoever wrote it there (an application that
    /// deletes without `secure_delete`, a page split), then empty the WAL, which holds the old images too.
    fn scrub(&mut self) -> Result<(), StoreError> {
        if self.config.vacuum_after_forget {
            self.conn.execute_batch("VACUUM")?;
            self.checkpoint()?;
        }
        self.unscrubbed = false;
        Ok(())
    }

    fn set_wanted(&self, batch: &Batch) -> Result<HashMap<String, Vec<usize>>, StoreError> {
        let index = super::key_index(batch);
        *self.digests.lock().map_err(|_| StoreError::Poisoned)? = batch
            .targets
            .iter()
            .map(|t| (t.key.clone(), t.digest.clone()))
            .collect();
        self.matcher
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .set_wanted(index.keys().cloned());
        Ok(index)
    }
}

/// The columns of `table`, or an error when it does not exist.
fn table_columns(conn: &Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote(table)))?;
    let cols = stmt
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    if cols.is_empty() {
        return Err(MappingError::NoTable {
            table: table.to_owned(),
        }
        .into());
    }
    Ok(cols)
}

/// The names SQLite gives a table's row id; a column of the same name hides it.
const ROWID_NAMES: [&str; 3] = ["_rowid_", "rowid", "oid"];

/// The name by which the rows of `table` are addressed: a name of its row id that no column hides. A column
/// named `rowid` would otherwise make `WHERE rowid IN (…)` touch rows that did not match.
///
/// # Errors
/// [`StoreError::Mapping`] for a table without a row id (`WITHOUT ROWID`) or whose columns hide all three
/// names, and for a table that does not exist.
fn row_address(conn: &Connection, table: &str) -> Result<&'static str, StoreError> {
    let without_rowid: Option<bool> = conn
        .query_row(
            "SELECT wr FROM pragma_table_list WHERE name = ?1 AND schema = 'main' AND type = 'table'",
            [table],
            |r| r.get(0),
        )
        .optional()?;
    match without_rowid {
        None => {
            return Err(MappingError::NoTableOrView {
                table: table.to_owned(),
            }
            .into())
        }
        Some(true) => {
            return Err(MappingError::WithoutRowid {
                table: table.to_owned(),
            }
            .into())
        }
        Some(false) => {}
    }
    let mut stmt = conn.prepare(&format!("PRAGMA table_xinfo({})", quote(table)))?;
    let columns = stmt
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    ROWID_NAMES
        .into_iter()
        .find(|name| !columns.iter().any(|c| c.eq_ignore_ascii_case(name)))
        .ok_or_else(|| {
            MappingError::HiddenRowid {
                table: table.to_owned(),
            }
            .into()
        })
}

/// Scans `table` once for every target of the batch, calling `each` for every row that at least one target
/// admits (right account, right shortcode).
fn scan(
    conn: &Connection,
    table: &TableMapping,
    batch: &Batch,
    index: &HashMap<String, Vec<usize>>,
    with_cells: bool,
    each: &mut dyn FnMut(RowMatch<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let devices = table.device_columns();
    let matches: Vec<String> = devices
        .iter()
        .map(|(kind, col)| format!("gdprd_match({}, {})", kind_code(*kind), quote(col)))
        .collect();
    let opt = |c: &Option<String>| c.as_deref().map_or_else(|| "NULL".to_owned(), quote);
    let sql = format!(
        "SELECT {}, {}, {}, {}, {}, {}{} FROM {} WHERE {}",
        row_address(conn, &table.name)?,
        matches.join(", "),
        opt(&table.account),
        opt(&table.shortcode),
        opt(&table.state),
        opt(&table.file),
        if with_cells { ", *" } else { "" },
        quote(&table.name),
        matches
            .iter()
            .map(|m| format!("{m} IS NOT NULL"))
            .collect::<Vec<_>>()
            .join(" OR "),
    );
    let skip_cell = match (&table.file, with_cells) {
        (Some(file), true) => table_columns(conn, &table.name)?
            .iter()
            .position(|c| c == file),
        _ => None,
    };
    let mut stmt = conn.prepare(&sql)?;
    let ncols = stmt.column_count();
    let first_cell = 1 + devices.len() + 4;
    let mut rows = stmt.query([])?;
    let mut targets = Vec::new();
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        let account = text_of(row.get_ref(1 + devices.len())?);
        let shortcode = text_of(row.get_ref(2 + devices.len())?);
        let keys = (0..devices.len())
            .map(|i| Ok(text_of(row.get_ref(1 + i)?)))
            .collect::<Result<Vec<_>, rusqlite::Error>>()?;
        super::admitted(
            table,
            batch,
            index,
            &keys,
            account.as_deref(),
            shortcode.as_deref(),
            &mut targets,
        );
        if targets.is_empty() {
            continue;
        }
        let mut cells = Vec::new();
        if with_cells {
            for c in first_cell..ncols {
                if Some(c - first_cell) != skip_cell {
                    cells.push(text_of(row.get_ref(c)?).unwrap_or_default());
                }
            }
        }
        each(RowMatch {
            rowid,
            targets: &targets,
            shortcode,
            state: text_of(row.get_ref(3 + devices.len())?),
            file: text_of(row.get_ref(4 + devices.len())?),
            cells,
        })?;
    }
    Ok(())
}

/// Scans each of `tables` that `wanted` admits for the batch, counting the rows found per target into `found`;
/// returns the hits per table (empty for a table not scanned).
fn find_hits(
    conn: &Connection,
    tables: &[TableMapping],
    batch: &Batch,
    index: &HashMap<String, Vec<usize>>,
    found: &mut Found,
    wanted: impl Fn(&TableMapping) -> bool,
) -> Result<Vec<Vec<Hit>>, StoreError> {
    let mut hits = Vec::with_capacity(tables.len());
    for table in tables {
        let mut table_hits = Vec::new();
        if wanted(table) {
            scan(conn, table, batch, index, false, &mut |m| {
                for &t in m.targets {
                    found[t] += 1;
                }
                table_hits.push(Hit {
                    rowid: m.rowid,
                    state: m.state,
                    file: m.file,
                });
                Ok(())
            })?;
        }
        hits.push(table_hits);
    }
    Ok(hits)
}

/// Checks that every recording the hits name lies inside `root`, before anything is changed.
fn check_recordings(root: Option<&Path>, hits: &[Vec<Hit>]) -> Result<(), StoreError> {
    for file in hits.iter().flatten().filter_map(|h| h.file.as_deref()) {
        super::recording_path(root, file)?;
    }
    Ok(())
}

/// Fills the temporary row-id table with `ids`.
fn fill_rows(conn: &Connection, ids: impl Iterator<Item = i64>) -> Result<(), StoreError> {
    conn.execute("DELETE FROM temp.gdprd_rows", [])?;
    let mut insert =
        conn.prepare_cached("INSERT OR IGNORE INTO temp.gdprd_rows(id) VALUES (?1)")?;
    for id in ids {
        insert.execute([id])?;
    }
    Ok(())
}

fn erase_table(
    conn: &Connection,
    table: &TableMapping,
    hits: &[Hit],
    files_root: Option<&Path>,
) -> Result<(), StoreError> {
    fill_rows(conn, hits.iter().map(|h| h.rowid))?;
    super::remove_recordings(files_root, hits.iter().filter_map(|h| h.file.as_deref()))?;
    let target = quote(&table.name);
    let rowid = row_address(conn, &table.name)?;
    let sql = match table.forget {
        ForgetMode::Delete => {
            format!("DELETE FROM {target} WHERE {rowid} IN (SELECT id FROM temp.gdprd_rows)")
        }
        ForgetMode::Anonymise => {
            const PLACEHOLDER: &str = "'forgotten-' || lower(hex(randomblob(8)))";
            let set = |c: &str, value: String| {
                let c = quote(c);
                format!("{c} = CASE WHEN {c} IS NULL THEN NULL ELSE {value} END")
            };
            let masked = |c: &str| table.pseudonymise.iter().any(|p| p == c);
            let mut sets: Vec<String> = table
                .device_columns()
                .iter()
                .map(|(kind, c)| {
                    let value = if table.suppression {
                        // The keyed hash of the device the value matched, so the list still suppresses it.
                        format!(
                            "coalesce(gdprd_digest({}, {}), {PLACEHOLDER})",
                            kind_code(*kind),
                            quote(c)
                        )
                    } else if masked(c) {
                        format!("gdprd_mask({})", quote(c))
                    } else {
                        PLACEHOLDER.to_owned()
                    };
                    set(c, value)
                })
                .collect();
            sets.extend(table.personal.iter().map(|c| {
                if masked(c) {
                    set(c, format!("gdprd_mask({})", quote(c)))
                } else {
                    set(c, "'REDACTED'".to_owned())
                }
            }));
            sets.extend(table.file.iter().map(|c| format!("{} = NULL", quote(c))));
            format!(
                "UPDATE {target} SET {} WHERE {rowid} IN (SELECT id FROM temp.gdprd_rows)",
                sets.join(", ")
            )
        }
    };
    conn.execute(&sql, [])?;
    Ok(())
}

impl Store for SqliteStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&mut self) -> Result<Vec<String>, StoreError> {
        for table in &self.config.tables {
            let cols = table_columns(&self.conn, &table.name)?;
            row_address(&self.conn, &table.name)?;
            for col in table.columns() {
                if !cols.contains(col) {
                    return Err(MappingError::NoColumn {
                        table: table.name.clone(),
                        column: col.clone(),
                    }
                    .into());
                }
            }
            if table.file.is_some() && self.config.files_root.is_none() {
                return Err(MappingError::FileColumnWithoutRoot {
                    table: table.name.clone(),
                }
                .into());
            }
        }
        Ok(Vec::new())
    }

    fn forget(
        &mut self,
        batch: &Batch,
        planned: &mut dyn FnMut(&[u64]) -> Result<(), StoreError>,
    ) -> Result<Found, StoreError> {
        let index = self.set_wanted(batch)?;
        let mut found = vec![0u64; batch.targets.len()];
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let hits = find_hits(&tx, &self.config.tables, batch, &index, &mut found, |_| {
            true
        })?;
        planned(&found)?;
        // A recording path outside files_root fails the batch before anything changes.
        let root = self.config.files_root.as_deref();
        check_recordings(root, &hits)?;
        // Callbacks a dialer may be working on are cancelled, and that is committed, before they are deleted.
        let mut cancelled = false;
        for (table, table_hits) in self.config.tables.iter().zip(&hits) {
            let Some(state) = &table.state else { continue };
            let in_flight: Vec<i64> = table_hits
                .iter()
                .filter(|h| h.state.as_deref().is_some_and(callback_state::is_in_flight))
                .map(|h| h.rowid)
                .collect();
            if in_flight.is_empty() {
                continue;
            }
            fill_rows(&tx, in_flight.into_iter())?;
            let states = IN_FLIGHT.map(|s| format!("'{s}'")).join(", ");
            tx.execute(
                &format!(
                    "UPDATE {} SET {} = '{CANCELLED}' WHERE {} IN (SELECT id FROM temp.gdprd_rows) AND {} IN ({states})",
                    quote(&table.name),
                    quote(state),
                    row_address(&tx, &table.name)?,
                    quote(state)
                ),
                [],
            )?;
            cancelled = true;
        }
        let (tx, hits) = if cancelled {
            tx.commit()?;
            // Between the two transactions a dialer may have deleted a row and another taken its row id:
            // the rows are found again, so a row that does not match is never touched.
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut again = vec![0u64; batch.targets.len()];
            let hits = find_hits(&tx, &self.config.tables, batch, &index, &mut again, |_| {
                true
            })?;
            check_recordings(root, &hits)?;
            (tx, hits)
        } else {
            (tx, hits)
        };
        for (table, table_hits) in self.config.tables.iter().zip(&hits) {
            if !table_hits.is_empty() {
                erase_table(&tx, table, table_hits, self.config.files_root.as_deref())?;
            }
        }
        tx.commit()?;
        if found.iter().any(|n| *n > 0) {
            self.unscrubbed = true;
            self.checkpoint()?;
        }
        Ok(found)
    }

    fn finish_forget(&mut self) -> Result<(), StoreError> {
        if self.unscrubbed {
            self.scrub()?;
        }
        Ok(())
    }

    fn pseudonymise(
        &mut self,
        batch: &Batch,
        planned: &mut dyn FnMut(&[u64]) -> Result<(), StoreError>,
    ) -> Result<Found, StoreError> {
        let index = self.set_wanted(batch)?;
        let mut found = vec![0u64; batch.targets.len()];
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let hits = find_hits(&tx, &self.config.tables, batch, &index, &mut found, |t| {
            !t.mask_columns().is_empty()
        })?;
        planned(&found)?;
        for (table, table_hits) in self.config.tables.iter().zip(&hits) {
            if table_hits.is_empty() {
                continue;
            }
            fill_rows(&tx, table_hits.iter().map(|h| h.rowid))?;
            let sets: Vec<String> = table
                .mask_columns()
                .iter()
                .map(|c| format!("{0} = gdprd_mask({0})", quote(c)))
                .collect();
            tx.execute(
                &format!(
                    "UPDATE {} SET {} WHERE {} IN (SELECT id FROM temp.gdprd_rows)",
                    quote(&table.name),
                    sets.join(", "),
                    row_address(&tx, &table.name)?
                ),
                [],
            )?;
        }
        tx.commit()?;
        if found.iter().any(|n| *n > 0) {
            self.checkpoint()?;
        }
        Ok(found)
    }

    fn suppressed(&mut self, batch: &Batch) -> Result<Vec<bool>, StoreError> {
        let index = self.set_wanted(batch)?;
        let digests = super::digest_index(batch);
        let mut out = vec![false; batch.targets.len()];
        let mut matcher = self.matcher.lock().map_err(|_| StoreError::Poisoned)?;
        for table in self.config.tables.iter().filter(|t| t.suppression) {
            let devices = table.device_columns();
            let cols: Vec<String> = devices.iter().map(|(_, c)| quote(c)).collect();
            let mut stmt = self.conn.prepare(&format!(
                "SELECT {} FROM {}",
                cols.join(", "),
                quote(&table.name)
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                for (i, (kind, _)) in devices.iter().enumerate() {
                    if let Some(v) = text_of(row.get_ref(i)?) {
                        super::mark_suppressed(*kind, &v, &digests, &index, &mut matcher, &mut out);
                    }
                }
            }
        }
        Ok(out)
    }

    fn preview(&mut self, batch: &Batch, kind: Kind) -> Result<StorePreview, StoreError> {
        let index = self.set_wanted(batch)?;
        let mut out = StorePreview::new(batch.targets.len());
        // A deferred transaction: one read snapshot for every table, a shared lock only while it reads.
        let tx = self.conn.transaction()?;
        let root = self.config.files_root.as_deref();
        let shared = &self.config.shared_shortcodes;
        for table in &self.config.tables {
            let Some(action) = Action::of(kind, table) else {
                continue;
            };
            let mut counted = TablePreview::new(&table.name, action);
            scan(&tx, table, batch, &index, false, &mut |m| {
                if action == Action::Export
                    && m.shortcode.as_ref().is_some_and(|s| shared.contains(s))
                {
                    return Ok(());
                }
                out.row(
                    &mut counted,
                    m.targets,
                    m.state.as_deref(),
                    m.file.as_deref(),
                    root,
                );
                Ok(())
            })?;
            out.tables.push(counted);
        }
        tx.finish()?;
        Ok(out)
    }

    fn export(&mut self, batch: &Batch, sink: &mut dyn ExportSink) -> Result<Found, StoreError> {
        let index = self.set_wanted(batch)?;
        let mut found = vec![0u64; batch.targets.len()];
        let tx = self.conn.transaction()?;
        for table in self.config.tables.iter().filter(|t| t.export) {
            let header: Vec<String> = table_columns(&tx, &table.name)?
                .into_iter()
                .filter(|c| Some(c) != table.file.as_ref())
                .collect();
            let shared = &self.config.shared_shortcodes;
            let mut started = false;
            scan(&tx, table, batch, &index, true, &mut |m| {
                if m.shortcode.as_ref().is_some_and(|s| shared.contains(s)) {
                    return Ok(());
                }
                if !started {
                    sink.table(&self.name, &table.name, &header)?;
                    started = true;
                }
                for &t in m.targets {
                    found[t] += 1;
                    sink.row(t, &m.cells)?;
                }
                Ok(())
            })?;
        }
        tx.finish()?;
        Ok(found)
    }
}
