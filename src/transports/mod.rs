//! Transports bring files into `GDPR_Submit` and tell the engine which names to look at. Each sends [`Job`]s;
//! the engine decides what a name means: [`local`] (a local folder, watched and rescanned) and
//! [`sftp_server`] (gdprd's own SFTP server, whose folders are watched the same way). The jobs wait in the
//! worker's bounded, de-duplicated [`queue`].

pub mod local;
pub mod queue;
pub mod sftp_remote;
pub mod sftp_server;

pub use queue::{JobReceiver, JobSender};

use std::ffi::OsString;

/// A name to look at in an account's `GDPR_Submit`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Job {
    /// The account's name (a name, not a position, so a job stays right across a config reload).
    pub account: String,
    /// The file name.
    pub name: OsString,
    /// The journal id of a file already claimed (a request the HTTP front doors submitted): the worker
    /// executes that claim instead of looking at a name in `GDPR_Submit`.
    pub claimed: Option<i64>,
}
