//! The deadline clock (issue 18 item 1), driven as a DPO would: a file whose store failed stays open, is shown
//! overdue by `gdprd status` once its month has passed (the test clock moved 40 days on), is extended once with
//! `gdprd extend` while the daemon runs, and shows in the metrics; an HTTP job's status carries its due day.

use crate::forget::CRM_STORE;
use crate::harness::{run, spare_port, today, wait_until, Demo};
use crate::http::{Api, TOKEN};
use chrono::{DateTime, Months, NaiveDate, Utc};
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

/// Forty days, in seconds: the test clock's step past a one-month deadline.
const FORTY_DAYS: &str = "3456000";

/// A forget whose valid contact the failing CRM store cannot forget: the file stays open.
const OWING: &[u8] = br#"{"requests":[{"type":"FORGET","contacts":[{"email":"test@test.com"}]}]}"#;

/// A forget whose only contact is not a device: answered ERROR, but the answer is final, so it is closed.
const ANSWERED: &[u8] =
    br#"{"requests":[{"type":"FORGET","contacts":[{"phone":"617 555 1313"}]}]}"#;

/// The demo plus a `crm` store whose mapped table is missing, so every statement against it fails.
fn failing_demo(edit: impl FnOnce(&mut crate::harness::Config)) -> Demo {
    let demo = Demo::new(20, |c| {
        c.push("accounts[demo].stores", "crm").merge(CRM_STORE);
        edit(c);
    });
    rusqlite::Connection::open(demo.dir.path().join("crm.db"))
        .and_then(|c| c.execute_batch("CREATE TABLE unrelated (x TEXT);"))
        .expect("crm db");
    demo
}

