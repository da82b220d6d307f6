//! Crash and shutdown in the middle of a large forget: after a restart every contact is executed exactly once,
//! no response changes, and the execution log is complete. The SIGKILL scenario runs against every store that
//! forgets in chunks: SQLite, the CSV lists, PostgreSQL and MySQL.

use crate::harness::{responses, today, wait_until, Config, Daemon, Demo};
use crate::stores_sql::{mysql_demo_rows, postgres_demo_rows, server, MYSQL_VAR, POSTGRES_VAR};
use std::time::Duration;

pub(crate) const DEVICES: u64 = 2000;
pub(crate) const BATCH: u64 = 20;

pub(crate) fn large_forget() -> Vec<u8> {
    filler_forget("big", 0..DEVICES)
}

/// A forget (request case `case`) of the demo's filler emails `user{i}@example.com` for `i` in `range`.
pub(crate) fn filler_forget(case: &str, range: std::ops::Range<u64>) -> Vec<u8> {
    let contacts: Vec<String> = range
        .map(|i| format!(r#"{{"email": "user{i}@example.com"}}"#))
        .collect();
    format!(
        r#"{{"requests": [{{"requestcase": "{case}", "type": "FORGET", "contacts": [{}]}}]}}"#,
        contacts.join(", ")
    )
    .into_bytes()
}

pub(crate) fn chunks_done(demo: &Demo) -> i64 {
    demo.ledger()
        .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))
        .unwrap_or(0)
}

/// Starts a large forget and interrupts it with `signal` once a few chunks are journaled; returns the daemon.
pub(crate) fn interrupt(demo: &Demo, name: &str, signal: &str) -> Daemon {
    let daemon = demo.start();
    demo.submit(name, &large_forget());
    wait_until(Duration::from_secs(60), "a few chunks to complete", || {
        chunks_done(demo) >= 5
    });
    daemon.signal(signal);
    daemon
}

/// The answer to a contact of [`large_forget`] that the stores hold (`found`) or not.
fn answer(found: bool) -> &'static str {
    if found {
        "SUCCESS"
    } else {
        "SUCCESS: not found"
    }
}

/// The execution log answers every device of [`large_forget`] (`SUCCESS`, or `SUCCESS: not found` where
/// `found(i)` says the stores never held contact `i`), and the ledger holds one audited execution per device.
pub(crate) fn assert_log_and_ledger_exactly_once(
    demo: &Demo,
    name: &str,
    found: impl Fn(u64) -> bool,
) {
    let stem = name.strip_suffix(".json").expect("stem");
    // 2,000 devices in 100 chunks: on a machine shared with other builds this takes minutes, not seconds.
    let path = demo.result.join(format!("{stem}-execution-log.json"));
    wait_until(Duration::from_secs(600), "the execution log", || {
        path.exists()
    });
    let log = demo.result_json(&format!("{stem}-execution-log.json"));
    let got = responses(&log);
    assert_eq!(got.len() as u64, DEVICES);
    let want: Vec<&str> = (0..DEVICES).map(|i| answer(found(i))).collect();
    assert!(
        got == want,
        "every response is what the stores held, none changed to not found by the resume"
    );
    assert_eq!(
        forget_audits(demo, "demo", name),
        (DEVICES as i64, DEVICES as i64),
        "each device executed and audited once"
    );
    assert_eq!(chunks_done(demo), (DEVICES / BATCH) as i64);
}

