//! Workers in parallel (`[engine] workers`): different accounts run at once, files of one account still run one
//! at a time in name order, and a crash in the middle of parallel work resumes every account exactly once. The
//! order of events is read from the ledger's own timestamps, never from a timed threshold.

use crate::durability::{
    chunks_done, filler_forget, fillers_in_clear, forget_audits, large_forget, BATCH, DEVICES,
};
use crate::harness::{responses, today, wait_until, Config, Demo};
use rusqlite::OptionalExtension;
use std::path::PathBuf;
use std::time::Duration;

/// A demo of `rows` contacts in chunks of [`BATCH`] with `workers` workers, and beside the shipped account `demo`
/// (the SQLite store and the CSV lists) one more account per name of `tenants`, each with its own SQLite store
/// (a copy of the demo database, mapped as the demo's) and its own folders under `accounts/NAME`.
fn tenants_demo(rows: u64, workers: u64, tenants: &[&str]) -> Demo {
    let demo = Demo::new(rows, |c| {
        c.merge(&format!(
            "[limits]\nbatch_size = {BATCH}\n[engine]\nworkers = {workers}"
        ));
    });
    demo.edit_config(|c| {
        for name in tenants {
            let db = demo.dir.path().join(format!("{name}.db"));
            std::fs::copy(&demo.db, &db).expect("copy the demo database");
            let mut store = c.get("stores.demo").clone();
            let table = store.as_table_mut().expect("a table");
            table.insert("path".into(), db.to_str().expect("utf-8").into());
            // Its own recordings: a forget deletes the files its rows name.
            let recordings = demo.dir.path().join(format!("{name}-recordings"));
            copy_folder(&demo.dir.path().join("recordings"), &recordings);
            table.insert(
                "files_root".into(),
                recordings.to_str().expect("utf-8").into(),
            );
            c.insert(&format!("stores.{name}"), store);
            add_account(c, name, name);
        }
    });
    for name in tenants {
        make_folders(&demo, name);
    }
    demo
}

/// Adds account `name` (local transport, folders under `accounts/NAME`) whose one store is `store`.
fn add_account(c: &mut Config, name: &str, store: &str) {
    let account: toml::Table = format!(
        "name = \"{name}\"\nroot = \"accounts/{name}\"\ntimezone = \"UTC\"\ntransport = \"local\"\nstores = [\"{store}\"]\nretention_days = 3"
    )
    .parse()
    .expect("an account");
    c.push("accounts", account);
}

/// Makes account `name`'s `GDPR_Submit` and `GDPR_Result`.
fn make_folders(demo: &Demo, name: &str) {
    for folder in ["GDPR_Submit", "GDPR_Result"] {
        std::fs::create_dir_all(root(demo, name).join(folder)).expect("account folder");
    }
}

/// Copies the files of folder `from` (one level) into a new folder `to`.
fn copy_folder(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
        }
    }
}

/// The folder of account `name` (`demo` is the shipped one).
fn root(demo: &Demo, name: &str) -> PathBuf {
    demo.dir.path().join("accounts").join(name)
}

/// Drops a file into account `name`'s `GDPR_Submit` as an upload finishes: a temporary name, then a rename.
fn submit(demo: &Demo, account: &str, name: &str, bytes: &[u8]) {
    let submit = root(demo, account).join("GDPR_Submit");
    let temp = submit.join(format!("{name}.filepart"));
    std::fs::write(&temp, bytes).expect("write upload");
    std::fs::rename(&temp, submit.join(name)).expect("rename upload");
}

/// Waits for account `account`'s execution log of `name` and returns its responses.
fn wait_log(demo: &Demo, account: &str, name: &str) -> Vec<String> {
    let stem = name.strip_suffix(".json").expect("stem");
    let path = root(demo, account)
        .join("GDPR_Result")
        .join(format!("{stem}-execution-log.json"));
    // 2,000 devices in 100 chunks on a machine shared with other builds: minutes, not seconds.
    wait_until(Duration::from_secs(600), "the execution log", || {
        path.exists()
    });
    let log = serde_json::from_slice(&std::fs::read(&path).expect("read log")).expect("JSON log");
    responses(&log)
}

/// A forget of `n` filler contacts from `first` on.
fn small_forget(first: u64, n: u64) -> Vec<u8> {
    filler_forget("small", first..first + n)
}

