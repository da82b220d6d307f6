//! `[cluster]`: the journal in PostgreSQL. A node executes a file exactly as with the embedded SQLite ledger,
//! `gdprd status` reads the shared ledger, and `gdprd migrate-ledger` brings a single node's ledger into it.

use crate::durability::{large_forget, BATCH, DEVICES};
use crate::harness::{responses, run, seed_forget, skip, today, wait_until, Demo};
use serde_json::Value;
use std::time::Duration;

/// A PostgreSQL schema of its own for one test's ledger, dropped when the test ends.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new() -> Option<Schema> {
        let Ok(url) = std::env::var(crate::stores_sql::POSTGRES_VAR) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set {}",
                crate::stores_sql::POSTGRES_VAR
            );
            skip("GDPRD_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = format!("gdprd_t_{:016x}", rand::random::<u64>());
        Some(Schema { url, name })
    }

    /// The `[cluster]` section for node `node`.
    fn section(&self, node: &str) -> String {
        format!(
            "[cluster]\nledger_url = {:?}\ntls = \"disable\"\nledger_schema = {:?}\nnode = {node:?}\n",
            self.url, self.name
        )
    }

    fn count(&self, sql: &str) -> i64 {
        self.get(sql).unwrap_or(0)
    }

    /// One value from the ledger (`None` while its tables do not exist yet).
    fn get<T: for<'a> postgres::types::FromSql<'a>>(&self, sql: &str) -> Option<T> {
        let mut c = postgres::Client::connect(&self.url, postgres::NoTls).expect("connect");
        c.batch_execute(&format!("SET search_path TO {}", self.name))
            .expect("search path");
        c.query_one(sql, &[]).ok().map(|r| r.get(0))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// The execution log of the seed's forget run with `run --once` on a demo whose config `edit` changed.
fn seed_log(demo: &Demo) -> Value {
    let name = format!("forget-{}_120000.json", today());
    demo.submit(&name, &seed_forget());
    demo.run_once();
    demo.result_json(&format!("forget-{}_120000-execution-log.json", today()))
}

fn status(demo: &Demo) -> String {
    let out = run(&[
        "status",
        "--config",
        demo.config.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn a_cluster_node_executes_a_file_exactly_as_with_the_embedded_ledger() {
    let Some(schema) = Schema::new() else { return };
    let single = Demo::new(300, |_| {});
    let clustered = Demo::new(300, |c| {
        c.merge(&schema.section("node-1"));
    });
    let want = seed_log(&single);
    let got = seed_log(&clustered);
    assert_eq!(got, want, "the same execution log");
    assert_eq!(responses(&got).len(), 12);
    assert_eq!(
        clustered.sample_email_rows(),
        single.sample_email_rows(),
        "the same rows forgotten"
    );
    clustered.wait_submit_empty();
    // The journal is in PostgreSQL: the state folder has no ledger and keeps no claimed copy.
    assert!(!clustered.dir.path().join("state/ledger.db").exists());
    let audit_single = single.ledger_count("SELECT count(*) FROM audit");
    assert_eq!(schema.count("SELECT count(*) FROM audit"), audit_single);
    assert_eq!(
        schema
            .count("SELECT count(*) FROM files WHERE state = 'done' AND removed AND copy IS NULL"),
        1
    );
    // `gdprd status` reads the shared ledger.
    let listed = status(&clustered);
    assert!(
        listed.contains("forget-") && listed.contains("\"done\""),
        "{listed}"
    );
}

#[test]
fn migrate_ledger_brings_a_single_nodes_ledger_into_the_cluster() {
    let Some(schema) = Schema::new() else { return };
    let demo = Demo::new(300, |_| {});
    let log = seed_log(&demo);
    assert_eq!(responses(&log).len(), 12);
    demo.wait_submit_empty();
    let before = status(&demo);
    let config = demo.config.to_str().expect("utf-8");

    let out = run(&["migrate-ledger", "--config", config]);
    assert!(!out.status.success(), "no [cluster] to migrate to");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no [cluster] section"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    demo.edit_config(|c| {
        c.merge(&schema.section("node-1"));
    });
    let out = run(&["migrate-ledger", "--config", config]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("copied 1 files"), "{said}");
    let out = run(&["migrate-ledger", "--config", config]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("already holds the same 1 files"), "{said}");

    assert_eq!(
        schema.count("SELECT count(*) FROM audit"),
        demo.ledger_count("SELECT count(*) FROM audit")
    );
    assert_eq!(
        status(&demo),
        before,
        "status reads the same from the cluster's ledger"
    );

    // The name stays taken in the cluster: the same file again is refused as a duplicate name.
    let name = format!("forget-{}_120000.json", today());
    demo.submit(&name, &seed_forget());
    demo.run_once();
    assert_eq!(
        schema.count("SELECT count(*) FROM files WHERE state = 'done'"),
        1,
        "not executed again"
    );
}

#[test]
fn a_killed_nodes_file_is_finished_by_another_node_once_its_lease_expires() {
    let Some(schema) = Schema::new() else { return };
    let demo = Demo::new(20_000, |c| {
        c.merge(&format!("[limits]\nbatch_size = {BATCH}"));
        c.merge(&format!("{}lease_seconds = 2\n", schema.section("node-1")));
    });
    let name = format!("forget-{}_020000.json", today());
    let mut first = demo.start();
    demo.submit(&name, &large_forget());
    wait_until(Duration::from_secs(120), "a few chunks to complete", || {
        schema.count("SELECT count(*) FROM chunks") >= 5
    });
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    let at_kill = schema.count("SELECT count(*) FROM chunks");
    assert!(
        at_kill < (DEVICES / BATCH) as i64,
        "killed in the middle ({at_kill} chunks done)"
    );
    assert_eq!(
        schema.get::<String>("SELECT node FROM files").as_deref(),
        Some("node-1")
    );
    drop(first);

    // Another node: its own state folder (the same installation secret), the same folders and ledger.
    let state = demo.dir.path().join("state-node-2");
    std::fs::create_dir_all(&state).expect("state folder");
    std::fs::copy(
        demo.dir.path().join("state/secret.key"),
        state.join("secret.key"),
    )
    .expect("secret");
    demo.edit_config(|c| {
        c.set("state_dir", state.display().to_string());
        c.set("cluster.node", "node-2");
    });
    let second = demo.start();
    // The rest of a 20,000-device forget, after the lease runs out: more than a minute when the whole suite runs
    // on two cores.
    let log_name = format!("forget-{}_020000-execution-log.json", today());
    demo.wait_result_within(&log_name, Duration::from_secs(300));
    let log = demo.result_json(&log_name);
    let got = responses(&log);
    assert_eq!(got.len() as u64, DEVICES);
    assert!(
        got.iter().all(|r| r == "SUCCESS"),
        "every contact found and forgotten once"
    );
    assert_eq!(
        schema.get::<i64>(&format!(
            "SELECT count(DISTINCT device_hmac) FROM audit WHERE action = 'forget' AND file = '{name}'"
        )),
        Some(DEVICES as i64)
    );
    assert_eq!(
        schema.count(&format!(
            "SELECT count(*) FROM audit WHERE action = 'forget' AND file = '{name}'"
        )),
        DEVICES as i64,
        "each device audited once"
    );
    assert_eq!(
        schema.count("SELECT count(*) FROM chunks"),
        (DEVICES / BATCH) as i64
    );
    assert_eq!(
        schema
            .get::<String>("SELECT node || ' ' || epoch FROM files")
            .as_deref(),
        Some("node-2 2"),
        "taken over once, by node-2"
    );
    let left: i64 = demo
        .db()
        .query_row(
            "SELECT count(*) FROM contact_list WHERE email LIKE 'user%@example.com'
             AND CAST(substr(email, 5, instr(email, '@') - 5) AS INTEGER) < ?1",
            [DEVICES as i64],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(left, 0, "every contact was forgotten");
    demo.wait_submit_empty();
    assert!(second.log_text().contains("resuming claimed file"));
}

#[test]
fn the_retention_sweep_runs_on_the_node_holding_its_singleton() {
    let Some(schema) = Schema::new() else { return };
    let demo = Demo::new(300, |c| {
        c.merge(&schema.section("node-1"));
    });
    // A result older than the account's retention.
    let old = demo
        .result
        .join("forget-20200101_120000-execution-log.json");
    std::fs::write(&old, b"{}").expect("old result");
    let year_ago = std::time::SystemTime::now() - Duration::from_secs(365 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .and_then(|f| f.set_modified(year_ago))
        .expect("age it");
    let _node = demo.start();
    wait_until(Duration::from_secs(60), "the sweep", || !old.exists());
    assert_eq!(
        schema
            .get::<String>("SELECT node FROM singletons WHERE name = 'retention-sweep'")
            .as_deref(),
        Some("node-1")
    );
}
