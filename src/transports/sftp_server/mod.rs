//! The `sftp-server` transport: gdprd itself is the SFTP server (russh + russh-sftp). An account logs in with
//! its key or password and sees its root as `/` with `GDPR_Submit` and `GDPR_Result`; a completed upload is
//! handed to the engine at once. New connections are rate-limited per source address and those not logged in
//! have their own small pool ([`gate`]); logged-in connections are capped, sessions per account, channels per
//! connection, open files per account and over the server ([`budget`]); a connection that has not logged in
//! within the handshake timeout is dropped; idle sessions are closed; SFTP packets, uploads and the files waiting
//! in `GDPR_Submit` are capped. Only curve25519 and post-quantum hybrid key exchanges are offered (no
//! finite-field Diffie-Hellman, whose cost to the server is a denial of service), encrypt-then-MAC MACs, and no
//! compression. The host key is made on first start in the state folder and reused.

pub mod auth;
pub mod budget;
pub mod config;
pub mod fs;
pub mod gate;
pub mod guard;
pub mod paths;
pub mod peer;
pub mod session;

pub use config::{SftpAccountConfig, SftpServerConfig};

use crate::backoff::AcceptBackoff;
use crate::config::{Config, Transport};
use crate::transports::JobSender;
use auth::{Credentials, Throttle};
use budget::HandleBudget;
use fs::FsLimits;
use gate::{Gate, GateLimits, Refusal, Ticket};
use peer::Peer;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey};
use session::{AccountEntry, Shared, SshSession};
use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Why the embedded server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    /// The host key could not be read or written.
    #[error("host key {}: {source}", path.display())]
    HostKey {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        source: KeyFileError,
    },
    /// An account's `authorized_keys` could not be read.
    #[error("account {account}: {source}")]
    Keys {
        /// The account.
        account: String,
        /// The line that is not a key.
        source: auth::KeyLineError,
    },
    /// An account's `authorized_keys_file` could not be read.
    #[error("account {account}: {}: {source}", path.display())]
    KeysFile {
        /// The account.
        account: String,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: Box<KeyFileError>,
    },
    /// The listening address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It could not be read or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// It does not hold a usable key.
    #[error(transparent)]
    Key(#[from] russh::keys::ssh_key::Error),
    /// A line of it is not a public key.
    #[error(transparent)]
    Line(#[from] auth::KeyLineError),
}

/// The host key file in the state folder.
pub fn host_key_path(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("ssh_host_ed25519_key")
}

/// Loads the host key, making it on first start (mode 0600).
///
/// # Errors
/// [`SftpError::HostKey`].
pub fn load_or_create_host_key(state_dir: &Path) -> Result<PrivateKey, SftpError> {
    let path = host_key_path(state_dir);
    let err = |source: KeyFileError| SftpError::HostKey {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(text).map_err(|e| err(e.into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(state_dir).map_err(|e| err(e.into()))?;
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&rand::random::<[u8; 32]>()));
            let text = key.to_openssh(LineEnding::LF).map_err(|e| err(e.into()))?;
            write_private(&path, text.as_bytes()).map_err(|e| err(e.into()))?;
            info!(fingerprint = %fingerprint(&key), "host key created");
            Ok(key)
        }
        Err(e) => Err(err(e.into())),
    }
}

/// Writes a new private file (mode 0600), synced; refuses to overwrite.
///
/// # Errors
/// The I/O error.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        crate::results::atomic::sync_dir(dir)?;
    }
    Ok(())
}

/// The key's SHA-256 fingerprint as OpenSSH prints it (`SHA256:…`).
pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

/// The bound server, ready to run.
pub struct SftpServer {
    listener: TcpListener,
    shared: Arc<Shared>,
    russh: Arc<russh::server::Config>,
    gate: Arc<Gate>,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    grace: Duration,
}

/// Swaps the accounts of a running server: logins from now on see the new ones; open sessions go on.
#[derive(Clone)]
pub struct Accounts(Arc<Shared>);

