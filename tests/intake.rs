//! What happens to every kind of file that lands in `GDPR_Submit`: rejected names, refused contents, files that
//! wait for their date, uploads in progress, links, and files that arrived while the daemon was down.

use crate::harness::{fixture, responses, seed_forget, successes, today, wait_until, Demo};
use serde_json::Value;
use std::time::Duration;

fn notice(demo: &Demo, stem: &str) -> Value {
    demo.result_json(&format!("{stem}-rejected.json"))
}

#[test]
fn rejected_names_get_a_notice_and_leave_the_folder() {
    let demo = Demo::new(20, |c| c);
    let _daemon = demo.start();
    let cases = [
        (
            "forget-20180315_120000.json",
            "is dated 2018-03-15 but today is",
        ),
        ("notes.txt", "file name must be forget-YYYYMMDD_HHMMSS.json"),
        ("FORGET-20180315_120000.json", "file name must be"),
        (
            &*format!("forget-{}_250000.json", today()),
            "no real date and time",
        ),
        (
            &*format!("delete-{}_120000.json", today()),
            "file name must be",
        ),
    ];
    for (name, _) in &cases {
        demo.submit(name, &seed_forget());
    }
    for (name, want) in &cases {
        let stem = name.strip_suffix(".json").unwrap_or(name);
        let n = notice(&demo, stem);
        assert_eq!(n["file"], *name);
        let error = n["error"].as_str().expect("error text");
        assert!(
            error.starts_with("ERROR: ") && error.contains(want),
            "{name}: {error}"
        );
    }
    wait_until(
        Duration::from_secs(10),
        "rejected files to leave GDPR_Submit",
        || demo.submitted().is_empty(),
    );
    // Nothing was executed: the sample's records are still there.
    let n = demo.sample_email_rows();
    assert_eq!(n, 1);
}

#[test]
fn a_name_already_submitted_is_never_executed_again() {
    let demo = Demo::new(20, |c| c);
    let _daemon = demo.start();
    let stem = format!("export-{}_070000", today());
    let body = std::fs::read(fixture("requests/seed-export.json")).expect("fixture");
    demo.submit(&format!("{stem}.json"), &body);
    let first =
        std::fs::read(demo.wait_result(&format!("{stem}-execution-log.json"))).expect("log");
    wait_until(
        Duration::from_secs(10),
        "the first submission to leave",
        || demo.submitted().is_empty(),
    );
    demo.submit(&format!("{stem}.json"), &body);
    let n = notice(&demo, &stem);
    assert!(
        n["error"]
            .as_str()
            .expect("error")
            .contains("already submitted"),
        "{n}"
    );
    let again = std::fs::read(demo.result.join(format!("{stem}-execution-log.json"))).expect("log");
    assert_eq!(first, again, "the first result is untouched");
    let executed = demo.ledger_count("SELECT count(*) FROM audit WHERE action = 'export'");
    assert_eq!(executed, 12, "executed once: one audit entry per contact");
}

#[test]
fn future_files_wait_and_uploads_in_progress_are_ignored() {
    let demo = Demo::new(20, |c| c);
    let _daemon = demo.start();
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y%m%d")
        .to_string();
    let future = format!("forget-{tomorrow}_120000.json");
    std::fs::write(demo.submit.join(&future), seed_forget()).expect("write");
    for name in [".hidden.json", "forget-x.json.filepart", "a.part", "b.tmp"] {
        std::fs::write(demo.submit.join(name), b"{").expect("write");
    }
    // A file due today, dropped after them, is done while the others stay untouched and unanswered.
    let stem = format!("export-{}_060000", today());
    demo.submit(
        &format!("{stem}.json"),
        &std::fs::read(fixture("requests/seed-export.json")).expect("fixture"),
    );
    demo.wait_result(&format!("{stem}-execution-log.json"));
    std::thread::sleep(Duration::from_millis(2500)); // two more rescans
    let mut left = demo.submitted();
    left.sort();
    let mut want = vec![
        ".hidden.json".to_owned(),
        "a.part".into(),
        "b.tmp".into(),
        "forget-x.json.filepart".into(),
        future,
    ];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(
        demo.results(),
        [
            format!("{stem}-archive.zip"),
            format!("{stem}-execution-log.json")
        ]
    );
}

