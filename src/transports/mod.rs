//! Transports bring files into `GDPR_Submit` and tell the engine which names to look at. Each sends [`Job`]s;
//! the engine decides what a name means: [`local`] (a local folder, watched and rescanned) and
//! [`sftp_server`] (gdprd's own SFTP server, whose folders are watched the same way). The jobs wait in the
//! worker's bounded, de-duplicated [`queue`].

pub mod local;
pub mod queue;
pub mod sftp_remote;
pub mod sftp_server;

pub use queue::{JobReceiver, JobSender};

use crate::config::de;
use serde::Deserialize;
use std::ffi::OsString;
use std::time::Duration;

/// `[intake]`: how files are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// The time between full rescans of every `GDPR_Submit` (`rescan_seconds`, default 30).
    #[serde(deserialize_with = "de::seconds")]
    pub rescan_seconds: Duration,
    /// A file found by a rescan (not by a close-after-write event) is taken only when unchanged for this long
    /// (`settle_seconds`, default 2).
    #[serde(deserialize_with = "de::seconds")]
    pub settle_seconds: Duration,
    /// A file whose JSON ends before it is complete is an upload still being written while it was modified less
    /// than this long ago: it waits, and its name is not used up. Left unchanged longer, it is refused
    /// (`upload_timeout_seconds`, default 600).
    #[serde(deserialize_with = "de::seconds")]
    pub upload_timeout_seconds: Duration,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            rescan_seconds: Duration::from_secs(30),
            settle_seconds: Duration::from_secs(2),
            upload_timeout_seconds: Duration::from_secs(600),
        }
    }
}

impl IntakeConfig {
    /// Checks that rescans happen.
    ///
    /// # Errors
    /// [`IntakeConfigError`].
    pub(crate) fn validate(&self) -> Result<(), IntakeConfigError> {
        if self.rescan_seconds.is_zero() {
            return Err(IntakeConfigError::NoRescan);
        }
        Ok(())
    }
}

/// What is wrong with `[intake]`, found at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeConfigError {
    /// `rescan_seconds = 0`.
    #[error("[intake]: rescan_seconds must be positive")]
    NoRescan,
}

/// How files reach an account.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// `root` is a local folder (for example served by OpenSSH `internal-sftp`), watched for complete files.
    #[default]
    Local,
    /// gdprd's embedded SFTP server serves `root`; the folder is also watched like `local`.
    SftpServer,
    /// gdprd logs into another SFTP server (`[accounts.remote]`) and works its drop folders; `root` is the local
    /// staging folder the files pass through.
    SftpRemote,
}

/// A name to look at in an account's `GDPR_Submit`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Job {
    /// The account's name (a name, not a position, so a job stays right across a config reload).
    pub account: String,
    /// The file name.
    pub name: OsString,
    /// The journal id of a file already claimed (a request the HTTP front doors submitted): a worker
    /// executes that claim instead of looking at a name in `GDPR_Submit`.
    pub claimed: Option<i64>,
}
