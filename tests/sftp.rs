//! The embedded SFTP server through the real OpenSSH client (`sftp -b`, `ssh`) and paramiko: logins, uploads
//! that become results, every refused operation, traversal attempts, account isolation, many clients at once,
//! and connections that never log in.

use crate::harness::{fixture, successes, today, wait_until, Config, Daemon, Demo};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The port the daemon's SFTP server listens on, from its log.
pub(crate) fn sftp_port(log: &str) -> u16 {
    log.lines()
        .find(|l| l.contains("sftp server listening"))
        .and_then(|l| l.split("address=127.0.0.1:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the daemon logs its sftp port")
}

/// A running demo daemon with its SFTP port.
pub(crate) struct Server {
    pub(crate) demo: Demo,
    pub(crate) daemon: Daemon,
    pub(crate) port: u16,
}

impl Server {
    pub(crate) fn start(edit: impl FnOnce(&mut Config)) -> Server {
        let demo = Demo::new(20, edit);
        let daemon = demo.start();
        let port = sftp_port(&daemon.log_text());
        Server { demo, daemon, port }
    }

    pub(crate) fn key(&self) -> PathBuf {
        self.demo.dir.path().join("demo_ed25519")
    }

    /// Writes `batch` to a file, runs the command `make` builds around that file's path, removes the file.
    fn with_batch(&self, batch: &str, make: impl FnOnce(&str) -> Command) -> Output {
        let file = self
            .demo
            .dir
            .path()
            .join(format!("batch-{}", rand_suffix()));
        std::fs::write(&file, batch).expect("batch file");
        let out = make(file.to_str().expect("utf-8"))
            .output()
            .expect("the client runs");
        let _ = std::fs::remove_file(file);
        out
    }

    /// Runs `sftp -b` with `batch` as `user`, logging in with `key`.
    pub(crate) fn sftp_as(&self, user: &str, key: &Path, batch: &str) -> Output {
        self.with_batch(batch, |file| {
            let mut c = Command::new("sftp");
            c.args([
                "-b",
                file,
                "-P",
                &self.port.to_string(),
                "-i",
                key.to_str().expect("utf-8"),
            ])
            .args(ssh_options())
            .arg(format!("{user}@127.0.0.1"));
            c
        })
    }

    pub(crate) fn sftp(&self, batch: &str) -> Output {
        self.sftp_as("demo", &self.key(), batch)
    }

    /// Logs in as `demo` with `password` (paramiko, password authentication only) and lists `dir`.
    fn password_ls(&self, password: &str, dir: &str) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/paramiko_client.py");
        Command::new(paramiko_python())
            .arg(script)
            .args(["password-ls", &self.port.to_string(), "demo", password, dir])
            .output()
            .expect("paramiko client runs")
    }
}

pub(crate) fn ssh_options() -> [&'static str; 10] {
    [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
    ]
}

pub(crate) fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) fn responses(log: &[u8]) -> Vec<String> {
    let log: serde_json::Value = serde_json::from_slice(log).expect("log json");
    crate::harness::responses(&log)
}

