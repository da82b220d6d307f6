//! Configuration: the TOML file an operator writes, parsed with unknown keys refused, validated without I/O into
//! typed values (addresses, durations, time zones), and resolved (paths made absolute against the config file's
//! folder) into a [`Config`].
//!
//! Each component's section lives beside the component, with its checks: the stores' in [`crate::stores`]
//! (one file per `type`, the shared table mapping in [`crate::stores::mapping`]), `[sftp_server]` and
//! `[accounts.sftp]` in [`crate::transports::sftp_server::config`], `[accounts.remote]` in
//! [`crate::transports::sftp_remote`], `[intake]` in [`crate::transports`], `[http]` and `[accounts.http]` in
//! [`crate::http::config`], `[metrics]` in [`crate::metrics`], `[limits]` in [`crate::requests`], `[engine]` in
//! [`crate::engine`]. This file assembles them: the top-level keys, `[log]`, `[[accounts]]`, the checks that
//! span sections, and loading.
//! A section whose values need reading (an address, a network) is deserialized as written (`Raw…`) and
//! validated into its typed form once; nothing downstream parses a setting again.

use crate::deadline::{Dates, Period};
use crate::http::config::{HttpConfigError, RawHttpAccountConfig, RawHttpConfig};
use crate::metrics::{MetricsConfigError, RawMetricsConfig};
use crate::requests::LimitsConfigError;
use crate::retention::Retention;
use crate::stores::StoreConfigError;
use crate::transports::sftp_remote::RemoteConfigError;
use crate::transports::sftp_server::config::{RawSftpServerConfig, SftpConfigError};
use crate::transports::IntakeConfigError;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::engine::EngineConfig;
pub use crate::http::config::{HttpAccountConfig, HttpConfig};
pub use crate::journal::ClusterConfig;
pub use crate::metrics::MetricsConfig;
pub use crate::requests::{LimitsConfig, RequestRules};
pub use crate::stores::{
    CallbackHttpConfig, CsvConfig, ForgetMode, PhoneConfig, SqlConfig, SqliteConfig, StoreConfig,
    TableMapping, TlsMode,
};
pub use crate::transports::sftp_remote::RemoteConfig;
pub use crate::transports::sftp_server::config::{SftpAccountConfig, SftpServerConfig};
pub use crate::transports::{IntakeConfig, Transport};

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
    /// Well-formed but inconsistent (an unknown store, a bad time zone, …). The problem's text is part of this
    /// error's, so it is deliberately not its `source()` (`main` prints the chain, which would say it twice).
    #[error("config {path}: {problem}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong and where (boxed: a component's error may hold a large parser error).
        problem: Box<Invalid>,
    },
}

