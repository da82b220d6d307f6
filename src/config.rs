//! Configuration: the TOML file an operator writes, parsed with unknown keys refused, validated without I/O, and
//! resolved (paths made absolute against the config file's folder) into a [`Config`].

use crate::requests::Limits;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("config {path}: {message}")]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// What the TOML reader says, with line and column.
        message: String,
    },
    /// Well-formed but inconsistent (an unknown store, a bad time zone, …).
    #[error("config {path}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
}

/// A loaded, validated configuration with absolute paths.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Folder for the ledger, the audit trail, claimed copies and the installation secret.
    pub state_dir: PathBuf,
    /// Logging.
    pub log: LogConfig,
    /// Caps on files and batches.
    pub limits: LimitsConfig,
    /// How files are picked up.
    pub intake: IntakeConfig,
    /// The embedded SFTP server, for accounts with `transport = "sftp-server"`.
    pub sftp_server: SftpServerConfig,
    /// The accounts, in file order.
    pub accounts: Vec<AccountConfig>,
    /// The stores, by name.
    pub stores: BTreeMap<String, StoreConfig>,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Seconds a stop (SIGTERM) may take to reach a journal checkpoint before gdprd exits anyway.
    pub stop_deadline_seconds: u64,
    /// The HTTP front doors (erasure/access jobs and agent privacy requests), off unless `listen` is set.
    pub http: HttpConfig,
}

/// `[http]`: the HTTP front doors. Off unless `listen` is set; each account opts in with `[accounts.http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `address:port` to listen on. gdprd speaks plain HTTP: a non-loopback address needs
    /// `plain_http_on_network = true` (with TLS terminated by a proxy in front).
    pub listen: Option<String>,
    /// Allows a non-loopback `listen`; set it only behind a TLS-terminating proxy.
    pub plain_http_on_network: bool,
    /// The URL clients reach gdprd at (`https://gdpr.example.com`), used in `Location` headers; default: the
    /// request's `Host` header over `http://`.
    pub public_url: Option<String>,
    /// Largest request body, in bytes (default 2 MiB).
    pub max_body_bytes: usize,
    /// Most identifier lines in one job (default 10000).
    pub max_lines: usize,
    /// Jobs and agent requests one account may submit per minute (default 60).
    pub submit_per_minute: u32,
    /// Status, response and archive reads one account may make per second, with bursts of ten times that
    /// (default 100).
    pub reads_per_second: u32,
    /// Failed authentications from one address within `auth_window_seconds` that block it for the rest of the
    /// window (default 10).
    pub auth_failures: u32,
    /// The throttle window in seconds (default 60).
    pub auth_window_seconds: u64,
    /// Seconds a client has to send a request's headers, and that an idle keep-alive connection is kept
    /// (default 10).
    pub header_timeout_seconds: u64,
    /// Seconds a client has to send a request's whole body once its headers are in (default 30).
    pub body_timeout_seconds: u64,
    /// Open connections in all (default 128); more are answered `503` and closed at once.
    pub max_connections: usize,
    /// Open connections from one client address (default 16); a trusted proxy's own address is not capped.
    pub max_connections_per_address: usize,
    /// Proxies whose `X-Forwarded-For` gdprd believes, as addresses or networks (`["127.0.0.1", "10.0.0.0/8"]`);
    /// default none. The failed-login throttle and the logs then see the client behind the proxy.
    pub trusted_proxies: Vec<String>,
}

