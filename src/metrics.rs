//! Metrics for Prometheus, off by default (`[metrics] listen = "127.0.0.1:9464"`, a [`MetricsConfig`]): files and contacts by outcome,
//! store call latencies, the queue of names waiting for a worker, open SFTP sessions and failed SFTP logins,
//! and the deadline clock's backlog (open requests by account, overdue requests, the oldest open request's age;
//! see [`crate::deadline`]).
//! The counters are process-wide ([`get`]); [`serve`] answers `GET /metrics` (and `HEAD`) in the Prometheus text
//! format on a loopback address, through axum on the same listener as the HTTP front doors
//! ([`crate::http::server`]): few connections, short timeouts, and a backoff when accepting fails. The backlog
//! gauges are read from the ledger at each scrape, by the `refresh` that [`serve`] is given.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// `[metrics]`: the Prometheus endpoint, off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsConfig {
    /// A loopback address (`127.0.0.1:9464`) where `GET /metrics` is served.
    pub listen: Option<SocketAddr>,
}

/// `[metrics]` as written; [`RawMetricsConfig::validate`] makes the [`MetricsConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetricsConfig {
    #[serde(default)]
    listen: Option<String>,
}

/// Reads `[metrics]` as [`crate::config::Config::load`] does.
impl<'de> Deserialize<'de> for MetricsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawMetricsConfig::deserialize(d)?
            .validate()
            .map_err(serde::de::Error::custom)
    }
}

impl RawMetricsConfig {
    /// Reads the address; the endpoint has no authentication, so it must be a loopback one.
    ///
    /// # Errors
    /// [`MetricsConfigError`] with the value as written.
    pub(crate) fn validate(self) -> Result<MetricsConfig, MetricsConfigError> {
        let Some(listen) = self.listen else {
            return Ok(MetricsConfig::default());
        };
        let Ok(addr) = listen.parse::<SocketAddr>() else {
            return Err(MetricsConfigError::Listen { listen });
        };
        if !addr.ip().is_loopback() {
            return Err(MetricsConfigError::NotLoopback { listen });
        }
        Ok(MetricsConfig { listen: Some(addr) })
    }
}

/// What is wrong with `[metrics]`, found at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsConfigError {
    /// `listen` is not an address and port.
    #[error("metrics.listen {listen:?} is not an address:port")]
    Listen {
        /// The value as written.
        listen: String,
    },
    /// `listen` is not a loopback address.
    #[error("metrics.listen {listen:?}: the endpoint has no authentication, so it listens on loopback only (127.0.0.1 or [::1]); put a proxy in front to reach it from elsewhere")]
    NotLoopback {
        /// The value as written.
        listen: String,
    },
}

/// An outcome label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `done`, `rejected`… for files; `success`, `not_found`, `error` for contacts.
    pub outcome: String,
}

/// An account label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Account {
    /// The account's name.
    pub account: String,
}

/// A store call label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreCall {
    /// The store's name.
    pub store: String,
    /// `forget` or `export`.
    pub action: String,
}

/// Everything gdprd counts.
pub struct Metrics {
    /// Files finished, by outcome.
    pub files: Family<Outcome, Counter>,
    /// Contacts answered, by outcome.
    pub contacts: Family<Outcome, Counter>,
    /// Seconds a store took for one batch.
    pub store_seconds: Family<StoreCall, Histogram>,
    /// Names sent to the workers and not yet taken.
    pub queue: Gauge,
    /// Open sessions on the embedded SFTP server.
    pub sftp_sessions: Gauge,
    /// Failed logins on the embedded SFTP server.
    pub auth_failures: Counter,
    /// Requests accepted by the HTTP front doors, by origin (`api` jobs, `lcm` agent requests).
    pub http_jobs: Family<Outcome, Counter>,
    /// Open requests (files and HTTP jobs), by account.
    pub open_requests: Family<Account, Gauge>,
    /// Open requests past their due day.
    pub overdue_requests: Gauge,
    /// Seconds since the oldest open request was received.
    pub oldest_open_age: Gauge<f64, AtomicU64>,
    registry: Registry,
}

