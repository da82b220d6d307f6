//! The `csv` store: contact lists as files in a folder, the way contact centres import and export them. Each
//! mapping names files by pattern (`contacts-*.csv`) and columns by header; matching is the same as in the
//! database stores ([`super::matching`]).
//!
//! Every operation streams: one record in memory at a time, whatever the file's size. A forget writes each file
//! that has a match anew beside it (`.NAME.gdprd-tmp`), and only when every file of the batch is written (and the
//! journal has the plan) renames them into place, each synced, with the original's permissions. Files without a
//! match are not touched.

use super::csv_lines::{Lines, Row};
use super::mapping::{validate_tables, ForgetMode, Names, PhoneConfig, TableMapping};
use super::matching::Matcher;
use super::{
    admitted, digest_index, key_index, mark_suppressed, Action, Batch, CsvProblem, ExportSink,
    Found, MappingError, Store, StoreConfigError, StoreError, StorePreview, TablePreview,
};
use crate::requests::{DeviceKind, Kind};
use rand::Rng;
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A `type = "csv"` store: contact-list files in a folder, each mapped like a table by a file-name pattern.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// The folder holding the lists.
    pub folder: PathBuf,
    /// The field delimiter, one ASCII character (default `,`).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// How stored phone numbers are read.
    #[serde(default)]
    pub phones: PhoneConfig,
    /// One mapping per kind of list: `name` is a file-name pattern (`contacts-*.csv`, with `*` and `?`) and
    /// columns are header names.
    pub files: Vec<TableMapping>,
}

fn default_delimiter() -> char {
    ','
}

impl CsvConfig {
    /// Checks the delimiter and the mappings without opening the folder.
    ///
    /// # Errors
    /// [`StoreConfigError`] naming the store `name`.
    pub(crate) fn validate(&self, name: &str) -> Result<(), StoreConfigError> {
        validate_tables(name, &self.files, &self.phones, Names::FilePatterns)?;
        if !self.delimiter.is_ascii()
            || self.delimiter == '"'
            || self.delimiter.is_ascii_alphanumeric()
        {
            return Err(StoreConfigError::Delimiter {
                store: name.to_owned(),
                delimiter: self.delimiter,
            });
        }
        for t in &self.files {
            let unsupported = [
                ("shortcode", t.shortcode.is_some()),
                ("state", t.state.is_some()),
                ("file", t.file.is_some()),
                ("normalised", !t.normalised.is_empty()),
            ];
            if let Some(&(key, _)) = unsupported.iter().find(|(_, set)| *set) {
                return Err(StoreConfigError::CsvUnsupported {
                    store: name.to_owned(),
                    list: t.name.clone(),
                    key,
                });
            }
        }
        Ok(())
    }
}

/// The suffix of a list being rewritten.
const TEMP_SUFFIX: &str = ".gdprd-tmp";

/// A folder of CSV contact lists.
pub struct CsvStore {
    name: String,
    config: CsvConfig,
    matcher: Matcher,
}

/// A mapped file's header, as column positions.
struct Layout {
    devices: Vec<(DeviceKind, usize)>,
    personal: Vec<usize>,
    account: Option<usize>,
    masked: Vec<usize>,
    /// What a pseudonymisation masks ([`TableMapping::mask_columns`]).
    mask: Vec<usize>,
}