/// An address (`10.0.0.7`) or network (`10.0.0.0/8`) of `[http] trusted_proxies`.
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: None,
            plain_http_on_network: false,
            public_url: None,
            max_body_bytes: 2 * 1024 * 1024,
            max_lines: 10_000,
            submit_per_minute: 60,
            reads_per_second: 100,
            auth_failures: 10,
            auth_window_seconds: 60,
            header_timeout_seconds: 10,
            body_timeout_seconds: 30,
            max_connections: 128,
            max_connections_per_address: 16,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[accounts.http]`: an account's HTTP front doors and the bearer token that opens them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAccountConfig {
    /// `sha256:<hex>` of the account's bearer token (`gdprd http-token` makes a token and this line).
    pub token_hash: String,
    /// Serves `POST /accounts/NAME/gdpr_erasure` and `/gdpr_access` (default true).
    #[serde(default = "yes")]
    pub jobs: bool,
    /// Serves `POST /lcm`, the agent privacy requests (default true).
    #[serde(default = "yes")]
    pub lcm: bool,
    /// Lookup-key names of job bodies and the device type each holds (`phone`, `email`, `ipaddr`), matched
    /// without regard to case. Default: `EMAIL` → email, `MobileNumber` and `PhoneNumber` → phone,
    /// `IPAddress` → ipaddr.
    #[serde(default = "default_lookup_keys")]
    pub lookup_keys: BTreeMap<String, String>,
    /// Country code for phone numbers that arrive without `+` and without it (`0`-prefixed national numbers,
    /// or fewer digits); empty (default) reads every `+`-less number as already international.
    #[serde(default)]
    pub default_country_code: String,
}

fn default_lookup_keys() -> BTreeMap<String, String> {
    [
        ("EMAIL", "email"),
        ("MobileNumber", "phone"),
        ("PhoneNumber", "phone"),
        ("IPAddress", "ipaddr"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// `[metrics]`: the Prometheus endpoint, off unless `listen` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A loopback `address:port` (`127.0.0.1:9464`) where `GET /metrics` is served.
    #[serde(default)]
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: PathBuf,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    intake: IntakeConfig,
    #[serde(default)]
    sftp_server: SftpServerConfig,
    #[serde(default)]
    accounts: Vec<AccountConfig>,
    #[serde(default)]
    stores: BTreeMap<String, StoreConfig>,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default = "default_stop_deadline")]
    stop_deadline_seconds: u64,
    #[serde(default)]
    http: HttpConfig,
}

fn default_stop_deadline() -> u64 {
    60
}

/// `[log]`: how the daemon logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `gdprd=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[limits]`: caps on what a file may hold and how much work is done between journal checkpoints.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest submission accepted, in bytes (default 10 MiB).
    pub max_file_bytes: u64,
    /// Most contacts in one file (default 10,000).
    pub max_contacts: usize,
    /// Deepest JSON nesting accepted (default 16).
    pub max_depth: usize,
    /// Devices executed together, then journaled, in a forget (default 500).
    pub batch_size: usize,
    /// How many days ahead a file's name may be dated (default 31); a file dated later is rejected.
    pub max_future_days: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        LimitsConfig {
            max_file_bytes: l.max_file_bytes,
            max_contacts: l.max_contacts,
            max_depth: l.max_depth,
            batch_size: 500,
            max_future_days: crate::requests::DEFAULT_MAX_FUTURE_DAYS,
        }
    }
}

impl LimitsConfig {
    /// The parser's limits.
    pub fn request_limits(&self) -> Limits {
        Limits {
            max_file_bytes: self.max_file_bytes,
            max_contacts: self.max_contacts,
            max_depth: self.max_depth,
        }
    }
}

/// `[intake]`: how files are noticed.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Seconds between full rescans of every `GDPR_Submit` (default 30).
    pub rescan_seconds: u64,
    /// A file found by a rescan (not by a close-after-write event) is taken only when unchanged for this many
    /// seconds (default 2).
    pub settle_seconds: u64,
    /// A file whose JSON ends before it is complete is an upload still being written while it was modified less
    /// than this many seconds ago: it waits, and its name is not used up. Left unchanged longer, it is refused
    /// (default 600).
    pub upload_timeout_seconds: u64,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            rescan_seconds: 30,
            settle_seconds: 2,
            upload_timeout_seconds: 600,
        }
    }
}

/// `[sftp_server]`: the embedded SFTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftpServerConfig {
    /// Address and port to listen on (default `127.0.0.1:2222`; port 0 picks a free one).
    pub listen: String,
    /// Most logged-in connections at once (default 64).
    pub max_connections: usize,
    /// Most connections at once from one source address (default 16).
    pub max_connections_per_address: usize,
    /// Most logged-in sessions per account (default 8).
    pub max_sessions_per_account: usize,
    /// Seconds a connection has to log in (default 20).
    pub handshake_timeout_seconds: u64,
    /// Seconds of silence after which a session is closed (default 300).
    pub idle_timeout_seconds: u64,
    /// Largest SFTP packet a client may send, in bytes (default 262144).
    pub max_packet_bytes: u32,
    /// Largest upload, in bytes (default: `limits.max_file_bytes`).
    pub max_upload_bytes: Option<u64>,
    /// Failed logins from one address within `auth_window_seconds` that block it for the rest of the window
    /// (default 5).
    pub auth_failures: u32,
    /// The throttle window in seconds (default 60).
    pub auth_window_seconds: u64,
    /// Seconds open sessions get to finish at shutdown (default 10).
    pub shutdown_grace_seconds: u64,
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
            listen: "127.0.0.1:2222".into(),
            max_connections: 64,
            max_connections_per_address: 16,
            max_sessions_per_account: 8,
            handshake_timeout_seconds: 20,
            idle_timeout_seconds: 300,
            max_packet_bytes: 256 * 1024,
            max_upload_bytes: None,
            auth_failures: 5,
            auth_window_seconds: 60,
            shutdown_grace_seconds: 10,
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

/// `[accounts.sftp]`: how an `sftp-server` account logs in.
#[derive(Debug, Clone, Default, Deserialize)]
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

/// `[[accounts]]`: one customer's drop box.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Unique name: letters, digits, `-`, `_`.
    pub name: String,
    /// Folder holding `GDPR_Submit` and `GDPR_Result`.
    pub root: PathBuf,
    /// IANA time zone deciding what "today" is (default `UTC`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// How files arrive (default `local`).
    #[serde(default)]
    pub transport: Transport,
    /// Names of the stores requests run against, in order.
    pub stores: Vec<String>,
    /// Days results are kept in `GDPR_Result` (default 3).
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// Login for the embedded SFTP server (`transport = "sftp-server"`); the login name is the account name.
    #[serde(default)]
    pub sftp: Option<SftpAccountConfig>,
    /// The server an `sftp-remote` account's folders live on.
    #[serde(default)]
    pub remote: Option<RemoteConfig>,
    /// The account's HTTP front doors; absent means none.
    #[serde(default)]
    pub http: Option<HttpAccountConfig>,
}

fn default_timezone() -> String {
    "UTC".into()
}

/// Days results are kept when an account does not say.
pub(crate) fn default_retention() -> u32 {
    3
}

impl AccountConfig {
    /// `ROOT/GDPR_Submit`.
    pub fn submit_dir(&self) -> PathBuf {
        self.root.join("GDPR_Submit")
    }
    /// `ROOT/GDPR_Result`.
    pub fn result_dir(&self) -> PathBuf {
        self.root.join("GDPR_Result")
    }
    /// The account's time zone (validated at load).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
    }
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

/// `[accounts.remote]`: the SFTP server an `sftp-remote` account's folders live on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Host name or address.
    pub host: String,
    /// Port (default 22).
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Login name.
    pub user: String,
    /// Private key file (OpenSSH format, unencrypted).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// File holding the password (its first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The folder on the server holding `GDPR_Submit` and `GDPR_Result` (default: the login folder).
    #[serde(default = "default_remote_path")]
    pub path: String,
    /// An OpenSSH `known_hosts` file naming the server's key.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// The server key's SHA-256 fingerprint, as `ssh-keygen -lf` prints it (`SHA256:…`).
    #[serde(default)]
    pub host_key_fingerprint: Option<String>,
    /// Seconds between two listings of `GDPR_Submit` (default 30). A file is taken once its size and time are
    /// the same in two listings.
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    /// Seconds to wait for the connection and login (default 20).
    #[serde(default = "default_remote_timeout")]
    pub timeout_seconds: u64,
}

fn default_ssh_port() -> u16 {
    22
}

fn default_remote_path() -> String {
    ".".into()
}

fn default_poll() -> u64 {
    30
}

fn default_remote_timeout() -> u64 {
    20
}

/// `[stores.NAME]`: one place where personal data lives, selected by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StoreConfig {
    /// A SQLite database file.
    Sqlite(SqliteConfig),
    /// A PostgreSQL database.
    Postgres(SqlConfig),
    /// A MySQL or MariaDB database.
    Mysql(SqlConfig),
    /// A folder of CSV contact lists.
    Csv(CsvConfig),
    /// A callback service reached over its REST API.
    #[serde(rename = "callback-http")]
    CallbackHttp(CallbackHttpConfig),
}

/// A `type = "callback-http"` store: a callback service's REST API (see [`crate::stores::callback_http`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackHttpConfig {
    /// The API's base URL, `https://callbacks.example.com/api/v1`.
    pub base_url: String,
    /// File holding the bearer token (its first line).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Seconds one call may take (default 10).
    #[serde(default = "default_connect_timeout")]
    pub timeout_seconds: u64,
    /// Retries of a call that failed on the network, `429` or `5xx` (default 3, at most
    /// [`crate::stores::callback_http::MAX_RETRIES`]).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The first retry's delay in milliseconds, doubled for each next one up to 10 s (default 200, at most
    /// [`crate::stores::callback_http::MAX_FIRST_DELAY_MS`]).
    #[serde(default = "default_retry_delay")]
    pub retry_delay_ms: u64,
    /// Customer numbers asked in one listing call (default 50).
    #[serde(default = "default_numbers_per_request")]
    pub numbers_per_request: usize,
    /// The callback field holding the account id that a request's `accountid` must equal.
    #[serde(default)]
    pub account_field: Option<String>,
    /// How the service's customer numbers are read.
    #[serde(default)]
    pub phones: PhoneConfig,
}