#[test]
fn key_login_uploads_a_forget_and_an_export_and_downloads_the_results() {
    let s = Server::start(|_| {});
    let forget = format!("forget-{}_120000", today());
    let export = format!("export-{}_110000", today());
    let out = s.sftp(&format!(
        "cd GDPR_Submit\nput {} {export}.json\nput {} {forget}.json\nls\n",
        fixture("requests/seed-export.json").display(),
        fixture("requests/seed-forget.json").display(),
    ));
    assert!(out.status.success(), "{}", text(&out));
    let got = s.demo.dir.path().join("got");
    std::fs::create_dir(&got).expect("mkdir");
    let mut listing = String::new();
    wait_until(Duration::from_secs(30), "results listed over sftp", || {
        listing = text(&s.sftp("ls -1 GDPR_Result\n"));
        listing.contains(&format!("{forget}-execution-log.json"))
            && listing.contains(&format!("{export}-archive.zip"))
    });
    let out = s.sftp(&format!(
        "lcd {}\nget GDPR_Result/{forget}-execution-log.json\nget GDPR_Result/{export}-execution-log.json\nget GDPR_Result/{export}-archive.zip\n",
        got.display()
    ));
    assert!(out.status.success(), "{}", text(&out));
    let forget_log =
        std::fs::read(got.join(format!("{forget}-execution-log.json"))).expect("forget log");
    let r = responses(&forget_log);
    assert_eq!(successes(&r), 11, "{r:?}");
    let export_log =
        std::fs::read(got.join(format!("{export}-execution-log.json"))).expect("export log");
    assert_eq!(successes(&responses(&export_log)), 11);
    let mut zip = zip::ZipArchive::new(
        std::fs::File::open(got.join(format!("{export}-archive.zip"))).expect("zip"),
    )
    .expect("zip");
    let mut csv = String::new();
    zip.by_name("demo/contact_list.csv")
        .expect("entry")
        .read_to_string(&mut csv)
        .expect("csv");
    assert_eq!(csv.lines().count(), 8, "header + 7 rows");
    // The customer removes the results; they are gone from the folder.
    let out = s.sftp(&format!("rm GDPR_Result/{forget}-execution-log.json\n"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!s
        .demo
        .result
        .join(format!("{forget}-execution-log.json"))
        .exists());
    assert!(s
        .daemon
        .log_text()
        .contains("login account=demo method=\"publickey\""));
}

#[test]
fn password_login_works_and_repeated_failures_are_throttled() {
    let s = Server::start(|c| {
        c.extend(
            "sftp_server",
            "auth_failures = 3\nauth_window_seconds = 3600",
        );
    });
    let out = s.password_ls("demo", "/");
    assert!(
        out.status.success() && text(&out).contains("GDPR_Submit"),
        "the demo password logs in: {}",
        text(&out)
    );
    for _ in 0..3 {
        let out = s.password_ls("wrong", "/");
        assert!(!out.status.success());
        assert!(
            text(&out).contains("authentication failed"),
            "{}",
            text(&out)
        );
    }
    // The address is now throttled: even the right password and the right key are refused.
    assert!(!s.password_ls("demo", "/").status.success());
    assert!(!s.sftp("ls\n").status.success());
    assert!(s.daemon.log_text().contains("login failed"));
}

#[test]
fn a_wrong_key_or_user_is_refused() {
    let s = Server::start(|_| {});
    let other = s.demo.dir.path().join("other_key");
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            other.to_str().expect("utf-8"),
        ])
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let out = s.sftp_as("demo", &other, "ls\n");
    assert!(!out.status.success());
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
    let out = s.sftp_as("root", &s.key(), "ls\n");
    assert!(
        !out.status.success(),
        "a known key under another user name is refused"
    );
}

#[test]
fn every_operation_outside_the_allowed_ones_is_refused_and_the_server_keeps_serving() {
    let s = Server::start(|_| {});
    let local = fixture("requests/seed-forget.json");
    let l = local.display();
    std::fs::write(s.demo.result.join("old-execution-log.json"), b"{}").expect("result file");
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y%m%d");
    let waiting = format!("forget-{tomorrow}_120000.json");
    std::fs::write(s.demo.submit.join(&waiting), b"{}").expect("a waiting file");
    let refused = [
        "mkdir GDPR_Submit/sub".to_owned(),
        "mkdir newdir".into(),
        "rmdir GDPR_Submit".into(),
        format!("put {l} GDPR_Result/x.json"),
        format!("put {l} /x.json"),
        format!("put {l} ../../etc/x"),
        format!("put {l} GDPR_Submit/../../x"),
        format!("get GDPR_Submit/{waiting}"),
        "get /etc/passwd".into(),
        "get ../../etc/passwd".into(),
        "ls ../..".into(),
        "ls /etc".into(),
        format!("rm GDPR_Submit/{waiting}"),
        "rename GDPR_Result/old-execution-log.json GDPR_Submit/x.json".into(),
        format!("rename GDPR_Submit/{waiting} ../{waiting}"),
        "ln -s /etc/passwd GDPR_Result/passwd".into(),
        "symlink /etc GDPR_Submit/etc".into(),
        "chmod 777 GDPR_Result/old-execution-log.json".into(),
        "chown 0 GDPR_Result/old-execution-log.json".into(),
    ];
    for command in &refused {
        let out = s.sftp(&format!("{command}\n"));
        assert!(
            !out.status.success(),
            "{command} should be refused: {}",
            text(&out)
        );
    }
    // Nothing changed on disk, nothing escaped the root, and a normal session still works.
    assert!(s.demo.submit.join(&waiting).exists());
    assert!(s.demo.result.join("old-execution-log.json").exists());
    assert!(
        !s.demo.dir.path().join("accounts/x.json").exists()
            && !s.demo.dir.path().join("x").exists()
    );
    let out = s.sftp("ls /\n");
    assert!(out.status.success());
    assert!(text(&out).contains("GDPR_Submit") && text(&out).contains("GDPR_Result"));
}

