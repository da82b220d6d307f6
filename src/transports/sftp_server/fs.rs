//! The SFTP file system an account sees: its root as `/` holding exactly `GDPR_Submit` and `GDPR_Result`.
//! Allowed: list `/` and both folders, stat, upload (open/write/close) and rename within `GDPR_Submit`,
//! download and remove in `GDPR_Result`. Every other request answers an SFTP status code (russh-sftp's handler
//! methods default to "unsupported"; this one opts in to the operations above only).
//!
//! An upload is written under a hidden temporary name and renamed to its own name when its handle is closed, so
//! an upload cut off half-way is never taken for a submission; then the engine is told.

use super::paths::{resolve, Folder, PathError, Place};
use crate::transports::Job;
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, info};

/// Most handles a session may hold open at once.
const MAX_HANDLES: usize = 64;
/// Most bytes one read answers.
const MAX_READ: u32 = 256 * 1024;

enum Open {
    /// A listing, with the entries still to send.
    Dir(Option<Vec<File>>),
    /// A download from `GDPR_Result`.
    Read(std::fs::File),
    /// An upload into `GDPR_Submit`, under a temporary name until it is closed.
    Write {
        file: std::fs::File,
        temp: PathBuf,
        name: String,
        too_large: bool,
    },
}

/// One SFTP session of an authenticated account.
pub struct AccountFs {
    account_name: String,
    root: PathBuf,
    max_upload: u64,
    jobs: UnboundedSender<Job>,
    handles: HashMap<String, Open>,
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

fn path_error(e: PathError) -> StatusReply {
    match e {
        PathError::NotFound => {
            StatusReply::new(StatusCode::NoSuchFile).with_message("no such file")
        }
        PathError::Refused(why) => StatusReply::new(StatusCode::PermissionDenied).with_message(why),
    }
}

fn io_error(e: std::io::Error) -> StatusReply {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            StatusReply::new(StatusCode::NoSuchFile).with_message("no such file")
        }
        std::io::ErrorKind::PermissionDenied => {
            StatusReply::new(StatusCode::PermissionDenied).with_message("permission denied")
        }
        _ => StatusReply::new(StatusCode::Failure)
            .with_message("the server could not complete the operation"),
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

/// Gives the file at `from` the new name `to`, which must not exist: a hard link fails atomically when it does,
/// so two sessions can never overwrite each other's upload. The caller removes `from` afterwards.
fn place_new(from: &std::path::Path, to: &std::path::Path) -> Result<(), StatusReply> {
    std::fs::hard_link(from, to).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => StatusReply::new(StatusCode::Failure)
            .with_message("a file with this name is already waiting in GDPR_Submit"),
        _ => io_error(e),
    })
}

/// A name a customer may see or use in a folder: not hidden (uploads in progress and result temporaries are).
fn visible(name: &str) -> bool {
    !name.starts_with('.')
}

impl AccountFs {
    /// A session for the account `account_name`, rooted at `root`.
    pub fn new(
        account_name: String,
        root: PathBuf,
        max_upload: u64,
        jobs: UnboundedSender<Job>,
    ) -> AccountFs {
        AccountFs {
            account_name,
            root,
            max_upload,
            jobs,
            handles: HashMap::new(),
            next: 0,
        }
    }

    fn disk(&self, folder: Folder) -> PathBuf {
        self.root.join(folder.name())
    }

