//! `[cluster]`: the journal kept in PostgreSQL, shared by every node of a cluster (see docs/cluster.md). Without
//! the section the journal is the embedded SQLite ledger of the state folder, as it always was.

use crate::config::de;
use crate::stores::TlsMode;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[cluster]` as written and checked: where the shared ledger is and who this node is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The ledger's database, `postgres://user@host:5432/db`. The password goes in `password_file` or
    /// `password_env`; it is never logged.
    pub ledger_url: String,
    /// File holding the password (its first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Transport encryption, as a `postgres` store's `tls`: `disable`, `prefer` (default), `require`,
    /// `verify-full`.
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of the certificate authority for `verify-full`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The PostgreSQL schema the ledger's tables live in (default `gdprd`); created if missing.
    #[serde(default = "default_schema")]
    pub ledger_schema: String,
    /// This node's name in the ledger's leases (default: the host name). Every node needs its own.
    #[serde(default)]
    pub node: Option<String>,
    /// How long a claim's lease lasts without being renewed (`lease_seconds`, default 30): after that another
    /// node may take the file over.
    #[serde(default = "default_lease", deserialize_with = "de::seconds")]
    pub lease_seconds: Duration,
    /// How long to wait for a connection (`connect_timeout_seconds`, default 10).
    #[serde(default = "default_connect_timeout", deserialize_with = "de::seconds")]
    pub connect_timeout_seconds: Duration,
}

fn default_schema() -> String {
    "gdprd".into()
}

fn default_lease() -> Duration {
    Duration::from_secs(30)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Why a `[cluster]` section cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterConfigError {
    /// `ledger_url` is not a PostgreSQL URL.
    #[error("[cluster]: ledger_url must start with postgres:// or postgresql://")]
    Url,
    /// Both password sources are set.
    #[error("[cluster]: set password_file or password_env, not both")]
    TwoPasswords,
    /// `ledger_schema` is not a plain identifier.
    #[error("[cluster]: ledger_schema {0:?} must be 1-63 lowercase letters, digits and '_', not starting with a digit")]
    Schema(String),
    /// `node` is empty or too long.
    #[error("[cluster]: node {0:?} must be 1-64 characters without control characters")]
    Node(String),
    /// `lease_seconds` or `connect_timeout_seconds` is zero.
    #[error("[cluster]: {0} must be positive")]
    Zero(&'static str),
}

impl ClusterConfig {
    /// Checks the URL, the password source, the schema's and node's names and the durations.
    ///
    /// # Errors
    /// [`ClusterConfigError`] naming the key.
    pub(crate) fn validate(&self) -> Result<(), ClusterConfigError> {
        if !(self.ledger_url.starts_with("postgres://")
            || self.ledger_url.starts_with("postgresql://"))
        {
            return Err(ClusterConfigError::Url);
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            return Err(ClusterConfigError::TwoPasswords);
        }
        let s = &self.ledger_schema;
        let plain = !s.is_empty()
            && s.len() <= 63
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !plain {
            return Err(ClusterConfigError::Schema(s.clone()));
        }
        if let Some(node) = &self.node {
            if node.is_empty() || node.chars().count() > 64 || node.chars().any(char::is_control) {
                return Err(ClusterConfigError::Node(node.clone()));
            }
        }
        if self.lease_seconds.is_zero() {
            return Err(ClusterConfigError::Zero("lease_seconds"));
        }
        if self.connect_timeout_seconds.is_zero() {
            return Err(ClusterConfigError::Zero("connect_timeout_seconds"));
        }
        Ok(())
    }

    /// Makes `password_file` and `ca_file` absolute with `resolve`.
    pub(crate) fn resolve_paths(&mut self, resolve: impl Fn(&Path) -> PathBuf) {
        self.password_file = self.password_file.as_deref().map(&resolve);
        self.ca_file = self.ca_file.as_deref().map(&resolve);
    }

    /// This node's name: `node`, or else the host name (`localhost` when the system has none to give).
    pub fn node_name(&self) -> String {
        if let Some(node) = &self.node {
            return node.clone();
        }
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| {
                std::fs::read_to_string(p)
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "localhost".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{load, DEMO};

    fn with(section: &str) -> String {
        format!("{DEMO}\n[cluster]\n{section}\n")
    }

    #[test]
    fn cluster_section_loads_with_defaults_and_is_optional() {
        assert!(load(DEMO).expect("demo").cluster.is_none());
        let config = load(&with(
            "ledger_url = \"postgres://gdprd@db/gdprd\"\npassword_file = \"pw\"",
        ))
        .expect("loads");
        let c = config.cluster.expect("cluster");
        assert_eq!(c.ledger_schema, "gdprd");
        assert_eq!(c.lease_seconds.as_secs(), 30);
        assert_eq!(
            c.password_file.as_deref(),
            Some(std::path::Path::new("/etc/gdprd/pw"))
        );
        assert!(!c.node_name().is_empty());
    }

    #[test]
    fn cluster_section_refuses_what_cannot_work() {
        for (section, says) in [
            ("ledger_url = \"mysql://x/y\"", "ledger_url"),
            (
                "ledger_url = \"postgres://x/y\"\npassword_file = \"a\"\npassword_env = \"B\"",
                "not both",
            ),
            (
                "ledger_url = \"postgres://x/y\"\nledger_schema = \"Bad-Name\"",
                "ledger_schema",
            ),
            ("ledger_url = \"postgres://x/y\"\nnode = \"\"", "node"),
            (
                "ledger_url = \"postgres://x/y\"\nlease_seconds = 0",
                "lease_seconds",
            ),
            ("ledger_url = \"postgres://x/y\"\nleader = true", "leader"),
        ] {
            let err = load(&with(section)).expect_err(section).to_string();
            assert!(err.contains(says), "{section}: {err}");
        }
    }
}