/// What is wrong in a well-formed config: a section's own check (each component's error, from beside the
/// component) or a check that spans sections.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// A `[stores.NAME]` section.
    #[error(transparent)]
    Store(#[from] StoreConfigError),
    /// `[http]` or an `[accounts.http]` section.
    #[error(transparent)]
    Http(#[from] HttpConfigError),
    /// `[sftp_server]` or an `[accounts.sftp]` section.
    #[error(transparent)]
    Sftp(#[from] SftpConfigError),
    /// An `[accounts.remote]` section.
    #[error(transparent)]
    Remote(#[from] RemoteConfigError),
    /// `[intake]`.
    #[error(transparent)]
    Intake(#[from] IntakeConfigError),
    /// `[limits]`.
    #[error(transparent)]
    Limits(#[from] LimitsConfigError),
    /// `[metrics]`.
    #[error(transparent)]
    Metrics(#[from] MetricsConfigError),
    /// An `[[accounts]]` entry on its own, or against the other sections.
    #[error(transparent)]
    Account(#[from] AccountConfigError),
    /// `[cluster]`.
    #[error(transparent)]
    Cluster(#[from] crate::journal::ClusterConfigError),
    /// `[http] max_lines` above `[limits] max_contacts`.
    #[error("[http]: max_lines ({max_lines}) is more than [limits] max_contacts ({max_contacts}): a job that size would be refused whole")]
    JobAboveLimits {
        /// `[http] max_lines`.
        max_lines: usize,
        /// `[limits] max_contacts`.
        max_contacts: usize,
    },
}

/// What is wrong with one `[[accounts]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountConfigError {
    /// The name is not 1-64 letters, digits, `-` or `_`.
    #[error("account {account:?}: name must be 1-64 letters, digits, '-' or '_'")]
    Name {
        /// The name as written.
        account: String,
    },
    /// Two accounts have the same name.
    #[error("account {account:?} is defined twice")]
    Twice {
        /// The name.
        account: String,
    },
    /// `timezone` is not an IANA time zone.
    #[error("account {account:?}: unknown time zone {zone:?} (use an IANA name such as \"Europe/Paris\")")]
    TimeZone {
        /// The account.
        account: String,
        /// The zone as written.
        zone: String,
    },
    /// `transport = "sftp-server"` without `[accounts.sftp]`.
    #[error("account {account:?}: transport \"sftp-server\" needs [accounts.sftp] with keys or a password hash")]
    NoSftpLogin {
        /// The account.
        account: String,
    },
    /// `transport = "sftp-remote"` without `[accounts.remote]`.
    #[error("account {account:?}: transport \"sftp-remote\" needs [accounts.remote] with host, user and a key or password")]
    NoRemote {
        /// The account.
        account: String,
    },
    /// `[accounts.remote]` on an account of another transport.
    #[error("account {account:?}: [accounts.remote] is for transport = \"sftp-remote\"")]
    RemoteNotUsed {
        /// The account.
        account: String,
    },
    /// `stores = []`.
    #[error("account {account:?}: stores is empty: name at least one store")]
    NoStores {
        /// The account.
        account: String,
    },
    /// A store that `[stores]` does not define.
    #[error("account {account:?}: unknown store {store:?}")]
    UnknownStore {
        /// The account.
        account: String,
        /// The store as named.
        store: String,
    },
    /// A bearer token that opens another account too.
    #[error("account {account:?}, [accounts.http]: the same token opens another account; give every account its own")]
    TokenShared {
        /// The account.
        account: String,
    },
    /// HTTP front doors on an `sftp-remote` account.
    #[error("account {account:?}, [accounts.http]: an sftp-remote account's results leave for the remote server, so HTTP jobs could not answer; use a local or sftp-server account")]
    HttpOnRemote {
        /// The account.
        account: String,
    },
}

/// A loaded, validated configuration with absolute paths.
#[derive(Debug, Clone, PartialEq)]
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
    /// How long a stop (SIGTERM) may take to reach a journal checkpoint before gdprd exits anyway
    /// (`stop_deadline_seconds`, default 60).
    pub stop_deadline_seconds: Duration,
    /// The HTTP front doors (erasure/access jobs and agent privacy requests), off unless `listen` is set.
    pub http: HttpConfig,
    /// How many files run at once.
    pub engine: EngineConfig,
    /// `[cluster]`: the journal in a PostgreSQL database shared by several nodes; none keeps the embedded SQLite
    /// ledger of `state_dir`.
    pub cluster: Option<ClusterConfig>,
}

/// The file as written.
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
    sftp_server: RawSftpServerConfig,
    #[serde(default)]
    accounts: Vec<RawAccountConfig>,
    #[serde(default)]
    stores: BTreeMap<String, StoreConfig>,
    #[serde(default)]
    metrics: RawMetricsConfig,
    #[serde(default = "default_stop_deadline", deserialize_with = "de::seconds")]
    stop_deadline_seconds: Duration,
    #[serde(default)]
    http: RawHttpConfig,
    #[serde(default)]
    engine: EngineConfig,
    #[serde(default)]
    cluster: Option<ClusterConfig>,
}

fn default_stop_deadline() -> Duration {
    Duration::from_secs(60)
}

/// `[log]`: how the daemon logs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

/// `[[accounts]]`: one customer's drop box.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountConfig {
    /// Unique name: letters, digits, `-`, `_`.
    pub name: String,
    /// Folder holding `GDPR_Submit` and `GDPR_Result`.
    pub root: PathBuf,
    /// IANA time zone deciding what "today" is (default `UTC`).
    pub timezone: chrono_tz::Tz,
    /// How files arrive (default `local`).
    pub transport: Transport,
    /// Names of the stores requests run against, in order.
    pub stores: Vec<String>,
    /// How long results are kept in `GDPR_Result` and finished HTTP jobs answer (`retention_days`, default 3).
    pub retention: Retention,
    /// How long after its receipt a request is due (`deadline`, default `"1 month"`; see [`crate::deadline`]).
    pub deadline: Period,
    /// Login for the embedded SFTP server (`transport = "sftp-server"`); the login name is the account name.
    pub sftp: Option<SftpAccountConfig>,
    /// The server an `sftp-remote` account's folders live on.
    pub remote: Option<RemoteConfig>,
    /// The account's HTTP front doors; absent means none.
    pub http: Option<HttpAccountConfig>,
    /// `[accounts.requests]`: what the account requires of each request (default: `accountid` and
    /// `shortcodes` optional).
    pub requests: RequestRules,
}

/// `[[accounts]]` as written; [`RawAccountConfig::validate`] makes the [`AccountConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccountConfig {
    name: String,
    root: PathBuf,
    #[serde(default = "default_timezone")]
    timezone: String,
    #[serde(default)]
    transport: Transport,
    stores: Vec<String>,
    #[serde(default = "default_retention")]
    retention_days: u32,
    #[serde(default)]
    deadline: Period,
    #[serde(default)]
    sftp: Option<SftpAccountConfig>,
    #[serde(default)]
    remote: Option<RemoteConfig>,
    #[serde(default)]
    http: Option<RawHttpAccountConfig>,
    #[serde(default)]
    requests: RequestRules,
}

fn default_timezone() -> String {
    "UTC".into()
}

fn default_retention() -> u32 {
    Retention::DEFAULT.days()
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
    /// A request of this account received now: when, and when it is due.
    pub fn received_now(&self) -> Dates {
        Dates::received_now(self.deadline, self.timezone)
    }
}

/// Reads an account as [`Config::load`] does, without the path resolution and the checks against other sections.
impl<'de> Deserialize<'de> for AccountConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawAccountConfig::deserialize(d)?
            .validate()
            .map_err(serde::de::Error::custom)
    }
}

impl RawAccountConfig {
    /// Checks the account on its own (its name, time zone, transport and the sections that go with it) and
    /// reads its time zone and HTTP lookup keys. Whether its stores exist and its token is its own is for
    /// [`validate`].
    fn validate(self) -> Result<AccountConfig, Invalid> {
        use AccountConfigError as E;
        let a = self;
        let account = || a.name.clone();
        if !is_name(&a.name) {
            return Err(E::Name { account: account() }.into());
        }
        let Ok(timezone) = a.timezone.parse::<chrono_tz::Tz>() else {
            return Err(E::TimeZone {
                account: account(),
                zone: a.timezone,
            }
            .into());
        };
        if a.transport == Transport::SftpServer {
            let Some(sftp) = &a.sftp else {
                return Err(E::NoSftpLogin { account: account() }.into());
            };
            sftp.validate(&a.name)?;
        }
        match (&a.remote, a.transport) {
            (None, Transport::SftpRemote) => return Err(E::NoRemote { account: account() }.into()),
            (None, _) => {}
            (Some(_), t) if t != Transport::SftpRemote => {
                return Err(E::RemoteNotUsed { account: account() }.into())
            }
            (Some(remote), _) => remote.validate(&a.name)?,
        }
        if a.stores.is_empty() {
            return Err(E::NoStores { account: account() }.into());
        }
        let http = a.http.map(|h| h.validate(&a.name, &a.stores)).transpose()?;
        Ok(AccountConfig {
            name: a.name,
            root: a.root,
            timezone,
            transport: a.transport,
            stores: a.stores,
            retention: Retention::from_days(a.retention_days),
            deadline: a.deadline,
            sftp: a.sftp,
            remote: a.remote,
            http,
            requests: a.requests,
        })
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
        let mut config = validate(raw, path).map_err(|problem| ConfigError::Invalid {
            path: path.to_owned(),
            problem: Box::new(problem),
        })?;
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
        config.state_dir = resolve(&config.state_dir);
        for account in &mut config.accounts {
            account.root = resolve(&account.root);
            if let Some(r) = account.remote.as_mut() {
                r.resolve_paths(resolve);
            }
            if let Some(s) = account.sftp.as_mut() {
                s.resolve_paths(resolve);
            }
        }
        for store in config.stores.values_mut() {
            store.resolve_paths(resolve);
        }
        if let Some(cluster) = config.cluster.as_mut() {
            cluster.resolve_paths(resolve);
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

/// Validates every section into its typed form, then what spans sections: the job size against `[limits]`, one
/// token per account and no front doors on an `sftp-remote` account, unique account names, stores that exist.
fn validate(raw: RawConfig, path: &Path) -> Result<Config, Invalid> {
    use AccountConfigError as E;
    let metrics = raw.metrics.validate()?;
    let http = raw.http.validate()?;
    if http.max_lines > raw.limits.max_contacts {
        return Err(Invalid::JobAboveLimits {
            max_lines: http.max_lines,
            max_contacts: raw.limits.max_contacts,
        });
    }
    raw.limits.validate()?;
    let sftp_server = raw.sftp_server.validate()?;
    raw.intake.validate()?;
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    let mut accounts = Vec::with_capacity(raw.accounts.len());
    for a in raw.accounts {
        let a = a.validate()?;
        if let Some(h) = &a.http {
            let account = a.name.clone();
            if !hashes.insert(h.token_digest()) {
                return Err(E::TokenShared { account }.into());
            }
            if a.transport == Transport::SftpRemote {
                return Err(E::HttpOnRemote { account }.into());
            }
        }
        if !names.insert(a.name.clone()) {
            return Err(E::Twice { account: a.name }.into());
        }
        if let Some(s) = a.stores.iter().find(|s| !raw.stores.contains_key(*s)) {
            return Err(E::UnknownStore {
                store: s.clone(),
                account: a.name,
            }
            .into());
        }
        accounts.push(a);
    }
    for (name, store) in &raw.stores {
        if !is_name(name) {
            return Err(StoreConfigError::Name {
                store: name.clone(),
            }
            .into());
        }
        store.validate(name)?;
    }
    if let Some(cluster) = &raw.cluster {
        cluster.validate()?;
    }
    Ok(Config {
        path: path.to_owned(),
        state_dir: raw.state_dir,
        log: raw.log,
        limits: raw.limits,
        intake: raw.intake,
        sftp_server,
        accounts,
        stores: raw.stores,
        metrics,
        stop_deadline_seconds: raw.stop_deadline_seconds,
        http,
        engine: raw.engine,
        cluster: raw.cluster,
    })
}

/// Serde helpers the components' config types share.
pub(crate) mod de {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// `true`, for `#[serde(default = ...)]`.
    pub(crate) fn yes() -> bool {
        true
    }

    /// Reads a `_seconds` key, a whole number of seconds, as a [`Duration`].
    ///
    /// # Errors
    /// The TOML reader's, when the value is not a non-negative integer.
    pub(crate) fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }

    /// Reads a `_ms` key, a whole number of milliseconds, as a [`Duration`].
    ///
    /// # Errors
    /// The TOML reader's, when the value is not a non-negative integer.
    pub(crate) fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// What the config tests of every component share: the demo config and a loader.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Config, ConfigError};
    use std::path::Path;

    /// The demo's config, the base most config tests change one thing in.
    pub(crate) const DEMO: &str = include_str!("../fixtures/demo/gdprd.toml");

    /// Loads `text` as if read from `/etc/gdprd/gdprd.toml`.
    pub(crate) fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/gdprd/gdprd.toml"))
    }

    /// The message `text` is refused with.
    pub(crate) fn err(text: &str) -> String {
        load(text).expect_err("should be refused").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{err, load, DEMO};
    use super::*;

    #[test]
    fn demo_config_loads_with_paths_resolved() {
        let c = load(DEMO).expect("demo config");
        assert_eq!(c.state_dir, Path::new("/etc/gdprd/state"));
        let demo = c.account("demo").expect("demo account");
        assert_eq!(
            demo.submit_dir(),
            Path::new("/etc/gdprd/accounts/demo/GDPR_Submit")
        );
        assert_eq!(demo.retention, Retention::from_days(3));
        let StoreConfig::Sqlite(s) = &c.stores["demo"] else {
            panic!("the demo store is sqlite")
        };
        assert_eq!(s.path, Path::new("/etc/gdprd/demo.db"));
        assert_eq!(s.phones.default_country_code, "1");
    }

    #[test]
    fn the_packaged_config_is_valid() {
        let c = load(include_str!("../packaging/gdprd.toml")).expect("packaging/gdprd.toml");
        assert_eq!(c.state_dir, Path::new("/var/lib/gdprd"));
        assert_eq!(c.accounts[0].root, Path::new("/srv/gdprd/example"));
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
}
