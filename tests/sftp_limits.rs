//! The embedded SFTP server against the attacks and third-party clients of issue 15: channel and file-handle
//! exhaustion, key-exchange floods (DHEat), silent connections, large listings with OpenSSH, curl (libssh2), lftp
//! and paramiko, temporary upload names, attribute changes, hidden renames, the submit quota, log injection, the
//! ssh-audit verdict, long names and accept errors. While each attack runs, a customer logs in with the OpenSSH
//! client, uploads and gets the result, and an HTTP job completes. Attacks run on loopback only, for a few seconds each.

use crate::harness::{fixture, today, wait_until, Config};
use crate::sftp::{paramiko_python, responses, rss_kib, text, Server, OTHER_ACCOUNT};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn attack_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/attack.py")
}

/// `attack.py ARGS` as a command (stdout piped).
fn attack(args: &[&str]) -> Command {
    let mut c = Command::new(paramiko_python());
    c.arg(attack_script())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The JSON line an attack printed.
fn observed(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// The JSON line a background attack printed (read from its stdout's lines).
fn report(line: Option<std::io::Result<String>>) -> serde_json::Value {
    let line = line.and_then(Result::ok).expect("the attack reports");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Starts an attack in the background.
fn start_attack(args: &[&str]) -> Child {
    attack(args).spawn().expect("attack.py starts")
}

/// One paramiko SFTP operation as `demo`.
fn paramiko_op(s: &Server, op: &[&str]) -> serde_json::Value {
    let port = s.port.to_string();
    let key = s.key();
    let mut args = vec!["sftp", &port, "demo", key.to_str().expect("utf-8")];
    args.extend_from_slice(op);
    observed(&attack(&args).output().expect("attack.py runs"))
}

/// The folder of `account`'s results.
fn results_of(s: &Server, account: &str) -> PathBuf {
    s.demo
        .dir
        .path()
        .join("accounts")
        .join(account)
        .join("GDPR_Result")
}

/// A customer's whole visit with the OpenSSH client: logs in as `account`, uploads a forget request stamped
/// today at `hhmmss`, waits for its execution log and downloads it. Panics when any step fails.
fn customer_round_trip(s: &Server, account: &str, hhmmss: &str) {
    let stem = format!("forget-{}_{hhmmss}", today());
    let out = s.sftp_as(
        account,
        &s.key(),
        &format!(
            "put {} GDPR_Submit/{stem}.json\n",
            fixture("requests/seed-forget.json").display()
        ),
    );
    assert!(
        out.status.success(),
        "the customer's upload failed: {}",
        text(&out)
    );
    let result = format!("{stem}-execution-log.json");
    wait_until(Duration::from_secs(30), "the customer's result", || {
        results_of(s, account).join(&result).exists()
    });
    let got = s.demo.dir.path().join(format!("got-{account}-{hhmmss}"));
    std::fs::create_dir_all(&got).expect("mkdir");
    let out = s.sftp_as(
        account,
        &s.key(),
        &format!("lcd {}\nget GDPR_Result/{result}\n", got.display()),
    );
    assert!(
        out.status.success(),
        "the customer's download failed: {}",
        text(&out)
    );
    let log = std::fs::read(got.join(&result)).expect("downloaded log");
    assert!(!responses(&log).is_empty(), "the log answers each request");
}

/// An HTTP erasure job of the demo account, from submit to its answer, while an attack runs.
fn http_job_completes(daemon: &crate::harness::Daemon) {
    let api = crate::http::Api::new(daemon);
    let seed = std::fs::read_to_string(fixture("http/seed-erasure.csv")).expect("fixture");
    let response = api.finished(api.job("gdpr_erasure", &seed));
    assert_eq!(response["type"], "ERASURE", "{response}");
}

fn with_sftp_settings(settings: &str) -> impl FnOnce(&mut Config) + '_ {
    move |c| {
        c.extend("sftp_server", settings);
    }
}

fn fill(folder: &Path, count: usize) {
    for i in 0..count {
        std::fs::write(folder.join(format!("r{i:05}-execution-log.json")), b"{}").expect("file");
    }
}

#[test]
fn one_customer_cannot_take_every_file_handle_and_refused_execs_do_not_use_up_channels() {
    let s = Server::start(|c| {
        with_sftp_settings("max_handles_per_account = 16")(c.merge(OTHER_ACCOUNT));
    });
    fill(&s.demo.result, 3);
    let port = s.port.to_string();
    let key = s.key();
    let key = key.to_str().expect("utf-8");
    // rclone sends three `exec`s on connect: refused, they must not count against the connection's channels.
    let out = attack(&["channels", &port, "demo", key, "4", "10"])
        .output()
        .expect("attack");
    let seen = observed(&out);
    assert_eq!(seen["refused_execs"], 4, "{seen}");
    assert_eq!(seen["opened"], 4, "four sftp channels, no more: {seen}");
    assert_eq!(seen["listed"], true, "{seen}");
    // Two connections x four channels x ten downloads: the account's sixteen handles, then a clear error.
    let mut holder = start_attack(&["handles", &port, "demo", key, "2", "4", "10", "8"]);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        holder.stdout.take().expect("stdout"),
    ));
    let seen: serde_json::Value = report(lines.next());
    assert_eq!(seen["opened"], 16, "{seen}");
    assert!(
        seen["first_error"]
            .as_str()
            .is_some_and(|e| e.contains("too many open files")),
        "{seen}"
    );
    // Meanwhile another customer is served in full.
    customer_round_trip(&s, "acme", "090000");
    http_job_completes(&s.daemon);
    let _ = holder.kill();
    let _ = holder.wait();
    // With the handles given back, the account is served again.
    wait_until(Duration::from_secs(10), "demo to list its results", || {
        s.sftp("ls GDPR_Result\n").status.success()
    });
}