fn store_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("gdprd");
        let files = Family::<Outcome, Counter>::default();
        let contacts = Family::<Outcome, Counter>::default();
        let store_seconds = Family::<StoreCall, Histogram>::new_with_constructor(
            store_histogram as fn() -> Histogram,
        );
        let queue = Gauge::default();
        let sftp_sessions = Gauge::default();
        let auth_failures = Counter::default();
        let http_jobs = Family::<Outcome, Counter>::default();
        let open_requests = Family::<Account, Gauge>::default();
        let overdue_requests = Gauge::default();
        let oldest_open_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "open_requests",
            "Open requests (in work, or finished with an error gdprd owes work for), by account",
            open_requests.clone(),
        );
        registry.register(
            "overdue_requests",
            "Open requests past their due day",
            overdue_requests.clone(),
        );
        registry.register(
            "oldest_open_request_age_seconds",
            "Seconds since the oldest open request was received (0 when none is open)",
            oldest_open_age.clone(),
        );
        registry.register(
            "http_jobs",
            "Requests accepted by the HTTP front doors, by origin",
            http_jobs.clone(),
        );
        registry.register("files", "Files finished, by outcome", files.clone());
        registry.register(
            "contacts",
            "Contacts answered, by outcome",
            contacts.clone(),
        );
        registry.register(
            "store_seconds",
            "Seconds one store call took for one batch",
            store_seconds.clone(),
        );
        registry.register("queue_depth", "Names waiting for a worker", queue.clone());
        registry.register(
            "sftp_sessions",
            "Open sessions on the embedded SFTP server",
            sftp_sessions.clone(),
        );
        registry.register(
            "sftp_auth_failures",
            "Failed logins on the embedded SFTP server",
            auth_failures.clone(),
        );
        Metrics {
            files,
            contacts,
            store_seconds,
            queue,
            sftp_sessions,
            auth_failures,
            http_jobs,
            open_requests,
            overdue_requests,
            oldest_open_age,
            registry,
        }
    })
}

impl Metrics {
    /// Counts one request accepted over HTTP (`origin`: `api` or `lcm`).
    pub fn http_job(&self, origin: &str) {
        self.http_jobs
            .get_or_create(&Outcome {
                outcome: origin.to_owned(),
            })
            .inc();
    }

    /// Counts one finished file and its contacts.
    pub fn file(&self, outcome: &str, success: u64, not_found: u64, errors: u64) {
        let label = |o: &str| Outcome {
            outcome: o.to_owned(),
        };
        self.files.get_or_create(&label(outcome)).inc();
        self.contacts
            .get_or_create(&label("success"))
            .inc_by(success);
        self.contacts
            .get_or_create(&label("not_found"))
            .inc_by(not_found);
        self.contacts.get_or_create(&label("error")).inc_by(errors);
    }

    /// Records how long `store` took for one `action` call.
    pub fn store_call(&self, store: &str, action: &str, seconds: f64) {
        self.store_seconds
            .get_or_create(&StoreCall {
                store: store.to_owned(),
                action: action.to_owned(),
            })
            .observe(seconds);
    }

    /// Sets the deadline gauges to `backlog`.
    pub fn backlog(&self, backlog: &crate::deadline::Backlog) {
        for (account, open) in &backlog.open {
            self.open_requests
                .get_or_create(&Account {
                    account: account.clone(),
                })
                .set(i64::try_from(*open).unwrap_or(i64::MAX));
        }
        self.overdue_requests
            .set(i64::try_from(backlog.overdue).unwrap_or(i64::MAX));
        self.oldest_open_age.set(backlog.oldest_age_seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Connections the metrics endpoint keeps open at once (a scraper or two, and an operator's curl).
pub const MAX_CONNECTIONS: usize = 8;

/// What refreshes the gauges read at scrape time (the deadline backlog, from the ledger); it blocks.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// The metrics endpoint: `GET /metrics` (axum answers `HEAD` too), anything else `404`.
fn router(refresh: Refresh) -> axum::Router {
    use axum::http::{header, StatusCode};
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || async move {
                let _ = tokio::task::spawn_blocking(move || refresh()).await;
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    get().render(),
                )
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "only GET /metrics is served\n") })
}

/// Serves `GET /metrics` on `listener` until `shutdown` is cancelled, calling `refresh` before each scrape.
pub async fn serve(
    listener: tokio::net::TcpListener,
    refresh: Refresh,
    shutdown: CancellationToken,
) {
    if let Ok(listen) = listener.local_addr() {
        info!(listen = %listen, "metrics endpoint listening");
    }
    let limits = crate::http::server::Limits {
        name: "metrics",
        header_timeout: Duration::from_secs(5),
        max_connections: MAX_CONNECTIONS,
        max_per_address: MAX_CONNECTIONS,
        uncapped: Vec::new(),
    };
    crate::http::server::serve(
        listener,
        router(refresh),
        limits,
        shutdown.cancelled_owned(),
    )
    .await;
}
