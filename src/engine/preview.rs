//! A preview: what a file would do, without doing it (`gdprd preview`, `POST /accounts/{account}/gdpr_preview`).
//!
//! The file is parsed and planned as the engine plans it, then every store of the account counts what the request
//! would do for all its devices at once ([`Store::preview`]: the same scan, in a read snapshot, locking nothing
//! and calling nothing that changes), and each contact's would-be response is made from those counts by the same
//! rule as a run's ([`super::chunk::response`]). A forget of several chunks answers each contact from what the
//! stores held when it started (its survey), which is what the preview sees; so the preview's responses and
//! counts are those the forget would journal, if the stores do not change in between.
//!
//! Nothing is written: the journal is not opened (no ledger entry, no state-folder lock, so it works while the
//! daemon runs), nothing lands in `GDPR_Result`, and the report holds no personal data: contacts are named by
//! their position in the file and their device type, tables by name, with counts.

use super::chunk::{response, stores_value};
use super::isolation::StoreOutcome;
use super::notice::Refusal;
use super::plan::Plan;
use super::{Response, StoreFailure};
use crate::config::{AccountConfig, Config};
use crate::requests::{parse, FileName, Kind, Limits};
use crate::stores::{self, Batch, StorePreview, TablePreview};
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use tokio_util::sync::CancellationToken;

/// What a file would do, store by store and contact by contact.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The account whose stores were asked.
    pub account: String,
    /// `FORGET`, `EXPORT` or `PSEUDONYMISE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the file would be refused whole: the execution log's `error`; nothing else is then reported.
    pub refused: Option<String>,
    /// What each of the account's stores would do, in the account's order.
    pub stores: Vec<StoreReport>,
    /// Every contact's would-be response, in file order.
    pub contacts: Vec<ContactPreview>,
    /// How many contacts would be answered each way.
    pub counts: PreviewCounts,
}

/// What one store would do.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    /// The store's name.
    pub store: String,
    /// Why the store could not be asked (every contact then gets an error from it), as a contact's response
    /// would name it.
    pub error: Option<String>,
    /// Per table (CSV list, callback service): rows erased, deleted, masked or exported, callbacks cancelled,
    /// recordings deleted.
    pub tables: Vec<TablePreview>,
}

/// One contact's would-be response.
#[derive(Debug, Clone, Serialize)]
pub struct ContactPreview {
    /// Its request's position in the file, from 1.
    pub request: usize,
    /// Its position in the request's `contacts`, from 1.
    pub contact: usize,
    /// `phone`, `email` or `ipaddr`; absent for a contact that is not one device.
    pub device_type: Option<String>,
    /// The response the execution log would carry (`SUCCESS`, `SUCCESS: not found`, `ERROR: …`).
    pub response: String,
    /// Per store: rows found for it, or `"error"`.
    pub stores: Value,
}

/// How many contacts would be answered each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PreviewCounts {
    /// `SUCCESS`.
    pub success: u64,
    /// `SUCCESS: not found`.
    pub not_found: u64,
    /// `ERROR: …`.
    pub errors: u64,
}

/// What a request file named `name` asks for: its name's prefix (`forget-`, `export-`, `pseudonymise-`, with or
/// without a valid date after it), else its first request's `type`.
pub fn kind_of(name: &str, bytes: &[u8], limits: &Limits) -> Option<Kind> {
    if let Ok(named) = FileName::parse(name) {
        return Some(named.kind);
    }
    let prefixed = [Kind::Forget, Kind::Export, Kind::Pseudonymise]
        .into_iter()
        .find(|k| name.starts_with(&format!("{}-", k.prefix())));
    if prefixed.is_some() {
        return prefixed;
    }
    let value = parse::parse_json(bytes, limits).ok()?;
    let first = value.get("requests")?.get(0)?;
    Kind::from_type(first.get("type")?.as_str()?)
}

