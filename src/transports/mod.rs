//! Transports bring files into `GDPR_Submit` and tell the engine which names to look at. Each sends [`Job`]s;
//! the engine decides what a name means: [`local`] (a local folder, watched and rescanned) and
//! [`sftp_server`] (gdprd's own SFTP server, whose folders are watched the same way).

pub mod local;
pub mod sftp_remote;
pub mod sftp_server;

use std::ffi::OsString;

/// A name to look at in an account's `GDPR_Submit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The account's name (a name, not a position, so a job stays right across a config reload).
    pub account: String,
    /// The file name.
    pub name: OsString,
}
