//! Export archives: `<stem>-archive.zip`, one plain comma-delimited CSV per source table (`<store>/<table>.csv`),
//! each row starting with the request case, device type and device that matched. Streamed: rows go straight from
//! the store's cursor into the compressed entry, so memory stays flat however many rows match.
//!
//! Each store writes its own part archive; only the parts of stores that succeeded are copied (without
//! recompressing) into the final archive, so a failing store leaves no partial rows behind.

use super::atomic::AtomicFile;
use crate::stores::ExportSink;
use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// Makes a CSV cell safe to open in a spreadsheet: cells a spreadsheet would run as a formula (starting with
/// `=`, `+`, `-`, `@`, tab or carriage return) get a leading `'`.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

fn entry_options() -> SimpleFileOptions {
    // ZIP64 is allowed on every entry so an entry past 4 GiB never fails half-way.
    // Level 1: CSV of repeated values still shrinks about tenfold, at several times the speed of the default.
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(true)
}

enum State {
    Idle(Box<ZipWriter<File>>),
    Table(Box<csv::Writer<ZipWriter<File>>>),
    Broken,
}

/// One store's part of an export, written to a temporary ZIP in the state folder.
pub struct PartArchive {
    state: State,
    path: PathBuf,
    prefixes: Vec<[String; 3]>,
}

impl PartArchive {
    /// Starts a part at `path`. `prefixes[target]` is the request case, device type and device that begin each
    /// row exported for that target of the batch.
    ///
    /// # Errors
    /// The I/O error creating the file.
    pub fn create(path: PathBuf, prefixes: Vec<[String; 3]>) -> io::Result<PartArchive> {
        let file = File::create(&path)?;
        Ok(PartArchive {
            state: State::Idle(Box::new(ZipWriter::new(file))),
            path,
            prefixes,
        })
    }

    fn zip(&mut self) -> io::Result<ZipWriter<File>> {
        match std::mem::replace(&mut self.state, State::Broken) {
            State::Idle(z) => Ok(*z),
            State::Table(w) => w.into_inner().map_err(|e| io::Error::other(e.to_string())),
            State::Broken => Err(io::Error::other("archive part is broken")),
        }
    }

    /// Finishes the part and returns its path.
    ///
    /// # Errors
    /// The I/O error.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        let zip = self.zip()?;
        zip.finish().map_err(io::Error::other)?;
        Ok(self.path.clone())
    }
}

impl ExportSink for PartArchive {
    fn table(&mut self, store: &str, table: &str, columns: &[String]) -> io::Result<()> {
        let mut zip = self.zip()?;
        zip.start_file(format!("{store}/{table}.csv"), entry_options())
            .map_err(io::Error::other)?;
        let mut w = csv::WriterBuilder::new().flexible(false).from_writer(zip);
        let header = ["request_case", "device_type", "device"]
            .into_iter()
            .map(Cow::Borrowed)
            .chain(columns.iter().map(|c| neutralise(c)));
        w.write_record(header.map(|c| c.into_owned()))?;
        self.state = State::Table(Box::new(w));
        Ok(())
    }

    fn row(&mut self, target: usize, cells: &[String]) -> io::Result<()> {
        let State::Table(w) = &mut self.state else {
            return Err(io::Error::other("row before table"));
        };
        let prefix = self
            .prefixes
            .get(target)
            .ok_or_else(|| io::Error::other("row for an unknown target"))?;
        let record = prefix.iter().chain(cells).map(|c| neutralise(c));
        w.write_record(record.map(|c| c.into_owned()))?;
        Ok(())
    }
}

/// Joins finished parts into `dir/name`, atomically; an export that found nothing still gets an (empty) archive.
///
/// # Errors
/// The I/O or ZIP error; the target is then untouched.
pub fn assemble(dir: &Path, name: &str, parts: &[PathBuf]) -> io::Result<PathBuf> {
    let mut out = AtomicFile::create(dir, name)?;
    let mut zip = ZipWriter::new(out.take()?);
    for part in parts {
        let mut archive = ZipArchive::new(File::open(part)?).map_err(io::Error::other)?;
        for i in 0..archive.len() {
            let entry = archive.by_index_raw(i).map_err(io::Error::other)?;
            zip.raw_copy_file(entry).map_err(io::Error::other)?;
        }
    }
    let file = zip.finish().map_err(io::Error::other)?;
    out.commit_file(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("+1 781 555 1212"), "'+1 781 555 1212");
        assert_eq!(neutralise("-2"), "'-2");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("\tx"), "'\tx");
        assert_eq!(neutralise("plain, \"quoted\""), "plain, \"quoted\"");
        assert_eq!(neutralise(""), "");
    }

    #[test]
    fn parts_assemble_into_one_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prefixes = vec![["case1".into(), "email".into(), "a@b.com".into()]];
        let mut part = PartArchive::create(dir.path().join("p1.zip"), prefixes).expect("part");
        part.table("demo", "contacts", &["id".into(), "name".into()])
            .expect("table");
        part.row(0, &["1".into(), "=cmd|' /C calc'!A0".into()])
            .expect("row");
        part.table("demo", "empty_after", &["id".into()])
            .expect("table");
        assert!(
            part.row(7, &["x".into()]).is_err(),
            "unknown target refused"
        );
        let p1 = part.finish().expect("finish");
        let out =
            assemble(dir.path(), "x-archive.zip", std::slice::from_ref(&p1)).expect("assemble");
        let mut zip = ZipArchive::new(File::open(out).expect("open")).expect("zip");
        let mut text = String::new();
        zip.by_name("demo/contacts.csv")
            .expect("entry")
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(
            text,
            "request_case,device_type,device,id,name\ncase1,email,a@b.com,1,'=cmd|' /C calc'!A0\n"
        );
        // A part's entries are streamed, their size unknown when they start, so they are written ZIP64-capable
        // (version needed 4.5) and one past 4 GiB never fails half-way. The raw copy into the final archive
        // rewrites each header from the real sizes: ZIP64 only where an entry needs it (here none: 2.0).
        let version = |path: &Path| {
            let bytes = std::fs::read(path).expect("bytes");
            assert_eq!(&bytes[..4], b"PK\x03\x04");
            u16::from_le_bytes([bytes[4], bytes[5]])
        };
        assert_eq!(version(&dir.path().join("p1.zip")), 45);
        assert_eq!(version(&dir.path().join("x-archive.zip")), 20);
        let empty = assemble(dir.path(), "none-archive.zip", &[]).expect("empty");
        assert_eq!(
            ZipArchive::new(File::open(empty).expect("open"))
                .expect("zip")
                .len(),
            0
        );
    }
}
