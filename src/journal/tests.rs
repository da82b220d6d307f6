use super::*;
use rusqlite::{params, Connection};

fn entry() -> AuditEntry {
    AuditEntry {
        account: "a".into(),
        file: "f".into(),
        requestcase: None,
        device_type: Some("phone".into()),
        device_hmac: Some("00".into()),
        action: "forget".into(),
        stores: "{}".into(),
        outcome: "SUCCESS".into(),
        started: Utc::now(),
        finished: Utc::now(),
    }
}

/// A connection of its own to the ledger of `dir`, for what the journal never does (rows as an older gdprd
/// wrote them, writes the audit trail refuses).
fn raw(dir: &Path) -> Connection {
    Connection::open(dir.join("ledger.db")).expect("ledger")
}

/// A request received now, due in a month (UTC).
fn dates() -> Dates {
    Dates::received_now(crate::deadline::Period::default(), chrono_tz::UTC)
}

fn unfinished(j: &Journal) -> Vec<(String, String)> {
    j.unfinished().expect("unfinished")
}

/// A PostgreSQL schema of its own for one test's cluster ledger, dropped when the test ends.
pub(super) struct PgSchema {
    pub(super) url: String,
    pub(super) name: String,
}

impl PgSchema {
    /// A fresh schema name on the test server, or `None` (a skip, said on the terminal) outside CI when
    /// `GDPRD_TEST_POSTGRES_URL` is not set.
    pub(super) fn new() -> Option<PgSchema> {
        let Ok(url) = std::env::var("GDPRD_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set GDPRD_TEST_POSTGRES_URL"
            );
            eprintln!("skipping the PostgreSQL ledger: GDPRD_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = format!("gdprd_t_{:016x}", rand::random::<u64>());
        Some(PgSchema { url, name })
    }

    /// `[cluster]` for node `node` on this schema.
    pub(super) fn cluster(&self, node: &str) -> ClusterConfig {
        ClusterConfig {
            ledger_url: self.url.clone(),
            password_file: None,
            password_env: None,
            tls: crate::stores::TlsMode::Disable,
            ca_file: None,
            ledger_schema: self.name.clone(),
            node: Some(node.to_owned()),
            lease_seconds: std::time::Duration::from_secs(30),
            connect_timeout_seconds: std::time::Duration::from_secs(10),
        }
    }

    /// A connection of its own, with the schema as its search path.
    pub(super) fn raw(&self) -> ::postgres::Client {
        let mut c = ::postgres::Client::connect(&self.url, ::postgres::NoTls).expect("connect");
        c.batch_execute(&format!("SET search_path TO {}", self.name))
            .expect("search path");
        c
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = ::postgres::Client::connect(&self.url, ::postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// A journal to test, on one ledger or the other.
struct Backend {
    what: &'static str,
    dir: tempfile::TempDir,
    journal: Journal,
    pg: Option<PgSchema>,
}

/// A journal on the SQLite ledger, and one on a PostgreSQL ledger of its own when the test server is set.
fn backends() -> Vec<Backend> {
    let sqlite_dir = tempfile::tempdir().expect("tempdir");
    let mut out = vec![Backend {
        what: "sqlite",
        journal: Journal::open(sqlite_dir.path()).expect("open"),
        dir: sqlite_dir,
        pg: None,
    }];
    if let Some(pg) = PgSchema::new() {
        let dir = tempfile::tempdir().expect("tempdir");
        out.push(Backend {
            what: "postgres",
            journal: Journal::open_with(dir.path(), Some(&pg.cluster("n1"))).expect("open"),
            dir,
            pg: Some(pg),
        });
    }
    out
}

#[test]
fn claim_plan_complete_round_trip() {
    for b in backends() {
        eprintln!("ledger: {}", b.what);
        claim_plan_complete_round_trip_on(&b.journal, b.dir.path());
    }
}

fn claim_plan_complete_round_trip_on(j: &Journal, dir: &Path) {
    assert!(matches!(j.admit("a", "f").expect("admit"), Known::New));
    let claim = j
        .claim("a", "f", Kind::Forget, b"abc", 2, dates())
        .expect("claim");
    assert_eq!(
        claim.read_claimed(Path::new("/nonexistent"), 10),
        Some(b"abc".to_vec()),
        "the claimed copy is kept and holds the bytes claimed"
    );
    assert!(
        j.claim("a", "f", Kind::Forget, b"abc", 2, dates()).is_err(),
        "a name is claimed once"
    );
    claim.plan_step(0, "s", &[1, 0]).expect("plan");
    assert_eq!(
        claim.step(0, "s").expect("step"),
        Some(Step {
            found: vec![1, 0],
            done: false
        })
    );
    claim.finish_step(0, "s", &[1, 0]).expect("finish");
    assert_eq!(
        claim.step(0, "s").expect("step").map(|s| s.done),
        Some(true)
    );
    claim
        .complete_chunk(0, &[((0, 0), Response::Success)], &[entry()])
        .expect("complete");
    assert!(claim.chunk_done(0).expect("done"));
    assert!(
        claim.complete_chunk(0, &[], &[]).is_err(),
        "a chunk completes once"
    );
    assert_eq!(
        claim.responses().expect("responses")[&(0, 0)],
        Response::Success
    );
    assert_eq!(unfinished(j), vec![("a".to_owned(), "f".to_owned())]);
    assert!(matches!(
        j.admit("a", "f").expect("admit"),
        Known::Unfinished(c) if c.id() == claim.id() && c.kind() == Some(Kind::Forget)
    ));
    claim
        .finish(&["f-execution-log.json".into()], Counts::default(), None)
        .expect("finish");
    assert!(matches!(
        j.admit("a", "f").expect("admit"),
        Known::Finished(_)
    ));
    claim.mark_removed(dir).expect("removed");
    assert!(unfinished(j).is_empty());
    assert!(
        !dir.join(format!("claimed/{}.json", claim.id())).exists(),
        "the claimed copy goes with the submission"
    );
    assert!(matches!(
        j.admit("a", "f").expect("admit"),
        Known::Taken(rec) if rec.state == FileState::Done
    ));
}

#[test]
fn a_submitted_request_is_claimed_with_its_copy_and_reported_while_it_executes() {
    for b in backends() {
        eprintln!("ledger: {}", b.what);
        submitted_on(&b.journal, b.dir.path(), b.pg.is_some());
    }
}

fn submitted_on(j: &Journal, dir: &Path, shared: bool) {
    let claim = j
        .submit("a", "forget-api-x.json", Kind::Forget, b"{}", 500, dates())
        .expect("submit");
    let claimed: Vec<String> = folder::entries(&dir.join("claimed"))
        .map(|(_, n)| n)
        .collect();
    let copies = if shared {
        // A cluster's ledger keeps the copy itself.
        vec![]
    } else {
        vec![format!("{}.json", claim.id())]
    };
    assert_eq!(claimed, copies, "no pending copy is left");
    let taken = j
        .claimed(claim.id())
        .expect("claimed")
        .expect("still claimed");
    let job = || j.job(claim.id()).expect("job").expect("known");
    assert!(!job().started, "submitted, not started");
    {
        let _running = taken.executing();
        assert!(
            job().started,
            "reported in progress while the worker executes it"
        );
    }
    assert!(!job().started);
    taken.finish(&[], Counts::default(), None).expect("finish");
    assert!(j.claimed(claim.id()).expect("claimed").is_none());
}

#[test]
fn a_file_waiting_for_stores_keeps_when_it_began_and_counts_its_tries() {
    for b in backends() {
        eprintln!("ledger: {}", b.what);
        waiting_on(&b.journal);
    }
}

fn waiting_on(j: &Journal) {
    let claim = j
        .claim("a", "w", Kind::Forget, b"abc", 2, dates())
        .expect("claim");
    let id = claim.id();
    let listed = |j: &Journal| {
        j.ledger
            .files(&FileFilter::default())
            .expect("files")
            .into_iter()
            .find(|f| f.name == "w")
            .expect("listed")
            .waiting
    };
    assert_eq!(listed(j), None);
    let first = claim.wait_for(&["pg".to_owned()]).expect("wait");
    assert_eq!(first.tries, 1);
    let second = claim
        .wait_for(&["pg".to_owned(), "crm".to_owned()])
        .expect("wait");
    assert_eq!(
        second.since, first.since,
        "the window counts from the first try"
    );
    assert_eq!(second.tries, 2);
    assert_eq!(j.ledger.waiting(id).expect("waiting"), Some(second.clone()));
    assert_eq!(listed(j), Some(second));
    claim.done_waiting().expect("done");
    assert_eq!(j.ledger.waiting(id).expect("waiting"), None);
    assert_eq!(listed(j), None);
}

#[test]
fn a_retry_is_a_claim_linked_to_its_original_and_runs_once() {
    for b in backends() {
        eprintln!("ledger: {}", b.what);
        retry_on(&b.journal);
    }
}

fn retry_on(j: &Journal) {
    let bytes = br#"{"requests":[]}"#;
    let original = j
        .claim("a", "r.json", Kind::Forget, bytes, 2, dates())
        .expect("claim");
    let failed = Response::Recorded("ERROR: store \"pg\" unavailable: down; …".into());
    original
        .complete_chunk(0, &[((0, 0), failed), ((0, 1), Response::Success)], &[])
        .expect("chunk");
    let stores = ["pg".to_owned(), "crm".to_owned()];
    assert!(matches!(
        j.retry(original.id(), None, &stores),
        Err(RetryRefusal::NotFinished { .. })
    ));
    original
        .finish(&[], Counts::default(), None)
        .expect("finish");
    assert!(matches!(
        j.retry(original.id(), None, &stores),
        Err(RetryRefusal::CopyGone(_))
    ));
    j.keep_for_retry(original.id(), bytes).expect("keep");
    assert!(matches!(
        j.retry(original.id(), Some("nosuch"), &stores),
        Err(RetryRefusal::UnknownStore { .. })
    ));
    let retry = j.retry(original.id(), None, &stores).expect("retry");
    assert_eq!(retry.record().name, "r.json#retry-2");
    let link = j.retry_link(retry.id()).expect("link").expect("a retry");
    assert_eq!((link.original, link.attempt), (original.id(), 2));
    assert_eq!(
        link.stores, stores,
        "no audit row names a failed store: every store"
    );
    assert!(matches!(
        j.retry(original.id(), None, &stores),
        Err(RetryRefusal::Pending { .. })
    ));
    assert!(matches!(
        j.retry(retry.id(), None, &stores),
        Err(RetryRefusal::IsRetry { .. })
    ));
    retry
        .complete_chunk(0, &[((0, 0), Response::Success)], &[])
        .expect("chunk");
    retry.finish(&[], Counts::default(), None).expect("finish");
    let (now, names) = j
        .retried_responses(original.record(), u32::MAX)
        .expect("responses");
    assert_eq!(now.get(&(0, 0)), Some(&Response::Success));
    assert_eq!(names, ["r.json", "r.json#retry-2"]);
    assert!(matches!(
        j.retry(original.id(), None, &stores),
        Err(RetryRefusal::Nothing { .. })
    ));
}

#[test]
fn leaving_removes_only_the_file_claimed() {
    for b in backends() {
        eprintln!("ledger: {}", b.what);
        leaving_on(&b.journal);
    }
}

fn leaving_on(j: &Journal) {
    let submit = tempfile::tempdir().expect("tempdir");
    let path = submit.path().join("f");
    std::fs::write(&path, b"abc").expect("write");
    let claim = j
        .claim("a", "f", Kind::Forget, b"abc", 2, dates())
        .expect("claim");
    assert!(matches!(
        claim.leave_submit(submit.path(), &path, 10).expect("leave"),
        Leaving::Gone
    ));
    assert!(!path.exists());
    std::fs::write(&path, b"abd").expect("write");
    match claim.leave_submit(submit.path(), &path, 10).expect("leave") {
        Leaving::Replaced(held) => {
            assert_eq!(std::fs::read(held).expect("held"), b"abd");
        }
        Leaving::Gone => panic!("a replaced file is not the claimed one"),
    }
}

#[test]
fn file_digests_are_keyed_and_old_ledgers_are_migrated() {
    use sha2::Digest;
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = br#"{"requests":[{"type":"FORGET","contacts":[{"phone":"+1 781 555 4821"}]}]}"#;
    let plain = hex::encode(sha2::Sha256::digest(bytes));
    {
        let j = Journal::open(dir.path()).expect("open");
        let claim = j
            .claim("a", "new", Kind::Forget, bytes, 1, dates())
            .expect("claim");
        let stored = claim.record().sha256.clone().expect("digest");
        assert!(stored.starts_with("hmac-sha256:") && !stored.contains(&plain));
        let other = tempfile::tempdir().expect("tempdir");
        let elsewhere = Journal::open(other.path()).expect("open");
        assert_ne!(elsewhere.digest(bytes), stored, "keyed by the installation");
        // Rows as an older gdprd wrote them: a file in work with its claimed copy, one without, a finished one.
        let conn = raw(dir.path());
        for (id, state, removed) in [(10, "claimed", 0), (11, "claimed", 0), (12, "done", 1)] {
            conn.execute(
                "INSERT INTO files (id, account, name, sha256, state, received_at, removed)
                 VALUES (?1, 'a', ?1, ?2, ?3, 'then', ?4)",
                params![id, plain, state, removed],
            )
            .expect("legacy row");
        }
    }
    std::fs::write(dir.path().join("claimed/10.json"), bytes).expect("copy");
    let j = Journal::open(dir.path()).expect("reopen");
    let conn = raw(dir.path());
    let digest = |id: i64| -> Option<String> {
        conn.query_row("SELECT sha256 FROM files WHERE id = ?1", [id], |r| r.get(0))
            .expect("row")
    };
    assert_eq!(
        digest(10),
        Some(j.digest(bytes)),
        "keyed from its claimed copy"
    );
    assert_eq!(digest(11), Some(plain.clone()), "kept until it finishes");
    assert_eq!(digest(12), None, "a finished file's digest is cleared");
    let Known::Unfinished(legacy) = j.admit("a", "11").expect("admit") else {
        panic!("a legacy file in work is unfinished");
    };
    assert_eq!(
        legacy.read_claimed(&dir.path().join("nonexistent"), 1000),
        None,
        "no copy"
    );
    std::fs::write(dir.path().join("legacy"), bytes).expect("write");
    assert!(
        legacy
            .read_claimed(&dir.path().join("legacy"), 1000)
            .is_some(),
        "a legacy digest still compares"
    );
    let none: i64 = conn
        .query_row(
            "SELECT count(*) FROM files WHERE sha256 = ?1",
            [&plain],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(none, 1);
}

#[test]
fn audit_is_append_only() {
    for b in backends() {
        b.journal
            .reject("a", "f", "ERROR: x", &entry())
            .expect("insert");
        match &b.pg {
            None => {
                let conn = raw(b.dir.path());
                let err = conn.execute("DELETE FROM audit", []).expect_err("refused");
                assert!(err.to_string().contains("append-only"));
                assert!(conn.execute("UPDATE audit SET outcome = 'x'", []).is_err());
            }
            Some(pg) => {
                let mut c = pg.raw();
                for sql in [
                    "DELETE FROM audit",
                    "UPDATE audit SET outcome = 'x'",
                    "TRUNCATE audit",
                ] {
                    let err = c.batch_execute(sql).expect_err(sql);
                    let db = err.as_db_error().map(|e| e.message().to_owned());
                    assert_eq!(
                        db.as_deref(),
                        Some("the audit trail is append-only"),
                        "{sql}"
                    );
                }
                let n: i64 = c
                    .query_one("SELECT count(*) FROM audit", &[])
                    .expect("count")
                    .get(0);
                assert_eq!(n, 1);
            }
        }
    }
}

/// Two nodes of one cluster: each with its state folder (the same installation secret) on one ledger.
fn two_nodes(pg: &PgSchema) -> [(tempfile::TempDir, Journal); 2] {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let ja = Journal::open_with(a.path(), Some(&pg.cluster("node-a"))).expect("node a");
    std::fs::copy(a.path().join("secret.key"), b.path().join("secret.key")).expect("secret");
    let jb = Journal::open_with(b.path(), Some(&pg.cluster("node-b"))).expect("node b");
    [(a, ja), (b, jb)]
}

#[test]
fn two_nodes_racing_to_claim_one_file_one_wins() {
    let Some(pg) = PgSchema::new() else { return };
    let [(_a, ja), (_b, jb)] = two_nodes(&pg);
    for round in 0..20 {
        let name = format!("f{round}");
        let barrier = std::sync::Barrier::new(2);
        let claim = |j: &Journal| {
            barrier.wait();
            j.claim("acc", &name, Kind::Forget, b"{}", 10, dates())
                .map(|c| c.id())
        };
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| claim(&ja));
            let tb = s.spawn(|| claim(&jb));
            (ta.join().expect("a"), tb.join().expect("b"))
        });
        assert!(
            ra.is_ok() != rb.is_ok(),
            "round {round}: exactly one claim wins: {ra:?} {rb:?}"
        );
        // The loser sees the winner's claim, held: it is the winner's to work.
        let (winner, loser, node) = if ra.is_ok() {
            (&ja, &jb, "node-a")
        } else {
            (&jb, &ja, "node-b")
        };
        assert!(
            matches!(loser.admit("acc", &name).expect("admit"), Known::Elsewhere { node: n } if n == node),
            "round {round}"
        );
        assert!(matches!(
            winner.admit("acc", &name).expect("admit"),
            Known::Unfinished(_)
        ));
    }
    let n: i64 = pg
        .raw()
        .query_one("SELECT count(*) FROM files", &[])
        .expect("count")
        .get(0);
    assert_eq!(n, 20);
}

#[test]
fn a_node_whose_lease_expired_is_fenced_once_another_took_the_file_over() {
    let Some(pg) = PgSchema::new() else { return };
    let [(a, ja), (_b, jb)] = two_nodes(&pg);
    let bytes = br#"{"requests":[]}"#;
    let first = ja
        .claim("acc", "f", Kind::Forget, bytes, 10, dates())
        .expect("claim");
    first
        .plan_step(0, "s", &[1])
        .expect("node a writes while it holds the lease");
    first.renew().expect("renew");
    assert!(
        matches!(jb.admit("acc", "f").expect("admit"), Known::Elsewhere { node } if node == "node-a"),
        "a live lease is not taken over"
    );
    // Node a pauses past its lease (as under SIGSTOP): the lease expires on the server's clock.
    pg.raw()
        .execute(
            "UPDATE files SET lease_expires = now() - interval '1 second' WHERE id = $1",
            &[&first.id()],
        )
        .expect("expire");
    let Known::Unfinished(second) = jb.admit("acc", "f").expect("admit") else {
        panic!("an expired lease is taken over");
    };
    assert_eq!(second.id(), first.id());
    assert!(
        !a.path()
            .join(format!("claimed/{}.json", first.id()))
            .exists(),
        "a cluster node keeps no copy of its own"
    );
    assert_eq!(
        second.read_claimed(Path::new("/nonexistent"), 1000),
        Some(bytes.to_vec()),
        "node b reads the claimed copy from the ledger"
    );
    second.finish_step(0, "s", &[1]).expect("node b writes");
    // Node a wakes up: each of its late writes is refused and leaves nothing.
    let fenced = |r: Result<(), JournalError>| matches!(r, Err(JournalError::Fenced { holder: Some(ref h), .. }) if h == "node-b");
    assert!(fenced(first.plan_step(0, "s", &[9])));
    assert!(fenced(first.complete_chunk(
        0,
        &[((0, 0), Response::Success)],
        &[entry()]
    )));
    assert!(fenced(first.finish(&[], Counts::default(), None)));
    assert!(fenced(first.renew()));
    assert_eq!(
        second.step(0, "s").expect("step"),
        Some(Step {
            found: vec![1],
            done: true
        }),
        "node a's late plan did not land"
    );
    assert!(!second.chunk_done(0).expect("chunk"), "nor its chunk");
    let audit: i64 = pg
        .raw()
        .query_one("SELECT count(*) FROM audit", &[])
        .expect("count")
        .get(0);
    assert_eq!(audit, 0, "nor its audit rows");
    second
        .complete_chunk(0, &[((0, 0), Response::Success)], &[entry()])
        .expect("node b completes");
    second
        .finish(&[], Counts::default(), None)
        .expect("node b finishes");
    assert!(matches!(
        ja.admit("acc", "f").expect("admit"),
        Known::Finished(_)
    ));
}

#[test]
fn migrations_run_once_when_nodes_start_together() {
    let Some(pg) = PgSchema::new() else { return };
    let barrier = std::sync::Barrier::new(4);
    let opened: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (pg, barrier) = (&pg, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    PostgresLedger::open(&pg.cluster(&format!("n{i}")), "n")
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    let mut c = pg.raw();
    let versions: Vec<i32> = c
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        (1..=postgres::MIGRATIONS.len() as i32).collect::<Vec<_>>()
    );
    c.execute("INSERT INTO schema_version (version) VALUES (999)", &[])
        .expect("a newer gdprd's migration");
    let err = PostgresLedger::open(&pg.cluster("n"), "n")
        .err()
        .expect("refused");
    assert!(
        matches!(err, JournalError::LedgerTooNew { found: 999, .. }),
        "{err}"
    );
}

#[test]
fn a_node_with_another_installation_secret_is_refused() {
    let Some(pg) = PgSchema::new() else { return };
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    Journal::open_with(a.path(), Some(&pg.cluster("a"))).expect("first node");
    let err = Journal::open_with(b.path(), Some(&pg.cluster("b")))
        .err()
        .expect("refused");
    assert!(matches!(err, JournalError::SecretMismatch { .. }), "{err}");
    assert!(err.to_string().contains("copy secret.key"), "{err}");
}

#[test]
fn migrate_ledger_copies_a_sqlite_ledger_once_and_refuses_other_rows() {
    let Some(pg) = PgSchema::new() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = br#"{"requests":[]}"#;
    let (done_id, open_id, due) = {
        let j = Journal::open(dir.path()).expect("open");
        let done = j
            .claim("a", "done", Kind::Forget, b"x", 10, dates())
            .expect("claim");
        done.plan_step(0, "s", &[2]).expect("plan");
        done.finish_step(0, "s", &[2]).expect("step");
        done.complete_chunk(
            0,
            &[((0, 0), Response::Success), ((0, 1), Response::NotFound)],
            &[entry(), entry()],
        )
        .expect("chunk");
        done.finish(&["done-execution-log.json".into()], Counts::default(), None)
            .expect("finish");
        done.mark_removed(dir.path()).expect("removed");
        j.reject("a", "bad", "ERROR: x", &entry()).expect("reject");
        let open = j
            .claim("a", "open", Kind::Export, bytes, 10, dates())
            .expect("claim");
        let due = open.record().due.expect("due");
        (done.id(), open.id(), due)
    };
    let cluster = pg.cluster("n1");
    let first = migrate_ledger(dir.path(), &cluster).expect("migrate");
    assert_eq!(
        first,
        Migrated {
            files: 3,
            audit: 3,
            copies: 1,
            already: false
        }
    );
    let again = migrate_ledger(dir.path(), &cluster).expect("again");
    assert!(again.already, "{again:?}");
    // The cluster node (this state folder's secret) sees everything the SQLite ledger held.
    std::fs::remove_file(dir.path().join(format!("claimed/{open_id}.json"))).expect("rm copy");
    let j = Journal::open_with(dir.path(), Some(&cluster)).expect("cluster journal");
    let Known::Unfinished(open) = j.admit("a", "open").expect("admit") else {
        panic!("the file in work resumes");
    };
    assert_eq!(open.id(), open_id);
    assert_eq!(open.kind(), Some(Kind::Export));
    assert_eq!(
        open.read_claimed(Path::new("/nonexistent"), 1000),
        Some(bytes.to_vec()),
        "its claimed copy came along"
    );
    assert!(matches!(j.admit("a", "done").expect("admit"), Known::Taken(r) if r.id == done_id));
    assert!(matches!(
        j.admit("a", "bad").expect("admit"),
        Known::Rejected
    ));
    let responses = j.responses(done_id).expect("responses");
    assert_eq!(responses[&(0, 1)], Response::NotFound);
    assert_eq!(
        j.file(open_id).expect("record").expect("known").due,
        Some(due),
        "its due day came along"
    );
    let next = j
        .claim("a", "next", Kind::Forget, b"y", 10, dates())
        .expect("claim");
    assert!(next.id() > open_id, "new ids follow the copied ones");
    // Other rows than the SQLite ledger's: refused, nothing written.
    let err = migrate_ledger(dir.path(), &cluster).expect_err("refused");
    assert!(matches!(err, JournalError::MigrateConflict { .. }), "{err}");
}

/// Issue 17: several workers execute files at once; each file is reported in progress until its own worker is
/// done with it (one worker finishing does not end another's).
#[test]
fn files_executing_at_once_are_each_reported_in_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journal::open(dir.path()).expect("open");
    let submit = |account: &str| {
        let claim = j
            .submit(
                account,
                "forget-api-x.json",
                Kind::Forget,
                b"{}",
                500,
                dates(),
            )
            .expect("submit");
        j.claimed(claim.id())
            .expect("claimed")
            .expect("still claimed")
    };
    let (a, b) = (submit("a"), submit("b"));
    let started = |id: i64| j.job(id).expect("job").expect("known").started;
    let running_a = a.executing();
    let running_b = b.executing();
    assert!(started(a.id()) && started(b.id()), "both in progress");
    drop(running_a);
    assert!(!started(a.id()), "a's worker is done with it");
    assert!(started(b.id()), "b is still in progress");
    drop(running_b);
    assert!(!started(b.id()));
}

#[test]
fn the_leases_of_files_at_work_are_renewed_in_the_background() {
    let Some(pg) = PgSchema::new() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = pg.cluster("n1");
    cluster.lease_seconds = std::time::Duration::from_secs(3);
    let j = Journal::open_with(dir.path(), Some(&cluster)).expect("open");
    let working = j
        .claim("a", "working", Kind::Forget, b"1", 10, dates())
        .expect("claim");
    let waiting = j
        .claim("a", "waiting", Kind::Forget, b"2", 10, dates())
        .expect("claim");
    let _at_work = working.executing();
    let mut raw = pg.raw();
    raw.execute(
        "UPDATE files SET lease_expires = now() - interval '1 hour'",
        &[],
    )
    .expect("expire both");
    let expired = |raw: &mut ::postgres::Client, id: i64| -> bool {
        raw.query_one(
            "SELECT lease_expires < now() FROM files WHERE id = $1",
            &[&id],
        )
        .expect("lease")
        .get(0)
    };
    let start = std::time::Instant::now();
    while expired(&mut raw, working.id()) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "the lease of the file at work is renewed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        expired(&mut raw, waiting.id()),
        "a file no worker executes keeps its lease as it was"
    );
}

