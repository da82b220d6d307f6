//! The Prometheus endpoint, scraped with a real HTTP client (reqwest) while the daemon works.

use crate::harness::{run, seed_forget, today, Demo};
use std::time::Duration;

fn scrape(url: &str) -> (String, String) {
    let response = reqwest::blocking::get(url).expect("the metrics endpoint answers");
    let code = response.status().as_u16().to_string();
    (code, response.text().expect("a text body"))
}

fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} in\n{body}"))
}

#[test]
fn metrics_count_files_contacts_and_store_calls() {
    let port = crate::harness::spare_port();
    let demo = Demo::new(20, |c| crate::harness::with_metrics(c, port));
    let _daemon = demo.start();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let (code, body) = scrape(&url);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("# TYPE gdprd_queue_depth gauge"), "{body}");

    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    demo.submit("forget-20200101_000000.json", &seed_forget());
    demo.wait_result("forget-20200101_000000-rejected.json");
    // The engine counts a file just after writing its result: scrape until the count is there.
    let mut body = String::new();
    crate::harness::wait_until(Duration::from_secs(10), "the rejected file counted", || {
        body = scrape(&url).1;
        body.contains("gdprd_files_total{outcome=\"rejected\"} 1")
    });
    assert_eq!(value(&body, "gdprd_files_total{outcome=\"done\"}"), 1.0);
    assert_eq!(value(&body, "gdprd_files_total{outcome=\"rejected\"}"), 1.0);
    assert_eq!(
        value(&body, "gdprd_contacts_total{outcome=\"success\"}"),
        11.0
    );
    assert_eq!(value(&body, "gdprd_contacts_total{outcome=\"error\"}"), 1.0);
    assert!(
        value(
            &body,
            "gdprd_store_seconds_count{store=\"demo\",action=\"forget\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &body,
            "gdprd_store_seconds_count{store=\"lists\",action=\"forget\"}"
        ) >= 1.0
    );
    assert_eq!(value(&body, "gdprd_queue_depth"), 0.0);
    assert_eq!(value(&body, "gdprd_sftp_sessions"), 0.0);
    assert_eq!(value(&body, "gdprd_sftp_auth_failures_total"), 0.0);
    assert!(!body.contains("test@test.com"));

    let (code, _) = scrape(&format!("http://127.0.0.1:{port}/other"));
    assert_eq!(code, "404");
}

#[test]
fn metrics_listen_only_on_loopback() {
    let demo = Demo::new(20, |c| {
        c.merge("[metrics]\nlisten = \"0.0.0.0:9464\"");
    });
    let out = run(&["check-config", demo.config.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("listens on loopback only"), "{text}");
}
