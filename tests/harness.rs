//! A demo installation in a temporary folder, the daemon as a child process, and helpers to submit files and
//! wait for results.

mod config;

pub use config::Config;
use rusqlite::Connection;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Says that the running test cannot run and why, straight to the terminal: libtest captures `eprintln!` of a
/// passing test, and a skipped test must be seen. `./test.sh` counts these `skipping:` lines in its summary.
pub fn skip(reason: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let _ = writeln!(std::io::stderr().lock(), "skipping: {test}: {reason}");
}

/// The binary under test.
pub fn gdprd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gdprd"))
}

/// Runs `gdprd` with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    gdprd().args(args).output().expect("gdprd runs")
}

/// Today's date as file names want it (UTC, the demo account's time zone).
pub fn today() -> String {
    chrono::Utc::now().format("%Y%m%d").to_string()
}

/// The seed's sample forget request, as shipped.
pub fn seed_forget() -> Vec<u8> {
    std::fs::read(fixture("requests/seed-forget.json")).expect("seed fixture")
}

/// A file in `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// A demo installation in a temporary folder.
pub struct Demo {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub submit: PathBuf,
    pub result: PathBuf,
    pub db: PathBuf,
}

impl Demo {
    /// `gdprd run --once` on this demo's config: resumes, processes what is waiting, exits; it must succeed.
    pub fn run_once(&self) -> Output {
        let out = run(&[
            "run",
            "--once",
            "--config",
            self.config.to_str().expect("utf-8"),
        ]);
        assert!(
            out.status.success(),
            "run --once: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Lays out a demo with `rows` filler contacts, then lets `edit` change its config. Tests rescan every second,
    /// take files without a settle time and listen on spare ports unless `edit` says otherwise.
    pub fn new(rows: u64, edit: impl FnOnce(&mut Config)) -> Demo {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = run(&[
            "demo",
            "--dir",
            dir.path().to_str().expect("utf-8 path"),
            "--rows",
            &rows.to_string(),
            "--no-start",
        ]);
        assert!(
            out.status.success(),
            "demo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("gdprd.toml");
        let mut edited = Config::read(&config);
        edited
            .set("intake.rescan_seconds", 1)
            .set("intake.settle_seconds", 0)
            .set("sftp_server.listen", "127.0.0.1:0")
            .set("http.listen", "127.0.0.1:0");
        edit(&mut edited);
        edited.write(&config);
        let root = dir.path().join("accounts/demo");
        Demo {
            config,
            submit: root.join("GDPR_Submit"),
            result: root.join("GDPR_Result"),
            db: dir.path().join("demo.db"),
            dir,
        }
    }

    /// Lets `edit` change this demo's config file.
    pub fn edit_config(&self, edit: impl FnOnce(&mut Config)) {
        let mut config = Config::read(&self.config);
        edit(&mut config);
        config.write(&self.config);
    }

    /// Starts the daemon and waits until it says it is ready.
    pub fn start(&self) -> Daemon {
        self.start_with_env(&[])
    }

    /// [`Demo::start`] with extra environment variables for the daemon.
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        let log = self.dir.path().join(format!(
            "daemon-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let log = unique(log);
        let child = gdprd()
            .args(["run", "--config", self.config.to_str().expect("utf-8")])
            .env("RUST_LOG", "gdprd=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("daemon starts");
        let mut daemon = Daemon { child, log };
        let start = Instant::now();
        while !daemon.log_text().contains("gdprd ready") {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "the daemon exited ({status}) before it was ready; its log:\n{}",
                    daemon.log_text()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for the daemon to be ready; its log:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// Drops a file into `GDPR_Submit` the way an SFTP server would finish an upload: written under a temporary
    /// name, then renamed into place.
    pub fn submit(&self, name: &str, bytes: &[u8]) {
        let temp = self.submit.join(format!("{name}.filepart"));
        std::fs::write(&temp, bytes).expect("write upload");
        std::fs::rename(&temp, self.submit.join(name)).expect("rename upload");
    }

    /// Waits for `GDPR_Result/name` and returns its path.
    pub fn wait_result(&self, name: &str) -> PathBuf {
        self.wait_result_within(name, Duration::from_secs(60))
    }

    /// [`Demo::wait_result`] for a result that may take longer than a minute on a loaded machine.
    pub fn wait_result_within(&self, name: &str, limit: Duration) -> PathBuf {
        let path = self.result.join(name);
        wait_until(limit, name, || path.exists());
        path
    }

    /// Waits for `GDPR_Result/name` and parses it as JSON.
    pub fn result_json(&self, name: &str) -> Value {
        let bytes = std::fs::read(self.wait_result(name)).expect("read result");
        serde_json::from_slice(&bytes).expect("result is JSON")
    }

    /// The demo database.
    pub fn db(&self) -> Connection {
        Connection::open(&self.db).expect("open demo db")
    }

    /// A single number from the demo database, e.g. `SELECT count(*) …`.
    pub fn db_count(&self, sql: &str) -> i64 {
        self.db()
            .query_row(sql, [], |r| r.get(0))
            .expect("count query")
    }

    /// How many records still hold the sample's `TEST@test.com` in the contact list (1 until it is forgotten).
    pub fn sample_email_rows(&self) -> i64 {
        self.db_count("SELECT count(*) FROM contact_list WHERE email = 'TEST@test.com'")
    }

    /// A single number from the ledger.
    pub fn ledger_count(&self, sql: &str) -> i64 {
        self.ledger()
            .query_row(sql, [], |r| r.get(0))
            .expect("ledger query")
    }

    /// The ledger.
    pub fn ledger(&self) -> Connection {
        Connection::open(self.dir.path().join("state/ledger.db")).expect("open ledger")
    }

    /// Waits until `GDPR_Submit` is empty: a submission leaves it just after its result is in place.
    pub fn wait_submit_empty(&self) {
        wait_until(Duration::from_secs(10), "GDPR_Submit to be empty", || {
            self.submitted().is_empty()
        });
    }

    /// Waits until `GDPR_Submit` holds only `kept` (a file waiting for its date).
    pub fn wait_submit_empty_but(&self, kept: &str) {
        wait_until(
            Duration::from_secs(10),
            "GDPR_Submit to hold only the waiting file",
            || self.submitted() == [kept],
        );
    }

    /// Names in `GDPR_Submit` (sorted).
    pub fn submitted(&self) -> Vec<String> {
        names(&self.submit)
    }

    /// Names in `GDPR_Result` (sorted).
    pub fn results(&self) -> Vec<String> {
        names(&self.result)
    }
}

fn unique(path: PathBuf) -> PathBuf {
    let mut n = 0;
    loop {
        let candidate = path.with_extension(format!("{n}.log"));
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Polls `done` every 20 ms until it holds, panicking with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon as a child process; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Everything the daemon logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal by name (`TERM`, `KILL`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the daemon to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(start.elapsed() < limit, "daemon did not exit in {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The responses of an execution log, in order, across requests.
pub fn responses(log: &Value) -> Vec<String> {
    log["result"]
        .as_array()
        .expect("result array")
        .iter()
        .flat_map(|r| r["contacts"].as_array().expect("contacts").iter())
        .map(|c| c["response"].as_str().expect("response").to_owned())
        .collect()
}

/// How many of `responses` are exactly `SUCCESS`.
pub fn successes(responses: &[String]) -> usize {
    responses.iter().filter(|r| *r == "SUCCESS").count()
}

/// A Python that can import `imports`, from a virtual environment `name` under cargo's temporary folder, made
/// (or remade, when a moved or broken one cannot run) once and filled with `packages` from PyPI.
pub fn python_venv(name: &str, packages: &[&str], imports: &str) -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let python = venv.join("bin/python");
    let ready = || {
        Command::new(&python)
            .args(["-c", &format!("import {imports}")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready() {
        let made = Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(
            made.success(),
            "python3 -m venv failed (Debian: apt-get install python3-venv)"
        );
        let pip = Command::new(&python)
            .args(["-m", "pip", "install", "-q"])
            .args(packages)
            .status()
            .expect("pip runs");
        assert!(pip.success(), "pip install {packages:?} failed");
    }
    assert!(
        ready(),
        "{imports} is not importable from {}",
        python.display()
    );
    python
}

/// A loopback port that was free a moment ago, for a server whose port the config must name.
pub fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Serves the Prometheus metrics endpoint on 127.0.0.1:`port`.
pub fn with_metrics(config: &mut Config, port: u16) {
    config.merge(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\""));
}