    fn add(&mut self, open: Open) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(StatusReply::new(StatusCode::Failure).with_message("too many open handles"));
        }
        self.next += 1;
        let handle = format!("h{}", self.next);
        self.handles.insert(handle.clone(), open);
        Ok(handle)
    }

    async fn attrs(&self, place: &Place) -> Result<FileAttributes, StatusReply> {
        match place {
            Place::Root | Place::Folder(_) => Ok(folder_attrs()),
            Place::File(folder, name) if visible(name) => {
                let meta = tokio::fs::symlink_metadata(self.disk(*folder).join(name))
                    .await
                    .map_err(io_error)?;
                if !meta.is_file() {
                    return Err(
                        StatusReply::new(StatusCode::NoSuchFile).with_message("no such file")
                    );
                }
                Ok(FileAttributes::from(&meta))
            }
            Place::File(..) => {
                Err(StatusReply::new(StatusCode::NoSuchFile).with_message("no such file"))
            }
        }
    }

    async fn listing(&self, place: &Place) -> Result<Vec<File>, StatusReply> {
        let folder = match place {
            Place::Root => {
                return Ok([Folder::Submit, Folder::Result]
                    .into_iter()
                    .map(|f| File::new(f.name(), folder_attrs()))
                    .collect())
            }
            Place::Folder(f) => *f,
            Place::File(..) => {
                return Err(StatusReply::new(StatusCode::NoSuchFile).with_message("not a folder"))
            }
        };
        let mut entries = tokio::fs::read_dir(self.disk(folder))
            .await
            .map_err(io_error)?;
        let mut files = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(meta) = entry.metadata().await else {
                continue;
            };
            if visible(&name) && meta.is_file() {
                files.push(File::new(name, FileAttributes::from(&meta)));
            }
        }
        files.sort_by(|a, b| a.filename.cmp(&b.filename));
        Ok(files)
    }

    fn submitted(&self, name: &str) {
        let _ = self.jobs.send(Job {
            account: self.account_name.clone(),
            name: name.into(),
        });
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
        let attrs = match self.handles.get(&handle) {
            Some(Open::Read(f) | Open::Write { file: f, .. }) => {
                FileAttributes::from(&f.metadata().map_err(io_error)?)
            }
            Some(Open::Dir(_)) => folder_attrs(),
            None => {
                return Err(StatusReply::new(StatusCode::Failure).with_message("invalid handle"))
            }
        };
        Ok(Attrs { id, attrs })
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let place = resolve(&path).map_err(path_error)?;
        let files = self.listing(&place).await?;
        Ok(Handle {
            id,
            handle: self.add(Open::Dir(Some(files)))?,
        })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.handles.get_mut(&handle) {
            Some(Open::Dir(files)) => match files.take() {
                Some(files) if !files.is_empty() => Ok(Name { id, files }),
                _ => Err(StatusReply::new(StatusCode::Eof)),
            },
            _ => Err(StatusReply::new(StatusCode::Failure).with_message("invalid handle")),
        }
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
        let open = match (place, writing) {
            (Place::File(Folder::Result, name), false) if visible(&name) => {
                let path = self.disk(Folder::Result).join(&name);
                let meta = tokio::fs::symlink_metadata(&path).await.map_err(io_error)?;
                if !meta.is_file() {
                    return Err(
                        StatusReply::new(StatusCode::NoSuchFile).with_message("no such file")
                    );
                }
                Open::Read(std::fs::File::open(&path).map_err(io_error)?)
            }
            (Place::File(Folder::Submit, name), true) if visible(&name) => {
                if pflags.contains(OpenFlags::APPEND) {
                    return Err(denied("append"));
                }
                let temp = self
                    .disk(Folder::Submit)
                    .join(format!(".{name}.{}.upload", rand::random::<u64>()));
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&temp)
                    .map_err(io_error)?;
                Open::Write {
                    file,
                    temp,
                    name,
                    too_large: false,
                }
            }
            (Place::File(Folder::Submit, _), false) => {
                return Err(denied("GDPR_Submit is write-only"))
            }
            (Place::File(Folder::Result, _), true) => {
                return Err(denied("GDPR_Result is read-only"))
            }
            (Place::File(..), _) => {
                return Err(StatusReply::new(StatusCode::NoSuchFile).with_message("no such file"))
            }
            (Place::Root | Place::Folder(_), _) => return Err(denied("not a file")),
        };
        Ok(Handle {
            id,
            handle: self.add(open)?,
        })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let Some(Open::Read(file)) = self.handles.get_mut(&handle) else {
            return Err(StatusReply::new(StatusCode::Failure).with_message("invalid handle"));
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
        let max = self.max_upload;
        let Some(Open::Write {
            file, too_large, ..
        }) = self.handles.get_mut(&handle)
        else {
            return Err(StatusReply::new(StatusCode::Failure).with_message("invalid handle"));
        };
        if offset.saturating_add(data.len() as u64) > max {
            *too_large = true;
            return Err(StatusReply::new(StatusCode::Failure).with_message(format!(
                "file too large: uploads are limited to {max} bytes"
            )));
        }
        file.write_all_at(&data, offset).map_err(io_error)?;
        Ok(status(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(Open::Write {
                file,
                temp,
                name,
                too_large,
            }) => {
                // fsync can take a while for a large upload: off the async threads.
                let synced = tokio::task::spawn_blocking(move || file.sync_all())
                    .await
                    .is_ok_and(|r| r.is_ok());
                if too_large || !synced {
                    let _ = tokio::fs::remove_file(&temp).await;
                    return Err(
                        StatusReply::new(StatusCode::Failure).with_message("upload not kept")
                    );
                }
                let target = self.disk(Folder::Submit).join(&name);
                let placed = place_new(&temp, &target);
                let _ = std::fs::remove_file(&temp);
                placed?;
                info!(account = %self.account_name, file = %name, "upload complete");
                self.submitted(&name);
                Ok(status(id))
            }
            Some(_) => Ok(status(id)),
            None => Err(StatusReply::new(StatusCode::Failure).with_message("invalid handle")),
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
        let dir = self.disk(Folder::Submit);
        let from = dir.join(&old);
        if !visible(&old)
            || !tokio::fs::symlink_metadata(&from)
                .await
                .map_err(io_error)?
                .is_file()
        {
            return Err(StatusReply::new(StatusCode::NoSuchFile).with_message("no such file"));
        }
        place_new(&from, &dir.join(&new))?;
        std::fs::remove_file(&from).map_err(io_error)?;
        debug!(account = %self.account_name, file = %new, "renamed in GDPR_Submit");
        self.submitted(&new);
        Ok(status(id))
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        match resolve(&filename).map_err(path_error)? {
            Place::File(Folder::Result, name) if visible(&name) => {
                let path = self.disk(Folder::Result).join(&name);
                if !tokio::fs::symlink_metadata(&path)
                    .await
                    .map_err(io_error)?
                    .is_file()
                {
                    return Err(
                        StatusReply::new(StatusCode::NoSuchFile).with_message("no such file")
                    );
                }
                tokio::fs::remove_file(&path).await.map_err(io_error)?;
                Ok(status(id))
            }
            _ => Err(denied("only files in GDPR_Result can be removed")),
        }
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
        _id: u32,
        _path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(denied("attributes cannot be changed"))
    }

    async fn fsetstat(
        &mut self,
        _id: u32,
        _handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(denied("attributes cannot be changed"))
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
        for open in self.handles.values() {
            if let Open::Write { temp, .. } = open {
                let _ = std::fs::remove_file(temp);
            }
        }
    }
}