#[test]
fn a_singleton_task_runs_on_one_node_at_a_time_with_failover() {
    let hour = std::time::Duration::from_secs(3600);
    let single = tempfile::tempdir().expect("tempdir");
    let alone = Journal::open(single.path()).expect("open");
    assert!(
        alone.hold_singleton("sweep", hour),
        "one daemon holds every task"
    );
    let Some(pg) = PgSchema::new() else { return };
    let [(_a, ja), (_b, jb)] = two_nodes(&pg);
    assert!(ja.hold_singleton("sweep", hour), "the first node takes it");
    assert!(
        !jb.hold_singleton("sweep", hour),
        "not while node a holds it"
    );
    assert!(
        jb.hold_singleton("other", hour),
        "each task has its own lease"
    );
    assert!(ja.hold_singleton("sweep", hour), "node a renews it");
    // Node a dies: its lease runs out.
    pg.raw()
        .execute(
            "UPDATE singletons SET expires = now() - interval '1 second' WHERE name = 'sweep'",
            &[],
        )
        .expect("expire");
    assert!(jb.hold_singleton("sweep", hour), "node b takes it over");
    assert!(
        !ja.hold_singleton("sweep", hour),
        "and node a, back, does not"
    );
    jb.release_singleton("sweep").expect("release");
    assert!(
        ja.hold_singleton("sweep", hour),
        "a released task is free at once"
    );
    let epoch: i64 = pg
        .raw()
        .query_one("SELECT epoch FROM singletons WHERE name = 'sweep'", &[])
        .expect("epoch")
        .get(0);
    assert_eq!(epoch, 3, "each change of holder is a new epoch");
}

