//! `[sftp_server]` and `[accounts.sftp]`: the embedded SFTP server's settings, read as written and checked into
//! typed values once, at load (the listen address, the timeouts, the connection rates), and how an account logs
//! in.

use crate::config::de;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[sftp_server]`: the embedded SFTP server.
#[derive(Debug, Clone, PartialEq)]
pub struct SftpServerConfig {
    /// Address and port to listen on (default `127.0.0.1:2222`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Most logged-in connections at once (default 64).
    pub max_connections: usize,
    /// Most connections at once from one source address (default 16).
    pub max_connections_per_address: usize,
    /// Most logged-in sessions per account (default 8).
    pub max_sessions_per_account: usize,
    /// The time a connection has to log in (`handshake_timeout_seconds`, default 20).
    pub handshake_timeout_seconds: Duration,
    /// The silence after which a session is closed (`idle_timeout_seconds`, default 300).
    pub idle_timeout_seconds: Duration,
    /// Largest SFTP packet a client may send, in bytes (default 262144).
    pub max_packet_bytes: u32,
    /// Largest upload, in bytes (default: `limits.max_file_bytes`).
    pub max_upload_bytes: Option<u64>,
    /// Failed logins from one address within `auth_window_seconds` that block it for the rest of the window
    /// (default 5).
    pub auth_failures: u32,
    /// The throttle window (`auth_window_seconds`, default 60).
    pub auth_window_seconds: Duration,
    /// The time open sessions get to finish at shutdown (`shutdown_grace_seconds`, default 10).
    pub shutdown_grace_seconds: Duration,
    /// Most connections at once that have not logged in yet, a pool apart from `max_connections` (default 16).
    /// When it is full, the oldest such connection of the busiest source address is dropped.
    pub max_unauthenticated_connections: usize,
    /// New connections one source address may start per second past the burst; more wait their turn (default 5).
    pub connections_per_second_per_address: u32,
    /// New connections one source address may start at once before the rate applies (default 12).
    pub connection_burst_per_address: u32,
    /// Most channels open at once on one connection (default 4).
    pub max_channels_per_connection: usize,
    /// Most open files and listings per account, over all its sessions (default 64).
    pub max_handles_per_account: usize,
    /// Most open files and listings over all accounts (default 512); lowered at start to fit the process's
    /// file-handle limit less `reserved_file_handles` and the connections.
    pub max_open_handles: usize,
    /// File handles kept for the daemon's own work: engine, stores, ledger, watcher, HTTP (default 256).
    pub reserved_file_handles: usize,
    /// Offer the encrypt-and-MAC MACs `hmac-sha2-256`/`-512` after the encrypt-then-MAC ones (default false),
    /// for clients built on libssh2 before 1.11 (curl and PHP on Debian 12 and Ubuntu 22.04).
    pub encrypt_and_mac: bool,
    /// Most files waiting in an account's `GDPR_Submit`, uploads in progress included (default 1000).
    pub max_waiting_files: u64,
    /// Most bytes waiting in an account's `GDPR_Submit`, uploads in progress included (default 256 MiB).
    pub max_waiting_bytes: u64,
}

impl Default for SftpServerConfig {
    fn default() -> Self {
        SftpServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2222)),
            max_connections: 64,
            max_connections_per_address: 16,
            max_sessions_per_account: 8,
            handshake_timeout_seconds: Duration::from_secs(20),
            idle_timeout_seconds: Duration::from_secs(300),
            max_packet_bytes: 256 * 1024,
            max_upload_bytes: None,
            auth_failures: 5,
            auth_window_seconds: Duration::from_secs(60),
            shutdown_grace_seconds: Duration::from_secs(10),
            max_unauthenticated_connections: 16,
            connections_per_second_per_address: 5,
            connection_burst_per_address: 12,
            max_channels_per_connection: 4,
            max_handles_per_account: 64,
            max_open_handles: 512,
            reserved_file_handles: 256,
            encrypt_and_mac: false,
            max_waiting_files: 1000,
            max_waiting_bytes: 256 * 1024 * 1024,
        }
    }
}

/// `[sftp_server]` as written; [`RawSftpServerConfig::validate`] makes the [`SftpServerConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawSftpServerConfig {
    listen: String,
    max_connections: usize,
    max_connections_per_address: usize,
    max_sessions_per_account: usize,
    #[serde(deserialize_with = "de::seconds")]
    handshake_timeout_seconds: Duration,
    #[serde(deserialize_with = "de::seconds")]
    idle_timeout_seconds: Duration,
    max_packet_bytes: u32,
    max_upload_bytes: Option<u64>,
    auth_failures: u32,
    #[serde(deserialize_with = "de::seconds")]
    auth_window_seconds: Duration,
    #[serde(deserialize_with = "de::seconds")]
    shutdown_grace_seconds: Duration,
    max_unauthenticated_connections: usize,
    connections_per_second_per_address: u32,
    connection_burst_per_address: u32,
    max_channels_per_connection: usize,
    max_handles_per_account: usize,
    max_open_handles: usize,
    reserved_file_handles: usize,
    encrypt_and_mac: bool,
    max_waiting_files: u64,
    max_waiting_bytes: u64,
}

