//! Per-contact isolation: a problem in one stored row gives an error to the contacts whose rows it is, and to
//! no one else.
//!
//! A store works on a whole batch in one transaction, so one bad row (a recording path outside `files_root`, a
//! value the server refuses, a callback the service will not delete) fails the batch for every target in it.
//! When a store fails a batch for a reason that may belong to some of its rows (anything but a server that
//! cannot be reached or is busy, or a journal that cannot record the plan) and the store's own check still passes, the
//! batch is run again in halves, and a half that fails in halves again, down to single targets. A target that
//! fails alone is one whose own rows fail: it gets the error; every other target is done. A batch of `n` targets
//! with `k` bad ones costs about `2·k·log2(n)` extra runs; a store with no bad row costs nothing extra.
//!
//! A forget changes rows in every run that succeeds, so each run journals what it found before it changes
//! anything ([`ForgetStep::run`]): the step's plan only grows, and a restart that runs the step again counts what
//! the runs before the crash found. An export changes nothing: the failing targets are found by runs whose rows
//! are thrown away, then the others are exported in one run into the part archive ([`export_step`]).

use super::response::StoreFailure;
use crate::journal::{Claim, JournalError, Step};
use crate::requests::Kind;
use crate::stores::{Batch, ExportSink, Found, Store, StoreError};
use tracing::warn;

/// A store's part for one target: the rows it found, or why it could not do its part.
pub(super) type TargetOutcome = Result<u64, StoreFailure>;

/// A store's part in one batch: one [`TargetOutcome`] per target, in batch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoreOutcome {
    /// The store's name.
    pub(super) name: String,
    /// Per target of the batch.
    pub(super) targets: Vec<TargetOutcome>,
}

impl StoreOutcome {
    /// Every target of a batch found `found` rows.
    pub(super) fn found(name: &str, found: Vec<u64>) -> StoreOutcome {
        StoreOutcome {
            name: name.to_owned(),
            targets: found.into_iter().map(Ok).collect(),
        }
    }

    /// Every target of a batch of `n` failed with `error`.
    pub(super) fn failed(name: &str, n: usize, error: StoreFailure) -> StoreOutcome {
        StoreOutcome {
            name: name.to_owned(),
            targets: vec![Err(error); n],
        }
    }

    /// Whether any target failed.
    pub(super) fn any_error(&self) -> bool {
        self.targets.iter().any(Result::is_err)
    }

    /// The rows found per target, when no target failed.
    pub(super) fn all_found(&self) -> Option<Vec<u64>> {
        self.targets
            .iter()
            .map(|t| t.as_ref().ok().copied())
            .collect()
    }

    /// Raises each succeeded target's count to at least its `floor` (rows an earlier run of the same step found
    /// and changed): a resumed step never turns a SUCCESS into "not found".
    pub(super) fn at_least(&mut self, floor: &[u64]) {
        for (target, floor) in self.targets.iter_mut().zip(floor) {
            if let Ok(found) = target {
                *found = (*found).max(*floor);
            }
        }
    }
}

/// Runs a store on some targets of a batch: the targets (indices into the batch) and them as a batch of their own.
type Run<'a> = dyn FnMut(&mut dyn Store, &[usize], &Batch) -> Result<Found, StoreError> + 'a;

/// Targets still to run (indices into the batch), with the result of their run when it is already known.
type Pending = Vec<(Vec<usize>, Option<Result<Found, StoreError>>)>;

/// The targets `subset` (indices into `batch`) as a batch of their own.
fn sub_batch(batch: &Batch, subset: &[usize]) -> Batch {
    Batch {
        targets: subset.iter().map(|&t| batch.targets[t].clone()).collect(),
        scopes: batch.scopes.clone(),
    }
}

/// Runs `run` on the targets of `batch`: `first` is the result of running all of them. When that failed with an
/// error that may be a row's, and the store's check passes, the targets are run again in halves, down to single
/// targets; a target fails only when it fails alone (or with an error that is the whole store's).
fn isolate(
    store: &mut dyn Store,
    batch: &Batch,
    first: Result<Found, StoreError>,
    run: &mut Run<'_>,
) -> StoreOutcome {
    let n = batch.targets.len();
    let name = store.name().to_owned();
    let mut outcome = StoreOutcome::found(&name, vec![0; n]);
    let mut store_sound: Option<bool> = None;
    let mut pending: Pending = vec![((0..n).collect(), Some(first))];
    while let Some((subset, result)) = pending.pop() {
        let result = match result {
            Some(r) => r,
            None => run(store, &subset, &sub_batch(batch, &subset)),
        };
        match result {
            Ok(found) => {
                for (k, &t) in subset.iter().enumerate() {
                    outcome.targets[t] = Ok(found.get(k).copied().unwrap_or(0));
                }
            }
            Err(e) => {
                let split = subset.len() > 1
                    && !e.is_store_wide()
                    && *store_sound.get_or_insert_with(|| store.check().is_ok());
                if split {
                    let (left, right) = subset.split_at(subset.len() / 2);
                    pending.push((right.to_vec(), None));
                    pending.push((left.to_vec(), None));
                    continue;
                }
                if subset.len() > 1 || n == 1 {
                    warn!(store = %name, targets = subset.len(), error = %e, "store failed; these contacts get an error response");
                } else {
                    warn!(store = %name, error = %e, "a stored row of one contact failed; that contact gets an error response, the others are done");
                }
                let failure = StoreFailure::from_error(&name, &e);
                for &t in &subset {
                    outcome.targets[t] = Err(failure.clone());
                }
            }
        }
    }
    outcome
}