fn default_retries() -> u32 {
    3
}

fn default_retry_delay() -> u64 {
    200
}

fn default_numbers_per_request() -> usize {
    50
}

/// A `type = "csv"` store: contact-list files in a folder, each mapped like a table by a file-name pattern.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// The folder holding the lists.
    pub folder: PathBuf,
    /// The field delimiter, one ASCII character (default `,`).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// How stored phone numbers are read.
    #[serde(default)]
    pub phones: PhoneConfig,
    /// One mapping per kind of list: `name` is a file-name pattern (`contacts-*.csv`, with `*` and `?`) and
    /// columns are header names.
    pub files: Vec<TableMapping>,
}

fn default_delimiter() -> char {
    ','
}

impl StoreConfig {
    /// The tables the store maps.
    pub fn tables(&self) -> &[TableMapping] {
        match self {
            StoreConfig::Sqlite(s) => &s.tables,
            StoreConfig::Postgres(s) | StoreConfig::Mysql(s) => &s.tables,
            StoreConfig::Csv(c) => &c.files,
            StoreConfig::CallbackHttp(_) => &[],
        }
    }

    /// How the store's phone numbers are written.
    pub fn phones(&self) -> &PhoneConfig {
        match self {
            StoreConfig::Sqlite(s) => &s.phones,
            StoreConfig::Postgres(s) | StoreConfig::Mysql(s) => &s.phones,
            StoreConfig::Csv(c) => &c.phones,
            StoreConfig::CallbackHttp(c) => &c.phones,
        }
    }
}

/// A `type = "postgres"` or `type = "mysql"` store: a database server reached over the network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// Connection URL, `postgres://user@host:5432/db` or `mysql://user@host:3306/db`. Put the password in
    /// `password_file` or `password_env` rather than here; it is never logged either way.
    pub url: String,
    /// File holding the password (its first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// PostgreSQL schema the tables live in (`search_path`); default: the server's default.
    #[serde(default)]
    pub schema: Option<String>,
    /// Transport encryption: `disable`, `prefer`, `require` (encrypted, certificate not checked) or
    /// `verify-full` (certificate checked against the system roots or `ca_file`, and the host name).
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of the certificate authority for `verify-full`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds to wait for a connection (default 10).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u64,
    /// Seconds a statement, or a wait for a row lock, may take before it is cancelled (default 300).
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_seconds: u64,
    /// How stored phone numbers are read.
    #[serde(default)]
    pub phones: PhoneConfig,
    /// Folder that recording paths in `file` columns are relative to; files outside it are never touched.
    #[serde(default)]
    pub files_root: Option<PathBuf>,
    /// Shortcodes shared between customers: their SMS rows are never exported.
    #[serde(default)]
    pub shared_shortcodes: Vec<String>,
    /// Whether a forget file ends by rewriting the tables it changed (PostgreSQL `VACUUM FULL`, MySQL
    /// `OPTIMIZE TABLE`), so dead row versions holding forgotten values are not kept until autovacuum or purge
    /// reaches them (default false). See docs/operations.md for what stays in WAL, binlog, replicas and backups.
    #[serde(default)]
    pub vacuum_after_forget: bool,
    /// The tables holding personal data.
    pub tables: Vec<TableMapping>,
}

fn default_connect_timeout() -> u64 {
    10
}

fn default_statement_timeout() -> u64 {
    300
}

/// How a database connection is encrypted.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain otherwise (PostgreSQL only; MySQL treats it as `require`).
    #[default]
    Prefer,
    /// TLS, without checking the server's certificate.
    Require,
    /// TLS, with the certificate checked against the trusted roots and the host name.
    VerifyFull,
}

/// A `type = "sqlite"` store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file.
    pub path: PathBuf,
    /// How stored phone numbers are read.
    #[serde(default)]
    pub phones: PhoneConfig,
    /// Folder that recording paths in `file` columns are relative to; files outside it are never touched.
    #[serde(default)]
    pub files_root: Option<PathBuf>,
    /// Shortcodes shared between customers: their SMS rows are never exported.
    #[serde(default)]
    pub shared_shortcodes: Vec<String>,
    /// Seconds to wait for a lock held by another writer (default 10).
    #[serde(default = "default_busy")]
    pub busy_timeout_seconds: u64,
    /// Whether a forget file that changed rows ends by rebuilding the database file (`VACUUM`, then a WAL
    /// checkpoint) so no copy of a forgotten value stays in free pages or unused page space, whoever left it there
    /// (default true).
    #[serde(default = "yes")]
    pub vacuum_after_forget: bool,
    /// The tables holding personal data.
    pub tables: Vec<TableMapping>,
}

fn default_busy() -> u64 {
    10
}

/// How a store's phone numbers are written, to read numbers without a country code.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PhoneConfig {
    /// Country code added to numbers written without one, digits only (`1`, `44`); empty for none.
    pub default_country_code: String,
    /// National trunk prefix dropped before the country code is added (`0` in the UK); empty for none.
    pub trunk_prefix: String,
    /// International call prefix that stands for `+` (`00`, `011`); empty for none.
    pub international_prefix: String,
}

impl Default for PhoneConfig {
    fn default() -> Self {
        PhoneConfig {
            default_country_code: String::new(),
            trunk_prefix: String::new(),
            international_prefix: "00".into(),
        }
    }
}

