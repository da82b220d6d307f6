//! Atomic writes: a result appears whole or not at all. Written to a hidden temporary name beside the target,
//! synced, renamed into place, and the folder synced. And removals that accept a file already gone.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Syncs a folder so a rename in it survives a power cut.
///
/// # Errors
/// The I/O error.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A file being written under a temporary name, renamed into place by [`AtomicFile::commit`]. Dropped without
/// commit, the temporary file is removed.
pub struct AtomicFile {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
}

impl AtomicFile {
    /// Starts writing `dir/name` as `dir/.name.gdprd-tmp`.
    ///
    /// # Errors
    /// The I/O error creating the temporary file.
    pub fn create(dir: &Path, name: &str) -> io::Result<AtomicFile> {
        let temp = dir.join(format!(".{name}.gdprd-tmp"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        Ok(AtomicFile {
            file: Some(file),
            temp,
            target: dir.join(name),
        })
    }

    /// The open temporary file.
    ///
    /// # Errors
    /// `Other` if already committed.
    pub fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("atomic file already committed"))
    }

    /// Takes the open file out (to hand it to a writer such as a ZIP writer); give it back to
    /// [`AtomicFile::commit_file`].
    ///
    /// # Errors
    /// `Other` if already taken.
    pub fn take(&mut self) -> io::Result<File> {
        self.file
            .take()
            .ok_or_else(|| io::Error::other("atomic file already taken"))
    }

    /// Syncs `file` (the one taken out) and renames the temporary file into place.
    ///
    /// # Errors
    /// The I/O error; the target is then untouched.
    pub fn commit_file(mut self, file: File) -> io::Result<PathBuf> {
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.temp, &self.target)?;
        if let Some(dir) = self.target.parent() {
            sync_dir(dir)?;
        }
        self.temp = PathBuf::new();
        Ok(self.target.clone())
    }

    /// Syncs and renames into place.
    ///
    /// # Errors
    /// The I/O error; the target is then untouched.
    pub fn commit(mut self) -> io::Result<PathBuf> {
        let file = self.take()?;
        self.commit_file(file)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Whether `name` is a temporary file an atomic write left behind (`.NAME.gdprd-tmp`): a crash came between its
/// write and its rename, so nothing reads it.
pub fn is_stale_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".gdprd-tmp")
}

/// Removes `path`; one already gone is fine.
///
/// # Errors
/// Any other I/O error.
pub fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `bytes` atomically under the first of `names` that is free in `dir`, never replacing a file, and
/// returns that name. The file is written and synced under a temporary name, then linked to each name in turn
/// until one does not exist yet (a hard link fails atomically when its name is taken).
///
/// # Errors
/// The I/O error; no name is then taken. `AlreadyExists` when every name is taken.
pub fn write_new(
    dir: &Path,
    names: impl IntoIterator<Item = String>,
    bytes: &[u8],
) -> io::Result<String> {
    let temp = dir.join(format!(".{}.gdprd-tmp", rand_suffix()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        for name in names {
            match std::fs::hard_link(&temp, dir.join(&name)) {
                Ok(()) => return Ok(name),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "every name is taken",
        ))
    })();
    let _ = std::fs::remove_file(&temp);
    let name = written?;
    sync_dir(dir)?;
    Ok(name)
}

fn rand_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Writes `bytes` to `dir/name` atomically.
///
/// # Errors
/// The I/O error; the target is then untouched.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let mut f = AtomicFile::create(dir, name)?;
    f.file()?.write_all(bytes)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_whole_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "a.json", b"one").expect("write");
        write(dir.path(), "a.json", b"two").expect("write");
        assert_eq!(
            std::fs::read(dir.path().join("a.json")).expect("read"),
            b"two"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["a.json"]);
    }

    #[test]
    fn write_new_never_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = || (1..4).map(|n| format!("n{n}.json"));
        assert_eq!(
            write_new(dir.path(), names(), b"a").expect("first"),
            "n1.json"
        );
        assert_eq!(
            write_new(dir.path(), names(), b"b").expect("second"),
            "n2.json"
        );
        assert_eq!(
            std::fs::read(dir.path().join("n1.json")).expect("read"),
            b"a"
        );
        write_new(dir.path(), names(), b"c").expect("third");
        let err = write_new(dir.path(), names(), b"d").expect_err("all taken");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["n1.json", "n2.json", "n3.json"], "no temporary left");
    }

    #[test]
    fn dropped_without_commit_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut f = AtomicFile::create(dir.path(), "b.zip").expect("create");
            f.file()
                .expect("file")
                .write_all(b"partial")
                .expect("write");
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }
}
