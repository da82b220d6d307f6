//! The workers' queue of names to look at: bounded, de-duplicated, and one account at a time. Every transport,
//! the watcher and the periodic rescan put [`Job`]s in it; each worker takes the oldest job whose account no
//! other worker is working on, and holds that account until it has handled the job ([`Taken`]).
//!
//! So files of one account are handled one at a time, in the order they were queued (a rescan queues them in
//! name order), while different accounts run at once: a job whose account is busy waits in its place, and the
//! workers take the jobs behind it.
//!
//! A name already waiting in the queue is not queued again (a rescan finds every waiting file again, and an
//! upload can be announced by both the watcher and the SFTP server). A full queue refuses a name rather than
//! grow: nothing is lost, because the name is still in `GDPR_Submit`, where the next rescan finds it, or claimed
//! in the journal (an HTTP job), which a worker lists again once the queue has room
//! ([`JobReceiver::take_overflowed`]).

use super::Job;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How many names the queue holds at most.
pub const CAPACITY: usize = 4096;

/// The jobs waiting, in the order they came; the names among them (to refuse a second copy of one); the accounts
/// a worker holds; whether a name was refused because the queue was full since a worker last asked; and how many
/// senders are left.
#[derive(Debug, Default)]
struct State {
    waiting: VecDeque<Job>,
    names: HashSet<Job>,
    busy: HashSet<String>,
    overflowed: bool,
    senders: usize,
    capacity: usize,
}

impl State {
    /// Queues `job` unless it waits already or the queue is full.
    fn push(&mut self, job: Job) -> bool {
        if self.names.contains(&job) {
            return false;
        }
        if self.waiting.len() >= self.capacity {
            debug!(account = %job.account, "the queue is full; the next rescan finds the file again");
            self.overflowed = true;
            return false;
        }
        self.names.insert(job.clone());
        self.waiting.push_back(job);
        true
    }

    /// Takes the oldest job whose account is free, and marks its account busy.
    fn take(&mut self) -> Option<Job> {
        let at = self
            .waiting
            .iter()
            .position(|j| !self.busy.contains(&j.account))?;
        let job = self.waiting.remove(at)?;
        // Taken off the list before it is handled: a change announced from now on queues the name again.
        self.names.remove(&job);
        self.busy.insert(job.account.clone());
        Some(job)
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Told when a job is queued, an account is released or the last sender is gone.
    changed: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Puts jobs in the queue; cloned by every transport. The queue closes when every clone is dropped.
#[derive(Debug)]
pub struct JobSender {
    shared: Arc<Shared>,
}

/// The workers' end of the queue; each worker holds a clone.
#[derive(Debug, Clone)]
pub struct JobReceiver {
    shared: Arc<Shared>,
}

/// A job a worker has taken: its account is held (no other worker takes a job of it) until this is dropped.
#[derive(Debug)]
pub struct Taken {
    job: Job,
    shared: Arc<Shared>,
}

/// A queue that holds at most `capacity` jobs.
pub fn queue(capacity: usize) -> (JobSender, JobReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            senders: 1,
            capacity: capacity.max(1),
            ..State::default()
        }),
        changed: Notify::new(),
    });
    (
        JobSender {
            shared: Arc::clone(&shared),
        },
        JobReceiver { shared },
    )
}

impl JobSender {
    /// Queues `job` unless the same name is already waiting, without waiting itself (it is called from the
    /// watcher's thread, the runtime and blocking tasks alike). Returns whether it was queued; a name refused
    /// because the queue is full is found again by the next rescan.
    pub fn send(&self, job: Job) -> bool {
        let queued = self.shared.state().push(job);
        if queued {
            self.shared.changed.notify_waiters();
        }
        queued
    }
}

impl Clone for JobSender {
    fn clone(&self) -> JobSender {
        self.shared.state().senders += 1;
        JobSender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for JobSender {
    fn drop(&mut self) {
        let last = {
            let mut state = self.shared.state();
            state.senders = state.senders.saturating_sub(1);
            state.senders == 0
        };
        if last {
            self.shared.changed.notify_waiters();
        }
    }
}

impl JobReceiver {
    /// The oldest job whose account no other worker holds, waiting for one on a thread outside the runtime
    /// (through `runtime`); `None` once `stop` is cancelled, or once every sender is gone and no job waits.
    pub fn next_blocking(
        &self,
        runtime: &tokio::runtime::Handle,
        stop: &CancellationToken,
    ) -> Option<Taken> {
        loop {
            if stop.is_cancelled() {
                return None;
            }
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            // Registered before the state is read: a change made after the read wakes it.
            changed.as_mut().enable();
            {
                let mut state = self.shared.state();
                if let Some(job) = state.take() {
                    return Some(Taken {
                        job,
                        shared: Arc::clone(&self.shared),
                    });
                }
                if state.senders == 0 && state.waiting.is_empty() {
                    return None;
                }
            }
            runtime.block_on(async {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {}
                    () = changed => {}
                }
            });
        }
    }

    /// Queues `job` from the workers' side (files the journal holds unfinished), as [`JobSender::send`] does.
    pub fn requeue(&self, job: Job) -> bool {
        let queued = self.shared.state().push(job);
        if queued {
            self.shared.changed.notify_waiters();
        }
        queued
    }

    /// Whether a name was refused because the queue was full since the last call. Names in `GDPR_Submit` are
    /// found again by the rescan; a job that exists only in the journal (an HTTP request) is not, so a worker
    /// lists the journal's unfinished files again when this says so.
    pub fn take_overflowed(&self) -> bool {
        std::mem::take(&mut self.shared.state().overflowed)
    }

    /// How many jobs wait.
    pub fn len(&self) -> usize {
        self.shared.state().waiting.len()
    }

    /// Whether no job waits.
    pub fn is_empty(&self) -> bool {
        self.shared.state().waiting.is_empty()
    }
}

impl std::ops::Deref for Taken {
    type Target = Job;

