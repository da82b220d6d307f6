//! `gdprd preview` and `POST /accounts/{account}/gdpr_preview` (issue 18 item 2): what a file would do, without
//! doing it. Against the demo's SQLite store, the same data in PostgreSQL and in MariaDB, and the demo's CSV
//! list, with the daemon running: the preview changes nothing (every store byte for byte or row for row, no
//! ledger row, nothing in `GDPR_Result`), and the forget that follows does exactly what it said: the same
//! responses, the same rows per contact and store (the audit trail), and per table the rows it changed.

use crate::harness::{responses, run, seed_forget, today, Demo};
use crate::http::{Api, TOKEN};
use crate::stores_sql::{mysql_demo, postgres_demo, server, MYSQL_VAR, POSTGRES_VAR};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A table's rows by row id, each row as text.
type Rows = BTreeMap<String, String>;

/// `gdprd preview --json` of `file` on the demo's config.
pub(crate) fn preview_json(demo: &Demo, file: &Path) -> Value {
    let out = run(&[
        "preview",
        "--config",
        demo.config.to_str().expect("utf-8"),
        "--json",
        file.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "preview: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("preview prints JSON")
}

/// Every contact's would-be response in a preview, in file order.
fn previewed_responses(preview: &Value) -> Vec<String> {
    preview["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .map(|c| c["response"].as_str().expect("response").to_owned())
        .collect()
}

/// The seed's sample forget, written beside the demo (not into `GDPR_Submit`).
pub(crate) fn seed_file(demo: &Demo) -> PathBuf {
    let path = demo.dir.path().join("seed-forget.json");
    std::fs::write(&path, seed_forget()).expect("write the seed");
    path
}

/// A table of the demo's SQLite store.
fn sqlite_rows(demo: &Demo, table: &str) -> Rows {
    let db = demo.db();
    let mut stmt = db
        .prepare(&format!("SELECT rowid, * FROM \"{table}\""))
        .expect("select");
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| {
            let cells: Vec<String> = (1..n)
                .map(|i| format!("{:?}", r.get_ref(i).expect("cell")))
                .collect();
            Ok((r.get::<_, i64>(0)?.to_string(), cells.join("|")))
        })
        .expect("query")
        .collect::<Result<Rows, _>>()
        .expect("rows");
    rows
}

/// The demo's CSV list, record by record (the header is line 0).
fn csv_rows(demo: &Demo) -> Rows {
    let text = std::fs::read_to_string(demo.dir.path().join("lists/contacts-2025-06.csv"))
        .expect("the demo list");
    text.lines()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l.to_owned()))
        .collect()
}

/// The recordings on disk.
fn recordings(demo: &Demo) -> usize {
    walk(&demo.dir.path().join("recordings"))
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| {
                    let e = e.expect("entry");
                    if e.file_type().expect("type").is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// How many rows of `before` are gone or different in `after`.
fn changed(before: &Rows, after: &Rows) -> u64 {
    before
        .iter()
        .filter(|(id, row)| after.get(*id) != Some(row))
        .count() as u64
}

/// The preview's tables of store `store`: (table, action, rows).
fn tables(preview: &Value, store: &str) -> Vec<(String, String, u64)> {
    preview["stores"]
        .as_array()
        .expect("stores")
        .iter()
        .find(|s| s["store"] == store)
        .unwrap_or_else(|| panic!("store {store} in {preview:#}"))["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                t["table"].as_str().expect("table").to_owned(),
                t["action"].as_str().expect("action").to_owned(),
                t["rows"].as_u64().expect("rows"),
            )
        })
        .collect()
}

/// The sum of a count over every table of every store.
fn total(preview: &Value, field: &str) -> u64 {
    preview["stores"]
        .as_array()
        .expect("stores")
        .iter()
        .flat_map(|s| s["tables"].as_array().expect("tables"))
        .map(|t| t[field].as_u64().expect("count"))
        .sum()
}

/// Everything the stores of the demo hold: `demo_rows` reads a table of the `demo` store.
fn everything(demo: &Demo, tables: &[String], demo_rows: &dyn Fn(&str) -> Rows) -> Vec<Rows> {
    let mut all: Vec<Rows> = tables.iter().map(|t| demo_rows(t)).collect();
    all.push(csv_rows(demo));
    all
}

