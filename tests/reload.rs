//! SIGHUP reloads the configuration: accounts added take files, a broken config is refused and the running one
//! goes on, and an SFTP session opened before the reload goes on working.

use crate::harness::{seed_forget, today, wait_until, Demo};
use crate::sftp::{sftp_port, ssh_options};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn sighup_adds_an_account_and_keeps_an_open_sftp_session() {
    let demo = Demo::new(20, |_| {});
    let daemon = demo.start();
    // An SFTP session opened before the reload, kept open on its standard input.
    let mut session = Command::new("sftp")
        .args(["-P", &sftp_port(&daemon.log_text()).to_string(), "-i"])
        .arg(demo.dir.path().join("demo_ed25519"))
        .args(ssh_options())
        .arg("demo@127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sftp starts");
    wait_until(Duration::from_secs(10), "the sftp login", || {
        daemon.log_text().contains("method=\"publickey\"") || daemon.log_text().contains("login")
    });

    demo.edit_config(|c| {
        c.merge("[[accounts]]\nname = \"acme\"\nroot = \"accounts/acme\"\ntimezone = \"UTC\"\nstores = [\"demo\"]");
    });
    daemon.signal("HUP");
    wait_until(Duration::from_secs(10), "the reload", || {
        daemon.log_text().contains("configuration reloaded")
    });

    // The new account takes files.
    let acme_root = demo.dir.path().join("accounts/acme");
    let name = format!("forget-{}_120000.json", today());
    std::fs::write(acme_root.join("GDPR_Submit").join(&name), seed_forget()).expect("submit");
    let log = acme_root.join(format!(
        "GDPR_Result/forget-{}_120000-execution-log.json",
        today()
    ));
    wait_until(Duration::from_secs(20), "acme's execution log", || {
        log.exists()
    });

    // The session opened before the reload still uploads.
    let upload = demo.dir.path().join("upload.json");
    std::fs::write(&upload, seed_forget()).expect("upload file");
    let stdin = session.stdin.as_mut().expect("stdin");
    writeln!(
        stdin,
        "put {} GDPR_Submit/forget-{}_130000.json\nbye",
        upload.display(),
        today()
    )
    .expect("commands");
    assert!(session.wait().expect("sftp ends").success());
    demo.result_json(&format!("forget-{}_130000-execution-log.json", today()));
}

#[test]
fn a_broken_config_on_sighup_is_refused_and_the_running_one_goes_on() {
    let demo = Demo::new(20, |_| {});
    let daemon = demo.start();
    demo.edit_config(|c| {
        c.set("accounts[demo].stores", vec!["nope"]);
    });
    daemon.signal("HUP");
    wait_until(Duration::from_secs(10), "the refusal", || {
        daemon.log_text().contains("reload refused")
    });
    assert!(
        daemon.log_text().contains("unknown store"),
        "the log says why"
    );
    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    assert_eq!(
        demo.sample_email_rows(),
        0,
        "the old config, with its stores, still runs"
    );
}