#[test]
fn a_ledger_of_the_first_schema_upgrades_in_place_with_due_days_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // A ledger as the gdprd before deadlines made it: the first schema, user_version 0.
        let conn = raw(dir.path());
        conn.execute_batch(sqlite::SCHEMA).expect("first schema");
        for (id, state, received) in [
            (1, "claimed", "2026-01-31T10:00:00.000Z"),
            (2, "done", "2026-03-05T23:30:00.000Z"),
            (3, "rejected", "2026-03-06T08:00:00.000Z"),
        ] {
            conn.execute(
                "INSERT INTO files (id, account, name, state, received_at) VALUES (?1, 'a', ?1, ?2, ?3)",
                params![id, state, received],
            )
            .expect("row");
        }
    }
    assert!(
        matches!(
            Reader::open(dir.path()),
            Err(JournalError::Outdated { found: 0, .. })
        ),
        "a read-only open does not upgrade, and says so"
    );
    let j = Journal::open(dir.path()).expect("upgrade");
    let version: u32 = raw(dir.path())
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, sqlite::VERSION);
    let due = |id| j.file(id).expect("record").expect("known").due;
    let day = |s: &str| s.parse::<chrono::NaiveDate>().expect("day");
    assert_eq!(due(1).map(|d| d.on), Some(day("2026-02-28")));
    assert_eq!(
        due(1).map(|d| d.at),
        Some("2026-03-01T00:00:00Z".parse().expect("t"))
    );
    assert_eq!(due(2).map(|d| d.on), Some(day("2026-04-05")));
    assert_eq!(due(3), None, "a rejected name has no deadline");
    drop(j);
    Journal::open(dir.path()).expect("a second open changes nothing");
    let files = Reader::open(dir.path())
        .expect("reader")
        .expect("a ledger")
        .files(&FileFilter::default())
        .expect("files");
    assert_eq!(files.len(), 3);
}

