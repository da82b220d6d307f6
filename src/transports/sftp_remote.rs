//! The `sftp-remote` transport: the account's folders live on another SFTP server (OpenSSH, a managed
//! file-transfer appliance, a cloud gateway), and gdprd is the client (russh + russh-sftp). The account's local
//! `root` is a staging folder: files pass through it and the engine works on it exactly as for `local`.
//!
//! One task per account keeps one SSH connection and, over it:
//! - lists the remote `GDPR_Submit` every `poll_seconds` and takes a file once its size and time are the same in
//!   two listings (a new file is listed again after the settle time, `intake.settle_seconds`, rather than a
//!   whole poll later): downloaded beside the local `GDPR_Submit` under a hidden name, its size checked, synced
//!   and renamed in, then handed to the engine;
//! - every quarter second, uploads new local results into the remote `GDPR_Result` under a hidden name and
//!   renames them into place (the archive before the execution log), and, once every result of a submission is
//!   there, removes the submission from the remote `GDPR_Submit`;
//! - removes remote results whose local copy retention has deleted.
//!
//! What was downloaded and uploaded is recorded in `STATE/remote/ACCOUNT.json` before each step takes effect,
//! so that after a dropped connection, a server restart or gdprd killed at any point, each file is executed
//! once and has one result: a name recorded as downloaded is never fetched again. A lost connection is retried
//! with capped exponential backoff and jitter; each account has its own task, so one server's outage never
//! blocks another account.

use super::{Job, JobSender};
use crate::backoff::{self, Backoff};
use crate::config::{de, AccountConfig, Config};
use crate::credentials::CredentialError;
use crate::requests::name::{is_in_progress, stem};
use crate::results::{atomic, log as names};
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::SftpSession;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// `[accounts.remote]`: the SFTP server an `sftp-remote` account's folders live on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Host name or address.
    pub host: String,
    /// Port (default 22).
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Login name.
    pub user: String,
    /// Private key file (OpenSSH format, unencrypted).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// File holding the password (its first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The folder on the server holding `GDPR_Submit` and `GDPR_Result` (default: the login folder).
    #[serde(default = "default_remote_path")]
    pub path: String,
    /// An OpenSSH `known_hosts` file naming the server's key.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// The server key's SHA-256 fingerprint, as `ssh-keygen -lf` prints it (`SHA256:…`).
    #[serde(default)]
    pub host_key_fingerprint: Option<String>,
    /// The time between two listings of `GDPR_Submit` (`poll_seconds`, default 30). A file is taken once its
    /// size and time are the same in two listings.
    #[serde(default = "default_poll", deserialize_with = "de::seconds")]
    pub poll_seconds: Duration,
    /// How long to wait for the connection and login (`timeout_seconds`, default 20).
    #[serde(default = "default_remote_timeout", deserialize_with = "de::seconds")]
    pub timeout_seconds: Duration,
}

fn default_ssh_port() -> u16 {
    22
}

fn default_remote_path() -> String {
    ".".into()
}

fn default_poll() -> Duration {
    Duration::from_secs(30)
}

fn default_remote_timeout() -> Duration {
    Duration::from_secs(20)
}

impl RemoteConfig {
    /// Makes the key, password and `known_hosts` files absolute with `resolve`.
    pub(crate) fn resolve_paths(&mut self, resolve: impl Fn(&Path) -> PathBuf) {
        self.key_file = self.key_file.as_deref().map(&resolve);
        self.password_file = self.password_file.as_deref().map(&resolve);
        self.known_hosts = self.known_hosts.as_deref().map(&resolve);
    }

