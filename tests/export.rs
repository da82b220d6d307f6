//! Export through the whole daemon: the seed's sample as an export, read back from the archive.

use crate::harness::{fixture, responses, successes, today, Demo};
use std::collections::BTreeMap;
use std::io::Read;

fn archive_tables(path: &std::path::Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).expect("archive")).expect("zip");
    let mut tables = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).expect("entry");
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("csv text");
        let rows = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.expect("csv record").iter().map(str::to_owned).collect())
            .collect();
        tables.insert(entry.name().to_owned(), rows);
    }
    tables
}

#[test]
fn seed_export_archive_holds_exactly_the_matching_rows() {
    let demo = Demo::new(300, |_| {});
    let daemon = demo.start();
    let stem = format!("export-{}_090000", today());
    demo.submit(
        &format!("{stem}.json"),
        &std::fs::read(fixture("requests/seed-export.json")).expect("fixture"),
    );
    let log = demo.result_json(&format!("{stem}-execution-log.json"));
    // Progress: a line per store, with its rows.
    let progress: Vec<String> = daemon
        .log_text()
        .lines()
        .filter(|l| l.contains("export progress"))
        .map(str::to_owned)
        .collect();
    assert_eq!(progress.len(), 2, "{progress:?}");
    assert!(
        progress[0].contains("store=demo") && progress[0].contains("rows=32"),
        "{progress:?}"
    );
    assert!(
        progress[1].contains("stores_done=2 stores=2"),
        "{progress:?}"
    );
    let got = responses(&log);
    assert_eq!(successes(&got), 11, "{got:?}");
    assert!(got[7].starts_with("ERROR: incorrect device format"));

    let tables = archive_tables(&demo.wait_result(&format!("{stem}-archive.zip")));
    let counts: BTreeMap<&str, usize> = tables
        .iter()
        .map(|(k, v)| (k.as_str(), v.len() - 1))
        .collect();
    let want: BTreeMap<&str, usize> = [
        ("demo/contact_list.csv", 7),
        ("demo/contact_attempt.csv", 4),
        ("demo/callback.csv", 5),
        ("demo/sms_message.csv", 3),
        ("demo/call_recording.csv", 3),
        ("demo/web_session.csv", 8),
        ("demo/email_suppression.csv", 2),
        ("lists/contacts-2025-06.csv", 6),
    ]
    .into();
    assert_eq!(counts, want);

    // Each row starts with the request case, device type and device as written; formula cells are neutralised.
    let contacts = &tables["demo/contact_list.csv"];
    assert_eq!(
        contacts[0][..4],
        ["request_case", "device_type", "device", "id"]
    );
    assert!(contacts[1..]
        .iter()
        .all(|r| r[0] == "97456596893834" || r[0] == "6457657657"));
    assert!(contacts
        .iter()
        .any(|r| r[1] == "phone" && r[2] == "'+1 781 555 1212" && r[5] == "Ada"));
    let grace = contacts
        .iter()
        .find(|r| r[5] == "Grace")
        .expect("Grace's row");
    assert_eq!(grace[2], "genesys@genesys.com");
    assert!(
        grace.contains(&"'=HYPERLINK(\"http://x\")".to_owned()),
        "{grace:?}"
    );
    assert!(grace.contains(&"'-called twice".to_owned()));
    // Only the sample's account; never the other tenant's rows.
    assert!(
        contacts[1..].iter().all(|r| r[4] == "30003748347"),
        "{contacts:?}"
    );
    // SMS: only the request's shortcodes; the shared shortcode 99999 is never exported.
    let sms = &tables["demo/sms_message.csv"];
    assert!(
        sms[1..].iter().all(|r| r[5] == "11111" || r[5] == "22222"),
        "{sms:?}"
    );
    // Recordings: the rows, never the file or its path.
    let rec = &tables["demo/call_recording.csv"];
    assert!(!rec[0].contains(&"file_path".to_owned()));
    assert!(rec.iter().flatten().all(|c| !c.contains(".wav")));
    // An export changes nothing.
    let n = demo.sample_email_rows();
    assert_eq!(n, 1);
}

#[test]
fn export_that_finds_nothing_still_gets_an_archive() {
    let demo = Demo::new(20, |_| {});
    let _daemon = demo.start();
    let stem = format!("export-{}_080000", today());
    demo.submit(
        &format!("{stem}.json"),
        br#"{"requests":[{"type":"EXPORT","requestcase":"x","contacts":[{"email":"nobody@nowhere.example"}]}]}"#,
    );
    let log = demo.result_json(&format!("{stem}-execution-log.json"));
    assert_eq!(responses(&log), ["SUCCESS: not found"]);
    let tables = archive_tables(&demo.wait_result(&format!("{stem}-archive.zip")));
    assert!(tables.is_empty());
}

/// Issue 14, item 6: a request case written as a long number comes back with every digit, in the execution log,
/// the audit and the archive; an account id written as a number scopes by the digits written.
#[test]
fn numbers_in_a_request_are_echoed_with_every_digit() {
    let demo = Demo::new(20, |_| {});
    let _daemon = demo.start();
    let stem = format!("export-{}_091000", today());
    let body = br#"{"requests":[{"requestcase":97456596893834123456789,"accountid":30003748347,"type":"EXPORT","contacts":[{"email":"test@test.com"}]}]}"#;
    demo.submit(&format!("{stem}.json"), body);
    let path = demo.wait_result(&format!("{stem}-execution-log.json"));
    let text = std::fs::read_to_string(path).expect("log");
    assert!(
        text.contains(r#""requestcase": 97456596893834123456789"#)
            || text.contains(r#""requestcase":97456596893834123456789"#),
        "{text}"
    );
    assert!(!text.contains("e+22"), "{text}");
    let log: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(responses(&log), ["SUCCESS"]);
    let case: String = demo
        .ledger()
        .query_row(
            "SELECT requestcase FROM audit WHERE action = 'export'",
            [],
            |r| r.get(0),
        )
        .expect("audit");
    assert_eq!(case, "97456596893834123456789");
    let tables = archive_tables(&demo.wait_result(&format!("{stem}-archive.zip")));
    let rows = &tables["demo/contact_list.csv"];
    assert!(rows.len() > 1, "{tables:?}");
    assert!(
        rows[1..].iter().all(|r| r[0] == "97456596893834123456789"),
        "{rows:?}"
    );
    // The account id scoped the search: no row of the other tenant (which holds the same email) is exported.
    assert!(
        rows[1..]
            .iter()
            .all(|r| !r.iter().any(|c| c == "40004000400")),
        "{rows:?}"
    );

    // An account id written 1E2 is not guessed at: the file is refused, saying why.
    let stem = format!("export-{}_091001", today());
    let body = br#"{"requests":[{"accountid":1E2,"type":"EXPORT","contacts":[{"email":"test@test.com"}]}]}"#;
    demo.submit(&format!("{stem}.json"), body);
    let log = demo.result_json(&format!("{stem}-execution-log.json"));
    let error = log["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("\"accountid\" 1e+2 is a number not written as plain digits"),
        "{log}"
    );
}
