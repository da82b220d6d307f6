//! Jobs: how a front-door request becomes a claimed file, and how its status, response and archive are read
//! back. The journal keeps a job's facts ([`JobFacts`], read by every status poll) and its lines, personal data
//! (read by the response), until the account's retention has passed.

use super::{base_url, blocking, job_id, ApiError, Caller, Ctx, HttpState, Line};
use crate::config::AccountConfig;
use crate::journal::{FileState, JobFacts, JobRecord};
use crate::requests::{Kind, RuleError};
use crate::retention::Retention;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use tracing::info;

#[derive(Debug, Serialize, Deserialize)]
struct SideLine {
    name: String,
    value: String,
    /// Index of its contact in the request, when it became one.
    contact: Option<usize>,
    /// Its response when it did not.
    error: Option<String>,
    /// The device type (`phone`, `email`, `ipaddr`) when it became a contact.
    #[serde(default)]
    kind: Option<String>,
}

/// What a front-door request asks for besides its lines.
pub(super) struct NewJob<'a> {
    /// Forget, export or pseudonymise.
    pub kind: Kind,
    /// `api` (a batched job) or `lcm` (an agent request): part of the file's name.
    pub origin: &'a str,
    /// The request case (an agent request's call id).
    pub requestcase: Option<&'a str>,
    /// The account whose records are searched (an agent request's `AccountNumber`; for jobs,
    /// `[accounts.http] accountid`).
    pub accountid: Option<&'a str>,
    /// The WCA database (`[accounts.http] databases`) whose stores it runs against; `None`: the account's.
    pub database: Option<&'a str>,
}

impl<'a> NewJob<'a> {
    /// A batched job (`api`) of `kind` within `accountid` ([`api_accountid`]).
    fn api(kind: Kind, accountid: Option<&'a str>) -> NewJob<'a> {
        NewJob {
            kind,
            origin: "api",
            requestcase: None,
            accountid,
            database: None,
        }
    }
}

/// The account a batched job of `account` searches: `[accounts.http] accountid`.
fn api_accountid(account: &AccountConfig) -> Option<String> {
    account.http.as_ref().and_then(|h| h.accountid.clone())
}

/// The request file for `account` made of `lines` as `job` says (one request, a contact per line that names a
/// device), and what became of each line. The request carries the account's HTTP shortcode scope
/// (`[accounts.http] shortcodes`) and is checked against its `[accounts.requests]` rules: a job they would refuse,
/// or a body of which no line names a device, is answered `400`.
fn request_file(
    account: &AccountConfig,
    job: &NewJob<'_>,
    lines: &[Line],
) -> Result<(Vec<u8>, Vec<SideLine>), ApiError> {
    let NewJob {
        kind,
        requestcase,
        accountid,
        ..
    } = *job;
    let shortcodes = account
        .http
        .as_ref()
        .map(|h| h.shortcodes.clone())
        .unwrap_or_default();
    if let Err(e) = account.requests.check(accountid, &shortcodes) {
        let fix = match e {
            RuleError::AccountIdMissing => "[accounts.http] accountid",
            RuleError::ShortcodesMissing => "[accounts.http] shortcodes",
        };
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{}; for HTTP requests the account's {fix} gives it",
                e.to_string().trim_start_matches("ERROR: ")
            ),
        ));
    }
    let mut contacts = Vec::new();
    let mut side = Vec::with_capacity(lines.len());
    for l in lines {
        let (contact, error, device) = match &l.device {
            Ok((kind, value)) => {
                contacts.push(json!({ kind.key(): value }));
                (Some(contacts.len() - 1), None, Some(kind.key().to_owned()))
            }
            Err(e) => (None, Some(e.to_string()), None),
        };
        side.push(SideLine {
            name: l.name.clone(),
            value: l.value.clone(),
            contact,
            error,
            kind: device,
        });
    }
    if contacts.is_empty() {
        let errors: Vec<&str> = side
            .iter()
            .filter_map(|s| s.error.as_deref())
            .take(5)
            .collect();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "no line names a device this account can look up: {}",
                errors.join("; ")
            ),
        ));
    }
    let mut request = serde_json::Map::new();
    if let Some(case) = requestcase.filter(|c| !c.is_empty()) {
        request.insert("requestcase".into(), Value::from(case));
    }
    if !shortcodes.is_empty() {
        request.insert("shortcodes".into(), Value::from(shortcodes));
    }
    if let Some(id) = accountid.filter(|a| !a.is_empty()) {
        request.insert("accountid".into(), Value::from(id));
    }
    request.insert("type".into(), Value::from(kind.as_type()));
    request.insert("contacts".into(), Value::Array(contacts));
    let bytes =
        serde_json::to_vec_pretty(&json!({ "requests": [request] })).map_err(ApiError::internal)?;
    Ok((bytes, side))
}