#[test]
fn shells_commands_and_forwarding_are_refused() {
    let s = Server::start(|_| {});
    let port = s.port.to_string();
    let key = s.key();
    let ssh = |extra: &[&str]| {
        Command::new("ssh")
            .args(["-p", &port, "-i", key.to_str().expect("utf-8")])
            .args(ssh_options())
            .args(extra)
            .output()
            .expect("ssh runs")
    };
    let out = ssh(&["demo@127.0.0.1", "id"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("uid="),
        "{}",
        text(&out)
    );
    assert!(!out.status.success());
    let out = ssh(&["-T", "demo@127.0.0.1"]);
    assert!(!out.status.success(), "no shell: {}", text(&out));
    let out = ssh(&[
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-L",
        "0:127.0.0.1:22",
        "-R",
        "0:127.0.0.1:22",
        "demo@127.0.0.1",
    ]);
    assert!(!out.status.success(), "no forwarding: {}", text(&out));
    assert!(s.sftp("ls\n").status.success(), "sftp still served");
}

/// A second account, logging in with the demo's key file under its own name.
pub(crate) const OTHER_ACCOUNT: &str = r#"
[[accounts]]
name = "acme"
root = "accounts/acme"
transport = "sftp-server"
stores = ["demo"]

[accounts.sftp]
authorized_keys_file = "demo_ed25519.pub"
"#;

#[test]
fn one_account_never_sees_another_accounts_files() {
    let s = Server::start(|c| {
        c.merge(OTHER_ACCOUNT);
    });
    let name = format!("export-{}_100000.json", today());
    let out = s.sftp(&format!(
        "put {} GDPR_Submit/{name}\n",
        fixture("requests/seed-export.json").display()
    ));
    assert!(out.status.success(), "{}", text(&out));
    s.demo
        .wait_result(&format!("export-{}_100000-execution-log.json", today()));
    let out = s.sftp_as("acme", &s.key(), "ls -1 GDPR_Result\nls -1 GDPR_Submit\n");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("export-"),
        "acme sees nothing of demo's: {}",
        text(&out)
    );
    for path in [
        "../demo/GDPR_Result",
        "/../demo/GDPR_Result",
        "../../accounts/demo/GDPR_Result",
    ] {
        assert!(
            !s.sftp_as("acme", &s.key(), &format!("ls {path}\n"))
                .status
                .success(),
            "{path}"
        );
    }
}

#[test]
fn fifty_clients_at_once_each_get_their_result() {
    let s = Server::start(|c| {
        c.extend("sftp_server", "max_sessions_per_account = 60\nmax_connections_per_address = 60\nmax_connections = 80\nmax_unauthenticated_connections = 60\nconnection_burst_per_address = 60");
    });
    let seed = fixture("requests/seed-export.json");
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let batch = s.demo.dir.path().join(format!("many-{i}"));
            std::fs::write(
                &batch,
                format!(
                    "put {} GDPR_Submit/export-{}_0800{i:02}.json\n",
                    seed.display(),
                    today()
                ),
            )
            .expect("batch");
            Command::new("sftp")
                .args([
                    "-b",
                    batch.to_str().expect("utf-8"),
                    "-P",
                    &s.port.to_string(),
                    "-i",
                    s.key().to_str().expect("utf-8"),
                ])
                .args(ssh_options())
                .arg("demo@127.0.0.1")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("sftp spawns")
        })
        .collect();
    for (i, client) in clients.into_iter().enumerate() {
        let out = client.wait_with_output().expect("sftp ends");
        assert!(
            out.status.success(),
            "client {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for i in 0..50 {
        let log = std::fs::read(
            s.demo
                .wait_result(&format!("export-{}_0800{i:02}-execution-log.json", today())),
        )
        .expect("log");
        assert_eq!(successes(&responses(&log)), 11, "file {i}");
    }
}

#[test]
fn a_connection_that_never_logs_in_is_dropped_and_others_are_served() {
    let s = Server::start(|c| {
        c.extend("sftp_server", "handshake_timeout_seconds = 2");
    });
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // A well-behaved client is served meanwhile.
    assert!(s.sftp("ls\n").status.success());
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = idle.read_to_end(&mut buf); // the server's banner, then end of stream when it drops us
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "dropped after the handshake timeout"
    );
    assert!(String::from_utf8_lossy(&buf).starts_with("SSH-2.0-"));
    wait_until(Duration::from_secs(5), "the drop to be logged", || {
        let log = s.daemon.log_text();
        log.contains("handshake timeout") || log.contains("no login within")
    });
}

