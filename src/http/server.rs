//! The listener under both of gdprd's HTTP endpoints (the front doors and the metrics): hyper's HTTP/1.1
//! connection with a timer, so a client that does not finish its headers, or leaves a connection idle, is dropped
//! after the header timeout; a cap on open connections in all and per client address, checked as each
//! connection is accepted (over the cap: `503` and closed at once, so no file handle is held); and accept errors
//! (`EMFILE` when the process is out of file handles) answered by a capped backoff instead of a hot loop.

use crate::backoff::AcceptBackoff;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;
use tracing::{debug, warn};

/// The limits of one endpoint.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The endpoint's name in logs (`HTTP front doors`, `metrics`).
    pub name: &'static str,
    /// Time to send a request's headers; also how long an idle connection is kept.
    pub header_timeout: Duration,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one peer address.
    pub max_per_address: usize,
    /// Peers the per-address cap does not apply to (trusted proxies carry many clients).
    pub uncapped: Vec<ipnet::IpNet>,
}

/// How long requests in flight get to finish once the server stops: a client that keeps a connection open does
/// not hold the stop up.
const DRAIN: Duration = Duration::from_secs(5);

/// The largest buffer hyper keeps for one connection's headers (its default is about 400 KiB).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Open connections per peer address.
type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Open connections: permits of the total, and the counts per peer address.
struct Open {
    total: Arc<Semaphore>,
    per_address: Counts,
}

/// One accepted connection's place; given back when the connection ends.
struct Slot {
    _permit: OwnedSemaphorePermit,
    address: Option<(Counts, IpAddr)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((counts, ip)) = &self.address {
            if let Ok(mut counts) = counts.lock() {
                if let Some(n) = counts.get_mut(ip) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(ip);
                    }
                }
            }
        }
    }
}

impl Open {
    /// A place for a connection from `ip`, or why there is none.
    fn take(&self, ip: IpAddr, limits: &Limits) -> Result<Slot, &'static str> {
        let permit = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| "the server has all the connections it takes; try again shortly")?;
        if limits.uncapped.iter().any(|n| n.contains(&ip)) {
            return Ok(Slot {
                _permit: permit,
                address: None,
            });
        }
        let mut counts = self
            .per_address
            .lock()
            .map_err(|_| "connection state poisoned")?;
        let n = counts.entry(ip).or_insert(0);
        if *n >= limits.max_per_address {
            return Err("this address has all the connections it may open; close one first");
        }
        *n += 1;
        Ok(Slot {
            _permit: permit,
            address: Some((Arc::clone(&self.per_address), ip)),
        })
    }
}

/// Answers a connection over the cap with `503` (as far as the socket takes it without waiting) and closes it.
fn refuse(stream: TcpStream, why: &str) {
    let body = serde_json::json!({ "error": why }).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // A straight write to the kernel's socket: `TcpStream::try_write` answers `WouldBlock` until the runtime's
    // reactor has seen the new socket become writable, which a loaded machine may not have done yet, and the
    // client then got a bare close instead of the 503. The socket stays non-blocking, so this never waits.
    if let Ok(stream) = stream.into_std() {
        use std::io::Write;
        let _ = (&stream).write(answer.as_bytes());
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes; requests in flight then get [`DRAIN`]
/// to finish.
/// Handlers see the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let graceful = GracefulShutdown::new();
    let open = Open {
        total: Arc::new(Semaphore::new(limits.max_connections)),
        per_address: Arc::default(),
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut backoff = AcceptBackoff::new(
        limits.name,
        Duration::from_millis(10),
        Duration::from_secs(1),
    );
    let mut refused: (u64, Option<Instant>) = (0, None);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.succeeded();
                a
            }
            Err(e) => {
                let wait = backoff.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let slot = match open.take(peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(why) => {
                refuse(stream, why);
                refused.0 += 1;
                if refused
                    .1
                    .is_none_or(|w| w.elapsed() >= Duration::from_secs(10))
                {
                    warn!(
                        endpoint = limits.name,
                        refused = refused.0,
                        reason = why,
                        "connections refused over the cap"
                    );
                    refused = (0, Some(Instant::now()));
                }
                continue;
            }
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection.await {
                debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        debug!(
            endpoint = limits.name,
            "connections still open after the drain; they close with the process"
        );
    }
}
