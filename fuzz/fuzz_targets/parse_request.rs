//! Fuzzes the request parser and the name rules with arbitrary bytes: neither may panic, and every file that
//! parses must produce an execution log that is valid JSON holding the requests verbatim.

#![no_main]

use gdprd::requests::{admit_name, parse, Kind, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    for kind in [Kind::Forget, Kind::Export] {
        if let Ok(file) = parse::parse(data, kind, &limits) {
            assert!(file.contact_count() <= limits.max_contacts);
            let log = gdprd::results::log::execution_log(&file.raw_requests, |_, _| "SUCCESS".into());
            let value: serde_json::Value = serde_json::from_slice(&log).expect("the execution log is JSON");
            assert_eq!(value["requests"], serde_json::Value::Array(file.raw_requests.clone()));
        }
    }
    let name: String = String::from_utf8_lossy(data).chars().take(64).collect();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 22).expect("a date");
    let _ = admit_name(&name, today, "UTC");
});