impl Accounts {
    /// Replaces the accounts with those of `config`.
    ///
    /// # Errors
    /// [`SftpError`] when a key file cannot be read; the old accounts stay.
    pub fn reload(&self, config: &Config) -> Result<(), SftpError> {
        let accounts = account_entries(config)?;
        if let Ok(mut current) = self.0.accounts.write() {
            *current = accounts;
        }
        Ok(())
    }
}

/// Whether any account of `config` is served by the embedded server.
pub fn wanted(config: &Config) -> bool {
    config
        .accounts
        .iter()
        .any(|a| a.transport == Transport::SftpServer)
}

fn account_entries(config: &Config) -> Result<HashMap<String, AccountEntry>, SftpError> {
    let mut out = HashMap::new();
    for account in &config.accounts {
        if account.transport != Transport::SftpServer {
            continue;
        }
        let mut credentials = Credentials::default();
        if let Some(sftp) = &account.sftp {
            credentials.keys = auth::parse_authorized_keys(&sftp.authorized_keys.join("\n"))
                .map_err(|source| SftpError::Keys {
                    account: account.name.clone(),
                    source,
                })?;
            if let Some(file) = &sftp.authorized_keys_file {
                let in_file = |source: KeyFileError| SftpError::KeysFile {
                    account: account.name.clone(),
                    path: file.clone(),
                    source: Box::new(source),
                };
                let text = std::fs::read_to_string(file).map_err(|e| in_file(e.into()))?;
                credentials
                    .keys
                    .extend(auth::parse_authorized_keys(&text).map_err(|e| in_file(e.into()))?);
            }
            credentials.password_hash = sftp.password_hash.clone();
        }
        out.insert(
            account.name.clone(),
            AccountEntry {
                name: account.name.clone(),
                root: account.root.clone(),
                credentials,
                retention: account.retention.duration(),
            },
        );
    }
    Ok(out)
}

/// What the server offers in the key exchange: curve25519 and the post-quantum hybrid (no finite-field or
/// group-exchange Diffie-Hellman: each costs the server far more than the client, the DHEat denial of service),
/// encrypt-then-MAC MACs (the encrypt-and-MAC ones only with `encrypt_and_mac`), and no compression.
pub fn preferred(encrypt_and_mac: bool) -> russh::Preferred {
    let base = russh::Preferred::DEFAULT;
    let kex = base
        .kex
        .iter()
        .filter(|k| !k.as_ref().starts_with("diffie-hellman"))
        .cloned()
        .collect::<Vec<_>>();
    let mut mac = vec![russh::mac::HMAC_SHA512_ETM, russh::mac::HMAC_SHA256_ETM];
    if encrypt_and_mac {
        mac.extend([russh::mac::HMAC_SHA512, russh::mac::HMAC_SHA256]);
    }
    russh::Preferred {
        kex: Cow::Owned(kex),
        mac: Cow::Owned(mac),
        compression: Cow::Borrowed(&[russh::compression::NONE]),
        ..base
    }
}

/// Removes stale temporary uploads from every account's `GDPR_Submit` (the server's own ones too when
/// `at_start`); logs what went.
fn sweep(shared: &Shared, at_start: bool) {
    let accounts: Vec<AccountEntry> = shared
        .accounts
        .read()
        .map(|a| a.values().cloned().collect())
        .unwrap_or_default();
    for account in accounts {
        let submit = account.root.join(paths::Folder::Submit.name());
        let removed = fs::sweep_temporary_uploads(&submit, at_start, account.retention);
        if removed > 0 {
            info!(account = %account.name, removed, "stale temporary uploads removed from GDPR_Submit");
        }
    }
}

/// Counts refused connections and logs them at most every ten seconds, so a flood does not flood the log.
#[derive(Default)]
struct Refusals {
    since_logged: u64,
    last: Option<Instant>,
}

