//! Retry without resubmitting (issue 18 item 3): a forget whose store is down waits for it within
//! `[engine] retry_window`, and says so in `gdprd status`; `gdprd retry` finishes a file whose window passed.
//! The store is PostgreSQL behind a relay the test cuts and restores (see `stores_sql::Relay`).

use crate::harness::{responses, run, seed_forget, today, wait_until, Demo};
use crate::stores_sql::{postgres_demo, server, PgSchema, Relay, POSTGRES_VAR};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A PostgreSQL demo whose `demo` store is reached through a relay, down at first, with `retry_window`.
fn demo_behind_relay(window: &str) -> Option<(Demo, PgSchema, Relay)> {
    let url = server(POSTGRES_VAR)?;
    let target = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_owned();
    let relay = Relay::new(target.clone());
    let relayed = url.replace(&target, &format!("127.0.0.1:{}", relay.port));
    let (demo, schema) = postgres_demo(&url, |c| {
        c.set("stores.demo.url", relayed);
        c.remove("stores.demo.statement_timeout_seconds");
        c.insert("stores.demo.connect_timeout_seconds", 2);
        c.merge(&format!("[engine]\nretry_window = {window:?}\n"));
    });
    Some((demo, schema, relay))
}

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
    let Some((demo, schema, relay)) = demo_behind_relay("1h") else {
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
