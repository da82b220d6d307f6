//! Forget through the whole daemon: the seed's sample request against the demo store.

use crate::harness::{responses, seed_forget, today, Demo};
use serde_json::Value;

const SAMPLE_DEVICES_IN_CLEAR: [&str; 8] = [
    "555-1212",
    "5551212",
    "555 1212",
    "555.1212",
    "test@test.com",
    "genesys@genesys.com",
    "10.10.10.10",
    "11.11.11.11",
];

/// Every row of `table` in the sample's account, as text.
fn dump(db: &rusqlite::Connection, table: &str) -> Vec<String> {
    let mut stmt = db
        .prepare(&format!(
            "SELECT * FROM {table} WHERE account_id = '30003748347'"
        ))
        .expect("prepare");
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i)
                    .map(|v| format!("{v:?}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join("|"))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

#[test]
fn seed_forget_answers_like_the_seed_and_erases_every_sample_record() {
    let demo = Demo::new(300, |_| {});
    // Record what happens to callbacks, to show in-flight ones are cancelled before they are deleted.
    demo.db()
        .execute_batch(
            "CREATE TABLE callback_trail (seq INTEGER PRIMARY KEY, id INTEGER, old_state TEXT, new_state TEXT);
             CREATE TRIGGER callback_upd AFTER UPDATE ON callback BEGIN
                 INSERT INTO callback_trail (id, old_state, new_state) VALUES (old.id, old.state, new.state); END;
             CREATE TRIGGER callback_del AFTER DELETE ON callback BEGIN
                 INSERT INTO callback_trail (id, old_state, new_state) VALUES (old.id, old.state, 'DELETED'); END;",
        )
        .expect("triggers");
    let daemon = demo.start();
    let name = format!("forget-{}_120000.json", today());
    demo.submit(&name, &seed_forget());
    let log = demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));

    // The execution log: the original requests verbatim, then the responses the seed shows.
    let original: Value = serde_json::from_slice(&seed_forget()).expect("seed json");
    assert_eq!(log["requests"], original["requests"]);
    let got = responses(&log);
    let mut want = vec!["SUCCESS"; 12];
    want[7] = "ERROR: incorrect device format: expected phone in ITU E.123 international format: +, country code and number, 8 to 15 digits in groups separated by single spaces, like \"+1 781 555 1212\"";
    assert_eq!(got, want);
    assert_eq!(log["result"][1]["contacts"][1]["phone"], "617 555 1313");
    demo.wait_submit_empty();

    let db = demo.db();
    // No sample record of the sample's account can be found by any of its devices any more.
    for table in gdprd::demo::TABLES {
        let dump = dump(&db, table);
        for row in &dump {
            let lower = row.to_lowercase();
            for device in SAMPLE_DEVICES_IN_CLEAR {
                // The SMS on shortcode 33333 and 99999 were not in the request's shortcodes: they stay.
                let kept_sms =
                    table == "sms_message" && (row.contains("33333") || row.contains("99999"));
                assert!(
                    kept_sms || !lower.contains(device),
                    "{table} still holds {device}: {row}"
                );
            }
        }
    }
    // Personal fields are redacted, device values replaced by random placeholders.
    let (first, phone, email): (String, String, String) = db
        .query_row(
            "SELECT first_name, phone, email FROM contact_list WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("row 1");
    assert_eq!(first, "REDACTED");
    assert!(phone.starts_with("forgotten-") && email.starts_with("forgotten-") && phone != email);
    // Another tenant's rows with the same devices are untouched (accountid scopes the search).
    let other: i64 = db
        .query_row(
            "SELECT count(*) FROM contact_list WHERE account_id = '40004000400' AND phone = '(781) 555-1212' AND email = 'test@test.com'",
            [],
            |r| r.get(0),
        )
        .expect("other tenant");
    assert_eq!(other, 1);
    // 617 555 1313 was malformed: its record is untouched.
    let kept: String = db
        .query_row(
            "SELECT phone FROM contact_list WHERE last_name = 'Turing'",
            [],
            |r| r.get(0),
        )
        .expect("turing");
    assert_eq!(kept, "6175551313");
    // Callbacks: in-flight ones cancelled first, then all of the sample's deleted.
    let trail: Vec<(i64, String, String)> = db
        .prepare("SELECT id, old_state, new_state FROM callback_trail ORDER BY seq")
        .expect("trail")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let cancels: Vec<_> = trail
        .iter()
        .filter(|t| t.2 == "CANCELLED")
        .map(|t| (t.0, t.1.as_str()))
        .collect();
    assert_eq!(cancels, [(1, "QUEUED"), (3, "PROCESSING"), (5, "ROUTING")]);
    let deletes: Vec<i64> = trail
        .iter()
        .filter(|t| t.2 == "DELETED")
        .map(|t| t.0)
        .collect();
    assert_eq!(deletes, [1, 2, 3, 4, 5]);
    let last_cancel = trail
        .iter()
        .rposition(|t| t.2 == "CANCELLED")
        .expect("cancel");
    let first_delete = trail.iter().position(|t| t.2 == "DELETED").expect("delete");
    assert!(
        last_cancel < first_delete,
        "cancelled before deleted: {trail:?}"
    );
    // Recordings: the sample's files are deleted, the other tenant's kept.
    let rec = demo.dir.path().join("recordings/2026/01");
    for n in 1..=3 {
        assert!(!rec.join(format!("rec-sample-{n}.wav")).exists());
    }
    assert!(rec.join("rec-other-tenant.wav").exists());

    // The audit trail has one entry per device, with a keyed hash and no device in clear.
    let ledger = demo.ledger();
    let (entries, hashes): (i64, i64) = ledger
        .query_row(
            "SELECT count(*), count(DISTINCT device_hmac) FROM audit WHERE action = 'forget' AND file = ?1",
            [&name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("audit");
    assert_eq!(
        (entries, hashes),
        (12, 11),
        "11 valid devices hashed, 1 malformed without hash"
    );
    let audit_dump: String = ledger
        .query_row(
            "SELECT group_concat(quote(device_hmac) || stores || outcome, ';') FROM audit",
            [],
            |r| r.get(0),
        )
        .expect("dump");
    let log_text = daemon.log_text();
    // "+1 781 555 1212" is the example in the format error text, so other sample devices are checked.
    for device in [
        "7815551212",
        "617 555 1212",
        "781 555 1313",
        "test@test.com",
        "10.10.10.10",
        "genesys",
    ] {
        assert!(!audit_dump.contains(device), "audit holds {device}");
        assert!(!log_text.contains(device), "daemon log holds {device}");
    }
}

#[test]
fn a_second_forget_of_the_same_devices_finds_nothing() {
    let demo = Demo::new(50, |_| {});
    let _daemon = demo.start();
    demo.submit(&format!("forget-{}_100000.json", today()), &seed_forget());
    demo.wait_result(&format!("forget-{}_100000-execution-log.json", today()));
    demo.submit(&format!("forget-{}_100001.json", today()), &seed_forget());
    let log = demo.result_json(&format!("forget-{}_100001-execution-log.json", today()));
    let got = responses(&log);
    assert_eq!(
        got.iter().filter(|r| *r == "SUCCESS: not found").count(),
        11,
        "{got:?}"
    );
    assert!(got[7].starts_with("ERROR: incorrect device format"));
}

pub(crate) const CRM_STORE: &str = r#"
[stores.crm]
type = "sqlite"
path = "crm.db"

[[stores.crm.tables]]
name = "customers"
email = ["email"]
personal = ["name"]
"#;

#[test]
fn a_failing_store_answers_error_while_the_other_stores_still_run() {
    let demo = Demo::new(20, |c| {
        c.push("accounts[demo].stores", "crm").merge(CRM_STORE);
    });
    let crm = demo.dir.path().join("crm.db");
    // The CRM database lacks its mapped table: every statement against it fails.
    rusqlite::Connection::open(&crm)
        .and_then(|c| c.execute_batch("CREATE TABLE unrelated (x TEXT);"))
        .expect("crm db");
    let _daemon = demo.start();
    let body = br#"{"requests":[{"type":"FORGET","accountid":"30003748347","contacts":[{"email":"test@test.com"},{"phone":"617 555 1313"}]}]}"#;
    demo.submit(&format!("forget-{}_110000.json", today()), body);
    let log = demo.result_json(&format!("forget-{}_110000-execution-log.json", today()));
    let got = responses(&log);
    assert!(
        got[0].starts_with("ERROR: store \"crm\" failed: "),
        "{}",
        got[0]
    );
    assert!(got[0].contains("resubmit"), "{}", got[0]);
    assert!(
        got[1].starts_with("ERROR: incorrect device format"),
        "a bad contact is answered on its own"
    );
    let left = demo.sample_email_rows();
    assert_eq!(left, 0, "the demo store still forgot the device");

    // Once the CRM is repaired, a resubmission finishes the job.
    rusqlite::Connection::open(&crm)
        .and_then(|c| c.execute_batch("CREATE TABLE customers (email TEXT, name TEXT); INSERT INTO customers VALUES ('Test@Test.com', 'Ada');"))
        .expect("repair crm");
    demo.submit(&format!("forget-{}_110001.json", today()), body);
    let log = demo.result_json(&format!("forget-{}_110001-execution-log.json", today()));
    assert_eq!(responses(&log)[0], "SUCCESS");
    let (email, name): (String, String) = rusqlite::Connection::open(&crm)
        .and_then(|c| {
            c.query_row("SELECT email, name FROM customers", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .expect("crm row");
    assert!(email.starts_with("forgotten-"));
    assert_eq!(name, "REDACTED");
}

/// The seed's forget index of `+1 781 555 1313`, whose call recording a test makes point outside files_root.
const BAD_RECORDING_CONTACT: usize = 6;

/// Issue 14, item 1: with the recording of `+1 781 555 1313` pointing outside `files_root`, runs the seed's
/// forget and a resubmission of it, and checks that only that contact fails. `spoil` makes the stored path bad.
pub(crate) fn forget_seed_with_a_bad_recording(demo: &Demo, spoil: impl FnOnce()) {
    let outside = demo.dir.path().join("outside.wav");
    std::fs::write(&outside, b"not gdprd's to delete").expect("outside file");
    spoil();
    let _daemon = demo.start();
    for (run, second) in [("130000", false), ("130001", true)] {
        demo.submit(&format!("forget-{}_{run}.json", today()), &seed_forget());
        let log = demo.result_json(&format!("forget-{}_{run}-execution-log.json", today()));
        let got = responses(&log);
        for (i, response) in got.iter().enumerate() {
            if i == BAD_RECORDING_CONTACT {
                assert!(
                    response.starts_with("ERROR: store \"demo\" failed: mapping error: a recording path points outside files_root")
                        && response.contains("resubmit"),
                    "run {run}: the contact whose row is bad gets the error: {response}"
                );
            } else if i == 7 {
                assert!(response.starts_with("ERROR: incorrect device format"));
            } else {
                let want = if second {
                    "SUCCESS: not found"
                } else {
                    "SUCCESS"
                };
                assert_eq!(
                    response, want,
                    "run {run}: contact {i} has no link to the bad row: {got:?}"
                );
            }
        }
    }
    let rec = demo.dir.path().join("recordings/2026/01");
    assert!(!rec.join("rec-sample-1.wav").exists());
    assert!(!rec.join("rec-sample-2.wav").exists());
    assert!(
        rec.join("rec-sample-3.wav").exists(),
        "the bad row was left alone, and so was the file it once named"
    );
    assert!(rec.join("rec-other-tenant.wav").exists());
    assert!(
        outside.exists(),
        "a file outside files_root is never deleted"
    );
}

#[test]
fn one_bad_recording_path_fails_only_the_contact_whose_row_it_is() {
    for batch in [1, 500] {
        let demo = Demo::new(20, |c| {
            c.merge(&format!("[limits]\nbatch_size = {batch}"));
        });
        forget_seed_with_a_bad_recording(&demo, || {
            demo.db()
                .execute(
                    "UPDATE call_recording SET file_path = '../outside.wav' WHERE file_path = '2026/01/rec-sample-3.wav'",
                    [],
                )
                .expect("spoil a recording path");
        });
        let db = demo.db();
        // The other contacts were forgotten everywhere: in the SQLite store and in the CSV lists.
        assert_eq!(demo.sample_email_rows(), 0, "batch {batch}");
        let lists = std::fs::read_to_string(demo.dir.path().join("lists/contacts-2025-06.csv"))
            .expect("list");
        let sample: Vec<&str> = lists
            .lines()
            .filter(|l| l.starts_with("L1,30003748347,") && !l.contains("Thompson"))
            .collect();
        assert_eq!(sample.len(), 4, "{lists}");
        for line in sample {
            // The random placeholders are hex and may hold any digits ("…529e215552"): look past them.
            let kept: Vec<&str> = line
                .split(',')
                .filter(|cell| !cell.starts_with("forgotten-"))
                .collect();
            let kept = kept.join(",");
            assert!(
                line.contains("forgotten-") && !kept.contains("555") && !kept.contains("test") && !kept.contains("genesys"),
                "batch {batch}: the CSV store forgot every sample contact, the one with a bad SQLite row too: {line}"
            );
        }
        let bad: (String, String) = db
            .query_row(
                "SELECT caller_number, file_path FROM call_recording WHERE file_path = '../outside.wav'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("the bad row is still there");
        assert_eq!(
            bad.0, "781-555-1313",
            "batch {batch}: the bad row was not changed"
        );
        let recordings_left: i64 = db
            .query_row(
                "SELECT count(*) FROM call_recording WHERE caller_number IN ('781.555.1212', '+1 (617) 555-1212', '781-555-1313')",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(
            recordings_left, 1,
            "batch {batch}: only the bad row keeps its number"
        );
    }
}

/// A store whose only table has a column that hides SQLite's `rowid`.
const ROWID_STORE: &str = r#"
[stores.w]
type = "sqlite"
path = "w.db"

[[stores.w.tables]]
name = "w"
phone = ["phone"]
personal = ["name"]
"#;

#[test]
fn a_column_named_rowid_never_lets_a_forget_touch_a_bystander() {
    let demo = Demo::new(20, |c| {
        c.push("accounts[demo].stores", "w").merge(ROWID_STORE);
    });
    let w = rusqlite::Connection::open(demo.dir.path().join("w.db")).expect("w.db");
    w.execute_batch(
        "CREATE TABLE w(rowid INTEGER, phone TEXT, name TEXT);
         INSERT INTO w VALUES (7, '+1 781 555 1212', 'target'), (7, '+1 617 555 0000', 'bystander');",
    )
    .expect("w table");
    let _daemon = demo.start();
    let body = br#"{"requests":[{"type":"FORGET","contacts":[{"phone":"+1 781 555 1212"}]}]}"#;
    demo.submit(&format!("forget-{}_140000.json", today()), body);
    let log = demo.result_json(&format!("forget-{}_140000-execution-log.json", today()));
    assert_eq!(responses(&log), ["SUCCESS"]);
    let rows: Vec<(i64, String, String)> = w
        .prepare("SELECT rowid, phone, name FROM w ORDER BY _rowid_")
        .expect("select")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(
        rows[0].1.starts_with("forgotten-") && rows[0].2 == "REDACTED",
        "{rows:?}"
    );
    assert_eq!(
        (rows[1].1.as_str(), rows[1].2.as_str()),
        ("+1 617 555 0000", "bystander"),
        "the row that did not match is untouched"
    );
    let stores: String = demo
        .ledger()
        .query_row(
            "SELECT stores FROM audit WHERE action = 'forget'",
            [],
            |r| r.get(0),
        )
        .expect("audit");
    assert!(stores.contains("\"w\":1"), "{stores}");
}

#[test]
fn check_config_refuses_a_sqlite_table_whose_row_id_is_hidden_or_missing() {
    for (ddl, why) in [
        (
            "CREATE TABLE w(rowid INTEGER, _rowid_ TEXT, OID TEXT, phone TEXT, name TEXT)",
            "hide its row id",
        ),
        (
            "CREATE TABLE w(phone TEXT PRIMARY KEY, name TEXT) WITHOUT ROWID",
            "WITHOUT ROWID",
        ),
    ] {
        let demo = Demo::new(5, |c| {
            c.push("accounts[demo].stores", "w").merge(ROWID_STORE);
        });
        rusqlite::Connection::open(demo.dir.path().join("w.db"))
            .and_then(|c| c.execute_batch(ddl))
            .expect("w table");
        let out = crate::harness::run(&["check-config", demo.config.to_str().expect("utf-8")]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{ddl}: {text}");
        assert!(text.contains(why), "{ddl}: {text}");
    }
}

/// The seed's requests, and a third request naming `test@test.com` again in the same account.
fn seed_with_a_repeated_email() -> Vec<u8> {
    let mut file: Value = serde_json::from_slice(&seed_forget()).expect("seed");
    let extra = serde_json::json!({"requestcase": "again", "accountid": "30003748347", "type": "FORGET",
        "contacts": [{"email": "TEST@test.com"}]});
    file["requests"]
        .as_array_mut()
        .expect("requests")
        .push(extra);
    serde_json::to_vec(&file).expect("json")
}

/// Issue 14, item 3: the same file answers the same, and audits the same counts, whatever the batch size.
#[test]
fn the_answers_and_the_audit_do_not_depend_on_the_batch_size() {
    let mut runs = Vec::new();
    for batch in [1, 3, 500] {
        let demo = Demo::new(20, |c| {
            c.merge(&format!("[limits]\nbatch_size = {batch}"));
        });
        let _daemon = demo.start();
        let name = format!("forget-{}_150000.json", today());
        demo.submit(&name, &seed_with_a_repeated_email());
        let log = demo.result_json(&format!("forget-{}_150000-execution-log.json", today()));
        let audit: Vec<(String, String)> = demo
            .ledger()
            .prepare("SELECT stores, outcome FROM audit WHERE action = 'forget' ORDER BY id")
            .expect("audit")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        runs.push((batch, responses(&log), audit));
    }
    let (_, answers, audit) = &runs[0];
    assert_eq!(answers.len(), 13);
    for (i, a) in answers.iter().enumerate() {
        if i != 7 {
            assert_eq!(
                a, "SUCCESS",
                "contact {i}: the store held it when the file arrived: {answers:?}"
            );
        }
    }
    for (batch, a, b) in &runs[1..] {
        assert_eq!(a, answers, "batch {batch} answers like batch 1");
        let mut b = b.clone();
        let mut first = audit.clone();
        // Audit rows of one chunk are written in target order, and the malformed contact with the first chunk.
        b.sort();
        first.sort();
        assert_eq!(b, first, "batch {batch} audits like batch 1");
    }
}

/// A store that cannot be opened (its SQLite file is gone) answers every contact of a forget (once its retry
/// window is over) and of an export with an `unavailable` error naming it; the daemon goes on.
#[test]
fn a_store_that_cannot_be_opened_answers_unavailable_naming_it() {
    let demo = Demo::new(10, |c| {
        c.set("stores.demo.path", "missing.db");
        // Answered at once, not waited for (`[engine] retry_window`, tests/retry.rs).
        c.merge("[engine]\nretry_window = \"0s\"\n");
    });
    let _daemon = demo.start();
    let forget = format!("forget-{}_120000", today());
    demo.submit(&format!("{forget}.json"), &seed_forget());
    let got = responses(&demo.result_json(&format!("{forget}-execution-log.json")));
    let unavailable = |r: &&String| r.starts_with("ERROR: store \"demo\" unavailable: ");
    assert_eq!(got.iter().filter(unavailable).count(), 11, "{got:?}");

    let export = format!("export-{}_120100", today());
    demo.submit(
        &format!("{export}.json"),
        &std::fs::read(crate::harness::fixture("requests/seed-export.json")).expect("fixture"),
    );
    let got = responses(&demo.result_json(&format!("{export}-execution-log.json")));
    assert_eq!(got.len(), 12, "{got:?}");
    assert_eq!(got.iter().filter(unavailable).count(), 11, "{got:?}");
}
