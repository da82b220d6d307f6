//! "Is this device suppressed?", for import pipelines. A forget leaves, in a table mapped with
//! `suppression = true`, the device's keyed hash instead of the device, so the list keeps working without
//! holding the person in clear. [`suppressed`] (and `gdprd suppressed`) looks a device up both ways: in clear,
//! by the store's matching rules, and by its keyed hash with the installation's secret.

use crate::audit::Secret;
use crate::config::Config;
use crate::requests::{Device, DeviceError, DeviceKind};
use crate::stores::{self, Batch, Scope, StoreError, Target};
use tokio_util::sync::CancellationToken;

/// Why the lookup could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum SuppressionError {
    /// No such account in the config.
    #[error("no account {0:?} in the config")]
    UnknownAccount(String),
    /// The installation secret could not be read.
    #[error("cannot read the installation secret in the state folder")]
    Secret(#[from] std::io::Error),
    /// The account names a store that is not in the config.
    #[error("store {0:?}: not configured")]
    UnknownStore(String),
    /// A store could not be asked.
    #[error("store {store:?}: {source}")]
    Store {
        /// The store's name.
        store: String,
        /// What went wrong.
        source: StoreError,
    },
}

/// Reads a device the way an operator types it: `phone:…`, `email:…`, `ipaddr:…`, or unprefixed (an `@` makes
/// an email, a leading `+` a phone, anything else an IP address).
///
/// # Errors
/// The device rule that the value breaks.
pub fn parse_device(text: &str) -> Result<Device, DeviceError> {
    let (kind, value) = match text.split_once(':') {
        Some(("phone", v)) => (DeviceKind::Phone, v),
        Some(("email", v)) => (DeviceKind::Email, v),
        Some(("ipaddr", v)) => (DeviceKind::Ipaddr, v),
        _ if text.contains('@') => (DeviceKind::Email, text),
        _ if text.starts_with('+') => (DeviceKind::Phone, text),
        _ => (DeviceKind::Ipaddr, text),
    };
    Device::new(kind, value)
}

/// For each device, whether a suppression list in one of `account`'s stores holds it.
///
/// # Errors
/// [`SuppressionError`] when the account is unknown or a store cannot answer.
pub fn suppressed(
    config: &Config,
    account: &str,
    devices: &[Device],
) -> Result<Vec<bool>, SuppressionError> {
    let account = config
        .account(account)
        .ok_or_else(|| SuppressionError::UnknownAccount(account.to_owned()))?;
    // The same secret as the daemon's: made here if the daemon has never run.
    std::fs::create_dir_all(&config.state_dir)?;
    let secret = Secret::load_or_create(&config.state_dir)?;
    let batch = Batch {
        targets: devices
            .iter()
            .map(|d| Target {
                kind: d.kind(),
                key: d.match_key(),
                scope: 0,
                digest: secret.device_hmac(d),
            })
            .collect(),
        scopes: vec![Scope {
            accountid: None,
            enterprise: Vec::new(),
            shortcodes: Vec::new(),
        }],
    };
    let mut out = vec![false; devices.len()];
    for name in &account.stores {
        let failed = |source| SuppressionError::Store {
            store: name.clone(),
            source,
        };
        let store_config = config
            .stores
            .get(name)
            .ok_or_else(|| SuppressionError::UnknownStore(name.clone()))?;
        let mut store =
            stores::open(name, store_config, &CancellationToken::new()).map_err(failed)?;
        for (slot, hit) in out
            .iter_mut()
            .zip(store.suppressed(&batch).map_err(failed)?)
        {
            *slot |= hit;
        }
    }
    Ok(out)
}
