//! gdprd carries out GDPR data-subject requests that arrive as files: customers drop `forget-…json` and
//! `export-…json` into `GDPR_Submit`; gdprd erases or exports that person's data in every store that holds it and
//! writes an execution log (and an export archive) into `GDPR_Result`.
//!
//! How the modules fit, in the order a file travels:
//! - [`transports`] notice files in an account's `GDPR_Submit`: [`transports::local`] folders,
//!   [`transports::sftp_server`] (gdprd's own SFTP server) and [`transports::sftp_remote`] (another server's).
//! - [`requests`] read a file's name and content into validated requests, without I/O.
//! - [`engine`] executes one file: claim, journal, run every store, write results, resume after a crash.
//! - [`stores`] are where personal data lives (SQLite, PostgreSQL, MySQL, CSV lists, callback services); they
//!   forget or export a batch of devices. [`suppression`] answers whether a suppression list holds a device.
//! - [`results`] are what customers read: execution logs, rejection notices, export archives, written atomically.
//! - [`journal`] makes it durable and exactly-once: it owns the ledger, the audit trail and the state folder;
//!   [`audit`] hashes devices for it; [`deadline`] is the legal clock each request is given when it is claimed
//!   (received, due, extended once, open or overdue).
//! - [`daemon`] wires it all, reloads and owns shutdown; [`config`] assembles and loads the TOML it runs
//!   from (each component's section is typed and checked beside the component); [`retention`]
//!   deletes old results; [`status`] asks the journal for care engineers; [`metrics`] counts for Prometheus;
//!   [`demo`] lays out a self-contained demo installation.
//! - [`http`] is the other way in: batched erasure/access jobs and agent privacy requests over HTTP, turned into
//!   the same claimed files, so the engine, journal, audit and retention treat them exactly like dropped files;
//!   [`clock`] is the time it and retention read.
//! - Shared by the rooms: [`throttle`] (failed logins), [`backoff`] (every listener's wait after a failed accept)
//!   and [`credentials`] (passwords and tokens read from files or the environment).

#![warn(missing_docs)]

pub mod audit;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod deadline;
pub mod demo;
pub mod engine;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod requests;
pub mod results;
pub mod retention;
pub mod status;
pub mod stores;
pub mod suppression;
pub mod throttle;
pub mod transports;