impl Layout {
    fn of(
        table: &TableMapping,
        header: &csv::ByteRecord,
        path: &Path,
    ) -> Result<Layout, StoreError> {
        let position = |c: &str| {
            header
                .iter()
                .position(|h| h == c.as_bytes())
                .ok_or_else(|| MappingError::NoCsvColumn {
                    file: display_name(path),
                    column: c.to_owned(),
                })
        };
        let mut devices = Vec::new();
        for (kind, c) in table.device_columns() {
            devices.push((kind, position(c)?));
        }
        let personal = table
            .personal
            .iter()
            .map(|c| position(c))
            .collect::<Result<_, _>>()?;
        let masked = table
            .pseudonymise
            .iter()
            .map(|c| position(c))
            .collect::<Result<_, _>>()?;
        let mask = table
            .mask_columns()
            .into_iter()
            .map(position)
            .collect::<Result<_, _>>()?;
        if let Some(c) = &table.soft_delete {
            position(c)?;
        }
        Ok(Layout {
            devices,
            personal,
            account: table.account.as_deref().map(position).transpose()?,
            masked,
            mask,
        })
    }
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character).
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn cell<'a>(row: &Row<'a>, i: usize) -> Option<&'a str> {
    row.get(i)
        .and_then(|b| std::str::from_utf8(b).ok())
        .filter(|s| !s.trim().is_empty())
}

/// Receives every record of a scanned list, with its match when a target admits it.
type RecordFn<'a> = dyn FnMut(&Layout, &Row<'_>, Option<Hit<'_>>) -> Result<(), StoreError> + 'a;

/// One matching record: the targets it answers and the keys its device cells matched.
struct Hit<'a> {
    targets: &'a [usize],
    keys: &'a [Option<String>],
}

impl CsvStore {
    /// A store over `config.folder`, which must exist.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the folder cannot be read.
    pub fn open(name: &str, config: &CsvConfig) -> Result<CsvStore, StoreError> {
        std::fs::read_dir(&config.folder)?;
        Ok(CsvStore {
            name: name.to_owned(),
            config: config.clone(),
            matcher: Matcher::new(config.phones.clone()),
        })
    }