/// `[[stores.NAME.tables]]`: where a table keeps personal data and what forget does to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMapping {
    /// Table name.
    pub name: String,
    /// Columns holding phone numbers.
    #[serde(default)]
    pub phone: Vec<String>,
    /// Columns holding email addresses.
    #[serde(default)]
    pub email: Vec<String>,
    /// Columns holding IP addresses.
    #[serde(default)]
    pub ipaddr: Vec<String>,
    /// Other personal columns, redacted by an anonymising forget.
    #[serde(default)]
    pub personal: Vec<String>,
    /// Column holding the account id that a request's `accountid` must equal.
    #[serde(default)]
    pub account: Option<String>,
    /// Column holding an SMS shortcode: such a table is searched only for the request's shortcodes.
    #[serde(default)]
    pub shortcode: Option<String>,
    /// Column holding a callback state: in-flight callbacks are cancelled (committed) before the forget.
    #[serde(default)]
    pub state: Option<String>,
    /// Column holding the path of a file (a call recording) deleted by forget and never exported.
    #[serde(default)]
    pub file: Option<String>,
    /// What forget does: `anonymise` (default) or `delete`.
    #[serde(default)]
    pub forget: ForgetMode,
    /// Whether export includes this table (default true).
    #[serde(default = "yes")]
    pub export: bool,
    /// Column marking soft-deleted rows (a deletion time or flag). Such rows are forgotten and exported like any
    /// other: gdprd never filters on it; naming it documents the mapping and `check-config` checks it exists.
    #[serde(default)]
    pub soft_delete: Option<String>,
    /// A suppression list (addresses that must never be contacted again): a forget keeps the row and writes the
    /// device's keyed hash over the device, so `gdprd suppressed` can still answer for it.
    #[serde(default)]
    pub suppression: bool,
    /// Device or personal columns that an anonymising forget masks in place (`johndoe@zyxwv.com` →
    /// `jxxnxxe@xxxwv.com`) instead of replacing, for reports that need the shape.
    #[serde(default)]
    pub pseudonymise: Vec<String>,
    /// The device or personal columns a pseudonymisation request masks in every matching row; absent means all
    /// of them. Nothing else changes: rows are not deleted, callbacks keep their state, recordings stay.
    #[serde(default)]
    pub mask: Option<Vec<String>>,
    /// For `postgres` and `mysql` stores: device columns whose normalised form is kept in another, indexed,
    /// column (`{ phone = "phone_digits" }`): the digits of a phone, the lowercased trimmed email, the IP address
    /// as stored. Matching then compares that column instead of an expression over the device column.
    #[serde(default)]
    pub normalised: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// What a forget does to a matching row.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForgetMode {
    /// Device columns get random placeholders, personal columns are redacted.
    #[default]
    Anonymise,
    /// The row is deleted.
    Delete,
}

impl TableMapping {
    /// Every device column with its kind, in mapping order.
    pub fn device_columns(&self) -> Vec<(crate::requests::DeviceKind, &str)> {
        use crate::requests::DeviceKind;
        let phone = self.phone.iter().map(|c| (DeviceKind::Phone, c.as_str()));
        let email = self.email.iter().map(|c| (DeviceKind::Email, c.as_str()));
        let ipaddr = self.ipaddr.iter().map(|c| (DeviceKind::Ipaddr, c.as_str()));
        phone.chain(email).chain(ipaddr).collect()
    }

    /// The columns a pseudonymisation request masks: [`TableMapping::mask`], or every device and personal column.
    /// Suppression lists are never masked (that would let the person be contacted again).
    pub fn mask_columns(&self) -> Vec<&str> {
        if self.suppression {
            return Vec::new();
        }
        match &self.mask {
            Some(cols) => cols.iter().map(String::as_str).collect(),
            None => {
                let devices = self.device_columns().into_iter().map(|(_, c)| c);
                devices
                    .chain(self.personal.iter().map(String::as_str))
                    .collect()
            }
        }
    }

    /// Every column the mapping names (devices, personal, account, shortcode, state, file, soft delete).
    pub fn columns(&self) -> impl Iterator<Item = &String> {
        self.phone
            .iter()
            .chain(&self.email)
            .chain(&self.ipaddr)
            .chain(&self.personal)
            .chain(&self.account)
            .chain(&self.shortcode)
            .chain(&self.state)
            .chain(&self.file)
            .chain(&self.soft_delete)
    }
}

impl Config {
    /// Reads, validates and resolves a config file.
    ///
    /// # Errors
    /// [`ConfigError`] saying what is wrong and where.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates config text as if read from `path` (relative paths resolve against its folder).
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] or [`ConfigError::Invalid`].
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        validate(&raw).map_err(invalid)?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let base = std::path::absolute(&base).unwrap_or(base);
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let mut config = Config {
            path: path.to_owned(),
            state_dir: resolve(&raw.state_dir),
            log: raw.log,
            limits: raw.limits,
            intake: raw.intake,
            sftp_server: raw.sftp_server,
            accounts: raw.accounts,
            stores: raw.stores,
            metrics: raw.metrics,
            stop_deadline_seconds: raw.stop_deadline_seconds,
            http: raw.http,
        };
        for account in &mut config.accounts {
            account.root = resolve(&account.root);
            if let Some(r) = account.remote.as_mut() {
                r.key_file = r.key_file.as_deref().map(resolve);
                r.password_file = r.password_file.as_deref().map(resolve);
                r.known_hosts = r.known_hosts.as_deref().map(resolve);
            }
            if let Some(file) = account
                .sftp
                .as_mut()
                .and_then(|s| s.authorized_keys_file.as_mut())
            {
                *file = resolve(file);
            }
        }
        for store in config.stores.values_mut() {
            match store {
                StoreConfig::Sqlite(s) => {
                    s.path = resolve(&s.path);
                    s.files_root = s.files_root.as_deref().map(resolve);
                }
                StoreConfig::Csv(c) => c.folder = resolve(&c.folder),
                StoreConfig::CallbackHttp(c) => c.token_file = c.token_file.as_deref().map(resolve),
                StoreConfig::Postgres(s) | StoreConfig::Mysql(s) => {
                    s.files_root = s.files_root.as_deref().map(resolve);
                    s.password_file = s.password_file.as_deref().map(resolve);
                    s.ca_file = s.ca_file.as_deref().map(resolve);
                }
            }
        }
        Ok(config)
    }

    /// The account called `name`.
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A SQL identifier we accept unquoted in a mapping: letters, digits and `_`, not starting with a digit.
fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn validate(raw: &RawConfig) -> Result<(), String> {
    if let Some(listen) = &raw.metrics.listen {
        let addr: std::net::SocketAddr = listen
            .parse()
            .map_err(|_| format!("metrics.listen {listen:?} is not an address:port"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "metrics.listen {listen:?}: the endpoint has no authentication, so it listens on loopback only (127.0.0.1 or [::1]); put a proxy in front to reach it from elsewhere"
            ));
        }
    }
    validate_http(raw)?;
    let l = &raw.limits;
    // A valid file nests 5 levels: the object, requests, a request, contacts, a contact.
    if l.max_file_bytes == 0 || l.max_contacts == 0 || l.max_depth < 5 || l.batch_size == 0 {
        return Err("[limits]: max_file_bytes, max_contacts and batch_size must be positive, max_depth at least 5".into());
    }
    if raw
        .sftp_server
        .listen
        .parse::<std::net::SocketAddr>()
        .is_err()
    {
        return Err(format!(
            "[sftp_server]: listen {:?} is not an address:port",
            raw.sftp_server.listen
        ));
    }
    let sftp = &raw.sftp_server;
    if sftp.max_connections == 0
        || sftp.max_unauthenticated_connections == 0
        || sftp.connections_per_second_per_address == 0
        || sftp.connection_burst_per_address == 0
        || sftp.max_channels_per_connection == 0
        || sftp.max_handles_per_account == 0
        || sftp.max_open_handles == 0
    {
        return Err("[sftp_server]: max_connections, max_unauthenticated_connections, connections_per_second_per_address, connection_burst_per_address, max_channels_per_connection, max_handles_per_account and max_open_handles must be positive".into());
    }
    if raw.intake.rescan_seconds == 0 {
        return Err("[intake]: rescan_seconds must be positive".into());
    }
    let mut names = HashSet::new();
    for a in &raw.accounts {
        if !is_name(&a.name) {
            return Err(format!(
                "account {:?}: name must be 1-64 letters, digits, '-' or '_'",
                a.name
            ));
        }
        if !names.insert(&a.name) {
            return Err(format!("account {:?} is defined twice", a.name));
        }
        if a.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(format!(
                "account {:?}: unknown time zone {:?} (use an IANA name such as \"Europe/Paris\")",
                a.name, a.timezone
            ));
        }
        if a.transport == Transport::SftpServer {
            validate_sftp_account(a)?;
        }
        validate_remote_account(a)?;
        if a.stores.is_empty() {
            return Err(format!(
                "account {:?}: stores is empty: name at least one store",
                a.name
            ));
        }
        for s in &a.stores {
            if !raw.stores.contains_key(s) {
                return Err(format!("account {:?}: unknown store {s:?}", a.name));
            }
        }
    }
    for (name, store) in &raw.stores {
        if !is_name(name) {
            return Err(format!(
                "store {name:?}: name must be 1-64 letters, digits, '-' or '_'"
            ));
        }
        let names = match store {
            StoreConfig::Csv(_) => Names::FilePatterns,
            _ => Names::Identifiers,
        };
        if let StoreConfig::CallbackHttp(c) = store {
            let scheme = c.base_url.starts_with("http://") || c.base_url.starts_with("https://");
            if !scheme {
                return Err(format!(
                    "store {name:?}: base_url must start with http:// or https://"
                ));
            }
            if c.token_file.is_some() && c.token_env.is_some() {
                return Err(format!(
                    "store {name:?}: set token_file or token_env, not both"
                ));
            }
            if c.timeout_seconds == 0 {
                return Err(format!("store {name:?}: timeout_seconds must be positive"));
            }
            use crate::stores::callback_http::{MAX_FIRST_DELAY_MS, MAX_RETRIES};
            if c.retries > MAX_RETRIES {
                return Err(format!(
                    "store {name:?}: retries is {}, at most {MAX_RETRIES} (the waits double up to 10 s each)",
                    c.retries
                ));
            }
            if c.retry_delay_ms > MAX_FIRST_DELAY_MS {
                return Err(format!(
                    "store {name:?}: retry_delay_ms is {}, at most {MAX_FIRST_DELAY_MS}",
                    c.retry_delay_ms
                ));
            }
            continue;
        }
        validate_tables(name, store.tables(), store.phones(), names)?;
        match store {
            StoreConfig::CallbackHttp(_) => {}
            StoreConfig::Csv(c) => validate_csv(name, c)?,
            StoreConfig::Sqlite(s) => {
                if let Some(t) = s.tables.iter().find(|t| !t.normalised.is_empty()) {
                    return Err(format!(
                        "store {name:?}, table {:?}: normalised columns are for postgres and mysql stores; a sqlite store matches by scanning",
                        t.name
                    ));
                }
            }
            StoreConfig::Postgres(s) | StoreConfig::Mysql(s) => validate_sql(name, store, s)?,
        }
    }
    Ok(())
}

