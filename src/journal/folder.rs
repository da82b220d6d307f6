//! The state folder's layout, and nobody else's: where the journal keeps what is not in the ledger.
//!
//! | path | what |
//! |---|---|
//! | `gdprd.lock` | the daemon's lock ([`StateLock`]) |
//! | `claimed/ID.json` | the copy of a claimed file, until it has left `GDPR_Submit` |
//! | `claimed/pending-TAG.json` | an HTTP request's copy before its claim |
//! | `work/ID-N.zip` | an export's part archive of its `N`th store |
//! | `jobs/ID.json`, `jobs/ID.lines.json` | an HTTP job's facts and lines (see `jobs.rs`) |
//! | `GDPR_Submit/.gdprd-leaving-ID.json` | a finished submission held while it leaves (see [`holding_name`]) |

use super::{io_err, JournalError};
use crate::results::atomic::{self, is_stale_temporary};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// [`JournalError::Locked`] when another process holds it, [`JournalError::Lock`] when it cannot be taken.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, JournalError> {
        let lock_err = |source| JournalError::Lock {
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
                return Err(JournalError::Locked {
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

/// The hidden name a finished submission holds in `GDPR_Submit` while it leaves.
pub(super) fn holding_name(id: i64) -> String {
    format!(".gdprd-leaving-{id}.json")
}

/// The state folder.
pub(super) struct StateFolder {
    dir: PathBuf,
    /// Held while an HTTP job is turned into a tombstone.
    pub(super) expiring: Mutex<()>,
}

impl StateFolder {
    /// The state folder `dir`, with its subfolders created if missing.
    pub(super) fn create(dir: &Path) -> Result<StateFolder, JournalError> {
        let folder = StateFolder {
            dir: dir.to_owned(),
            expiring: Mutex::default(),
        };
        for sub in [
            folder.claimed(),
            folder.work(),
            folder.jobs(),
            folder.retry(),
        ] {
            std::fs::create_dir_all(&sub)
                .map_err(io_err(format!("cannot create {}", sub.display())))?;
        }
        Ok(folder)
    }

    /// The state folder itself.
    #[cfg(test)]
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn claimed(&self) -> PathBuf {
        self.dir.join("claimed")
    }

    fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// `retry/`: the copies of finished files kept for `gdprd retry`, `retry/ID.json`.
    fn retry(&self) -> PathBuf {
        self.dir.join("retry")
    }

    /// The copy of the finished file `id` kept for `gdprd retry`.
    pub(super) fn retry_copy(&self, id: i64) -> PathBuf {
        self.retry().join(format!("{id}.json"))
    }

    /// Keeps the bytes of the finished file `id` for `gdprd retry`.
    pub(super) fn keep_for_retry(&self, id: i64, bytes: &[u8]) -> Result<(), JournalError> {
        atomic::write(&self.retry(), &format!("{id}.json"), bytes)
            .map_err(io_err("cannot keep a copy of the file for gdprd retry"))?;
        Ok(())
    }

    /// `jobs/`: the HTTP jobs' facts and lines.
    pub(super) fn jobs(&self) -> PathBuf {
        self.dir.join("jobs")
    }

    /// The claimed copy of file `id`.
    pub(super) fn claimed_copy(&self, id: i64) -> PathBuf {
        self.claimed().join(format!("{id}.json"))
    }

    /// Keeps the copy of the claimed file `id`.
    pub(super) fn keep_copy(&self, id: i64, bytes: &[u8]) -> Result<(), JournalError> {
        atomic::write(&self.claimed(), &format!("{id}.json"), bytes)
            .map_err(io_err("cannot keep a copy of the claimed file"))?;
        Ok(())
    }

    /// Writes the copy of a request not yet claimed; returns its path.
    pub(super) fn write_pending(&self, bytes: &[u8]) -> Result<PathBuf, JournalError> {
        let tag: u32 = rand::random();
        atomic::write(&self.claimed(), &format!("pending-{tag:08x}.json"), bytes)
            .map_err(io_err("cannot keep a copy of the request"))
    }

    /// Makes the pending copy at `pending` the copy of the claimed file `id`.
    pub(super) fn promote_pending(&self, pending: &Path, id: i64) -> Result<(), JournalError> {
        let claimed = self.claimed();
        std::fs::rename(pending, self.claimed_copy(id))
            .and_then(|()| atomic::sync_dir(&claimed))
            .map_err(io_err("cannot keep a copy of the claimed request"))
    }

    /// The `n`th export part of file `id`.
    pub(super) fn work_part(&self, id: i64, n: usize) -> PathBuf {
        self.work().join(format!("{id}-{n}.zip"))
    }

    /// Removes the pending copies older than `age`: a claim that failed and could not remove its copy.
    pub(super) fn remove_stale_pending(&self, age: std::time::Duration) {
        for (path, name) in entries(&self.claimed()) {
            let stale = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age);
            if stale && name.starts_with("pending-") {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Removes what a crash can leave (see [`super::Journal::remove_leftovers`]); `claimed(id)` says whether
    /// file `id` is still claimed.
    pub(super) fn remove_leftovers(
        &self,
        claimed: &dyn Fn(i64) -> Result<bool, JournalError>,
    ) -> Result<usize, JournalError> {
        let mut doomed = Vec::new();
        for (entry, name) in entries(&self.claimed()) {
            let id = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<i64>().ok());
            let stale = match id {
                Some(id) => !claimed(id)?,
                None => name.starts_with("pending-") || is_stale_temporary(&name),
            };
            if stale {
                doomed.push(entry);
            }
        }
        doomed.extend(entries(&self.work()).map(|(entry, _)| entry));
        let jobs = self.jobs();
        for (entry, name) in entries(&jobs) {
            let stale = match name.strip_suffix(".lines.json") {
                Some(id) => !super::jobs::facts_keep_lines(&jobs, id),
                None => is_stale_temporary(&name),
            };
            if stale {
                doomed.push(entry);
            }
        }
        doomed.extend(
            entries(&self.dir.join("remote"))
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
}

/// The regular files of `dir` with their names (none when it does not exist).
pub(super) fn entries(dir: &Path) -> impl Iterator<Item = (PathBuf, String)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| Some((e.path(), e.file_name().into_string().ok()?)))
}
