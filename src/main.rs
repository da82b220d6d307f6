//! The `gdprd` command: run the daemon, validate files offline, check a config, lay out a demo.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use gdprd::config::{Config, LogFormat};
use gdprd::daemon::{self, RunOptions};
use gdprd::requests::{
    admit_name_within, parse, Admission, Limits, RequestRules, DEFAULT_MAX_FUTURE_DAYS,
};
use gdprd::transports::sftp_server;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// gdprd carries out GDPR forget and export requests dropped as JSON files.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground until SIGTERM or Ctrl-C.
    Run {
        /// The config file.
        #[arg(long, short, default_value = "/etc/gdprd/gdprd.toml")]
        config: PathBuf,
        /// Process the files present now (and resume unfinished ones), then exit.
        #[arg(long)]
        once: bool,
    },
    /// Check request files offline exactly as the daemon would; exit 0 only if every file is fully valid.
    Validate {
        /// Use this config's limits and the account's time zone.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The account whose time zone decides "today" (default: the config's first account, else UTC).
        #[arg(long)]
        account: Option<String>,
        /// The files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check a config file: syntax, consistency, and that every store's mapping fits its database.
    CheckConfig {
        /// The config file.
        config: PathBuf,
        /// Check the file only, without opening the stores (for a service start, which must not fail because a
        /// database server is still down).
        #[arg(long)]
        offline: bool,
    },
    /// Print the embedded SFTP server's host key fingerprint and public key (made on first use).
    HostKey {
        /// The config file (the key lives in its state folder).
        #[arg(long, short, default_value = "/etc/gdprd/gdprd.toml")]
        config: PathBuf,
    },
    /// Read a password from standard input and print its argon2 hash for `password_hash`.
    HashPassword,
    /// Make a bearer token for an account's HTTP front doors: prints the token (give it to the client; it is
    /// shown once) and the `token_hash` line for `[accounts.http]`.
    HttpToken,
    /// Lay out a self-contained demo installation in DIR and run it.
    Demo {
        /// Where to lay it out.
        #[arg(long, default_value = "gdprd-demo")]
        dir: PathBuf,
        /// Filler contacts in the demo database (besides the seed's sample records).
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        /// Lay out only; do not start the daemon.
        #[arg(long)]
        no_start: bool,
        /// Port of the demo's SFTP server on 127.0.0.1.
        #[arg(long, default_value_t = 2222)]
        sftp_port: u16,
        /// Port of the demo's HTTP front doors on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        http_port: u16,
    },
    /// Write the man pages (gdprd.1.gz and one per subcommand) and shell completions (bash, zsh, fish) for packaging.
    #[command(hide = true)]
    GenerateAssets {
        /// The folder to write them into.
        #[arg(long)]
        out: PathBuf,
    },
    /// For care engineers: the files received, their state, per-file counts and where the result is. Reads
    /// the ledger read-only; safe while the daemon runs.
    Status {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
        /// How far back: `7d`, `12h`, `30m` (default `7d`; with `--overdue`, all time).
        #[arg(long)]
        since: Option<String>,
        /// Only the requests open past their due day.
        #[arg(long)]
        overdue: bool,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a finished forget's (or pseudonymisation's) ERROR contacts again on the stores that failed (or on
    /// --store), journaled and exactly once like any forget; writes GDPR_Result/<stem>-execution-log-2.json (then
    /// -3, …) with every contact's answer as it stands now. While the daemon runs, the retry is recorded and the
    /// daemon runs it at its next rescan; otherwise this command runs it.
    Retry {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// Only the file of this account (when several accounts have a file of that name).
        #[arg(long)]
        account: Option<String>,
        /// Run it on this store only.
        #[arg(long)]
        store: Option<String>,
        /// The file: its ledger id (`id` in `gdprd status --json`) or its name.
        id: String,
    },
    /// Show what a request file would do, without doing it: per store and table the rows it would erase, delete,
    /// mask or export, the callbacks it would cancel and the recordings it would delete, and every contact's
    /// would-be response. Read-only (a read snapshot of each store, no lock kept, no ledger entry, nothing in
    /// GDPR_Result); safe while the daemon runs. No personal data is printed: contacts by position and type.
    Preview {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// The account whose stores are asked (default: the account whose GDPR_Submit holds FILE, else the
        /// config's only account).
        #[arg(long)]
        account: Option<String>,
        /// JSON instead of a report.
        #[arg(long)]
        json: bool,
        /// The request file (`forget-…json`, `export-…json`, `pseudonymise-…json`; another name is read by its
        /// requests' `type`).
        file: PathBuf,
    },
    /// Extend a request's deadline once, by at most two months (GDPR Art. 12(3)), with the reason told to the
    /// data subject; audited. Works while the daemon runs.
    Extend {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// The file's id (the ID column of `gdprd status`, or the HTTP job id).
        id: i64,
        /// Why: what the data subject is told. Kept in the ledger and the audit trail.
        #[arg(long)]
        reason: String,
        /// How much longer: `2 months` (the most), `1 month`, `30 days`.
        #[arg(long, default_value = "2 months")]
        by: gdprd::deadline::Period,
    },
    /// Ask whether suppression lists hold devices (in clear, or as the keyed hash a forget leaves). Exit status
    /// 0 when every device is suppressed, 1 when one is not.
    Suppressed {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// The account whose stores are asked.
        #[arg(long)]
        account: String,
        /// Devices: `phone:+1 781 555 1212`, `email:a@b.com`, `ipaddr:10.0.0.1`, or unprefixed.
        #[arg(required = true)]
        devices: Vec<String>,
    },
    /// Copy the state folder's SQLite ledger (and the claimed copies of files in work) into the PostgreSQL ledger
    /// of the config's `[cluster]`: the step from one node to a cluster. Stop the daemon first. Running it again
    /// is harmless; a target holding other rows is refused.
    MigrateLedger {
        /// The config file (its `state_dir` and its `[cluster]`).
        #[arg(long, short, default_value = "/etc/gdprd/gdprd.toml")]
        config: PathBuf,
    },
    /// Write a demo contact-centre database: a SQLite file, or the same rows loaded into PostgreSQL or MySQL
    /// (with the schemas in `fixtures/postgres/` and `fixtures/mysql/`).
    DemoDb {
        /// The SQLite database file to create (not with --postgres or --mysql).
        #[arg(required_unless_present_any = ["postgres", "mysql"])]
        path: Option<PathBuf>,
        /// Filler contacts.
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        /// Folder for the call recordings (default: `recordings` beside the database, or in the current folder).
        #[arg(long)]
        files_dir: Option<PathBuf>,
        /// Load into this PostgreSQL database (`postgres://user@host/db`) instead.
        #[arg(long, conflicts_with_all = ["path", "mysql"])]
        postgres: Option<String>,
        /// The PostgreSQL schema to create and fill (default `gdprd_demo`).
        #[arg(long, requires = "postgres", default_value = "gdprd_demo")]
        schema: String,
        /// Load into this MySQL/MariaDB database (`mysql://user@host/db`) instead.
        #[arg(long, conflicts_with_all = ["path", "postgres"])]
        mysql: Option<String>,
        /// Skip the indexes of `fixtures/postgres/indexes.sql` (to see `check-config` warn).
        #[arg(long)]
        no_indexes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gdprd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run { config: path, once } => {
            let config = Config::load(&path)?;
            refuse_demo_credentials(&config, &path)?;
            run(config, once)
        }
        Command::Validate {
            config,
            account,
            files,
        } => validate(config.as_deref(), account.as_deref(), &files),
        Command::CheckConfig { config, offline } => check_config(&config, offline),
        Command::GenerateAssets { out } => generate_assets(&out),
        Command::Status {
            config,
            account,
            since,
            overdue,
            json,
        } => status(&config, account.as_deref(), since.as_deref(), overdue, json),
        Command::Extend {
            config,
            id,
            reason,
            by,
        } => extend(&config, id, by, &reason),
        Command::Suppressed {
            config,
            account,
            devices,
        } => suppressed(&config, &account, &devices),
        Command::Retry {
            config,
            account,
            store,
            id,
        } => retry(&config, account.as_deref(), store.as_deref(), &id),
        Command::Preview {
            config,
            account,
            json,
            file,
        } => preview(&config, account.as_deref(), json, &file),
        Command::HostKey { config } => {
            let config = Config::load(&config)?;
            let key = sftp_server::load_or_create_host_key(&config.state_dir)?;
            println!("{}", sftp_server::fingerprint(&key));
            println!(
                "{}",
                key.public_key()
                    .to_openssh()
                    .context("cannot encode the public key")?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::MigrateLedger { config: path } => migrate_ledger(&path),
        Command::HttpToken => {
            let (token, hash) = gdprd::http::new_token();
            println!("token (give it to the client; gdprd keeps only its hash): {token}");
            println!("for [accounts.http]: token_hash = \"{hash}\"");
            Ok(ExitCode::SUCCESS)
        }
        Command::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the password")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                bail!("empty password");
            }
            println!("{}", sftp_server::auth::hash_password(password)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            dir,
            rows,
            no_start,
            sftp_port,
            http_port,
        } => demo(&dir, rows, no_start, sftp_port, http_port),
        Command::DemoDb {
            path,
            rows,
            files_dir,
            postgres,
            schema,
            mysql,
            no_indexes,
        } => {
            if postgres.is_some() || mysql.is_some() {
                let files = files_dir.unwrap_or_else(|| PathBuf::from("recordings"));
                return demo_db_server(postgres, &schema, mysql, no_indexes, rows, &files);
            }
            let path = path.context("name the database file to create")?;
            let files = files_dir.unwrap_or_else(|| path.with_file_name("recordings"));
            gdprd::demo::create_database(&path, rows, &files)?;
            println!(
                "wrote {} ({rows} filler contacts; recordings in {})",
                path.display(),
                files.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn migrate_ledger(path: &Path) -> Result<ExitCode> {
    let config = Config::load(path)?;
    let Some(cluster) = &config.cluster else {
        bail!(
            "{}: no [cluster] section: name the PostgreSQL ledger to migrate to (see docs/cluster.md)",
            path.display()
        );
    };
    // The daemon of this state folder must not write the ledger while it is copied.
    let _lock = gdprd::journal::StateLock::acquire(&config.state_dir)?;
    let done = gdprd::journal::migrate_ledger(&config.state_dir, cluster)?;
    let target = format!("schema {:?}", cluster.ledger_schema);
    if done.already {
        println!(
            "the ledger in {target} already holds the same {} files and {} audit rows: nothing to copy",
            done.files, done.audit
        );
    } else {
        println!(
            "copied {} files, {} audit rows and {} claimed copies into {target}",
            done.files, done.audit, done.copies
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        // A log stream that breaks (journald restarted, a pipe's reader gone) loses the lines, not the daemon:
        // by default tracing reports a failed write with `eprintln!`, which panics on the same closed stream.
        .log_internal_errors(false);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The exit status after a second signal, or a stop deadline that passed: a file in progress did not reach
/// a checkpoint, and the journal resumes it at the next start.
const INTERRUPTED: u8 = 130;

fn run(config: Config, once: bool) -> Result<ExitCode> {
    init_logging(&config);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let code = runtime.block_on(serve(config, once));
    // After a forced exit a worker may still be inside a store call: the runtime does not wait for it, and
    // the process ends with it (the journal resumes the file at the next start).
    runtime.shutdown_background();
    code
}

/// Runs the daemon, the only place that listens for signals: SIGHUP asks for a reload; the first SIGTERM or
/// Ctrl-C cancels the daemon's token and waits for it to stop; a second signal, or the stop deadline, returns
/// [`INTERRUPTED`] at once.
async fn serve(config: Config, once: bool) -> Result<ExitCode> {
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    // One reload waiting is enough: a SIGHUP while one waits asks for the same thing.
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let deadline = config.stop_deadline_seconds;
    let daemon = daemon::run(
        Arc::new(config),
        RunOptions { once },
        shutdown.clone(),
        reloads,
    );
    tokio::pin!(daemon);
    loop {
        tokio::select! {
            result = &mut daemon => {
                result?;
                return Ok(ExitCode::SUCCESS);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            Some(()) = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = reload.try_send(());
            }
        }
    }
    tracing::info!(
        deadline_seconds = deadline.as_secs(),
        "signal received; a second signal, or the stop deadline, exits at once"
    );
    shutdown.cancel();
    tokio::select! {
        result = &mut daemon => {
            result?;
            return Ok(ExitCode::SUCCESS);
        }
        _ = term.recv() => {}
        _ = int.recv() => {}
        () = tokio::time::sleep(deadline) => {
            tracing::warn!("stop deadline passed before the file in progress reached a checkpoint; exiting (the journal resumes it at the next start)");
            eprintln!("gdprd: stop deadline passed, exiting (the journal resumes at the next start)");
            return Ok(ExitCode::from(INTERRUPTED));
        }
    }
    eprintln!("gdprd: second signal, exiting at once (the journal resumes at the next start)");
    Ok(ExitCode::from(INTERRUPTED))
}

fn validate(config: Option<&Path>, account: Option<&str>, files: &[PathBuf]) -> Result<ExitCode> {
    let (limits, tz, horizon, rules) = match config {
        Some(path) => {
            let config = Config::load(path)?;
            let account = match account {
                Some(name) => Some(
                    config
                        .account(name)
                        .with_context(|| format!("no account {name:?} in the config"))?,
                ),
                None => config.accounts.first(),
            };
            let tz = account.map_or(chrono_tz::UTC, |a| a.timezone);
            (
                config.limits.request_limits(),
                tz,
                config.limits.max_future_days,
                account.map(|a| a.requests.clone()).unwrap_or_default(),
            )
        }
        None if account.is_some() => bail!("--account needs --config"),
        None => (
            Limits::default(),
            chrono_tz::UTC,
            DEFAULT_MAX_FUTURE_DAYS,
            RequestRules::default(),
        ),
    };
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let mut all_valid = true;
    // A progress bar on standard error, drawn only when it is a terminal: bytes read of all the files.
    let total: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len().min(limits.max_file_bytes))
        .sum();
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        bar.set_message(name.clone());
        let (verdict, details) = verdict(
            path,
            &name,
            (today, tz.name(), horizon),
            (&limits, &rules),
            &bar,
        );
        bar.suspend(|| {
            println!("{name}: {verdict}");
            for line in &details {
                println!("  {line}");
            }
        });
        all_valid &= verdict.starts_with("VALID") || verdict.starts_with("WAITING");
    }
    bar.finish_and_clear();
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verdict(
    path: &Path,
    name: &str,
    (today, tz, horizon): (chrono::NaiveDate, &str, u32),
    (limits, rules): (&Limits, &RequestRules),
    bar: &indicatif::ProgressBar,
) -> (String, Vec<String>) {
    let (kind, when) = match admit_name_within(name, today, tz, horizon) {
        Admission::InProgress => {
            return (
                "IGNORED: a hidden or temporary name is an upload in progress".into(),
                vec![],
            )
        }
        Admission::Reject(reason) => return (format!("REJECTED: {reason}"), vec![]),
        Admission::Waiting(date) => (FileNameKind::from(name), format!("waits until {date}")),
        Admission::Due(f) => (FileNameKind(f.kind), "due today".to_owned()),
    };
    let cap = limits.max_file_bytes.saturating_add(1);
    let bytes = match std::fs::File::open(path).and_then(|f| {
        let mut b = Vec::new();
        let mut reader = bar.wrap_read(std::io::Read::take(f, cap));
        std::io::Read::read_to_end(&mut reader, &mut b).map(|_| b)
    }) {
        Ok(b) => b,
        Err(e) => return (format!("UNREADABLE: {e}"), vec![]),
    };
    let mut file = match parse::parse(&bytes, kind.0, limits) {
        Ok(f) => f,
        Err(e) => return (format!("REFUSED: {e}"), vec![]),
    };
    rules.apply(&mut file);
    let mut details = Vec::new();
    let mut errors = 0;
    for (r, request) in file.requests.iter().enumerate() {
        if let Some(e) = request.refused {
            errors += request.contacts.len();
            details.push(format!(
                "request {} ({} contacts): {e}",
                r + 1,
                request.contacts.len()
            ));
            continue;
        }
        for (c, contact) in request.contacts.iter().enumerate() {
            if let Err(e) = contact {
                let key = file.raw_requests[r]["contacts"][c]
                    .as_object()
                    .and_then(|o| o.keys().next().cloned())
                    .unwrap_or_else(|| "?".into());
                errors += 1;
                details.push(format!("request {} contact {} ({key}): {e}", r + 1, c + 1));
            }
        }
    }
    let total = file.contact_count();
    let summary = format!(
        "{} requests, {total} contacts, {}, {when}",
        file.requests.len(),
        file.kind
    );
    if details.is_empty() {
        let prefix = if when == "due today" {
            "VALID"
        } else {
            "WAITING (valid)"
        };
        (format!("{prefix}: {summary}"), details)
    } else {
        (
            format!("INVALID: {errors} of {total} contacts would get an error ({summary})"),
            details,
        )
    }
}

/// The kind a well-formed name announces.
struct FileNameKind(gdprd::requests::Kind);

impl From<&str> for FileNameKind {
    fn from(name: &str) -> Self {
        use gdprd::requests::Kind;
        FileNameKind(if name.starts_with("export-") {
            Kind::Export
        } else if name.starts_with("pseudonymise-") {
            Kind::Pseudonymise
        } else {
            Kind::Forget
        })
    }
}

/// `gdprd demo-db --postgres URL` / `--mysql URL`: the demo rows in a database server.
fn demo_db_server(
    postgres: Option<String>,
    schema: &str,
    mysql: Option<String>,
    no_indexes: bool,
    rows: u64,
    files: &Path,
) -> Result<ExitCode> {
    let base = |url: String| gdprd::config::SqlConfig {
        url,
        password_file: None,
        password_env: None,
        schema: None,
        tls: gdprd::config::TlsMode::Prefer,
        ca_file: None,
        connect_timeout_seconds: std::time::Duration::from_secs(10),
        statement_timeout_seconds: std::time::Duration::from_secs(3600),
        phones: Default::default(),
        files_root: None,
        shared_shortcodes: Vec::new(),
        vacuum_after_forget: false,
        tables: Vec::new(),
    };
    let (config, ddl, where_) = match (postgres, mysql) {
        (Some(url), _) => {
            let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
            let mut ddl = format!(
                "DROP SCHEMA IF EXISTS {quoted} CASCADE; CREATE SCHEMA {quoted}; SET search_path TO {quoted};\n{}",
                include_str!("../fixtures/postgres/schema.sql")
            );
            if !no_indexes {
                ddl.push_str(include_str!("../fixtures/postgres/indexes.sql"));
            }
            (
                gdprd::config::StoreConfig::Postgres(base(url)),
                ddl,
                format!("schema {schema}"),
            )
        }
        (None, Some(url)) => {
            let mut ddl = gdprd::demo::TABLES
                .iter()
                .rev()
                .map(|t| format!("DROP TABLE IF EXISTS {t};"))
                .collect::<String>();
            ddl.push_str(include_str!("../fixtures/mysql/schema.sql"));
            (
                gdprd::config::StoreConfig::Mysql(base(url)),
                ddl,
                "the database".to_owned(),
            )
        }
        (None, None) => anyhow::bail!("name --postgres or --mysql"),
    };
    let mut tables = gdprd::demo::demo_rows(rows, files)?;
    if matches!(config, gdprd::config::StoreConfig::Postgres(_)) {
        // An `inet` column holds addresses, not text: the demo's messy " 11.11.11.12" arrives trimmed.
        for (_, columns, rows) in &mut tables {
            if let Some(ip) = columns.iter().position(|c| c == "client_ip") {
                for row in rows.iter_mut() {
                    if let Some(Some(v)) = row.get_mut(ip) {
                        *v = v.trim().to_owned();
                    }
                }
            }
        }
    }
    gdprd::stores::demo_load::load_demo(&config, &ddl, &tables)?;
    let total: usize = tables.iter().map(|t| t.2.len()).sum();
    println!(
        "loaded {total} rows ({rows} filler contacts) into {where_}; recordings in {}",
        files.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `gdprd generate-assets`: the man page, generated from this CLI, and shell completions.
fn generate_assets(out: &Path) -> Result<ExitCode> {
    use clap::CommandFactory;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let command = Cli::command();
    // Built first, so the main page's SEE ALSO names each subcommand's page (gdprd-run(1), …), all shipped.
    let mut built = command.clone().disable_help_subcommand(true);
    built.build();
    let pages = write_man_pages(&built, out)?;
    for (shell, name) in [
        (clap_complete::Shell::Bash, "gdprd.bash"),
        (clap_complete::Shell::Zsh, "_gdprd"),
        (clap_complete::Shell::Fish, "gdprd.fish"),
    ] {
        let mut file = std::fs::File::create(out.join(name))
            .with_context(|| format!("cannot write {name}"))?;
        clap_complete::generate(shell, &mut command.clone(), "gdprd", &mut file);
    }
    println!(
        "wrote {} man pages (gdprd.1.gz, gdprd-run.1.gz, …), gdprd.bash, _gdprd and gdprd.fish into {}",
        pages,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the gzipped man page of `command` and of each of its visible subcommands into `out`; returns how many.
fn write_man_pages(command: &clap::Command, out: &Path) -> Result<usize> {
    use std::io::Write;
    let mut written = 0;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += write_man_pages(sub, out)?;
    }
    let man = clap_mangen::Man::new(command.clone());
    let name = format!("{}.gz", man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)
        .with_context(|| format!("cannot render {name}"))?;
    let file =
        std::fs::File::create(out.join(&name)).with_context(|| format!("cannot write {name}"))?;
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    gz.write_all(&page)
        .and_then(|()| gz.finish().map(drop))
        .with_context(|| format!("cannot write {name}"))?;
    Ok(written + 1)
}

/// `gdprd status`.
fn status(
    config: &Path,
    account: Option<&str>,
    since: Option<&str>,
    overdue: bool,
    json: bool,
) -> Result<ExitCode> {
    let config = Config::load(config)?;
    let since = match (since, overdue) {
        (None, true) => None,
        (since, _) => Some(since.unwrap_or("7d")),
    };
    let from = since
        .map(|since| {
            let back =
                gdprd::status::parse_since(since).map_err(|e| anyhow::anyhow!("--since {e}"))?;
            Ok::<_, anyhow::Error>(
                (chrono::Utc::now() - back).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
        })
        .transpose()?;
    let query = gdprd::status::Query {
        account,
        since: from.as_deref(),
        overdue,
    };
    let files = gdprd::status::files(&config, &query)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&files)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:>6} {:<12} {:<34} {:<10} {:<11} {:>8} {:>7} {:>9} {:>6}  RESULT / DETAIL",
        "RECEIVED",
        "ID",
        "ACCOUNT",
        "FILE",
        "STATE",
        "DUE",
        "LEFT",
        "SUCCESS",
        "NOT FOUND",
        "ERROR"
    );
    for f in &files {
        let place = f
            .results
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let detail = match (&f.detail, place.is_empty()) {
            (Some(d), true) => d.clone(),
            (Some(d), false) => format!("{place} ({d})"),
            (None, _) => place,
        };
        // Days left count only while the request is open; a closed one met its deadline.
        let left = match (f.open, f.days_left) {
            (true, Some(d)) if d < 0 => format!("{}d over", -d),
            (true, Some(d)) => format!("{d}d"),
            _ => "-".to_owned(),
        };
        let extended = if f.extension.is_some() { "*" } else { "" };
        println!(
            "{:<24} {:>6} {:<12} {:<34} {:<10} {:<11} {:>8} {:>7} {:>9} {:>6}  {detail}",
            f.received_at.as_deref().unwrap_or("-"),
            f.id.map_or_else(|| "-".to_owned(), |id| id.to_string()),
            f.account,
            f.name,
            f.state,
            f.due
                .as_deref()
                .map_or_else(|| "-".to_owned(), |d| format!("{d}{extended}")),
            left,
            f.success,
            f.not_found,
            f.errors
        );
    }
    match (files.is_empty(), overdue, &from) {
        (true, true, _) => println!("no request is overdue"),
        (true, false, Some(from)) => println!("no file received since {from}"),
        (true, false, None) => println!("no file received"),
        (false, _, _) if files.iter().any(|f| f.extension.is_some()) => {
            println!("* extended once (gdprd status --json shows why)");
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `gdprd extend`.
fn extend(config: &Path, id: i64, by: gdprd::deadline::Period, reason: &str) -> Result<ExitCode> {
    let config = Config::load(config)?;
    let journal = gdprd::journal::Journal::open_config(&config)?;
    let done = gdprd::deadline::extend(&journal, &config, id, by, reason)?;
    println!(
        "file {id} ({}/{}): due {}, now due {} (extended by {by}); the reason is kept in the ledger and the audit trail",
        done.account, done.name, done.previous.on, done.due.on
    );
    if gdprd::clock::now() >= done.previous.at {
        eprintln!(
            "gdprd: note: its period had already run out at {}; Art. 12(3) asks that the data subject hear of an extension within the first period",
            done.previous.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The ledger id of the finished file `id` (a number, or a file name looked up in `account` or every account).
fn file_id(
    journal: &gdprd::journal::Journal,
    config: &Config,
    account: Option<&str>,
    id: &str,
) -> Result<i64> {
    if let Ok(n) = id.parse::<i64>() {
        return Ok(n);
    }
    let mut found = Vec::new();
    for a in &config.accounts {
        if account.is_some_and(|want| want != a.name) {
            continue;
        }
        if let Some(rec) = journal.lookup(&a.name, id)? {
            found.push(rec.id);
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no file {id:?} in the ledger"),
        _ => bail!("several accounts have a file {id:?}: say which with --account"),
    }
}

/// `gdprd retry`.
fn retry(path: &Path, account: Option<&str>, store: Option<&str>, id: &str) -> Result<ExitCode> {
    use gdprd::journal::{Journal, JournalError, StateLock};
    let config = Config::load(path)?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
    let lock = match StateLock::acquire(&config.state_dir) {
        Ok(lock) => Some(lock),
        Err(JournalError::Locked { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let config = Arc::new(config);
    let Some(_lock) = lock else {
        // The daemon runs: it takes the retry up at its next rescan.
        let journal = Journal::open_config(&config)?;
        let id = file_id(&journal, &config, account, id)?;
        let claim = record_retry(&journal, &config, id, store)?;
        println!(
            "{}: recorded; the running daemon runs it at its next rescan (intake.rescan_seconds)",
            claim.record().name
        );
        return Ok(ExitCode::SUCCESS);
    };
    let mut engine = gdprd::engine::Engine::new(Arc::clone(&config), CancellationToken::new())?;
    let journal = engine.journal().clone();
    let id = file_id(&journal, &config, account, id)?;
    let claim = record_retry(&journal, &config, id, store)?;
    let Some(owner) = config.account(&claim.record().account) else {
        bail!("account {} is not in the config", claim.record().account);
    };
    let outcome = engine.handle_claimed(owner, claim.id())?;
    let record = journal
        .record(claim.id())?
        .context("the retry is not in the ledger")?;
    println!("{}: {outcome:?}", record.name);
    Ok(ExitCode::SUCCESS)
}

/// Records the retry of file `id` in `journal`, on `store` or the stores that failed.
fn record_retry(
    journal: &gdprd::journal::Journal,
    config: &Config,
    id: i64,
    store: Option<&str>,
) -> Result<gdprd::journal::Claim> {
    let record = journal
        .record(id)?
        .with_context(|| format!("no file {id} in the ledger"))?;
    let Some(account) = config.account(&record.account) else {
        bail!(
            "file {id} is of account {}, which is not in the config",
            record.account
        );
    };
    Ok(journal.retry(id, store, &account.stores)?)
}

/// `gdprd preview`: what `file` would do in its account's stores, changing nothing.
fn preview(config: &Path, account: Option<&str>, json: bool, file: &Path) -> Result<ExitCode> {
    let config = Config::load(config)?;
    let account = match account {
        Some(name) => config
            .account(name)
            .with_context(|| format!("no account {name:?} in the config"))?,
        None => {
            let folder = file
                .canonicalize()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf));
            let holder = config
                .accounts
                .iter()
                .find(|a| folder.is_some() && a.submit_dir().canonicalize().ok() == folder);
            match (holder, config.accounts.as_slice()) {
                (Some(a), _) | (None, [a]) => a,
                _ => bail!("the config has several accounts: name one with --account"),
            }
        }
    };
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kind = gdprd::engine::preview::kind_of(&name, &bytes, &config.limits.request_limits())
        .context("the file's name does not say forget, export or pseudonymise, and its requests' type does not either")?;
    let report =
        gdprd::engine::preview::preview(&config, account, kind, &bytes, &CancellationToken::new());
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `gdprd suppressed`: exit 0 when every device is suppressed, 1 when one is not, 2 when the question could
/// not be answered.
fn suppressed(config: &Path, account: &str, devices: &[String]) -> Result<ExitCode> {
    let answers = (|| -> Result<Vec<bool>> {
        let config = Config::load(config)?;
        let parsed = devices
            .iter()
            .map(|d| gdprd::suppression::parse_device(d).map_err(|e| anyhow::anyhow!("{d:?}: {e}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(gdprd::suppression::suppressed(&config, account, &parsed)?)
    })();
    let answers = match answers {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gdprd: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    for (device, hit) in devices.iter().zip(&answers) {
        let verdict = if *hit { "suppressed" } else { "not suppressed" };
        println!("{verdict}\t{device}");
    }
    Ok(if answers.iter().all(|h| *h) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Refuses an account whose SFTP password or HTTP token is the demo's published one, unless the config lies in a
/// folder `gdprd demo` laid out (its marker file beside the config).
fn refuse_demo_credentials(config: &Config, path: &Path) -> Result<()> {
    use argon2::PasswordVerifier;
    use sha2::Digest;
    let dir = path.parent().unwrap_or(Path::new("."));
    if dir.join(gdprd::demo::MARKER).exists() {
        return Ok(());
    }
    let demo_token = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(gdprd::demo::DEMO_TOKEN.as_bytes()))
    );
    for account in &config.accounts {
        let name = &account.name;
        let hash = account
            .sftp
            .as_ref()
            .and_then(|s| s.password_hash.as_deref());
        if let Some(parsed) = hash.and_then(|h| argon2::PasswordHash::new(h).ok()) {
            if argon2::Argon2::default()
                .verify_password(gdprd::demo::DEMO_PASSWORD.as_bytes(), &parsed)
                .is_ok()
            {
                bail!("account {name:?}: password_hash is the hash of the demo's published password \"demo\": anyone could log in. Make a new one with `gdprd hash-password`, or remove password_hash to allow keys only");
            }
        }
        if account
            .http
            .as_ref()
            .is_some_and(|h| h.token_hash.eq_ignore_ascii_case(&demo_token))
        {
            bail!("account {name:?}: token_hash is the hash of the demo's published token \"demo-http-token\": anyone could call the front doors. Make a new token with `gdprd http-token`");
        }
    }
    Ok(())
}

fn check_config(path: &Path, offline: bool) -> Result<ExitCode> {
    let config = Config::load(path)?;
    refuse_demo_credentials(&config, path)?;
    let mut ok = true;
    if offline {
        println!("stores not opened (--offline)");
    }
    for (name, store_config) in config.stores.iter().filter(|_| !offline) {
        match gdprd::stores::open(name, store_config, &CancellationToken::new())
            .and_then(|mut s| s.check())
        {
            Ok(warnings) => {
                println!("store {name}: OK");
                for w in warnings {
                    println!("store {name}: WARNING: {w}");
                }
            }
            Err(e) => {
                ok = false;
                println!("store {name}: ERROR: {e}");
            }
        }
    }
    for a in &config.accounts {
        let exists = a.root.is_dir();
        println!(
            "account {}: root {}{}, time zone {}, stores {}",
            a.name,
            a.root.display(),
            if exists {
                ""
            } else {
                " (missing: created at start)"
            },
            a.timezone,
            a.stores.join(", ")
        );
    }
    println!("state folder: {}", config.state_dir.display());
    if ok {
        println!("config OK");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("config has errors");
        Ok(ExitCode::FAILURE)
    }
}

fn demo(dir: &Path, rows: u64, no_start: bool, sftp_port: u16, http_port: u16) -> Result<ExitCode> {
    let layout = gdprd::demo::lay_out(dir, rows, sftp_port, http_port)?;
    let samples = dir.join("samples");
    std::fs::create_dir_all(&samples)?;
    for (name, text) in [
        (
            "seed-forget.json",
            include_str!("../fixtures/requests/seed-forget.json"),
        ),
        (
            "seed-export.json",
            include_str!("../fixtures/requests/seed-export.json"),
        ),
    ] {
        std::fs::write(samples.join(name), text)?;
    }
    let today = chrono::Utc::now().format("%Y%m%d");
    println!("gdprd demo installation in {}", dir.display());
    println!("  config:    {}", layout.config.display());
    if layout.created_database {
        println!(
            "  database:  {} ({rows} filler contacts + the seed's sample records)",
            layout.database.display()
        );
    } else {
        println!(
            "  database:  {} (kept from before)",
            layout.database.display()
        );
    }
    println!("  submit to: {}", layout.submit.display());
    println!("  results:   {}", layout.result.display());
    println!("Try, from another terminal:");
    println!(
        "  cp {} {}/forget-{today}_120000.json",
        samples.join("seed-forget.json").display(),
        layout.submit.display()
    );
    println!(
        "  cat {}/forget-{today}_120000-execution-log.json",
        layout.result.display()
    );
    println!(
        "or over SFTP as user demo with the key {} (or, for trying only, the password demo):",
        layout.key.display()
    );
    println!(
        "  sftp -P {sftp_port} -i {} demo@127.0.0.1",
        layout.key.display()
    );
    println!(
        "  sftp> put {} GDPR_Submit/forget-{today}_120001.json",
        samples.join("seed-forget.json").display()
    );
    println!("  sftp> get GDPR_Result/forget-{today}_120001-execution-log.json");
    println!("or over HTTP (docs/http.md), with the demo's token:");
    println!(
        "  curl -i -H 'Authorization: Bearer demo-http-token' -H 'Content-Type: text/csv' --data-binary 'EMAIL,test@test.com' http://127.0.0.1:{http_port}/accounts/demo/gdpr_access"
    );
    if no_start {
        println!(
            "Start it with: gdprd run --config {}",
            layout.config.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::load(&layout.config)?;
    run(config, false)
}
