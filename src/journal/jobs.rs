//! HTTP jobs' files in the state folder: a job's facts in `jobs/ID.json` (small: read by every status poll) and
//! its lines, personal data, in `jobs/ID.lines.json` (read by its response) until the account's retention has
//! passed; then the lines go and the facts stay as a tombstone ([`Journal::expire_job`]).

use super::{io_err, Journal, JournalError};
use crate::results::atomic;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What the front doors know of a job besides the ledger: whose it is and what it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobFacts {
    /// The account.
    pub account: String,
    /// `api` (a batched job) or `lcm` (an agent request).
    pub origin: String,
    /// `FORGET`, `EXPORT` or `PSEUDONYMISE`.
    pub kind: String,
    /// When it was accepted (RFC 3339).
    pub created: String,
    /// Past retention: the lines are gone and the job's URLs answer 410.
    #[serde(default)]
    pub expired: bool,
    /// The WCA database a job of `POST /rest/databases/{databaseId}/gdpr_erasure` was for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

fn facts_name(id: i64) -> String {
    format!("{id}.json")
}

fn lines_name(id: i64) -> String {
    format!("{id}.lines.json")
}

/// Whether the lines of job `id` (its number as text) in `jobs` are still read: its facts are there and it is
/// not expired.
pub(super) fn facts_keep_lines(jobs: &Path, id: &str) -> bool {
    match std::fs::read(jobs.join(format!("{id}.json"))) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .is_ok_and(|f| f.get("expired") != Some(&serde_json::Value::Bool(true))),
        Err(_) => false,
    }
}

impl Journal {
    fn write_job_file(&self, name: &str, value: &impl Serialize) -> Result<(), JournalError> {
        let context = || format!("cannot write the HTTP job file {name}");
        let bytes =
            serde_json::to_vec(value).map_err(|e| io_err(context())(std::io::Error::other(e)))?;
        atomic::write(&self.folder.jobs(), name, &bytes).map_err(io_err(context()))?;
        Ok(())
    }

    fn read_job_file<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, JournalError> {
        let context = || format!("cannot read the HTTP job file {name}");
        match std::fs::read(self.folder.jobs().join(name)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io_err(context())(std::io::Error::other(e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(context())(e)),
        }
    }

    /// Keeps the facts and lines of the job claimed as `id`: the lines first, since a job with facts but no
    /// lines would answer 410 too early.
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn keep_job(
        &self,
        id: i64,
        facts: &JobFacts,
        lines: &impl Serialize,
    ) -> Result<(), JournalError> {
        self.write_job_file(&lines_name(id), lines)?;
        self.write_job_file(&facts_name(id), facts)
    }

    /// The facts of job `id`, if there is such a job.
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn job_facts(&self, id: i64) -> Result<Option<JobFacts>, JournalError> {
        self.read_job_file(&facts_name(id))
    }

    /// The lines of job `id`, if they are still kept.
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn job_lines<T: DeserializeOwned>(&self, id: i64) -> Result<Option<T>, JournalError> {
        self.read_job_file(&lines_name(id))
    }

    /// The ids of every job with facts, expired or not.
    pub fn job_ids(&self) -> Vec<i64> {
        super::folder::entries(&self.folder.jobs())
            .filter_map(|(_, name)| {
                // Facts files only (`ID.json`); `ID.lines.json` goes with them.
                name.strip_suffix(".json")
                    .and_then(|n| n.parse::<i64>().ok())
            })
            .collect()
    }

    /// Makes job `id` a tombstone: its lines (personal data) go and its facts say it expired. Returns whether
    /// this call did it (the hourly sweep and a request may both find a job due: one of them does it).
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn expire_job(&self, id: i64, facts: &JobFacts) -> Result<bool, JournalError> {
        let _one_at_a_time = self
            .folder
            .expiring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.job_facts(id)?.is_some_and(|f| f.expired) {
            return Ok(false);
        }
        // The lines first: once the facts say expired, a reader takes the lines for gone.
        atomic::remove_if_present(&self.folder.jobs().join(lines_name(id)))
            .map_err(io_err("cannot delete an expired job's lines"))?;
        let tombstone = JobFacts {
            expired: true,
            ..facts.clone()
        };
        self.write_job_file(&facts_name(id), &tombstone)?;
        Ok(true)
    }

    /// Removes the copies of HTTP requests written more than a day ago and never claimed.
    pub fn remove_stale_pending(&self) {
        self.folder
            .remove_stale_pending(std::time::Duration::from_secs(86_400));
    }
}