impl Refusals {
    fn add(&mut self, refusal: Refusal) {
        self.since_logged += 1;
        if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            warn!(
                refused = self.since_logged,
                last_reason = refusal.reason(),
                "connections refused"
            );
            self.since_logged = 0;
            self.last = Some(Instant::now());
        }
    }
}

impl SftpServer {
    /// A handle that swaps the accounts while the server runs.
    pub fn accounts(&self) -> Accounts {
        Accounts(Arc::clone(&self.shared))
    }

    /// Loads the host key and accounts' credentials and binds the listening address.
    ///
    /// # Errors
    /// [`SftpError`].
    pub async fn bind(config: &Config, jobs: JobSender) -> Result<SftpServer, SftpError> {
        let s = &config.sftp_server;
        let key = load_or_create_host_key(&config.state_dir)?;
        let accounts = account_entries(config)?;
        let listener = TcpListener::bind(s.listen)
            .await
            .map_err(|source| SftpError::Bind {
                address: s.listen.to_string(),
                source,
            })?;
        info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), fingerprint = %fingerprint(&key), "sftp server listening");
        let russh = russh::server::Config {
            auth_rejection_time: Duration::from_millis(500),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![key],
            inactivity_timeout: Some(s.idle_timeout_seconds),
            max_auth_attempts: 6,
            preferred: preferred(s.encrypt_and_mac),
            ..Default::default()
        };
        let open_handles = budget::open_handle_share(
            budget::raise_file_limit(),
            s.reserved_file_handles,
            s.max_connections + s.max_unauthenticated_connections,
            s.max_open_handles,
        );
        let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let shared = Shared {
            accounts: std::sync::RwLock::new(accounts),
            throttle: Mutex::new(Throttle::new(s.auth_failures, s.auth_window_seconds)),
            sessions: Mutex::new(HashMap::new()),
            max_sessions: s.max_sessions_per_account,
            max_channels: s.max_channels_per_connection,
            handles: Arc::new(HandleBudget::new(open_handles, s.max_handles_per_account)),
            fs_limits: FsLimits {
                max_upload: s.max_upload_bytes.unwrap_or(config.limits.max_file_bytes),
                max_waiting_files: s.max_waiting_files,
                max_waiting_bytes: s.max_waiting_bytes,
            },
            max_packet: s.max_packet_bytes,
            jobs,
        };
        // No session runs yet: every temporary upload of the server's own is a leftover (a kill -9).
        sweep(&shared, true);
        Ok(SftpServer {
            listener,
            shared: Arc::new(shared),
            russh: Arc::new(russh),
            gate: Gate::new(GateLimits {
                max_pending: s.max_unauthenticated_connections,
                max_per_address: s.max_connections_per_address,
                max_logged_in: s.max_connections,
                per_second: nonzero(s.connections_per_second_per_address),
                burst: nonzero(s.connection_burst_per_address),
            }),
            handshake_timeout: s.handshake_timeout_seconds,
            idle_timeout: s.idle_timeout_seconds,
            grace: s.shutdown_grace_seconds,
        })
    }

    /// The bound address (useful when the config asks for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes; then stops accepting, gives open sessions the grace period to finish
    /// their uploads, and closes the rest.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut sessions = JoinSet::new();
        let mut refusals = Refusals::default();
        let mut backoff =
            AcceptBackoff::new("sftp", Duration::from_millis(50), Duration::from_secs(5));
        let mut sweeps = tokio::time::interval(Duration::from_secs(3600));
        sweeps.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                _ = sweeps.tick() => sweep(&self.shared, false),
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            let wait = backoff.failed(&e);
                            tokio::select! {
                                () = &mut shutdown => break,
                                () = tokio::time::sleep(wait) => {}
                            }
                            continue;
                        }
                    };
                    backoff.succeeded();
                    let ticket = match self.gate.admit(peer.ip()) {
                        Ok(ticket) => ticket,
                        Err(refusal) => {
                            debug!(peer = %Peer(peer.ip()), reason = refusal.reason(), "connection refused");
                            refusals.add(refusal);
                            continue;
                        }
                    };
                    let (shared, russh, timeout, gate, idle) = (Arc::clone(&self.shared), Arc::clone(&self.russh), self.handshake_timeout, Arc::clone(&self.gate), self.idle_timeout);
                    sessions.spawn(async move {
                        let _ = stream.set_nodelay(true);
                        let ticket = Arc::new(ticket);
                        // Over the rate, the connection waits for its turn (within the handshake timeout) before
                        // the server sends its banner or does any key exchange work.
                        let turn = tokio::select! {
                            r = tokio::time::timeout(timeout, gate.wait_turn(peer.ip())) => r.is_ok(),
                            () = ticket.evicted() => false,
                        };
                        if turn {
                            let timeouts = Timeouts { handshake: timeout, idle };
                            serve_connection(stream, peer.ip(), shared, russh, timeouts, ticket).await;
                        } else {
                            debug!(peer = %Peer(peer.ip()), "connection dropped while waiting for its turn under the rate limit");
                        }
                    });
                }
            }
        }
        info!(
            open = sessions.len(),
            "sftp server stopped accepting; open sessions get the grace period"
        );
        let drained = tokio::time::timeout(self.grace, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                open = sessions.len(),
                "closing sessions still open after the grace period"
            );
            sessions.abort_all();
        }
    }
}