    /// Checks that gdprd can log in to the account `account`'s server and knows the server's key.
    ///
    /// # Errors
    /// [`RemoteConfigError`] naming the account.
    pub(crate) fn validate(&self, account: &str) -> Result<(), RemoteConfigError> {
        use RemoteConfigError as E;
        let r = self;
        let account = account.to_owned();
        if r.key_file.is_none() && r.password_file.is_none() && r.password_env.is_none() {
            return Err(E::NoCredential { account });
        }
        if r.known_hosts.is_none() && r.host_key_fingerprint.is_none() {
            return Err(E::UnknownHost { account });
        }
        if let Some(fp) = &r.host_key_fingerprint {
            if !fp.starts_with("SHA256:") {
                return Err(E::Fingerprint {
                    account,
                    fingerprint: fp.clone(),
                });
            }
        }
        if r.poll_seconds.is_zero() || r.timeout_seconds.is_zero() {
            return Err(E::ZeroDuration { account });
        }
        if r.host.is_empty() || r.user.is_empty() {
            return Err(E::NoHostOrUser { account });
        }
        Ok(())
    }
}

/// What is wrong with an account's `[accounts.remote]`, found at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteConfigError {
    /// No key and no password.
    #[error(
        "account {account:?}: [accounts.remote] needs key_file, password_file or password_env"
    )]
    NoCredential {
        /// The account.
        account: String,
    },
    /// Neither `known_hosts` nor `host_key_fingerprint`.
    #[error("account {account:?}: [accounts.remote] needs known_hosts or host_key_fingerprint: gdprd never logs in to a server it cannot recognise")]
    UnknownHost {
        /// The account.
        account: String,
    },
    /// A fingerprint not written `SHA256:…`.
    #[error("account {account:?}: host_key_fingerprint is SHA256:… as ssh-keygen -lf prints it")]
    Fingerprint {
        /// The account.
        account: String,
        /// The value as written.
        fingerprint: String,
    },
    /// `poll_seconds` or `timeout_seconds` is zero.
    #[error("account {account:?}: poll_seconds and timeout_seconds must be positive")]
    ZeroDuration {
        /// The account.
        account: String,
    },
    /// An empty `host` or `user`.
    #[error("account {account:?}: host and user must not be empty")]
    NoHostOrUser {
        /// The account.
        account: String,
    },
}

/// How often local results are looked for between two listings.
const RESULT_TICK: Duration = Duration::from_millis(250);
/// The first wait before connecting again.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two connection attempts (before jitter).
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Where a downloaded name stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Fetch {
    /// Being downloaded: it is in the local `GDPR_Submit` only if the rename happened.
    Downloading,
    /// In the local `GDPR_Submit` (or already executed).
    Downloaded,
}

/// What has crossed the connection, persisted in the state folder.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// Remote submissions taken, by name.
    downloaded: BTreeMap<String, Fetch>,
    /// Results uploaded, by name, with their size.
    uploaded: BTreeMap<String, u64>,
    /// The size and modification time each taken submission had on the server: a file found there under the
    /// same name but with another size or time was put there after it was taken, and is not removed with it.
    #[serde(default)]
    taken: BTreeMap<String, (u64, u32)>,
}