/// Claims a request file for `account` made of `lines` as `job` says, and queues it. Returns the job id. A job
/// [`request_file`] refuses is answered `400`, and nothing is claimed.
pub(super) fn create(
    state: &HttpState,
    account: &AccountConfig,
    job: &NewJob<'_>,
    lines: &[Line],
) -> Result<i64, ApiError> {
    let (kind, origin, database) = (job.kind, job.origin, job.database);
    let config = state.config();
    let (bytes, side) = request_file(account, job, lines)?;
    let tag: u32 = rand::random();
    let now = Utc::now();
    let name = crate::requests::name::job_name(kind, origin, database, now, tag);
    let id = state
        .journal
        .submit(
            &account.name,
            &name,
            kind,
            &bytes,
            config.limits.batch_size,
            account.received_now(),
        )
        .map_err(ApiError::internal)?
        .id();
    let facts = JobFacts {
        account: account.name.clone(),
        origin: origin.to_owned(),
        kind: kind.as_type().to_owned(),
        created: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        expired: false,
        database: database.map(str::to_owned),
    };
    state
        .journal
        .keep_job(id, &facts, &side)
        .map_err(ApiError::internal)?;
    let _ = state.jobs.send(crate::transports::Job {
        account: account.name.clone(),
        name: name.clone().into(),
        claimed: Some(id),
    });
    info!(account = %account.name, job = id, file = %name, kind = kind.prefix(), lines = lines.len(), origin, "HTTP request accepted");
    crate::metrics::get().http_job(origin);
    Ok(id)
}

/// `POST /accounts/{account}/gdpr_erasure`.
pub(super) async fn submit_erasure(
    ctx: Ctx,
    account: Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    submit(ctx, account, body, Kind::Forget).await
}

/// `POST /accounts/{account}/gdpr_access`.
pub(super) async fn submit_access(
    ctx: Ctx,
    account: Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    submit(ctx, account, body, Kind::Export).await
}

async fn submit(
    (State(state), Extension(caller), headers): Ctx,
    Path(name): Path<String>,
    body: Bytes,
    kind: Kind,
) -> Result<Response, ApiError> {
    let (account, lines) = job_lines(&state, caller, &headers, &name, &body)?;
    let base = base_url(&state.config(), &headers);
    accept(state, account, (kind, None), lines, base).await
}

/// Claims a job of `kind` (for `database`, on the WCA paths) and answers `202` with its status URL under `base`.
async fn accept(
    state: Arc<HttpState>,
    account: AccountConfig,
    (kind, database): (Kind, Option<String>),
    lines: Vec<Line>,
    base: String,
) -> Result<Response, ApiError> {
    let id = blocking(move || {
        let accountid = api_accountid(&account);
        let job = NewJob {
            database: database.as_deref(),
            ..NewJob::api(kind, accountid.as_deref())
        };
        create(&state, &account, &job, &lines)
    })
    .await?;
    let location = format!("{base}/gdpr_jobs/{id}/status");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location.clone())],
        Json(json!({ "location": location, "id": id })),
    )
        .into_response())
}

/// The prefix of the WCA paths.
const WCA: &str = "/rest";

