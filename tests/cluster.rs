//! `[cluster]`: the journal in PostgreSQL. A node executes a file exactly as with the embedded SQLite ledger,
//! `gdprd status` reads the shared ledger, and `gdprd migrate-ledger` brings a single node's ledger into it.

use crate::harness::{responses, run, seed_forget, skip, today, Demo};
use serde_json::Value;

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
        let mut c = postgres::Client::connect(&self.url, postgres::NoTls).expect("connect");
        c.batch_execute(&format!("SET search_path TO {}", self.name))
            .expect("search path");
        c.query_one(sql, &[]).expect("query").get(0)
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
