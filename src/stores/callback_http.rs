//! The `callback-http` store: callbacks kept by a callback service (seed 000, Genesys Callback), reached over its
//! REST API. A forget deletes a customer's callbacks; those a dialer may be working on (`PROCESSING`, `QUEUED`,
//! `ROUTING`) are cancelled first, the cancel confirmed, and then deleted. An export lists them.
//!
//! The API gdprd speaks (paths under `base_url`):
//!
//! | call | answer |
//! |---|---|
//! | `GET /callbacks?customer_number=+17815551212&customer_number=…` | `200`, a JSON array of callback objects, each with at least `id`, `customer_number`, `state` |
//! | `POST /callbacks/{id}/cancel` | `200` once cancelled; `409` when the state does not allow it |
//! | `GET /callbacks/{id}` | `200` and the callback, or `404` |
//! | `DELETE /callbacks/{id}` | `200`/`204`, `404` when already gone, `409` when the state does not allow it |
//!
//! Every call carries `Authorization: Bearer <token>` when a token is configured, and is retried on a broken
//! connection, `429` and `5xx`, with capped exponential backoff and jitter ([`crate::backoff`]); a cancel is
//! confirmed by asking again on the same backoff. Every wait ends when the daemon stops: the store then fails
//! with [`Unreachable::Stopped`], and the engine leaves the chunk to the next start.

use super::callback_state::{self, CANCELLED};
use super::mapping::PhoneConfig;
use super::matching::Matcher;
use super::{
    key_index, Action, Batch, CallFailure, CallbackError, ExportSink, Found, Store,
    StoreConfigError, StoreError, StorePreview, TablePreview, Unreachable,
};
use crate::backoff::{self, Backoff};
use crate::config::de;
use crate::requests::{DeviceKind, Kind};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The longest wait between two tries, before jitter.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);
/// The most `retries` a config may ask for: with the longest first delay, about two minutes of waiting.
pub const MAX_RETRIES: u32 = 10;
/// The longest first delay (`retry_delay_ms`) a config may ask for.
pub const MAX_FIRST_DELAY: Duration = Duration::from_secs(10);

