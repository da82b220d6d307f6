//! The SFTP file system an account sees: its root as `/` holding exactly `GDPR_Submit` and `GDPR_Result`.
//! Allowed: list `/` and both folders, stat, upload (open/write/close) and rename within `GDPR_Submit`,
//! download and remove in `GDPR_Result`. Every other request answers an SFTP status code (russh-sftp's handler
//! methods default to "unsupported"; this one opts in to the operations above only).
//!
//! An upload is written under a hidden temporary name (`.RANDOM.upload`, never reachable by a client) and given
//! its own name when its handle is closed, so an upload cut off half-way is never taken for a submission; then
//! the engine is told. An upload to a client's temporary name (WinSCP `NAME.filepart`, rclone `NAME.partial`,
//! lftp `.in.NAME.`, any dot-prefixed name: see [`crate::requests::name::is_in_progress`]) is kept under that
//! name, unseen by the engine, and taken when the client renames it to its real name.
//!
//! Listings are read from the folder about a hundred names at a time, as OpenSSH's sftp-server sends them, so a
//! full folder neither overflows a client's packet limit nor keeps a copy per open listing in memory. Open files
//! and listings count against the account's and the server's handle budgets ([`HandleBudget`]); uploads against
//! the account's quota of files and bytes waiting in `GDPR_Submit`.

use super::budget::{HandleBudget, HandlePermit};
use super::paths::{resolve, Folder, PathError, Place};
use crate::requests::name::is_in_progress;
use crate::transports::{Job, JobSender};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{debug, info};

/// Most bytes one read answers.
const MAX_READ: u32 = 256 * 1024;
/// Names sent per readdir answer (OpenSSH's sftp-server sends 100).
pub const READDIR_CHUNK: usize = 100;
/// The longest name a submission may have: its longest result name (`NAME-rejected.json`) must still fit in 255
/// bytes.
pub const MAX_SUBMISSION_NAME: usize = super::paths::MAX_NAME - "-rejected.json".len();
/// Names of recent submissions a session remembers, to answer a client's stat or time-setting after its rename.
const RECENT: usize = 64;

/// What each session of the server may upload.
#[derive(Debug, Clone, Copy)]
pub struct FsLimits {
    /// Largest upload, in bytes.
    pub max_upload: u64,
    /// Most files waiting in `GDPR_Submit`, uploads in progress included.
    pub max_waiting_files: u64,
    /// Most bytes waiting in `GDPR_Submit`, uploads in progress included.
    pub max_waiting_bytes: u64,
}

/// A listing being read.
enum Listing {
    /// The root's two folders, not sent yet.
    Root(Option<Vec<File>>),
    /// A folder on disk, read a chunk at a time; `None` once it is done (or while a chunk is being read).
    Disk(Option<std::fs::ReadDir>),
}

enum Open {
    Dir(Listing),
    /// A download from `GDPR_Result`.
    Read(std::fs::File),
    /// An upload into `GDPR_Submit`, under a temporary name until it is closed.
    Write {
        file: std::fs::File,
        temp: PathBuf,
        name: String,
        /// Bytes this upload may reach: the upload limit or the room left in the account's quota.
        room: u64,
        too_large: bool,
    },
}

/// An open handle and its place in the handle budget.
struct Entry {
    open: Open,
    _permit: HandlePermit,
}

/// One SFTP session of an authenticated account.
pub struct AccountFs {
    account_name: String,
    root: PathBuf,
    limits: FsLimits,
    budget: Arc<HandleBudget>,
    jobs: JobSender,
    handles: HashMap<String, Entry>,
    recent: VecDeque<(String, FileAttributes)>,
    next: u64,
}

