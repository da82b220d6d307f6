//! The worker's queue of names to look at: bounded and de-duplicated. Every transport, the watcher and the
//! periodic rescan put [`Job`]s in it; the worker takes them one at a time.
//!
//! A name already waiting in the queue is not queued again (a rescan finds every waiting file again, and an
//! upload can be announced by both the watcher and the SFTP server). A full queue refuses a name rather than
//! grow: nothing is lost, because the name is still in `GDPR_Submit`, where the next rescan finds it, or claimed
//! in the journal (an HTTP job), which the worker lists again once the queue has room
//! ([`JobReceiver::take_overflowed`]).

use super::Job;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How many names the worker's queue holds at most.
pub const CAPACITY: usize = 4096;

/// The names in the queue now (to refuse a second copy of one), and whether a name was refused because the
/// queue was full since the worker last asked.
#[derive(Debug, Default)]
struct State {
    names: HashSet<Job>,
    overflowed: bool,
}

type Queued = Arc<Mutex<State>>;

/// Puts jobs in the worker's queue; cloned by every transport. The queue closes when every clone is dropped.
#[derive(Debug, Clone)]
pub struct JobSender {
    tx: mpsc::Sender<Job>,
    queued: Queued,
}

/// The worker's end of the queue.
#[derive(Debug)]
pub struct JobReceiver {
    rx: mpsc::Receiver<Job>,
    queued: Queued,
}

/// A queue that holds at most `capacity` jobs.
pub fn queue(capacity: usize) -> (JobSender, JobReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let queued = Queued::default();
    (
        JobSender {
            tx,
            queued: Arc::clone(&queued),
        },
        JobReceiver { rx, queued },
    )
}

impl JobSender {
    /// Queues `job` unless the same name is already waiting, without waiting itself (it is called from the
    /// watcher's thread, the runtime and blocking tasks alike). Returns whether it was queued; a name refused
    /// because the queue is full (or closed) is found again by the next rescan.
    pub fn send(&self, job: Job) -> bool {
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        if queued.names.contains(&job) {
            return false;
        }
        match self.tx.try_send(job.clone()) {
            Ok(()) => {
                queued.names.insert(job);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                debug!(account = %job.account, "the worker's queue is full; the next rescan finds the file again");
                queued.overflowed = true;
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl JobReceiver {
    /// The next job, waiting for one on a thread outside the runtime (through `runtime`); `None` once `stop` is
    /// cancelled or every sender is gone and the queue is empty.
    pub fn next_blocking(
        &mut self,
        runtime: &tokio::runtime::Handle,
        stop: &CancellationToken,
    ) -> Option<Job> {
        let job = runtime.block_on(async {
            tokio::select! {
                biased;
                () = stop.cancelled() => None,
                job = self.rx.recv() => job,
            }
        })?;
        // Taken off the list before it is handled: a change announced from now on queues the name again.
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .names
            .remove(&job);
        Some(job)
    }

    /// Whether a name was refused because the queue was full since the last call. Names in `GDPR_Submit` are
    /// found again by the rescan; a job that exists only in the journal (an HTTP request) is not, so the worker
    /// lists the journal's unfinished files again when this says so.
    pub fn take_overflowed(&self) -> bool {
        std::mem::take(
            &mut self
                .queued
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .overflowed,
        )
    }

    /// How many jobs wait.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no job waits.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> Job {
        Job {
            account: "a".into(),
            name: name.into(),
            claimed: None,
        }
    }

    #[test]
    fn a_waiting_name_is_queued_once_and_a_full_queue_refuses_without_blocking() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let stop = CancellationToken::new();
        let (tx, mut rx) = queue(2);
        assert!(tx.send(job("x")));
        assert!(!tx.send(job("x")), "already waiting");
        assert!(tx.send(job("y")));
        assert!(!rx.take_overflowed());
        assert!(!tx.send(job("z")), "full");
        assert!(rx.take_overflowed());
        assert!(!rx.take_overflowed(), "said once");
        assert_eq!(rx.len(), 2);
        assert_eq!(rx.next_blocking(runtime.handle(), &stop), Some(job("x")));
        assert!(tx.send(job("x")), "taken, so it queues again");
        assert_eq!(rx.next_blocking(runtime.handle(), &stop), Some(job("y")));
        stop.cancel();
        assert_eq!(rx.next_blocking(runtime.handle(), &stop), None, "stopped");
    }

    #[test]
    fn the_queue_ends_when_every_sender_is_gone() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (tx, mut rx) = queue(8);
        tx.send(job("x"));
        drop(tx);
        let stop = CancellationToken::new();
        assert_eq!(rx.next_blocking(runtime.handle(), &stop), Some(job("x")));
        assert_eq!(rx.next_blocking(runtime.handle(), &stop), None);
    }
}
