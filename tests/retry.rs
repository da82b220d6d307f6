//! Retry without resubmitting (issue 18 item 3): a forget whose store is down waits for it within
//! `[engine] retry_window`, and says so in `gdprd status`; `gdprd retry` finishes a file whose window passed.
//! The store is PostgreSQL behind a relay the test cuts and restores (`stores_sql::relayed_postgres_demo`).

use crate::harness::{responses, run, seed_forget, today, wait_until, Demo};
use crate::stores_sql::{relayed_postgres_demo, PgSchema};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `gdprd status --json` of the demo.
fn status(demo: &Demo) -> Vec<Value> {
    let out = run(&[
        "status",
        "--json",
        "--config",
        demo.config.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("status JSON")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn redacted(schema: &PgSchema) -> i64 {
    schema.count("SELECT count(*) FROM contact_list WHERE first_name = 'REDACTED'")
}

#[test]
fn a_forget_waits_for_its_store_within_the_retry_window_and_finishes_when_it_is_back() {
    let Some((demo, schema, relay)) = relayed_postgres_demo("1h") else {
        return;
    };
    let daemon = demo.start();
    let name = format!("forget-{}_120000.json", today());
    demo.submit(&name, &seed_forget());
    // The store is down: the file waits, and status says for which store.
    let mut seen = Value::Null;
    wait_until(
        Duration::from_secs(60),
        "status to say the file waits for demo",
        || {
            seen = status(&demo)
                .into_iter()
                .find(|f| f["name"] == name.as_str())
                .unwrap_or(Value::Null);
            seen["state"] == "retrying"
        },
    );
    assert_eq!(seen["waiting_for"], serde_json::json!(["demo"]), "{seen}");
    assert!(seen["waiting_since"].is_string(), "{seen}");
    assert!(
        seen["detail"]
            .as_str()
            .is_some_and(|d| d.contains("waiting for store \"demo\"")),
        "{seen}"
    );
    let log_name = format!("forget-{}_120000-execution-log.json", today());
    assert!(
        !demo.result.join(&log_name).exists(),
        "no log while the file waits"
    );
    assert_eq!(redacted(&schema), 0);

    // The store is back: the same file finishes on its own, every contact done.
    relay.up.store(true, Ordering::SeqCst);
    let log = demo.result_json(&log_name);
    let got = responses(&log);
    assert_eq!(
        got.iter().filter(|r| *r == "SUCCESS").count(),
        11,
        "{got:?}"
    );
    assert!(
        !got.iter().any(|r| r.starts_with("ERROR: store")),
        "{got:?}"
    );
    assert!(redacted(&schema) >= 4);
    let after = status(&demo)
        .into_iter()
        .find(|f| f["name"] == name.as_str())
        .expect("the file in status");
    assert_eq!(after["state"], "done", "{after}");
    assert_eq!(after["waiting_for"], serde_json::json!([]), "{after}");
    assert!(daemon
        .log_text()
        .contains("stores unavailable: the file waits"));
}

#[test]
fn past_the_window_the_log_has_errors_and_gdprd_retry_finishes_them_while_the_daemon_runs() {
    let Some((demo, schema, relay)) = relayed_postgres_demo("2s") else {
        return;
    };
    let daemon = demo.start();
    let name = format!("forget-{}_120000.json", today());
    demo.submit(&name, &seed_forget());
    let log = demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    let got = responses(&log);
    let unavailable = |r: &&String| r.starts_with("ERROR: store \"demo\" unavailable");
    assert_eq!(got.iter().filter(unavailable).count(), 11, "{got:?}");
    assert_eq!(redacted(&schema), 0);
    assert!(daemon.log_text().contains("the retry window has passed"));
    let kept = demo.dir.path().join("state/retry");
    assert_eq!(
        std::fs::read_dir(&kept).expect("retry/").count(),
        1,
        "the devices are kept for gdprd retry"
    );

    // The store is back: `gdprd retry` hands the retry to the running daemon, which writes the follow-up log.
    relay.up.store(true, Ordering::SeqCst);
    let config = demo.config.to_str().expect("utf-8");
    let out = run(&["retry", "--config", config, &name]);
    assert!(
        out.status.success(),
        "retry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("recorded"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let second = demo.result_json(&format!("forget-{}_120000-execution-log-2.json", today()));
    let now = responses(&second);
    assert_eq!(
        now.len(),
        got.len(),
        "every contact is in the follow-up log"
    );
    assert_eq!(
        now.iter().filter(|r| *r == "SUCCESS").count(),
        11,
        "{now:?}"
    );
    // The contact that is not a valid device keeps its answer: no store can change it.
    assert_eq!(
        now.iter().filter(|r| r.starts_with("ERROR")).count(),
        got.len() - 11,
        "{now:?}"
    );
    assert!(redacted(&schema) >= 4);
    let retry_name = format!("{name}#retry-2");
    assert_eq!(
        demo.ledger_count(&format!(
            "SELECT count(*) FROM audit WHERE file = '{retry_name}' AND outcome = 'SUCCESS' AND action = 'forget'"
        )),
        demo.ledger_count(&format!(
            "SELECT count(*) FROM audit WHERE file = '{name}' AND device_hmac IS NOT NULL"
        )),
        "an audit row per device retried"
    );
    assert_eq!(
        std::fs::read_dir(&kept).expect("retry/").count(),
        0,
        "nothing is left to retry: the kept devices are gone"
    );

    // Nothing is left to retry: a second retry is refused, with the reason.
    let out = run(&["retry", "--config", config, &name]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has nothing to retry"), "{err}");
    assert!(!demo
        .result
        .join(format!("forget-{}_120000-execution-log-3.json", today()))
        .exists());
    assert!(
        !daemon.log_text().contains("test@test.com"),
        "a device in clear in the log"
    );
}

#[test]
fn without_a_daemon_gdprd_retry_runs_the_retry_itself_on_the_store_asked_for() {
    let Some((demo, schema, relay)) = relayed_postgres_demo("0s") else {
        return;
    };
    let name = format!("forget-{}_120000.json", today());
    demo.submit(&name, &seed_forget());
    demo.run_once();
    let first =
        responses(&demo.result_json(&format!("forget-{}_120000-execution-log.json", today())));
    assert_eq!(
        first
            .iter()
            .filter(|r| r.starts_with("ERROR: store \"demo\" unavailable"))
            .count(),
        11,
        "{first:?}"
    );
    let id = status(&demo)
        .into_iter()
        .find(|f| f["name"] == name.as_str())
        .and_then(|f| f["id"].as_i64())
        .expect("the file's id in status --json");
    let config = demo.config.to_str().expect("utf-8");
    let id = id.to_string();
    // A store the account does not have is refused; so is an export or a file still running (not shown here).
    let out = run(&["retry", "--config", config, "--store", "crm", &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("store \"crm\" is not one of account demo's stores"),
        "{err}"
    );

    relay.up.store(true, Ordering::SeqCst);
    let out = run(&["retry", "--config", config, "--store", "demo", &id]);
    assert!(
        out.status.success(),
        "retry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now =
        responses(&demo.result_json(&format!("forget-{}_120000-execution-log-2.json", today())));
    assert_eq!(
        now.iter().filter(|r| *r == "SUCCESS").count(),
        11,
        "{now:?}"
    );
    assert!(redacted(&schema) >= 4);
    let retried = status(&demo)
        .into_iter()
        .find(|f| f["name"] == format!("{name}#retry-2").as_str())
        .expect("the retry in status");
    assert_eq!(retried["state"], "done", "{retried}");
    assert_eq!(retried["success"], 11, "{retried}");
    assert!(
        retried["results"][0]
            .as_str()
            .is_some_and(|p| p.ends_with("-execution-log-2.json")),
        "{retried}"
    );
    let out = run(&["retry", "--config", config, &id]);
    assert!(!out.status.success(), "nothing is left to retry");
}
