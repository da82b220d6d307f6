//! Running under systemd: the unit file as `systemd-analyze` sees it, and the notify protocol (readiness,
//! watchdog, stopping) as the real binary speaks it to a socket the test binds in systemd's place.

use crate::harness::{seed_forget, today, Demo};
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

/// The unit with its binary path pointing at the build under test.
fn unit(dir: &std::path::Path) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(crate::harness::fixture("../systemd/gdprd.service")).expect("unit");
    let path = dir.join("gdprd.service");
    std::fs::write(
        &path,
        text.replace("/usr/bin/gdprd", env!("CARGO_BIN_EXE_gdprd")),
    )
    .expect("write");
    path
}

#[test]
fn the_unit_file_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = unit(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (apt-get install systemd; .ci/run does)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for gdprd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    assert!(score <= 2.0, "exposure {score} (10 is unprotected)");
}

fn messages(socket: &UnixDatagram, until: &str, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = text.lines().any(|l| l == until);
            got.push(text);
            if done {
                break;
            }
        }
    }
    got
}

#[test]
fn readiness_watchdog_and_stopping_reach_the_notify_socket() {
    let demo = Demo::new(20, |_| {});
    let path = demo.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut daemon = demo.start_with_env(&[
        ("NOTIFY_SOCKET", path.to_str().expect("utf-8")),
        ("WATCHDOG_USEC", "400000"),
    ]);
    let got = messages(&socket, "READY=1", Duration::from_secs(10));
    assert!(
        got.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "{got:?}"
    );
    let got = messages(&socket, "WATCHDOG=1", Duration::from_secs(5));
    assert!(
        got.iter().any(|m| m.lines().any(|l| l == "WATCHDOG=1")),
        "keep-alives at half the interval: {got:?}"
    );

    // SIGHUP reloads: RELOADING=1, then READY=1 again, and the daemon goes on working.
    daemon.signal("HUP");
    let got = messages(&socket, "READY=1", Duration::from_secs(10));
    assert!(
        got.iter().any(|m| m.lines().any(|l| l == "RELOADING=1")),
        "{got:?}"
    );
    assert!(
        got.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "{got:?}"
    );
    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));

    daemon.signal("TERM");
    let got = messages(&socket, "STOPPING=1", Duration::from_secs(10));
    assert!(
        got.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")),
        "{got:?}"
    );
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(0));
}
