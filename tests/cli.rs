//! The command line: `validate` and `check-config`, which operators run before trusting a file or a config.

use crate::harness::{fixture, run, today, Config, Demo};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn validate_gives_per_file_and_per_contact_verdicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = std::fs::read(fixture("requests/seed-forget.json")).expect("seed");
    let good = br#"{"requests":[{"type":"FORGET","contacts":[{"phone":"+1 781 555 1212"},{"email":"a@b.com"}]}]}"#;
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        p.to_string_lossy().into_owned()
    };
    let valid = write(&format!("forget-{}_120000.json", today()), good);
    let out = run(&["validate", &valid]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("VALID: 1 requests, 2 contacts, FORGET, due today"),
        "{}",
        stdout(&out)
    );

    let seed_today = write(&format!("forget-{}_120001.json", today()), &seed);
    let out = run(&["validate", &valid, &seed_today]);
    assert_eq!(out.status.code(), Some(1), "one contact is invalid");
    let text = stdout(&out);
    assert!(
        text.contains("INVALID: 1 of 12 contacts would get an error"),
        "{text}"
    );
    assert!(
        text.contains("request 2 contact 2 (phone): ERROR: incorrect device format"),
        "{text}"
    );

    let past = write("forget-20180315_120000.json", good);
    let text = stdout(&run(&["validate", &past]));
    assert!(
        text.contains("REJECTED: ERROR: file is dated 2018-03-15"),
        "{text}"
    );
    let export_named = write(&format!("export-{}_120000.json", today()), good);
    let out = run(&["validate", &export_named]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out)
        .contains("REFUSED: ERROR: request 1: \"type\" is FORGET but the file name says EXPORT"));
    let pseudo = write(
        &format!("pseudonymise-{}_120000.json", today()),
        &String::from_utf8_lossy(good)
            .replace("FORGET", "PSEUDONYMISE")
            .into_bytes(),
    );
    let out = run(&["validate", &pseudo]);
    assert!(
        stdout(&out).contains("VALID: 1 requests, 2 contacts, PSEUDONYMISE, due today"),
        "{}",
        stdout(&out)
    );
    let pseudo_named = write(&format!("pseudonymise-{}_120001.json", today()), good);
    assert!(stdout(&run(&["validate", &pseudo_named])).contains(
        "REFUSED: ERROR: request 1: \"type\" is FORGET but the file name says PSEUDONYMISE"
    ));
    let broken = write(
        &format!("forget-{}_130000.json", today()),
        b"{\n  \"requests\": [,]\n}",
    );
    assert!(stdout(&run(&["validate", &broken]))
        .contains("REFUSED: ERROR: invalid JSON at line 2 column 16"));
}