/// The scenario every store runs: with the daemon running, the preview of the seed's forget changes nothing and
/// leaves no trace; then the forget does what the preview said. `demo_rows` reads a table of the `demo` store;
/// `identical` is an extra byte-for-byte snapshot (the SQLite file), empty for a server.
fn preview_says_what_the_forget_does(
    demo: &Demo,
    demo_rows: &dyn Fn(&str) -> Rows,
    identical: &dyn Fn() -> Vec<u8>,
) {
    let daemon = demo.start();
    let seed = seed_file(demo);
    let first = preview_json(demo, &seed);
    let demo_tables: Vec<String> = tables(&first, "demo").into_iter().map(|t| t.0).collect();
    assert!(demo_tables.len() >= 5, "{first:#}");

    let bytes_before = identical();
    let rows_before = everything(demo, &demo_tables, demo_rows);
    let recordings_before = recordings(demo);
    let preview = preview_json(demo, &seed);
    assert_eq!(preview, first, "a preview reads the same twice");
    assert_eq!(
        identical(),
        bytes_before,
        "the store file is byte-identical"
    );
    assert_eq!(
        everything(demo, &demo_tables, demo_rows),
        rows_before,
        "no row changed"
    );
    assert_eq!(recordings(demo), recordings_before, "no recording deleted");
    assert_eq!(
        demo.ledger_count("SELECT count(*) FROM files"),
        0,
        "no ledger row"
    );
    assert_eq!(
        demo.ledger_count("SELECT count(*) FROM audit"),
        0,
        "no audit row"
    );
    assert!(demo.results().is_empty(), "nothing in GDPR_Result");
    // No personal data: the report names contacts by position and type, never a device value.
    let text = preview.to_string();
    for value in ["617 555 1313", "test@test.com", "10.10.10.10", "genesys"] {
        assert!(!text.contains(value), "{value} in {text}");
    }

    // The forget it previews.
    let name = format!("forget-{}_120000.json", today());
    demo.submit(&name, &seed_forget());
    let log = demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    demo.wait_submit_empty();
    drop(daemon);
    let previewed = previewed_responses(&preview);
    assert_eq!(previewed, responses(&log), "the same responses, in order");
    assert_eq!(preview["counts"]["success"], 11);
    assert_eq!(preview["counts"]["errors"], 1);

    // Per contact and store, the rows found, as the audit trail keeps them.
    let mut audited: Vec<Value> = demo
        .ledger()
        .prepare("SELECT stores FROM audit WHERE device_hmac IS NOT NULL")
        .expect("audit")
        .query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .map(|s| serde_json::from_str(&s.expect("row")).expect("stores JSON"))
        .collect();
    let mut found: Vec<Value> = preview["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .filter(|c| c["stores"].as_object().is_some_and(|m| !m.is_empty()))
        .map(|c| c["stores"].clone())
        .collect();
    audited.sort_by_key(Value::to_string);
    found.sort_by_key(Value::to_string);
    assert_eq!(found, audited, "rows per contact and store");

    // Per table, the rows the forget changed or deleted.
    let rows_after = everything(demo, &demo_tables, demo_rows);
    for (k, (table, action, rows)) in tables(&preview, "demo").into_iter().enumerate() {
        assert!(action == "erase" || action == "delete", "{action}");
        assert_eq!(
            changed(&rows_before[k], &rows_after[k]),
            rows,
            "table {table}"
        );
        if action == "delete" {
            assert_eq!(
                rows_before[k].len() - rows_after[k].len(),
                rows as usize,
                "table {table}: deleted"
            );
        }
    }
    let list = tables(&preview, "lists");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        changed(
            &rows_before[demo_tables.len()],
            &rows_after[demo_tables.len()]
        ),
        list[0].2,
        "the CSV list"
    );
    assert!(list[0].2 > 0);
    let deleted = recordings_before - recordings(demo);
    assert_eq!(total(&preview, "recordings_deleted"), deleted as u64);
    assert!(deleted > 0);
    assert!(total(&preview, "callbacks_cancelled") > 0);
}

#[test]
fn sqlite_preview_changes_nothing_and_the_forget_then_does_what_it_said() {
    // Chunks of 3: the forget surveys first, and still answers what the preview said.
    let demo = Demo::new(300, |c| {
        c.merge("[limits]\nbatch_size = 3");
    });
    let rows = |t: &str| sqlite_rows(&demo, t);
    let file = || std::fs::read(&demo.db).expect("demo.db");
    preview_says_what_the_forget_does(&demo, &rows, &file);
}