    /// The files of `table`, sorted by name.
    fn files(&self, table: &TableMapping) -> Result<Vec<PathBuf>, StoreError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.config.folder)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type()?.is_file() && glob(&table.name, &name) {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }

    fn reader(&self, path: &Path) -> Result<csv::Reader<BufReader<File>>, StoreError> {
        Ok(csv::ReaderBuilder::new()
            .delimiter(self.config.delimiter as u8)
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 20, File::open(path)?)))
    }

    /// The header of `path` and the byte offset of the record after it.
    fn header(&self, path: &Path) -> Result<(csv::ByteRecord, u64), StoreError> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(self.config.delimiter as u8)
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 16, File::open(path)?));
        let header = reader.byte_headers().map_err(csv_error(path))?.clone();
        Ok((header, reader.position().byte()))
    }

    /// Streams `path` and calls `each` with every record and, for a record a target admits, its match.
    fn scan(
        &mut self,
        table: &TableMapping,
        path: &Path,
        batch: &Batch,
        index: &HashMap<String, Vec<usize>>,
        each: &mut RecordFn<'_>,
    ) -> Result<csv::ByteRecord, StoreError> {
        let (header, offset) = self.header(path)?;
        let layout = Layout::of(table, &header, path)?;
        let mut lines = Lines::open(path, offset, self.config.delimiter as u8)?;
        let (mut keys, mut targets) = (Vec::new(), Vec::new());
        while let Some(row) = lines.next_row()? {
            keys.clear();
            for (kind, i) in &layout.devices {
                keys.push(cell(&row, *i).and_then(|v| self.matcher.find(*kind, v)));
            }
            if keys.iter().all(Option::is_none) {
                // Most records: no device of the batch, so no target (the account cell is not read).
                targets.clear();
            } else {
                let account = layout.account.and_then(|i| cell(&row, i));
                admitted(table, batch, index, &keys, account, None, &mut targets);
            }
            let hit = (!targets.is_empty()).then_some(Hit {
                targets: &targets,
                keys: &keys,
            });
            each(&layout, &row, hit)?;
        }
        Ok(header)
    }

    fn prepare(&mut self, batch: &Batch) -> HashMap<String, Vec<usize>> {
        let index = key_index(batch);
        self.matcher.set_wanted(index.keys().cloned());
        index
    }

    /// Writes `path` anew into a temporary file beside it, forgetting (or, `masking`, pseudonymising) the records
    /// a target admits; returns the temporary file when there was something to change.
    fn rewrite(
        &mut self,
        table: &TableMapping,
        path: &Path,
        batch: &Batch,
        index: &HashMap<String, Vec<usize>>,
        found: &mut Found,
        masking: bool,
    ) -> Result<Option<PathBuf>, StoreError> {
        let temp = path.with_file_name(format!(".{}{TEMP_SUFFIX}", display_name(path)));
        let header = self.header(path)?.0;
        let crlf = first_line_ends_in_crlf(path)?;
        let (terminator, line_end): (_, &[u8]) = if crlf {
            (csv::Terminator::CRLF, b"\r\n")
        } else {
            (csv::Terminator::Any(b'\n'), b"\n")
        };
        let file = File::create(&temp)?;
        let digests: HashMap<&str, &str> = batch
            .targets
            .iter()
            .map(|t| (t.key.as_str(), t.digest.as_str()))
            .collect();
        // A line read as it is goes out as its bytes; the CSV writer writes every other record (and flushes
        // what it holds into `file` before such a line).
        let file = RefCell::new(BufWriter::with_capacity(1 << 20, file));
        let mut writer = csv::WriterBuilder::new()
            .delimiter(self.config.delimiter as u8)
            .terminator(terminator)
            .flexible(true)
            .from_writer(Shared(&file));
        let mut pending = false;
        // The header is written with the first record: a file with a header only is left as it is.
        let mut started = false;
        let mut changed = false;
        let mut out = csv::ByteRecord::new();
        let mut rng = rand::rng();
        let result = self.scan(table, path, batch, index, &mut |layout, row, hit| {
            let w = &mut writer;
            if !started {
                w.write_byte_record(&header).map_err(csv_error(path))?;
                started = true;
                pending = true;
            }
            let Some(hit) = hit else {
                return match row {
                    Row::Plain { line, .. } => {
                        if pending {
                            w.flush()?;
                            pending = false;
                        }
                        let mut file = file.borrow_mut();
                        file.write_all(line)?;
                        Ok(file.write_all(line_end)?)
                    }
                    Row::Parsed(record) => {
                        pending = true;
                        w.write_byte_record(record).map_err(csv_error(path))
                    }
                };
            };
            pending = true;
            changed = true;
            for &t in hit.targets {
                found[t] += 1;
            }
            if masking {
                out.clear();
                for (i, value) in row.cells().enumerate() {
                    match std::str::from_utf8(value) {
                        Ok(text) if layout.mask.contains(&i) => {
                            out.push_field(super::mask::mask(text).as_bytes())
                        }
                        _ => out.push_field(value),
                    }
                }
                return w.write_byte_record(&out).map_err(csv_error(path));
            }
            if table.forget == ForgetMode::Delete {
                return Ok(());
            }
            out.clear();
            for (i, value) in row.cells().enumerate() {
                let text = std::str::from_utf8(value).unwrap_or_default();
                let new = if value.iter().all(u8::is_ascii_whitespace) {
                    None
                } else if let Some(d) = layout.devices.iter().position(|(_, c)| *c == i) {
                    let digest = hit.keys[d].as_deref().and_then(|k| digests.get(k));
                    Some(match digest {
                        Some(digest) if table.suppression => (*digest).to_owned(),
                        _ if layout.masked.contains(&i) => super::mask::mask(text),
                        _ => format!("forgotten-{:016x}", rng.random::<u64>()),
                    })
                } else if layout.personal.contains(&i) {
                    Some(if layout.masked.contains(&i) {
                        super::mask::mask(text)
                    } else {
                        "REDACTED".to_owned()
                    })
                } else {
                    None
                };
                match new {
                    Some(v) => out.push_field(v.as_bytes()),
                    None => out.push_field(value),
                }
            }
            w.write_byte_record(&out).map_err(csv_error(path))
        });
        if let Err(e) = result {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        if !changed {
            drop(writer);
            std::fs::remove_file(&temp)?;
            return Ok(None);
        }
        writer.flush()?;
        drop(writer);
        let file = file
            .into_inner()
            .into_inner()
            .map_err(|e| StoreError::Io(e.into_error()))?;
        file.sync_all()?;
        std::fs::set_permissions(&temp, std::fs::metadata(path)?.permissions())?;
        Ok(Some(temp))
    }

    /// Removes what an interrupted forget left behind.
    fn sweep(&self) -> Result<(), StoreError> {
        for entry in std::fs::read_dir(&self.config.folder)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

/// A rewritten list's buffered file, written both by the CSV writer and directly.
struct Shared<'a>(&'a RefCell<BufWriter<File>>);

impl Write for Shared<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    /// Leaves the bytes in the buffer: the list is flushed and synced once, at its end.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn first_line_ends_in_crlf(path: &Path) -> Result<bool, StoreError> {
    use std::io::BufRead;
    let mut line = Vec::new();
    BufReader::new(File::open(path)?).read_until(b'\n', &mut line)?;
    Ok(line.ends_with(b"\r\n"))
}