#[test]
fn key_exchange_is_strict_and_offers_no_weak_algorithms() {
    let s = Server::start(|_| {});
    let batch = s.demo.dir.path().join("kex");
    std::fs::write(&batch, "ls\n").expect("batch");
    let out = Command::new("sftp")
        .args([
            "-vvv",
            "-b",
            batch.to_str().expect("utf-8"),
            "-P",
            &s.port.to_string(),
            "-i",
            s.key().to_str().expect("utf-8"),
        ])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
        ])
        .arg("demo@127.0.0.1")
        .output()
        .expect("sftp runs");
    let trace = String::from_utf8_lossy(&out.stderr).into_owned();
    let proposal: String = trace
        .lines()
        .skip_while(|l| !l.contains("peer server KEXINIT proposal"))
        .take(10)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        proposal.contains("kex-strict-s-v00@openssh.com"),
        "strict key exchange (Terrapin): {proposal}"
    );
    for weak in [
        "diffie-hellman-group1-sha1",
        "diffie-hellman-group14-sha1",
        "-cbc",
        "hmac-sha1",
        "hmac-md5",
        "3des",
        "ssh-rsa,",
        "ssh-dss",
    ] {
        assert!(!proposal.contains(weak), "{weak} offered: {proposal}");
    }
}

#[test]
fn uploads_renamed_from_a_temporary_name_are_taken_and_limits_hold() {
    let s = Server::start(|c| {
        c.extend("sftp_server", "max_upload_bytes = 4096");
    });
    let seed = fixture("requests/seed-export.json");
    let name = format!("export-{}_140000.json", today());
    // The WinSCP/FileZilla way: upload under a temporary name, then rename into place.
    let out = s.sftp(&format!("put {} GDPR_Submit/{name}.filepart\nrename GDPR_Submit/{name}.filepart GDPR_Submit/{name}\n", seed.display()));
    assert!(out.status.success(), "{}", text(&out));
    s.demo
        .wait_result(&format!("export-{}_140000-execution-log.json", today()));
    // A rename onto a file still waiting is refused; so is an upload onto its name.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y%m%d");
    let waiting = format!("forget-{tomorrow}_120000.json");
    std::fs::write(s.demo.submit.join(&waiting), b"original").expect("waiting");
    let out = s.sftp(&format!(
        "put {} GDPR_Submit/x.part\nrename GDPR_Submit/x.part GDPR_Submit/{waiting}\n",
        seed.display()
    ));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!s
        .sftp(&format!("put {} GDPR_Submit/{waiting}\n", seed.display()))
        .status
        .success());
    assert_eq!(
        std::fs::read(s.demo.submit.join(&waiting)).expect("waiting"),
        b"original"
    );
    // Over the upload limit: an error, and nothing is left behind.
    let big = s.demo.dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 10_000]).expect("big");
    let out = s.sftp(&format!(
        "put {} GDPR_Submit/export-{}_150000.json\n",
        big.display(),
        today()
    ));
    assert!(
        !out.status.success(),
        "over-size upload refused: {}",
        text(&out)
    );
    std::thread::sleep(Duration::from_millis(300));
    let left: Vec<String> = s
        .demo
        .submitted()
        .into_iter()
        .filter(|n| n.contains("150000"))
        .collect();
    assert!(
        left.is_empty(),
        "nothing kept of the over-size upload: {left:?}"
    );
    assert!(!s
        .demo
        .result
        .join(format!("export-{}_150000-execution-log.json", today()))
        .exists());
}

/// A Python with paramiko (and ssh-audit, for the key exchange audit), in a venv made once per test run under
/// cargo's temporary folder.
pub(crate) fn paramiko_python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            crate::harness::python_venv(
                "paramiko-venv",
                &["paramiko", "ssh-audit"],
                "paramiko, ssh_audit",
            )
        })
        .clone()
}

fn paramiko(s: &Server, args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/paramiko_client.py");
    Command::new(paramiko_python())
        .arg(script)
        .arg(args[0])
        .arg(s.port.to_string())
        .arg("demo")
        .arg(s.key())
        .args(&args[1..])
        .output()
        .expect("paramiko client runs")
}

