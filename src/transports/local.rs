//! The `local` transport: an account's root is a local folder. `GDPR_Submit` is watched with `notify` for
//! complete files (closed after writing, or moved in), and rescanned at start and periodically so that nothing
//! is missed while the daemon was down or an event was lost. A rescan takes a file only once it has been left
//! unchanged for the settle time, so a slow upload is not taken half-written.

use super::{Job, JobSender};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tracing::warn;

/// The names in `dir` that are ready: regular files or links (never folders), not hidden or temporary, and
/// unmodified for at least `settle`. Sorted, so files are taken in name (that is, time) order.
///
/// # Errors
/// The I/O error reading the folder.
pub fn scan(dir: &Path, settle: Duration) -> io::Result<Vec<OsString>> {
    let now = SystemTime::now();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(crate::requests::name::is_in_progress)
        {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or(Duration::ZERO);
        if age >= settle {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Whether an event says a file is complete: closed after writing, or renamed into the folder.
fn completed(event: &Event) -> Option<&Path> {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            event.paths.first().map(PathBuf::as_path)
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            event.paths.get(1).map(PathBuf::as_path)
        }
        _ => None,
    }
}

/// Watches every `(account name, GDPR_Submit)` folder and sends a [`Job`] for each completed file. The watch
/// lasts as long as the returned watcher.
///
/// # Errors
/// The `notify` error when a folder cannot be watched.
pub fn watch(
    folders: Vec<(String, PathBuf)>,
    jobs: JobSender,
) -> notify::Result<RecommendedWatcher> {
    let lookup = folders.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| match res {
        Ok(event) => {
            let Some(path) = completed(&event) else {
                return;
            };
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                return;
            };
            if let Some((account, _)) = lookup.iter().find(|(_, d)| d == dir) {
                let _ = jobs.send(Job {
                    account: account.clone(),
                    name: name.to_owned(),
                    claimed: None,
                });
            }
        }
        Err(e) => warn!(error = %e, "file watcher error; the periodic rescan still picks files up"),
    })?;
    for (_, dir) in &folders {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_skips_temporary_names_folders_and_fresh_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "forget-20260101_000000.json",
            ".hidden",
            "x.filepart",
            "y.part",
            "z.tmp",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"{}").expect("write");
        }
        std::fs::create_dir(dir.path().join("folder")).expect("mkdir");
        let names = scan(dir.path(), Duration::ZERO).expect("scan");
        assert_eq!(names, ["forget-20260101_000000.json", "notes.txt"]);
        assert!(
            scan(dir.path(), Duration::from_secs(3600))
                .expect("scan")
                .is_empty(),
            "fresh files wait"
        );
    }
}
