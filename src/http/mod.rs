//! The HTTP front doors: the batched asynchronous erasure and access jobs of the seed's marketing platform
//! (`POST /accounts/{account}/gdpr_erasure`, `/gdpr_access`, then `GET /gdpr_jobs/{id}/status`, `/response`,
//! `/archive`) and the agent privacy requests of the seed's contact centre (`POST /lcm`).
//!
//! A request that arrives here becomes a request file in gdprd's own format, claimed in the [`Ledger`] with its
//! copy in the state folder before the client hears `202`, then handed to the worker like a dropped file. So the
//! engine, stores, journal, audit trail and retention treat it exactly as a file: a restart resumes it, its
//! execution log (and export archive) lands in the account's `GDPR_Result`. A job's lines (the lookup keys and
//! values as sent) are kept beside it in `STATE/jobs/ID.lines.json` until the account's retention has passed; then
//! only a tombstone stays and the job's URLs answer `410 Gone`.
//!
//! Every account opts in with `[accounts.http]` and its bearer token (stored as a SHA-256 hash); one account never
//! sees another's jobs. Bodies and lines are capped, submissions and reads rate-limited per account, and failed
//! authentications throttled per address.

mod body;
mod jobs;
mod lcm;

pub use body::{international, parse_lines, BodyError, Line};

use crate::config::{AccountConfig, Config};
use crate::ledger::Ledger;
use crate::transports::sftp_server::auth::Throttle;
use crate::transports::Job;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

/// The routes the server answers, as (method, OpenAPI path): what `docs/openapi.json` must document.
pub const ROUTES: [(&str, &str); 6] = [
    ("post", "/accounts/{account}/gdpr_erasure"),
    ("post", "/accounts/{account}/gdpr_access"),
    ("get", "/gdpr_jobs/{id}/status"),
    ("get", "/gdpr_jobs/{id}/response"),
    ("get", "/gdpr_jobs/{id}/archive"),
    ("post", "/lcm"),
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

/// A token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What the front doors share: the running config, their own ledger connection and the worker's queue.
pub struct HttpState {
    config: Arc<RwLock<Arc<Config>>>,
    ledger: Mutex<Ledger>,
    jobs: UnboundedSender<Job>,
    buckets: Mutex<HashMap<(String, bool), Bucket>>,
    failures: Mutex<Throttle>,
    /// Held while a job is turned into a tombstone.
    expiring: Mutex<()>,
}

impl HttpState {
    /// State over the running config `config` (a reload replaces what it holds), sending work to `jobs`.
    ///
    /// # Errors
    /// The ledger cannot be opened.
    pub fn new(
        config: Arc<RwLock<Arc<Config>>>,
        jobs: UnboundedSender<Job>,
    ) -> Result<HttpState, crate::ledger::LedgerError> {
        let state_dir = config
            .read()
            .map(|c| c.state_dir.clone())
            .unwrap_or_default();
        for dir in ["jobs", "claimed"] {
            let _ = std::fs::create_dir_all(state_dir.join(dir));
        }
        Ok(HttpState {
            ledger: Mutex::new(Ledger::open(&state_dir)?),
            config,
            jobs,
            buckets: Mutex::default(),
            failures: Mutex::new(Throttle::new(0, Duration::ZERO)),
            expiring: Mutex::default(),
        })
    }

    /// The front doors' ledger connection.
    fn ledger(&self) -> Result<std::sync::MutexGuard<'_, Ledger>, ApiError> {
        self.ledger
            .lock()
            .map_err(|_| ApiError::internal("ledger lock poisoned"))
    }

    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .map(|c| Arc::clone(&c))
            .unwrap_or_else(|e| Arc::clone(&e.into_inner()))
    }

    /// The account whose token the request carries. Failures count against the address.
    fn authenticate(&self, headers: &HeaderMap, from: IpAddr) -> Result<AccountConfig, ApiError> {
        let config = self.config();
        if let Ok(mut failures) = self.failures.lock() {
            // The limits in force now: they reload with the config.
            failures.set_limits(
                config.http.auth_failures,
                Duration::from_secs(config.http.auth_window_seconds),
            );
            if failures.blocked(from, Instant::now()) {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed authentications from this address: wait and try again",
                ));
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
        match account {
            Some(a) => Ok(a.clone()),
            None => {
                if let Ok(mut failures) = self.failures.lock() {
                    failures.failed(from, Instant::now());
                }
                warn!(address = %from, "HTTP authentication failed");
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    if token.is_some() {
                        "the bearer token opens no account"
                    } else {
                        "send the account's token as `Authorization: Bearer TOKEN`"
                    },
                ))
            }
        }
    }

    /// Takes one token from the account's submission (`submit`) or read bucket, or answers 429.
    fn rate(&self, account: &str, submit: bool) -> Result<(), ApiError> {
        let config = self.config();
        let (per_second, burst) = if submit {
            let per_minute = f64::from(config.http.submit_per_minute);
            (per_minute / 60.0, per_minute)
        } else {
            let per_second = f64::from(config.http.reads_per_second);
            (per_second, per_second * 10.0)
        };
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| ApiError::internal("rate state poisoned"))?;
        let bucket = buckets
            .entry((account.to_owned(), submit))
            .or_insert(Bucket {
                tokens: burst,
                at: Instant::now(),
            });
        bucket.tokens = (bucket.tokens + bucket.at.elapsed().as_secs_f64() * per_second).min(burst);
        bucket.at = Instant::now();
        if bucket.tokens < 1.0 {
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
        bucket.tokens -= 1.0;
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
        .or(config.http.listen.as_deref())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The router over `state`.
pub fn router(state: Arc<HttpState>) -> Router {
    let max_body = state.config().http.max_body_bytes;
    Router::new()
        .route(
            "/accounts/{account}/gdpr_erasure",
            post(jobs::submit_erasure),
        )
        .route("/accounts/{account}/gdpr_access", post(jobs::submit_access))
        .route("/gdpr_jobs/{id}/status", get(jobs::status))
        .route("/gdpr_jobs/{id}/response", get(jobs::response))
        .route("/gdpr_jobs/{id}/archive", get(jobs::archive))
        .route("/lcm", post(lcm::submit))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such resource (see docs/openapi.json)",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Listens where `[http] listen` says.
///
/// # Errors
/// The address cannot be bound.
pub async fn bind(config: &Config) -> std::io::Result<tokio::net::TcpListener> {
    let listen = config.http.listen.as_deref().unwrap_or("127.0.0.1:0");
    tokio::net::TcpListener::bind(listen).await
}

/// Serves the front doors on `listener` until `shutdown` completes; requests in flight then finish. Every hour
/// (and at start) jobs past their account's retention lose their lines.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(address = %addr, "HTTP front doors listening");
    }
    let sweeper = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let state = Arc::clone(&state);
                let _ = tokio::task::spawn_blocking(move || jobs::sweep(&state)).await;
            }
        })
    };
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        warn!(error = %e, "HTTP front doors stopped");
    }
    sweeper.abort();
}

/// Extractors every authenticated handler takes.
type Ctx = (State<Arc<HttpState>>, ConnectInfo<SocketAddr>, HeaderMap);

/// Runs blocking ledger and file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
}

/// A body that could not be read (over `max_body_bytes`, or cut off), as a JSON error like the others.
fn body_error(state: &HttpState, e: &axum::extract::rejection::BytesRejection) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            format!(
                "the body is larger than the limit of {} bytes; split it into several jobs",
                state.config().http.max_body_bytes
            ),
        );
    }
    ApiError::new(
        status,
        format!("the body could not be read: {}", e.body_text()),
    )
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