#[test]
fn dheat_finite_field_key_exchanges_are_not_offered_and_new_connections_are_rate_limited() {
    let s = Server::start(|_| {});
    let port = s.port.to_string();
    let out = attack(&[
        "kex",
        &port,
        "127.0.0.2",
        "diffie-hellman-group16-sha512,diffie-hellman-group14-sha256,diffie-hellman-group-exchange-sha256",
        "2",
        "4",
    ])
    .output()
    .expect("attack");
    let seen = observed(&out);
    assert_eq!(seen["completed"], 0, "{seen}");
    assert!(
        seen["first_error"]
            .as_str()
            .is_some_and(|e| e.contains("no acceptable kex")),
        "{seen}"
    );
    // Ten sockets from one address run key exchanges as fast as they can for five seconds; a customer from
    // another address is served meanwhile, and the flood gets its burst and then five a second.
    let flood = start_attack(&[
        "kex",
        &port,
        "127.0.0.3",
        "curve25519-sha256@libssh.org",
        "5",
        "10",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    customer_round_trip(&s, "demo", "091000");
    http_job_completes(&s.daemon);
    let seen = observed(&flood.wait_with_output().expect("attack"));
    let completed = seen["completed"].as_u64().expect("count");
    println!("key exchanges completed by a 5 s flood of 10 sockets from one address: {seen}");
    assert!(
        completed <= 12 + 5 * 6,
        "burst 12 then 5/s over 5 s (one second of slack): {seen}"
    );
}

#[test]
fn silent_connections_from_four_addresses_never_shut_out_a_customer() {
    let s = Server::start(|_| {});
    let port = s.port.to_string();
    let mut flood = start_attack(&[
        "idle",
        &port,
        "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5",
        "16",
        "8",
    ]);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        flood.stdout.take().expect("stdout"),
    ));
    assert!(lines
        .next()
        .and_then(Result::ok)
        .is_some_and(|l| l.contains("ready")));
    // Sixty-four silent connections are open (the old server's whole cap); let the server take them all in.
    std::thread::sleep(Duration::from_secs(1));
    customer_round_trip(&s, "demo", "092000");
    http_job_completes(&s.daemon);
    let seen: serde_json::Value = report(lines.last());
    let _ = flood.wait();
    assert!(
        seen["closed_by_server"].as_u64().unwrap_or(0) > 0,
        "the pool of connections not logged in was full, so the flood's oldest went: {seen}"
    );
}

/// `curl --list-only` of `GDPR_Result` through libssh2.
fn curl_list(s: &Server) -> Output {
    let key = s.key();
    Command::new("curl")
        .args(["-sS", "-k", "--list-only", "-u", "demo:"])
        .arg("--key")
        .arg(&key)
        .arg("--pubkey")
        .arg(key.with_extension("pub"))
        .arg(format!("sftp://127.0.0.1:{}/GDPR_Result/", s.port))
        .output()
        .expect("curl runs")
}