#[test]
fn postgres_preview_changes_nothing_and_the_forget_then_does_what_it_said() {
    let Some(url) = server(POSTGRES_VAR) else {
        return;
    };
    let (demo, schema) = postgres_demo(&url, |_| {});
    let rows = |t: &str| -> Rows {
        schema
            .client()
            .query(&format!("SELECT id::text, t::text FROM {t} t"), &[])
            .expect("select")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    preview_says_what_the_forget_does(&demo, &rows, &Vec::new);
}

#[test]
fn mariadb_preview_changes_nothing_and_the_forget_then_does_what_it_said() {
    use mysql::prelude::Queryable;
    let Some(url) = server(MYSQL_VAR) else {
        return;
    };
    let (demo, db) = mysql_demo(&url, |_| {});
    let rows = |t: &str| -> Rows {
        let mut c =
            mysql::Conn::new(mysql::Opts::from_url(&db.url).expect("url")).expect("connect");
        c.query_map(format!("SELECT * FROM `{t}`"), |row: mysql::Row| {
            let cells = row.unwrap();
            (format!("{:?}", cells[0]), format!("{cells:?}"))
        })
        .expect("select")
        .into_iter()
        .collect()
    };
    preview_says_what_the_forget_does(&demo, &rows, &Vec::new);
}

#[test]
fn preview_prints_a_report_without_personal_data_and_says_when_a_file_would_be_refused() {
    let demo = Demo::new(50, |_| {});
    let seed = seed_file(&demo);
    let out = run(&[
        "preview",
        "--config",
        demo.config.to_str().expect("utf-8"),
        seed.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nothing was changed"), "{text}");
    assert!(text.contains("callback"), "{text}");
    assert!(text.contains("recordings deleted"), "{text}");
    assert!(
        text.contains("request 2 contact 2 (phone): ERROR: incorrect device format"),
        "{text}"
    );
    assert!(
        text.contains("11 SUCCESS, 0 SUCCESS: not found, 1 ERROR"),
        "{text}"
    );
    for value in ["617 555 1313", "test@test.com", "10.10.10.10", "genesys"] {
        assert!(!text.contains(value), "{value} in the report:\n{text}");
    }
    // The daemon has never run: the preview made no state folder (no ledger, no lock, no secret).
    assert!(!demo.dir.path().join("state").exists());

    // A file that would be refused whole says so, and why.
    let bad = demo.dir.path().join("forget-bad.json");
    std::fs::write(&bad, br#"{"requests":[]}"#).expect("write");
    let refused = preview_json(&demo, &bad);
    assert!(
        refused["refused"]
            .as_str()
            .is_some_and(|r| r.starts_with("ERROR")),
        "{refused:#}"
    );
    assert!(refused["contacts"].as_array().expect("contacts").is_empty());
}

#[test]
fn an_export_preview_counts_the_rows_the_archive_would_hold() {
    let demo = Demo::new(50, |_| {});
    let export = demo.dir.path().join("seed-export.json");
    std::fs::copy(demo.dir.path().join("samples/seed-export.json"), &export).expect("copy");
    let preview = preview_json(&demo, &export);
    assert_eq!(preview["type"], "EXPORT");
    assert!(tables(&preview, "demo")
        .iter()
        .all(|(_, action, _)| action == "export"));
    let exported = total(&preview, "rows");
    assert!(exported > 0);
    assert_eq!(total(&preview, "callbacks_cancelled"), 0);
    assert_eq!(total(&preview, "recordings_deleted"), 0);
    // The export it previews: the archive holds one CSV line per row and contact.
    demo.submit(
        &format!("export-{}_120000.json", today()),
        &std::fs::read(&export).expect("read"),
    );
    demo.run_once();
    let log = demo.result_json(&format!("export-{}_120000-execution-log.json", today()));
    let previewed = previewed_responses(&preview);
    assert_eq!(previewed, responses(&log));
}

#[test]
fn http_preview_answers_at_once_with_the_same_auth_and_changes_nothing() {
    let demo = crate::http::demo(50, |_| {});
    let daemon = demo.start();
    let api = Api::new(&daemon);
    let before = std::fs::read(&demo.db).expect("demo.db");
    let body = "EMAIL,test@test.com\nMobileNumber,17815551212\nEMAIL,nobody@example.org\nFAX,123\n";
    let r = api.post("/accounts/demo/gdpr_preview", Some(TOKEN), "text/csv", body);
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let preview: Value = r.json().expect("JSON");
    let lines: Vec<(u64, String)> = preview["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                l["line"].as_u64().expect("line"),
                l["response"].as_str().expect("response").to_owned(),
            )
        })
        .collect();
    assert_eq!(lines[0], (1, "SUCCESS".to_owned()));
    assert_eq!(lines[1], (2, "SUCCESS".to_owned()));
    assert_eq!(lines[2], (3, "SUCCESS: not found".to_owned()));
    assert!(
        lines[3].1.starts_with("ERROR: unknown lookup key"),
        "{lines:?}"
    );
    assert!(total(&preview, "rows") > 0);
    let text = preview.to_string();
    assert!(
        !text.contains("test@test.com") && !text.contains("7815551212"),
        "{text}"
    );
    assert_eq!(std::fs::read(&demo.db).expect("demo.db"), before);
    assert_eq!(demo.ledger_count("SELECT count(*) FROM files"), 0);
    assert!(demo.results().is_empty());
    // The erasure job's authentication: no token, another account's token, another account's path.
    let r = api.post("/accounts/demo/gdpr_preview", None, "text/csv", body);
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    let r = api.post(
        "/accounts/demo/gdpr_preview",
        Some(crate::http::OTHER_TOKEN),
        "text/csv",
        body,
    );
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    let r = api.post(
        "/accounts/demo/gdpr_preview",
        Some(TOKEN),
        "application/json",
        body,
    );
    assert_eq!(r.status(), reqwest::StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[test]
fn a_pseudonymisation_preview_counts_the_rows_it_would_mask() {
    let demo = Demo::new(50, |_| {});
    let text = String::from_utf8(seed_forget())
        .expect("utf-8")
        .replace("\"FORGET\"", "\"PSEUDONYMISE\"");
    let file = demo.dir.path().join("pseudonymise-seed.json");
    std::fs::write(&file, &text).expect("write");
    let before = std::fs::read(&demo.db).expect("demo.db");
    let preview = preview_json(&demo, &file);
    assert_eq!(preview["type"], "PSEUDONYMISE");
    let masked = tables(&preview, "demo");
    assert!(
        masked.iter().all(|(_, action, _)| action == "mask"),
        "{masked:?}"
    );
    assert!(
        !masked.iter().any(|(t, _, _)| t == "email_suppression"),
        "a suppression list is never masked: {masked:?}"
    );
    assert_eq!(std::fs::read(&demo.db).expect("demo.db"), before);
    let rows_before: Vec<Rows> = masked
        .iter()
        .map(|(t, _, _)| sqlite_rows(&demo, t))
        .collect();
    demo.submit(
        &format!("pseudonymise-{}_120000.json", today()),
        text.as_bytes(),
    );
    demo.run_once();
    let log = demo.result_json(&format!(
        "pseudonymise-{}_120000-execution-log.json",
        today()
    ));
    let previewed = previewed_responses(&preview);
    assert_eq!(previewed, responses(&log));
    for ((table, _, rows), before) in masked.iter().zip(&rows_before) {
        assert_eq!(
            changed(before, &sqlite_rows(&demo, table)),
            *rows,
            "table {table}"
        );
    }
}

/// The README's worked example shows the preview of the seed's sample: every line it shows is what the demo prints.
#[test]
fn the_readme_shows_what_the_demo_s_preview_prints() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("preview of a FORGET file for account demo")
        .expect("the README shows a preview");
    let block = &readme[start
        ..readme[start..]
            .find("```")
            .map_or(readme.len(), |e| start + e)];
    let demo = Demo::new(50, |_| {});
    let out = run(&[
        "preview",
        "--config",
        demo.config.to_str().expect("utf-8"),
        demo.dir
            .path()
            .join("samples/seed-forget.json")
            .to_str()
            .expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    let shown: Vec<&str> = block.lines().filter(|l| !l.contains('…')).collect();
    assert!(shown.len() >= 12, "{block}");
    for line in shown {
        assert!(
            lines.contains(&line),
            "README line {line:?} not printed:\n{printed}"
        );
    }
}

#[test]
fn a_store_that_cannot_be_opened_gives_the_errors_the_forget_gives() {
    let demo = Demo::new(50, |c| {
        c.set("stores.demo.path", "missing.db");
        // Answered at once, not waited for (`[engine] retry_window`): the preview does not wait either.
        c.merge("[engine]\nretry_window = \"0s\"\n");
    });
    let seed = seed_file(&demo);
    let preview = preview_json(&demo, &seed);
    let store = &preview["stores"][0];
    assert_eq!(store["store"], "demo");
    assert!(
        store["error"]
            .as_str()
            .is_some_and(|e| e.contains("unavailable")),
        "{store:#}"
    );
    assert_eq!(preview["counts"]["errors"], 12, "{preview:#}");
    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    demo.run_once();
    let log = demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    let previewed = previewed_responses(&preview);
    assert_eq!(previewed, responses(&log), "the same error texts");
}