impl Default for RawSftpServerConfig {
    fn default() -> Self {
        let d = SftpServerConfig::default();
        RawSftpServerConfig {
            listen: d.listen.to_string(),
            max_connections: d.max_connections,
            max_connections_per_address: d.max_connections_per_address,
            max_sessions_per_account: d.max_sessions_per_account,
            handshake_timeout_seconds: d.handshake_timeout_seconds,
            idle_timeout_seconds: d.idle_timeout_seconds,
            max_packet_bytes: d.max_packet_bytes,
            max_upload_bytes: d.max_upload_bytes,
            auth_failures: d.auth_failures,
            auth_window_seconds: d.auth_window_seconds,
            shutdown_grace_seconds: d.shutdown_grace_seconds,
            max_unauthenticated_connections: d.max_unauthenticated_connections,
            connections_per_second_per_address: d.connections_per_second_per_address,
            connection_burst_per_address: d.connection_burst_per_address,
            max_channels_per_connection: d.max_channels_per_connection,
            max_handles_per_account: d.max_handles_per_account,
            max_open_handles: d.max_open_handles,
            reserved_file_handles: d.reserved_file_handles,
            encrypt_and_mac: d.encrypt_and_mac,
            max_waiting_files: d.max_waiting_files,
            max_waiting_bytes: d.max_waiting_bytes,
        }
    }
}

/// Reads `[sftp_server]` as [`crate::config::Config::load`] does.
impl<'de> Deserialize<'de> for SftpServerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawSftpServerConfig::deserialize(d)?
            .validate()
            .map_err(serde::de::Error::custom)
    }
}

impl RawSftpServerConfig {
    /// Checks `[sftp_server]` and reads its address.
    ///
    /// # Errors
    /// [`SftpConfigError`] naming the key.
    pub(crate) fn validate(self) -> Result<SftpServerConfig, SftpConfigError> {
        let s = self;
        let Ok(listen) = s.listen.parse::<SocketAddr>() else {
            return Err(SftpConfigError::Listen { listen: s.listen });
        };
        if s.max_connections == 0
            || s.max_unauthenticated_connections == 0
            || s.connections_per_second_per_address == 0
            || s.connection_burst_per_address == 0
            || s.max_channels_per_connection == 0
            || s.max_handles_per_account == 0
            || s.max_open_handles == 0
        {
            return Err(SftpConfigError::ZeroLimit);
        }
        Ok(SftpServerConfig {
            listen,
            max_connections: s.max_connections,
            max_connections_per_address: s.max_connections_per_address,
            max_sessions_per_account: s.max_sessions_per_account,
            handshake_timeout_seconds: s.handshake_timeout_seconds,
            idle_timeout_seconds: s.idle_timeout_seconds,
            max_packet_bytes: s.max_packet_bytes,
            max_upload_bytes: s.max_upload_bytes,
            auth_failures: s.auth_failures,
            auth_window_seconds: s.auth_window_seconds,
            shutdown_grace_seconds: s.shutdown_grace_seconds,
            max_unauthenticated_connections: s.max_unauthenticated_connections,
            connections_per_second_per_address: s.connections_per_second_per_address,
            connection_burst_per_address: s.connection_burst_per_address,
            max_channels_per_connection: s.max_channels_per_connection,
            max_handles_per_account: s.max_handles_per_account,
            max_open_handles: s.max_open_handles,
            reserved_file_handles: s.reserved_file_handles,
            encrypt_and_mac: s.encrypt_and_mac,
            max_waiting_files: s.max_waiting_files,
            max_waiting_bytes: s.max_waiting_bytes,
        })
    }
}