/// lftp running `commands` logged in as `demo` (through OpenSSH with the demo key).
fn lftp(s: &Server, commands: &str) -> Output {
    let connect = format!(
        "ssh -a -x -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        s.key().display()
    );
    Command::new("lftp")
        .arg("-c")
        .arg(format!(
            "set sftp:connect-program '{connect}'; set net:max-retries 1; open -u demo, sftp://127.0.0.1:{}; {commands}",
            s.port
        ))
        .output()
        .expect("lftp runs")
}

#[test]
fn a_listing_of_ten_thousand_files_reaches_openssh_curl_lftp_and_paramiko() {
    // libssh2 before 1.11 (Debian 12's curl) knows no encrypt-then-MAC MAC.
    let s = Server::start(with_sftp_settings("encrypt_and_mac = true"));
    fill(&s.demo.result, 10_000);
    let names = |out: &str| {
        out.lines()
            .filter(|l| l.contains("-execution-log.json"))
            .count()
    };
    let out = s.sftp("ls -1 GDPR_Result\n");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        names(&String::from_utf8_lossy(&out.stdout)),
        10_000,
        "OpenSSH"
    );
    let out = curl_list(&s);
    assert!(out.status.success(), "curl: {}", text(&out));
    assert_eq!(names(&String::from_utf8_lossy(&out.stdout)), 10_000, "curl");
    let out = lftp(&s, "cls -1 GDPR_Result");
    assert!(out.status.success(), "lftp: {}", text(&out));
    assert_eq!(names(&String::from_utf8_lossy(&out.stdout)), 10_000, "lftp");
    let seen = paramiko_op(&s, &["listdir", "GDPR_Result"]);
    assert_eq!(seen["result"], 10_000, "paramiko: {seen}");
}

#[test]
fn open_listings_of_a_full_result_folder_do_not_each_copy_it_into_memory() {
    let s = Server::start(|_| {});
    fill(&s.demo.result, 5_000);
    let pid = s.daemon.child.id();
    let before = rss_kib(pid);
    let port = s.port.to_string();
    let key = s.key();
    // 2 connections x 4 channels x 8 listings, each read once and held open.
    let mut holder = start_attack(&[
        "listings",
        &port,
        "demo",
        key.to_str().expect("utf-8"),
        "2",
        "4",
        "8",
        "4",
    ]);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        holder.stdout.take().expect("stdout"),
    ));
    let seen: serde_json::Value = report(lines.next());
    assert_eq!(seen["opened"], 64, "{seen}");
    let during = rss_kib(pid);
    let _ = holder.wait();
    println!("RSS with 64 open listings of 5,000 files: {before} KiB before, {during} KiB during");
    assert!(
        during < before + 32 * 1024,
        "RSS grew from {before} KiB to {during} KiB"
    );
}

#[test]
fn temporary_upload_names_of_rclone_lftp_and_dot_prefixed_clients_are_taken_at_the_rename() {
    let s = Server::start(|_| {});
    let seed = fixture("requests/seed-export.json");
    let seed = seed.to_str().expect("utf-8");
    // rclone: NAME.RANDOM.partial, renamed after a while (the engine rescans every second meanwhile).
    let rclone = format!("export-{}_093000.json", today());
    let partial = format!("GDPR_Submit/{rclone}.a1b2c3d4.partial");
    assert_eq!(paramiko_op(&s, &["put", seed, &partial])["ok"], true);
    std::thread::sleep(Duration::from_millis(1500));
    let seen = paramiko_op(&s, &["rename", &partial, &format!("GDPR_Submit/{rclone}")]);
    assert_eq!(seen["ok"], true, "{seen}");
    // A dot-prefixed temporary name (asyncssh, many scripts).
    let dotted = format!("export-{}_093100.json", today());
    let hidden = format!("GDPR_Submit/.{dotted}.tmp123");
    assert_eq!(paramiko_op(&s, &["put", seed, &hidden])["ok"], true);
    let seen = paramiko_op(&s, &["rename", &hidden, &format!("GDPR_Submit/{dotted}")]);
    assert_eq!(seen["ok"], true, "{seen}");
    // lftp's xfer:use-temp-file: `.in.NAME`, then renamed.
    let by_lftp = format!("export-{}_093200.json", today());
    let out = lftp(
        &s,
        &format!("set xfer:use-temp-file yes; put {seed} -o GDPR_Submit/{by_lftp}"),
    );
    assert!(out.status.success(), "lftp: {}", text(&out));
    for name in [&rclone, &dotted, &by_lftp] {
        s.demo.wait_result(&format!(
            "{}-execution-log.json",
            name.trim_end_matches(".json")
        ));
    }
    let notices: Vec<String> = s
        .demo
        .results()
        .into_iter()
        .filter(|n| n.contains("rejected"))
        .collect();
    assert!(
        notices.is_empty(),
        "no temporary name was refused: {notices:?}"
    );
}