fn status(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

fn denied(what: &str) -> StatusReply {
    StatusReply::new(StatusCode::PermissionDenied)
        .with_message(format!("permission denied: {what}"))
}

fn failure(message: impl Into<String>) -> StatusReply {
    StatusReply::new(StatusCode::Failure).with_message(message.into())
}

fn no_such_file() -> StatusReply {
    StatusReply::new(StatusCode::NoSuchFile).with_message("no such file")
}

fn invalid_handle() -> StatusReply {
    failure("invalid handle")
}

fn path_error(e: PathError) -> StatusReply {
    match e {
        PathError::NotFound => no_such_file(),
        PathError::Refused(why) => StatusReply::new(StatusCode::PermissionDenied).with_message(why),
    }
}

fn io_error(e: std::io::Error) -> StatusReply {
    match e.kind() {
        std::io::ErrorKind::NotFound => no_such_file(),
        std::io::ErrorKind::PermissionDenied => {
            StatusReply::new(StatusCode::PermissionDenied).with_message("permission denied")
        }
        _ => failure("the server could not complete the operation"),
    }
}

fn folder_attrs() -> FileAttributes {
    let mut attrs = FileAttributes {
        permissions: Some(0o755),
        ..FileAttributes::default()
    };
    attrs.set_dir(true);
    attrs
}

fn already_waiting() -> StatusReply {
    failure("a file with this name is already waiting in GDPR_Submit")
}

/// Gives the file at `from` the new name `to`, which must not exist: a hard link fails atomically when it does,
/// so two sessions can never overwrite each other's upload. The caller removes `from` afterwards.
fn place_new(from: &Path, to: &Path) -> Result<(), StatusReply> {
    std::fs::hard_link(from, to).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => already_waiting(),
        _ => io_error(e),
    })
}

/// A name a customer may see in a listing: not hidden (uploads in progress and result temporaries are).
fn visible(name: &str) -> bool {
    !name.starts_with('.')
}

/// The server's own temporary upload names (`.RANDOM.upload`): never reachable by a client.
pub fn is_server_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".upload")
}

/// A client's temporary upload name, kept as it is until renamed.
fn is_client_temp(name: &str) -> bool {
    is_in_progress(name) && !is_server_temp(name)
}

/// Refuses a name a submission cannot have because its result's name would not fit.
fn check_submission_name(name: &str) -> Result<(), StatusReply> {
    if name.len() > MAX_SUBMISSION_NAME {
        return Err(failure(format!(
            "file name too long: at most {MAX_SUBMISSION_NAME} bytes, so that its result's name fits"
        )));
    }
    Ok(())
}

/// Files and bytes in `dir` (every regular file, temporary ones included).
fn waiting(dir: &Path) -> std::io::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let Ok(meta) = entry.and_then(|e| e.metadata()) else {
            continue;
        };
        if meta.is_file() {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((files, bytes))
}

/// Reads up to [`READDIR_CHUNK`] visible files from `dir`; the reader is handed back unless it is exhausted.
fn read_chunk(mut dir: std::fs::ReadDir) -> (Option<std::fs::ReadDir>, Vec<File>) {
    let mut files = Vec::with_capacity(READDIR_CHUNK);
    while files.len() < READDIR_CHUNK {
        let Some(entry) = dir.next() else {
            return (None, files);
        };
        let Ok(entry) = entry else { continue };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !visible(&name) {
            continue;
        }
        match entry.metadata() {
            Ok(meta) if meta.is_file() => files.push(File::new(name, FileAttributes::from(&meta))),
            _ => {}
        }
    }
    (Some(dir), files)
}

/// Whether a client's attribute change can be accepted and ignored: times, and permissions that give nothing
/// beyond read to group and others (`0644` at most). Size, owner and group changes are not.
fn harmless(attrs: &FileAttributes) -> bool {
    attrs.size.is_none()
        && attrs.uid.is_none()
        && attrs.gid.is_none()
        && attrs.user.is_none()
        && attrs.group.is_none()
        && attrs.permissions.is_none_or(|p| p & 0o7777 & !0o644 == 0)
}

impl AccountFs {
    /// A session for the account `account_name`, rooted at `root`.
    pub fn new(
        account_name: String,
        root: PathBuf,
        limits: FsLimits,
        budget: Arc<HandleBudget>,
        jobs: JobSender,
    ) -> AccountFs {
        AccountFs {
            account_name,
            root,
            limits,
            budget,
            jobs,
            handles: HashMap::new(),
            recent: VecDeque::new(),
            next: 0,
        }
    }

    fn disk(&self, folder: Folder) -> PathBuf {
        self.root.join(folder.name())
    }

    /// A permit for one more handle of this account.
    fn permit(&self) -> Result<HandlePermit, StatusReply> {
        self.budget
            .take(&self.account_name)
            .map_err(|e| failure(e.to_string()))
    }

    fn add(&mut self, open: Open, permit: HandlePermit) -> String {
        self.next += 1;
        let handle = format!("h{}", self.next);
        self.handles.insert(
            handle.clone(),
            Entry {
                open,
                _permit: permit,
            },
        );
        handle
    }