/// The audit rows of `b`'s ledger with `action`.
fn audited(b: &Backend, action: &str) -> i64 {
    let sql = "SELECT count(*) FROM audit WHERE action = $1";
    match &b.pg {
        Some(pg) => pg.raw().query_one(sql, &[&action]).expect("count").get(0),
        None => raw(b.dir.path())
            .query_row(&sql.replace("$1", "?1"), [action], |r| r.get(0))
            .expect("count"),
    }
}

#[test]
fn a_deadline_is_extended_once_and_audited() {
    for b in backends() {
        eprintln!("ledger: {}", b.what);
        extended_once_on(&b);
    }
}

fn extended_once_on(b: &Backend) {
    let j = &b.journal;
    let received = "2026-01-15T09:00:00Z".parse().expect("t");
    let claim = j
        .claim(
            "a",
            "f",
            Kind::Forget,
            b"abc",
            2,
            Dates {
                received,
                due: crate::deadline::Period::default().due(received, chrono_tz::UTC),
            },
        )
        .expect("claim");
    let id = claim.id();
    let record = j.file(id).expect("record").expect("known");
    assert_eq!(record.received_at, "2026-01-15T09:00:00.000Z");
    let first = record.due.expect("due");
    assert_eq!(first.on.to_string(), "2026-02-15");
    let later = crate::deadline::Due::on("2026-04-15".parse().expect("day"), chrono_tz::UTC);
    let extend = |reason: &str| {
        let mut audit = entry();
        audit.action = "extend".into();
        j.extend(id, &later, reason, &audit).expect("extend")
    };
    assert!(extend("the store is being restored"));
    assert!(!extend("again"), "a deadline is extended once");
    let record = j.file(id).expect("record").expect("known");
    assert_eq!(record.due, Some(later));
    let extension = record.extension.expect("extended");
    assert_eq!(extension.previous_due, first.on);
    assert_eq!(extension.reason, "the store is being restored");
    assert_eq!(
        audited(b, "extend"),
        1,
        "the refused second extension left no audit row"
    );
    let job = j.job(id).expect("job").expect("known");
    assert_eq!(job.due, Some(later));
    assert!(job.extension.is_some());
}

