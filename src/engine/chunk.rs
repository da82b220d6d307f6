//! A completed chunk: each contact's response from every store's part, and the audit entries, as the journal
//! records them in one transaction.

use super::isolation::StoreOutcome;
use super::plan::{Invalid, Position};
use super::{Execution, Response, StoreFailure};
use crate::journal::AuditEntry;
use crate::requests::Kind;
use chrono::Utc;
use serde_json::Value;
use std::ops::Range;

/// What a completed chunk journals: each contact's response, and the audit entries.
pub(super) type Journal = (Vec<(Position, Response)>, Vec<AuditEntry>);

/// One completed batch of a file, ready to journal.
pub(super) struct Chunk<'a> {
    /// Its targets, as a range of the plan's.
    pub(super) range: Range<usize>,
    /// Each store's part, in the account's order.
    pub(super) per_store: &'a [StoreOutcome],
    /// The first chunk also answers the contacts that are not valid devices.
    pub(super) with_invalid: bool,
    /// When the chunk started.
    pub(super) started: chrono::DateTime<Utc>,
}

/// A target's response from every store's part: an error when any store failed for it.
pub(super) fn response(kind: Kind, per_store: &[StoreOutcome], target: usize) -> Response {
    let outcomes = per_store.iter().filter_map(|s| s.targets.get(target));
    let failures: Vec<StoreFailure> = outcomes.clone().filter_map(|t| t.clone().err()).collect();
    let found: u64 = outcomes.filter_map(|t| t.as_ref().ok()).sum();
    if !failures.is_empty() {
        Response::StoresFailed { kind, failures }
    } else if found > 0 {
        Response::Success
    } else {
        Response::NotFound
    }
}

/// What each store did for a target, for the audit trail: rows found, or `"error"`.
pub(super) fn stores_json(per_store: &[StoreOutcome], target: usize) -> String {
    stores_value(per_store, target).to_string()
}

/// What each store did for a target, as a JSON object: rows found, or `"error"`.
pub(super) fn stores_value(per_store: &[StoreOutcome], target: usize) -> Value {
    let map: serde_json::Map<String, Value> = per_store
        .iter()
        .map(|s| {
            let v = match s.targets.get(target) {
                Some(Err(_)) => Value::from("error"),
                Some(Ok(found)) => Value::from(*found),
                None => Value::from(0),
            };
            (s.name.clone(), v)
        })
        .collect();
    Value::Object(map)
}

/// Target `target`'s part of each store in `per_store`, after what each store did for it before (`prior`, from
/// the audit trail of the file and its earlier retries): one store outcome per store, each of one target. A
/// store that failed before and is not run again keeps its error.
fn with_prior(
    prior: Option<&std::collections::BTreeMap<String, Option<u64>>>,
    per_store: &[StoreOutcome],
    target: usize,
) -> Vec<StoreOutcome> {
    let mut merged: Vec<StoreOutcome> = prior
        .into_iter()
        .flatten()
        .filter(|(store, _)| !per_store.iter().any(|s| &s.name == *store))
        .map(|(store, found)| StoreOutcome {
            name: store.clone(),
            targets: vec![found.ok_or_else(|| StoreFailure {
                store: store.clone(),
                unavailable: false,
                reason: "failed before and not run again by this retry".to_owned(),
            })],
        })
        .collect();
    merged.extend(per_store.iter().map(|s| StoreOutcome {
        name: s.name.clone(),
        targets: s.targets.get(target).cloned().into_iter().collect(),
    }));
    merged
}

impl Chunk<'_> {
    /// The responses and audit entries of the chunk of file `ex`.
    pub(super) fn journal(self, ex: &Execution<'_>) -> Journal {
        let Chunk {
            range,
            per_store,
            with_invalid,
            started,
        } = self;
        let Execution {
            account,
            name,
            kind,
            file,
            plan,
            ..
        } = *ex;
        let finished = Utc::now();
        let action = kind.prefix().to_owned();
        let mut responses = Vec::new();
        let mut audit = Vec::new();
        for (j, planned) in plan.targets[range].iter().enumerate() {
            // A retry answers from what every store last did for the device: the stores it ran on now, and
            // what the others did before.
            let merged = ex
                .prior
                .map(|prior| with_prior(prior.get(&planned.target.digest), per_store, j));
            let (per_store, j) = match &merged {
                Some(merged) => (merged.as_slice(), 0),
                None => (per_store, j),
            };
            let response = response(kind, per_store, j);
            responses.extend(planned.positions.iter().map(|p| (*p, response.clone())));
            audit.push(AuditEntry {
                account: account.name.clone(),
                file: name.to_owned(),
                requestcase: file.requests[planned.request].requestcase.clone(),
                device_type: Some(planned.device.kind().key().to_owned()),
                device_hmac: Some(planned.target.digest.clone()),
                action: action.clone(),
                stores: stores_json(per_store, j),
                outcome: response.to_string(),
                started,
                finished,
            });
        }
        if with_invalid {
            for Invalid {
                position: (r, c),
                response,
                device_type,
            } in &plan.invalid
            {
                responses.push(((*r, *c), response.clone()));
                audit.push(AuditEntry {
                    account: account.name.clone(),
                    file: name.to_owned(),
                    requestcase: file.requests[*r].requestcase.clone(),
                    device_type: device_type.clone(),
                    device_hmac: None,
                    action: action.clone(),
                    stores: "{}".into(),
                    outcome: response.to_string(),
                    started,
                    finished,
                });
            }
        }
        (responses, audit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_follow_the_stores() {
        let ok = |found: Vec<u64>| StoreOutcome::found("a", found);
        let response_text =
            |kind, per_store: &[StoreOutcome], t| response(kind, per_store, t).to_string();
        assert_eq!(response_text(Kind::Forget, &[ok(vec![2, 0])], 0), "SUCCESS");
        assert_eq!(
            response_text(Kind::Forget, &[ok(vec![2, 0])], 1),
            "SUCCESS: not found"
        );
        let boom = StoreFailure {
            store: "b".to_owned(),
            unavailable: false,
            reason: "boom".to_owned(),
        };
        let failed = StoreOutcome {
            name: "b".to_owned(),
            targets: vec![Err(boom), Ok(0)],
        };
        let text = response_text(Kind::Forget, &[ok(vec![2, 0]), failed.clone()], 0);
        assert!(
            text.starts_with("ERROR: store \"b\" failed: boom;"),
            "{text}"
        );
        assert!(text.contains("resubmit"));
        assert_eq!(
            response_text(Kind::Forget, &[ok(vec![2, 1]), failed.clone()], 1),
            "SUCCESS",
            "a store's error for one target is not another's"
        );
        assert_eq!(
            stores_json(&[ok(vec![2, 1]), failed], 0),
            r#"{"a":2,"b":"error"}"#
        );
    }
}