/// `POST /rest/databases/{databaseId}/gdpr_erasure`: the seed's own path. The token says the account; the
/// database id must be one of its `[accounts.http] databases`, and the job runs against that database's stores.
pub(super) async fn submit_wca_erasure(
    (State(state), Extension(caller), headers): Ctx,
    Path(database): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let known = caller
        .account
        .http
        .as_ref()
        .is_some_and(|h| h.databases.contains_key(&database));
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no database {database:?} for this account ([accounts.http] databases)"),
        ));
    }
    let name = caller.account.name.clone();
    let (account, lines) = job_lines(&state, caller, &headers, &name, &body)?;
    let base = format!("{}{WCA}", base_url(&state.config(), &headers));
    accept(state, account, (Kind::Forget, Some(database)), lines, base).await
}

/// `POST /accounts/{account}/gdpr_preview`: what an erasure job of the same body would do, answered at once (see
/// [`crate::engine::preview`]). Nothing is claimed, journaled or written; the lines' values are not echoed.
pub(super) async fn preview(
    (State(state), Extension(caller), headers): Ctx,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (account, lines) = job_lines(&state, caller, &headers, &name, &body)?;
    let config = state.config();
    let kind = Kind::Forget;
    let accountid = api_accountid(&account);
    let job = NewJob::api(kind, accountid.as_deref());
    let (bytes, side) = request_file(&account, &job, &lines)?;
    let report = blocking(move || {
        let stop = tokio_util::sync::CancellationToken::new();
        Ok(crate::engine::preview::preview(
            &config, &account, kind, &bytes, &stop,
        ))
    })
    .await?;
    let per_line: Vec<Value> = lines
        .iter()
        .zip(&side)
        .map(|(line, s)| {
            let contact = s
                .contact
                .and_then(|c| report.contacts.iter().find(|p| p.contact == c + 1));
            let response = match (contact, &s.error) {
                (Some(p), _) => p.response.clone(),
                (None, Some(e)) => e.clone(),
                (None, None) => report.refused.clone().unwrap_or_default(),
            };
            json!({ "line": line.line, "name": line.name, "response": response })
        })
        .collect();
    let mut body = serde_json::to_value(&report).map_err(ApiError::internal)?;
    body["lines"] = Value::Array(per_line);
    Ok(Json(body).into_response())
}

/// The lines of a job body for the account `name` names, once the caller's token opens it, it takes jobs and the
/// body is `text/csv`.
fn job_lines(
    state: &HttpState,
    caller: Caller,
    headers: &HeaderMap,
    name: &str,
    body: &[u8],
) -> Result<(AccountConfig, Vec<Line>), ApiError> {
    let account = caller.account;
    if account.name != name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token does not open account {name:?}"),
        ));
    }
    let Some(http) = account.http.clone().filter(|h| h.jobs) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "jobs are not enabled for this account ([accounts.http] jobs = false)",
        ));
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "text/csv" && essence != "text/plain" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the lines as `Content-Type: text/csv`",
        ));
    }
    let config = state.config();
    let lines = super::parse_lines(body, &http, config.http.max_lines).map_err(|e| {
        let status = match e {
            super::BodyError::TooManyLines(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    })?;
    Ok((account, lines))
}

/// Whether a finished job is past its account's retention at `now`.
fn past_retention(job: &JobRecord, retention: Retention, now: DateTime<Utc>) -> bool {
    job.state != FileState::Claimed
        && job
            .finished_at
            .as_deref()
            .and_then(|f| DateTime::parse_from_rfc3339(f).ok())
            .and_then(|f| now.signed_duration_since(f).to_std().ok())
            .is_some_and(|age| retention.is_past(age))
}

/// Makes the job a tombstone: the lines (personal data) go, the job's URLs answer 410 from now on.
fn expire(
    state: &HttpState,
    id: i64,
    facts: &JobFacts,
) -> Result<(), crate::journal::JournalError> {
    if state.journal.expire_job(id, facts)? {
        info!(account = %facts.account, job = id, "HTTP job past retention: its lines are deleted");
    }
    Ok(())
}

/// The job `id` of `account`, with its facts; 404 for a job that is not this account's, 410 once expired.
fn find(
    state: &HttpState,
    account: &AccountConfig,
    id: i64,
) -> Result<(JobRecord, JobFacts), ApiError> {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, "no such job for this account");
    let facts = state
        .journal
        .job_facts(id)
        .map_err(ApiError::internal)?
        .ok_or_else(missing)?;
    if facts.account != account.name {
        return Err(missing());
    }
    let gone = || {
        ApiError::new(
            StatusCode::GONE,
            format!(
                "job {id} is past this account's retention of {} days: its response was deleted",
                account.retention.days()
            ),
        )
    };
    if facts.expired {
        return Err(gone());
    }
    let job = state
        .journal
        .job(id)
        .map_err(ApiError::internal)?
        .ok_or_else(missing)?;
    if past_retention(&job, account.retention, crate::clock::now()) {
        expire(state, id, &facts).map_err(ApiError::internal)?;
        return Err(gone());
    }
    Ok((job, facts))
}

