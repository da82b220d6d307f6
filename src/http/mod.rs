//! The HTTP front doors: the batched asynchronous erasure and access jobs of the seed's marketing platform
//! (`POST /accounts/{account}/gdpr_erasure`, `/gdpr_access`, then `GET /gdpr_jobs/{id}/status`, `/response`,
//! `/archive`; `POST /accounts/{account}/gdpr_preview` answers at once what an erasure would do; and the seed's
//! own paths `POST /rest/databases/{databaseId}/gdpr_erasure`, `GET /rest/gdpr_jobs/{jobId}/status` and
//! `/response`) and the agent privacy requests of the seed's contact centre (`POST /lcm`).
//!
//! A request that arrives here becomes a request file in gdprd's own format, submitted to the [`Journal`] (claimed,
//! with its copy in the state folder) before the client hears `202`, then its claim is handed to the workers. So
//! the engine, stores, journal, audit trail and retention treat it exactly as a file: a restart resumes it, its
//! execution log (and export archive) lands in the account's `GDPR_Result`. A job's lines (the lookup keys and
//! values as sent) are kept by the journal beside it until the account's retention has passed; then only a
//! tombstone stays and the job's URLs answer `410 Gone`.
//!
//! Every account opts in with `[accounts.http]` and its bearer token (stored as a SHA-256 hash); one account never
//! sees another's jobs. The token is checked before any byte of the body is read; bodies and lines are capped,
//! headers and bodies must arrive within their timeouts, connections are capped in all and per address
//! ([`server`]), submissions and reads are rate-limited per account, and failed authentications are throttled per
//! client address (behind a trusted proxy, the address it forwards), per token and per account named.

mod body;
pub mod config;
mod jobs;
mod lcm;
pub(crate) mod server;

pub use body::{international, parse_lines, BodyError, Line};

use crate::config::{AccountConfig, Config};
use crate::journal::Journal;
use crate::throttle::Throttle;
use crate::transports::JobSender;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The routes the server answers, as (method, OpenAPI path): what `docs/openapi.json` must document.
pub const ROUTES: [(&str, &str); 10] = [
    ("post", "/accounts/{account}/gdpr_erasure"),
    ("post", "/accounts/{account}/gdpr_preview"),
    ("post", "/accounts/{account}/gdpr_access"),
    ("get", "/gdpr_jobs/{id}/status"),
    ("get", "/gdpr_jobs/{id}/response"),
    ("get", "/gdpr_jobs/{id}/archive"),
    ("post", "/lcm"),
    ("post", "/rest/databases/{databaseId}/gdpr_erasure"),
    ("get", "/rest/gdpr_jobs/{jobId}/status"),
    ("get", "/rest/gdpr_jobs/{jobId}/response"),
];

/// An error answer: a status and a JSON body `{"error": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn internal(what: impl std::fmt::Display) -> ApiError {
        warn!(error = %what, "HTTP request failed inside gdprd");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "gdprd could not record the request; nothing was accepted: try again",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gdprd\""),
            );
        }
        response
    }
}

/// One kind of per-account rate (submissions or reads): governor's token bucket per account, made again when a
/// reload changes the quota.
struct Rate {
    quota: Quota,
    limiter: DefaultKeyedRateLimiter<String>,
}

/// What failed authentications are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Failure {
    /// The client's address (behind a trusted proxy, the one it forwards).
    Address(IpAddr),
    /// The SHA-256 of a bearer token that opens no account.
    Token(String),
    /// The account a request names in its path (`/accounts/{account}/…`).
    Account(String),
}

/// Who is calling, once the token is checked: what every handler after [`admit`] sees.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    /// The account the bearer token opens.
    pub account: AccountConfig,
}

/// What the front doors share: the running config, the daemon's journal and the workers' queue.
pub struct HttpState {
    config: Arc<RwLock<Arc<Config>>>,
    journal: Journal,
    jobs: JobSender,
    /// The submission rate (`true`) and the read rate (`false`).
    rates: Mutex<HashMap<bool, Rate>>,
    failures: Mutex<Throttle<Failure>>,
    /// `[http] trusted_proxies` as at start (like the connection caps, they change at a restart).
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl HttpState {
    /// State over the running config `config` (a reload replaces what it holds), recording in `journal` and
    /// sending the claims to execute to `jobs`.
    pub fn new(config: Arc<RwLock<Arc<Config>>>, journal: Journal, jobs: JobSender) -> HttpState {
        let trusted_proxies = config
            .read()
            .map(|c| c.http.trusted_proxies.clone())
            .unwrap_or_default();
        HttpState {
            journal,
            trusted_proxies,
            config,
            jobs,
            rates: Mutex::default(),
            failures: Mutex::new(Throttle::new(0, Duration::ZERO)),
        }
    }

    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .map(|c| Arc::clone(&c))
            .unwrap_or_else(|e| Arc::clone(&e.into_inner()))
    }

