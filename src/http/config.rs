//! `[http]` and `[accounts.http]`: the HTTP front doors' settings, read as written and checked into typed values
//! once, at load: the listen address is a [`SocketAddr`], the trusted proxies are networks, the timeouts are
//! [`Duration`]s. Checks that involve other sections (a job's size against `[limits]`, one token per account, no
//! front doors on an `sftp-remote` account) are made by [`crate::config`].

use crate::config::de;
use crate::requests::DeviceKind;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `[http]`: the HTTP front doors. Off unless `listen` is set; each account opts in with `[accounts.http]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Where to listen. gdprd speaks plain HTTP: a non-loopback address needs `plain_http_on_network = true`
    /// (with TLS terminated by a proxy in front).
    pub listen: Option<SocketAddr>,
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
    /// The throttle window (`auth_window_seconds`, default 60).
    pub auth_window_seconds: Duration,
    /// The time a client has to send a request's headers, and that an idle keep-alive connection is kept
    /// (`header_timeout_seconds`, default 10).
    pub header_timeout_seconds: Duration,
    /// The time a client has to send a request's whole body once its headers are in (`body_timeout_seconds`,
    /// default 30).
    pub body_timeout_seconds: Duration,
    /// Open connections in all (default 128); more are answered `503` and closed at once.
    pub max_connections: usize,
    /// Open connections from one client address (default 16); a trusted proxy's own address is not capped.
    pub max_connections_per_address: usize,
    /// Proxies whose `X-Forwarded-For` gdprd believes, written as addresses or networks
    /// (`["127.0.0.1", "10.0.0.0/8"]`); default none. The failed-login throttle and the logs then see the client
    /// behind the proxy.
    pub trusted_proxies: Vec<IpNet>,
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
            auth_window_seconds: Duration::from_secs(60),
            header_timeout_seconds: Duration::from_secs(10),
            body_timeout_seconds: Duration::from_secs(30),
            max_connections: 128,
            max_connections_per_address: 16,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[http]` as written; [`RawHttpConfig::validate`] makes the [`HttpConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawHttpConfig {
    listen: Option<String>,
    plain_http_on_network: bool,
    public_url: Option<String>,
    max_body_bytes: usize,
    max_lines: usize,
    submit_per_minute: u32,
    reads_per_second: u32,
    auth_failures: u32,
    #[serde(deserialize_with = "de::seconds")]
    auth_window_seconds: Duration,
    #[serde(deserialize_with = "de::seconds")]
    header_timeout_seconds: Duration,
    #[serde(deserialize_with = "de::seconds")]
    body_timeout_seconds: Duration,
    max_connections: usize,
    max_connections_per_address: usize,
    trusted_proxies: Vec<String>,
}

impl Default for RawHttpConfig {
    fn default() -> Self {
        let d = HttpConfig::default();
        RawHttpConfig {
            listen: d.listen.map(|a| a.to_string()),
            plain_http_on_network: d.plain_http_on_network,
            public_url: d.public_url,
            max_body_bytes: d.max_body_bytes,
            max_lines: d.max_lines,
            submit_per_minute: d.submit_per_minute,
            reads_per_second: d.reads_per_second,
            auth_failures: d.auth_failures,
            auth_window_seconds: d.auth_window_seconds,
            header_timeout_seconds: d.header_timeout_seconds,
            body_timeout_seconds: d.body_timeout_seconds,
            max_connections: d.max_connections,
            max_connections_per_address: d.max_connections_per_address,
            trusted_proxies: d.trusted_proxies.iter().map(IpNet::to_string).collect(),
        }
    }
}

/// Reads `[http]` as [`crate::config::Config::load`] does, without the checks against other sections.
impl<'de> Deserialize<'de> for HttpConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawHttpConfig::deserialize(d)?
            .validate()
            .map_err(serde::de::Error::custom)
    }
}

impl RawHttpConfig {
    /// Checks `[http]` on its own and reads its addresses.
    ///
    /// # Errors
    /// [`HttpConfigError`] naming the key.
    pub(crate) fn validate(self) -> Result<HttpConfig, HttpConfigError> {
        use HttpConfigError as E;
        let h = self;
        let listen = match &h.listen {
            None => None,
            Some(listen) => {
                let addr: SocketAddr = listen.parse().map_err(|_| E::Listen {
                    listen: listen.clone(),
                })?;
                if !addr.ip().is_loopback() && !h.plain_http_on_network {
                    return Err(E::PlainOnNetwork {
                        listen: listen.clone(),
                    });
                }
                Some(addr)
            }
        };
        if let Some(url) = &h.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(E::PublicUrl { url: url.clone() });
            }
        }
        if h.max_body_bytes == 0
            || h.max_lines == 0
            || h.submit_per_minute == 0
            || h.reads_per_second == 0
            || h.auth_failures == 0
        {
            return Err(E::ZeroLimit);
        }
        if h.header_timeout_seconds.is_zero()
            || h.body_timeout_seconds.is_zero()
            || h.max_connections == 0
            || h.max_connections_per_address == 0
        {
            return Err(E::ZeroConnectionLimit);
        }
        if h.max_connections_per_address > h.max_connections {
            return Err(E::PerAddressAboveTotal {
                per_address: h.max_connections_per_address,
                total: h.max_connections,
            });
        }
        let trusted_proxies = h
            .trusted_proxies
            .iter()
            .map(|proxy| {
                parse_network(proxy).ok_or_else(|| E::TrustedProxy {
                    proxy: proxy.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(HttpConfig {
            listen,
            plain_http_on_network: h.plain_http_on_network,
            public_url: h.public_url,
            max_body_bytes: h.max_body_bytes,
            max_lines: h.max_lines,
            submit_per_minute: h.submit_per_minute,
            reads_per_second: h.reads_per_second,
            auth_failures: h.auth_failures,
            auth_window_seconds: h.auth_window_seconds,
            header_timeout_seconds: h.header_timeout_seconds,
            body_timeout_seconds: h.body_timeout_seconds,
            max_connections: h.max_connections,
            max_connections_per_address: h.max_connections_per_address,
            trusted_proxies,
        })
    }
}

/// What is wrong with `[http]` or an `[accounts.http]` section, found at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpConfigError {
    /// `listen` is not an address and port.
    #[error("[http]: listen {listen:?} is not an address:port")]
    Listen {
        /// The value as written.
        listen: String,
    },
    /// A non-loopback `listen` without `plain_http_on_network = true`.
    #[error("[http]: listen {listen:?}: gdprd speaks plain HTTP and bearer tokens would cross the network in clear; listen on loopback behind a TLS-terminating proxy, or set plain_http_on_network = true if the proxy is on another host")]
    PlainOnNetwork {
        /// The value as written.
        listen: String,
    },
    /// `public_url` is not an HTTP(S) URL.
    #[error("[http]: public_url {url:?} must start with http:// or https://")]
    PublicUrl {
        /// The value as written.
        url: String,
    },
    /// A size or rate limit is zero.
    #[error("[http]: max_body_bytes, max_lines, submit_per_minute, reads_per_second and auth_failures must be positive")]
    ZeroLimit,
    /// A timeout or connection limit is zero.
    #[error("[http]: header_timeout_seconds, body_timeout_seconds, max_connections and max_connections_per_address must be positive")]
    ZeroConnectionLimit,
    /// `max_connections_per_address` above `max_connections`.
    #[error("[http]: max_connections_per_address ({per_address}) is more than max_connections ({total})")]
    PerAddressAboveTotal {
        /// `max_connections_per_address`.
        per_address: usize,
        /// `max_connections`.
        total: usize,
    },
    /// A `trusted_proxies` entry that is neither an address nor a network.
    #[error(
        "[http]: trusted_proxies: {proxy:?} is not an address (10.0.0.7) or a network (10.0.0.0/8)"
    )]
    TrustedProxy {
        /// The entry as written.
        proxy: String,
    },
    /// An account's `token_hash` is not `sha256:` and 64 hex digits.
    #[error("account {account:?}, [accounts.http]: token_hash must be \"sha256:\" and 64 hex digits (`gdprd http-token` makes a token and its hash)")]
    TokenHash {
        /// The account.
        account: String,
    },
    /// A lookup key maps to something that is not an identifier gdprd reads.
    #[error("account {account:?}, [accounts.http]: lookup key {key:?} maps to {target:?}; use phone, email or ipaddr")]
    LookupTarget {
        /// The account.
        account: String,
        /// The lookup key.
        key: String,
        /// What it maps to, as written.
        target: String,
    },
    /// A lookup key is empty or given twice (keys match without regard to case).
    #[error("account {account:?}, [accounts.http]: lookup key {key:?} is empty or given twice (keys match without regard to case)")]
    LookupKey {
        /// The account.
        account: String,
        /// The lookup key.
        key: String,
    },
    /// An empty `shortcodes` entry: every request made with it would be refused whole.
    #[error("account {account:?}, [accounts.http]: shortcodes holds an empty shortcode; list SMS shortcodes such as \"11111\", or none")]
    EmptyShortcode {
        /// The account.
        account: String,
    },
    /// A `databases` id that cannot be part of a file name.
    #[error("account {account:?}, [accounts.http]: database id {database:?} must be 1-64 letters, digits or '_'")]
    DatabaseId {
        /// The account.
        account: String,
        /// The id as written.
        database: String,
    },
    /// A database names no store, or a store that is not one of the account's.
    #[error("account {account:?}, [accounts.http]: database {database:?} must name one or more of the account's stores ({stores}), not {named:?}")]
    DatabaseStores {
        /// The account.
        account: String,
        /// The database id.
        database: String,
        /// The stores it names.
        named: Vec<String>,
        /// The account's stores, for the message.
        stores: String,
    },
    /// An account's `default_country_code` is not 1-3 digits.
    #[error("account {account:?}, [accounts.http]: default_country_code must be 1-3 digits (no + or leading 0) or empty")]
    CountryCode {
        /// The account.
        account: String,
        /// The value as written.
        value: String,
    },
}

/// An address (`10.0.0.7`) or network (`10.0.0.0/8`) of `[http] trusted_proxies`.
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `[accounts.http]`: an account's HTTP front doors and the bearer token that opens them.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpAccountConfig {
    /// `sha256:<hex>` of the account's bearer token (`gdprd http-token` makes a token and this line).
    pub token_hash: String,
    /// Serves `POST /accounts/NAME/gdpr_erasure` and `/gdpr_access` (default true).
    pub jobs: bool,
    /// Serves `POST /lcm`, the agent privacy requests (default true).
    pub lcm: bool,
    /// Lookup-key names of job bodies and what each reads. Default: `EMAIL` → email, `MobileNumber` and
    /// `PhoneNumber` → phone, `IPAddress` → ipaddr.
    pub lookup_keys: LookupKeys,
    /// Country code for phone numbers that arrive without `+` and without it (`0`-prefixed national numbers,
    /// or fewer digits); empty (default) reads every `+`-less number as already international.
    pub default_country_code: String,
    /// The SMS shortcodes every HTTP request of the account searches (jobs carry none of their own); default
    /// none: SMS records are then not searched, as for a file without `shortcodes`.
    pub shortcodes: Vec<String>,
    /// The WCA paths' databases (`POST /rest/databases/{databaseId}/gdpr_erasure`): each database id and the
    /// stores a job for it runs against, a subset of the account's stores. Default none.
    pub databases: BTreeMap<String, Vec<String>>,
    /// The account id the account's batched jobs search with, as a file's `accountid`; default none (every
    /// account of a shared store). An agent request's `AccountNumber` takes its place.
    pub accountid: Option<String>,
}

/// `[accounts.http]` as written; [`RawHttpAccountConfig::validate`] makes the [`HttpAccountConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpAccountConfig {
    token_hash: String,
    #[serde(default = "de::yes")]
    jobs: bool,
    #[serde(default = "de::yes")]
    lcm: bool,
    #[serde(default = "default_lookup_keys")]
    lookup_keys: BTreeMap<String, String>,
    #[serde(default)]
    default_country_code: String,
    #[serde(default)]
    shortcodes: Vec<String>,
    #[serde(default)]
    accountid: Option<String>,
    #[serde(default)]
    databases: BTreeMap<String, Vec<String>>,
}

/// What a job body's lookup key reads: the value of a `lookup key, value` line is taken as this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupTarget {
    /// A device of this kind (`phone`, `email` or `ipaddr` in the config).
    Device(DeviceKind),
}