#[test]
fn harmless_attribute_changes_are_accepted_and_ignored() {
    let s = Server::start(|_| {});
    let seed = fixture("requests/seed-export.json");
    let name = format!("GDPR_Submit/export-{}_094000.json", today());
    // rclone sets the time after the upload, when the engine may already have taken the file.
    let seen = paramiko_op(
        &s,
        &["put-then-utime", seed.to_str().expect("utf-8"), &name],
    );
    assert_eq!(seen["ok"], true, "{seen}");
    s.demo
        .wait_result(&format!("export-{}_094000-execution-log.json", today()));
    let seen = paramiko_op(&s, &["utime", &name]);
    assert_eq!(
        seen["ok"], false,
        "a session that never submitted it finds nothing: {seen}"
    );
    let waiting = format!(
        "GDPR_Submit/forget-{}_120000.json",
        (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y%m%d")
    );
    std::fs::write(
        s.demo.dir.path().join("accounts/demo").join(&waiting),
        b"{}",
    )
    .expect("waiting");
    assert_eq!(paramiko_op(&s, &["utime", &waiting])["ok"], true);
    assert_eq!(paramiko_op(&s, &["chmod", &waiting, "644"])["ok"], true);
    assert_eq!(paramiko_op(&s, &["chmod", &waiting, "777"])["ok"], false);
    // OpenSSH's `put -p` keeps times and modes: the upload and its setstat both succeed.
    let out = s.sftp(&format!(
        "put -p {} GDPR_Submit/export-{}_094100.json\n",
        seed.display(),
        today()
    ));
    assert!(out.status.success(), "{}", text(&out));
    s.demo
        .wait_result(&format!("export-{}_094100-execution-log.json", today()));
}

#[test]
fn renames_to_hidden_names_are_refused_and_stale_temporary_uploads_are_swept_at_start() {
    let s = Server::start(|_| {});
    let waiting = format!(
        "forget-{}_120000.json",
        (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y%m%d")
    );
    std::fs::write(s.demo.submit.join(&waiting), b"{}").expect("waiting");
    for target in [".stash", "x.json.part", ".in.x"] {
        let out = s.sftp(&format!(
            "rename GDPR_Submit/{waiting} GDPR_Submit/{target}\n"
        ));
        assert!(!out.status.success(), "{target}: {}", text(&out));
    }
    assert!(s.demo.submit.join(&waiting).exists());
    let Server { demo, daemon, .. } = s;
    drop(daemon);
    // What a kill -9 leaves: the server's own temporaries, and clients' temporary uploads never renamed.
    for name in [
        ".forget-x.json.123.upload",
        ".0123456789abcdef.upload",
        "old.filepart",
        ".in.old.json",
        "new.partial",
    ] {
        std::fs::write(demo.submit.join(name), b"half").expect("leftover");
    }
    for name in ["old.filepart", ".in.old.json"] {
        let status = Command::new("touch")
            .args(["-d", "10 days ago"])
            .arg(demo.submit.join(name))
            .status()
            .expect("touch");
        assert!(status.success());
    }
    let _daemon = demo.start();
    let mut left: Vec<String> = std::fs::read_dir(&demo.submit)
        .expect("submit")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [waiting, "new.partial".to_owned()],
        "a fresh temporary upload may still be renamed"
    );
}

#[test]
fn the_files_waiting_in_gdpr_submit_are_capped_per_account_with_a_clear_error() {
    let s = Server::start(with_sftp_settings(
        "max_waiting_files = 3\nmax_waiting_bytes = 20000",
    ));
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y%m%d")
        .to_string();
    let seed = fixture("requests/seed-forget.json");
    let seed = seed.to_str().expect("utf-8");
    for i in 0..3 {
        let seen = paramiko_op(
            &s,
            &[
                "put",
                seed,
                &format!("GDPR_Submit/forget-{tomorrow}_12000{i}.json"),
            ],
        );
        assert_eq!(seen["ok"], true, "{seen}");
    }
    let seen = paramiko_op(
        &s,
        &[
            "put",
            seed,
            &format!("GDPR_Submit/forget-{tomorrow}_120009.json"),
        ],
    );
    assert_eq!(seen["ok"], false, "{seen}");
    assert!(
        seen["error"]
            .as_str()
            .is_some_and(|e| e.contains("quota exceeded")),
        "{seen}"
    );
    // Bytes count too: with two files waiting, a large upload stops at the quota.
    std::fs::remove_file(s.demo.submit.join(format!("forget-{tomorrow}_120000.json"))).expect("rm");
    let big = s.demo.dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 30_000]).expect("big");
    let seen = paramiko_op(
        &s,
        &[
            "write",
            big.to_str().expect("utf-8"),
            &format!("GDPR_Submit/forget-{tomorrow}_120008.json"),
        ],
    );
    assert!(
        seen["error"]
            .as_str()
            .is_some_and(|e| e.contains("quota exceeded")),
        "{seen}"
    );
    assert!(!s
        .demo
        .submit
        .join(format!("forget-{tomorrow}_120008.json"))
        .exists());
}

