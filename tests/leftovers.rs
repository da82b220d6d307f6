//! Nothing of a forgotten person stays in a SQLite store's files (issue 14, item 14): not in free pages, not in
//! unused space inside a page, not in the WAL or a rollback journal, whoever wrote it there.

use crate::harness::{seed_forget, today, Demo};
use rusqlite::Connection;

/// Values that only the sample's forgotten rows hold (no filler row, no other tenant's row has them).
const FORGOTTEN: [&str; 8] = [
    "Analytical Engines",
    "12 Babbage St",
    "asked about invoice",
    "1-781-555-1212",
    "test2@test.com",
    " 11.11.11.12",
    "Your code is 1234",
    "781.555.1313",
];

/// How many times `needle` occurs in the store's files: the database, its WAL and its rollback journal.
fn copies_in_files(demo: &Demo, needle: &str) -> usize {
    let mut n = 0;
    for suffix in ["", "-wal", "-journal"] {
        let path = format!("{}{suffix}", demo.db.display());
        if let Ok(bytes) = std::fs::read(&path) {
            n += bytes
                .windows(needle.len())
                .filter(|w| *w == needle.as_bytes())
                .count();
        }
    }
    n
}

fn forget_seed_once(demo: &Demo) {
    let name = format!("forget-{}_120000.json", today());
    std::fs::write(demo.submit.join(&name), seed_forget()).expect("submit");
    demo.run_once();
    let log = demo
        .result
        .join(format!("forget-{}_120000-execution-log.json", today()));
    assert!(log.exists(), "no execution log");
}

fn assert_none_left(demo: &Demo, extra: &[&str]) {
    let left: Vec<(&str, usize)> = FORGOTTEN
        .iter()
        .chain(extra)
        .map(|v| (*v, copies_in_files(demo, v)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(
        left.is_empty(),
        "forgotten values still in the store's files: {left:?}"
    );
}

#[test]
fn the_demo_database_holds_each_sample_value_only_in_its_row() {
    let demo = Demo::new(300, |_| {});
    for v in FORGOTTEN {
        let live: i64 = demo.db_count(&format!(
            "SELECT (SELECT count(*) FROM contact_list WHERE company = '{v}' OR address = '{v}' OR email = '{v}')
                  + (SELECT count(*) FROM contact_attempt WHERE agent_notes = '{v}' OR dialed_number = '{v}')
                  + (SELECT count(*) FROM callback WHERE customer_number = '{v}')
                  + (SELECT count(*) FROM sms_message WHERE body = '{v}')
                  + (SELECT count(*) FROM web_session WHERE login_email = '{v}' OR client_ip = '{v}')"
        ));
        assert!(live > 0, "{v:?} is not in the demo");
        assert_eq!(
            copies_in_files(&demo, v) as i64,
            live,
            "{v:?}: the demo left copies besides its rows"
        );
    }
}

#[test]
fn forgotten_values_stay_in_no_free_space_of_the_demo_database() {
    let demo = Demo::new(300, |_| {});
    forget_seed_once(&demo);
    assert_none_left(&demo, &[]);
    // Item 15: a forgotten device gets a random placeholder, never a mask derived from it (`7xx5xx1xx2`).
    let derived = demo.db_count(
        "SELECT count(*) FROM contact_attempt WHERE id <= 4 AND dialed_number NOT LIKE 'forgotten-%'",
    );
    assert_eq!(
        derived, 0,
        "a forgotten dialed_number kept a value derived from it"
    );
}

/// An application that reformatted a phone (without `secure_delete`) left the old form in free space, and keeps
/// its connection open, so its WAL or journal is still there when gdprd forgets.
fn application_leftovers_are_gone_after_a_forget(journal_mode: &str) {
    let demo = Demo::new(300, |_| {});
    let old_forms = ["781/555/1212 (home)", "TEST2@TEST.COM (old)"];
    {
        let conn = Connection::open(&demo.db).expect("open");
        conn.query_row(&format!("PRAGMA journal_mode = {journal_mode}"), [], |_| {
            Ok(())
        })
        .expect("journal mode");
    }
    let app = Connection::open(&demo.db).expect("application connection");
    app.execute_batch(&format!(
        "PRAGMA secure_delete = OFF; PRAGMA journal_mode = {journal_mode};
         UPDATE contact_list SET phone = '{0}' WHERE last_name = 'Lovelace' AND account_id = '30003748347';
         UPDATE contact_list SET email = '{1}' WHERE last_name = 'Liskov' AND account_id = '30003748347';
         UPDATE contact_list SET phone = '(781) 555-1212' WHERE phone = '{0}';
         UPDATE contact_list SET email = 'test2@test.com' WHERE email = '{1}';",
        old_forms[0], old_forms[1]
    ))
    .expect("the application reformats");
    for old in old_forms {
        assert!(
            copies_in_files(&demo, old) > 0,
            "the application should have left {old:?} behind"
        );
    }
    forget_seed_once(&demo);
    assert_none_left(&demo, &old_forms);
    drop(app);
}

#[test]
fn values_an_application_left_in_free_space_or_the_wal_are_gone_after_a_forget() {
    application_leftovers_are_gone_after_a_forget("WAL");
}

#[test]
fn values_an_application_left_in_a_persistent_journal_are_gone_after_a_forget() {
    application_leftovers_are_gone_after_a_forget("PERSIST");
}