fn validate_http(raw: &RawConfig) -> Result<(), String> {
    let h = &raw.http;
    if let Some(listen) = &h.listen {
        let addr: std::net::SocketAddr = listen
            .parse()
            .map_err(|_| format!("[http]: listen {listen:?} is not an address:port"))?;
        if !addr.ip().is_loopback() && !h.plain_http_on_network {
            return Err(format!(
                "[http]: listen {listen:?}: gdprd speaks plain HTTP and bearer tokens would cross the network in clear; listen on loopback behind a TLS-terminating proxy, or set plain_http_on_network = true if the proxy is on another host"
            ));
        }
    }
    if let Some(url) = &h.public_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "[http]: public_url {url:?} must start with http:// or https://"
            ));
        }
    }
    if h.max_body_bytes == 0
        || h.max_lines == 0
        || h.submit_per_minute == 0
        || h.reads_per_second == 0
        || h.auth_failures == 0
    {
        return Err("[http]: max_body_bytes, max_lines, submit_per_minute, reads_per_second and auth_failures must be positive".into());
    }
    if h.header_timeout_seconds == 0
        || h.body_timeout_seconds == 0
        || h.max_connections == 0
        || h.max_connections_per_address == 0
    {
        return Err("[http]: header_timeout_seconds, body_timeout_seconds, max_connections and max_connections_per_address must be positive".into());
    }
    if h.max_connections_per_address > h.max_connections {
        return Err(format!(
            "[http]: max_connections_per_address ({}) is more than max_connections ({})",
            h.max_connections_per_address, h.max_connections
        ));
    }
    for proxy in &h.trusted_proxies {
        if parse_network(proxy).is_none() {
            return Err(format!(
                "[http]: trusted_proxies: {proxy:?} is not an address (10.0.0.7) or a network (10.0.0.0/8)"
            ));
        }
    }
    if h.max_lines > raw.limits.max_contacts {
        return Err(format!(
            "[http]: max_lines ({}) is more than [limits] max_contacts ({}): a job that size would be refused whole",
            h.max_lines, raw.limits.max_contacts
        ));
    }
    let mut hashes = HashSet::new();
    for a in &raw.accounts {
        let Some(http) = &a.http else { continue };
        let at = format!("account {:?}, [accounts.http]", a.name);
        let hex = http.token_hash.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{at}: token_hash must be \"sha256:\" and 64 hex digits (`gdprd http-token` makes a token and its hash)"
            ));
        }
        if !hashes.insert(hex.to_ascii_lowercase()) {
            return Err(format!(
                "{at}: the same token opens another account; give every account its own"
            ));
        }
        if a.transport == Transport::SftpRemote {
            return Err(format!(
                "{at}: an sftp-remote account's results leave for the remote server, so HTTP jobs could not answer; use a local or sftp-server account"
            ));
        }
        let mut seen = HashSet::new();
        for (key, kind) in &http.lookup_keys {
            if crate::requests::DeviceKind::from_key(kind).is_none() {
                return Err(format!(
                    "{at}: lookup key {key:?} maps to {kind:?}; use phone, email or ipaddr"
                ));
            }
            if key.trim().is_empty() || !seen.insert(key.to_lowercase()) {
                return Err(format!(
                    "{at}: lookup key {key:?} is empty or given twice (keys match without regard to case)"
                ));
            }
        }
        let cc = &http.default_country_code;
        if cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) || cc.starts_with('0') {
            return Err(format!(
                "{at}: default_country_code must be 1-3 digits (no + or leading 0) or empty"
            ));
        }
    }
    Ok(())
}

