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
    let demo = Demo::new(20, |_| {});
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
    let demo = Demo::new(20, |_| {});
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
    let demo = Demo::new(20, |_| {});
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
    let demo = Demo::new(20, |_| {});
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
        c.set("intake.settle_seconds", 1);
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
    // No wait for truncated files: here they are refused at once (see the upload tests below).
    let demo = Demo::new(20, |c| {
        c.merge("[limits]\nmax_file_bytes = 4096\n\n[intake]\nupload_timeout_seconds = 0");
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

#[test]
fn a_file_moved_onto_the_name_of_a_running_file_is_rejected_as_a_duplicate_not_deleted_unread() {
    use crate::durability::chunks_done;
    const DEVICES: u64 = 300;
    const BATCH: u64 = 10;
    let demo = Demo::new(20_000, |c| {
        c.merge(&format!("[limits]\nbatch_size = {BATCH}"));
    });
    let contacts: Vec<String> = (0..DEVICES)
        .map(|i| format!(r#"{{"email": "user{i}@example.com"}}"#))
        .collect();
    let large_forget = || {
        format!(
            r#"{{"requests": [{{"type": "FORGET", "contacts": [{}]}}]}}"#,
            contacts.join(", ")
        )
        .into_bytes()
    };
    let _daemon = demo.start();
    let stem = format!("forget-{}_081500", today());
    let name = format!("{stem}.json");
    demo.submit(&name, &large_forget());
    wait_until(Duration::from_secs(60), "a few chunks to complete", || {
        chunks_done(&demo) >= 2
    });
    // `mv` of a different file onto the same name while the first one runs.
    demo.submit(
        &name,
        br#"{"requests":[{"type":"FORGET","contacts":[{"email":"TEST@test.com"}]}]}"#,
    );
    assert!(
        chunks_done(&demo) < (DEVICES / BATCH) as i64,
        "replaced while the first file ran"
    );
    let log = demo.result_json(&format!("{stem}-execution-log.json"));
    assert_eq!(successes(&responses(&log)) as u64, DEVICES);
    let n = notice(&demo, &stem);
    assert!(
        n["error"]
            .as_str()
            .expect("error")
            .contains("already submitted"),
        "the replacement gets the duplicate-name notice: {n}"
    );
    demo.wait_submit_empty();
    assert_eq!(
        demo.ledger_count(&format!(
            "SELECT count(*) FROM audit WHERE action = 'reject' AND file = '{name}'"
        )),
        1
    );
    assert_eq!(
        demo.sample_email_rows(),
        1,
        "the replacement was not executed"
    );
}

#[test]
fn a_submission_held_when_a_crash_came_is_settled_at_the_next_start() {
    let demo = Demo::new(20, |_| {});
    let name = format!("forget-{}_082000.json", today());
    demo.submit(&name, &seed_forget());
    demo.run_once();
    let id: i64 = demo
        .ledger()
        .query_row("SELECT id FROM files WHERE name = ?1", [&name], |r| {
            r.get(0)
        })
        .expect("claimed");
    // Killed just after the finished file was renamed to its holding name: the ledger has not marked it removed.
    let set_unremoved = || {
        demo.ledger()
            .execute("UPDATE files SET removed = 0 WHERE id = ?1", [id])
            .expect("update");
    };
    let holding = demo.submit.join(format!(".gdprd-leaving-{id}.json"));
    set_unremoved();
    std::fs::write(&holding, seed_forget()).expect("holding file");
    demo.run_once();
    assert!(!holding.exists(), "the claimed file held there is removed");
    let stem = name.strip_suffix(".json").expect("stem");
    assert!(
        !demo.result.join(format!("{stem}-rejected.json")).exists(),
        "the claimed file is not a new submission"
    );
    // The same crash, but what was held is a file that replaced the claimed one: it gets its notice.
    set_unremoved();
    std::fs::write(&holding, b"{\"requests\": []}").expect("holding file");
    demo.run_once();
    assert!(!holding.exists());
    let n = notice(&demo, stem);
    assert!(
        n["error"]
            .as_str()
            .expect("error")
            .contains("already submitted"),
        "{n}"
    );
    assert_eq!(
        demo.ledger_count("SELECT count(*) FROM files WHERE removed = 0"),
        0
    );
}

#[test]
fn a_second_daemon_on_the_same_state_folder_refuses_to_start() {
    let demo = Demo::new(20, |_| {});
    let daemon = demo.start();
    let config = demo.config.to_str().expect("utf-8");
    for args in [
        vec!["run", "--config", config],
        vec!["run", "--once", "--config", config],
    ] {
        let mut second = crate::harness::gdprd()
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("second gdprd starts");
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(status) = second.try_wait().expect("try_wait") {
                break status;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = second.kill();
                let _ = second.wait();
                panic!("{args:?}: a second daemon on the same state folder kept running");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut stderr)
            .expect("stderr");
        assert!(!status.success(), "{args:?}");
        assert!(
            stderr.contains("is in use by another gdprd")
                && stderr.contains(&format!("pid {}", daemon.child.id())),
            "{args:?}: {stderr}"
        );
    }
    // The first one still works, and the read-only commands work beside it.
    let stem = format!("export-{}_083000", today());
    demo.submit(
        &format!("{stem}.json"),
        &std::fs::read(fixture("requests/seed-export.json")).expect("fixture"),
    );
    demo.wait_result(&format!("{stem}-execution-log.json"));
    let status = crate::harness::run(&["status", "--config", config]);
    assert!(
        status.status.success() && String::from_utf8_lossy(&status.stdout).contains(&stem),
        "status: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let file = demo
        .dir
        .path()
        .join(format!("forget-{}_090000.json", today()));
    std::fs::write(&file, seed_forget()).expect("write");
    let validate = crate::harness::run(&[
        "validate",
        "--config",
        config,
        file.to_str().expect("utf-8"),
    ]);
    // The seed holds one malformed contact on purpose: validate reads the file and says so.
    let said = String::from_utf8_lossy(&validate.stdout);
    assert!(
        said.contains("12 contacts, FORGET, due today"),
        "validate: {said}{}",
        String::from_utf8_lossy(&validate.stderr)
    );
}

#[test]
fn a_second_rejection_of_a_name_keeps_the_first_notice() {
    let demo = Demo::new(20, |_| {});
    let _daemon = demo.start();
    let stem = "forget-20180315_120000";
    let name = format!("{stem}.json");
    demo.submit(&name, &seed_forget());
    let first = notice(&demo, stem);
    assert!(
        first["error"]
            .as_str()
            .expect("error")
            .contains("dated 2018-03-15"),
        "{first}"
    );
    demo.wait_submit_empty();
    for n in 2..=3 {
        demo.submit(&name, &seed_forget());
        let again = demo.result_json(&format!("{stem}-rejected-{n}.json"));
        assert!(
            again["error"]
                .as_str()
                .expect("error")
                .contains("already submitted"),
            "{again}"
        );
        demo.wait_submit_empty();
    }
    assert_eq!(
        notice(&demo, stem),
        first,
        "the first notice is kept as it was"
    );
    assert_eq!(
        demo.results(),
        [
            format!("{stem}-rejected-2.json"),
            format!("{stem}-rejected-3.json"),
            format!("{stem}-rejected.json"),
        ]
    );
}

#[test]
fn a_file_dated_beyond_the_horizon_is_rejected_not_kept_forever() {
    let demo = Demo::new(20, |_| {});
    let _daemon = demo.start();
    let far = "forget-20991231_000000";
    demo.submit(&format!("{far}.json"), &seed_forget());
    // 31 days ahead (the default horizon) still waits for its day.
    let near_date = (chrono::Utc::now() + chrono::Duration::days(31))
        .format("%Y%m%d")
        .to_string();
    let near = format!("forget-{near_date}_000000.json");
    demo.submit(&near, &seed_forget());
    let n = notice(&demo, far);
    let error = n["error"].as_str().expect("error");
    assert!(
        error.contains("dated 2099-12-31, more than 31 days after today")
            && error.contains("at most 31 days ahead"),
        "{error}"
    );
    demo.wait_submit_empty_but(&near);
    assert_eq!(demo.sample_email_rows(), 1, "nothing executed");
    let out = crate::harness::run(&["validate", demo.submit.join(&near).to_str().expect("utf-8")]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "waits until {}",
            (chrono::Utc::now() + chrono::Duration::days(31)).format("%Y-%m-%d")
        )),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_slow_upload_that_pauses_longer_than_the_settle_time_is_waited_for() {
    use std::io::Write;
    let demo = Demo::new(20, |c| {
        c.set("intake.settle_seconds", 1);
    });
    let _daemon = demo.start();
    let name = format!("forget-{}_084500.json", today());
    let body = seed_forget();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut file = std::fs::File::create(demo.submit.join(&name)).expect("create");
    file.write_all(head).expect("first half");
    file.sync_all().expect("sync");
    // The writer pauses for longer than the settle time, across several rescans.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        demo.ledger_count(&format!("SELECT count(*) FROM files WHERE name = '{name}'")),
        0,
        "a half-written file does not use up its name"
    );
    assert!(demo.results().is_empty(), "{:?}", demo.results());
    file.write_all(tail).expect("second half");
    drop(file);
    let stem = name.strip_suffix(".json").expect("stem");
    let log = demo.result_json(&format!("{stem}-execution-log.json"));
    assert_eq!(
        successes(&responses(&log)),
        11,
        "the whole file was executed"
    );
}

#[test]
fn an_upload_that_stays_truncated_or_empty_is_refused_after_the_upload_timeout() {
    let demo = Demo::new(20, |c| {
        c.insert("intake.upload_timeout_seconds", 3);
    });
    let _daemon = demo.start();
    let truncated = format!("forget-{}_085000", today());
    let empty = format!("forget-{}_085001", today());
    let body = seed_forget();
    std::fs::write(
        demo.submit.join(format!("{truncated}.json")),
        &body[..body.len() / 2],
    )
    .expect("write");
    std::fs::write(demo.submit.join(format!("{empty}.json")), b"").expect("write");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        demo.results().is_empty(),
        "still waiting: {:?}",
        demo.results()
    );
    let log = demo.result_json(&format!("{truncated}-execution-log.json"));
    let error = log["error"].as_str().expect("error");
    assert!(error.contains("EOF while parsing"), "{error}");
    let log = demo.result_json(&format!("{empty}-execution-log.json"));
    assert_eq!(
        log["error"], "ERROR: invalid JSON at line 1 column 1: EOF while parsing a value",
        "columns start at 1, also in an empty file"
    );
    demo.wait_submit_empty();
}

#[test]
fn the_ledger_keeps_a_keyed_digest_of_each_file_never_a_plain_hash() {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let demo = Demo::new(20, |_| {});
    let name = format!("forget-{}_091500.json", today());
    let bytes = seed_forget();
    demo.submit(&name, &bytes);
    demo.run_once();
    let stored: String = demo
        .ledger()
        .query_row("SELECT sha256 FROM files WHERE name = ?1", [&name], |r| {
            r.get(0)
        })
        .expect("digest");
    let key = hex::decode(
        std::fs::read_to_string(demo.dir.path().join("state/secret.key"))
            .expect("secret")
            .trim(),
    )
    .expect("hex key");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("key");
    mac.update(&bytes);
    assert_eq!(
        stored,
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes())),
        "HMAC-SHA256 of the bytes with the installation secret"
    );
    assert!(!stored.contains(&hex::encode(Sha256::digest(&bytes))));
}
