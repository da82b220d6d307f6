//! Fuzzes the request parser and the name rules with arbitrary bytes. Findings (panics):
//! - `parse` or `admit_name` panics on some input;
//! - the same bytes parse both as a FORGET file and as an EXPORT file (every request's `type` must match the
//!   name's kind, and a file holds at least one request);
//! - a file that parses holds more contacts than `Limits::default()` allows;
//! - the execution log of a file that parses is not valid JSON, does not hold the requests verbatim, or lacks a
//!   `response` on some contact.

#![no_main]

use gdprd::requests::{admit_name, parse, Kind, Limits};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let forget = parse::parse(data, Kind::Forget, &limits);
    let export = parse::parse(data, Kind::Export, &limits);
    assert!(
        !(forget.is_ok() && export.is_ok()),
        "the same bytes parse as FORGET and as EXPORT"
    );
    for file in [forget, export].into_iter().flatten() {
        assert!(file.contact_count() <= limits.max_contacts);
        assert_eq!(file.requests.len(), file.raw_requests.len());
        let log =
            gdprd::results::log::execution_log(&file.raw_requests, |_, _| "SUCCESS".into());
        let value: Value = serde_json::from_slice(&log).expect("the execution log is valid JSON");
        assert_eq!(
            value["requests"],
            Value::Array(file.raw_requests.clone()),
            "the execution log holds the requests verbatim"
        );
        let result = value["result"].as_array().expect("a result array");
        assert_eq!(result.len(), file.requests.len());
        for (request, parsed) in result.iter().zip(&file.requests) {
            let contacts = request["contacts"].as_array().expect("contacts in the result");
            assert_eq!(contacts.len(), parsed.contacts.len());
            for contact in contacts {
                assert_eq!(contact["response"], "SUCCESS", "every contact answered");
            }
        }
    }
    let name: String = String::from_utf8_lossy(data).chars().take(64).collect();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 22).expect("a date");
    let _ = admit_name(&name, today, "UTC");
});