/// One store's part of one chunk of a forget (or pseudonymisation): what it runs on, and where it is journaled.
pub(super) struct ForgetStep<'a> {
    /// The file's claim in the journal.
    pub(super) claim: &'a Claim,
    /// Forget or pseudonymise.
    pub(super) kind: Kind,
    /// The chunk's index in the file.
    pub(super) chunk: usize,
    /// The store's name.
    pub(super) name: &'a str,
    /// The chunk's targets.
    pub(super) batch: &'a Batch,
}

/// The store a step runs on, or why it could not be opened.
pub(super) type Opened<'a> = Result<&'a mut dyn Store, StoreFailure>;

impl ForgetStep<'_> {
    /// Runs the step on `store`. Every run journals the rows it found in the step's plan before it changes
    /// anything; a step is marked done only when every target succeeded, so a step with an error runs again
    /// after a restart (a forget is idempotent) and gives the same answers. A step already done is not run: its
    /// journaled counts are its outcome.
    ///
    /// # Errors
    /// [`JournalError`] when the journal fails.
    pub(super) fn run(&self, store: Opened<'_>) -> Result<StoreOutcome, JournalError> {
        let ForgetStep {
            claim,
            kind,
            chunk,
            name,
            batch,
        } = *self;
        let n = batch.targets.len();
        let prior = claim.step(chunk, name)?;
        if let Some(Step { found, done: true }) = prior {
            return Ok(StoreOutcome::found(name, found));
        }
        let store = match store {
            Ok(store) => store,
            Err(failure) => return Ok(StoreOutcome::failed(name, n, failure)),
        };
        // The plan as journaled: what every run so far found, before it changed anything.
        let mut plan: Option<Vec<u64>> = prior.map(|s| s.found).filter(|p| p.len() == n);
        let began = std::time::Instant::now();
        let mut run = |store: &mut dyn Store, subset: &[usize], sub: &Batch| {
            let mut planned = |found: &[u64]| {
                let mut merged = plan.clone().unwrap_or_else(|| vec![0; n]);
                for (k, &t) in subset.iter().enumerate() {
                    let f = found.get(k).copied().unwrap_or(0);
                    merged[t] = merged[t].max(f);
                }
                if plan.as_ref() == Some(&merged) {
                    return Ok(());
                }
                claim
                    .plan_step(chunk, name, &merged)
                    .map_err(|e| StoreError::Journal(Box::new(e)))?;
                plan = Some(merged);
                Ok(())
            };
            match kind {
                Kind::Pseudonymise => store.pseudonymise(sub, &mut planned),
                _ => store.forget(sub, &mut planned),
            }
        };
        let all: Vec<usize> = (0..n).collect();
        let first = run(&mut *store, &all, batch);
        let mut outcome = isolate(&mut *store, batch, first, &mut run);
        crate::metrics::get().store_call(name, kind.prefix(), began.elapsed().as_secs_f64());
        // A row found before a crash still counts: a SUCCESS never turns into "not found" on a resumed step.
        if let Some(plan) = &plan {
            outcome.at_least(plan);
        }
        if let Some(found) = outcome.all_found() {
            claim.finish_step(chunk, name, &found)?;
        }
        Ok(outcome)
    }
}

/// Receives nothing: the rows of runs that only find out which targets fail.
struct Discard;

impl ExportSink for Discard {
    fn table(&mut self, _: &str, _: &str, _: &[String]) -> std::io::Result<()> {
        Ok(())
    }
    fn row(&mut self, _: usize, _: &[String]) -> std::io::Result<()> {
        Ok(())
    }
}

/// Passes rows of a sub-batch on under their index in the whole batch.
struct Remap<'a> {
    sink: &'a mut dyn ExportSink,
    targets: &'a [usize],
}