/// Why an account's link to its server broke or could not be made; the account logs it and reconnects.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The server did not complete the SSH handshake within `timeout_seconds`.
    #[error("timed out connecting")]
    Timeout,
    /// The server's host key is neither in `known_hosts` nor the pinned fingerprint.
    #[error("the server's host key {fingerprint} is not the one configured (known_hosts or host_key_fingerprint): refusing to log in; if the key was changed on purpose, pin the new fingerprint")]
    HostKey {
        /// The SHA-256 fingerprint the server showed.
        fingerprint: String,
    },
    /// The SSH connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(#[source] russh::Error),
    /// The SSH session failed while logging in.
    #[error("{0}")]
    Ssh(#[from] russh::Error),
    /// The `key_file` could not be read.
    #[error("cannot read key_file {}: {source}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: russh::keys::Error,
    },
    /// The password could not be read.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The server refused the login.
    #[error("the server refused the login of {user:?}")]
    LoginRefused {
        /// The user name.
        user: String,
    },
    /// The server would not open a session channel.
    #[error("cannot open a channel: {0}")]
    Channel(#[source] russh::Error),
    /// The server refused the `sftp` subsystem.
    #[error("the server has no sftp subsystem: {0}")]
    Subsystem(#[source] russh::Error),
    /// The SFTP session could not start.
    #[error("cannot start SFTP: {0}")]
    Sftp(#[source] SftpError),
    /// What crossed the connection could not be recorded in the state folder.
    #[error("cannot record the transfer state: {0}")]
    State(#[source] std::io::Error),
    /// The remote `GDPR_Submit` could not be listed.
    #[error("cannot list {path}: {source}")]
    List {
        /// The remote folder.
        path: String,
        /// What the server said.
        source: SftpError,
    },
    /// A remote submission could not be opened.
    #[error("cannot open {name}: {source}")]
    Open {
        /// The file's name.
        name: String,
        /// What the server said.
        source: SftpError,
    },
    /// A local file could not be written, synced or read.
    #[error("cannot {action} {}: {source}", path.display())]
    Local {
        /// What was done: `write`, `sync`, `read`.
        action: &'static str,
        /// The local file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A transfer stopped part-way.
    #[error("{direction} of {name} broke off: {source}")]
    BrokeOff {
        /// `download` or `upload`.
        direction: &'static str,
        /// The file's name.
        name: String,
        /// Why it stopped.
        source: std::io::Error,
    },
    /// A downloaded submission could not be moved into the local `GDPR_Submit`.
    #[error("cannot move {name} into GDPR_Submit: {source}")]
    MoveIn {
        /// The file's name.
        name: String,
        /// Why it could not be moved.
        source: std::io::Error,
    },
    /// A result could not be created in the remote `GDPR_Result`.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The remote file.
        path: String,
        /// What the server said.
        source: SftpError,
    },
    /// An uploaded result could not be renamed into place.
    #[error("cannot rename {name} into GDPR_Result: {source}")]
    Rename {
        /// The result's name.
        name: String,
        /// What the server said.
        source: SftpError,
    },
    /// A result whose local copy retention deleted could not be removed from the server.
    #[error("cannot remove the expired result {name}: {source}")]
    RemoveResult {
        /// The result's name.
        name: String,
        /// What the server said.
        source: SftpError,
    },
    /// An answered submission could not be removed from the remote `GDPR_Submit`.
    #[error("cannot remove {name} from the remote GDPR_Submit: {source}")]
    RemoveSubmission {
        /// The submission's name.
        name: String,
        /// What the server said.
        source: SftpError,
    },
}

/// One account's link to its server.
struct Link {
    account: AccountConfig,
    remote: RemoteConfig,
    state_file: PathBuf,
    record: Record,
    cap: u64,
    settle: Duration,
    jobs: JobSender,
}

/// The server key check: a `known_hosts` file or a pinned fingerprint.
struct Client {
    remote: RemoteConfig,
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fingerprint.clone());
        }
        if let Some(pinned) = &self.remote.host_key_fingerprint {
            return Ok(*pinned == fingerprint);
        }
        Ok(match &self.remote.known_hosts {
            Some(path) => russh::keys::known_hosts::check_known_hosts_path(
                &self.remote.host,
                self.remote.port,
                key,
                path,
            )
            .unwrap_or(false),
            None => false,
        })
    }
}

/// An open SSH connection with its SFTP session.
struct Session {
    _handle: client::Handle<Client>,
    sftp: SftpSession,
}

