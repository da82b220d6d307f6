//! The daemon wires the parts together and owns reload and shutdown: `[engine] workers` worker threads, each
//! with its own [`Engine`] (its own store connections), execute files; the `local` transport's watcher, a
//! periodic rescan, the embedded SFTP server, the remote SFTP links and the HTTP front doors (when configured)
//! feed them [`Job`]s through a bounded, de-duplicated [`queue`] that gives a worker a job only when no other
//! worker holds its account: files of one account run one at a time, in the order they came, and different
//! accounts run at once. Retention runs on the rescan's schedule.
//!
//! One [`CancellationToken`] stops everything, and a [`TaskTracker`] knows when everything has stopped (the shape
//! of mini-redis: one broadcast, one drain). `main` listens for signals: SIGHUP asks [`run`] to reload the config
//! file (a config that does not load is refused and the running one stays); SIGTERM or Ctrl-C cancels the token.
//! Then intake stops (the SFTP server first gives open sessions their grace period, the HTTP front doors finish
//! the requests in flight), each file in progress stops at its next journal checkpoint, and `run` returns once
//! every task and every worker have stopped. The remote SFTP links stop on a child token, which a reload also
//! cancels before it starts the new configuration's. systemd is told when gdprd is ready, reloading and
//! stopping, and gets watchdog keep-alives until the workers have stopped.