/// The forget audit rows of `account`'s file `name`: how many, and how many distinct devices.
pub(crate) fn forget_audits(demo: &Demo, account: &str, name: &str) -> (i64, i64) {
    demo.ledger()
        .query_row(
            "SELECT count(*), count(DISTINCT device_hmac) FROM audit WHERE action = 'forget' AND account = ?1 AND file = ?2",
            [account, name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("audit")
}

/// The one SIGKILL scenario, run against every store: a large forget is killed once a few chunks are journaled,
/// and the next start resumes it. Every contact is executed, answered and audited exactly once, no answer changes,
/// no result appears before the end, and progress is logged to the last contact. `demo` is a demo (of
/// `DEVICES + 500` rows or more) whose account uses the store under test, in chunks of [`BATCH`]; `found(i)` says
/// whether its stores hold contact `i`; `in_clear` counts the contacts of the forget the store under test still
/// holds.
fn sigkill_in_the_middle_of_a_large_forget_resumes_exactly_once(
    demo: &Demo,
    found: impl Fn(u64) -> bool,
    in_clear: impl Fn() -> i64,
) {
    let name = format!("forget-{}_020000.json", today());
    let mut daemon = interrupt(demo, &name, "KILL");
    daemon.wait_exit(Duration::from_secs(10));
    let at_kill = chunks_done(demo);
    assert!(
        at_kill < (DEVICES / BATCH) as i64,
        "killed in the middle ({at_kill} chunks done)"
    );
    assert!(!demo
        .result
        .join(format!("forget-{}_020000-execution-log.json", today()))
        .exists());
    drop(daemon);
    let daemon = demo.start();
    assert_log_and_ledger_exactly_once(demo, &name, found);
    assert_eq!(in_clear(), 0, "every contact was forgotten");
    demo.wait_submit_empty();
    assert!(daemon.log_text().contains("resuming claimed file"));
    // Progress is logged at a steady interval and at the end: contacts done of total, and the rate.
    let log = daemon.log_text();
    let last = log
        .lines()
        .rev()
        .find(|l| l.contains("forget progress"))
        .expect("progress logged");
    assert!(
        last.contains(&format!("done={DEVICES} total={DEVICES}")),
        "{last}"
    );
    assert!(last.contains("per_second="), "{last}");
}

/// How many contacts of [`large_forget`] the demo's SQLite store still holds.
fn sqlite_in_clear(demo: &Demo) -> i64 {
    fillers_in_clear(&demo.db(), DEVICES)
}

/// How many filler contacts `user{i}@example.com` with `i < below` the demo database `db` still holds.
pub(crate) fn fillers_in_clear(db: &rusqlite::Connection, below: u64) -> i64 {
    db.query_row(
        "SELECT count(*) FROM contact_list WHERE email LIKE 'user%@example.com'
         AND CAST(substr(email, 5, instr(email, '@') - 5) AS INTEGER) < ?1",
        [below as i64],
        |r| r.get(0),
    )
    .expect("count")
}

/// A demo of 20,000 contacts forgetting in chunks of [`BATCH`]; `edit` changes its config further.
fn large_demo(edit: impl FnOnce(&mut Config)) -> Demo {
    Demo::new(20_000, |c| {
        c.merge(&format!("[limits]\nbatch_size = {BATCH}"));
        edit(c);
    })
}

/// After a stop, the restart finishes the forget: every contact executed once, none left in the SQLite store.
fn assert_completed_exactly_once(demo: &Demo, name: &str) {
    assert_log_and_ledger_exactly_once(demo, name, |_| true);
    assert_eq!(sqlite_in_clear(demo), 0, "every contact was forgotten");
    demo.wait_submit_empty();
}

#[test]
fn sigkill_in_the_middle_of_a_large_forget_resumes_exactly_once_in_sqlite() {
    // The demo's account as shipped: the SQLite store, and the CSV lists beside it.
    let demo = large_demo(|_| {});
    sigkill_in_the_middle_of_a_large_forget_resumes_exactly_once(
        &demo,
        |_| true,
        || sqlite_in_clear(&demo),
    );
}

#[test]
fn sigkill_in_the_middle_of_a_large_forget_resumes_exactly_once_in_csv_lists() {
    // The lists alone: they hold one filler contact in ten (user0, user10, …); the others are not found.
    let demo = large_demo(|c| {
        c.set("accounts[demo].stores", vec!["lists"]);
    });
    let lists = demo.dir.path().join("lists/contacts-2025-06.csv");
    let in_clear = || {
        let mut reader = csv::Reader::from_path(&lists).expect("the contact list");
        let mut left = 0;
        for record in reader.records() {
            let record = record.expect("a record");
            let email = record.get(5).expect("email");
            let in_the_forget = email
                .strip_prefix("user")
                .and_then(|r| r.strip_suffix("@example.com"))
                .and_then(|i| i.parse::<u64>().ok())
                .is_some_and(|i| i < DEVICES);
            left += i64::from(in_the_forget);
        }
        left
    };
    assert_eq!(
        in_clear(),
        (DEVICES / 10) as i64,
        "the lists hold one in ten"
    );
    sigkill_in_the_middle_of_a_large_forget_resumes_exactly_once(&demo, |i| i % 10 == 0, in_clear);
}

#[test]
fn sigkill_in_the_middle_of_a_large_forget_resumes_exactly_once_in_postgres() {
    let Some(url) = server(POSTGRES_VAR) else {
        return;
    };
    let (demo, schema) = postgres_demo_rows(&url, DEVICES + 500, |c| {
        c.merge(&format!("[limits]\nbatch_size = {BATCH}"));
    });
    sigkill_in_the_middle_of_a_large_forget_resumes_exactly_once(
        &demo,
        |_| true,
        || {
            schema.count(&format!(
                "SELECT count(*) FROM contact_list WHERE email ~ '^user[0-9]+@example.com$' AND substring(email from 5 for position('@' in email) - 5)::int < {DEVICES}"
            ))
        },
    );
}

#[test]
fn sigkill_in_the_middle_of_a_large_forget_resumes_exactly_once_in_mysql() {
    let Some(url) = server(MYSQL_VAR) else {
        return;
    };
    let (demo, db) = mysql_demo_rows(&url, DEVICES + 500, |c| {
        c.merge(&format!("[limits]\nbatch_size = {BATCH}"));
    });
    sigkill_in_the_middle_of_a_large_forget_resumes_exactly_once(
        &demo,
        |_| true,
        || {
            db.count(&format!(
                "SELECT count(*) FROM contact_list WHERE email REGEXP '^user[0-9]+@example[.]com$' AND CAST(SUBSTRING(email, 5, LOCATE('@', email) - 5) AS UNSIGNED) < {DEVICES}"
            ))
        },
    );
}

#[test]
fn sigterm_stops_at_a_checkpoint_and_exits_zero() {
    let demo = large_demo(|_| {});
    let name = format!("forget-{}_010000.json", today());
    let mut daemon = interrupt(&demo, &name, "TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(0));
    let stopped_at = chunks_done(&demo);
    assert!(
        stopped_at < (DEVICES / BATCH) as i64,
        "stopped in the middle ({stopped_at} chunks done)"
    );
    assert!(daemon.log_text().contains("stopping between chunks"));
    drop(daemon);
    let _daemon = demo.start();
    assert_completed_exactly_once(&demo, &name);
}

#[test]
fn a_stop_that_passes_its_deadline_exits_and_the_journal_resumes_exactly_once() {
    let demo = large_demo(|c| {
        c.insert("stop_deadline_seconds", 0);
    });
    let name = format!("forget-{}_030000.json", today());
    let mut daemon = interrupt(&demo, &name, "TERM");
    // No time to reach a checkpoint: it exits at once, not with 0.
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)), Some(130));
    assert!(daemon.log_text().contains("stop deadline passed"));
    assert!(
        chunks_done(&demo) < (DEVICES / BATCH) as i64,
        "stopped in the middle"
    );
    drop(daemon);
    let _daemon = demo.start();
    assert_completed_exactly_once(&demo, &name);
}