/// Runs `gdprd` with `args` and, when `clock` is set, the test clock moved on by that many seconds.
fn gdprd(args: &[&str], clock: Option<&str>) -> Output {
    let mut command = crate::harness::gdprd();
    command.args(args);
    if let Some(offset) = clock {
        command.env("GDPRD_TEST_CLOCK_OFFSET_SECONDS", offset);
    }
    command.output().expect("gdprd runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `gdprd status --json` with `extra` arguments, parsed.
fn status_json(demo: &Demo, extra: &[&str], clock: Option<&str>) -> Vec<Value> {
    let mut args = vec![
        "status",
        "--config",
        demo.config.to_str().expect("utf-8"),
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = gdprd(&args, clock);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("json")
        .as_array()
        .expect("array")
        .clone()
}

fn by_name<'a>(files: &'a [Value], name: &str) -> &'a Value {
    files
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {files:?}"))
}

fn day(v: &Value) -> NaiveDate {
    v.as_str().expect("a day").parse().expect("YYYY-MM-DD")
}

fn received_day(v: &Value) -> NaiveDate {
    v.as_str()
        .expect("a time")
        .parse::<DateTime<Utc>>()
        .expect("RFC 3339")
        .date_naive()
}

#[test]
fn a_file_owing_an_answer_40_days_on_is_overdue_until_extended_once() {
    let demo = failing_demo(|_| {});
    let _daemon = demo.start();
    let owing = format!("forget-{}_090000.json", today());
    let answered = format!("forget-{}_090001.json", today());
    demo.submit(&owing, OWING);
    let log = demo.result_json(&format!("forget-{}_090000-execution-log.json", today()));
    assert!(
        log.to_string().contains("ERROR: store \\\"crm\\\" failed"),
        "{log}"
    );
    demo.submit(&answered, ANSWERED);
    demo.result_json(&format!("forget-{}_090001-execution-log.json", today()));
    let config = demo.config.to_str().expect("utf-8");

    // Today: both within their month, the one owing an answer open.
    let files = status_json(&demo, &[], None);
    let f = by_name(&files, &owing);
    let received = received_day(&f["received_at"]);
    let due = received
        .checked_add_months(Months::new(1))
        .expect("a month on");
    assert_eq!(day(&f["due"]), due, "{f}");
    assert_eq!(
        (f["open"].as_bool(), f["overdue"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(f["days_left"].as_i64(), Some((due - received).num_days()));
    assert!(f["extension"].is_null());
    let a = by_name(&files, &answered);
    assert_eq!(a["open"], false, "an invalid device is an answer: {a}");
    assert!(status_json(&demo, &["--overdue"], None).is_empty());

    // Forty days on: the open file is overdue, the answered one is not listed.
    let later = Some(FORTY_DAYS);
    let overdue = status_json(&demo, &["--overdue"], later);
    assert_eq!(overdue.len(), 1, "{overdue:?}");
    let f = &overdue[0];
    assert_eq!(f["name"], owing.as_str());
    assert_eq!(f["overdue"], true);
    assert!(f["days_left"].as_i64().expect("days") < 0, "{f}");
    let id = f["id"].as_i64().expect("an id");
    let table = gdprd(&["status", "--config", config, "--overdue"], later);
    let table = text(&table);
    let line = table
        .lines()
        .find(|l| l.contains(&owing))
        .unwrap_or_else(|| panic!("{owing} in\n{table}"));
    assert!(
        line.contains("d over") && line.contains(&due.to_string()),
        "{line}"
    );
    assert!(!table.contains(&answered), "{table}");

    // Extended by the default two months, while the daemon runs.
    let reason = "the CRM is being restored from backup; the data subject was told on the phone";
    let out = gdprd(
        &[
            "extend",
            "--config",
            config,
            &id.to_string(),
            "--reason",
            reason,
        ],
        later,
    );
    assert!(out.status.success(), "{}", text(&out));
    let extended = due
        .checked_add_months(Months::new(2))
        .expect("two months on");
    assert!(text(&out).contains(&extended.to_string()), "{}", text(&out));
    let f = by_name(&status_json(&demo, &[], later), &owing).clone();
    assert_eq!(day(&f["due"]), extended);
    assert_eq!(
        (f["open"].as_bool(), f["overdue"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(day(&f["extension"]["previous_due"]), due);
    assert_eq!(f["extension"]["reason"], reason);
    assert!(status_json(&demo, &["--overdue"], later).is_empty());

    // Once only; and never a closed request or an unknown id.
    let again = gdprd(
        &[
            "extend",
            "--config",
            config,
            &id.to_string(),
            "--reason",
            "more time",
            "--by",
            "1 month",
        ],
        later,
    );
    assert!(!again.status.success());
    assert!(
        text(&again).contains("already extended"),
        "{}",
        text(&again)
    );
    let closed_id = a["id"].as_i64().expect("id").to_string();
    let closed = gdprd(
        &["extend", "--config", config, &closed_id, "--reason", "x"],
        None,
    );
    assert!(!closed.status.success());
    assert!(text(&closed).contains("is not open"), "{}", text(&closed));
    let unknown = gdprd(
        &["extend", "--config", config, "999999", "--reason", "x"],
        None,
    );
    assert!(
        text(&unknown).contains("no file 999999"),
        "{}",
        text(&unknown)
    );
    let audited = demo.ledger_count("SELECT count(*) FROM audit WHERE action = 'extend'");
    assert_eq!(audited, 1, "one extension, audited once");
    let reason_kept = demo.ledger_count(&format!(
        "SELECT count(*) FROM files WHERE id = {id} AND extension_reason = '{reason}'"
    ));
    assert_eq!(reason_kept, 1, "the reason is kept in the ledger");
}

#[test]
fn an_extension_longer_than_two_months_is_refused() {
    let demo = failing_demo(|_| {});
    demo.submit(&format!("forget-{}_090000.json", today()), OWING);
    demo.run_once();
    let config = demo.config.to_str().expect("utf-8");
    let id = status_json(&demo, &[], None)[0]["id"]
        .as_i64()
        .expect("id")
        .to_string();
    for by in ["3 months", "63 days"] {
        let out = gdprd(
            &[
                "extend", "--config", config, &id, "--reason", "x", "--by", by,
            ],
            None,
        );
        assert!(!out.status.success());
        assert!(
            text(&out).contains("at most two further months"),
            "{}",
            text(&out)
        );
    }
    let out = gdprd(
        &[
            "extend", "--config", config, &id, "--reason", " ", "--by", "1 month",
        ],
        None,
    );
    assert!(text(&out).contains("--reason is empty"), "{}", text(&out));
    let out = gdprd(
        &[
            "extend", "--config", config, &id, "--reason", "x", "--by", "1 week",
        ],
        None,
    );
    assert!(!out.status.success(), "a week is not a period gdprd reads");
    assert_eq!(
        demo.ledger_count("SELECT count(*) FROM audit WHERE action = 'extend'"),
        0
    );
}

fn scrape(port: u16) -> String {
    reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .and_then(reqwest::blocking::Response::text)
        .expect("the metrics endpoint answers")
}

fn series(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} in\n{body}"))
}

#[test]
fn metrics_show_open_and_overdue_requests_and_the_oldest_ones_age() {
    let port = spare_port();
    // Retention longer than the clock's step, so the sweep keeps the results the test reads.
    let demo = failing_demo(|c| {
        crate::harness::with_metrics(c, port);
        c.set("accounts[demo].retention_days", 100);
    });
    let _daemon = demo.start_with_env(&[("GDPRD_TEST_CLOCK_OFFSET_SECONDS", FORTY_DAYS)]);
    let body = scrape(port);
    assert_eq!(
        series(&body, "gdprd_open_requests{account=\"demo\"}"),
        0.0,
        "{body}"
    );
    assert_eq!(series(&body, "gdprd_overdue_requests"), 0.0);
    assert_eq!(series(&body, "gdprd_oldest_open_request_age_seconds"), 0.0);

    demo.submit(&format!("forget-{}_090000.json", today()), OWING);
    demo.submit(&format!("forget-{}_090001.json", today()), ANSWERED);
    demo.result_json(&format!("forget-{}_090000-execution-log.json", today()));
    demo.result_json(&format!("forget-{}_090001-execution-log.json", today()));
    // The worker records a file finished just after writing its log.
    wait_until(Duration::from_secs(10), "both files finished", || {
        demo.ledger_count("SELECT count(*) FROM files WHERE state = 'done'") == 2
    });
    let body = scrape(port);
    assert_eq!(
        series(&body, "gdprd_open_requests{account=\"demo\"}"),
        1.0,
        "{body}"
    );
    assert_eq!(series(&body, "gdprd_overdue_requests"), 1.0);
    let age = series(&body, "gdprd_oldest_open_request_age_seconds");
    assert!(age >= 40.0 * 86_400.0, "{age}");
    assert!(!body.contains("test@test.com"));
}

#[test]
fn an_http_jobs_status_carries_its_due_day() {
    let demo = crate::http::demo(20, |c| {
        c.set("accounts[demo].deadline", "10 days");
    });
    let daemon = demo.start();
    let api = Api::new(&daemon);
    let id = api.job("gdpr_erasure", "EMAIL,test@test.com");
    let r = api.wait(id, TOKEN);
    assert_eq!(r.status().as_u16(), 303);
    let json: Value = r.json().expect("json");
    let received = received_day(&json["received"]);
    assert_eq!(
        day(&json["due"]),
        received + chrono::Days::new(10),
        "{json}"
    );
    assert_eq!(
        json["dueAt"].as_str().expect("dueAt"),
        format!("{}T00:00:00Z", received + chrono::Days::new(11))
    );
    assert!(json.get("extension").is_none());
    let wca: Value = api
        .get(&format!("/rest/gdpr_jobs/{id}/status"), Some(TOKEN))
        .json()
        .expect("json");
    assert_eq!(wca["status"], "COMPLETE", "{wca}");
    assert_eq!(
        wca["due"], json["due"],
        "the seed's WCA path carries it too"
    );

    let out = run(&[
        "extend",
        "--config",
        demo.config.to_str().expect("utf-8"),
        &id.to_string(),
        "--reason",
        "x",
    ]);
    assert!(
        !out.status.success(),
        "a finished job owes nothing: nothing to extend"
    );
}

#[test]
fn a_deadline_that_is_not_a_period_is_refused_at_load() {
    let demo = Demo::new(20, |c| {
        c.set("accounts[demo].deadline", "4 weeks");
    });
    let out = run(&[
        "check-config",
        "--offline",
        demo.config.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("\"4 weeks\" is not a period"), "{said}");
}