/// A paramiko upload of the seed forget file as `name`, stopped half-way: returns the client (its stdin continues
/// the upload) and its output lines, once it has said "started".
fn start_slow_put(
    s: &Server,
    name: &str,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/paramiko_client.py");
    let mut client = Command::new(paramiko_python())
        .arg(script)
        .args(["slow-put", &s.port.to_string(), "demo"])
        .arg(s.key())
        .arg(fixture("requests/seed-forget.json"))
        .arg(name)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("paramiko client");
    let mut lines = std::io::BufReader::new(client.stdout.take().expect("stdout")).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("started")
    );
    (client, lines)
}

#[test]
fn a_second_client_implementation_gets_the_same_service() {
    let s = Server::start(|_| {});
    let out_dir = s.demo.dir.path().join("paramiko-got");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let name = format!("forget-{}_160000.json", today());
    let result = format!("forget-{}_160000-execution-log.json", today());
    let seed = fixture("requests/seed-forget.json");
    let out = paramiko(
        &s,
        &[
            "roundtrip",
            seed.to_str().expect("utf-8"),
            &name,
            &result,
            out_dir.to_str().expect("utf-8"),
        ],
    );
    assert!(
        out.status.success() && text(&out).contains("ok"),
        "{}",
        text(&out)
    );
    let log = std::fs::read(out_dir.join(&result)).expect("downloaded log");
    assert_eq!(successes(&responses(&log)), 11);
    assert!(
        !s.demo.result.join(&result).exists(),
        "removed through paramiko"
    );
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[test]
fn an_sftp_packet_announcing_four_gib_is_refused_without_the_allocation() {
    let s = Server::start(|_| {});
    let pid = s.daemon.child.id();
    let before = rss_kib(pid);
    for _ in 0..5 {
        let out = paramiko(&s, &["oversized"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "closed",
            "the server drops the channel"
        );
    }
    // A well-behaved client is served meanwhile, and memory stayed far below one such packet.
    assert!(s.sftp("ls GDPR_Submit\n").status.success());
    let after = rss_kib(pid);
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn an_upload_in_flight_at_shutdown_finishes_and_is_processed() {
    use std::io::Write;
    let mut s = Server::start(|_| {});
    let name = format!("forget-{}_170000.json", today());
    let (mut client, mut lines) = start_slow_put(&s, &name);
    s.daemon.signal("TERM");
    wait_until(
        Duration::from_secs(10),
        "the server to stop accepting",
        || s.daemon.log_text().contains("stopped accepting"),
    );
    // New connections are refused now, but the session in flight finishes its upload.
    let mut stdin = client.stdin.take().expect("stdin");
    writeln!(stdin).expect("continue");
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("closed"));
    assert!(client.wait().expect("client").success());
    assert_eq!(s.daemon.wait_exit(Duration::from_secs(30)), Some(0));
    // The upload is whole and ends with a result (now, or at the next start).
    let restarted = s.demo.start();
    let log = std::fs::read(
        s.demo
            .wait_result(&format!("forget-{}_170000-execution-log.json", today())),
    )
    .expect("log");
    assert_eq!(successes(&responses(&log)), 11);
    drop(restarted);
}

#[test]
fn session_connection_and_idle_limits_hold() {
    use std::io::Write;
    let s = Server::start(|c| {
        c.extend("sftp_server", "max_sessions_per_account = 1\nmax_connections_per_address = 3\nidle_timeout_seconds = 4");
    });
    // One session holds the account's only slot, mid-upload.
    let (mut holder, _lines) = start_slow_put(&s, &format!("forget-{}_180000.json", today()));
    let out = s.sftp("ls\n");
    assert!(
        !out.status.success(),
        "a second session of the account is refused: {}",
        text(&out)
    );
    // The holder stays silent past the idle timeout: its session is closed and its upload never lands.
    std::thread::sleep(Duration::from_secs(6));
    let mut stdin = holder.stdin.take().expect("stdin");
    let _ = writeln!(stdin);
    let status = holder.wait().expect("holder ends");
    assert!(
        !status.success(),
        "the idle session was closed under the client"
    );
    assert!(!s
        .demo
        .submit
        .join(format!("forget-{}_180000.json", today()))
        .exists());
    // With the slot free again, the account logs in.
    wait_until(Duration::from_secs(10), "the slot to be free", || {
        s.sftp("ls\n").status.success()
    });
    // Connections from one address are capped: with three open (not logged in), a fourth is closed at once.
    let idle: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", s.port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = std::net::TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    assert_eq!(
        std::io::Read::read(&mut extra, &mut buf).unwrap_or(0),
        0,
        "the connection over the cap is closed"
    );
    drop(idle);
}