async fn connect(remote: &RemoteConfig) -> Result<Session, RemoteError> {
    let seen = Arc::new(Mutex::new(None));
    let client = Client {
        remote: remote.clone(),
        seen: Arc::clone(&seen),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(remote.timeout_seconds.max(Duration::from_secs(60))),
        keepalive_interval: Some(Duration::from_secs(15)),
        ..Default::default()
    });
    let timeout = remote.timeout_seconds;
    let connecting = client::connect(config, (remote.host.as_str(), remote.port), client);
    let mut handle = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => return Err(RemoteError::Timeout),
        Ok(Ok(h)) => h,
        Ok(Err(russh::Error::UnknownKey)) => {
            let fingerprint = seen.lock().ok().and_then(|s| s.clone()).unwrap_or_default();
            return Err(RemoteError::HostKey { fingerprint });
        }
        Ok(Err(e)) => return Err(RemoteError::Connect(e)),
    };
    let user = remote.user.clone();
    let authenticated = if let Some(key_file) = &remote.key_file {
        let key = russh::keys::load_secret_key(key_file, None).map_err(|source| {
            RemoteError::KeyFile {
                path: key_file.clone(),
                source,
            }
        })?;
        let hash = handle.best_supported_rsa_hash().await?.flatten();
        handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await?
            .success()
    } else {
        let password = crate::credentials::password(
            remote.password_file.as_deref(),
            remote.password_env.as_deref(),
        )?
        .unwrap_or_default();
        handle
            .authenticate_password(user, password)
            .await?
            .success()
    };
    if !authenticated {
        return Err(RemoteError::LoginRefused {
            user: remote.user.clone(),
        });
    }
    let channel = handle
        .channel_open_session()
        .await
        .map_err(RemoteError::Channel)?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(RemoteError::Subsystem)?;
    let sftp = SftpSession::new(channel.into_stream())
        .await
        .map_err(RemoteError::Sftp)?;
    sftp.set_timeout(remote.timeout_seconds.as_secs().max(30));
    Ok(Session {
        _handle: handle,
        sftp,
    })
}

fn remote_join(base: &str, name: &str) -> String {
    format!("{}/{name}", base.trim_end_matches('/'))
}

/// Whether `result` is one of the results a submission `name` can have.
fn is_result_of(name: &str, result: &str) -> bool {
    let s = stem(name);
    result == names::log_name(s)
        || result == names::archive_name(s)
        || names::is_rejection_of(s, result)
        || names::is_rejection_of(name, result)
}

impl Link {
    fn save(&self) -> Result<(), RemoteError> {
        let bytes =
            serde_json::to_vec_pretty(&self.record).map_err(|e| RemoteError::State(e.into()))?;
        let (dir, name) = (
            self.state_file.parent().unwrap_or(Path::new(".")),
            self.state_file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        atomic::write(dir, &name, &bytes)
            .map(|_| ())
            .map_err(RemoteError::State)
    }

    fn local_results(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = std::fs::read_dir(self.account.result_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let meta = e.metadata().ok()?;
                (meta.is_file() && !is_in_progress(&name)).then_some((name, meta.len()))
            })
            .collect();
        // Archives before execution logs: when a customer sees the log, the archive is there.
        out.sort_by_key(|(n, _)| (n.ends_with("-execution-log.json"), n.clone()));
        out
    }

    /// Lists the remote `GDPR_Submit` and downloads what has been stable since the last listing; returns
    /// whether files are waiting to be seen unchanged once more.
    async fn take_new(
        &mut self,
        session: &Session,
        seen: &mut HashMap<String, (u64, u32)>,
    ) -> Result<bool, RemoteError> {
        let submit = remote_join(&self.remote.path, "GDPR_Submit");
        let listing = session
            .sftp
            .read_dir(submit.clone())
            .await
            .map_err(|source| RemoteError::List {
                path: submit.clone(),
                source,
            })?;
        let mut now: HashMap<String, (u64, u32)> = HashMap::new();
        for entry in listing {
            let name = entry.file_name();
            let meta = entry.metadata();
            if is_in_progress(&name) || meta.is_dir() || self.record.downloaded.contains_key(&name)
            {
                continue;
            }
            now.insert(name, (meta.size.unwrap_or(0), meta.mtime.unwrap_or(0)));
        }
        let mut stable: Vec<String> = now
            .iter()
            .filter(|(n, v)| seen.get(*n) == Some(*v))
            .map(|(n, _)| n.clone())
            .collect();
        stable.sort();
        let waiting = now.len() > stable.len();
        *seen = now;
        for name in stable {
            let identity = seen.get(&name).copied().unwrap_or_default();
            self.download(session, &submit, &name, identity).await?;
        }
        Ok(waiting)
    }