impl LookupTarget {
    /// Reads a `lookup_keys` value (`"phone"`, `"email"`, `"ipaddr"`).
    fn parse(text: &str) -> Option<LookupTarget> {
        DeviceKind::from_key(text).map(LookupTarget::Device)
    }
}

/// An account's lookup keys: each name, as written, with what it reads. Names are matched without regard to
/// case, and no two differ only by case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupKeys(BTreeMap<String, LookupTarget>);

impl LookupKeys {
    /// What the lookup key `name` reads, matched without regard to case.
    pub fn get(&self, name: &str) -> Option<&LookupTarget> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, target)| target)
    }

    /// The names as written, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
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

impl RawHttpAccountConfig {
    /// Checks the token hash, the country code and the databases of the account `account` (whose stores are
    /// `stores`), and reads its lookup keys.
    ///
    /// # Errors
    /// [`HttpConfigError`] naming the account (and the lookup key, for one that is unknown or given twice).
    pub(crate) fn validate(
        self,
        account: &str,
        stores: &[String],
    ) -> Result<HttpAccountConfig, HttpConfigError> {
        use HttpConfigError as E;
        let account = || account.to_owned();
        let hex = self.token_hash.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(E::TokenHash { account: account() });
        }
        let mut seen = HashSet::new();
        let mut lookup_keys = BTreeMap::new();
        for (key, target) in self.lookup_keys {
            let Some(parsed) = LookupTarget::parse(&target) else {
                return Err(E::LookupTarget {
                    account: account(),
                    key,
                    target,
                });
            };
            if key.trim().is_empty() || !seen.insert(key.to_lowercase()) {
                return Err(E::LookupKey {
                    account: account(),
                    key,
                });
            }
            lookup_keys.insert(key, parsed);
        }
        let cc = self.default_country_code;
        if cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) || cc.starts_with('0') {
            return Err(E::CountryCode {
                account: account(),
                value: cc,
            });
        }
        if self.shortcodes.iter().any(|c| c.trim().is_empty()) {
            return Err(E::EmptyShortcode { account: account() });
        }
        for (database, named) in &self.databases {
            let id_ok = !database.is_empty()
                && database.len() <= 64
                && database
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !id_ok {
                return Err(E::DatabaseId {
                    account: account(),
                    database: database.clone(),
                });
            }
            if named.is_empty() || named.iter().any(|n| !stores.contains(n)) {
                return Err(E::DatabaseStores {
                    account: account(),
                    database: database.clone(),
                    named: named.clone(),
                    stores: stores.join(", "),
                });
            }
        }
        Ok(HttpAccountConfig {
            token_hash: self.token_hash,
            jobs: self.jobs,
            lcm: self.lcm,
            lookup_keys: LookupKeys(lookup_keys),
            default_country_code: cc,
            shortcodes: self.shortcodes,
            accountid: self.accountid,
            databases: self.databases,
        })
    }
}