fn csv_error(path: &Path) -> impl Fn(csv::Error) -> StoreError + '_ {
    move |e| match e.into_kind() {
        csv::ErrorKind::Io(io) => StoreError::Io(io),
        other => MappingError::NotCsv {
            file: display_name(path),
            problem: csv_problem(&other),
        }
        .into(),
    }
}

/// A CSV error without the record's contents.
fn csv_problem(kind: &csv::ErrorKind) -> CsvProblem {
    match kind {
        csv::ErrorKind::Utf8 { pos, .. } | csv::ErrorKind::UnequalLengths { pos, .. } => {
            CsvProblem::BadRecordAt {
                line: pos.as_ref().map_or(0, csv::Position::line),
            }
        }
        _ => CsvProblem::BadRecord,
    }
}

fn sync_folder(folder: &Path) -> Result<(), StoreError> {
    File::open(folder)?.sync_all()?;
    Ok(())
}

impl Store for CsvStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&mut self) -> Result<Vec<String>, StoreError> {
        let mut warnings = Vec::new();
        for table in self.config.files.clone() {
            let files = self.files(&table)?;
            if files.is_empty() {
                warnings.push(format!("no file in the folder matches {:?}", table.name));
            }
            for path in files {
                let mut reader = self.reader(&path)?;
                let header = reader.byte_headers().map_err(csv_error(&path))?.clone();
                Layout::of(&table, &header, &path)?;
            }
        }
        Ok(warnings)
    }

    fn forget(
        &mut self,
        batch: &Batch,
        planned: &mut dyn FnMut(&[u64]) -> Result<(), StoreError>,
    ) -> Result<Found, StoreError> {
        self.change(batch, planned, false)
    }

    fn pseudonymise(
        &mut self,
        batch: &Batch,
        planned: &mut dyn FnMut(&[u64]) -> Result<(), StoreError>,
    ) -> Result<Found, StoreError> {
        self.change(batch, planned, true)
    }

    fn export(&mut self, batch: &Batch, sink: &mut dyn ExportSink) -> Result<Found, StoreError> {
        self.export_rows(batch, sink)
    }

    fn suppressed(&mut self, batch: &Batch) -> Result<Vec<bool>, StoreError> {
        self.suppressed_rows(batch)
    }

    fn preview(&mut self, batch: &Batch, kind: Kind) -> Result<StorePreview, StoreError> {
        let index = self.prepare(batch);
        let mut out = StorePreview::new(batch.targets.len());
        for table in self.config.files.clone() {
            let Some(action) = Action::of(kind, &table) else {
                continue;
            };
            // Each list is read as it is; none is written, so none changes.
            for path in self.files(&table)? {
                let mut counted = TablePreview::new(display_name(&path), action);
                self.scan(&table, &path, batch, &index, &mut |_, _, hit| {
                    if let Some(hit) = hit {
                        out.row(&mut counted, hit.targets, None, None, None);
                    }
                    Ok(())
                })?;
                out.tables.push(counted);
            }
        }
        Ok(out)
    }
}