/// A `type = "callback-http"` store: a callback service's REST API .
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackHttpConfig {
    /// The API's base URL, `https://callbacks.example.com/api/v1`.
    pub base_url: String,
    /// File holding the bearer token (its first line).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// How long one call may take (`timeout_seconds`, default 10).
    #[serde(default = "default_timeout", deserialize_with = "de::seconds")]
    pub timeout_seconds: Duration,
    /// Retries of a call that failed on the network, `429` or `5xx` (default 3, at most [`MAX_RETRIES`]).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The first retry's delay (`retry_delay_ms`, in milliseconds), doubled for each next one up to 10 s
    /// (default 200 ms, at most [`MAX_FIRST_DELAY`]).
    #[serde(default = "default_retry_delay", deserialize_with = "de::millis")]
    pub retry_delay_ms: Duration,
    /// Customer numbers asked in one listing call (default 50).
    #[serde(default = "default_numbers_per_request")]
    pub numbers_per_request: usize,
    /// The callback field holding the account id that a request's `accountid` must equal.
    #[serde(default)]
    pub account_field: Option<String>,
    /// How the service's customer numbers are read.
    #[serde(default)]
    pub phones: PhoneConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_retries() -> u32 {
    3
}

fn default_retry_delay() -> Duration {
    Duration::from_millis(200)
}

fn default_numbers_per_request() -> usize {
    50
}

impl CallbackHttpConfig {
    /// Checks the URL, the token source and the timeout.
    ///
    /// # Errors
    /// [`StoreConfigError`] naming the store `name`.
    pub(crate) fn validate(&self, name: &str) -> Result<(), StoreConfigError> {
        use StoreConfigError as E;
        let store = name.to_owned();
        let scheme = self.base_url.starts_with("http://") || self.base_url.starts_with("https://");
        if !scheme {
            return Err(E::BaseUrl { store });
        }
        if self.token_file.is_some() && self.token_env.is_some() {
            return Err(E::TokenTwice { store });
        }
        if self.timeout_seconds.is_zero() {
            return Err(E::Timeout { store });
        }
        if self.retries > MAX_RETRIES {
            return Err(E::Retries {
                store,
                retries: self.retries,
                max: MAX_RETRIES,
            });
        }
        if self.retry_delay_ms > MAX_FIRST_DELAY {
            return Err(E::RetryDelay {
                store,
                delay: self.retry_delay_ms,
                max: MAX_FIRST_DELAY,
            });
        }
        Ok(())
    }
}

/// A callback service.
pub struct CallbackStore {
    name: String,
    config: CallbackHttpConfig,
    agent: ureq::Agent,
    token: Option<String>,
    matcher: Matcher,
    stop: CancellationToken,
}

/// One callback the service returned, with the targets it answers.
struct Found1 {
    id: String,
    state: String,
    fields: serde_json::Map<String, Value>,
    targets: Vec<usize>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl CallbackStore {
    /// A store for the service at `config.base_url`; nothing is called until it is used. Its waits between
    /// tries end when `stop` is cancelled.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the token cannot be read.
    pub fn open(
        name: &str,
        config: &CallbackHttpConfig,
        stop: &CancellationToken,
    ) -> Result<CallbackStore, StoreError> {
        let token =
            crate::credentials::token(config.token_file.as_deref(), config.token_env.as_deref())?;
        // rustls (see `super::tls`), trusting the platform's root certificates.
        let roots = super::tls::platform_roots()
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(super::tls::provider())
            .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout_seconds))
            .http_status_as_error(false)
            .tls_config(tls)
            .build()
            .into();
        Ok(CallbackStore {
            name: name.to_owned(),
            config: config.clone(),
            agent,
            token,
            matcher: Matcher::new(config.phones.clone()),
            stop: stop.clone(),
        })
    }

    /// The backoff between two tries of one call, or two looks at a cancel.
    fn backoff(&self) -> Backoff {
        Backoff::new(self.config.retry_delay_ms, MAX_RETRY_DELAY).with_jitter()
    }

    /// Waits `delay`; [`Unreachable::Stopped`] when the daemon stops first.
    fn wait(&self, delay: Duration) -> Result<(), Unreachable> {
        if backoff::sleep_blocking(&self.stop, delay) {
            Ok(())
        } else {
            Err(Unreachable::Stopped)
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// Sends a request, retrying a broken connection, `429` and `5xx` with exponential backoff; returns the
    /// status and the body parsed as JSON (`Null` when empty or not JSON).
    fn call(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<(u16, Value), Unreachable> {
        let url = self.url(path);
        let mut backoff = self.backoff();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match method {
                "GET" => {
                    let mut r = self.agent.get(&url);
                    for (k, v) in query {
                        r = r.query(*k, *v);
                    }
                    if let Some(t) = &self.token {
                        r = r.header("Authorization", &format!("Bearer {t}"));
                    }
                    r.call()
                }
                "DELETE" => {
                    let mut r = self.agent.delete(&url);
                    if let Some(t) = &self.token {
                        r = r.header("Authorization", &format!("Bearer {t}"));
                    }
                    r.call()
                }
                _ => {
                    let mut r = self.agent.post(&url);
                    if let Some(t) = &self.token {
                        r = r.header("Authorization", &format!("Bearer {t}"));
                    }
                    r.send_empty()
                }
            };
            let failure = match result {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    if status != 429 && status < 500 {
                        let body = response.body_mut().read_to_string().unwrap_or_default();
                        return Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)));
                    }
                    CallFailure::Status(status)
                }
                Err(e) => CallFailure::Transport(Box::new(e)),
            };
            if attempt > self.config.retries {
                return Err(Unreachable::Service {
                    method,
                    path: path.to_owned(),
                    failure,
                    tries: attempt,
                });
            }
            tracing::debug!(store = %self.name, attempt, "callback service call failed; retrying");
            self.wait(backoff.next_delay())?;
        }
    }

    /// The callbacks of the batch's phones, each with the targets it answers.
    fn find(&mut self, batch: &Batch) -> Result<Vec<Found1>, StoreError> {
        let index = key_index(batch);
        self.matcher.set_wanted(index.keys().cloned());
        let numbers: BTreeSet<String> = batch
            .targets
            .iter()
            .filter(|t| t.kind == DeviceKind::Phone)
            .filter_map(|t| t.key.strip_prefix("p:").map(|d| format!("+{d}")))
            .collect();
        let numbers: Vec<String> = numbers.into_iter().collect();
        let mut out: Vec<Found1> = Vec::new();
        for chunk in numbers.chunks(self.config.numbers_per_request.max(1)) {
            let query: Vec<(&str, &str)> = chunk
                .iter()
                .map(|n| ("customer_number", n.as_str()))
                .collect();
            let (status, body) = self.call("GET", "/callbacks", &query)?;
            if status != 200 {
                return Err(CallbackError::Answered {
                    call: "GET /callbacks",
                    status,
                }
                .into());
            }
            let Value::Array(items) = body else {
                return Err(CallbackError::NotAList.into());
            };
            for item in items {
                let Value::Object(fields) = item else {
                    continue;
                };
                let id = fields.get("id").map(text).unwrap_or_default();
                if id.is_empty() || out.iter().any(|f| f.id == id) {
                    continue;
                }
                let number = fields.get("customer_number").map(text).unwrap_or_default();
                // The service's own matching is not trusted: the callback must match by gdprd's rules.
                let Some(key) = self.matcher.find(DeviceKind::Phone, &number) else {
                    continue;
                };
                let account = self
                    .config
                    .account_field
                    .as_deref()
                    .and_then(|f| fields.get(f))
                    .map(text);
                let targets: Vec<usize> = index
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|&t| {
                        let scope = &batch.scopes[batch.targets[t].scope];
                        account.is_none() || scope.admits_account(account.as_deref())
                    })
                    .collect();
                if targets.is_empty() {
                    continue;
                }
                out.push(Found1 {
                    id,
                    state: fields.get("state").map(text).unwrap_or_default(),
                    fields,
                    targets,
                });
            }
        }
        Ok(out)
    }

    /// The state of callback `id` now (`None` when it is gone).
    fn state(&self, id: &str) -> Result<Option<String>, StoreError> {
        let (status, body) = self.call("GET", &format!("/callbacks/{}", encode(id)), &[])?;
        match status {
            404 => Ok(None),
            200 => Ok(Some(body.get("state").map(text).unwrap_or_default())),
            status => Err(CallbackError::Answered {
                call: "GET /callbacks/{id}",
                status,
            }
            .into()),
        }
    }

    /// Cancels an in-flight callback and waits until the service says it is cancelled.
    fn cancel(&self, callback: &Found1) -> Result<(), CallbackError> {
        let path = format!("/callbacks/{}/cancel", encode(&callback.id));
        match self.call("POST", &path, &[]) {
            Ok((200..=299, _)) => {}
            Ok((404, _)) => return Ok(()),
            Ok((_, body)) => {
                let state = body
                    .get("state")
                    .map(text)
                    .unwrap_or_else(|| callback.state.clone());
                return Err(CallbackError::NotCancelled {
                    id: callback.id.clone(),
                    state,
                });
            }
            Err(e) => return Err(e.into()),
        }
        let mut backoff = self.backoff();
        for _ in 0..=self.config.retries {
            match self.state(&callback.id) {
                Ok(None) => return Ok(()),
                Ok(Some(s)) if s == CANCELLED => return Ok(()),
                Ok(Some(_)) | Err(_) => {}
            }
            self.wait(backoff.next_delay())?;
        }
        let state = self
            .state(&callback.id)
            .ok()
            .flatten()
            .unwrap_or_else(|| "unknown".into());
        Err(CallbackError::NotConfirmed {
            id: callback.id.clone(),
            state,
        })
    }

    fn delete(&self, callback: &Found1) -> Result<(), CallbackError> {
        match self.call(
            "DELETE",
            &format!("/callbacks/{}", encode(&callback.id)),
            &[],
        ) {
            Ok((200..=299 | 404, _)) => Ok(()),
            Ok((status, body)) => Err(CallbackError::NotDeleted {
                id: callback.id.clone(),
                status,
                state: body
                    .get("state")
                    .map(text)
                    .unwrap_or_else(|| callback.state.clone()),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// A callback id as one path segment.
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Store for CallbackStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&mut self) -> Result<Vec<String>, StoreError> {
        // A number nobody has: the service answers, with an empty list.
        let (status, body) =
            self.call("GET", "/callbacks", &[("customer_number", "+10000000000")])?;
        if status != 200 || !body.is_array() {
            return Err(CallbackError::CheckFailed { status }.into());
        }
        Ok(Vec::new())
    }

    fn forget(
        &mut self,
        batch: &Batch,
        planned: &mut dyn FnMut(&[u64]) -> Result<(), StoreError>,
    ) -> Result<Found, StoreError> {
        let callbacks = self.find(batch)?;
        let mut found = vec![0u64; batch.targets.len()];
        for c in &callbacks {
            for &t in &c.targets {
                found[t] += 1;
            }
        }
        planned(&found)?;
        let mut failures = Vec::new();
        for c in &callbacks {
            let done = if callback_state::is_in_flight(&c.state) {
                self.cancel(c).and_then(|()| self.delete(c))
            } else if callback_state::is_deletable(&c.state) {
                // It may have moved on since it was listed: a refused delete of a callback now in flight is
                // cancelled and deleted.
                self.delete(c).or_else(|first| match self.state(&c.id) {
                    Ok(Some(s)) if callback_state::is_in_flight(&s) => {
                        self.cancel(c).and_then(|()| self.delete(c))
                    }
                    _ => Err(first),
                })
            } else {
                self.delete(c)
            };
            if let Err(e) = done {
                if self.stop.is_cancelled() {
                    // Not the callback's doing: the step runs again at the next start.
                    return Err(Unreachable::Stopped.into());
                }
                tracing::warn!(store = %self.name, "a callback could not be forgotten");
                failures.push(e);
            }
        }
        if failures.is_empty() {
            Ok(found)
        } else {
            Err(StoreError::Callbacks(failures))
        }
    }

    /// Only the lookup (`GET /callbacks`) is called: nothing is cancelled or deleted.
    fn preview(&mut self, batch: &Batch, kind: Kind) -> Result<StorePreview, StoreError> {
        let action = match kind {
            Kind::Forget => Action::Delete,
            Kind::Export => Action::Export,
            Kind::Pseudonymise => {
                return Err(StoreError::CannotPseudonymise {
                    store: self.name.clone(),
                })
            }
        };
        let callbacks = self.find(batch)?;
        let mut out = StorePreview::new(batch.targets.len());
        let mut counted = TablePreview::new("callbacks", action);
        for c in &callbacks {
            out.row(&mut counted, &c.targets, Some(&c.state), None, None);
        }
        out.tables.push(counted);
        Ok(out)
    }

    fn export(&mut self, batch: &Batch, sink: &mut dyn ExportSink) -> Result<Found, StoreError> {
        let callbacks = self.find(batch)?;
        let mut found = vec![0u64; batch.targets.len()];
        if callbacks.is_empty() {
            return Ok(found);
        }
        let mut columns: Vec<String> = vec!["id".into(), "customer_number".into(), "state".into()];
        let others: BTreeSet<&String> = callbacks
            .iter()
            .flat_map(|c| c.fields.keys())
            .filter(|k| !columns.contains(k))
            .collect();
        columns.extend(others.into_iter().cloned());
        sink.table(&self.name, "callbacks", &columns)?;
        for c in &callbacks {
            let cells: Vec<String> = columns
                .iter()
                .map(|k| c.fields.get(k).map(text).unwrap_or_default())
                .collect();
            for &t in &c.targets {
                found[t] += 1;
                sink.row(t, &cells)?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{load, DEMO};

    #[test]
    fn callback_retries_are_capped() {
        let with = |keys: &str| {
            format!("{DEMO}\n[stores.callbacks]\ntype = \"callback-http\"\nbase_url = \"http://127.0.0.1:1\"\n{keys}")
        };
        load(&with("retries = 10\nretry_delay_ms = 10000\n")).expect("at the caps");
        let e = load(&with("retries = 20\n")).expect_err("20 retries");
        assert!(e.to_string().contains("retries is 20, at most 10"), "{e}");
        let e = load(&with("retry_delay_ms = 60000\n")).expect_err("a minute");
        assert!(
            e.to_string()
                .contains("retry_delay_ms is 60000, at most 10000"),
            "{e}"
        );
    }
}