#[test]
fn what_a_crash_leaves_in_the_state_folder_is_gone_after_the_next_start() {
    let demo = Demo::new(20, |_| {});
    let name = format!("forget-{}_040000.json", today());
    demo.submit(&name, &crate::harness::seed_forget());
    demo.run_once();
    let (id, state, removed): (i64, String, bool) = demo
        .ledger()
        .query_row(
            "SELECT id, state, removed FROM files WHERE name = ?1",
            [&name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("ledger row");
    assert_eq!((state.as_str(), removed), ("done", true));
    let state_dir = demo.dir.path().join("state");
    let seed = crate::harness::seed_forget();
    let put = |rel: &str, bytes: &[u8]| {
        let path = state_dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("leftover");
        path
    };
    // Each place a crash can leave a copy of a request, or part of a result, in clear.
    let leftovers = [
        // Killed at the unlink of the claimed copy: the ledger says done and removed.
        put(&format!("claimed/{id}.json"), &seed),
        // A claimed copy the ledger never recorded.
        put("claimed/999.json", &seed),
        // An HTTP request copied but never claimed.
        put("claimed/pending-0badc0de.json", &seed),
        // An atomic write killed before its rename, in each state folder that has them.
        put(&format!("claimed/.{id}.json.gdprd-tmp"), &seed),
        put("jobs/.77.lines.json.gdprd-tmp", b"[]"),
        put("remote/.demo.json.gdprd-tmp", b"{}"),
        // An export part.
        put(&format!("work/{id}-0.zip"), b"PK"),
        // HTTP job lines whose job expired (killed between the tombstone and the unlink) ...
        put(
            "jobs/5.lines.json",
            br#"[{"name":"Email","value":"test@test.com"}]"#,
        ),
        // ... and lines with no facts file (killed between the two writes): no URL can read them.
        put(
            "jobs/6.lines.json",
            br#"[{"name":"Email","value":"test@test.com"}]"#,
        ),
        // A result killed before its rename.
        {
            let path = demo.result.join(".forget-x-execution-log.json.gdprd-tmp");
            std::fs::write(&path, b"{").expect("leftover");
            path
        },
        // An upload to the embedded SFTP server cut off by the crash.
        {
            let path = demo.submit.join(".forget-x.json.123.upload");
            std::fs::write(&path, b"{").expect("leftover");
            path
        },
    ];
    put(
        "jobs/5.json",
        br#"{"account":"demo","origin":"api","kind":"FORGET","created":"2026-01-01T00:00:00Z","expired":true}"#,
    );
    // A live job keeps its lines: its response is read from them until retention.
    let live_facts = put(
        "jobs/7.json",
        br#"{"account":"demo","origin":"api","kind":"FORGET","created":"2026-01-01T00:00:00Z","expired":false}"#,
    );
    let live_lines = put("jobs/7.lines.json", b"[]");
    let daemon = demo.start();
    for path in &leftovers {
        assert!(!path.exists(), "{} is left after the start", path.display());
    }
    assert!(
        live_facts.exists() && live_lines.exists(),
        "a live job keeps its lines"
    );
    assert!(daemon
        .log_text()
        .contains("removed files a crash left behind"));
}