    /// The account whose token the request carries. A client address that failed `auth_failures` times in the
    /// window is refused whatever it sends; a token that opens no account, or one sent for an account that has
    /// seen that many failures, gets `429` instead of `401`, but a right token is never refused for the failures
    /// of other clients. `from` is `None` when the peer is a trusted proxy that forwarded no address.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        from: Option<IpAddr>,
        named: Option<&str>,
    ) -> Result<AccountConfig, ApiError> {
        let config = self.config();
        let now = Instant::now();
        let mut failures = self
            .failures
            .lock()
            .map_err(|_| ApiError::internal("throttle state poisoned"))?;
        // The limits in force now: they reload with the config.
        failures.set_limits(config.http.auth_failures, config.http.auth_window_seconds);
        let too_many = |what: &str| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed authentications {what}: wait and try again"),
            )
        };
        if let Some(ip) = from {
            if failures.blocked(Failure::Address(ip), now) {
                return Err(too_many("from this address"));
            }
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let digest = token.map(|t| hex::encode(Sha256::digest(t.as_bytes())));
        let account = digest.as_deref().and_then(|d| {
            config.accounts.iter().find(|a| {
                a.http.as_ref().is_some_and(|h| {
                    h.token_hash
                        .strip_prefix("sha256:")
                        .is_some_and(|x| x.eq_ignore_ascii_case(d))
                })
            })
        });
        if let Some(a) = account {
            return Ok(a.clone());
        }
        let mut keys: Vec<Failure> = Vec::new();
        keys.extend(from.map(Failure::Address));
        keys.extend(digest.map(Failure::Token));
        keys.extend(named.map(|n| Failure::Account(n.to_owned())));
        if let Some(key) = keys.iter().find(|k| failures.blocked((*k).clone(), now)) {
            return Err(too_many(match key {
                Failure::Address(_) => "from this address",
                Failure::Token(_) => "with this token",
                Failure::Account(_) => "for this account",
            }));
        }
        for key in keys {
            failures.failed(key, now);
        }
        drop(failures);
        warn!(
            // A pseudonym, never the address in clear (it is personal data), as the SFTP server logs its peers.
            client = %from.map_or_else(
                || "unknown (a trusted proxy forwarded none)".to_owned(),
                |ip| crate::transports::sftp_server::peer::Peer(ip).to_string()
            ),
            "HTTP authentication failed"
        );
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            if token.is_some() {
                "the bearer token opens no account"
            } else {
                "send the account's token as `Authorization: Bearer TOKEN`"
            },
        ))
    }

    /// Takes one token from the account's submission (`submit`) or read bucket, or answers 429. A submission
    /// bucket holds `submit_per_minute` and refills over a minute; a read bucket holds ten seconds' worth of
    /// `reads_per_second`.
    fn rate(&self, account: &str, submit: bool) -> Result<(), ApiError> {
        let config = self.config();
        let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = if submit {
            Quota::per_minute(nonzero(config.http.submit_per_minute))
        } else {
            let per_second = config.http.reads_per_second;
            Quota::per_second(nonzero(per_second))
                .allow_burst(nonzero(per_second.saturating_mul(10)))
        };
        let mut rates = self
            .rates
            .lock()
            .map_err(|_| ApiError::internal("rate state poisoned"))?;
        let rate = rates.entry(submit).or_insert_with(|| Rate {
            quota,
            limiter: RateLimiter::keyed(quota),
        });
        if rate.quota != quota {
            *rate = Rate {
                quota,
                limiter: RateLimiter::keyed(quota),
            };
        }
        if rate.limiter.len() > 10_000 {
            rate.limiter.retain_recent();
        }
        if rate.limiter.check_key(&account.to_owned()).is_err() {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                if submit {
                    format!(
                        "this account may submit {} requests a minute: wait and try again",
                        config.http.submit_per_minute
                    )
                } else {
                    format!(
                        "this account may read {} times a second: poll less often",
                        config.http.reads_per_second
                    )
                },
            ));
        }
        Ok(())
    }
}

/// The base of the URLs gdprd hands out: `public_url`, or `http://` and the request's `Host`.
fn base_url(config: &Config, headers: &HeaderMap) -> String {
    if let Some(url) = &config.http.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .map(str::to_owned)
        .or_else(|| config.http.listen.map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("http://{host}")
}

/// The address of the client: the peer, or when the peer is one of `[http] trusted_proxies`, the address it
/// forwards in `X-Forwarded-For` (the right-most one that is not itself a trusted proxy). `None` when a trusted
/// proxy forwards none: gdprd then cannot tell its clients apart.
fn client_address(proxies: &[ipnet::IpNet], peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
    let trusted = |ip: &IpAddr| proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in forwarded.iter().rev() {
        // A hop the proxy could not read (`unknown`, garbage) ends what can be believed.
        let ip = hop.parse::<IpAddr>().ok()?;
        if !trusted(&ip) {
            return Some(ip);
        }
    }
    None
}

/// The account a path names, for the throttle: `/accounts/{account}/…`.
fn named_account(path: &str) -> Option<&str> {
    path.strip_prefix("/accounts/")
        .and_then(|rest| rest.split('/').next())
        .filter(|n| !n.is_empty())
}

/// Runs before every route, before any byte of the body is read: checks the token (`401`/`429`) and the
/// account's rate (`429`), then reads the body within `body_timeout_seconds` (`408`) and `max_body_bytes`
/// (`413`), and hands the request on with its [`Caller`].
async fn admit(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let config = state.config();
    let from = client_address(&state.trusted_proxies, peer.ip(), request.headers());
    let account =
        state.authenticate(request.headers(), from, named_account(request.uri().path()))?;
    state.rate(&account.name, request.method() == Method::POST)?;
    let limit = config.http.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than the limit of {limit} bytes; split it into several jobs"
            ),
        )
    };
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let (mut parts, body) = request.into_parts();
    let timeout = config.http.body_timeout_seconds;
    let bytes = match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} seconds",
                    timeout.as_secs()
                ),
            ))
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Ok(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            ))
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    parts.extensions.insert(Caller { account });
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

