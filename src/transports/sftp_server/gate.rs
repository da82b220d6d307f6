//! Who may hold a connection to the embedded server, decided when it is accepted and again when it logs in.
//!
//! - New connections from one source address are rate-limited (a token bucket per address, `governor`): past the
//!   burst, a connection waits for its turn before the server says a word, so a flood of key exchanges from one
//!   address cannot take the cores (DHEat) while a client opening a few connections at once is only slowed.
//! - Connections that have not logged in yet live in their own small pool, apart from logged-in ones, so silent
//!   connections can never take a logged-in customer's place. When that pool is full, the oldest connection of
//!   the source address holding the most of it is dropped to make room (as OpenSSH's `MaxStartups` drops early
//!   and `PerSourcePenalties` singles out the noisy source); a newcomer from that same busiest address is refused
//!   instead. One address (or a few) flooding the pool thus only ever pushes out its own connections.
//! - Connections from one address are capped; logged-in connections are capped.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

/// Why a new connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address holds its cap of connections.
    PerAddress,
    /// The pool of connections not logged in is full and its address holds the most of it.
    Pool,
}

impl Refusal {
    /// A short sentence for the log.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::PerAddress => "per-address connection limit reached",
            Refusal::Pool => "pool of connections not logged in is full",
        }
    }
}

/// The limits a [`Gate`] holds.
#[derive(Debug, Clone, Copy)]
pub struct GateLimits {
    /// Connections not logged in yet, over all addresses.
    pub max_pending: usize,
    /// Connections from one address, logged in or not.
    pub max_per_address: usize,
    /// Logged-in connections.
    pub max_logged_in: usize,
    /// New connections per second from one address.
    pub per_second: NonZeroU32,
    /// New connections from one address at once before the rate applies.
    pub burst: NonZeroU32,
}

struct Pending {
    ip: IpAddr,
    since: Instant,
    evict: Arc<Notify>,
}

#[derive(Default)]
struct State {
    per_address: HashMap<IpAddr, usize>,
    pending: HashMap<u64, Pending>,
    pending_per_address: HashMap<IpAddr, usize>,
    logged_in: usize,
    next: u64,
}

impl State {
    fn forget_pending(&mut self, id: u64) -> bool {
        let Some(p) = self.pending.remove(&id) else {
            return false;
        };
        decrement(&mut self.pending_per_address, p.ip);
        true
    }

    /// The oldest pending connection of the address holding the most pending ones (ties: the oldest).
    fn eviction_candidate(&self) -> Option<(u64, usize)> {
        self.pending
            .iter()
            .map(|(id, p)| {
                let n = self.pending_per_address.get(&p.ip).copied().unwrap_or(0);
                (n, std::cmp::Reverse(p.since), *id, p.ip)
            })
            .max()
            .map(|(n, _, id, _)| (id, n))
    }
}

fn decrement(map: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = map.get_mut(&ip) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&ip);
        }
    }
}

/// The connection admission of one server.
pub struct Gate {
    limits: GateLimits,
    state: Mutex<State>,
    rate: DefaultKeyedRateLimiter<IpAddr>,
}

impl Gate {
    /// A gate holding `limits`.
    pub fn new(limits: GateLimits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            state: Mutex::default(),
            rate: RateLimiter::keyed(
                Quota::per_second(limits.per_second).allow_burst(limits.burst),
            ),
        })
    }

    /// Admits a new connection from `ip`, making room in the pool of connections not logged in if needed.
    ///
    /// # Errors
    /// The [`Refusal`] when the connection must be closed at once.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let Ok(mut s) = self.state.lock() else {
            return Err(Refusal::Pool);
        };
        if s.per_address.get(&ip).copied().unwrap_or(0) >= self.limits.max_per_address {
            return Err(Refusal::PerAddress);
        }
        if s.pending.len() >= self.limits.max_pending {
            let own = s.pending_per_address.get(&ip).copied().unwrap_or(0);
            match s.eviction_candidate() {
                // The busiest address is strictly busier than the newcomer's: its oldest connection goes.
                Some((id, busiest)) if busiest > own => {
                    if let Some(p) = s.pending.get(&id) {
                        p.evict.notify_one();
                    }
                    s.forget_pending(id);
                }
                _ => return Err(Refusal::Pool),
            }
        }
        s.next += 1;
        let id = s.next;
        let evict = Arc::new(Notify::new());
        s.pending.insert(
            id,
            Pending {
                ip,
                since: Instant::now(),
                evict: Arc::clone(&evict),
            },
        );
        *s.pending_per_address.entry(ip).or_insert(0) += 1;
        *s.per_address.entry(ip).or_insert(0) += 1;
        Ok(Ticket {
            gate: Arc::clone(self),
            id,
            ip,
            evict,
            logged_in: Mutex::new(false),
        })
    }

    /// Completes when `ip` may start one more connection under the rate limit.
    pub async fn wait_turn(&self, ip: IpAddr) {
        if self.rate.len() > 10_000 {
            self.rate.retain_recent();
        }
        self.rate.until_key_ready(&ip).await;
    }

    /// Connections not logged in yet, and logged-in ones.
    pub fn counts(&self) -> (usize, usize) {
        self.state
            .lock()
            .map(|s| (s.pending.len(), s.logged_in))
            .unwrap_or((0, 0))
    }
}