#[test]
fn links_are_rejected_and_never_followed() {
    let demo = Demo::new(20, |c| c);
    let secret = demo.dir.path().join("secret.json");
    std::fs::write(
        &secret,
        br#"{"requests":[{"type":"FORGET","contacts":[{"email":"test@test.com"}]}]}"#,
    )
    .expect("write");
    let name = format!("forget-{}_050000.json", today());
    std::os::unix::fs::symlink(&secret, demo.submit.join(&name)).expect("symlink");
    let _daemon = demo.start();
    let n = notice(&demo, name.strip_suffix(".json").expect("stem"));
    assert!(
        n["error"]
            .as_str()
            .expect("error")
            .contains("not a regular file"),
        "{n}"
    );
    assert!(secret.exists(), "the link's target is untouched");
    let left = demo.sample_email_rows();
    assert_eq!(left, 1, "nothing executed");
}

#[test]
fn files_dropped_while_the_daemon_was_down_are_processed_at_start() {
    let demo = Demo::new(20, |c| {
        c.replace("settle_seconds = 0", "settle_seconds = 1")
    });
    let name = format!("forget-{}_040000.json", today());
    std::fs::write(demo.submit.join(&name), seed_forget()).expect("write");
    std::thread::sleep(Duration::from_millis(1100));
    let _daemon = demo.start();
    let log = demo.result_json(&format!("forget-{}_040000-execution-log.json", today()));
    assert_eq!(successes(&responses(&log)), 11);
}

#[test]
fn every_bad_fixture_is_refused_whole_with_its_error() {
    let demo = Demo::new(20, |c| {
        c.replace("[intake]", "[limits]\nmax_file_bytes = 4096\n\n[intake]")
    });
    let _daemon = demo.start();
    // Each file in fixtures/requests/bad is named after the error it produces.
    let want = [
        ("invalid-json", "invalid JSON at line 2 column 21"),
        ("type-does-not-match-name", "the file name says FORGET"),
        ("mixed-types", "request 2: \"type\" is EXPORT"),
        ("empty-requests", "\"requests\" is empty"),
        ("duplicate-key", "duplicate key \"email\""),
        ("unknown-key", "unknown key \"contact\""),
        ("empty-contacts", "\"contacts\" is empty"),
        ("missing-type", "\"type\" is missing"),
        ("unknown-type", "not \"DELETE\""),
        (
            "not-utf8",
            "not valid UTF-8 (invalid byte at line 1 column 53)",
        ),
        ("too-deep", "nested deeper than 16 levels"),
        ("truncated", "EOF while parsing"),
    ];
    let dir = fixture("requests/bad");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("bad fixtures")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        want.len(),
        "every bad fixture has an expected error: {files:?}"
    );
    for (i, (fixture_name, _)) in want.iter().enumerate() {
        let bytes = std::fs::read(dir.join(format!("{fixture_name}.json"))).expect("fixture");
        demo.submit(&format!("forget-{}_0300{i:02}.json", today()), &bytes);
    }
    // Over the size limit (4096 bytes in this config).
    demo.submit(
        &format!("forget-{}_035959.json", today()),
        &vec![b' '; 5000],
    );
    for (i, (fixture_name, error)) in want.iter().enumerate() {
        let log = demo.result_json(&format!("forget-{}_0300{i:02}-execution-log.json", today()));
        let text = log["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{fixture_name}: no error in {log}"));
        assert!(
            text.starts_with("ERROR: ") && text.contains(error),
            "{fixture_name}: {text}"
        );
        assert!(
            log.get("result").is_none(),
            "{fixture_name}: nothing executed"
        );
    }
    let big = demo.result_json(&format!("forget-{}_035959-execution-log.json", today()));
    assert_eq!(
        big["error"],
        "ERROR: file is larger than the limit of 4096 bytes"
    );
    // Files that could be read keep their requests in the log.
    let mixed = demo.result_json(&format!("forget-{}_030002-execution-log.json", today()));
    assert_eq!(mixed["requests"].as_array().map(Vec::len), Some(2));
    let n = demo.sample_email_rows();
    assert_eq!(n, 1, "nothing was executed");
}