/// Previews the request file `bytes` of `kind` against `account`'s stores. A store that waits between tries (a
/// callback service) stops waiting once `stop` is cancelled.
pub fn preview(
    config: &Config,
    account: &AccountConfig,
    kind: Kind,
    bytes: &[u8],
    stop: &CancellationToken,
) -> Preview {
    let mut out = Preview {
        account: account.name.clone(),
        kind: kind.as_type().to_owned(),
        refused: None,
        stores: Vec::new(),
        contacts: Vec::new(),
        counts: PreviewCounts::default(),
    };
    let file = match parse::parse(bytes, kind, &config.limits.request_limits()) {
        Ok(file) => file,
        Err(e) => {
            out.refused = Some(Refusal::File(e).to_string());
            return out;
        }
    };
    // Digests are what a forget writes into suppression lists; counting does not need them.
    let plan = Plan::new(&file, |_| String::new());
    let batch = plan.batch(0..plan.targets.len());
    let mut outcomes = Vec::with_capacity(account.stores.len());
    for name in &account.stores {
        let (outcome, report) = ask(config, name, kind, &batch, stop);
        outcomes.push(outcome);
        out.stores.push(report);
    }
    let mut answered: Vec<(usize, usize, Option<String>, Response, Value)> = Vec::new();
    for (t, planned) in plan.targets.iter().enumerate() {
        let r = response(kind, &outcomes, t);
        let device_type = Some(planned.device.kind().key().to_owned());
        for &(req, c) in &planned.positions {
            answered.push((
                req,
                c,
                device_type.clone(),
                r.clone(),
                stores_value(&outcomes, t),
            ));
        }
    }
    for invalid in &plan.invalid {
        let (req, c) = invalid.position;
        let r = invalid.response.clone();
        answered.push((
            req,
            c,
            invalid.device_type.clone(),
            r,
            Value::Object(Default::default()),
        ));
    }
    answered.sort_by_key(|a| (a.0, a.1));
    for (req, c, device_type, r, stores) in answered {
        match r.kind() {
            super::ResponseKind::Success => out.counts.success += 1,
            super::ResponseKind::NotFound => out.counts.not_found += 1,
            super::ResponseKind::Error => out.counts.errors += 1,
        }
        out.contacts.push(ContactPreview {
            request: req + 1,
            contact: c + 1,
            device_type,
            response: r.to_string(),
            stores,
        });
    }
    out
}

/// Asks the store `name` what it would do for `batch`: its part of each target's response, and its report.
fn ask(
    config: &Config,
    name: &str,
    kind: Kind,
    batch: &Batch,
    stop: &CancellationToken,
) -> (StoreOutcome, StoreReport) {
    let n = batch.targets.len();
    let mut report = StoreReport {
        store: name.to_owned(),
        error: None,
        tables: Vec::new(),
    };
    let failed = |report: &mut StoreReport, failure: StoreFailure| {
        report.error = Some(failure.to_string());
        StoreOutcome::failed(name, n, failure)
    };
    let Some(store_config) = config.stores.get(name) else {
        let outcome = failed(
            &mut report,
            StoreFailure::unavailable(name, "not configured"),
        );
        return (outcome, report);
    };
    // As the engine answers them: a store that cannot be opened is unavailable, a failed preview as it failed.
    let mut store = match stores::open(name, store_config, stop) {
        Ok(store) => store,
        Err(e) => {
            let outcome = failed(&mut report, StoreFailure::unavailable(name, e.to_string()));
            return (outcome, report);
        }
    };
    let StorePreview {
        found,
        refused,
        tables,
    } = match store.preview(batch, kind) {
        Ok(p) => p,
        Err(e) => {
            let outcome = failed(&mut report, StoreFailure::from_error(name, &e));
            return (outcome, report);
        }
    };
    report.tables = tables;
    let outcome = StoreOutcome {
        name: name.to_owned(),
        targets: (0..n)
            .map(|t| match refused.get(&t) {
                Some(e) => Err(StoreFailure::from_error(name, e)),
                None => Ok(found.get(t).copied().unwrap_or(0)),
            })
            .collect(),
    };
    (outcome, report)
}

impl fmt::Display for Preview {
    /// The report `gdprd preview` prints: per store and table what would happen, then every contact's response.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "preview of a {} file for account {} (nothing was changed)",
            self.kind, self.account
        )?;
        if let Some(refused) = &self.refused {
            return writeln!(f, "the file would be refused whole: {refused}");
        }
        for store in &self.stores {
            writeln!(f, "store {}", store.store)?;
            if let Some(error) = &store.error {
                writeln!(f, "  {error}")?;
            }
            for t in &store.tables {
                write!(f, "  {:<24} {:>8} rows {}", t.table, t.rows, past(t.action))?;
                if t.callbacks_cancelled > 0 {
                    write!(f, ", {} callbacks cancelled first", t.callbacks_cancelled)?;
                }
                if t.recordings_deleted > 0 {
                    write!(f, ", {} recordings deleted", t.recordings_deleted)?;
                }
                writeln!(f)?;
            }
        }
        writeln!(f, "contacts")?;
        for c in &self.contacts {
            writeln!(
                f,
                "  request {} contact {} ({}): {}",
                c.request,
                c.contact,
                c.device_type.as_deref().unwrap_or("no device"),
                c.response
            )?;
        }
        let PreviewCounts {
            success,
            not_found,
            errors,
        } = self.counts;
        writeln!(
            f,
            "{success} SUCCESS, {not_found} SUCCESS: not found, {errors} ERROR"
        )
    }
}

/// An action as the text report says it.
fn past(action: stores::Action) -> &'static str {
    match action {
        stores::Action::Erase => "erased (anonymised)",
        stores::Action::Delete => "deleted",
        stores::Action::Mask => "masked",
        stores::Action::Export => "exported",
    }
}