/// One admitted connection's place, given back when dropped.
pub struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    ip: IpAddr,
    evict: Arc<Notify>,
    logged_in: Mutex<bool>,
}

impl Ticket {
    /// Moves the connection from the pool of those not logged in to the logged-in ones; false when that pool is
    /// full or the connection was already pushed out.
    pub fn log_in(&self) -> bool {
        let (Ok(mut s), Ok(mut logged_in)) = (self.gate.state.lock(), self.logged_in.lock()) else {
            return false;
        };
        if *logged_in {
            return true;
        }
        if s.logged_in >= self.gate.limits.max_logged_in || !s.pending.contains_key(&self.id) {
            return false;
        }
        s.forget_pending(self.id);
        s.logged_in += 1;
        *logged_in = true;
        true
    }

    /// Completes when the connection is pushed out of the pool to make room for a newer one.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let logged_in = self.logged_in.lock().map(|l| *l).unwrap_or(false);
        if let Ok(mut s) = self.gate.state.lock() {
            if logged_in {
                s.logged_in = s.logged_in.saturating_sub(1);
            } else {
                s.forget_pending(self.id);
            }
            decrement(&mut s.per_address, self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_pending: usize) -> Arc<Gate> {
        Gate::new(GateLimits {
            max_pending,
            max_per_address: 8,
            max_logged_in: 2,
            per_second: NonZeroU32::new(1000).expect("nonzero"),
            burst: NonZeroU32::new(1000).expect("nonzero"),
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_full_pool_pushes_out_the_busiest_address_and_never_the_newcomer() {
        let g = gate(4);
        let flood: Vec<Ticket> = (0..4).map(|_| g.admit(ip(2)).expect("admitted")).collect();
        // The busiest address cannot push out its own connections to make room for more.
        assert_eq!(g.admit(ip(2)).err(), Some(Refusal::Pool));
        // Another address gets in; the flood's oldest connection is told to go.
        let customer = g.admit(ip(1)).expect("admitted");
        assert_eq!(g.counts(), (4, 0));
        assert!(customer.log_in());
        assert_eq!(g.counts(), (3, 1));
        drop(flood);
        assert_eq!(g.counts(), (0, 1));
        drop(customer);
        assert_eq!(g.counts(), (0, 0));
    }

    #[test]
    fn a_pushed_out_connection_cannot_log_in_and_logins_are_capped() {
        let g = gate(1);
        let first = g.admit(ip(2)).expect("admitted");
        let second = g.admit(ip(1)).expect("room made");
        assert!(!first.log_in(), "pushed out");
        assert!(second.log_in());
        let third = g.admit(ip(3)).expect("admitted");
        assert!(third.log_in());
        let fourth = g.admit(ip(4)).expect("admitted");
        assert!(!fourth.log_in(), "two logged in at most");
    }

    #[tokio::test]
    async fn per_address_and_rate_limits_hold() {
        let g = gate(100);
        let held: Vec<Ticket> = (0..8).map(|_| g.admit(ip(2)).expect("admitted")).collect();
        assert_eq!(g.admit(ip(2)).err(), Some(Refusal::PerAddress));
        drop(held);
        let slow = Gate::new(GateLimits {
            per_second: NonZeroU32::new(1).expect("nonzero"),
            burst: NonZeroU32::new(3).expect("nonzero"),
            ..g.limits
        });
        let soon = |ip| {
            let slow = Arc::clone(&slow);
            async move {
                tokio::time::timeout(std::time::Duration::from_millis(50), slow.wait_turn(ip))
                    .await
                    .is_ok()
            }
        };
        for _ in 0..3 {
            assert!(soon(ip(2)).await, "within the burst");
        }
        assert!(!soon(ip(2)).await, "past the burst, one a second");
        assert!(soon(ip(3)).await, "other addresses have their own bucket");
    }
}