/// `[accounts.sftp]`: how an `sftp-server` account logs in.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpAccountConfig {
    /// Public keys in `authorized_keys` format, inline.
    #[serde(default)]
    pub authorized_keys: Vec<String>,
    /// A file of public keys in `authorized_keys` format.
    #[serde(default)]
    pub authorized_keys_file: Option<PathBuf>,
    /// An argon2 hash (`gdprd hash-password` makes one) if password login is allowed.
    #[serde(default)]
    pub password_hash: Option<String>,
}

impl SftpAccountConfig {
    /// Makes `authorized_keys_file` absolute with `resolve`.
    pub(crate) fn resolve_paths(&mut self, resolve: impl Fn(&Path) -> PathBuf) {
        self.authorized_keys_file = self.authorized_keys_file.as_deref().map(resolve);
    }

    /// Checks that someone can log in to the account `account` with what is given and that it reads.
    ///
    /// # Errors
    /// [`SftpConfigError`] naming the account.
    pub(crate) fn validate(&self, account: &str) -> Result<(), SftpConfigError> {
        let account = account.to_owned();
        if self.authorized_keys.is_empty()
            && self.authorized_keys_file.is_none()
            && self.password_hash.is_none()
        {
            return Err(SftpConfigError::NoLogin { account });
        }
        if let Err(source) = super::auth::parse_authorized_keys(&self.authorized_keys.join("\n")) {
            return Err(SftpConfigError::AuthorizedKeys { account, source });
        }
        if let Some(hash) = &self.password_hash {
            if let Err(source) = argon2::PasswordHash::new(hash) {
                return Err(SftpConfigError::PasswordHash { account, source });
            }
        }
        Ok(())
    }
}

/// What is wrong with `[sftp_server]` or an account's `[accounts.sftp]`, found at load.
#[derive(Debug, thiserror::Error)]
pub enum SftpConfigError {
    /// `listen` is not an address and port.
    #[error("[sftp_server]: listen {listen:?} is not an address:port")]
    Listen {
        /// The value as written.
        listen: String,
    },
    /// A connection, channel or handle limit is zero.
    #[error("[sftp_server]: max_connections, max_unauthenticated_connections, connections_per_second_per_address, connection_burst_per_address, max_channels_per_connection, max_handles_per_account and max_open_handles must be positive")]
    ZeroLimit,
    /// No key and no password hash.
    #[error("account {account:?}: [accounts.sftp] names no key and no password hash: nobody could log in")]
    NoLogin {
        /// The account.
        account: String,
    },
    /// An `authorized_keys` line that is not a public key.
    #[error("account {account:?}: authorized_keys: {source}")]
    AuthorizedKeys {
        /// The account.
        account: String,
        /// The line and why.
        source: super::auth::KeyLineError,
    },
    /// A `password_hash` that is not an argon2 hash in PHC form.
    #[error("account {account:?}: password_hash is not an argon2 hash: {source}")]
    PasswordHash {
        /// The account.
        account: String,
        /// What the hash reader says.
        source: argon2::password_hash::Error,
    },
}
