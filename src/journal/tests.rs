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

fn unfinished(j: &Journal) -> Vec<(String, String)> {
    j.unfinished().expect("unfinished")
}

#[test]
fn claim_plan_complete_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journal::open(dir.path()).expect("open");
    assert!(matches!(j.admit("a", "f").expect("admit"), Known::New));
    let claim = j.claim("a", "f", Kind::Forget, b"abc", 2).expect("claim");
    assert_eq!(
        claim.read_claimed(Path::new("/nonexistent"), 10),
        Some(b"abc".to_vec()),
        "the claimed copy is kept and holds the bytes claimed"
    );
    assert!(
        j.claim("a", "f", Kind::Forget, b"abc", 2).is_err(),
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
    assert_eq!(unfinished(&j), vec![("a".to_owned(), "f".to_owned())]);
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
    claim.mark_removed(dir.path()).expect("removed");
    assert!(unfinished(&j).is_empty());
    assert!(
        !dir.path()
            .join(format!("claimed/{}.json", claim.id()))
            .exists(),
        "the claimed copy goes with the submission"
    );
    assert!(matches!(
        j.admit("a", "f").expect("admit"),
        Known::Taken(rec) if rec.state == FileState::Done
    ));
}

#[test]
fn a_submitted_request_is_claimed_with_its_copy_and_reported_while_it_executes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journal::open(dir.path()).expect("open");
    let claim = j
        .submit("a", "forget-api-x.json", Kind::Forget, b"{}", 500)
        .expect("submit");
    let claimed: Vec<String> = folder::entries(&dir.path().join("claimed"))
        .map(|(_, n)| n)
        .collect();
    assert_eq!(
        claimed,
        vec![format!("{}.json", claim.id())],
        "no pending copy is left"
    );
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
fn leaving_removes_only_the_file_claimed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let submit = tempfile::tempdir().expect("tempdir");
    let j = Journal::open(dir.path()).expect("open");
    let path = submit.path().join("f");
    std::fs::write(&path, b"abc").expect("write");
    let claim = j.claim("a", "f", Kind::Forget, b"abc", 2).expect("claim");
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
        let claim = j.claim("a", "new", Kind::Forget, bytes, 1).expect("claim");
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
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journal::open(dir.path()).expect("open");
    j.reject("a", "f", "ERROR: x", &entry()).expect("insert");
    let conn = raw(dir.path());
    let err = conn.execute("DELETE FROM audit", []).expect_err("refused");
    assert!(err.to_string().contains("append-only"));
    assert!(conn.execute("UPDATE audit SET outcome = 'x'", []).is_err());
}

/// Issue 17: several workers execute files at once; each file is reported in progress until its own worker is
/// done with it (one worker finishing does not end another's).
#[test]
fn files_executing_at_once_are_each_reported_in_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journal::open(dir.path()).expect("open");
    let submit = |account: &str| {
        let claim = j
            .submit(account, "forget-api-x.json", Kind::Forget, b"{}", 500)
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
