//! `gdprd status` against a running daemon's ledger: what a care engineer sees.

use crate::harness::{run, seed_forget, today, Demo};

fn status(demo: &Demo, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["status", "--config", demo.config.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let out = run(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn status_shows_done_rejected_and_waiting_files_with_counts_and_results() {
    let demo = Demo::new(20, |_| {});
    let _daemon = demo.start();
    let done = format!("forget-{}_120000.json", today());
    demo.submit(&done, &seed_forget());
    demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    // Dated in the past: rejected with a notice.
    let rejected = "forget-20200101_120000.json".to_owned();
    demo.submit(&rejected, &seed_forget());
    demo.wait_result("forget-20200101_120000-rejected.json");
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y%m%d");
    let waiting = format!("forget-{tomorrow}_090000.json");
    demo.submit(&waiting, &seed_forget());
    demo.wait_submit_empty_but(&waiting);

    // Read while the daemon runs.
    let (ok, json) = status(&demo, &["--json", "--account", "demo"]);
    assert!(ok, "{json}");
    let files: serde_json::Value = serde_json::from_str(&json).expect("json");
    let by_name = |n: &str| {
        files
            .as_array()
            .expect("array")
            .iter()
            .find(|f| f["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {json}"))
            .clone()
    };
    let d = by_name(&done);
    assert_eq!(d["state"], "done");
    assert_eq!(
        (
            d["success"].as_u64(),
            d["not_found"].as_u64(),
            d["errors"].as_u64()
        ),
        (Some(11), Some(0), Some(1))
    );
    assert!(d["results"][0]
        .as_str()
        .expect("path")
        .ends_with("-execution-log.json"));
    let r = by_name(&rejected);
    assert_eq!(r["state"], "rejected");
    assert!(r["detail"].as_str().expect("why").contains("ERROR"), "{r}");
    assert!(
        r["results"][0]
            .as_str()
            .expect("notice")
            .ends_with("-rejected.json"),
        "{r}"
    );
    let w = by_name(&waiting);
    assert_eq!(w["state"], "waiting");
    assert!(w["detail"]
        .as_str()
        .expect("date")
        .contains("taken on that day"));
    assert!(!json.contains("test@test.com"), "no device in clear");

    let (ok, table) = status(&demo, &[]);
    assert!(ok);
    assert!(table.starts_with("RECEIVED"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains(&done) && l.contains("done") && l.contains("11")),
        "{table}"
    );

    let (ok, text) = status(&demo, &["--since", "1x"]);
    assert!(!ok, "{text}");
    let (ok, _) = status(&demo, &["--account", "nobody"]);
    assert!(!ok);
}