#[test]
fn a_file_name_holding_a_newline_cannot_forge_a_log_line() {
    let s = Server::start(|_| {});
    let seed = fixture("requests/seed-forget.json");
    let name = "x\n2026-01-01T00:00:00Z  INFO gdprd: FORGED\u{1b}[31m.json";
    let seen = paramiko_op(
        &s,
        &[
            "put",
            seed.to_str().expect("utf-8"),
            &format!("GDPR_Submit/{name}"),
        ],
    );
    assert_eq!(seen["ok"], true, "{seen}");
    wait_until(Duration::from_secs(10), "the upload to be logged", || {
        s.daemon.log_text().contains("FORGED")
    });
    let log = s.daemon.log_text();
    for line in log.lines().filter(|l| l.contains("FORGED")) {
        assert!(
            line.contains(r#"file="x\n2026-01-01T00:00:00Z"#),
            "the name is quoted with its newline escaped: {line}"
        );
    }
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01")),
        "a forged line: {log}"
    );
    assert!(!log.contains('\u{1b}'), "an escape code reached the log");
}

#[test]
fn ssh_audit_finds_no_failure_no_finite_field_diffie_hellman_and_no_dheat_exposure() {
    let s = Server::start(|_| {});
    let audit = paramiko_python().with_file_name("ssh-audit");
    let out = Command::new(&audit)
        .args(["-n", "-p", &s.port.to_string(), "127.0.0.1"])
        .output()
        .expect("ssh-audit runs");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{report}");
    assert!(
        report.contains("(gen) banner"),
        "the audit ran: {}",
        text(&out)
    );
    assert!(!report.contains("[fail]"), "{report}");
    assert!(!report.contains("diffie-hellman"), "{report}");
    assert!(!report.contains("DHEat"), "{report}");
    assert!(report.contains("compression: disabled"), "{report}");
    assert!(!report.contains("encrypt-and-MAC"), "{report}");
}