    /// The attributes a submission had when this session handed it to the engine.
    fn recently_submitted(&self, name: &str) -> Option<FileAttributes> {
        self.recent
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
    }

    fn remember(&mut self, name: &str, path: &Path) {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if self.recent.len() >= RECENT {
                self.recent.pop_front();
            }
            self.recent
                .push_back((name.to_owned(), FileAttributes::from(&meta)));
        }
    }

    async fn attrs(&self, place: &Place) -> Result<FileAttributes, StatusReply> {
        match place {
            Place::Root | Place::Folder(_) => Ok(folder_attrs()),
            Place::File(folder, name)
                if visible(name) || (*folder == Folder::Submit && is_client_temp(name)) =>
            {
                let meta = match tokio::fs::symlink_metadata(self.disk(*folder).join(name)).await {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return match (folder, self.recently_submitted(name)) {
                            (Folder::Submit, Some(attrs)) => Ok(attrs),
                            _ => Err(no_such_file()),
                        }
                    }
                    Err(e) => return Err(io_error(e)),
                };
                if !meta.is_file() {
                    return Err(no_such_file());
                }
                Ok(FileAttributes::from(&meta))
            }
            Place::File(..) => Err(no_such_file()),
        }
    }

    fn listing(&self, place: &Place) -> Result<Listing, StatusReply> {
        match place {
            Place::Root => Ok(Listing::Root(Some(
                [Folder::Submit, Folder::Result]
                    .into_iter()
                    .map(|f| File::new(f.name(), folder_attrs()))
                    .collect(),
            ))),
            Place::Folder(f) => Ok(Listing::Disk(Some(
                std::fs::read_dir(self.disk(*f)).map_err(io_error)?,
            ))),
            Place::File(..) => {
                Err(StatusReply::new(StatusCode::NoSuchFile).with_message("not a folder"))
            }
        }
    }

    fn submitted(&mut self, name: &str, path: &Path) {
        self.remember(name, path);
        let _ = self.jobs.send(Job {
            account: self.account_name.clone(),
            name: name.into(),
            claimed: None,
        });
    }

    /// Opens an upload of `name` into `GDPR_Submit`, checking its name, the quota and that nothing waits under
    /// the name already.
    async fn open_upload(&self, name: String, pflags: OpenFlags) -> Result<Open, StatusReply> {
        if pflags.contains(OpenFlags::APPEND) {
            return Err(denied("append"));
        }
        if is_server_temp(&name) {
            return Err(denied(
                "this name is reserved for the server's own temporary files",
            ));
        }
        let dir = self.disk(Folder::Submit);
        if !is_client_temp(&name) {
            check_submission_name(&name)?;
            // Fails at open (not only at close) when a file of this name is still waiting, exclusive or not.
            if tokio::fs::symlink_metadata(dir.join(&name)).await.is_ok() {
                return Err(already_waiting());
            }
        }
        let scan = dir.clone();
        let (files, bytes) = tokio::task::spawn_blocking(move || waiting(&scan))
            .await
            .map_err(|_| failure("the server could not complete the operation"))?
            .map_err(io_error)?;
        let FsLimits {
            max_upload,
            max_waiting_files,
            max_waiting_bytes,
        } = self.limits;
        if files >= max_waiting_files || bytes >= max_waiting_bytes {
            return Err(failure(format!(
                "quota exceeded: GDPR_Submit holds {files} files and {bytes} bytes waiting (at most {max_waiting_files} files and {max_waiting_bytes} bytes); wait for them to be processed"
            )));
        }
        let temp = dir.join(format!(".{:016x}.upload", rand::random::<u64>()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_error)?;
        Ok(Open::Write {
            file,
            temp,
            name,
            room: max_upload.min(max_waiting_bytes - bytes),
            too_large: false,
        })
    }

    /// Gives a closed upload its name: a client's temporary name is (re)placed as it is; a submission name must
    /// be free, and the engine is told.
    fn finish_upload(&mut self, temp: &Path, name: &str) -> Result<(), StatusReply> {
        let target = self.disk(Folder::Submit).join(name);
        if is_client_temp(name) {
            std::fs::rename(temp, &target).map_err(io_error)?;
            debug!(account = %self.account_name, file = ?name, "temporary upload complete");
            return Ok(());
        }
        let placed = place_new(temp, &target);
        let _ = std::fs::remove_file(temp);
        placed?;
        info!(account = %self.account_name, file = ?name, "upload complete");
        self.submitted(name, &target);
        Ok(())
    }
}

