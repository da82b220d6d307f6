//! One SSH connection to the embedded server. Like russh's own handler, everything is refused unless opted in
//! here: public-key and password login for configured accounts (a key that is not authorised never reaches the
//! signature check), session channels, and the `sftp` subsystem. Shells, commands, terminals, environment,
//! agent, X11 and port forwarding are all refused.

use super::auth::{Credentials, Throttle};
use super::budget::HandleBudget;
use super::fs::{AccountFs, FsLimits};
use super::gate::Ticket;
use crate::transports::JobSender;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::{info, warn};

/// An account that may log in to the embedded server.
#[derive(Debug, Clone)]
pub struct AccountEntry {
    /// Its name, which is also the login name.
    pub name: String,
    /// Its root folder.
    pub root: PathBuf,
    /// Keys and password hash.
    pub credentials: Credentials,
    /// How long results are kept; also how long a client's temporary upload may wait for its rename.
    pub retention: std::time::Duration,
}

impl Shared {
    /// The account `user` logs in to, as configured now.
    pub fn account(&self, user: &str) -> Option<AccountEntry> {
        self.accounts.read().ok().and_then(|a| a.get(user).cloned())
    }
}

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// Accounts by login name; replaced whole when the config is reloaded (sessions already open keep theirs).
    pub accounts: std::sync::RwLock<HashMap<String, AccountEntry>>,
    /// Failed logins per source address.
    pub throttle: Mutex<Throttle>,
    /// Open sessions per account name.
    pub sessions: Mutex<HashMap<String, usize>>,
    /// Most sessions per account.
    pub max_sessions: usize,
    /// Most channels open at once on one connection.
    pub max_channels: usize,
    /// Open files and listings, per account and over the server.
    pub handles: Arc<HandleBudget>,
    /// What each SFTP session may upload.
    pub fs_limits: FsLimits,
    /// SFTP packet cap.
    pub max_packet: u32,
    /// Where completed uploads are announced.
    pub jobs: JobSender,
}

/// The handler of one connection.
pub struct SshSession {
    shared: Arc<Shared>,
    peer: Option<IpAddr>,
    account: Option<AccountEntry>,
    authenticated: Arc<AtomicBool>,
    ticket: Arc<Ticket>,
    activity: Arc<super::guard::Activity>,
    /// Channels accepted and not closed yet, whatever they became (the sftp ones leave `channels`).
    open_channels: HashSet<ChannelId>,
    /// Channels accepted and not yet given to the sftp subsystem.
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl SshSession {
    /// A handler for a connection from `peer`, admitted with `ticket`; `authenticated` is set once a login
    /// succeeds; `activity` records when its SFTP channels last received bytes.
    pub fn new(
        shared: Arc<Shared>,
        peer: Option<IpAddr>,
        authenticated: Arc<AtomicBool>,
        ticket: Arc<Ticket>,
        activity: Arc<super::guard::Activity>,
    ) -> SshSession {
        SshSession {
            shared,
            peer,
            account: None,
            authenticated,
            ticket,
            activity,
            open_channels: HashSet::new(),
            channels: HashMap::new(),
        }
    }

    /// The peer as the log shows it: a pseudonym, never the address.
    fn peer_label(&self) -> String {
        self.peer
            .map(|ip| super::peer::Peer(ip).to_string())
            .unwrap_or_else(|| "unknown".into())
    }

    fn throttled(&self) -> bool {
        let (Some(ip), Ok(mut t)) = (self.peer, self.shared.throttle.lock()) else {
            return false;
        };
        t.blocked(ip, Instant::now())
    }

    fn failed(&self, user: &str, method: &str) {
        warn!(user = ?user, method, peer = %self.peer_label(), "login failed");
        if let (Some(ip), Ok(mut t)) = (self.peer, self.shared.throttle.lock()) {
            t.failed(ip, Instant::now());
            crate::metrics::get().auth_failures.inc();
        }
    }

    /// Admits `entry` if its session limit allows.
    fn admit(&mut self, entry: AccountEntry, method: &str) -> Auth {
        let Ok(mut sessions) = self.shared.sessions.lock() else {
            return Auth::reject();
        };
        let open = sessions.entry(entry.name.clone()).or_insert(0);
        if *open >= self.shared.max_sessions {
            warn!(account = %entry.name, "session limit reached; login refused");
            return Auth::reject();
        }
        if !self.ticket.log_in() {
            warn!(account = %entry.name, "logged-in connection limit reached; login refused");
            return Auth::reject();
        }
        *open += 1;
        crate::metrics::get().sftp_sessions.inc();
        info!(account = %entry.name, method, peer = %self.peer_label(), "login");
        self.account = Some(entry);
        self.activity.touch();
        self.authenticated.store(true, Ordering::SeqCst);
        Auth::Accept
    }

    /// Refuses a request on `channel` and closes it; it no longer counts against the channel cap.
    fn refuse(
        &mut self,
        session: &mut Session,
        channel: ChannelId,
        what: &str,
    ) -> Result<(), russh::Error> {
        warn!(request = what, "refused: only the sftp subsystem is served");
        self.channels.remove(&channel);
        self.open_channels.remove(&channel);
        session.channel_failure(channel)?;
        session.close(channel)
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        if let (Some(entry), Ok(mut sessions)) = (&self.account, self.shared.sessions.lock()) {
            if let Some(n) = sessions.get_mut(&entry.name) {
                *n = n.saturating_sub(1);
                crate::metrics::get().sftp_sessions.dec();
            }
        }
    }
}

impl russh::server::Handler for SshSession {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let known = self
            .shared
            .account(user)
            .is_some_and(|a| a.credentials.has_key(offer.public_key));
        Ok(if known && !self.throttled() {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        match self.shared.account(user) {
            Some(entry) if entry.credentials.has_key(key.public_key) && !self.throttled() => {
                Ok(self.admit(entry, "publickey"))
            }
            _ => {
                self.failed(user, "publickey");
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.throttled() {
            self.failed(user, "password");
            return Ok(Auth::reject());
        }
        let Some(entry) = self.shared.account(user) else {
            self.failed(user, "password");
            return Ok(Auth::reject());
        };
        let credentials = entry.credentials.clone();
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || credentials.password_ok(&password))
            .await
            .unwrap_or(false);
        if ok {
            Ok(self.admit(entry, "password"))
        } else {
            self.failed(user, "password");
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.account.is_none() {
            return Ok(());
        }
        if self.open_channels.len() >= self.shared.max_channels {
            warn!(
                limit = self.shared.max_channels,
                "channel limit of the connection reached; channel refused"
            );
            return Ok(());
        }
        self.open_channels.insert(channel.id());
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(entry), true) = (self.account.clone(), name == "sftp") else {
            return self.refuse(session, channel_id, "subsystem");
        };
        let Some(channel) = self.channels.remove(&channel_id) else {
            return self.refuse(session, channel_id, "subsystem");
        };
        session.channel_success(channel_id)?;
        let fs = AccountFs::new(
            entry.name,
            entry.root,
            self.shared.fs_limits,
            Arc::clone(&self.shared.handles),
            self.shared.jobs.clone(),
        );
        let config = russh_sftp::server::Config {
            max_client_packet_len: self.shared.max_packet,
        };
        let stream = super::guard::PacketGuard::new(channel.into_stream(), self.shared.max_packet)
            .with_activity(Arc::clone(&self.activity));
        russh_sftp::server::run_with_config(stream, fs, config).await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.open_channels.remove(&channel);
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.close(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(session, channel, "exec")
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(session, channel, "shell")
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(session, channel, "pty")
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(session, channel, "x11")
    }
}
