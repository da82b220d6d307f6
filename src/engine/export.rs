//! An export is read-only: each store streams its rows into a part archive in the state folder, the parts are
//! assembled into the account's archive, and the responses are journaled as one chunk. An interrupted export is
//! simply run again.

use super::chunk::Chunk;
use super::isolation::{export_step, StoreOutcome};
use super::{io_err, Engine, EngineError, Execution, Outcome, StoreFailure};
use crate::requests::name::stem;
use crate::results::{archive, log};
use chrono::Utc;
use tracing::info;

impl Engine {
    /// Runs the export `ex` and writes its archive, unless its responses are already journaled.
    ///
    /// # Errors
    /// [`EngineError`] when the journal fails, or a part or the archive cannot be written.
    pub(super) fn export(&mut self, ex: &Execution<'_>) -> Result<Outcome, EngineError> {
        let Execution {
            account,
            name,
            claim,
            file,
            plan,
            ..
        } = *ex;
        if claim.chunk_done(0)? {
            return Ok(Outcome::Done);
        }
        let started = Utc::now();
        let prefixes: Vec<[String; 3]> = plan
            .targets
            .iter()
            .map(|planned| {
                [
                    file.requests[planned.request]
                        .requestcase
                        .clone()
                        .unwrap_or_default(),
                    planned.device.kind().key().to_owned(),
                    planned.given.clone(),
                ]
            })
            .collect();
        let batch = plan.batch(0..plan.targets.len());
        let mut parts = Vec::new();
        let mut per_store = Vec::new();
        for (i, store_name) in account.stores.iter().enumerate() {
            let opened = self.open_store(store_name);
            let part_path = claim.work_part(i);
            let outcome = match (self.stores.get_mut(store_name), opened) {
                (Some(store), Ok(())) => {
                    let began = std::time::Instant::now();
                    let mut new_part = || {
                        let _ = std::fs::remove_file(&part_path);
                        archive::PartArchive::create(part_path.clone(), prefixes.clone())
                    };
                    let (outcome, part) = export_step(store.as_mut(), &batch, &mut new_part)
                        .map_err(io_err("cannot create an export part in the state folder"))?;
                    crate::metrics::get().store_call(
                        store_name,
                        "export",
                        began.elapsed().as_secs_f64(),
                    );
                    match part {
                        Some(part) => parts.push(
                            part.finish()
                                .map_err(io_err("cannot finish an export part"))?,
                        ),
                        None => {
                            let _ = std::fs::remove_file(&part_path);
                        }
                    }
                    outcome
                }
                (_, opened) => StoreOutcome::failed(
                    store_name,
                    plan.targets.len(),
                    opened
                        .err()
                        .unwrap_or_else(|| StoreFailure::unavailable(store_name, "not opened")),
                ),
            };
            // Export progress: one line per store, with its rows and time (each store is one streamed pass).
            info!(
                account = %account.name,
                file = name,
                store = %store_name,
                stores_done = i + 1,
                stores = account.stores.len(),
                rows = outcome.targets.iter().flatten().sum::<u64>(),
                errors = outcome.targets.iter().filter(|t| t.is_err()).count(),
                seconds = started.signed_duration_since(Utc::now()).num_milliseconds().unsigned_abs() as f64 / 1000.0,
                "export progress"
            );
            per_store.push(outcome);
        }
        if self.stop.is_cancelled() && per_store.iter().any(StoreOutcome::any_error) {
            // As in a forget's chunk: the stop may be what failed a store; the export runs again at the next
            // start (its parts are made again then).
            info!(account = %account.name, file = name, "stopping in an export a store did not finish; the file resumes at the next start");
            return Ok(Outcome::Interrupted);
        }
        let archive_name = log::archive_name(stem(name));
        archive::assemble(&Self::result_dir(account)?, &archive_name, &parts)
            .map_err(io_err(format!("cannot write {archive_name}")))?;
        for part in &parts {
            let _ = std::fs::remove_file(part);
        }
        let (responses, audit) = Chunk {
            range: 0..plan.targets.len(),
            per_store: &per_store,
            with_invalid: true,
            started,
        }
        .journal(ex);
        claim.complete_chunk(0, &responses, &audit)?;
        Ok(Outcome::Done)
    }
}