impl CsvStore {
    /// Forgets (or, `masking`, pseudonymises) the batch in every mapped list: each changed list is written
    /// beside itself, and all are renamed into place once the plan is journaled.
    fn change(
        &mut self,
        batch: &Batch,
        planned: &mut dyn FnMut(&[u64]) -> Result<(), StoreError>,
        masking: bool,
    ) -> Result<Found, StoreError> {
        self.sweep()?;
        let index = self.prepare(batch);
        let mut found = vec![0u64; batch.targets.len()];
        let mut rewritten = Vec::new();
        let result = (|| {
            for table in self.config.files.clone() {
                if masking && table.mask_columns().is_empty() {
                    continue;
                }
                for path in self.files(&table)? {
                    if let Some(temp) =
                        self.rewrite(&table, &path, batch, &index, &mut found, masking)?
                    {
                        rewritten.push((temp, path));
                    }
                }
            }
            planned(&found)
        })();
        if let Err(e) = result {
            for (temp, _) in &rewritten {
                let _ = std::fs::remove_file(temp);
            }
            return Err(e);
        }
        for (temp, path) in &rewritten {
            std::fs::rename(temp, path)?;
        }
        if !rewritten.is_empty() {
            sync_folder(&self.config.folder)?;
        }
        Ok(found)
    }

    fn export_rows(
        &mut self,
        batch: &Batch,
        sink: &mut dyn ExportSink,
    ) -> Result<Found, StoreError> {
        let index = self.prepare(batch);
        let mut found = vec![0u64; batch.targets.len()];
        let name = self.name.clone();
        for table in self.config.files.clone() {
            if !table.export {
                continue;
            }
            for path in self.files(&table)? {
                let list = display_name(&path);
                let list = list.strip_suffix(".csv").unwrap_or(&list).to_owned();
                let mut header_cells: Option<Vec<String>> = None;
                let mut started = false;
                let mut cells = Vec::new();
                let header = self.header(&path)?.0;
                self.scan(&table, &path, batch, &index, &mut |_, row, hit| {
                    let Some(hit) = hit else { return Ok(()) };
                    if !started {
                        let h = header_cells.get_or_insert_with(|| {
                            header
                                .iter()
                                .map(|c| String::from_utf8_lossy(c).into_owned())
                                .collect()
                        });
                        sink.table(&name, &list, h)?;
                        started = true;
                    }
                    cells.clear();
                    cells.extend(row.cells().map(|c| String::from_utf8_lossy(c).into_owned()));
                    for &t in hit.targets {
                        found[t] += 1;
                        sink.row(t, &cells)?;
                    }
                    Ok(())
                })?;
            }
        }
        Ok(found)
    }

    fn suppressed_rows(&mut self, batch: &Batch) -> Result<Vec<bool>, StoreError> {
        let index = self.prepare(batch);
        let digests = digest_index(batch);
        let mut out = vec![false; batch.targets.len()];
        for table in self.config.files.clone() {
            if !table.suppression {
                continue;
            }
            for path in self.files(&table)? {
                let (header, offset) = self.header(&path)?;
                let layout = Layout::of(&table, &header, &path)?;
                let mut lines = Lines::open(&path, offset, self.config.delimiter as u8)?;
                while let Some(row) = lines.next_row()? {
                    for (kind, i) in &layout.devices {
                        if let Some(v) = cell(&row, *i) {
                            mark_suppressed(
                                *kind,
                                v,
                                &digests,
                                &index,
                                &mut self.matcher,
                                &mut out,
                            );
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn patterns() {
        assert!(glob("contacts-*.csv", "contacts-2025.csv"));
        assert!(glob("contacts-*.csv", "contacts-.csv"));
        assert!(!glob("contacts-*.csv", "contacts-2025.csv.bak"));
        assert!(glob("list-??.csv", "list-01.csv"));
        assert!(!glob("list-??.csv", "list-1.csv"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
    }
}