/// The status name of a job.
fn status_name(job: &JobRecord) -> &'static str {
    match job.state {
        FileState::Claimed if job.started => "IN_PROGRESS",
        FileState::Claimed => "SUBMITTED",
        FileState::Done if job.error.is_none() => "SUCCESS",
        _ => "FAILED",
    }
}

/// A read of job `id`: authenticated, rate-limited, found for the token's account.
struct Read {
    state: Arc<HttpState>,
    account: AccountConfig,
    id: i64,
    /// The base of the URLs to hand out.
    base: String,
}

async fn read(
    (State(state), Extension(caller), headers): Ctx,
    path: Path<String>,
) -> Result<(Read, JobRecord, JobFacts), ApiError> {
    let id = job_id(path)?;
    let account = caller.account;
    let base = base_url(&state.config(), &headers);
    let (st, a) = (Arc::clone(&state), account.clone());
    let (job, facts) = blocking(move || find(&st, &a, id)).await?;
    let read = Read {
        state,
        account,
        id,
        base,
    };
    Ok((read, job, facts))
}

/// The paths a job is read through: gdprd's own, or the seed's WCA paths under `/rest`, which answer the seed's
/// status names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paths {
    /// `/gdpr_jobs/{id}/…`: `SUBMITTED`, `IN_PROGRESS`, `SUCCESS`, `FAILED`.
    Gdprd,
    /// `/rest/gdpr_jobs/{jobId}/…`: `WAITING`, `IN PROGRESS`, `COMPLETE`, `ERROR`.
    Wca,
}

impl Paths {
    /// The status name of `job` on these paths.
    fn status(self, job: &JobRecord) -> &'static str {
        let status = status_name(job);
        match self {
            Paths::Gdprd => status,
            Paths::Wca => match status {
                "SUBMITTED" => "WAITING",
                "IN_PROGRESS" => "IN PROGRESS",
                "SUCCESS" => "COMPLETE",
                _ => "ERROR",
            },
        }
    }

    /// The base of the job URLs handed out on these paths.
    fn base(self, base: &str) -> String {
        match self {
            Paths::Gdprd => base.to_owned(),
            Paths::Wca => format!("{base}{WCA}"),
        }
    }
}

