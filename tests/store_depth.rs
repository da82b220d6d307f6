//! Where personal data hides beyond a plain table: suppression lists, soft-deleted rows and columns that reports
//! need in their shape, on the demo's SQLite store.

use crate::harness::{run, seed_forget, today, Demo};

/// `gdprd suppressed` for the demo account: (exit code, stdout).
pub(crate) fn suppressed(demo: &Demo, devices: &[&str]) -> (i32, String) {
    let config = demo.config.to_str().expect("utf-8");
    let mut args = vec!["suppressed", "--config", config, "--account", "demo"];
    args.extend_from_slice(devices);
    let out = run(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn forget_leaves_keyed_hashes_in_the_suppression_list_and_it_still_suppresses() {
    let demo = Demo::new(100, |c| c);
    // Before: the list holds the address in clear (in another case, too).
    let (code, text) = suppressed(&demo, &["email:test@test.com", "email:nobody@example.org"]);
    assert_eq!(code, 1, "{text}");
    assert_eq!(
        text,
        "suppressed\temail:test@test.com\nnot suppressed\temail:nobody@example.org\n"
    );

    let _daemon = demo.start();
    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    demo.wait_submit_empty();

    // The sample account's rows are kept, the addresses replaced by their keyed hash: the audit's HMAC.
    let db = demo.db();
    let rows: Vec<(String, String)> = db
        .prepare("SELECT account_id, email FROM email_suppression WHERE id <= 3 ORDER BY id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 3);
    for (_, email) in &rows[..2] {
        assert_eq!(email.len(), 64, "a keyed hash, not {email}");
        assert!(email.bytes().all(|b| b.is_ascii_hexdigit()));
        let audited: i64 = demo.ledger_count(&format!(
            "SELECT count(*) FROM audit WHERE device_hmac = '{email}' AND device_type = 'email'"
        ));
        assert!(audited >= 1, "the hash is the audit's HMAC of the device");
    }
    assert_eq!(
        rows[2],
        ("40004000400".to_owned(), "test@test.com".to_owned()),
        "another tenant's row stays"
    );
    assert_eq!(
        demo.db_count("SELECT count(*) FROM email_suppression WHERE lower(email) IN ('test@test.com', 'genesys2@genesys.com') AND account_id = '30003748347'"),
        0
    );

    // Still suppressed, in every spelling; the forgotten address is nowhere in clear.
    let (code, text) = suppressed(&demo, &["email:TEST@test.com", "genesys2@genesys.com"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.matches("not suppressed").count(), 0, "{text}");
    let (code, text) = suppressed(&demo, &["phone:617 555 1313"]);
    assert_eq!(
        code, 2,
        "a device that is not one is an error, not an answer"
    );
    assert!(text.is_empty());
}

#[test]
fn pseudonymised_columns_keep_their_shape_and_soft_deleted_rows_are_forgotten() {
    let demo = Demo::new(100, |c| c);
    let before: Vec<(i64, String)> = demo
        .db()
        .prepare("SELECT id, dialed_number FROM contact_attempt WHERE account_id = '30003748347' AND agent <> 'agent1' ORDER BY id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let soft_deleted = demo.db_count(
        "SELECT count(*) FROM web_session WHERE deleted_at IS NOT NULL AND login_email = 'genesys2@genesys.com'",
    );
    assert_eq!(soft_deleted, 1);
    let _daemon = demo.start();
    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    demo.wait_submit_empty();

    let db = demo.db();
    let mut masked = 0;
    for (id, old) in &before {
        let now: String = db
            .query_row(
                "SELECT dialed_number FROM contact_attempt WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .expect("row");
        if now != *old {
            masked += 1;
            assert_eq!(
                now.chars().count(),
                old.chars().count(),
                "{old} -> {now}: same shape"
            );
            assert_eq!(now, gdprd::stores::mask::mask(old));
            assert!(now.contains('x'));
        }
    }
    assert!(
        masked >= 3,
        "the sample's attempts were masked ({masked} of {})",
        before.len()
    );
    assert_eq!(
        demo.db_count("SELECT count(*) FROM web_session WHERE deleted_at IS NOT NULL AND login_email = 'genesys2@genesys.com'"),
        0,
        "the soft-deleted row was forgotten too"
    );
    assert_eq!(
        demo.db_count("SELECT count(*) FROM web_session WHERE deleted_at IS NOT NULL AND login_email LIKE 'forgotten-%'"),
        1
    );
}

#[test]
fn csv_lists_are_rewritten_safely_and_untouched_lists_stay_byte_for_byte() {
    use std::os::unix::fs::PermissionsExt;
    let demo = Demo::new(50, |c| c);
    let lists = demo.dir.path().join("lists");
    let main = lists.join("contacts-2025-06.csv");
    std::fs::set_permissions(&main, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    // A second list, CRLF line ends, quoted cells, nobody of the sample in it.
    let other = lists.join("contacts-2025-07.csv");
    let other_bytes = b"list_id,account_id,first_name,last_name,phone,email,opt_in\r\nL9,30003748347,\"Hopper, Grace\",,+44 20 7946 0999,grace@example.org,yes\r\n";
    std::fs::write(&other, other_bytes).expect("write");
    // A third, CRLF too, with a sample device.
    let third = lists.join("contacts-2025-08.csv");
    std::fs::write(
        &third,
        b"list_id,account_id,first_name,last_name,phone,email,opt_in\r\nL8,30003748347,\"Lovelace, Ada\",x,,test@test.com,yes\r\nL8,30003748347,Keep,Me,,keep@example.org,no\r\n",
    )
    .expect("write");
    // Not a list of this mapping: never read or touched.
    std::fs::write(lists.join("notes.txt"), b"test@test.com").expect("write");

    let _daemon = demo.start();
    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    demo.wait_submit_empty();

    let text = std::fs::read_to_string(&main).expect("list");
    assert!(
        !text.to_lowercase().contains("test@test.com,") || text.contains("40004000400,Barbara")
    );
    assert_eq!(text.matches("REDACTED,REDACTED").count(), 4, "{text}");
    assert!(
        text.contains("L2,40004000400,Barbara,Liskov,7815551212,test@test.com,yes"),
        "the other tenant stays"
    );
    assert!(
        text.contains("617 555 1313"),
        "the malformed request device matched nothing"
    );
    assert_eq!(
        std::fs::metadata(&main).expect("meta").permissions().mode() & 0o777,
        0o640,
        "the list keeps its permissions"
    );
    assert_eq!(
        std::fs::read(&other).expect("other"),
        other_bytes,
        "a list without a match is not rewritten"
    );
    let third = std::fs::read_to_string(&third).expect("third");
    assert!(
        third.starts_with("list_id,account_id,first_name,last_name,phone,email,opt_in\r\n"),
        "{third}"
    );
    assert!(
        third.contains("L8,30003748347,REDACTED,REDACTED,,forgotten-"),
        "{third}"
    );
    assert!(
        third.ends_with("L8,30003748347,Keep,Me,,keep@example.org,no\r\n"),
        "CRLF kept: {third:?}"
    );
    assert_eq!(
        std::fs::read(lists.join("notes.txt")).expect("notes"),
        b"test@test.com"
    );
    let leftovers: Vec<String> = std::fs::read_dir(&lists)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_broken_csv_list_fails_its_store_and_stays_as_it_was() {
    let demo = Demo::new(20, |c| c);
    let broken = demo.dir.path().join("lists/contacts-2025-09.csv");
    // A list whose header lacks a mapped column: the mapping does not fit it.
    let bytes = b"list_id,account_id,first_name,last_name,phone,e-mail,opt_in\nL1,30003748347,A,B,,test@test.com,yes\n";
    std::fs::write(&broken, bytes).expect("write");
    let main = demo.dir.path().join("lists/contacts-2025-06.csv");
    let main_before = std::fs::read(&main).expect("list");
    let _daemon = demo.start();
    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    let log = demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    let got = crate::harness::responses(&log);
    let want = "ERROR: store \"lists\" failed: mapping error: contacts-2025-09.csv has no column \"email\"";
    assert_eq!(
        got.iter().filter(|r| r.starts_with(want)).count(),
        11,
        "{got:?}"
    );
    assert_eq!(std::fs::read(&broken).expect("broken"), bytes);
    assert_eq!(
        std::fs::read(&main).expect("list"),
        main_before,
        "nothing of the batch was renamed into place"
    );
    assert!(demo.sample_email_rows() == 0, "the other stores still ran");
}