    fn deref(&self) -> &Job {
        &self.job
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.shared.state().busy.remove(&self.job.account);
        self.shared.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_of(account: &str, name: &str) -> Job {
        Job {
            account: account.into(),
            name: name.into(),
            claimed: None,
        }
    }

    fn job(name: &str) -> Job {
        job_of("a", name)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_waiting_name_is_queued_once_and_a_full_queue_refuses_without_blocking() {
        let runtime = runtime();
        let stop = CancellationToken::new();
        let (tx, rx) = queue(2);
        assert!(tx.send(job("x")));
        assert!(!tx.send(job("x")), "already waiting");
        assert!(tx.send(job("y")));
        assert!(!rx.take_overflowed());
        assert!(!tx.send(job("z")), "full");
        assert!(rx.take_overflowed());
        assert!(!rx.take_overflowed(), "said once");
        assert_eq!(rx.len(), 2);
        let x = rx.next_blocking(runtime.handle(), &stop).map(|t| t.clone());
        assert_eq!(x, Some(job("x")));
        assert!(tx.send(job("x")), "taken, so it queues again");
        let y = rx.next_blocking(runtime.handle(), &stop).map(|t| t.clone());
        assert_eq!(y, Some(job("y")));
        stop.cancel();
        assert!(
            rx.next_blocking(runtime.handle(), &stop).is_none(),
            "stopped"
        );
    }

    #[test]
    fn the_queue_ends_when_every_sender_is_gone() {
        let runtime = runtime();
        let (tx, rx) = queue(8);
        let second = tx.clone();
        tx.send(job("x"));
        drop(tx);
        drop(second);
        let stop = CancellationToken::new();
        let x = rx.next_blocking(runtime.handle(), &stop).map(|t| t.clone());
        assert_eq!(x, Some(job("x")));
        assert!(rx.next_blocking(runtime.handle(), &stop).is_none());
    }

    #[test]
    fn a_busy_account_waits_in_its_place_while_other_accounts_are_taken() {
        let runtime = runtime();
        let stop = CancellationToken::new();
        let (tx, rx) = queue(8);
        for (account, name) in [("a", "1"), ("a", "2"), ("b", "1"), ("a", "3"), ("c", "1")] {
            tx.send(job_of(account, name));
        }
        let next = || rx.next_blocking(runtime.handle(), &stop).expect("a job");
        let a1 = next();
        assert_eq!(*a1, job_of("a", "1"));
        let b1 = next();
        assert_eq!(*b1, job_of("b", "1"), "a's next file waits while a is held");
        let c1 = next();
        assert_eq!(*c1, job_of("c", "1"));
        drop(a1);
        assert_eq!(
            *next(),
            job_of("a", "2"),
            "a's files in the order they came"
        );
        assert_eq!(*next(), job_of("a", "3"));
        drop((b1, c1));
        assert!(rx.is_empty());
    }

    #[test]
    fn a_worker_waiting_for_a_held_account_wakes_when_it_is_released() {
        let runtime = runtime();
        let stop = CancellationToken::new();
        let (tx, rx) = queue(8);
        tx.send(job("1"));
        tx.send(job("2"));
        let first = rx.next_blocking(runtime.handle(), &stop).expect("first");
        let (other, handle, stop2) = (rx.clone(), runtime.handle().clone(), stop.clone());
        let waiter = std::thread::spawn(move || {
            other.next_blocking(&handle, &stop2).map(|t| t.name.clone())
        });
        // The second worker can only get "2" once "1" is released; it cannot finish before.
        drop(first);
        let got = waiter.join().expect("waiter");
        assert_eq!(got, Some("2".into()));
        drop(tx);
    }

    #[test]
    fn a_stop_wakes_a_worker_waiting_for_a_job() {
        let runtime = runtime();
        let stop = CancellationToken::new();
        let (tx, rx) = queue(8);
        let (handle, stop2) = (runtime.handle().clone(), stop.clone());
        let waiter = std::thread::spawn(move || rx.next_blocking(&handle, &stop2).is_none());
        stop.cancel();
        assert!(waiter.join().expect("waiter"), "woken with no job");
        drop(tx);
    }
}
