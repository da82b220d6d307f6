//! The part of a store's config every store shares: how its tables (or CSV lists) map personal data
//! (`[[stores.NAME.tables]]`, [`TableMapping`]) and how its phone numbers are written ([`PhoneConfig`]), with the
//! checks that need no I/O. `check-config` later compares a mapping with the store's real catalogue.

use super::StoreConfigError;
use crate::config::de::yes;
use crate::requests::DeviceKind;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};

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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    pub fn device_columns(&self) -> Vec<(DeviceKind, &str)> {
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

/// A SQL identifier we accept unquoted in a mapping: letters, digits and `_`, not starting with a digit.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// How a store names its tables and columns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    /// SQL identifiers: letters, digits and `_`.
    Identifiers,
    /// File-name patterns for tables, CSV header names for columns.
    FilePatterns,
}

/// Checks a store's phone settings and table mappings without I/O.
///
/// # Errors
/// [`StoreConfigError`] naming the store, and the table and column where there is one.
pub(crate) fn validate_tables(
    store: &str,
    tables: &[TableMapping],
    phones: &PhoneConfig,
    names: Names,
) -> Result<(), StoreConfigError> {
    use StoreConfigError as E;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let store = || store.to_owned();
    if !digits(&phones.default_country_code) || phones.default_country_code.len() > 3 {
        return Err(E::CountryCode {
            store: store(),
            value: phones.default_country_code.clone(),
        });
    }
    if !digits(&phones.trunk_prefix) || !digits(&phones.international_prefix) {
        return Err(E::PhonePrefix { store: store() });
    }
    if tables.is_empty() {
        return Err(E::NoTables { store: store() });
    }
    let mut seen = HashSet::new();
    for t in tables {
        let table = || t.name.clone();
        match names {
            Names::Identifiers if !is_identifier(&t.name) => {
                return Err(E::TableName {
                    store: store(),
                    table: table(),
                });
            }
            Names::FilePatterns
                if t.name.is_empty() || t.name.contains(['/', '\\']) || t.name.starts_with('.') =>
            {
                return Err(E::FilePattern {
                    store: store(),
                    table: table(),
                });
            }
            _ => {}
        }
        if !seen.insert(&t.name) {
            return Err(E::TableTwice {
                store: store(),
                table: table(),
            });
        }
        if t.device_columns().is_empty() {
            return Err(E::NoDeviceColumn {
                store: store(),
                table: table(),
            });
        }
        if t.suppression && t.forget == ForgetMode::Delete {
            return Err(E::SuppressionDeleted {
                store: store(),
                table: table(),
            });
        }
        for c in t.mask.iter().flatten() {
            let mapped = t.device_columns().iter().any(|(_, d)| d == c) || t.personal.contains(c);
            if !mapped {
                return Err(E::MaskUnmapped {
                    store: store(),
                    table: table(),
                    column: c.clone(),
                });
            }
        }
        for c in &t.pseudonymise {
            let column = c.clone();
            if t.device_columns().iter().any(|(_, d)| d == c) {
                return Err(E::PseudonymiseDevice {
                    store: store(),
                    table: table(),
                    column,
                });
            }
            if !t.personal.contains(c) {
                return Err(E::PseudonymiseUnmapped {
                    store: store(),
                    table: table(),
                    column,
                });
            }
            if t.forget == ForgetMode::Delete {
                return Err(E::PseudonymiseDeleted {
                    store: store(),
                    table: table(),
                });
            }
        }
        let mut cols = HashSet::new();
        for c in t.columns() {
            let ok = match names {
                Names::Identifiers => is_identifier(c),
                Names::FilePatterns => !c.is_empty() && !c.chars().any(char::is_control),
            };
            if !ok {
                return Err(E::ColumnName {
                    store: store(),
                    table: table(),
                    column: c.clone(),
                });
            }
            if !cols.insert(c) {
                return Err(E::ColumnTwice {
                    store: store(),
                    table: table(),
                    column: c.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{err, load, DEMO};
    use crate::config::{StoreConfig, TlsMode};
    use std::path::Path;

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
            (
                "postgres",
                include_str!("../../fixtures/postgres/store.toml"),
            ),
            ("mysql", include_str!("../../fixtures/mysql/store.toml")),
        ] {
            assert!(
                !text.contains("pseudonymise = [\"dialed_number\"]"),
                "{name} fixture masks a device on forget"
            );
        }
    }
}