    async fn download(
        &mut self,
        session: &Session,
        submit: &str,
        name: &str,
        identity: (u64, u32),
    ) -> Result<(), RemoteError> {
        let size = identity.0;
        self.record
            .downloaded
            .insert(name.to_owned(), Fetch::Downloading);
        self.save()?;
        let local_dir = self.account.submit_dir();
        let temp = local_dir.join(format!(".{name}.gdprd-download"));
        let copied = async {
            let mut remote =
                session
                    .sftp
                    .open(remote_join(submit, name))
                    .await
                    .map_err(|source| RemoteError::Open {
                        name: name.to_owned(),
                        source,
                    })?;
            let mut local =
                tokio::fs::File::create(&temp)
                    .await
                    .map_err(|source| RemoteError::Local {
                        action: "write",
                        path: temp.clone(),
                        source,
                    })?;
            // At most one byte over the size limit: the engine refuses a file that is too large, with a notice.
            let mut limited = tokio::io::AsyncReadExt::take(&mut remote, self.cap + 1);
            let n = tokio::io::copy(&mut limited, &mut local)
                .await
                .map_err(|source| RemoteError::BrokeOff {
                    direction: "download",
                    name: name.to_owned(),
                    source,
                })?;
            local
                .sync_all()
                .await
                .map_err(|source| RemoteError::Local {
                    action: "sync",
                    path: temp.clone(),
                    source,
                })?;
            Ok::<u64, RemoteError>(n)
        }
        .await;
        let n = match copied {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                self.record.downloaded.remove(name);
                self.save()?;
                return Err(e);
            }
        };
        if n != size && n <= self.cap {
            // It changed while it was read: taken again once it is stable.
            let _ = std::fs::remove_file(&temp);
            self.record.downloaded.remove(name);
            self.save()?;
            warn!(account = %self.account.name, file = name, "a remote file changed during its download; it is taken when it is stable");
            return Ok(());
        }
        std::fs::rename(&temp, local_dir.join(name))
            .and_then(|()| atomic::sync_dir(&local_dir))
            .map_err(|source| RemoteError::MoveIn {
                name: name.to_owned(),
                source,
            })?;
        self.record
            .downloaded
            .insert(name.to_owned(), Fetch::Downloaded);
        self.record.taken.insert(name.to_owned(), identity);
        self.save()?;
        info!(account = %self.account.name, file = name, bytes = n, "downloaded from the remote GDPR_Submit");
        let _ = self.jobs.send(Job {
            account: self.account.name.clone(),
            name: name.into(),
            claimed: None,
        });
        Ok(())
    }

    /// Uploads local results not yet on the server, removes what retention deleted locally, and removes the
    /// remote submissions whose results are all in place.
    async fn deliver(&mut self, session: &Session) -> Result<(), RemoteError> {
        let result_dir = remote_join(&self.remote.path, "GDPR_Result");
        let local = self.local_results();
        for (name, size) in &local {
            if self.record.uploaded.get(name) == Some(size) {
                continue;
            }
            let path = self.account.result_dir().join(name);
            let temp = remote_join(&result_dir, &format!(".{name}.gdprd-part"));
            let target = remote_join(&result_dir, name);
            let upload = async {
                // Streamed: an export archive can be large.
                let mut local =
                    tokio::fs::File::open(&path)
                        .await
                        .map_err(|source| RemoteError::Local {
                            action: "read",
                            path: path.clone(),
                            source,
                        })?;
                let mut file = session.sftp.create(temp.clone()).await.map_err(|source| {
                    RemoteError::Create {
                        path: temp.clone(),
                        source,
                    }
                })?;
                let broke_off = |source| RemoteError::BrokeOff {
                    direction: "upload",
                    name: name.clone(),
                    source,
                };
                tokio::io::copy(&mut local, &mut file)
                    .await
                    .map_err(broke_off)?;
                file.shutdown().await.map_err(broke_off)?;
                if session
                    .sftp
                    .rename(temp.clone(), target.clone())
                    .await
                    .is_err()
                {
                    // Some servers refuse to rename onto an existing name (a retried upload).
                    let _ = session.sftp.remove_file(target.clone()).await;
                    session
                        .sftp
                        .rename(temp.clone(), target.clone())
                        .await
                        .map_err(|source| RemoteError::Rename {
                            name: name.clone(),
                            source,
                        })?;
                }
                Ok::<(), RemoteError>(())
            }
            .await;
            if let Err(e) = upload {
                let _ = session.sftp.remove_file(temp).await;
                return Err(e);
            }
            self.record.uploaded.insert(name.clone(), *size);
            self.save()?;
            info!(account = %self.account.name, file = ?name, "result uploaded to the remote GDPR_Result");
        }
        let gone: Vec<String> = self
            .record
            .uploaded
            .keys()
            .filter(|n| !local.iter().any(|(l, _)| l == *n))
            .cloned()
            .collect();
        for name in gone {
            match session
                .sftp
                .remove_file(remote_join(&result_dir, &name))
                .await
            {
                Ok(()) => {}
                Err(russh_sftp::client::error::Error::Status(s))
                    if s.status_code == russh_sftp::protocol::StatusCode::NoSuchFile => {}
                Err(source) => return Err(RemoteError::RemoveResult { name, source }),
            }
            self.record.uploaded.remove(&name);
            self.save()?;
        }
        self.finish(session, &local).await
    }

    async fn finish(
        &mut self,
        session: &Session,
        local: &[(String, u64)],
    ) -> Result<(), RemoteError> {
        let submit = remote_join(&self.remote.path, "GDPR_Submit");
        let taken: Vec<(String, Fetch)> = self
            .record
            .downloaded
            .iter()
            .map(|(n, f)| (n.clone(), *f))
            .collect();
        for (name, fetch) in taken {
            if self.account.submit_dir().join(&name).exists() {
                continue;
            }
            let results: Vec<&String> = local
                .iter()
                .filter(|(l, _)| is_result_of(&name, l))
                .map(|(l, _)| l)
                .collect();
            if results.is_empty() {
                if fetch == Fetch::Downloading {
                    // Killed before the rename: the engine never saw it; fetch it again.
                    self.record.downloaded.remove(&name);
                    self.save()?;
                }
                continue;
            }
            let delivered = results
                .iter()
                .all(|r| self.record.uploaded.contains_key(*r));
            if !delivered {
                continue;
            }
            let remote_path = remote_join(&submit, &name);
            if let Some(&(size, mtime)) = self.record.taken.get(&name) {
                if let Ok(meta) = session.sftp.metadata(remote_path.clone()).await {
                    if (meta.size.unwrap_or(0), meta.mtime.unwrap_or(0)) != (size, mtime) {
                        // Replaced on the server while it ran: a new submission under a used name, taken
                        // again (and answered with the duplicate-name notice), never removed unread.
                        warn!(account = %self.account.name, file = %name, "the remote file was replaced after it was taken; it is taken again as a new submission");
                        self.record.downloaded.remove(&name);
                        self.record.taken.remove(&name);
                        self.save()?;
                        continue;
                    }
                }
            }
            match session.sftp.remove_file(remote_path).await {
                Ok(()) => {}
                Err(russh_sftp::client::error::Error::Status(s))
                    if s.status_code == russh_sftp::protocol::StatusCode::NoSuchFile => {}
                Err(source) => return Err(RemoteError::RemoveSubmission { name, source }),
            }
            self.record.downloaded.remove(&name);
            self.record.taken.remove(&name);
            self.save()?;
            info!(account = %self.account.name, file = ?name, "submission removed from the remote GDPR_Submit");
        }
        Ok(())
    }

    /// Works the account over one connection until it breaks (an error) or `stop` is cancelled (`Ok`).
    async fn work(
        &mut self,
        session: &Session,
        stop: &CancellationToken,
    ) -> Result<(), RemoteError> {
        let poll = self.remote.poll_seconds;
        // A file seen for the first time is looked at again after the settle time, not a whole poll later.
        let settle = self.settle.clamp(Duration::from_secs(1), poll);
        let mut seen = HashMap::new();
        let mut next_listing = Instant::now();
        loop {
            if Instant::now() >= next_listing {
                let waiting = self.take_new(session, &mut seen).await?;
                next_listing = Instant::now() + if waiting { settle } else { poll };
            }
            self.deliver(session).await?;
            if !backoff::sleep(stop, RESULT_TICK).await {
                return Ok(());
            }
        }
    }
}

