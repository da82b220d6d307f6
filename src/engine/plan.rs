//! A file's plan: its valid devices, deduplicated per request, each with every contact it answers, and the
//! contacts that are not devices. The engine runs the plan's targets in chunks against the stores.

use super::Response;
use crate::requests::{Device, RequestFile};
use crate::stores::{Batch, Scope, Target};
use serde_json::Value;
use std::collections::HashMap;
use std::ops::Range;

/// A contact's place in a file: (request, contact), both 0-based.
pub(super) type Position = (usize, usize);

/// One device of a file to run against the stores: the target the stores get, and where it came from.
pub(super) struct Planned {
    /// What the stores match (the device's key, its request's scope, its digest).
    pub(super) target: Target,
    /// The device.
    pub(super) device: Device,
    /// The index of its request.
    pub(super) request: usize,
    /// Every (request, contact) it answers: the same device twice in one request runs once.
    pub(super) positions: Vec<Position>,
    /// The device text as the customer wrote it, first time.
    pub(super) given: String,
}

/// A contact that is not run: not a valid device, or in a request its account's rules refuse. It is answered
/// without running.
pub(super) struct Invalid {
    /// Where it is in the file.
    pub(super) position: Position,
    /// Its answer: [`Response::Malformed`] or [`Response::Refused`].
    pub(super) response: Response,
    /// The key it was given under (`phone`, `email`, `ipaddr`), when it has exactly one of them.
    pub(super) device_type: Option<String>,
}

/// A file's valid devices, deduplicated per request, and the contacts that are not devices.
pub(super) struct Plan {
    /// The devices to run, in the order of their first contact.
    pub(super) targets: Vec<Planned>,
    /// Each request's scope, by request index.
    pub(super) scopes: Vec<Scope>,
    /// The contacts that are not run.
    pub(super) invalid: Vec<Invalid>,
}

impl Plan {
    /// Plans `file`; `digest` gives each device's digest for the audit trail and the stores.
    pub(super) fn new(file: &RequestFile, digest: impl Fn(&Device) -> String) -> Plan {
        let mut plan = Plan {
            targets: Vec::new(),
            scopes: Vec::new(),
            invalid: Vec::new(),
        };
        for (r, (request, raw)) in file.requests.iter().zip(&file.raw_requests).enumerate() {
            plan.scopes.push(Scope {
                accountid: request.accountid.clone(),
                enterprise: request.enterprise.clone(),
                shortcodes: request.shortcodes.clone(),
            });
            let mut seen: HashMap<String, usize> = HashMap::new();
            for (c, contact) in request.contacts.iter().enumerate() {
                let device = match (contact, request.refused) {
                    (_, Some(e)) => {
                        plan.invalid.push(Invalid {
                            position: (r, c),
                            response: Response::Refused(e),
                            device_type: device_type_of(raw, c),
                        });
                        continue;
                    }
                    (Ok(d), None) => d,
                    (Err(e), None) => {
                        plan.invalid.push(Invalid {
                            position: (r, c),
                            response: Response::Malformed(e.clone()),
                            device_type: device_type_of(raw, c),
                        });
                        continue;
                    }
                };
                let key = device.match_key();
                if let Some(&t) = seen.get(&key) {
                    plan.targets[t].positions.push((r, c));
                    continue;
                }
                seen.insert(key.clone(), plan.targets.len());
                plan.targets.push(Planned {
                    target: Target {
                        kind: device.kind(),
                        key,
                        scope: r,
                        digest: digest(device),
                    },
                    device: device.clone(),
                    request: r,
                    positions: vec![(r, c)],
                    given: given_value(raw, c).unwrap_or_else(|| device.canonical().to_owned()),
                });
            }
        }
        plan
    }

    /// The targets in `range` as a batch for the stores.
    pub(super) fn batch(&self, range: Range<usize>) -> Batch {
        Batch {
            targets: self.targets[range]
                .iter()
                .map(|p| p.target.clone())
                .collect(),
            scopes: self.scopes.clone(),
        }
    }

    /// Chunk ranges over the targets; always at least one, so invalid contacts are journaled too.
    pub(super) fn chunks(&self, size: usize) -> Vec<Range<usize>> {
        let n = self.targets.len();
        if n == 0 {
            return std::iter::once(0..0).collect();
        }
        (0..n)
            .step_by(size.max(1))
            .map(|s| s..(s + size).min(n))
            .collect()
    }
}

fn given_value(raw_request: &Value, contact: usize) -> Option<String> {
    let contact = raw_request.get("contacts")?.get(contact)?.as_object()?;
    contact.values().next()?.as_str().map(str::to_owned)
}

fn device_type_of(raw_request: &Value, contact: usize) -> Option<String> {
    let c = raw_request.get("contacts")?.get(contact)?.as_object()?;
    match c.keys().next().map(String::as_str) {
        Some(k @ ("phone" | "email" | "ipaddr")) if c.len() == 1 => Some(k.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::{parse, Kind};

    #[test]
    fn plan_dedupes_devices_within_a_request() {
        let text = r#"{"requests":[
            {"type":"FORGET","contacts":[{"email":"A@b.com"},{"email":"a@B.com"},{"phone":"617"}]},
            {"type":"FORGET","contacts":[{"email":"a@b.com"}]}]}"#;
        let file =
            parse::parse(text.as_bytes(), Kind::Forget, &Default::default()).expect("parses");
        let plan = Plan::new(&file, |_| String::new());
        assert_eq!(
            plan.targets.len(),
            2,
            "same device twice in one request runs once; per request it runs again"
        );
        assert_eq!(plan.targets[0].positions, vec![(0, 0), (0, 1)]);
        assert_eq!(plan.invalid.len(), 1);
        assert_eq!(plan.targets[0].given, "A@b.com");
        assert_eq!(plan.chunks(1), vec![0..1, 1..2]);
        assert_eq!(plan.chunks(500), vec![0..2]);
    }
}