use crate::config::{AccountConfig, Config, Transport};
use crate::engine::{Engine, EngineError, Outcome};
use crate::retention;
use crate::transports::{local, queue, sftp_remote, sftp_server, Job, JobReceiver, JobSender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The engine could not open its state.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The state folder could not be locked: another daemon uses it.
    #[error(transparent)]
    State(#[from] crate::journal::JournalError),
    /// An account folder could not be created or read.
    #[error("account {account}: {source}")]
    Account {
        /// The account.
        account: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The metrics endpoint could not listen.
    #[error("cannot start the metrics endpoint: {0}")]
    Metrics(std::io::Error),
    /// The HTTP front doors could not start.
    #[error("cannot start the HTTP front doors: {0}")]
    Http(std::io::Error),
    /// A `GDPR_Submit` folder could not be watched.
    #[error("cannot watch GDPR_Submit: {0}")]
    Watch(#[from] notify::Error),
    /// The embedded SFTP server could not start.
    #[error(transparent)]
    Sftp(#[from] crate::transports::sftp_server::SftpError),
    /// A worker thread panicked.
    #[error("a worker thread stopped unexpectedly")]
    Worker,
}

/// How [`run`] runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Process what is in every `GDPR_Submit` now (and resume unfinished files), then return.
    pub once: bool,
}

/// Creates each account's `GDPR_Submit` and `GDPR_Result` if missing.
///
/// # Errors
/// [`DaemonError::Account`].
pub fn prepare_accounts(config: &Config) -> Result<(), DaemonError> {
    for a in &config.accounts {
        for dir in [a.submit_dir(), a.result_dir()] {
            std::fs::create_dir_all(&dir).map_err(|source| DaemonError::Account {
                account: a.name.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

fn handle(engine: &mut Engine, account: &AccountConfig, job: &Job) {
    let file = job.name.to_string_lossy();
    let handled = match job.claimed {
        Some(id) => engine.handle_claimed(account, id),
        None => engine.handle(account, &job.name),
    };
    match handled {
        Ok(outcome @ (Outcome::Ignored | Outcome::Waiting)) => {
            debug!(account = %account.name, file = ?file, ?outcome, "nothing to do now");
        }
        Ok(outcome) => debug!(account = %account.name, file = ?file, ?outcome, "handled"),
        Err(e) => {
            warn!(account = %account.name, file = ?file, error = %e, "file not handled; it is retried at the next rescan")
        }
    }
}

/// The configuration the daemon runs now: a reload replaces it, and each worker takes it up before its next job.
type Current = Arc<std::sync::RwLock<Arc<Config>>>;

/// Sets the deadline gauges from the ledger, at each scrape (see [`crate::deadline::backlog`]).
fn backlog(config: Current, journal: crate::journal::Journal) -> crate::metrics::Refresh {
    Arc::new(move || {
        let config = Arc::clone(
            &config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let accounts = config.accounts.iter().map(|a| a.name.as_str());
        match crate::deadline::backlog(&journal, accounts, crate::clock::now()) {
            Ok(b) => crate::metrics::get().backlog(&b),
            Err(e) => warn!(error = %e, "cannot read the open requests for the metrics"),
        }
    })
}

/// Queues every file the journal holds claimed and unfinished (those a stop or a crash interrupted, and HTTP
/// jobs), in the order they came, for the workers to resume.
fn queue_unfinished(engine: &Engine, jobs: &JobReceiver) {
    let accounts = &engine.config().accounts;
    match engine.unfinished() {
        Ok(list) => {
            for (account, name) in list {
                if accounts.iter().any(|a| a.name == account) {
                    jobs.requeue(Job {
                        account,
                        name: name.into(),
                        claimed: None,
                    });
                } else {
                    warn!(account = %account, file = ?name, "unfinished file of an account no longer configured");
                }
            }
        }
        Err(e) => error!(error = %e, "cannot list unfinished files"),
    }
}

/// A worker thread: takes jobs until `stop` is cancelled or, with every sender gone, the queue is empty. The
/// queue gives it a job only when no other worker holds the job's account, so files of one account run one at
/// a time. The engine sees the same `stop` and interrupts a file at its next checkpoint.
fn worker(
    mut engine: Engine,
    jobs: &JobReceiver,
    runtime: &tokio::runtime::Handle,
    stop: &CancellationToken,
    current: &Current,
) {
    while let Some(job) = jobs.next_blocking(runtime, stop) {
        crate::metrics::get()
            .queue
            .set(i64::try_from(jobs.len()).unwrap_or(i64::MAX));
        if let Some(config) = current
            .read()
            .ok()
            .map(|c| Arc::clone(&c))
            .filter(|c| !Arc::ptr_eq(c, engine.config()))
        {
            engine.reload(config);
        }
        // Jobs name their account: one queued before a reload finds it (or finds it gone) all the same.
        let config = Arc::clone(engine.config());
        if let Some(account) = config.account(&job.account) {
            handle(&mut engine, account, &job);
        }
        // A name the full queue refused is in GDPR_Submit, where the rescan finds it, or claimed in the
        // journal (an HTTP job), which is listed again here once the queue has room.
        if jobs.is_empty() && jobs.take_overflowed() {
            queue_unfinished(&engine, jobs);
        }
        drop(job);
    }
}

/// Starts `[engine] workers` worker threads, each with its own engine (its own store connections): the first
/// checks the stores; what the journal holds unfinished is queued ahead of everything else.
fn start_workers(
    engine: Engine,
    jobs: &JobReceiver,
    stop: &CancellationToken,
    current: &Current,
) -> Result<Vec<std::thread::JoinHandle<()>>, DaemonError> {
    queue_unfinished(&engine, jobs);
    let count = engine.config().engine.workers.get();
    let mut engines = Vec::with_capacity(count);
    for _ in 1..count {
        engines.push(engine.sibling());
    }
    engines.insert(0, engine);
    let mut threads = Vec::with_capacity(count);
    for (i, mut engine) in engines.into_iter().enumerate() {
        let (jobs, stop, current, runtime) = (
            jobs.clone(),
            stop.clone(),
            Arc::clone(current),
            tokio::runtime::Handle::current(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("gdprd-worker-{i}"))
            .spawn(move || {
                if i == 0 {
                    engine.check_stores();
                }
                worker(engine, &jobs, &runtime, &stop, &current);
            })
            .map_err(|_| DaemonError::Worker)?;
        threads.push(thread);
    }
    info!(workers = count, "workers started");
    Ok(threads)
}

/// The remote SFTP links of one configuration: a reload stops them (their own child of the shutdown token)
/// and starts the new configuration's.
struct Remotes {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Remotes {
    /// Starts the remote SFTP links of `config`, stopped by `shutdown` or by [`Remotes::stop`].
    fn start(
        config: &Arc<Config>,
        tx: &JobSender,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Remotes {
        let stop = shutdown.child_token();
        let tasks = config
            .accounts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.transport == Transport::SftpRemote)
            .map(|(i, _)| {
                tracker.spawn(sftp_remote::run(
                    Arc::clone(config),
                    i,
                    tx.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Remotes { stop, tasks }
    }

    /// Stops the links and waits until each has saved its state.
    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The folders the `local` watcher watches.
fn folders(config: &Config) -> Vec<(String, std::path::PathBuf)> {
    config
        .accounts
        .iter()
        .map(|a| (a.name.clone(), a.submit_dir()))
        .collect()
}

fn rescan(config: &Config, settle: Duration, jobs: &JobSender) {
    for account in &config.accounts {
        match local::scan(&account.submit_dir(), settle) {
            Ok(names) => {
                for name in names {
                    let _ = jobs.send(Job {
                        account: account.name.clone(),
                        name,
                        claimed: None,
                    });
                }
            }
            Err(e) => warn!(account = %account.name, error = %e, "cannot scan GDPR_Submit"),
        }
    }
}

/// Queues the files of a cluster that no node works any more (their holder died or paused past its lease), HTTP
/// jobs included, which no rescan of `GDPR_Submit` finds: the worker's claim takes them over. None without
/// `[cluster]`.
fn queue_orphans(config: &Config, journal: &crate::journal::Journal, jobs: &JobSender) {
    if config.cluster.is_none() {
        return;
    }
    match journal.orphans() {
        Ok(list) => {
            for (account, name) in list {
                if config.accounts.iter().any(|a| a.name == account) {
                    let _ = jobs.send(Job {
                        account,
                        name: name.into(),
                        claimed: None,
                    });
                }
            }
        }
        Err(e) => warn!(error = %e, "cannot list the cluster's orphaned files"),
    }
}

/// Queues the retries `gdprd retry` recorded while the daemon runs (claimed files named `…#retry-N`): the
/// rescan's schedule takes them up. A retry already queued or running is not run twice (the queue holds a name
/// once, one worker holds its account, and a finished retry is not claimed any more).
fn queue_retries(config: &Config, journal: &crate::journal::Journal, jobs: &JobSender) {
    match journal.unfinished() {
        Ok(list) => {
            for (account, name) in list {
                if name.contains(crate::journal::RETRY_MARK) && config.account(&account).is_some() {
                    let _ = jobs.send(Job {
                        account,
                        name: name.into(),
                        claimed: None,
                    });
                }
            }
        }
        Err(e) => warn!(error = %e, "cannot list the retries to run"),
    }
}

/// Reads the config file again for a reload. A new config that does not load, or whose accounts cannot be
/// prepared, is refused with a log line and the running one stays. Returns the config to switch to.
fn reload(running: &Config, sftp: Option<&sftp_server::Accounts>) -> Option<Arc<Config>> {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
    let refuse = |why: String| {
        warn!(reason = %why, "reload refused: the running configuration stays");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        None
    };
    let new = match Config::load(&running.path) {
        Ok(c) => c,
        Err(e) => return refuse(e.to_string()),
    };
    if let Err(e) = prepare_accounts(&new) {
        return refuse(e.to_string());
    }
    if let Some(accounts) = sftp {
        if let Err(e) = accounts.reload(&new) {
            return refuse(e.to_string());
        }
    }
    let restart_only = [
        ("state_dir", new.state_dir != running.state_dir),
        (
            "sftp_server",
            new.sftp_server != running.sftp_server
                || sftp_server::wanted(&new) != sftp_server::wanted(running),
        ),
        ("metrics", new.metrics.listen != running.metrics.listen),
        (
            "http",
            // What the listener took at start; the other limits reload.
            new.http.listen != running.http.listen
                || new.http.header_timeout_seconds != running.http.header_timeout_seconds
                || new.http.max_connections != running.http.max_connections
                || new.http.max_connections_per_address != running.http.max_connections_per_address
                || new.http.trusted_proxies != running.http.trusted_proxies,
        ),
        ("intake", new.intake != running.intake),
        ("log", new.log != running.log),
        // `retry_window` is read per file, so it reloads; the workers were started with the daemon.
        (
            "engine.workers",
            new.engine.workers != running.engine.workers,
        ),
        ("cluster", new.cluster != running.cluster),
    ];
    for (section, changed) in restart_only {
        if changed {
            warn!(
                section,
                "reload: this part of the configuration takes effect at the next restart"
            );
        }
    }
    Some(Arc::new(new))
}

/// The retention sweep's singleton lease (`[cluster]`): two sweeps' worth, so the node that sweeps keeps it
/// while it lives, and another node takes it within two hours of its death.
const SWEEP_LEASE: Duration = Duration::from_secs(2 * 3600);

/// Rescans every `GDPR_Submit` each `every` (the watcher's safety net) and sweeps retention hourly, until
/// `stop` is cancelled; a rescan or sweep under way finishes first. In a cluster, one node at a time sweeps (the
/// `retention-sweep` singleton of the journal).
async fn intake(
    current: Arc<std::sync::RwLock<Arc<Config>>>,
    tx: JobSender,
    journal: crate::journal::Journal,
    settle: Duration,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let Ok(config) = current.read().map(|c| Arc::clone(&c)) else {
            continue;
        };
        let (tx, journal) = (tx.clone(), journal.clone());
        let sweep = last_sweep.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600));
        if sweep {
            last_sweep = Some(Instant::now());
        }
        let _ = tokio::task::spawn_blocking(move || {
            rescan(&config, settle, &tx);
            queue_orphans(&config, &journal, &tx);
            queue_retries(&config, &journal, &tx);
            if sweep && journal.hold_singleton("retention-sweep", SWEEP_LEASE) {
                for account in &config.accounts {
                    if let Err(e) = retention::sweep(account, crate::clock::system_now()) {
                        warn!(account = %account.name, error = %e, "retention sweep failed");
                    }
                }
            }
        })
        .await;
    }
}

/// systemd's watchdog keep-alives at half the interval it asks for, from the runtime that runs intake; never
/// completes. Without `WATCHDOG_USEC` it only waits.
async fn keep_alive() {
    let Some(every) = sd_notify::watchdog_enabled() else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(every / 2);
    loop {
        tick.tick().await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
    }
}

/// Runs the daemon until `shutdown` is cancelled (or, with [`RunOptions::once`], until the files present are
/// done). Every task it starts is tracked; it returns once they and the workers have stopped.
///
/// # Errors
/// [`DaemonError`] when it cannot start; once started, a failing file is logged, never fatal.
pub async fn run(
    config: Arc<Config>,
    options: RunOptions,
    shutdown: CancellationToken,
    mut reloads: Receiver<()>,
) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&config.state_dir).map_err(|source| EngineError::Io {
        context: format!("cannot create {}", config.state_dir.display()),
        source,
    })?;
    // Held until `run` returns: a second daemon on this state folder refuses to start.
    let _lock = crate::journal::StateLock::acquire(&config.state_dir)?;
    prepare_accounts(&config)?;
    let engine = Engine::new(Arc::clone(&config), shutdown.clone())?;
    let journal = engine.journal().clone();
    let (tx, rx) = queue::queue(queue::CAPACITY);
    let current: Current = Arc::new(std::sync::RwLock::new(Arc::clone(&config)));
    let workers = start_workers(engine, &rx, &shutdown, &current)?;
    drop(rx);
    let join = || async move {
        tokio::task::spawn_blocking(move || {
            // Every worker is joined, even after one that panicked.
            let mut panicked = false;
            for w in workers {
                panicked |= w.join().is_err();
            }
            if panicked {
                Err(DaemonError::Worker)
            } else {
                Ok(())
            }
        })
        .await
        .map_err(|_| DaemonError::Worker)?
    };
    if options.once {
        if config
            .accounts
            .iter()
            .any(|a| a.transport == Transport::SftpRemote)
        {
            info!("--once works the local staging folders; remote SFTP accounts are polled by the running daemon");
        }
        rescan(&config, Duration::ZERO, &tx);
        drop(tx);
        return join().await;
    }
    let tracker = TaskTracker::new();
    let mut watcher = local::watch(folders(&config), tx.clone())?;
    let sftp_accounts = if sftp_server::wanted(&config) {
        let server = sftp_server::SftpServer::bind(&config, tx.clone()).await?;
        let accounts = server.accounts();
        tracker.spawn(server.run(shutdown.clone().cancelled_owned()));
        Some(accounts)
    } else {
        None
    };
    let mut remotes = Remotes::start(&config, &tx, &shutdown, &tracker);
    if config.http.listen.is_some() {
        let state = crate::http::HttpState::new(Arc::clone(&current), journal.clone(), tx.clone());
        let listener = crate::http::bind(&config)
            .await
            .map_err(DaemonError::Http)?;
        if !config.accounts.iter().any(|a| a.http.is_some()) {
            warn!("[http] listens but no account has [accounts.http]: every request is refused");
        }
        tracker.spawn(crate::http::serve(
            listener,
            Arc::new(state),
            shutdown.clone(),
        ));
    }
    if let Some(addr) = config.metrics.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(DaemonError::Metrics)?;
        tracker.spawn(crate::metrics::serve(
            listener,
            backlog(Arc::clone(&current), journal.clone()),
            shutdown.clone(),
        ));
    }
    let settle = config.intake.settle_seconds;
    let every = config.intake.rescan_seconds;
    tracker.spawn(intake(
        Arc::clone(&current),
        tx.clone(),
        journal,
        settle,
        every,
        shutdown.clone(),
    ));
    info!(accounts = config.accounts.len(), state = %config.state_dir.display(), "gdprd ready");
    // systemd (Type=notify): ready only now that every listener and watcher is up; keep-alives from now until
    // the workers have stopped. Without NOTIFY_SOCKET these do nothing.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let serve = async {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(()) = reloads.recv() => {
                    let Ok(running) = current.read().map(|c| Arc::clone(&c)) else {
                        continue;
                    };
                    let Some(new) = reload(&running, sftp_accounts.as_ref()) else {
                        continue;
                    };
                    match local::watch(folders(&new), tx.clone()) {
                        Ok(w) => watcher = w,
                        Err(e) => warn!(error = %e, "reload: cannot watch the new GDPR_Submit folders; the rescan still picks files up"),
                    }
                    remotes.stop().await;
                    remotes = Remotes::start(&new, &tx, &shutdown, &tracker);
                    if let Ok(mut c) = current.write() {
                        *c = Arc::clone(&new);
                    }
                    rescan(&new, settle, &tx);
                    info!(accounts = new.accounts.len(), "configuration reloaded");
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
            }
        }
        info!("shutting down: intake stopped, the files in progress stop at their next checkpoint");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        // The SFTP server gives open sessions their grace period, the HTTP front doors their requests in flight,
        // each remote link saves its state; each worker stops at its next checkpoint.
        tracker.close();
        tracker.wait().await;
        drop(watcher);
        drop(tx);
        join().await
    };
    let result = tokio::select! {
        result = serve => result,
        () = keep_alive() => Ok(()),
    };
    info!("stopped");
    result
}