impl russh_sftp::server::Handler for AccountFs {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusReply::new(StatusCode::OpUnsupported).with_message("operation not supported")
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let place = resolve(&path).map_err(path_error)?;
        Ok(Name {
            id,
            files: vec![File::dummy(place.display_path())],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let place = resolve(&path).map_err(path_error)?;
        Ok(Attrs {
            id,
            attrs: self.attrs(&place).await?,
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat(id, path).await
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let attrs = match self.handles.get(&handle).map(|e| &e.open) {
            Some(Open::Read(f) | Open::Write { file: f, .. }) => {
                FileAttributes::from(&f.metadata().map_err(io_error)?)
            }
            Some(Open::Dir(_)) => folder_attrs(),
            None => return Err(invalid_handle()),
        };
        Ok(Attrs { id, attrs })
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let place = resolve(&path).map_err(path_error)?;
        let permit = self.permit()?;
        let listing = self.listing(&place)?;
        Ok(Handle {
            id,
            handle: self.add(Open::Dir(listing), permit),
        })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let Some(Entry {
            open: Open::Dir(listing),
            ..
        }) = self.handles.get_mut(&handle)
        else {
            return Err(invalid_handle());
        };
        let files = match listing {
            Listing::Root(files) => files.take().unwrap_or_default(),
            Listing::Disk(reader) => match reader.take() {
                Some(dir) => {
                    let (rest, files) = tokio::task::spawn_blocking(move || read_chunk(dir))
                        .await
                        .map_err(|_| failure("the server could not complete the operation"))?;
                    *reader = rest;
                    files
                }
                None => Vec::new(),
            },
        };
        if files.is_empty() {
            return Err(StatusReply::new(StatusCode::Eof));
        }
        Ok(Name { id, files })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let place = resolve(&filename).map_err(path_error)?;
        let writing = pflags.intersects(
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE,
        );
        let permit = self.permit()?;
        let open = match (place, writing) {
            (Place::File(Folder::Result, name), false) if visible(&name) => {
                let path = self.disk(Folder::Result).join(&name);
                let meta = tokio::fs::symlink_metadata(&path).await.map_err(io_error)?;
                if !meta.is_file() {
                    return Err(no_such_file());
                }
                Open::Read(std::fs::File::open(&path).map_err(io_error)?)
            }
            (Place::File(Folder::Submit, name), true) => self.open_upload(name, pflags).await?,
            (Place::File(Folder::Submit, _), false) => {
                return Err(denied("GDPR_Submit is write-only"))
            }
            (Place::File(Folder::Result, _), true) => {
                return Err(denied("GDPR_Result is read-only"))
            }
            (Place::File(..), _) => return Err(no_such_file()),
            (Place::Root | Place::Folder(_), _) => return Err(denied("not a file")),
        };
        Ok(Handle {
            id,
            handle: self.add(open, permit),
        })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let Some(Entry {
            open: Open::Read(file),
            ..
        }) = self.handles.get_mut(&handle)
        else {
            return Err(invalid_handle());
        };
        // Positional reads and writes on the page cache take microseconds: no thread-pool hop per packet.
        let mut data = vec![0; len.min(MAX_READ) as usize];
        let n = file.read_at(&mut data, offset).map_err(io_error)?;
        if n == 0 {
            return Err(StatusReply::new(StatusCode::Eof));
        }
        data.truncate(n);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let FsLimits {
            max_upload,
            max_waiting_bytes,
            ..
        } = self.limits;
        let Some(Entry {
            open:
                Open::Write {
                    file,
                    room,
                    too_large,
                    ..
                },
            ..
        }) = self.handles.get_mut(&handle)
        else {
            return Err(invalid_handle());
        };
        let end = offset.saturating_add(data.len() as u64);
        if end > *room {
            *too_large = true;
            return Err(failure(if end > max_upload {
                format!("file too large: uploads are limited to {max_upload} bytes")
            } else {
                format!("quota exceeded: at most {max_waiting_bytes} bytes may wait in GDPR_Submit; wait for files to be processed")
            }));
        }
        file.write_all_at(&data, offset).map_err(io_error)?;
        Ok(status(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle).map(|e| e.open) {
            Some(Open::Write {
                file,
                temp,
                name,
                too_large,
                ..
            }) => {
                // fsync can take a while for a large upload: off the async threads.
                let synced = tokio::task::spawn_blocking(move || file.sync_all())
                    .await
                    .is_ok_and(|r| r.is_ok());
                if too_large || !synced {
                    let _ = tokio::fs::remove_file(&temp).await;
                    return Err(failure("upload not kept"));
                }
                self.finish_upload(&temp, &name)?;
                Ok(status(id))
            }
            Some(_) => Ok(status(id)),
            None => Err(invalid_handle()),
        }
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        let (Place::File(Folder::Submit, old), Place::File(Folder::Submit, new)) = (
            resolve(&oldpath).map_err(path_error)?,
            resolve(&newpath).map_err(path_error)?,
        ) else {
            return Err(denied("rename is allowed within GDPR_Submit only"));
        };
        if is_in_progress(&new) {
            return Err(denied(
                "a file can be renamed to a submission name only, not to a hidden or temporary one",
            ));
        }
        check_submission_name(&new)?;
        let dir = self.disk(Folder::Submit);
        let from = dir.join(&old);
        if !(visible(&old) || is_client_temp(&old))
            || !tokio::fs::symlink_metadata(&from)
                .await
                .map_err(io_error)?
                .is_file()
        {
            return Err(no_such_file());
        }
        let to = dir.join(&new);
        place_new(&from, &to)?;
        std::fs::remove_file(&from).map_err(io_error)?;
        info!(account = %self.account_name, from = ?old, file = ?new, "upload complete (renamed in GDPR_Submit)");
        self.submitted(&new, &to);
        Ok(status(id))
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        let path = match resolve(&filename).map_err(path_error)? {
            Place::File(Folder::Result, name) if visible(&name) => {
                self.disk(Folder::Result).join(&name)
            }
            // A client may clear away its own temporary upload (lftp and WinSCP do after a failure).
            Place::File(Folder::Submit, name) if is_client_temp(&name) => {
                self.disk(Folder::Submit).join(&name)
            }
            _ => return Err(denied("only files in GDPR_Result can be removed")),
        };
        if !tokio::fs::symlink_metadata(&path)
            .await
            .map_err(io_error)?
            .is_file()
        {
            return Err(no_such_file());
        }
        tokio::fs::remove_file(&path).await.map_err(io_error)?;
        Ok(status(id))
    }

    async fn mkdir(
        &mut self,
        _id: u32,
        _path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(denied("folders cannot be created"))
    }

    async fn rmdir(&mut self, _id: u32, _path: String) -> Result<Status, Self::Error> {
        Err(denied("folders cannot be removed"))
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        // Clients set times (rclone, WinSCP) and modes (lftp) after an upload: accepted and ignored when
        // harmless, on a file that is there or was just submitted from this session.
        if !harmless(&attrs) {
            return Err(denied(
                "only times and permissions up to 0644 can be set, and they are ignored",
            ));
        }
        let place = resolve(&path).map_err(path_error)?;
        self.attrs(&place).await?;
        Ok(status(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        if !harmless(&attrs) {
            return Err(denied(
                "only times and permissions up to 0644 can be set, and they are ignored",
            ));
        }
        if !self.handles.contains_key(&handle) {
            return Err(invalid_handle());
        }
        Ok(status(id))
    }

    async fn symlink(
        &mut self,
        _id: u32,
        _linkpath: String,
        _targetpath: String,
    ) -> Result<Status, Self::Error> {
        Err(denied("links cannot be created"))
    }

    async fn readlink(&mut self, _id: u32, _path: String) -> Result<Name, Self::Error> {
        Err(StatusReply::new(StatusCode::NoSuchFile).with_message("no links here"))
    }
}

impl Drop for AccountFs {
    fn drop(&mut self) {
        // Uploads whose handle was never closed were cut off: their temporary files go.
        for entry in self.handles.values() {
            if let Open::Write { temp, .. } = &entry.open {
                let _ = std::fs::remove_file(temp);
            }
        }
    }
}

/// Removes what uploads left in an account's `GDPR_Submit`: the server's own temporary files (only at start, when
/// no session can be writing them: `server_temps`) and clients' temporary uploads not touched for `max_age`.
/// Returns how many files went.
pub fn sweep_temporary_uploads(
    submit: &Path,
    server_temps: bool,
    max_age: std::time::Duration,
) -> usize {
    let Ok(entries) = std::fs::read_dir(submit) else {
        return 0;
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let stale = if is_server_temp(&name) {
            server_temps
        } else if is_in_progress(&name) {
            meta.modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age >= max_age)
        } else {
            false
        };
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}
