//! The `sftp-server` transport: gdprd itself is the SFTP server (russh + russh-sftp). An account logs in with
//! its key or password and sees its root as `/` with `GDPR_Submit` and `GDPR_Result`; a completed upload is
//! handed to the engine at once. Connections are capped in total and per source address, sessions per account;
//! a connection that has not logged in within the handshake timeout is dropped; idle sessions are closed; SFTP
//! packets and uploads are size-capped. The host key is made on first start in the state folder and reused.

pub mod auth;
pub mod fs;
pub mod guard;
pub mod paths;
pub mod session;

use crate::config::{Config, Transport};
use crate::transports::Job;
use auth::{Credentials, Throttle};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey};
use session::{AccountEntry, Shared, SshSession};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Why the embedded server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    /// The host key could not be read or written.
    #[error("host key {path}: {message}")]
    HostKey {
        /// The key file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// An account's authorised keys could not be read.
    #[error("account {account}: {message}")]
    Keys {
        /// The account.
        account: String,
        /// What went wrong.
        message: String,
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
    let err = |message: String| SftpError::HostKey {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(text).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(state_dir).map_err(|e| err(e.to_string()))?;
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&rand::random::<[u8; 32]>()));
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| err(e.to_string()))?;
            write_private(&path, text.as_bytes()).map_err(|e| err(e.to_string()))?;
            info!(fingerprint = %fingerprint(&key), "host key created");
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
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
    max_connections: usize,
    max_per_address: usize,
    handshake_timeout: Duration,
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
            let err = |message: String| SftpError::Keys {
                account: account.name.clone(),
                message,
            };
            credentials.keys =
                auth::parse_authorized_keys(&sftp.authorized_keys.join("\n")).map_err(err)?;
            if let Some(file) = &sftp.authorized_keys_file {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| err(format!("{}: {e}", file.display())))?;
                credentials.keys.extend(
                    auth::parse_authorized_keys(&text)
                        .map_err(|e| err(format!("{}: {e}", file.display())))?,
                );
            }
            credentials.password_hash = sftp.password_hash.clone();
        }
        out.insert(
            account.name.clone(),
            AccountEntry {
                name: account.name.clone(),
                root: account.root.clone(),
                credentials,
            },
        );
    }
    Ok(out)
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
    pub async fn bind(
        config: &Config,
        jobs: UnboundedSender<Job>,
    ) -> Result<SftpServer, SftpError> {
        let s = &config.sftp_server;
        let key = load_or_create_host_key(&config.state_dir)?;
        let accounts = account_entries(config)?;
        let listener = TcpListener::bind(&s.listen)
            .await
            .map_err(|source| SftpError::Bind {
                address: s.listen.clone(),
                source,
            })?;
        info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), fingerprint = %fingerprint(&key), "sftp server listening");
        let russh = russh::server::Config {
            auth_rejection_time: Duration::from_millis(500),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![key],
            inactivity_timeout: Some(Duration::from_secs(s.idle_timeout_seconds)),
            max_auth_attempts: 6,
            ..Default::default()
        };
        Ok(SftpServer {
            listener,
            shared: Arc::new(Shared {
                accounts: std::sync::RwLock::new(accounts),
                throttle: Mutex::new(Throttle::new(
                    s.auth_failures,
                    Duration::from_secs(s.auth_window_seconds),
                )),
                sessions: Mutex::new(HashMap::new()),
                max_sessions: s.max_sessions_per_account,
                max_upload: s.max_upload_bytes.unwrap_or(config.limits.max_file_bytes),
                max_packet: s.max_packet_bytes,
                jobs,
            }),
            russh: Arc::new(russh),
            max_connections: s.max_connections,
            max_per_address: s.max_connections_per_address,
            handshake_timeout: Duration::from_secs(s.handshake_timeout_seconds),
            grace: Duration::from_secs(s.shutdown_grace_seconds),
        })
    }

    /// The bound address (useful when the config asks for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes; then stops accepting, gives open sessions the grace period to finish
    /// their uploads, and closes the rest.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let connections = Arc::new(Semaphore::new(self.max_connections));
        let per_address: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                        warn!(peer = %peer.ip(), "connection limit reached; connection dropped");
                        continue;
                    };
                    let Some(slot) = AddressSlot::take(&per_address, peer.ip(), self.max_per_address) else {
                        warn!(peer = %peer.ip(), "per-address connection limit reached; connection dropped");
                        continue;
                    };
                    let (shared, russh, timeout) = (Arc::clone(&self.shared), Arc::clone(&self.russh), self.handshake_timeout);
                    sessions.spawn(async move {
                        let _ = stream.set_nodelay(true);
                        serve_connection(stream, peer.ip(), shared, russh, timeout).await;
                        drop((permit, slot));
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

/// One connection's place in the per-address count, given back when dropped.
struct AddressSlot {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl AddressSlot {
    fn take(
        map: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        max: usize,
    ) -> Option<AddressSlot> {
        let mut m = map.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            map: Arc::clone(map),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: IpAddr,
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    handshake_timeout: Duration,
) {
    let authenticated = Arc::new(AtomicBool::new(false));
    let handler = SshSession::new(shared, Some(peer), Arc::clone(&authenticated));
    let running = match tokio::time::timeout(
        handshake_timeout,
        russh::server::run_stream(config, stream, handler),
    )
    .await
    {
        Ok(Ok(running)) => running,
        Ok(Err(e)) => {
            debug!(peer = %peer, error = %e, "connection failed during the handshake");
            return;
        }
        Err(_) => {
            warn!(peer = %peer, "handshake timeout; connection dropped");
            return;
        }
    };
    let handle = running.handle();
    let login_deadline = async {
        tokio::time::sleep(handshake_timeout).await;
        if authenticated.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = running => {
            if let Err(e) = result {
                debug!(peer = %peer, error = %e, "session ended with an error");
            }
        }
        () = login_deadline => {
            warn!(peer = %peer, "no login within the handshake timeout; connection dropped");
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "login timeout".into(), "en".into())
                .await;
        }
    }
}