/// Adds a job's deadline to a status body: `received`, `due` (the due day on the account's calendar), `dueAt`
/// (the instant its period runs out) and, once extended, `extension` with the previous due day and the reason.
fn add_deadline(body: &mut Value, job: &JobRecord) {
    body["received"] = Value::from(job.received_at.as_str());
    if let Some(due) = job.due {
        body["due"] = Value::from(due.on.to_string());
        body["dueAt"] = Value::from(due.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    if let Some(e) = &job.extension {
        body["extension"] = json!({
            "previousDue": e.previous_due.to_string(),
            "reason": e.reason,
        });
    }
}

/// `GET /gdpr_jobs/{id}/status`.
pub(super) async fn status(ctx: Ctx, path: Path<String>) -> Result<Response, ApiError> {
    status_on(ctx, path, Paths::Gdprd).await
}

/// `GET /rest/gdpr_jobs/{jobId}/status`.
pub(super) async fn wca_status(ctx: Ctx, path: Path<String>) -> Result<Response, ApiError> {
    status_on(ctx, path, Paths::Wca).await
}

async fn status_on(ctx: Ctx, path: Path<String>, paths: Paths) -> Result<Response, ApiError> {
    let (Read { id, base, .. }, job, _) = read(ctx, path).await?;
    let status = paths.status(&job);
    if status_name(&job) == "SUCCESS" {
        let location = format!("{}/gdpr_jobs/{id}/response", paths.base(&base));
        let mut body = json!({ "id": id, "location": location, "status": status });
        add_deadline(&mut body, &job);
        return Ok((
            StatusCode::SEE_OTHER,
            [(header::LOCATION, location.clone())],
            Json(body),
        )
            .into_response());
    }
    let mut body = json!({ "id": id, "status": status });
    add_deadline(&mut body, &job);
    if let Some(e) = &job.error {
        body["error"] = Value::from(e.as_str());
    }
    Ok(Json(body).into_response())
}

/// What a job's response calls its type.
fn type_name(kind: &str) -> &'static str {
    match kind {
        "FORGET" => "ERASURE",
        "EXPORT" => "ACCESS",
        _ => "PSEUDONYMISATION",
    }
}

/// `GET /gdpr_jobs/{id}/response`.
pub(super) async fn response(ctx: Ctx, path: Path<String>) -> Result<Response, ApiError> {
    response_on(ctx, path, Paths::Gdprd).await
}

/// `GET /rest/gdpr_jobs/{jobId}/response`.
pub(super) async fn wca_response(ctx: Ctx, path: Path<String>) -> Result<Response, ApiError> {
    response_on(ctx, path, Paths::Wca).await
}

/// Whether a forget of a device of `kind` in `stores` may keep rows anonymised rather than delete them: a table
/// of theirs that holds that kind of device anonymises (`forget = "anonymise"`, the default), or is a
/// suppression list (the row stays, with the device's keyed hash). Read from the mapping, not counted per row.
fn anonymises(config: &crate::config::Config, stores: &[String], kind: &str) -> bool {
    stores
        .iter()
        .filter_map(|s| config.stores.get(s))
        .flat_map(crate::stores::StoreConfig::tables)
        .filter(|t| t.device_columns().iter().any(|(k, _)| k.key() == kind))
        .any(|t| t.forget == crate::stores::ForgetMode::Anonymise || t.suppression)
}

async fn response_on(ctx: Ctx, path: Path<String>, paths: Paths) -> Result<Response, ApiError> {
    let (
        Read {
            state,
            account,
            id,
            base,
        },
        job,
        facts,
    ) = read(ctx, path).await?;
    let config = state.config();
    let stores = facts
        .database
        .as_ref()
        .and_then(|d| account.http.as_ref()?.databases.get(d).cloned())
        .unwrap_or_else(|| account.stores.clone());
    let account_name = account.name;
    let (lines, responses) = blocking(move || {
        let lines: Vec<SideLine> = state
            .journal
            .job_lines(id)
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::GONE,
                    format!("the lines of job {id} were deleted"),
                )
            })?;
        let responses = state.journal.responses(id).map_err(ApiError::internal)?;
        Ok((lines, responses))
    })
    .await?;
    let status = paths.status(&job);
    if job.state == FileState::Claimed {
        let done = paths.status(&JobRecord {
            state: FileState::Done,
            error: None,
            ..job.clone()
        });
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job {id} is {status}: poll {}/gdpr_jobs/{id}/status until it says {done}",
                paths.base("")
            ),
        ));
    }
    let contacts: Vec<Value> = lines
        .iter()
        .map(|line| {
            let recorded = line.contact.and_then(|c| responses.get(&(0, c)));
            let found = recorded.is_some_and(crate::engine::Response::is_found);
            let response = match (recorded, &line.error) {
                (Some(r), _) => r.to_string(),
                (None, _) if line.contact.is_some() => job
                    .error
                    .clone()
                    .unwrap_or_else(|| "ERROR: no response was recorded; submit it again".into()),
                (None, Some(e)) => e.clone(),
                (None, None) => "ERROR: no response was recorded; submit it again".into(),
            };
            let mut contact = json!({ "contactFound": found });
            match facts.kind.as_str() {
                "FORGET" => {
                    contact["contactDeleted"] = Value::from(found);
                    let kind = line.kind.as_deref().unwrap_or_default();
                    contact["contactAnonymised"] =
                        Value::from(found && anonymises(&config, &stores, kind));
                }
                "PSEUDONYMISE" => contact["contactPseudonymised"] = Value::from(found),
                _ => {}
            }
            contact["gdprIdentifiers"] = json!([{ "name": line.name, "value": line.value }]);
            contact["response"] = Value::from(response);
            contact
        })
        .collect();
    let mut body = json!({
        "id": id,
        "account": account_name,
        "type": type_name(&facts.kind),
        "status": status,
        "timestamp": job.finished_at,
        "executionLog": job.results.first(),
        "contacts": contacts,
    });
    if facts.kind == "EXPORT" && job.error.is_none() {
        body["archive"] = Value::from(format!("{base}/gdpr_jobs/{id}/archive"));
    }
    if let Some(e) = &job.error {
        body["error"] = Value::from(e.as_str());
    }
    if let Some(database) = &facts.database {
        // The seed's sample answers the id as a number.
        body["databaseId"] = database
            .parse::<u64>()
            .map_or_else(|_| Value::from(database.as_str()), Value::from);
    }
    Ok(Json(body).into_response())
}