#[test]
fn open_files_are_those_in_work_or_owing_an_answer() {
    for b in backends() {
        eprintln!("ledger: {}", b.what);
        open_files_on(&b.journal);
    }
}

fn open_files_on(j: &Journal) {
    let store_failed = Response::Recorded("ERROR: store \"s\" unavailable: down".into());
    let malformed = Response::Malformed(crate::requests::DeviceError::ALL[0].clone());
    for (name, responses) in [
        ("owes", vec![Response::Success, store_failed]),
        ("answered", vec![Response::Success, malformed]),
        ("clean", vec![Response::NotFound]),
    ] {
        let claim = j
            .claim("a", name, Kind::Forget, name.as_bytes(), 10, dates())
            .expect("claim");
        let positioned: Vec<(Position, Response)> = responses
            .iter()
            .enumerate()
            .map(|(i, r)| ((0, i), r.clone()))
            .collect();
        claim.complete_chunk(0, &positioned, &[]).expect("chunk");
        let counts = crate::engine::response::tally(&responses);
        claim.finish(&[], counts, None).expect("finish");
    }
    j.claim("a", "working", Kind::Forget, b"w", 10, dates())
        .expect("claim");
    j.reject("a", "bad", "ERROR: name", &entry())
        .expect("reject");
    let open_only = FileFilter {
        open_only: true,
        ..FileFilter::default()
    };
    let open: Vec<(String, u64)> = j
        .files(&open_only)
        .expect("files")
        .into_iter()
        .filter(|f| crate::deadline::is_open(f.state, f.owed_errors))
        .map(|f| (f.name, f.owed_errors))
        .collect();
    assert_eq!(
        open,
        vec![("working".to_owned(), 0), ("owes".to_owned(), 1)],
        "newest first"
    );
    assert_eq!(j.files(&FileFilter::default()).expect("all").len(), 5);
}