impl HttpAccountConfig {
    /// The token hash's hex digits in lower case, for telling accounts' tokens apart.
    pub(crate) fn token_digest(&self) -> String {
        self.token_hash
            .strip_prefix("sha256:")
            .unwrap_or_default()
            .to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::LookupTarget;
    use crate::config::testing::{err, load, DEMO};
    use crate::requests::DeviceKind;
    use std::net::SocketAddr;
    use std::time::Duration;

    #[test]
    fn wca_databases_name_the_accounts_own_stores() {
        let with = |databases: &str| {
            DEMO.replace(
                "default_country_code = \"1\"\n\n# Contact lists",
                &format!(
                    "default_country_code = \"1\"\ndatabases = {databases}\n\n# Contact lists"
                ),
            )
        };
        let c = load(&with(
            "{ 10091 = [\"demo\"], crm_2 = [\"demo\", \"lists\"] }",
        ))
        .expect("loads");
        let h = c.accounts[0].http.as_ref().expect("http");
        assert_eq!(h.databases["10091"], vec!["demo".to_owned()]);
        for (databases, want) in [
            (
                "{ 10091 = [\"nope\"] }",
                "database \"10091\" must name one or more of the account's stores (demo, lists)",
            ),
            ("{ 10091 = [] }", "must name one or more"),
            (
                "{ \"10-91\" = [\"demo\"] }",
                "database id \"10-91\" must be 1-64 letters, digits or '_'",
            ),
            (
                "{}\nshortcodes = [\"11111\", \" \"]",
                "shortcodes holds an empty shortcode",
            ),
        ] {
            let text = with(databases);
            assert_ne!(text, DEMO);
            let e = err(&text);
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn http_front_doors_are_checked() {
        let c = load(DEMO).expect("demo");
        assert_eq!(
            c.http.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 8080)))
        );
        let h = c.accounts[0].http.as_ref().expect("demo account has http");
        assert!(h.jobs && h.lcm);
        assert_eq!(
            h.lookup_keys.get("EMAIL"),
            Some(&LookupTarget::Device(DeviceKind::Email))
        );
        assert_eq!(
            h.lookup_keys.get("mobilenumber"),
            Some(&LookupTarget::Device(DeviceKind::Phone)),
            "keys match without regard to case"
        );
        let cases = [
            (DEMO.replace("127.0.0.1:8080", "0.0.0.0:8080"), "plain HTTP"),
            (DEMO.replace("127.0.0.1:8080", "nowhere"), "not an address:port"),
            (DEMO.replace("token_hash = \"sha256:", "token_hash = \"md5:"), "64 hex digits"),
            (DEMO.replace("default_country_code = \"1\"\n\n# Contact lists", "default_country_code = \"+1\"\n\n# Contact lists"), "default_country_code must be"),
            (DEMO.replace("default_country_code = \"1\"\n\n# Contact lists", "default_country_code = \"1\"\nlookup_keys = { Fax = \"fax\" }\n\n# Contact lists"), "lookup key \"Fax\" maps to \"fax\"; use phone, email or ipaddr"),
            (DEMO.replace("default_country_code = \"1\"\n\n# Contact lists", "default_country_code = \"1\"\nlookup_keys = { Fax = \"phone\", FAX = \"phone\" }\n\n# Contact lists"), "lookup key \"Fax\" is empty or given twice"),
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
        assert_eq!(c.http.header_timeout_seconds, Duration::from_secs(10));
    }
}