/// How long a connection may take to log in, and stay logged in without SFTP activity.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    handshake: Duration,
    idle: Duration,
}

/// Completes when a logged-in connection has had no SFTP activity for `idle` (keepalives do not count).
async fn idle_watch(activity: &guard::Activity, authenticated: &AtomicBool, idle: Duration) {
    let step = (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        tokio::time::sleep(step).await;
        if authenticated.load(Ordering::SeqCst) && activity.idle_for() >= idle {
            return;
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: IpAddr,
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    timeouts: Timeouts,
    ticket: Arc<Ticket>,
) {
    let handshake_timeout = timeouts.handshake;
    let authenticated = Arc::new(AtomicBool::new(false));
    let activity = guard::Activity::new();
    let handler = SshSession::new(
        shared,
        Some(peer),
        Arc::clone(&authenticated),
        Arc::clone(&ticket),
        Arc::clone(&activity),
    );
    let started = tokio::select! {
        started = tokio::time::timeout(handshake_timeout, russh::server::run_stream(config, stream, handler)) => started,
        () = ticket.evicted() => {
            debug!(peer = %Peer(peer), "connection not logged in pushed out for a newer one");
            return;
        }
    };
    let running = match started {
        Ok(Ok(running)) => running,
        Ok(Err(e)) => {
            debug!(peer = %Peer(peer), error = %e, "connection failed during the handshake");
            return;
        }
        Err(_) => {
            debug!(peer = %Peer(peer), "handshake timeout; connection dropped");
            return;
        }
    };
    let handle = running.handle();
    // Until it logs in, the connection ends at the handshake timeout or when pushed out of the pool.
    let login_deadline = async {
        tokio::select! {
            () = tokio::time::sleep(handshake_timeout) => "no login within the handshake timeout",
            () = ticket.evicted() => "pushed out of the pool of connections not logged in",
        }
    };
    let unauthenticated_end = async {
        let why = login_deadline.await;
        if authenticated.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        why
    };
    tokio::select! {
        result = running => {
            if let Err(e) = result {
                debug!(peer = %Peer(peer), error = %e, "session ended with an error");
            }
        }
        why = unauthenticated_end => {
            debug!(peer = %Peer(peer), reason = why, "connection dropped");
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "login timeout".into(), "en".into())
                .await;
        }
        () = idle_watch(&activity, &authenticated, timeouts.idle) => {
            info!(peer = %Peer(peer), "session idle (keepalives aside) past the idle timeout; closed");
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "idle timeout".into(), "en".into())
                .await;
        }
    }
}