/// A cluster's ledger of the first PostgreSQL schema (before deadlines) is upgraded in place like a SQLite one.
#[test]
fn a_postgres_ledger_before_deadlines_upgrades_with_due_days_given() {
    let Some(pg) = PgSchema::new() else { return };
    {
        let mut c = ::postgres::Client::connect(&pg.url, ::postgres::NoTls).expect("connect");
        c.batch_execute(&format!(
            "CREATE SCHEMA {0}; SET search_path TO {0};
             CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             {1}
             INSERT INTO schema_version (version) VALUES (1);
             INSERT INTO files (account, name, state, received_at) VALUES
                 ('a', 'old', 'done', '2026-01-31T10:00:00.000Z'),
                 ('a', 'bad', 'rejected', '2026-01-31T10:00:00.000Z');",
            pg.name,
            postgres::MIGRATIONS[0]
        ))
        .expect("a ledger of version 1");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journal::open_with(dir.path(), Some(&pg.cluster("n1"))).expect("upgrade");
    let record = |name| {
        j.admit("a", name).map(|k| match k {
            Known::Taken(r) | Known::Finished(Claim { record: r, .. }) => Some(r),
            _ => None,
        })
    };
    let old = record("old").expect("admit").expect("a record");
    let due = old.due.expect("a due day given");
    assert_eq!(due.on.to_string(), "2026-02-28");
    assert_eq!(
        due.at,
        "2026-03-01T00:00:00Z".parse::<DateTime<Utc>>().expect("t")
    );
    let rejected: Option<String> = pg
        .raw()
        .query_one("SELECT due_on FROM files WHERE name = 'bad'", &[])
        .expect("row")
        .get(0);
    assert_eq!(rejected, None, "a rejected name has no deadline");
}

#[test]
fn orphans_are_the_claimed_files_whose_lease_expired() {
    let single = tempfile::tempdir().expect("tempdir");
    let alone = Journal::open(single.path()).expect("open");
    alone
        .claim("a", "f", Kind::Forget, b"1", 10, dates())
        .expect("claim");
    assert!(
        alone.orphans().expect("orphans").is_empty(),
        "one daemon has none"
    );
    let Some(pg) = PgSchema::new() else { return };
    let [(_a, ja), (_b, jb)] = two_nodes(&pg);
    let held = ja
        .claim("acc", "held", Kind::Forget, b"1", 10, dates())
        .expect("claim");
    let dead = ja
        .claim("acc", "dead", Kind::Forget, b"2", 10, dates())
        .expect("claim");
    let done = ja
        .claim("acc", "done", Kind::Forget, b"3", 10, dates())
        .expect("claim");
    done.finish(&[], Counts::default(), None).expect("finish");
    assert!(
        jb.orphans().expect("orphans").is_empty(),
        "every lease is live"
    );
    pg.raw()
        .execute(
            "UPDATE files SET lease_expires = now() - interval '1 second' WHERE id <> $1",
            &[&held.id()],
        )
        .expect("expire");
    assert_eq!(
        jb.orphans().expect("orphans"),
        vec![("acc".to_owned(), "dead".to_owned())],
        "only a claimed file whose lease expired"
    );
    assert!(
        matches!(jb.admit("acc", "dead").expect("admit"), Known::Unfinished(c) if c.id() == dead.id())
    );
    assert!(jb.orphans().expect("orphans").is_empty(), "taken over");
}
