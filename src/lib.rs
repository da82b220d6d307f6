//! gdprd carries out GDPR data-subject requests that arrive as files.
pub mod config;
pub mod requests;
pub mod stores;