/// `(received_at, finished_at)` of `account`'s file `name` in the ledger, waiting until it is done there (just
/// after its execution log is in place).
fn times(demo: &Demo, account: &str, name: &str) -> (String, String) {
    let done = || {
        demo.ledger()
            .query_row(
                "SELECT received_at, finished_at FROM files WHERE account = ?1 AND name = ?2 AND state = 'done'",
                [account, name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .ok()
            .flatten()
    };
    wait_until(
        Duration::from_secs(60),
        "the file done in the ledger",
        || done().is_some(),
    );
    done().unwrap_or_default()
}

#[test]
fn a_small_file_of_another_account_is_not_stuck_behind_a_large_forget() {
    let demo = tenants_demo(20_000, 2, &["b"]);
    let daemon = demo.start();
    let big = format!("forget-{}_010000.json", today());
    let small = format!("forget-{}_010001.json", today());
    submit(&demo, "demo", &big, &large_forget());
    wait_until(
        Duration::from_secs(120),
        "the large forget to start",
        || chunks_done(&demo) >= 1,
    );
    submit(&demo, "b", &small, &small_forget(5, 1));
    assert_eq!(wait_log(&demo, "b", &small), ["SUCCESS"]);
    // Account b's file came after the large forget had begun and finished while it still ran: the large
    // forget journaled chunks (audited contacts) after it, and finished after it.
    let (small_received, small_finished) = times(&demo, "b", &small);
    let big_responses = wait_log(&demo, "demo", &big);
    assert_eq!(big_responses.len() as u64, DEVICES);
    let (big_received, big_finished) = times(&demo, "demo", &big);
    assert!(
        big_received < small_received,
        "{big_received} < {small_received}"
    );
    assert!(
        small_finished < big_finished,
        "account b finished ({small_finished}) before the large forget ({big_finished})"
    );
    let audited_after: i64 = demo.ledger_count(&format!(
        "SELECT count(*) FROM audit WHERE account = 'demo' AND file = '{big}' AND finished > '{small_finished}'"
    ));
    assert!(
        audited_after > 0,
        "the large forget was still working when account b's file finished"
    );
    assert!(daemon.log_text().contains("workers=2"));
}

#[test]
fn files_of_one_account_run_in_name_order_while_accounts_run_in_parallel() {
    const FILES: u64 = 4;
    let accounts = ["demo", "b", "c"];
    let demo = tenants_demo(2_000, 4, &accounts[1..]);
    // Every file is there before the start, so the workers find them all at once; each account's files are
    // numbered in the order they must run.
    for (a, account) in accounts.iter().enumerate() {
        for f in 0..FILES {
            let name = format!("forget-{}_0{a}000{f}.json", today());
            submit(&demo, account, &name, &small_forget(100 * f, 60));
        }
    }
    let _daemon = demo.start();
    let mut spans = Vec::new();
    for account in accounts {
        let mut previous: Option<(i64, String)> = None;
        for f in 0..FILES {
            let a = accounts.iter().position(|x| *x == account).expect("index");
            let name = format!("forget-{}_0{a}000{f}.json", today());
            let got = wait_log(&demo, account, &name);
            assert_eq!(got.len(), 60, "{account}/{name}");
            let id: i64 = demo
                .ledger()
                .query_row(
                    "SELECT id FROM files WHERE account = ?1 AND name = ?2",
                    [account, name.as_str()],
                    |r| r.get(0),
                )
                .expect("claimed");
            let (received, finished) = times(&demo, account, &name);
            if let Some((previous_id, previous_finished)) = &previous {
                assert!(
                    *previous_id < id,
                    "{account}: {name} claimed after the file before it"
                );
                assert!(
                    previous_finished.as_str() <= received.as_str(),
                    "{account}: {name} claimed ({received}) only once the file before it finished ({previous_finished})"
                );
            }
            spans.push((account, received.clone(), finished.clone()));
            previous = Some((id, finished));
        }
    }
    // And the accounts did run at once: some file of one account was claimed before a file of another finished,
    // and finished after that one was claimed.
    let overlapping = spans
        .iter()
        .any(|(a, r1, f1)| spans.iter().any(|(b, r2, f2)| a != b && r1 < f2 && r2 < f1));
    assert!(overlapping, "no two accounts ran at once: {spans:?}");
}

#[test]
fn sigkill_in_the_middle_of_parallel_forgets_resumes_every_account_exactly_once() {
    let demo = tenants_demo(20_000, 2, &["b"]);
    let name = format!("forget-{}_020000.json", today());
    let chunks_of = |account: &str| -> i64 {
        demo.ledger()
            .query_row(
                "SELECT count(*) FROM chunks JOIN files ON files.id = chunks.file_id WHERE files.account = ?1",
                [account],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten()
            .unwrap_or(0)
    };
    let mut daemon = demo.start();
    submit(&demo, "demo", &name, &large_forget());
    submit(&demo, "b", &name, &large_forget());
    wait_until(
        Duration::from_secs(300),
        "both accounts to journal chunks",
        || chunks_of("demo") >= 3 && chunks_of("b") >= 3,
    );
    daemon.signal("KILL");
    daemon.wait_exit(Duration::from_secs(10));
    let total = (DEVICES / BATCH) as i64;
    let at_kill = (chunks_of("demo"), chunks_of("b"));
    assert!(
        at_kill.0 < total && at_kill.1 < total,
        "killed in the middle of both ({at_kill:?} chunks done)"
    );
    drop(daemon);
    let daemon = demo.start();
    for account in ["demo", "b"] {
        let got = wait_log(&demo, account, &name);
        assert_eq!(got.len() as u64, DEVICES, "{account}");
        assert!(
            got.iter().all(|r| r == "SUCCESS"),
            "{account}: every contact found once, none changed to not found by the resume"
        );
        assert_eq!(
            forget_audits(&demo, account, &name),
            (DEVICES as i64, DEVICES as i64),
            "{account}: each device executed and audited once"
        );
        assert_eq!(chunks_of(account), total, "{account}");
        let db = if account == "demo" {
            demo.db.clone()
        } else {
            demo.dir.path().join(format!("{account}.db"))
        };
        let store = rusqlite::Connection::open(db).expect("store");
        assert_eq!(
            fillers_in_clear(&store, DEVICES),
            0,
            "{account}: every contact was forgotten"
        );
    }
    assert!(daemon.log_text().contains("resuming claimed file"));
}

#[test]
fn two_accounts_sharing_one_sqlite_store_forget_at_once_without_a_busy_error() {
    // Both accounts forget in the demo's SQLite store (which rebuilds its file after each forget) at the same
    // time: each worker's connection waits for the other's transaction instead of failing with "busy".
    const EACH: u64 = 600;
    let demo = Demo::new(5_000, |c| {
        c.merge(&format!(
            "[limits]\nbatch_size = {BATCH}\n[engine]\nworkers = 2"
        ));
        c.set(
            "accounts[demo].stores",
            toml::Value::Array(vec!["demo".into()]),
        );
        add_account(c, "b", "demo");
    });
    make_folders(&demo, "b");
    let name = format!("forget-{}_030000.json", today());
    let _daemon = demo.start();
    submit(&demo, "demo", &name, &small_forget(0, EACH));
    submit(&demo, "b", &name, &small_forget(EACH, EACH));
    for account in ["demo", "b"] {
        let got = wait_log(&demo, account, &name);
        assert_eq!(got.len() as u64, EACH, "{account}");
        assert!(
            got.iter().all(|r| r == "SUCCESS"),
            "{account}: every contact forgotten, none answered with an error: {:?}",
            got.iter().find(|r| *r != "SUCCESS")
        );
    }
    let (a, b) = (times(&demo, "demo", &name), times(&demo, "b", &name));
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "the two files ran at once: {a:?} {b:?}"
    );
    assert_eq!(
        fillers_in_clear(&demo.db(), 2 * EACH),
        0,
        "every contact of both files was forgotten"
    );
}

#[test]
fn a_reload_keeps_the_workers_until_a_restart_and_says_so() {
    let demo = Demo::new(20, |c| {
        c.merge("[engine]\nworkers = 2");
    });
    let daemon = demo.start();
    let warned = || {
        daemon
            .log_text()
            .matches("section=\"engine.workers\"")
            .count()
    };
    let reloads = || daemon.log_text().matches("configuration reloaded").count();
    demo.edit_config(|c| {
        c.set("engine.workers", 3);
    });
    daemon.signal("HUP");
    wait_until(Duration::from_secs(20), "the first reload", || {
        reloads() == 1
    });
    assert_eq!(warned(), 1, "a change of workers waits for a restart");
    // retry_window is read per file: changing only it reloads without that warning.
    demo.edit_config(|c| {
        c.insert("engine.retry_window", "1m");
    });
    daemon.signal("HUP");
    wait_until(Duration::from_secs(20), "the second reload", || {
        reloads() == 2
    });
    assert_eq!(warned(), 1, "{}", daemon.log_text());
    assert!(daemon.log_text().contains("workers=2"));
    // The workers still take files after both reloads.
    let name = format!("forget-{}_040000.json", today());
    demo.submit(&name, &small_forget(1, 1));
    assert_eq!(wait_log(&demo, "demo", &name), ["SUCCESS"]);
}