/// The router over `state`.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route(
            "/accounts/{account}/gdpr_erasure",
            post(jobs::submit_erasure),
        )
        .route("/accounts/{account}/gdpr_access", post(jobs::submit_access))
        .route("/accounts/{account}/gdpr_preview", post(jobs::preview))
        .route("/gdpr_jobs/{id}/status", get(jobs::status))
        .route("/gdpr_jobs/{id}/response", get(jobs::response))
        .route("/gdpr_jobs/{id}/archive", get(jobs::archive))
        .route("/lcm", post(lcm::submit))
        .route(
            "/rest/databases/{database}/gdpr_erasure",
            post(jobs::submit_wca_erasure),
        )
        .route("/rest/gdpr_jobs/{id}/status", get(jobs::wca_status))
        .route("/rest/gdpr_jobs/{id}/response", get(jobs::wca_response))
        // [`admit`] has read the body within `max_body_bytes` (which reloads); the extractors need no limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            admit,
        ))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such resource (see docs/openapi.json)",
            )
        })
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not served here (see docs/openapi.json)"),
            )
        })
        .with_state(state)
}

/// Listens where `[http] listen` says.
///
/// # Errors
/// The address cannot be bound.
pub async fn bind(config: &Config) -> std::io::Result<tokio::net::TcpListener> {
    let listen = config
        .http
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    tokio::net::TcpListener::bind(listen).await
}

/// Serves the front doors on `listener` until `shutdown` is cancelled; requests in flight then finish. Every hour
/// (and at start) jobs past their account's retention lose their lines. The connection limits and the header
/// timeout are those at start; the others reload with the config.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    shutdown: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(address = %addr, "HTTP front doors listening");
    }
    let sweeper = {
        let (state, stop) = (Arc::clone(&state), shutdown.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
                let state = Arc::clone(&state);
                let _ = tokio::task::spawn_blocking(move || jobs::sweep(&state)).await;
            }
        }
    };
    let http = state.config().http.clone();
    let limits = server::Limits {
        name: "HTTP front doors",
        header_timeout: http.header_timeout_seconds,
        max_connections: http.max_connections,
        max_per_address: http.max_connections_per_address,
        uncapped: state.trusted_proxies.clone(),
    };
    tokio::join!(
        server::serve(listener, router(state), limits, shutdown.cancelled_owned()),
        sweeper
    );
}

/// Extractors every handler takes: the state, the caller [`admit`] let in, the headers.
type Ctx = (State<Arc<HttpState>>, Extension<Caller>, HeaderMap);

/// Runs blocking journal and file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
}

/// A job id from the path.
fn job_id(Path(id): Path<String>) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such job"))
}

/// Makes a new random bearer token and the `token_hash` line for the config.
pub fn new_token() -> (String, String) {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("gdprd_{}", hex::encode(bytes));
    let hash = format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())));
    (token, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_the_forwarded_one_only_behind_a_trusted_proxy() {
        let proxies: Vec<ipnet::IpNet> = ["127.0.0.1", "10.0.0.0/8"]
            .iter()
            .filter_map(|p| config::parse_network(p))
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let forwarded = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_str(v).expect("value"));
            h
        };
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_address(&proxies, ip("192.0.2.1"), &forwarded("203.0.113.9")),
            Some(ip("192.0.2.1"))
        );
        // The right-most hop that is not a trusted proxy; what the client wrote before it is not believed.
        assert_eq!(
            client_address(
                &proxies,
                ip("127.0.0.1"),
                &forwarded("6.6.6.6, 203.0.113.9, 10.1.2.3")
            ),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_address(&proxies, ip("127.0.0.1"), &forwarded("unknown")),
            None
        );
        assert_eq!(
            client_address(&proxies, ip("127.0.0.1"), &HeaderMap::new()),
            None
        );
        assert_eq!(named_account("/accounts/acme/gdpr_erasure"), Some("acme"));
        assert_eq!(named_account("/gdpr_jobs/1/status"), None);
    }
}