#[test]
fn long_names_and_exclusive_creates_on_a_waiting_name_fail_at_open_with_a_clear_error() {
    let s = Server::start(|_| {});
    let seed = fixture("requests/seed-forget.json");
    let seed = seed.to_str().expect("utf-8");
    let long = format!("GDPR_Submit/{}.json", "x".repeat(245));
    let seen = paramiko_op(&s, &["put", seed, &long]);
    assert!(
        seen["error"]
            .as_str()
            .is_some_and(|e| e.contains("file name too long")),
        "{seen}"
    );
    // 230 bytes fits (its notice's name too): accepted, and answered with a notice.
    let fits = format!("{}.json", "y".repeat(225));
    assert_eq!(
        paramiko_op(&s, &["put", seed, &format!("GDPR_Submit/{fits}")])["ok"],
        true
    );
    s.demo
        .wait_result(&format!("{}-rejected.json", "y".repeat(225)));
    let waiting = format!(
        "forget-{}_120000.json",
        (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y%m%d")
    );
    std::fs::write(s.demo.submit.join(&waiting), b"original").expect("waiting");
    let seen = paramiko_op(
        &s,
        &["put-exclusive", seed, &format!("GDPR_Submit/{waiting}")],
    );
    assert_eq!(seen["at"], "open", "{seen}");
    assert!(
        seen["error"]
            .as_str()
            .is_some_and(|e| e.contains("already waiting")),
        "{seen}"
    );
    assert_eq!(
        std::fs::read(s.demo.submit.join(&waiting)).expect("waiting"),
        b"original"
    );
}

#[test]
fn accept_errors_back_off_instead_of_logging_ten_times_a_second() {
    let s = Server::start(|_| {});
    let pid = s.daemon.child.id();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .count();
    // No file handle left for a new connection: every accept fails with EMFILE.
    let status = Command::new("prlimit")
        .args(["-p", &pid.to_string()])
        .arg(format!("--nofile={}:", open + 1))
        .status()
        .expect("prlimit");
    assert!(status.success());
    let held: Vec<_> = (0..6)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", s.port)).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let log = s.daemon.log_text();
    let failures = log.lines().filter(|l| l.contains("accept failed")).count();
    assert!(failures >= 1, "the accept failure is logged: {log}");
    assert!(
        failures <= 2,
        "{failures} accept-failure lines in 3 s: {log}"
    );
    drop(held);
    // With handles back, it accepts again.
    let status = Command::new("prlimit")
        .args(["-p", &pid.to_string()])
        .arg("--nofile=4096:")
        .status()
        .expect("prlimit");
    assert!(status.success());
    wait_until(
        Duration::from_secs(15),
        "a login after the back-off",
        || s.sftp("ls\n").status.success(),
    );
}

#[test]
fn the_daemon_keeps_its_reserve_of_file_handles_when_sftp_clients_take_their_whole_share() {
    let demo = crate::harness::Demo::new(20, |c| {
        c.merge(OTHER_ACCOUNT);
    });
    // A file-handle limit of 400 (as a unit without LimitNOFILE might give): 256 reserved, 80 connections, so the
    // SFTP server's share of open files and listings is lowered from 512 to 64.
    let log = demo.dir.path().join("daemon.log");
    let child = Command::new("prlimit")
        .arg("--nofile=400:400")
        .arg(env!("CARGO_BIN_EXE_gdprd"))
        .args(["run", "--config"])
        .arg(&demo.config)
        .env("RUST_LOG", "gdprd=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("gdprd under prlimit");
    let daemon = crate::harness::Daemon { child, log };
    wait_until(Duration::from_secs(60), "the daemon to be ready", || {
        daemon.log_text().contains("gdprd ready")
    });
    assert!(
        daemon.log_text().contains("granted=64"),
        "the share was lowered: {}",
        daemon.log_text()
    );
    let port = crate::sftp::sftp_port(&daemon.log_text()).to_string();
    fill(&demo.result, 3);
    let key = demo.dir.path().join("demo_ed25519");
    let key = key.to_str().expect("utf-8");
    let mut holder = start_attack(&["handles", &port, "demo", key, "2", "4", "10", "10"]);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        holder.stdout.take().expect("stdout"),
    ));
    let seen: serde_json::Value = report(lines.next());
    assert_eq!(seen["opened"], 64, "{seen}");
    // The server's share is used up: another account gets a clear error, not a hung or broken server.
    let seed = fixture("requests/seed-forget.json");
    let out = attack(&[
        "sftp",
        &port,
        "acme",
        key,
        "put",
        seed.to_str().expect("utf-8"),
        &format!("GDPR_Submit/forget-{}_095000.json", today()),
    ])
    .output()
    .expect("attack");
    let seen = observed(&out);
    assert!(
        seen["error"]
            .as_str()
            .is_some_and(|e| e.contains("the server has too many open files")),
        "{seen}"
    );
    // The engine still has its reserve: a file dropped into the folder is processed.
    demo.submit(
        &format!("forget-{}_095100.json", today()),
        &crate::harness::seed_forget(),
    );
    demo.wait_result(&format!("forget-{}_095100-execution-log.json", today()));
    http_job_completes(&daemon);
    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn keepalives_alone_do_not_keep_a_session_past_the_idle_timeout() {
    let s = Server::start(with_sftp_settings("idle_timeout_seconds = 3"));
    let seen = paramiko_op(&s, &["keepalive-idle", "8"]);
    assert_eq!(seen["result"], false, "the session was closed: {seen}");
    assert!(s.daemon.log_text().contains("past the idle timeout"));
}