/// `GET /gdpr_jobs/{id}/archive`: an access job's ZIP of CSVs, the same file as in `GDPR_Result`.
pub(super) async fn archive(ctx: Ctx, path: Path<String>) -> Result<Response, ApiError> {
    let (Read { account, id, .. }, job, _) = read(ctx, path).await?;
    let dir = account.result_dir();
    let Some(name) = job.results.iter().find(|r| r.ends_with("-archive.zip")) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("job {id} has no archive (only a finished access job has one)"),
        ));
    };
    let file = match tokio::fs::File::open(dir.join(name)).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::new(
                StatusCode::GONE,
                format!("the archive of job {id} is no longer in GDPR_Result"),
            ))
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let length = file.metadata().await.map(|m| m.len()).ok();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/zip"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(len) = length {
        headers.insert(header::CONTENT_LENGTH, len.into());
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((headers, body).into_response())
}

/// Expires the jobs past retention, and removes copies a crash left between write and claim.
pub(super) fn sweep(state: &HttpState) {
    let config = state.config();
    let now = crate::clock::now();
    for id in state.journal.job_ids() {
        let Ok(Some(facts)) = state.journal.job_facts(id) else {
            continue;
        };
        if facts.expired {
            continue;
        }
        let retention = config
            .account(&facts.account)
            .map_or(Retention::DEFAULT, |a| a.retention);
        let job = state.journal.job(id).ok().flatten();
        if job.is_some_and(|j| past_retention(&j, retention, now)) {
            if let Err(e) = expire(state, id, &facts) {
                tracing::warn!(job = id, error = %e, "cannot expire an HTTP job; tried again in an hour");
            }
        }
    }
    state.journal.remove_stale_pending();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: FileState, finished: Option<&str>) -> JobRecord {
        JobRecord {
            state,
            error: None,
            finished_at: finished.map(str::to_owned),
            results: Vec::new(),
            started: false,
            received_at: "2026-11-20T12:00:00.000Z".into(),
            due: None,
            extension: None,
        }
    }

    #[test]
    fn retention_counts_from_the_finish() {
        let now: DateTime<Utc> = "2026-11-24T12:00:00Z".parse().expect("time");
        let done = |at| job(FileState::Done, Some(at));
        assert!(!past_retention(
            &done("2026-11-21T12:00:01Z"),
            Retention::from_days(3),
            now
        ));
        assert!(past_retention(
            &done("2026-11-21T11:59:59Z"),
            Retention::from_days(3),
            now
        ));
        assert!(!past_retention(
            &job(FileState::Claimed, None),
            Retention::from_days(3),
            now
        ));
        assert_eq!(status_name(&done("2026-11-21T12:00:01Z")), "SUCCESS");
        let mut refused = done("2026-11-21T12:00:01Z");
        refused.error = Some("ERROR: x".into());
        assert_eq!(status_name(&refused), "FAILED");
        assert_eq!(status_name(&job(FileState::Claimed, None)), "SUBMITTED");
    }
}