impl ExportSink for Remap<'_> {
    fn table(&mut self, store: &str, table: &str, columns: &[String]) -> std::io::Result<()> {
        self.sink.table(store, table, columns)
    }
    fn row(&mut self, target: usize, cells: &[String]) -> std::io::Result<()> {
        let t = self
            .targets
            .get(target)
            .ok_or_else(|| std::io::Error::other("row for an unknown target"))?;
        self.sink.row(*t, cells)
    }
}

/// Runs one store's part of an export. `part` makes a fresh part archive (the first one, or one after a failed
/// run whose rows are thrown away); the returned part holds the rows of every target that succeeded, or is
/// `None` when none did.
pub(super) fn export_step<P: ExportSink>(
    store: &mut dyn Store,
    batch: &Batch,
    part: &mut dyn FnMut() -> std::io::Result<P>,
) -> std::io::Result<(StoreOutcome, Option<P>)> {
    let n = batch.targets.len();
    let mut sink = part()?;
    let first = store.export(batch, &mut sink);
    if let Ok(found) = first {
        return Ok((StoreOutcome::found(store.name(), found), Some(sink)));
    }
    drop(sink);
    // Which targets fail alone: their rows are thrown away, the others are exported again in one run.
    let probe = isolate(store, batch, first, &mut |store, _, sub| {
        store.export(sub, &mut Discard)
    });
    let good: Vec<usize> = (0..n).filter(|&t| probe.targets[t].is_ok()).collect();
    if good.is_empty() {
        return Ok((probe, None));
    }
    let mut sink = part()?;
    let result = store.export(
        &sub_batch(batch, &good),
        &mut Remap {
            sink: &mut sink,
            targets: &good,
        },
    );
    let mut outcome = probe;
    match result {
        Ok(found) => {
            for (k, &t) in good.iter().enumerate() {
                outcome.targets[t] = Ok(found.get(k).copied().unwrap_or(0));
            }
            Ok((outcome, Some(sink)))
        }
        Err(e) => {
            warn!(store = %outcome.name, error = %e, "store failed during export");
            let failure = StoreFailure::from_error(&outcome.name, &e);
            for &t in &good {
                outcome.targets[t] = Err(failure.clone());
            }
            Ok((outcome, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::DeviceKind;
    use crate::stores::{Scope, Target};

    /// A store whose targets with an odd key fail whenever they are in a run.
    struct OddFails {
        runs: usize,
    }

    impl Store for OddFails {
        fn name(&self) -> &str {
            "odd"
        }
        fn check(&mut self) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
        fn forget(
            &mut self,
            batch: &Batch,
            planned: &mut dyn FnMut(&[u64]) -> Result<(), StoreError>,
        ) -> Result<Found, StoreError> {
            self.runs += 1;
            let keys: Vec<u64> = batch
                .targets
                .iter()
                .map(|t| t.key.parse().unwrap_or(0))
                .collect();
            if keys.iter().any(|k| k % 2 == 1) {
                return Err(crate::stores::MappingError::RecordingOutside.into());
            }
            let found: Vec<u64> = keys.iter().map(|k| k / 2).collect();
            planned(&found)?;
            Ok(found)
        }
        fn export(&mut self, batch: &Batch, _: &mut dyn ExportSink) -> Result<Found, StoreError> {
            self.forget(batch, &mut |_| Ok(()))
        }
    }

    fn batch(keys: &[u64]) -> Batch {
        Batch {
            targets: keys
                .iter()
                .map(|k| Target {
                    kind: DeviceKind::Email,
                    key: k.to_string(),
                    scope: 0,
                    digest: String::new(),
                })
                .collect(),
            scopes: vec![Scope {
                accountid: None,
                enterprise: Vec::new(),
                shortcodes: Vec::new(),
            }],
        }
    }

    #[test]
    fn only_targets_that_fail_alone_get_the_error() {
        let keys = [2, 3, 4, 6, 8, 10, 12, 14];
        let b = batch(&keys);
        let mut store = OddFails { runs: 0 };
        let first = store.forget(&b, &mut |_| Ok(()));
        let outcome = isolate(&mut store, &b, first, &mut |s, _, sub| {
            s.forget(sub, &mut |_| Ok(()))
        });
        let failed: Vec<u64> = keys
            .iter()
            .zip(&outcome.targets)
            .filter(|(_, t)| t.is_err())
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(failed, [3]);
        let found: Vec<u64> = outcome
            .targets
            .iter()
            .map(|t| t.as_ref().copied().unwrap_or(0))
            .collect();
        assert_eq!(found, [1, 0, 2, 3, 4, 5, 6, 7]);
        assert!(
            store.runs <= 1 + 2 * 3,
            "one bad target of 8 costs a few runs, not one per target: {}",
            store.runs
        );
    }

    /// A stored row of the property test: its two email cells (indices into the pool) and whether its recording
    /// path points outside `files_root`.
    type Row = (usize, Option<usize>, bool);

    const POOL: usize = 6;

    fn email(i: usize) -> String {
        format!("user{i}@example.com")
    }

    /// Runs one forget of the emails `wanted` against a real SQLite store holding `rows`, through
    /// [`ForgetStep::run`] with a real journal; returns the outcome and each row's cells afterwards.
    fn forget_rows(rows: &[Row], wanted: &[usize]) -> (StoreOutcome, Vec<(String, String)>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("s.db");
        let conn = rusqlite::Connection::open(&db).expect("db");
        conn.execute_batch("CREATE TABLE t(a TEXT, b TEXT, name TEXT, file TEXT)")
            .expect("table");
        std::fs::create_dir(dir.path().join("rec")).expect("rec");
        for (i, (a, b, bad)) in rows.iter().enumerate() {
            let file = if *bad {
                "../outside.wav".to_owned()
            } else {
                std::fs::write(dir.path().join(format!("rec/{i}.wav")), b"r").expect("rec");
                format!("{i}.wav")
            };
            conn.execute(
                "INSERT INTO t VALUES (?1, ?2, 'someone', ?3)",
                rusqlite::params![email(*a), b.map(email), file],
            )
            .expect("row");
        }
        let config: crate::config::SqliteConfig = toml::from_str(&format!(
            "path = {:?}\nfiles_root = {:?}\n[[tables]]\nname = \"t\"\nemail = [\"a\", \"b\"]\npersonal = [\"name\"]\nfile = \"file\"\n",
            db,
            dir.path().join("rec")
        ))
        .expect("config");
        let mut store: Box<dyn Store> =
            Box::new(crate::stores::sqlite::SqliteStore::open("s", &config).expect("store"));
        let journal = crate::journal::Journal::open(&dir.path().join("state")).expect("journal");
        let claim = journal
            .claim(
                "a",
                "f",
                Kind::Forget,
                b"00",
                500,
                crate::deadline::Dates::received_now(Default::default(), chrono_tz::UTC),
            )
            .expect("claim");
        let targets = wanted
            .iter()
            .map(|&i| {
                let device = crate::requests::Device::from_contact(
                    &serde_json::json!({ "email": email(i) }),
                )
                .expect("device");
                Target {
                    kind: device.kind(),
                    key: device.match_key(),
                    scope: 0,
                    digest: String::new(),
                }
            })
            .collect();
        let batch = Batch {
            targets,
            scopes: vec![Scope {
                accountid: None,
                enterprise: Vec::new(),
                shortcodes: Vec::new(),
            }],
        };
        let step = ForgetStep {
            claim: &claim,
            kind: Kind::Forget,
            chunk: 0,
            name: "s",
            batch: &batch,
        };
        let outcome = step.run(Ok(store.as_mut())).expect("journal");
        let cells = conn
            .prepare("SELECT a, name FROM t ORDER BY _rowid_")
            .expect("select")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        (outcome, cells)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Issue 14's isolation rule: the contacts answered ERROR are exactly those whose matched rows include a
        /// bad row; every row of the others is forgotten; a bad row, or a row nobody asked for, is untouched.
        #[test]
        fn exactly_the_contacts_whose_rows_include_a_bad_row_fail(
            rows in proptest::collection::vec(
                (0..POOL, proptest::option::of(0..POOL), proptest::bool::weighted(0.2)),
                0..10,
            ),
            wanted in proptest::sample::subsequence((0..POOL).collect::<Vec<_>>(), 1..=POOL),
        ) {
            let (outcome, cells) = forget_rows(&rows, &wanted);
            let holds = |row: &Row, e: usize| row.0 == e || row.1 == Some(e);
            let should_fail: Vec<bool> = wanted
                .iter()
                .map(|&e| rows.iter().any(|r| r.2 && holds(r, e)))
                .collect();
            let failed: Vec<bool> = outcome.targets.iter().map(Result::is_err).collect();
            proptest::prop_assert_eq!(&failed, &should_fail, "rows {:?}, wanted {:?}", rows, wanted);
            for (k, &e) in wanted.iter().enumerate() {
                let held = rows.iter().filter(|r| holds(r, e)).count() as u64;
                if !should_fail[k] {
                    proptest::prop_assert_eq!(&outcome.targets[k], &Ok(held));
                }
            }
            for (row, (a, name)) in rows.iter().zip(&cells) {
                let done_by_someone = wanted
                    .iter()
                    .zip(&should_fail)
                    .any(|(&e, &fails)| !fails && holds(row, e));
                let changed = a.starts_with("forgotten-");
                proptest::prop_assert_eq!(changed, !row.2 && done_by_someone, "row {:?} is now {}", row, a);
                proptest::prop_assert_eq!(name == "REDACTED", changed);
            }
        }
    }
}
