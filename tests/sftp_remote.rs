//! Remote SFTP accounts against a real OpenSSH server: the test starts its own `sshd` (Debian's openssh-server)
//! on a spare loopback port, with its own config, host key and authorized key, never the system's; the remote
//! folders are a temporary folder it serves over `internal-sftp`.

use crate::harness::{responses, seed_forget, today, wait_until, Demo};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SSHD: &str = "/usr/sbin/sshd";

/// An OpenSSH server of the test's own; killed (with its session processes) when dropped.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

/// Every process below `pid`, from `/proc`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …: the command may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (child, _) in parent_of.iter().filter(|(_, pp)| *pp == parent) {
            out.push(*child);
            frontier.push(*child);
        }
    }
    out
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
}

impl Sshd {
    fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: apt-get install openssh-server (.ci/run does)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        for sub in ["remote/GDPR_Submit", "remote/GDPR_Result"] {
            std::fs::create_dir_all(d.join(sub)).expect("remote folders");
        }
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let port = crate::harness::spare_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n\
             Subsystem sftp internal-sftp\nLogLevel ERROR\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        let mut sshd = Sshd {
            dir,
            port,
            child: None,
        };
        sshd.restart();
        sshd
    }

    fn restart(&mut self) {
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts");
        self.child = Some(child);
        wait_until(Duration::from_secs(10), "sshd to listen", || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// Kills the server and every session process it started, as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let mut pids = descendants(child.id());
            pids.push(child.id());
            for pid in pids {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.wait();
        }
    }

    fn remote(&self, sub: &str) -> PathBuf {
        self.dir.path().join("remote").join(sub)
    }

    fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join("host_key.pub"))
            .output()
            .expect("ssh-keygen -lf");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_owned()
    }

    /// Drops a file into the remote `GDPR_Submit` as an upload would: written under a temporary name, renamed.
    fn submit(&self, name: &str, bytes: &[u8]) {
        let temp = self.remote(&format!("GDPR_Submit/{name}.filepart"));
        std::fs::write(&temp, bytes).expect("write");
        std::fs::rename(&temp, self.remote(&format!("GDPR_Submit/{name}"))).expect("rename");
    }

    /// Waits until the remote `GDPR_Submit` is empty: every submission delivered.
    fn wait_submit_empty(&self, limit: Duration) {
        wait_until(limit, "the remote GDPR_Submit to empty", || {
            std::fs::read_dir(self.remote("GDPR_Submit"))
                .map(|r| r.count())
                .unwrap_or(1)
                == 0
        });
    }

    fn results(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.remote("GDPR_Result"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn wait_result(&self, name: &str, limit: Duration) -> serde_json::Value {
        let path = self.remote(&format!("GDPR_Result/{name}"));
        wait_until(limit, name, || path.exists());
        serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A demo whose account lives on `sshd`, pinned by `pin` (a `known_hosts` line or fingerprint setting).
fn remote_demo(sshd: &Sshd, pin: &str) -> Demo {
    let d = sshd.dir.path().display().to_string();
    let port = sshd.port;
    let pin = pin.to_owned();
    let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().expect("id").stdout)
        .trim()
        .to_owned();
    Demo::new(50, move |c| {
        c.remove("accounts[demo].sftp");
        c.set("accounts[demo].transport", "sftp-remote").extend(
            "accounts[demo]",
            &format!(
                "[remote]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{user}\"\nkey_file = \"{d}/client_key\"\n\
                 path = \"{d}/remote\"\npoll_seconds = 1\ntimeout_seconds = 5\n{pin}"
            ),
        );
        // No HTTP front doors for a remote account (its results leave for the server).
        c.remove("accounts[demo].http");
    })
}

fn pinned(sshd: &Sshd) -> Demo {
    remote_demo(
        sshd,
        &format!("host_key_fingerprint = \"{}\"\n", sshd.fingerprint()),
    )
}

#[test]
fn forget_and_export_through_a_remote_openssh_server() {
    let sshd = Sshd::start();
    // known_hosts, as OpenSSH writes it for a non-standard port.
    let key = std::fs::read_to_string(sshd.dir.path().join("host_key.pub")).expect("host key");
    let known = sshd.dir.path().join("known_hosts");
    std::fs::write(&known, format!("[127.0.0.1]:{} {key}", sshd.port)).expect("known_hosts");
    let demo = remote_demo(&sshd, &format!("known_hosts = \"{}\"\n", known.display()));
    let _daemon = demo.start();

    let export = std::fs::read(crate::harness::fixture("requests/seed-export.json")).expect("seed");
    sshd.submit(&format!("export-{}_120000.json", today()), &export);
    sshd.submit(&format!("forget-{}_120001.json", today()), &seed_forget());
    let log = sshd.wait_result(
        &format!("export-{}_120000-execution-log.json", today()),
        Duration::from_secs(30),
    );
    assert_eq!(
        responses(&log).iter().filter(|r| *r == "SUCCESS").count(),
        11
    );
    assert!(
        sshd.remote(&format!(
            "GDPR_Result/export-{}_120000-archive.zip",
            today()
        ))
        .exists(),
        "the archive is in place when the log is"
    );
    let log = sshd.wait_result(
        &format!("forget-{}_120001-execution-log.json", today()),
        Duration::from_secs(30),
    );
    assert_eq!(
        responses(&log).iter().filter(|r| *r == "SUCCESS").count(),
        11
    );
    assert_eq!(demo.sample_email_rows(), 0);
    sshd.wait_submit_empty(Duration::from_secs(10));
    assert_eq!(
        sshd.results(),
        [
            format!("export-{}_120000-archive.zip", today()),
            format!("export-{}_120000-execution-log.json", today()),
            format!("forget-{}_120001-execution-log.json", today()),
        ],
        "no temporary names left, nothing else"
    );
}

#[test]
fn a_file_still_growing_is_not_taken_early() {
    let sshd = Sshd::start();
    let demo = pinned(&sshd);
    let _daemon = demo.start();
    let name = format!("forget-{}_120000.json", today());
    let body = seed_forget();
    let path = sshd.remote(&format!("GDPR_Submit/{name}"));
    // Written in pieces, the size changing between every two listings, for three seconds.
    let pieces = body.chunks(body.len() / 16 + 1).collect::<Vec<_>>();
    std::fs::write(&path, b"").expect("create");
    for piece in &pieces {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        std::io::Write::write_all(&mut f, piece).expect("append");
        // Listings are at least a second apart: several appends fall between any two.
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !demo.submit.join(&name).exists() && sshd.results().is_empty(),
            "taken while it grew"
        );
    }
    let log = sshd.wait_result(
        &format!("forget-{}_120000-execution-log.json", today()),
        Duration::from_secs(30),
    );
    assert_eq!(
        responses(&log).iter().filter(|r| *r == "SUCCESS").count(),
        11,
        "the whole file was executed"
    );
}

#[test]
fn a_changed_host_key_is_refused_and_its_fingerprint_logged() {
    let sshd = Sshd::start();
    let other = tempfile::tempdir().expect("tempdir");
    keygen(&other.path().join("k"));
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(other.path().join("k.pub"))
        .output()
        .expect("ssh-keygen");
    let wrong = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fp")
        .to_owned();
    let demo = remote_demo(&sshd, &format!("host_key_fingerprint = \"{wrong}\"\n"));
    let daemon = demo.start();
    sshd.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    let real = sshd.fingerprint();
    wait_until(Duration::from_secs(15), "the refusal in the log", || {
        daemon.log_text().contains(&real)
    });
    assert!(daemon.log_text().contains("is not the one configured"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(sshd.results().is_empty());
    assert_eq!(demo.sample_email_rows(), 1, "nothing executed");
    assert!(sshd
        .remote(&format!("GDPR_Submit/forget-{}_120000.json", today()))
        .exists());
}

/// Every file ends with one execution log and nothing else, and was executed once.
fn assert_exactly_once(demo: &Demo, sshd: &Sshd, names: &[String]) {
    for name in names {
        let stem = name.strip_suffix(".json").expect("stem");
        let log = sshd.wait_result(
            &format!("{stem}-execution-log.json"),
            Duration::from_secs(90),
        );
        assert_eq!(
            responses(&log)
                .iter()
                .filter(|r| *r == "SUCCESS" || *r == "SUCCESS: not found")
                .count(),
            11
        );
        let executions = demo.ledger_count(&format!(
            "SELECT count(*) FROM audit WHERE file = '{name}' AND action = 'forget'"
        ));
        assert_eq!(
            executions, 12,
            "{name}: each of the 12 contacts executed and audited once"
        );
    }
    sshd.wait_submit_empty(Duration::from_secs(30));
    let results = sshd.results();
    assert_eq!(
        results.len(),
        names.len(),
        "one result per file, no notices: {results:?}"
    );
}

#[test]
fn sshd_killed_and_restarted_around_transfers_gives_one_result_per_file() {
    let mut sshd = Sshd::start();
    let demo = pinned(&sshd);
    let daemon = demo.start();
    // Cut an established connection: under load the first login can take seconds.
    wait_until(Duration::from_secs(60), "the first connection", || {
        daemon
            .log_text()
            .contains("connected to the remote SFTP server")
    });
    let mut names = Vec::new();
    for (i, delay_ms) in [0u64, 400, 900, 1500, 2200].into_iter().enumerate() {
        let name = format!("forget-{}_12000{i}.json", today());
        sshd.submit(&name, &seed_forget());
        names.push(name);
        std::thread::sleep(Duration::from_millis(delay_ms));
        sshd.kill();
        std::thread::sleep(Duration::from_millis(300));
        sshd.restart();
    }
    assert_exactly_once(&demo, &sshd, &names);
    assert!(
        daemon.log_text().contains("will reconnect"),
        "the connection was really cut"
    );
}

#[test]
fn gdprd_killed_and_restarted_gives_one_result_per_file() {
    let sshd = Sshd::start();
    let demo = pinned(&sshd);
    let mut names = Vec::new();
    for (i, delay_ms) in [1200u64, 1800, 2400, 3000].into_iter().enumerate() {
        let daemon = demo.start();
        let name = format!("forget-{}_13000{i}.json", today());
        sshd.submit(&name, &seed_forget());
        names.push(name);
        std::thread::sleep(Duration::from_millis(delay_ms));
        daemon.signal("KILL");
        drop(daemon);
    }
    let _daemon = demo.start();
    assert_exactly_once(&demo, &sshd, &names);
}

#[test]
fn a_result_folder_that_cannot_be_written_is_logged_and_retried_without_executing_again() {
    let sshd = Sshd::start();
    let demo = pinned(&sshd);
    let result = sshd.remote("GDPR_Result");
    // Not a folder any more: every upload into it fails, whoever the server runs as.
    std::fs::remove_dir(&result).expect("rmdir");
    std::fs::write(&result, b"not a folder").expect("file");
    let daemon = demo.start();
    let name = format!("forget-{}_120000.json", today());
    sshd.submit(&name, &seed_forget());
    wait_until(
        Duration::from_secs(30),
        "the upload error in the log",
        || daemon.log_text().contains("cannot create"),
    );
    assert!(demo
        .result
        .join(format!("forget-{}_120000-execution-log.json", today()))
        .exists());
    assert!(
        sshd.remote(&format!("GDPR_Submit/{name}")).exists(),
        "the submission stays until its result is delivered"
    );
    std::fs::remove_file(&result).expect("rm");
    std::fs::create_dir(&result).expect("mkdir");
    assert_exactly_once(&demo, &sshd, &[name]);
}

/// Polls `dir` every half millisecond until a name satisfying `pick` appears; true when it did in `limit`.
fn catch(dir: &Path, pick: impl Fn(&str) -> bool, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        let hit = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().any(|e| pick(&e.file_name().to_string_lossy())))
            .unwrap_or(false);
        if hit {
            return true;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    false
}

#[test]
fn sshd_killed_mid_download_and_mid_upload_still_gives_one_result() {
    const CONTACTS: usize = 150_000;
    let mut sshd = Sshd::start();
    let demo = pinned(&sshd);
    demo.edit_config(|c| {
        c.merge("[limits]\nmax_contacts = 200000\nmax_file_bytes = 52428800");
    });
    let contacts: Vec<String> = (0..CONTACTS)
        .map(|i| format!(r#"{{"email": "person{i}@example.org"}}"#))
        .collect();
    let body = format!(
        r#"{{"requests": [{{"requestcase": "big", "type": "FORGET", "contacts": [{}]}}]}}"#,
        contacts.join(", ")
    );
    let name = format!("forget-{}_140000.json", today());
    let daemon = demo.start();
    sshd.submit(&name, body.as_bytes());

    // Mid-download: the hidden download file is in the staging folder.
    let downloading = catch(
        &demo.submit,
        |n| n.ends_with(".gdprd-download"),
        Duration::from_secs(30),
    );
    sshd.kill();
    assert!(downloading, "the download was not caught in flight");
    std::thread::sleep(Duration::from_millis(500));
    sshd.restart();

    // Mid-upload: the hidden result file is in the remote GDPR_Result.
    let uploading = catch(
        &sshd.remote("GDPR_Result"),
        |n| n.ends_with(".gdprd-part"),
        Duration::from_secs(120),
    );
    sshd.kill();
    assert!(uploading, "the upload was not caught in flight");
    std::thread::sleep(Duration::from_millis(500));
    sshd.restart();

    let stem = name.strip_suffix(".json").expect("stem");
    let log = sshd.wait_result(
        &format!("{stem}-execution-log.json"),
        Duration::from_secs(120),
    );
    assert_eq!(
        responses(&log).len(),
        CONTACTS,
        "the whole log, not a partial one"
    );
    let executions =
        demo.ledger_count(&format!("SELECT count(*) FROM audit WHERE file = '{name}'"));
    assert_eq!(executions, CONTACTS as i64, "each contact executed once");
    sshd.wait_submit_empty(Duration::from_secs(30));
    assert_eq!(
        sshd.results(),
        [format!("{stem}-execution-log.json")],
        "one result, no temporary left"
    );
    assert!(daemon.log_text().contains("will reconnect"));
}

#[test]
fn a_remote_file_replaced_while_it_runs_is_taken_again_not_removed_unread() {
    let sshd = Sshd::start();
    let demo = pinned(&sshd);
    demo.edit_config(|c| {
        c.merge("[limits]\nbatch_size = 1");
    });
    let _daemon = demo.start();
    let stem = format!("forget-{}_121500", today());
    let name = format!("{stem}.json");
    let contacts: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"email": "user{i}@example.com"}}"#))
        .collect();
    let big = format!(
        r#"{{"requests": [{{"type": "FORGET", "contacts": [{}]}}]}}"#,
        contacts.join(", ")
    );
    sshd.submit(&name, big.as_bytes());
    wait_until(Duration::from_secs(60), "a few chunks to complete", || {
        crate::durability::chunks_done(&demo) >= 2
    });
    // The customer puts another file onto the same name on the server while the first one runs.
    sshd.submit(
        &name,
        br#"{"requests":[{"type":"FORGET","contacts":[{"email":"TEST@test.com"}]}]}"#,
    );
    assert!(
        crate::durability::chunks_done(&demo) < 300,
        "replaced while the first file ran"
    );
    sshd.wait_result(
        &format!("{stem}-execution-log.json"),
        Duration::from_secs(60),
    );
    let notice = sshd.wait_result(&format!("{stem}-rejected.json"), Duration::from_secs(30));
    assert!(
        notice["error"]
            .as_str()
            .expect("error")
            .contains("already submitted"),
        "the replacement is read and answered: {notice}"
    );
    sshd.wait_submit_empty(Duration::from_secs(30));
    assert_eq!(
        demo.sample_email_rows(),
        1,
        "the replacement was not executed"
    );
}