fn validate_remote_account(a: &AccountConfig) -> Result<(), String> {
    let at = format!("account {:?}", a.name);
    let Some(r) = &a.remote else {
        return match a.transport {
            Transport::SftpRemote => Err(format!(
                "{at}: transport \"sftp-remote\" needs [accounts.remote] with host, user and a key or password"
            )),
            _ => Ok(()),
        };
    };
    if a.transport != Transport::SftpRemote {
        return Err(format!(
            "{at}: [accounts.remote] is for transport = \"sftp-remote\""
        ));
    }
    if r.key_file.is_none() && r.password_file.is_none() && r.password_env.is_none() {
        return Err(format!(
            "{at}: [accounts.remote] needs key_file, password_file or password_env"
        ));
    }
    if r.known_hosts.is_none() && r.host_key_fingerprint.is_none() {
        return Err(format!(
            "{at}: [accounts.remote] needs known_hosts or host_key_fingerprint: gdprd never logs in to a server it cannot recognise"
        ));
    }
    if let Some(fp) = &r.host_key_fingerprint {
        if !fp.starts_with("SHA256:") {
            return Err(format!(
                "{at}: host_key_fingerprint is SHA256:… as ssh-keygen -lf prints it"
            ));
        }
    }
    if r.poll_seconds == 0 || r.timeout_seconds == 0 {
        return Err(format!(
            "{at}: poll_seconds and timeout_seconds must be positive"
        ));
    }
    if r.host.is_empty() || r.user.is_empty() {
        return Err(format!("{at}: host and user must not be empty"));
    }
    Ok(())
}

fn validate_sftp_account(a: &AccountConfig) -> Result<(), String> {
    let at = format!("account {:?}", a.name);
    let Some(sftp) = &a.sftp else {
        return Err(format!(
            "{at}: transport \"sftp-server\" needs [accounts.sftp] with keys or a password hash"
        ));
    };
    if sftp.authorized_keys.is_empty()
        && sftp.authorized_keys_file.is_none()
        && sftp.password_hash.is_none()
    {
        return Err(format!(
            "{at}: [accounts.sftp] names no key and no password hash: nobody could log in"
        ));
    }
    crate::transports::sftp_server::auth::parse_authorized_keys(&sftp.authorized_keys.join("\n"))
        .map_err(|e| format!("{at}: authorized_keys: {e}"))?;
    if let Some(hash) = &sftp.password_hash {
        argon2::PasswordHash::new(hash)
            .map_err(|e| format!("{at}: password_hash is not an argon2 hash: {e}"))?;
    }
    Ok(())
}

fn validate_sql(name: &str, store: &StoreConfig, s: &SqlConfig) -> Result<(), String> {
    let at = format!("store {name:?}");
    let scheme = match store {
        StoreConfig::Mysql(_) => "mysql://",
        _ => "postgres",
    };
    if !s.url.starts_with(scheme) {
        return Err(format!("{at}: url must start with {scheme}"));
    }
    if s.password_file.is_some() && s.password_env.is_some() {
        return Err(format!("{at}: set password_file or password_env, not both"));
    }
    if s.schema.is_some() && matches!(store, StoreConfig::Mysql(_)) {
        return Err(format!(
            "{at}: schema is for postgres; name the database in the url"
        ));
    }
    if let Some(schema) = &s.schema {
        if !is_identifier(schema) {
            return Err(format!("{at}: schema must be letters, digits and '_'"));
        }
    }
    if s.statement_timeout_seconds == 0 || s.connect_timeout_seconds == 0 {
        return Err(format!("{at}: timeouts must be positive"));
    }
    for t in &s.tables {
        let devices: Vec<&str> = t.device_columns().into_iter().map(|(_, c)| c).collect();
        for (device, column) in &t.normalised {
            if !devices.contains(&device.as_str()) {
                return Err(format!(
                    "{at}, table {:?}: normalised names {device:?}, which is not a mapped device column",
                    t.name
                ));
            }
            if !is_identifier(column) {
                return Err(format!(
                    "{at}, table {:?}: column names must be letters, digits and '_'",
                    t.name
                ));
            }
        }
    }
    Ok(())
}

/// How a store names its tables and columns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Names {
    /// SQL identifiers: letters, digits and `_`.
    Identifiers,
    /// File-name patterns for tables, CSV header names for columns.
    FilePatterns,
}