#[test]
fn check_config_accepts_the_demo_and_names_what_is_wrong() {
    let demo = Demo::new(10, |_| {});
    let config = demo.config.to_str().expect("utf-8").to_owned();
    let out = run(&["check-config", &config]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("store demo: OK"));

    let shipped = Config::read(&demo.config);
    let mut misnamed = shipped.clone();
    misnamed.rename("accounts[demo].retention_days", "retention_dayz");
    misnamed.write(&demo.config);
    let out = run(&["check-config", &config]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `retention_dayz`"));

    let mut unmapped = shipped.clone();
    unmapped.set(
        "stores.demo.tables[contact_attempt].personal",
        vec!["agent_remarks"],
    );
    unmapped.write(&demo.config);
    let out = run(&["check-config", &config]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("table \"contact_attempt\" has no column \"agent_remarks\""),
        "{}",
        stdout(&out)
    );
    // --offline (the unit's start check) reads the file only: a store that does not fit is not its business.
    let out = run(&["check-config", "--offline", &config]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("stores not opened (--offline)"));
    misnamed.write(&demo.config);
    assert!(!run(&["check-config", "--offline", &config])
        .status
        .success());
}

#[test]
fn the_host_key_is_made_once_and_reused() {
    let demo = Demo::new(10, |_| {});
    let config = demo.config.to_str().expect("utf-8").to_owned();
    let first = run(&["host-key", "--config", &config]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = stdout(&first);
    assert!(
        text.starts_with("SHA256:") && text.contains("ssh-ed25519 "),
        "{text}"
    );
    let daemon = demo.start();
    let again = run(&["host-key", "--config", &config]);
    assert_eq!(stdout(&again), text, "the daemon reused the key");
    let fingerprint = text.lines().next().expect("fingerprint");
    assert!(
        daemon.log_text().contains(fingerprint),
        "the fingerprint is logged at start"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(demo.dir.path().join("state/ssh_host_ed25519_key"))
            .expect("key")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn hash_password_makes_an_argon2_hash() {
    use std::io::Write;
    let mut child = crate::harness::gdprd()
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gdprd");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret\n")
        .expect("write");
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success());
    assert!(
        stdout(&out).starts_with("$argon2id$v=19$"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn validate_draws_a_progress_bar_only_on_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let contacts: Vec<String> = (0..10_000)
        .map(|i| format!(r#"{{"email": "person{i}@example.org"}}"#))
        .collect();
    let name = format!("forget-{}_120000.json", crate::harness::today());
    let path = dir.path().join(&name);
    std::fs::write(
        &path,
        format!(
            r#"{{"requests": [{{"type": "FORGET", "contacts": [{}]}}]}}"#,
            contacts.join(", ")
        ),
    )
    .expect("write");
    // Not a terminal: the verdict only, nothing on standard error.
    let out = crate::harness::run(&["validate", path.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A terminal (script(1) gives it one): the bar is drawn, then cleared, and the verdict printed.
    let command = format!(
        "{} validate {}",
        env!("CARGO_BIN_EXE_gdprd"),
        path.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{name}: VALID")), "{text}");
    assert!(
        text.contains('█') || text.contains('░'),
        "no bar drawn: {text:?}"
    );
}

#[test]
fn http_token_prints_a_fresh_token_and_its_hash() {
    use sha2::Digest;
    let read = || {
        let out = run(&["http-token"]);
        assert!(out.status.success());
        let text = stdout(&out);
        let token = text
            .lines()
            .find_map(|l| l.rsplit_once(": ").filter(|_| l.starts_with("token")))
            .map(|(_, t)| t.trim().to_owned())
            .expect("token line");
        let hash = text
            .lines()
            .find_map(|l| l.split("token_hash = \"").nth(1))
            .map(|h| h.trim_end_matches('"').to_owned())
            .expect("hash line");
        (token, hash)
    };
    let (token, hash) = read();
    assert_eq!(
        hash,
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(token.as_bytes()))
        )
    );
    assert!(token.len() >= 64, "256 random bits: {token}");
    assert_ne!(read().0, token, "every token is new");
}

/// Issue 14, item 20: the demo's config installed elsewhere (as docs/operations.md once said) passed
/// `check-config --offline` with the demo's published password and token. Outside a `gdprd demo` folder,
/// `check-config` and `run` refuse them, naming the account and what to do.
#[test]
fn the_demo_password_and_token_are_refused_outside_the_demo() {
    let demo = Demo::new(10, |_| {});
    let out = run(&[
        "check-config",
        "--offline",
        demo.config.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "the demo's own folder may use them");

    let elsewhere = tempfile::tempdir().expect("tempdir");
    let mut moved = Config::read(&demo.config);
    moved.set(
        "accounts[demo].sftp.authorized_keys_file",
        demo.dir
            .path()
            .join("demo_ed25519.pub")
            .display()
            .to_string(),
    );
    let config = elsewhere.path().join("gdprd.toml");
    moved.write(&config);
    let path = config.to_str().expect("utf-8");
    for args in [
        vec!["check-config", "--offline", path],
        vec!["run", "--once", "--config", path],
    ] {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted the demo password");
        assert!(
            err.contains("account \"demo\"")
                && err.contains("password")
                && err.contains("gdprd hash-password"),
            "{err}"
        );
    }

    // A real password, the demo token still there: refused for the token.
    let hashed = crate::harness::gdprd()
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"a real password 4821\n")?;
            child.wait_with_output()
        })
        .expect("hash-password");
    let printed = String::from_utf8_lossy(&hashed.stdout).into_owned();
    let hash = printed.lines().next().unwrap_or_default().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{printed}");
    moved.set("accounts[demo].sftp.password_hash", hash);
    moved.write(&config);
    let out = run(&["check-config", "--offline", path]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the demo token was accepted");
    assert!(
        err.contains("account \"demo\"")
            && err.contains("token")
            && err.contains("gdprd http-token"),
        "{err}"
    );
}

/// A daemon whose log stream breaks (journald restarted, a pipe's reader gone) goes on working: it executed no
/// file and exited 101 when tracing's fallback `eprintln!` panicked on the closed stderr.
#[test]
fn a_closed_log_stream_does_not_stop_the_daemon() {
    let demo = Demo::new(300, |_| {});
    let name = format!("forget-{}_150000.json", today());
    demo.submit(&name, &crate::harness::seed_forget());
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let status = crate::harness::gdprd()
        .args(["run", "--once", "--config"])
        .arg(&demo.config)
        .stdout(writer.try_clone().expect("pipe"))
        .stderr(writer)
        .status()
        .expect("gdprd runs");
    assert!(
        status.success(),
        "run --once with a closed stderr: {status}"
    );
    let log = demo.result_json(&format!("forget-{}_150000-execution-log.json", today()));
    assert_eq!(crate::harness::responses(&log).len(), 12);
}
