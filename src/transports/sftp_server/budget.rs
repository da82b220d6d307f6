//! The file handles SFTP clients may hold: open files and listings are counted per account (over all its
//! sessions) and over the whole server, and the server's share is sized at start to leave the daemon's own work
//! (engine, stores, ledger, watcher, HTTP) a reserve under the process's file-handle limit. One customer can then
//! never take the handles another customer, or the engine, needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

/// Why a handle cannot be opened now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exhausted {
    /// The account holds its share.
    #[error(
        "too many open files and listings for this account (at most {0}): close some and retry"
    )]
    Account(usize),
    /// Every account together holds the server's share.
    #[error("the server has too many open files right now: retry later")]
    Server,
}

/// The open-handle counts of one server.
#[derive(Debug)]
pub struct HandleBudget {
    server: Arc<Semaphore>,
    per_account: usize,
    accounts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One open handle's place in the budget, given back when dropped.
#[derive(Debug)]
pub struct HandlePermit {
    _account: OwnedSemaphorePermit,
    _server: OwnedSemaphorePermit,
}

impl HandleBudget {
    /// `server` handles over all accounts, `per_account` for each.
    pub fn new(server: usize, per_account: usize) -> HandleBudget {
        HandleBudget {
            server: Arc::new(Semaphore::new(server)),
            per_account,
            accounts: Mutex::default(),
        }
    }

    /// Takes one handle for `account`.
    ///
    /// # Errors
    /// [`Exhausted`] saying whose share is used up.
    pub fn take(&self, account: &str) -> Result<HandlePermit, Exhausted> {
        let own = self
            .accounts
            .lock()
            .map_err(|_| Exhausted::Server)?
            .entry(account.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_account)))
            .clone();
        let account_permit = own
            .try_acquire_owned()
            .map_err(|_| Exhausted::Account(self.per_account))?;
        let server_permit = Arc::clone(&self.server)
            .try_acquire_owned()
            .map_err(|_| Exhausted::Server)?;
        Ok(HandlePermit {
            _account: account_permit,
            _server: server_permit,
        })
    }
}

/// Raises the process's soft file-handle limit to its hard limit and returns it (`None` where it cannot be read).
pub fn raise_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            warn!(error = %e, "cannot read the file-handle limit");
            None
        }
    }
}

/// The server's share of open files and listings: `wanted`, lowered when the file-handle `limit` cannot hold it
/// beside the `reserve` and one socket per `connections`. Logs what it decided.
pub fn open_handle_share(
    limit: Option<u64>,
    reserve: usize,
    connections: usize,
    wanted: usize,
) -> usize {
    let Some(limit) = limit else {
        return wanted;
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let room = limit.saturating_sub(reserve).saturating_sub(connections);
    if room < wanted {
        warn!(
            file_limit = limit,
            reserved = reserve,
            connections,
            wanted,
            granted = room,
            "the file-handle limit cannot hold every configured SFTP handle; raise LimitNOFILE (see docs/operations.md, Limits)"
        );
        room
    } else {
        info!(
            file_limit = limit,
            reserved = reserve,
            connections,
            open_handles = wanted,
            "file-handle budget"
        );
        wanted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_account_has_its_share_and_all_share_the_server() {
        let b = HandleBudget::new(5, 3);
        let a: Vec<_> = (0..3).map(|_| b.take("a").expect("a")).collect();
        assert_eq!(b.take("a").err(), Some(Exhausted::Account(3)));
        let c: Vec<_> = (0..2).map(|_| b.take("c").expect("c")).collect();
        assert_eq!(b.take("d").err(), Some(Exhausted::Server));
        drop(a);
        assert!(b.take("a").is_ok() && b.take("d").is_ok());
        drop(c);
    }

    #[test]
    fn the_share_leaves_the_reserve_and_the_sockets() {
        assert_eq!(open_handle_share(Some(1024), 256, 80, 512), 512);
        assert_eq!(open_handle_share(Some(512), 256, 80, 512), 176);
        assert_eq!(open_handle_share(Some(100), 256, 80, 512), 0);
        assert_eq!(open_handle_share(None, 256, 80, 512), 512);
    }
}