/// Runs `config.accounts[index]`'s link until `stop` is cancelled.
pub async fn run(config: Arc<Config>, index: usize, jobs: JobSender, stop: CancellationToken) {
    let Some(account) = config.accounts.get(index).cloned() else {
        return;
    };
    let Some(remote) = account.remote.clone() else {
        return;
    };
    let state_dir = config.state_dir.join("remote");
    if let Err(e) = std::fs::create_dir_all(&state_dir) {
        warn!(account = %account.name, error = %e, "cannot create the remote transfer state folder");
        return;
    }
    let state_file = state_dir.join(format!("{}.json", account.name));
    let record = std::fs::read(&state_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut link = Link {
        account,
        remote,
        state_file,
        record,
        cap: config.limits.max_file_bytes,
        settle: config.intake.settle_seconds,
        jobs,
    };
    let mut retry = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF).with_jitter();
    loop {
        if stop.is_cancelled() {
            return;
        }
        let outcome = match connect(&link.remote).await {
            Ok(session) => {
                info!(account = %link.account.name, host = %link.remote.host, "connected to the remote SFTP server");
                retry.reset();
                let r = link.work(&session, &stop).await;
                let _ = session.sftp.close().await;
                r
            }
            Err(e) => Err(e),
        };
        let wait = retry.next_delay();
        match outcome {
            Ok(()) => return,
            Err(e) => {
                warn!(account = %link.account.name, error = %e, retry_in = ?wait, "remote SFTP account: will reconnect")
            }
        }
        if !backoff::sleep(&stop, wait).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{err, load, DEMO};
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn remote_accounts_are_checked() {
        let remote = DEMO
            .replace("transport = \"sftp-server\"", "transport = \"sftp-remote\"")
            .replace(
                "[accounts.sftp]",
                "[accounts.remote]\nhost = \"sftp.example.com\"\nuser = \"gdpr\"\nkey_file = \"id_ed25519\"\nknown_hosts = \"known_hosts\"\n\n[accounts.sftp]",
            );
        // [accounts.sftp] is for the embedded server only: drop it for a remote account.
        let at = remote.find("[accounts.sftp]").expect("sftp");
        let end = at + remote[at..].find("\n\n").expect("end");
        let remote = format!("{}{}", &remote[..at], &remote[end..]);
        let with_http = remote.clone();
        // So are HTTP front doors (a remote account's results leave for the server).
        let at = remote.find("[accounts.http]").expect("http");
        let end = at + remote[at..].find("\n\n").expect("end");
        let remote = format!("{}{}", &remote[..at], &remote[end..]);
        assert!(err(&with_http).contains("an sftp-remote account's results leave"));
        let c = load(&remote).expect("remote account");
        let r = c.accounts[0].remote.as_ref().expect("remote");
        assert_eq!(
            (r.port, r.poll_seconds, r.path.as_str()),
            (22, Duration::from_secs(30), ".")
        );
        assert_eq!(
            r.key_file.as_deref(),
            Some(Path::new("/etc/gdprd/id_ed25519"))
        );
        let cases = [
            (remote.replace("known_hosts = \"known_hosts\"\n", ""), "never logs in to a server it cannot recognise"),
            (remote.replace("key_file = \"id_ed25519\"\n", ""), "needs key_file, password_file or password_env"),
            (remote.replace("known_hosts = \"known_hosts\"", "host_key_fingerprint = \"MD5:ab\""), "SHA256:"),
            (remote.replace("transport = \"sftp-remote\"", "transport = \"local\""), "[accounts.remote] is for transport"),
            (remote.replace("[accounts.remote]\nhost = \"sftp.example.com\"\nuser = \"gdpr\"\nkey_file = \"id_ed25519\"\nknown_hosts = \"known_hosts\"\n", ""), "needs [accounts.remote]"),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }
}