fn validate_csv(name: &str, c: &CsvConfig) -> Result<(), String> {
    let at = format!("store {name:?}");
    if !c.delimiter.is_ascii() || c.delimiter == '"' || c.delimiter.is_ascii_alphanumeric() {
        return Err(format!(
            "{at}: delimiter must be one ASCII punctuation or space character"
        ));
    }
    for t in &c.files {
        let unsupported = [
            ("shortcode", t.shortcode.is_some()),
            ("state", t.state.is_some()),
            ("file", t.file.is_some()),
            ("normalised", !t.normalised.is_empty()),
        ];
        if let Some((key, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(format!(
                "{at}, files {:?}: {key} is not supported in CSV lists",
                t.name
            ));
        }
    }
    Ok(())
}

fn validate_tables(
    store: &str,
    tables: &[TableMapping],
    phones: &PhoneConfig,
    names: Names,
) -> Result<(), String> {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(&phones.default_country_code) || phones.default_country_code.len() > 3 {
        return Err(format!(
            "store {store:?}: phones.default_country_code must be 1-3 digits or empty"
        ));
    }
    if !digits(&phones.trunk_prefix) || !digits(&phones.international_prefix) {
        return Err(format!(
            "store {store:?}: phones.trunk_prefix and phones.international_prefix must be digits"
        ));
    }
    if tables.is_empty() {
        return Err(format!("store {store:?}: no tables mapped"));
    }
    let mut seen = HashSet::new();
    for t in tables {
        let at = format!("store {store:?}, table {:?}", t.name);
        match names {
            Names::Identifiers if !is_identifier(&t.name) => {
                return Err(format!("{at}: table names must be letters, digits and '_'"));
            }
            Names::FilePatterns
                if t.name.is_empty() || t.name.contains(['/', '\\']) || t.name.starts_with('.') =>
            {
                return Err(format!(
                    "{at}: a file pattern names files in the folder: no '/', not starting with '.'"
                ));
            }
            _ => {}
        }
        if !seen.insert(&t.name) {
            return Err(format!("{at}: mapped twice"));
        }
        if t.device_columns().is_empty() {
            return Err(format!(
                "{at}: map at least one phone, email or ipaddr column"
            ));
        }
        if t.suppression && t.forget == ForgetMode::Delete {
            return Err(format!(
                "{at}: a suppression list keeps its rows: forget = \"delete\" would let a later import contact the person again"
            ));
        }
        for c in t.mask.iter().flatten() {
            let mapped = t.device_columns().iter().any(|(_, d)| d == c) || t.personal.contains(c);
            if !mapped {
                return Err(format!(
                    "{at}: mask names {c:?}, which is not a mapped device or personal column"
                ));
            }
        }
        for c in &t.pseudonymise {
            if t.device_columns().iter().any(|(_, d)| d == c) {
                return Err(format!(
                    "{at}: pseudonymise names the device column {c:?}: a forget replaces a device with a random placeholder, never a value derived from it (`781-555-1212` masked is `7xx-5xx-1xx2`). Remove {c:?} from pseudonymise; masking belongs to pseudonymisation requests, which mask the columns in `mask`"
                ));
            }
            if !t.personal.contains(c) {
                return Err(format!(
                    "{at}: pseudonymise names {c:?}, which is not a mapped personal column"
                ));
            }
            if t.forget == ForgetMode::Delete {
                return Err(format!(
                    "{at}: pseudonymise needs forget = \"anonymise\" (deleted rows are not masked)"
                ));
            }
        }
        let mut cols = HashSet::new();
        for c in t.columns() {
            let ok = match names {
                Names::Identifiers => is_identifier(c),
                Names::FilePatterns => !c.is_empty() && !c.chars().any(char::is_control),
            };
            if !ok {
                return Err(format!(
                    "{at}: column {c:?}: column names must be letters, digits and '_'"
                ));
            }
            if !cols.insert(c) {
                return Err(format!("{at}: column {c:?} is mapped twice"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = include_str!("../fixtures/demo/gdprd.toml");

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/gdprd/gdprd.toml"))
    }

    #[test]
    fn demo_config_loads_with_paths_resolved() {
        let c = load(DEMO).expect("demo config");
        assert_eq!(c.state_dir, Path::new("/etc/gdprd/state"));
        let demo = c.account("demo").expect("demo account");
        assert_eq!(
            demo.submit_dir(),
            Path::new("/etc/gdprd/accounts/demo/GDPR_Submit")
        );
        assert_eq!(demo.retention_days, 3);
        let StoreConfig::Sqlite(s) = &c.stores["demo"] else {
            panic!("the demo store is sqlite")
        };
        assert_eq!(s.path, Path::new("/etc/gdprd/demo.db"));
        assert_eq!(s.phones.default_country_code, "1");
    }

    /// The demo config with its store replaced by the `fixtures/<kind>/store.toml` one.
    fn with_server_store(kind: &str) -> String {
        let store = std::fs::read_to_string(format!(
            "{}/fixtures/{kind}/store.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("store fixture");
        format!(
            "{}{store}",
            &DEMO[..DEMO.find("[stores.demo]").expect("store")]
        )
    }

    #[test]
    fn server_store_fixtures_load() {
        let c = load(&with_server_store("postgres")).expect("postgres store");
        let StoreConfig::Postgres(pg) = &c.stores["demo"] else {
            panic!("postgres")
        };
        assert_eq!(pg.schema.as_deref(), Some("gdprd_demo"));
        assert_eq!(pg.tls, TlsMode::Prefer);
        assert_eq!(
            pg.files_root.as_deref(),
            Some(Path::new("/etc/gdprd/recordings"))
        );
        let c = load(&with_server_store("mysql")).expect("mysql store");
        let StoreConfig::Mysql(my) = &c.stores["demo"] else {
            panic!("mysql")
        };
        assert_eq!(my.tables[0].normalised["phone"], "phone_digits");
    }

    #[test]
    fn server_store_mistakes_are_refused() {
        let pg = with_server_store("postgres");
        let my = with_server_store("mysql");
        let cases = [
            (
                pg.replace("postgres://", "mysql://"),
                "url must start with postgres",
            ),
            (
                my.replace("mysql://", "postgres://"),
                "url must start with mysql://",
            ),
            (
                pg.replace("tls = \"prefer\"", "tls = \"sometimes\""),
                "unknown variant `sometimes`",
            ),
            (
                pg.replace("schema = \"gdprd_demo\"", "schema = \"a; DROP\""),
                "schema must be",
            ),
            (
                my.replace("url = ", "schema = \"x\"\nurl = "),
                "schema is for postgres",
            ),
            (
                my.replace("phone = \"phone_digits\"", "fax = \"phone_digits\""),
                "not a mapped device column",
            ),
            (
                DEMO.replace(
                    "account = \"account_id\"\n",
                    "account = \"account_id\"\nnormalised = { phone = \"p\" }\n",
                ),
                "normalised columns are for postgres and mysql",
            ),
            (
                pg.replace(
                    "url = ",
                    "password_file = \"a\"\npassword_env = \"B\"\nurl = ",
                ),
                "not both",
            ),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn callback_retries_are_capped() {
        let with = |keys: &str| {
            format!("{DEMO}\n[stores.callbacks]\ntype = \"callback-http\"\nbase_url = \"http://127.0.0.1:1\"\n{keys}")
        };
        load(&with("retries = 10\nretry_delay_ms = 10000\n")).expect("at the caps");
        let e = load(&with("retries = 20\n")).expect_err("20 retries");
        assert!(e.to_string().contains("retries is 20, at most 10"), "{e}");
        let e = load(&with("retry_delay_ms = 60000\n")).expect_err("a minute");
        assert!(
            e.to_string()
                .contains("retry_delay_ms is 60000, at most 10000"),
            "{e}"
        );
    }

    #[test]
    fn the_packaged_config_is_valid() {
        let c = load(include_str!("../packaging/gdprd.toml")).expect("packaging/gdprd.toml");
        assert_eq!(c.state_dir, Path::new("/var/lib/gdprd"));
        assert_eq!(c.accounts[0].root, Path::new("/srv/gdprd/example"));
    }

    #[test]
    fn http_front_doors_are_checked() {
        let c = load(DEMO).expect("demo");
        assert_eq!(c.http.listen.as_deref(), Some("127.0.0.1:8080"));
        let h = c.accounts[0].http.as_ref().expect("demo account has http");
        assert!(h.jobs && h.lcm);
        assert_eq!(
            h.lookup_keys.get("EMAIL").map(String::as_str),
            Some("email")
        );
        let cases = [
            (DEMO.replace("127.0.0.1:8080", "0.0.0.0:8080"), "plain HTTP"),
            (DEMO.replace("127.0.0.1:8080", "nowhere"), "not an address:port"),
            (DEMO.replace("token_hash = \"sha256:", "token_hash = \"md5:"), "64 hex digits"),
            (DEMO.replace("default_country_code = \"1\"\n\n# Contact lists", "default_country_code = \"+1\"\n\n# Contact lists"), "default_country_code must be"),
            (DEMO.replace("default_country_code = \"1\"\n\n# Contact lists", "default_country_code = \"1\"\nlookup_keys = { Fax = \"fax\" }\n\n# Contact lists"), "use phone, email or ipaddr"),
            (DEMO.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:8080\"\nmax_lines = 0"), "must be positive"),
            (DEMO.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:8080\"\nbody_timeout_seconds = 0"), "body_timeout_seconds"),
            (DEMO.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:8080\"\nmax_connections = 8\nmax_connections_per_address = 9"), "more than max_connections"),
            (DEMO.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:8080\"\ntrusted_proxies = [\"10.0.0.0/33\"]"), "not an address (10.0.0.7) or a network"),
            (DEMO.replace("[[stores.demo.tables]]\nname = \"contact_attempt\"", "[[stores.demo.tables]]\nname = \"contact_attempt\"\nmask = [\"nope\"]"), "mask names \"nope\""),
        ];
        for (text, want) in cases {
            assert_ne!(text, DEMO, "the case must change the config: {want}");
            let e = err(&text);
            assert!(e.contains(want), "{e} lacks {want}");
        }
        let open = DEMO.replace("127.0.0.1:8080", "0.0.0.0:8080").replace(
            "listen = \"0.0.0.0:8080\"",
            "listen = \"0.0.0.0:8080\"\nplain_http_on_network = true",
        );
        assert!(load(&open).is_ok());
        let proxies = DEMO.replace(
            "listen = \"127.0.0.1:8080\"",
            "listen = \"127.0.0.1:8080\"\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"::1\"]",
        );
        let c = load(&proxies).expect("trusted proxies load");
        assert_eq!(c.http.trusted_proxies.len(), 3);
        assert_eq!(c.http.max_connections, 128);
        assert_eq!(c.http.header_timeout_seconds, 10);
    }

    #[test]
    fn remote_accounts_are_checked() {
        let remote = DEMO
            .replace("transport = \"sftp-server\"", "transport = \"sftp-remote\"")
            .replace(
                "[accounts.sftp]",
                "[accounts.remote]\nhost = \"sftp.example.com\"\nuser = \"gdpr\"\nkey_file = \"id_ed25519\"\nknown_hosts = \"known_hosts\"\n\n[accounts.sftp]",
            );
        // [accounts.sftp] is for the embedded server only: drop it for a remote account.
        let at = remote.find("[accounts.sftp]").expect("sftp");
        let end = at + remote[at..].find("\n\n").expect("end");
        let remote = format!("{}{}", &remote[..at], &remote[end..]);
        let with_http = remote.clone();
        // So are HTTP front doors (a remote account's results leave for the server).
        let at = remote.find("[accounts.http]").expect("http");
        let end = at + remote[at..].find("\n\n").expect("end");
        let remote = format!("{}{}", &remote[..at], &remote[end..]);
        assert!(err(&with_http).contains("an sftp-remote account's results leave"));
        let c = load(&remote).expect("remote account");
        let r = c.accounts[0].remote.as_ref().expect("remote");
        assert_eq!((r.port, r.poll_seconds, r.path.as_str()), (22, 30, "."));
        assert_eq!(
            r.key_file.as_deref(),
            Some(Path::new("/etc/gdprd/id_ed25519"))
        );
        let cases = [
            (remote.replace("known_hosts = \"known_hosts\"\n", ""), "never logs in to a server it cannot recognise"),
            (remote.replace("key_file = \"id_ed25519\"\n", ""), "needs key_file, password_file or password_env"),
            (remote.replace("known_hosts = \"known_hosts\"", "host_key_fingerprint = \"MD5:ab\""), "SHA256:"),
            (remote.replace("transport = \"sftp-remote\"", "transport = \"local\""), "[accounts.remote] is for transport"),
            (remote.replace("[accounts.remote]\nhost = \"sftp.example.com\"\nuser = \"gdpr\"\nkey_file = \"id_ed25519\"\nknown_hosts = \"known_hosts\"\n", ""), "needs [accounts.remote]"),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    fn err(text: &str) -> String {
        load(text).expect_err("should be refused").to_string()
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = err("state_dir = \"s\"\nstate_dri = \"x\"\n");
        assert!(e.contains("unknown field `state_dri`"), "{e}");
        let e = err(&DEMO.replace("retention_days", "retention"));
        assert!(e.contains("unknown field `retention`"), "{e}");
        let e = err(&DEMO.replace("personal =", "persnal ="));
        assert!(e.contains("unknown field `persnal`"), "{e}");
    }

    #[test]
    fn inconsistencies_are_refused() {
        let cases = [
            (
                DEMO.replace("timezone = \"UTC\"", "timezone = \"Mars/Base\""),
                "unknown time zone",
            ),
            (
                DEMO.replace(
                    "stores = [\"demo\", \"lists\"]",
                    "stores = [\"demo\", \"nope\"]",
                ),
                "unknown store \"nope\"",
            ),
            (
                DEMO.replace("name = \"contact_list\"", "name = \"contact list\""),
                "table names",
            ),
            (
                DEMO.replace(
                    "default_country_code = \"1\"",
                    "default_country_code = \"+1\"",
                ),
                "default_country_code",
            ),
            (
                DEMO.replace(
                    "transport = \"sftp-server\"",
                    "transport = \"carrier-pigeon\"",
                ),
                "unknown variant",
            ),
            (
                format!("{DEMO}\n[limits]\nbatch_size = 0\n"),
                "must be positive",
            ),
            (
                format!("{DEMO}\n[limits]\nmax_depth = 4\n"),
                "max_depth at least 5",
            ),
            (
                DEMO.replace("password_hash = \"$argon2id", "password_hash = \"plain"),
                "not an argon2 hash",
            ),
            (
                DEMO.replace("127.0.0.1:2222", "localhost"),
                "not an address:port",
            ),
            (
                DEMO.replace("[accounts.sftp]", "[accounts.sftpx]"),
                "unknown field `sftpx`",
            ),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    /// Issue 14 item 15: the demo's forget masked `contact_attempt.dialed_number` (`7815551212` → `7xx5xx1xx2`),
    /// a value derived from the phone. A forget mapping that masks a device column is refused.
    #[test]
    fn forget_that_masks_a_device_column_is_refused() {
        let attempts = "[[stores.demo.tables]]\nname = \"contact_attempt\"";
        let masks_device = DEMO.replace(
            attempts,
            &format!("{attempts}\npseudonymise = [\"dialed_number\"]"),
        );
        assert_ne!(masks_device, DEMO);
        let e = err(&masks_device);
        assert!(
            e.contains("pseudonymise names the device column \"dialed_number\"")
                && e.contains("random placeholder"),
            "{e}"
        );
        let masks_personal = DEMO.replace(
            attempts,
            &format!("{attempts}\npseudonymise = [\"agent_notes\"]"),
        );
        assert!(load(&masks_personal).is_ok());
        for (name, text) in [
            ("demo", DEMO),
            ("postgres", include_str!("../fixtures/postgres/store.toml")),
            ("mysql", include_str!("../fixtures/mysql/store.toml")),
        ] {
            assert!(
                !text.contains("pseudonymise = [\"dialed_number\"]"),
                "{name} fixture masks a device on forget"
            );
        }
    }
}
