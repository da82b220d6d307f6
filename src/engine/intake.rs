//! Reading a dropped file: its bytes up to the size limit, whether it is an upload still being written, and the
//! partial files a crash leaves in an account's folders.

use crate::config::AccountConfig;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;
use tracing::warn;

/// The first `cap` bytes of the file at `path`.
pub(super) fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(cap)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Removes the partial files a crash can leave in an account's folders, at start, before anything writes there:
/// temporaries of atomic writes in `GDPR_Result` (an execution log or archive half-written), partial downloads
/// of a remote SFTP account and partial uploads to the embedded SFTP server in `GDPR_Submit`. Returns how many.
pub(super) fn remove_account_leftovers(account: &AccountConfig) -> usize {
    use crate::config::Transport;
    let partial_transfer = |name: &str| match account.transport {
        Transport::SftpRemote => name.ends_with(".gdprd-download"),
        Transport::SftpServer => name.ends_with(".upload"),
        Transport::Local => false,
    };
    let mut removed = 0;
    for (dir, doomed) in [
        (
            account.result_dir(),
            &crate::results::atomic::is_stale_temporary as &dyn Fn(&str) -> bool,
        ),
        (account.submit_dir(), &|n: &str| {
            n.starts_with('.') && partial_transfer(n)
        }),
    ] {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            let name = entry.file_name();
            if is_file && name.to_str().is_some_and(doomed) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        warn!(account = %account.name, file = %entry.path().display(), error = %e, "cannot remove a partial file; tried again at the next start")
                    }
                }
            }
        }
    }
    removed
}

/// When `bytes` end in the middle of their JSON (an empty file included) and the file was modified less than
/// `timeout` ago, it is an upload still being written (a writer that pauses longer than the settle time): the
/// time since its last write. A file left truncated longer is not waited for: it is refused like any invalid file.
pub(super) fn still_uploading(
    bytes: &[u8],
    meta: &std::fs::Metadata,
    timeout: Duration,
) -> Option<Duration> {
    let age = meta
        .modified()
        .ok()
        .map(|m| {
            crate::clock::system_now()
                .duration_since(m)
                .unwrap_or(Duration::ZERO)
        })
        .unwrap_or(Duration::MAX);
    if age >= timeout {
        return None;
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
        Err(e) if e.classify() == serde_json::error::Category::Eof => Some(age),
        _ => None,
    }
}
