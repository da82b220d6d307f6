//! The `postgres` and `mysql` stores against real servers: the demo data loaded by `gdprd demo-db`, the daemon
//! running the seed's requests, and the databases read back.
//!
//! They need `GDPR_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`) and
//! `GDPRD_TEST_MYSQL_URL` (e.g. `mysql://root@127.0.0.1:3306/test`). Without them a test says so and passes;
//! under CI (`CI` set) a missing variable fails the test, so CI always runs them. Each test works in a schema
//! (PostgreSQL) or database (MySQL) of its own, dropped at the end.

use crate::harness::{fixture, responses, run, seed_forget, today, wait_until, Config, Demo};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const POSTGRES_VAR: &str = "GDPRD_TEST_POSTGRES_URL";
pub(crate) const MYSQL_VAR: &str = "GDPRD_TEST_MYSQL_URL";
const SAMPLE_ACCOUNT: &str = "30003748347";
const OTHER_ACCOUNT: &str = "40004000400";

/// The server URL in `var`, or `None` (with a message) on a machine without it. CI must set it.
pub(crate) fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set {var} so the database store tests run"
            );
            crate::harness::skip(&format!("set {var} to run this test against a real server"));
            None
        }
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn unique_name() -> String {
    format!(
        "gdprd_t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A PostgreSQL schema of the test's own, dropped when the test ends.
pub(crate) struct PgSchema {
    url: String,
    pub(crate) name: String,
}

impl PgSchema {
    pub(crate) fn client(&self) -> postgres::Client {
        let mut c = postgres::Client::connect(&self.url, postgres::NoTls).expect("connect");
        c.batch_execute(&format!("SET search_path TO {}", self.name))
            .expect("search_path");
        c
    }

    pub(crate) fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).expect(sql).get(0)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// A PostgreSQL database of the test's own, dropped (with its connections) when the test ends. Since
/// PostgreSQL 14 a database's dead row versions are held back only by snapshots open in that same database, so
/// a test about what VACUUM leaves behind is not at the mercy of the other tests' transactions.
pub(crate) struct PgDb {
    server: String,
    name: String,
    pub(crate) url: String,
}

impl PgDb {
    pub(crate) fn new(server: &str) -> PgDb {
        let name = unique_name();
        let mut c = postgres::Client::connect(server, postgres::NoTls).expect("connect");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
        PgDb {
            server: server.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A MySQL database of the test's own, dropped when the test ends.
pub(crate) struct MyDb {
    server: String,
    pub(crate) url: String,
    name: String,
}

impl MyDb {
    fn new(server: &str) -> MyDb {
        use mysql::prelude::Queryable;
        let name = unique_name();
        let mut c = mysql::Conn::new(mysql::Opts::from_url(server).expect("url")).expect("connect");
        c.query_drop(format!("CREATE DATABASE {name}"))
            .expect("create database");
        let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
        MyDb {
            server: server.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    fn exec(&self, sql: &str) {
        use mysql::prelude::Queryable;
        let mut c =
            mysql::Conn::new(mysql::Opts::from_url(&self.url).expect("url")).expect("connect");
        c.query_drop(sql).expect(sql);
    }

    pub(crate) fn count(&self, sql: &str) -> i64 {
        use mysql::prelude::Queryable;
        let mut c =
            mysql::Conn::new(mysql::Opts::from_url(&self.url).expect("url")).expect("connect");
        c.query_first::<i64, _>(sql).expect(sql).expect("a row")
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        use mysql::prelude::Queryable;
        if let Ok(mut c) = mysql::Conn::new(mysql::Opts::from_url(&self.server).expect("url")) {
            let _ = c.query_drop(format!("DROP DATABASE IF EXISTS {}", self.name));
        }
    }
}

/// The sample's phones in every digit form the demo data holds them in.
const SAMPLE_DIGITS: &str = "('7815551212','6175551212','7815551313','17815551212','16175551212','17815551313','01117815551212','01116175551212')";

/// For every phone column of the demo: a query counting the sample account's rows that still hold a sample phone
/// (SMS rows only on the request's shortcodes, the only ones searched). `digits` gives the SQL of a column's digits.
fn sample_phone_queries(digits: impl Fn(&str) -> String) -> Vec<(String, String)> {
    [
        ("contact_list", "phone"),
        ("contact_list", "mobile"),
        ("contact_attempt", "dialed_number"),
        ("callback", "customer_number"),
        ("sms_message", "msisdn"),
        ("call_recording", "caller_number"),
    ]
    .into_iter()
    .map(|(table, col)| {
        let scope = if table == "sms_message" {
            " AND shortcode IN ('11111', '22222')"
        } else {
            ""
        };
        (
            format!("{table}.{col}"),
            format!(
                "SELECT count(*) FROM {table} WHERE account_id = '{SAMPLE_ACCOUNT}' AND {} IN {SAMPLE_DIGITS}{scope}",
                digits(col)
            ),
        )
    })
    .collect()
}

/// `gdprd check-config` on the demo's config: (success, stdout).
pub(crate) fn check_config(demo: &Demo) -> (bool, String) {
    let out = run(&["check-config", demo.config.to_str().expect("utf-8")]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A demo whose `demo` store is the one in `fixture` (a `[stores.demo]` of fixtures/), with `url`, then changed
/// by `edit`.
fn demo_with_store(rows: u64, fixture: &str, url: &str, edit: impl FnOnce(&mut Config)) -> Demo {
    let mut store = Config::read(&crate::harness::fixture(fixture));
    store.set("stores.demo.url", url);
    let store = store.get("stores.demo").clone();
    Demo::new(rows, move |c| {
        c.set("stores.demo", store);
        edit(c);
    })
}

fn load_postgres(demo: &Demo, url: &str, schema: &str, extra: &[&str]) {
    let files = demo.dir.path().join("recordings");
    let mut args = vec![
        "demo-db",
        "--postgres",
        url,
        "--schema",
        schema,
        "--files-dir",
        files.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "demo-db: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A demo whose `demo` store is PostgreSQL at `url`, in a schema of its own with the demo's data; `edit` changes
/// the config further.
pub(crate) fn postgres_demo(url: &str, edit: impl FnOnce(&mut Config)) -> (Demo, PgSchema) {
    postgres_demo_rows(url, 300, edit)
}

/// [`postgres_demo`] with `rows` filler contacts.
pub(crate) fn postgres_demo_rows(
    url: &str,
    rows: u64,
    edit: impl FnOnce(&mut Config),
) -> (Demo, PgSchema) {
    let schema = PgSchema {
        url: url.to_owned(),
        name: unique_name(),
    };
    let name = schema.name.clone();
    let demo = demo_with_store(rows, "postgres/store.toml", url, |c| {
        c.set("stores.demo.schema", name);
        edit(c);
    });
    load_postgres(&demo, url, &schema.name, &["--rows", &rows.to_string()]);
    (demo, schema)
}

/// A demo whose `demo` store is a MySQL database of its own on `server`, with the demo's data; `edit` changes the
/// config further.
pub(crate) fn mysql_demo(server: &str, edit: impl FnOnce(&mut Config)) -> (Demo, MyDb) {
    mysql_demo_rows(server, 300, edit)
}

/// [`mysql_demo`] with `rows` filler contacts.
pub(crate) fn mysql_demo_rows(
    server: &str,
    rows: u64,
    edit: impl FnOnce(&mut Config),
) -> (Demo, MyDb) {
    let db = MyDb::new(server);
    let demo = demo_with_store(rows, "mysql/store.toml", &db.url, edit);
    let files = demo.dir.path().join("recordings");
    let out = run(&[
        "demo-db",
        "--mysql",
        &db.url,
        "--rows",
        &rows.to_string(),
        "--files-dir",
        files.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "demo-db: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (demo, db)
}

/// Runs the seed's export and then its forget through the daemon; returns both execution logs' responses and
/// the export archive's CSV files (name → rows, sorted).
/// An export archive's CSV files: name → rows, sorted.
type Csvs = Vec<(String, Vec<String>)>;

fn run_seed(demo: &Demo) -> (Vec<String>, Vec<String>, Csvs) {
    let _daemon = demo.start();
    let export = std::fs::read(fixture("requests/seed-export.json")).expect("seed export");
    demo.submit(&format!("export-{}_120000.json", today()), &export);
    let export_log = demo.result_json(&format!("export-{}_120000-execution-log.json", today()));
    let archive = demo.wait_result(&format!("export-{}_120000-archive.zip", today()));
    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    let forget_log = demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    let mut zip =
        zip::ZipArchive::new(std::fs::File::open(archive).expect("archive")).expect("zip");
    let mut files = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).expect("entry");
        let mut text = String::new();
        f.read_to_string(&mut text).expect("csv text");
        let mut rows: Vec<String> = text.lines().map(str::to_owned).collect();
        rows.sort();
        files.push((f.name().to_owned(), rows));
    }
    files.sort();
    (responses(&export_log), responses(&forget_log), files)
}

/// The first three cells (request case, device type, device) of every row of every CSV: which device matched
/// which table's rows, whatever the server's text form of dates and numbers.
fn matches_by_table(files: &[(String, Vec<String>)]) -> Csvs {
    files
        .iter()
        .map(|(name, rows)| {
            let mut keys: Vec<String> = rows
                .iter()
                .map(|r| r.splitn(4, ',').take(3).collect::<Vec<_>>().join(","))
                .collect();
            keys.sort();
            (name.rsplit('/').next().unwrap_or(name).to_owned(), keys)
        })
        .collect()
}

#[test]
fn postgres_store_answers_the_seed_like_the_sqlite_store_and_erases_the_sample() {
    let Some(url) = server(POSTGRES_VAR) else {
        return;
    };
    let (demo, schema) = postgres_demo(&url, |_| {});
    // A trail of what happens to callbacks, to show in-flight ones are cancelled (committed) before the delete.
    schema
        .client()
        .batch_execute(
            "CREATE TABLE callback_trail (seq bigserial, id bigint, old_state text, new_state text);
             CREATE FUNCTION trail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                 INSERT INTO callback_trail (id, old_state, new_state)
                     VALUES (OLD.id, OLD.state, CASE WHEN TG_OP = 'DELETE' THEN 'DELETED' ELSE NEW.state END);
                 RETURN NULL; END $$;
             CREATE TRIGGER callback_trail AFTER UPDATE OR DELETE ON callback FOR EACH ROW EXECUTE FUNCTION trail();",
        )
        .expect("trail");
    let other_before = schema.count(&format!(
        "SELECT count(*) FROM contact_list WHERE account_id = '{OTHER_ACCOUNT}'"
    ));
    let recordings_before = std::fs::read_dir(demo.dir.path().join("recordings/2026/01"))
        .expect("recordings")
        .count();
    let (export, forget, files) = run_seed(&demo);

    let sqlite = Demo::new(300, |_| {});
    let (sqlite_export, sqlite_forget, sqlite_files) = run_seed(&sqlite);
    assert_eq!(
        export, sqlite_export,
        "export responses differ from sqlite's"
    );
    assert_eq!(
        forget, sqlite_forget,
        "forget responses differ from sqlite's"
    );
    assert_eq!(forget.iter().filter(|r| *r == "SUCCESS").count(), 11);
    assert_eq!(
        matches_by_table(&files),
        matches_by_table(&sqlite_files),
        "the export found other rows than sqlite's"
    );
    assert!(
        files.len() >= 5,
        "one CSV per table with matches: {files:?}"
    );

    // Nothing of the sample's account is findable by the sample's devices any more.
    let c = |sql: &str| schema.count(sql);
    for (column, sql) in sample_phone_queries(|c| format!("regexp_replace({c}, '[^0-9]', '', 'g')"))
    {
        assert_eq!(c(&sql), 0, "{column} still holds a sample phone");
    }
    assert_eq!(
        c(&format!("SELECT count(*) FROM contact_list WHERE account_id = '{SAMPLE_ACCOUNT}' AND lower(trim(email)) IN ('test@test.com', 'genesys@genesys.com', 'test2@test.com', 'genesys2@genesys.com')")),
        0
    );
    assert_eq!(
        c(&format!("SELECT count(*) FROM web_session WHERE account_id = '{SAMPLE_ACCOUNT}' AND host(client_ip) IN ('10.10.10.10', '11.11.11.11', '10.10.10.11', '11.11.11.12')")),
        0
    );
    // Anonymised, not deleted: the contact rows are there with placeholders and redactions.
    assert!(c("SELECT count(*) FROM contact_list WHERE first_name = 'REDACTED' AND email LIKE 'forgotten-%'") >= 4);
    // The other tenant's records sharing the sample's devices are untouched.
    assert_eq!(
        c(&format!("SELECT count(*) FROM contact_list WHERE account_id = '{OTHER_ACCOUNT}' AND first_name <> 'REDACTED'")),
        other_before
    );
    // In-flight callbacks were cancelled before they were deleted; none was deleted while in flight.
    assert!(c("SELECT count(*) FROM callback_trail WHERE new_state = 'CANCELLED'") >= 1);
    assert_eq!(
        c("SELECT count(*) FROM callback_trail WHERE new_state = 'DELETED' AND old_state IN ('PROCESSING', 'QUEUED', 'ROUTING')"),
        0
    );
    // The suppression list keeps the sample's rows with keyed hashes, and still suppresses the addresses.
    assert_eq!(
        c(&format!("SELECT count(*) FROM email_suppression WHERE account_id = '{SAMPLE_ACCOUNT}' AND email ~ '^[0-9a-f]{{64}}$'")),
        2
    );
    let (code, text) =
        crate::store_depth::suppressed(&demo, &["email:Test@Test.com", "genesys2@genesys.com"]);
    assert_eq!(code, 0, "{text}");
    // Forgotten attempts get random placeholders, never a mask derived from the number (issue 14, item 15).
    assert!(c(&format!("SELECT count(*) FROM contact_attempt WHERE account_id = '{SAMPLE_ACCOUNT}' AND dialed_number LIKE 'forgotten-%'")) >= 3);
    assert_eq!(c(&format!("SELECT count(*) FROM contact_attempt WHERE account_id = '{SAMPLE_ACCOUNT}' AND dialed_number LIKE '%xx%'")), 0);
    // The sample's recordings are gone from disk, the others are still there.
    let recordings_after = std::fs::read_dir(demo.dir.path().join("recordings/2026/01"))
        .expect("recordings")
        .count();
    assert_eq!(
        recordings_before, 4,
        "three sample recordings and another tenant's"
    );
    assert_eq!(recordings_after, 1, "the other tenant's recording stays");
}

#[test]
fn mysql_store_answers_the_seed_like_the_sqlite_store_and_erases_the_sample() {
    let Some(url) = server(MYSQL_VAR) else {
        return;
    };
    let (demo, db) = mysql_demo(&url, |_| {});
    let other_before = db.count(&format!(
        "SELECT count(*) FROM contact_list WHERE account_id = '{OTHER_ACCOUNT}'"
    ));
    let (export, forget, files) = run_seed(&demo);
    let sqlite = Demo::new(300, |_| {});
    let (sqlite_export, sqlite_forget, sqlite_files) = run_seed(&sqlite);
    assert_eq!(export, sqlite_export);
    assert_eq!(forget, sqlite_forget);
    assert_eq!(matches_by_table(&files), matches_by_table(&sqlite_files));
    // Generated digit columns are the server's business: not exported.
    assert!(files
        .iter()
        .all(|(_, rows)| rows.iter().all(|r| !r.contains("_digits"))));
    for (column, sql) in sample_phone_queries(|c| format!("REGEXP_REPLACE({c}, '[^0-9]', '')")) {
        assert_eq!(db.count(&sql), 0, "{column} still holds a sample phone");
    }
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM contact_list WHERE account_id = '{SAMPLE_ACCOUNT}' AND email IN ('test@test.com', 'genesys@genesys.com')")),
        0
    );
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM contact_list WHERE account_id = '{OTHER_ACCOUNT}' AND first_name <> 'REDACTED'")),
        other_before
    );
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM email_suppression WHERE account_id = '{SAMPLE_ACCOUNT}' AND LENGTH(email) = 64")),
        2
    );
    let (code, text) =
        crate::store_depth::suppressed(&demo, &["email:Test@Test.com", "genesys2@genesys.com"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM callback WHERE account_id = '{SAMPLE_ACCOUNT}' AND customer_digits IN {SAMPLE_DIGITS}")),
        0
    );
}

#[test]
fn check_config_names_device_columns_without_an_index() {
    let Some(url) = server(POSTGRES_VAR) else {
        return;
    };
    let (demo, schema) = postgres_demo(&url, |_| {});
    let (ok, text) = check_config(&demo);
    assert!(ok, "{text}");
    assert!(!text.contains("WARNING"), "all indexed, yet: {text}");

    load_postgres(
        &demo,
        &url,
        &schema.name,
        &["--rows", "300", "--no-indexes"],
    );
    let (ok, text) = check_config(&demo);
    assert!(ok, "warnings are not errors: {text}");
    assert!(
        text.contains("table \"contact_list\", column \"phone\": no usable index")
            && text.contains(
                "CREATE INDEX ON \"contact_list\" (((CASE WHEN regexp_replace(translate(\"phone\", "
            ),
        "{text}"
    );
    assert_eq!(
        text.matches("WARNING").count(),
        10,
        "one per device column: {text}"
    );

    // A mapping that does not fit the schema is an error, with the column named.
    demo.edit_config(|c| {
        c.set(
            "stores.demo.tables[contact_attempt].personal",
            vec!["agent_note"],
        );
    });
    let (ok, text) = check_config(&demo);
    assert!(!ok);
    assert!(
        text.contains("table \"contact_attempt\" has no column \"agent_note\""),
        "{text}"
    );
}

#[test]
fn mysql_check_config_warns_about_a_phone_without_a_normalised_column() {
    let Some(url) = server(MYSQL_VAR) else {
        return;
    };
    let (demo, _db) = mysql_demo(&url, |c| {
        c.remove("stores.demo.tables[contact_attempt].normalised");
    });
    let (ok, text) = check_config(&demo);
    assert!(ok, "{text}");
    assert_eq!(text.matches("WARNING").count(), 1, "{text}");
    assert!(
        text.contains("table \"contact_attempt\", column \"dialed_number\": no usable index"),
        "{text}"
    );
}

#[test]
fn postgres_tls_require_connects_and_verify_full_checks_the_certificate() {
    let Some(url) = server(POSTGRES_VAR) else {
        return;
    };
    let (demo, _schema) = postgres_demo(&url, |c| {
        c.set("stores.demo.tls", "require");
    });
    let (ok, text) = check_config(&demo);
    assert!(
        ok && text.contains("store demo: OK"),
        "the server must offer TLS for this test: {text}"
    );
    demo.edit_config(|c| {
        c.set("stores.demo.tls", "verify-full");
    });
    let (ok, text) = check_config(&demo);
    assert!(
        !ok,
        "a self-signed server certificate must not pass verify-full: {text}"
    );
    assert!(text.contains("store demo: ERROR: cannot connect"), "{text}");
}

/// The DNS names and IP addresses a PEM certificate is valid for (its subjectAltName).
fn certificate_names(pem: &[u8]) -> Vec<String> {
    use rustls::pki_types::pem::PemObject;
    use x509_cert::der::oid::AssociatedOid;
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem).expect("a PEM certificate");
    let cert = x509_cert::Certificate::from_der(der.as_ref()).expect("an X.509 certificate");
    let mut names = Vec::new();
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        if ext.extn_id != SubjectAltName::OID {
            continue;
        }
        let san = SubjectAltName::from_der(ext.extn_value.as_bytes()).expect("subjectAltName");
        for name in san.0 {
            match name {
                GeneralName::DnsName(d) => names.push(d.to_string()),
                GeneralName::IpAddress(ip) => match <[u8; 4]>::try_from(ip.as_bytes()) {
                    Ok(v4) => names.push(std::net::Ipv4Addr::from(v4).to_string()),
                    Err(_) => names.push(format!("{:?}", ip.as_bytes())),
                },
                _ => {}
            }
        }
    }
    names
}

#[test]
fn postgres_verify_full_trusts_ca_file_for_the_certificate_s_host_name_only() {
    let Some(url) = server(POSTGRES_VAR) else {
        return;
    };
    assert!(
        url.contains("@127.0.0.1:"),
        "this test reads the certificate of a server on this machine: {url}"
    );
    // The server's own (self-signed) certificate is the store's `ca_file`.
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let cert_file: String = client
        .query_one("SHOW ssl_cert_file", &[])
        .expect("ssl_cert_file")
        .get(0);
    let pem = std::fs::read(&cert_file)
        .unwrap_or_else(|e| panic!("the server's certificate {cert_file}: {e}"));
    let names = certificate_names(&pem);
    let name = names
        .iter()
        .find(|n| n.parse::<std::net::IpAddr>().is_err())
        .unwrap_or_else(|| panic!("{cert_file} names no host: {names:?}"))
        .clone();
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca = ca_dir.path().join("server-ca.pem");
    std::fs::write(&ca, &pem).expect("write ca_file");
    // The platform's roots may hold the server's certificate (Debian links the snakeoil certificate into
    // /etc/ssl/certs): an empty SSL_CERT_FILE leaves `ca_file` the only root.
    let no_roots = ca_dir.path().join("no-roots.pem");
    std::fs::write(&no_roots, "").expect("write");
    let check = |demo: &Demo| {
        let out = crate::harness::gdprd()
            .env("SSL_CERT_FILE", &no_roots)
            .env_remove("SSL_CERT_DIR")
            .args(["check-config", demo.config.to_str().expect("utf-8")])
            .output()
            .expect("gdprd runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), text)
    };
    let (demo, _schema) = postgres_demo(&url, |c| {
        c.set("stores.demo.tls", "verify-full")
            .insert("stores.demo.ca_file", ca.display().to_string());
    });

    // Trusted issuer, but the certificate is not for 127.0.0.1: refused.
    if !names.iter().any(|n| n == "127.0.0.1") {
        let (ok, text) = check(&demo);
        assert!(!ok, "{names:?} does not name 127.0.0.1: {text}");
        assert!(text.contains("store demo: ERROR: cannot connect"), "{text}");
        assert!(text.contains("certificate not valid for name"), "{text}");
    }
    // The name the certificate is for, reached at 127.0.0.1: the chain and the name check out.
    let by_name = format!(
        "{}?hostaddr=127.0.0.1",
        url.replacen("@127.0.0.1:", &format!("@{name}:"), 1)
    );
    demo.edit_config(|c| {
        c.set("stores.demo.url", by_name.as_str());
    });
    let (ok, text) = check(&demo);
    assert!(ok && text.contains("store demo: OK"), "{by_name}: {text}");
    // Without ca_file nothing vouches for the certificate: refused.
    demo.edit_config(|c| {
        c.remove("stores.demo.ca_file");
    });
    let (ok, text) = check(&demo);
    assert!(!ok, "no root but ca_file trusts {cert_file}: {text}");
    assert!(text.contains("store demo: ERROR: cannot connect"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
}

/// A TCP relay to the database that the test can cut and restore, standing in for an outage.
pub(crate) struct Relay {
    pub(crate) port: u16,
    pub(crate) up: Arc<AtomicBool>,
}

impl Relay {
    pub(crate) fn new(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&up);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, up }
    }
}

/// A PostgreSQL demo whose `demo` store is reached through a [`Relay`], down at first, with `[engine]
/// retry_window = window`; `None` without a test server.
pub(crate) fn relayed_postgres_demo(window: &str) -> Option<(Demo, PgSchema, Relay)> {
    let url = server(POSTGRES_VAR)?;
    let target = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_owned();
    let relay = Relay::new(target.clone());
    let relayed = url.replace(&target, &format!("127.0.0.1:{}", relay.port));
    let (demo, schema) = postgres_demo(&url, |c| {
        c.set("stores.demo.url", relayed);
        c.remove("stores.demo.statement_timeout_seconds");
        c.insert("stores.demo.connect_timeout_seconds", 2);
        c.merge(&format!("[engine]\nretry_window = {window:?}\n"));
    });
    Some((demo, schema, relay))
}

#[test]
fn postgres_outage_gives_unavailable_and_a_resubmission_finishes_the_job() {
    // Answered at once, not waited for (`[engine] retry_window`, tests/retry.rs).
    let Some((demo, schema, relay)) = relayed_postgres_demo("0s") else {
        return;
    };
    let daemon = demo.start();
    // The database is down: every contact that needs it gets an error naming the store, and the daemon goes on.
    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    let log = demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    let got = responses(&log);
    assert_eq!(
        got.iter()
            .filter(|r| r.starts_with("ERROR: store \"demo\" unavailable"))
            .count(),
        11,
        "{got:?}"
    );
    assert_eq!(
        schema.count("SELECT count(*) FROM contact_list WHERE first_name = 'REDACTED'"),
        0
    );

    // It is back: the same request under a new name finishes the job.
    relay.up.store(true, Ordering::SeqCst);
    demo.submit(&format!("forget-{}_120001.json", today()), &seed_forget());
    let log = demo.result_json(&format!("forget-{}_120001-execution-log.json", today()));
    let got = responses(&log);
    assert_eq!(
        got.iter().filter(|r| *r == "SUCCESS").count(),
        11,
        "{got:?}"
    );
    assert!(schema.count("SELECT count(*) FROM contact_list WHERE first_name = 'REDACTED'") >= 4);
    wait_until(
        Duration::from_secs(5),
        "the daemon to log the outage",
        || daemon.log_text().contains("cannot connect"),
    );
    assert!(
        !daemon.log_text().contains("test@test.com"),
        "a device in clear in the log"
    );
}

#[test]
fn postgres_lock_timeout_changes_nothing_and_a_resubmission_finishes() {
    let Some(url) = server(POSTGRES_VAR) else {
        return;
    };
    let (demo, schema) = postgres_demo(&url, |c| {
        c.set("stores.demo.statement_timeout_seconds", 1);
    });
    let _daemon = demo.start();
    // Another session holds a lock on a table the forget must change.
    let mut locker = schema.client();
    locker
        .batch_execute("BEGIN; LOCK TABLE contact_attempt IN EXCLUSIVE MODE")
        .expect("lock");
    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    let log = demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    let got = responses(&log);
    assert_eq!(
        got.iter()
            .filter(
                |r| r.starts_with("ERROR: store \"demo\" failed: database error: ERROR ")
                    && r.contains("timeout")
            )
            .count(),
        11,
        "{got:?}"
    );
    // One transaction per store and chunk: the tables scanned before the wait were not changed either.
    assert_eq!(
        schema.count("SELECT count(*) FROM contact_list WHERE first_name = 'REDACTED'"),
        0
    );
    locker.batch_execute("ROLLBACK").expect("unlock");
    demo.submit(&format!("forget-{}_120001.json", today()), &seed_forget());
    let log = demo.result_json(&format!("forget-{}_120001-execution-log.json", today()));
    let got = responses(&log);
    assert_eq!(
        got.iter().filter(|r| *r == "SUCCESS").count(),
        11,
        "{got:?}"
    );
}

/// Runs the seed's forget as a pseudonymisation (a `pseudonymise-…` file) and returns its responses.
fn pseudonymise_seed(demo: &Demo) -> Vec<String> {
    let _daemon = demo.start();
    let body = String::from_utf8(seed_forget())
        .expect("utf-8")
        .replace("\"FORGET\"", "\"PSEUDONYMISE\"");
    let name = format!("pseudonymise-{}_120000", today());
    demo.submit(&format!("{name}.json"), body.as_bytes());
    responses(&demo.result_json(&format!("{name}-execution-log.json")))
}

/// The sample account's contact list as `email|phone|first_name` lines, sorted (NULL as empty).
const SAMPLE_LIST: &str =
    "SELECT email, phone, first_name FROM contact_list WHERE account_id = '30003748347'";

fn sorted(rows: impl Iterator<Item = [Option<String>; 3]>) -> Vec<String> {
    let mut v: Vec<String> = rows
        .map(|r| r.map(Option::unwrap_or_default).join("|"))
        .collect();
    v.sort();
    v
}

#[test]
fn pseudonymisation_masks_alike_in_sqlite_postgres_and_mysql() {
    let sqlite = Demo::new(300, |_| {});
    let list = |demo: &Demo| {
        let db = demo.db();
        let mut stmt = db.prepare(SAMPLE_LIST).expect("query");
        let rows = stmt
            .query_map([], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]))
            .expect("rows")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows");
        sorted(rows.into_iter())
    };
    let before = list(&sqlite);
    let callbacks = sqlite.db_count("SELECT count(*) FROM callback");
    let answers = pseudonymise_seed(&sqlite);
    let after = list(&sqlite);
    assert_eq!(
        answers.iter().filter(|a| *a == "SUCCESS").count(),
        11,
        "{answers:?}"
    );
    assert_eq!(before.len(), after.len(), "nothing is deleted");
    assert_eq!(sqlite.db_count("SELECT count(*) FROM callback"), callbacks);
    assert!(
        after.iter().any(|r| r.starts_with("TxxT@xxst.com|")),
        "{after:?}"
    );
    assert!(
        !after.iter().any(|r| r.contains("781 555 1212")),
        "{after:?}"
    );
    if let Some(url) = server(POSTGRES_VAR) {
        let (demo, schema) = postgres_demo(&url, |_| {});
        let callbacks_pg = schema.count("SELECT count(*) FROM callback");
        assert_eq!(
            pseudonymise_seed(&demo),
            answers,
            "PostgreSQL answers like SQLite"
        );
        let rows = schema
            .client()
            .query(SAMPLE_LIST, &[])
            .expect("list")
            .into_iter()
            .map(|r| [r.get(0), r.get(1), r.get(2)]);
        assert_eq!(sorted(rows), after, "PostgreSQL masks like SQLite");
        assert_eq!(schema.count("SELECT count(*) FROM callback"), callbacks_pg);
        for (column, sql) in
            sample_phone_queries(|c| format!("regexp_replace({c}, '[^0-9]', '', 'g')"))
        {
            assert_eq!(schema.count(&sql), 0, "{column} still holds a sample phone");
        }
    }
    if let Some(url) = server(MYSQL_VAR) {
        use mysql::prelude::Queryable;
        let (demo, db) = mysql_demo(&url, |_| {});
        assert_eq!(
            pseudonymise_seed(&demo),
            answers,
            "MySQL answers like SQLite"
        );
        let mut c =
            mysql::Conn::new(mysql::Opts::from_url(&db.url).expect("url")).expect("connect");
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> =
            c.query(SAMPLE_LIST).expect("list");
        assert_eq!(
            sorted(rows.into_iter().map(|(a, b, c)| [a, b, c])),
            after,
            "MySQL masks like SQLite"
        );
        for (column, sql) in sample_phone_queries(|c| format!("REGEXP_REPLACE({c}, '[^0-9]', '')"))
        {
            assert_eq!(db.count(&sql), 0, "{column} still holds a sample phone");
        }
    }
}

/// Makes the recording of `+1 781 555 1313` point outside `files_root`.
const SPOIL_RECORDING: &str = "UPDATE call_recording SET file_path = '../outside.wav' WHERE file_path = '2026/01/rec-sample-3.wav'";
/// The sample's recordings still there (a forget deletes them).
const RECORDINGS_IN_CLEAR: &str = "SELECT count(*) FROM call_recording WHERE caller_number IN ('781.555.1212', '+1 (617) 555-1212', '781-555-1313')";

#[test]
fn postgres_one_bad_recording_path_fails_only_the_contact_whose_row_it_is() {
    let Some(url) = server(POSTGRES_VAR) else {
        return;
    };
    let (demo, schema) = postgres_demo(&url, |_| {});
    crate::forget::forget_seed_with_a_bad_recording(&demo, || {
        schema
            .client()
            .batch_execute(SPOIL_RECORDING)
            .expect("spoil a recording path");
    });
    assert_eq!(
        schema.count(RECORDINGS_IN_CLEAR),
        1,
        "only the bad row keeps its number"
    );
    assert_eq!(
        schema.count("SELECT count(*) FROM contact_list WHERE account_id = '30003748347' AND lower(email) LIKE '%test@test.com%'"),
        0
    );
}

#[test]
fn mysql_one_bad_recording_path_fails_only_the_contact_whose_row_it_is() {
    let Some(server) = server(MYSQL_VAR) else {
        return;
    };
    let (demo, db) = mysql_demo(&server, |_| {});
    crate::forget::forget_seed_with_a_bad_recording(&demo, || db.exec(SPOIL_RECORDING));
    assert_eq!(
        db.count(RECORDINGS_IN_CLEAR),
        1,
        "only the bad row keeps its number"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM contact_list WHERE account_id = '30003748347' AND lower(email) LIKE '%test@test.com%'"),
        0
    );
}

/// Issue 14, item 14: with `vacuum_after_forget = true`, no dead row version in the PostgreSQL table files keeps
/// a forgotten value after the forget (read from the server's data directory after a `CHECKPOINT`).
#[test]
fn postgres_vacuum_after_forget_leaves_no_dead_row_version_in_the_table_files() {
    let Some(url) = server(POSTGRES_VAR) else {
        return;
    };
    // A database of its own: another test's open snapshot in the shared database would keep the dead row
    // versions of this one's forget (see [`PgDb`]).
    let db = PgDb::new(&url);
    let (demo, schema) = postgres_demo(&db.url, |c| {
        c.insert("stores.demo.vacuum_after_forget", true);
    });
    let _daemon = demo.start();
    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    let log = demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    assert_eq!(
        responses(&log).iter().filter(|r| *r == "SUCCESS").count(),
        11
    );
    let mut c = schema.client();
    c.batch_execute("CHECKPOINT").expect("checkpoint");
    let data_dir: String = c
        .query_one("SHOW data_directory", &[])
        .expect("data_directory")
        .get(0);
    let forgotten = ["Analytical Engines", "12 Babbage St", "asked about invoice"];
    for table in ["contact_list", "contact_attempt"] {
        let rel: String = c
            .query_one(&format!("SELECT pg_relation_filepath('{table}')"), &[])
            .expect("relation file")
            .get(0);
        let bytes = std::fs::read(std::path::Path::new(&data_dir).join(&rel)).expect(
            "the test reads the server's data directory (run it as root, on the server's machine)",
        );
        for v in forgotten {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "{table}'s file still holds {v:?}"
            );
        }
    }
}

/// Issue 14, item 14: with `vacuum_after_forget = true`, MySQL rebuilds the tables a forget changed, so their
/// `.ibd` files keep no delete-marked or old row version holding a forgotten value.
#[test]
fn mysql_vacuum_after_forget_rebuilds_the_touched_tables_without_old_row_versions() {
    use mysql::prelude::Queryable;
    let Some(server) = server(MYSQL_VAR) else {
        return;
    };
    let (demo, db) = mysql_demo(&server, |c| {
        c.insert("stores.demo.vacuum_after_forget", true);
    });
    let mut c = mysql::Conn::new(mysql::Opts::from_url(&db.url).expect("url")).expect("connect");
    let created = |c: &mut mysql::Conn| -> String {
        c.query_first(
            "SELECT CAST(create_time AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'contact_list'",
        )
        .expect("create_time")
        .expect("a row")
    };
    let before = created(&mut c);
    std::thread::sleep(Duration::from_millis(1100));
    let _daemon = demo.start();
    demo.submit(&format!("forget-{}_120000.json", today()), &seed_forget());
    let log = demo.result_json(&format!("forget-{}_120000-execution-log.json", today()));
    assert_eq!(
        responses(&log).iter().filter(|r| *r == "SUCCESS").count(),
        11
    );
    assert_ne!(created(&mut c), before, "contact_list was not rebuilt");
    let data_dir: String = c
        .query_first("SELECT @@datadir")
        .expect("datadir")
        .expect("a row");
    // Written to the table files now, so they can be read.
    c.query_drop("FLUSH TABLES contact_list, contact_attempt FOR EXPORT")
        .expect("flush");
    let forgotten = ["Analytical Engines", "12 Babbage St", "asked about invoice"];
    for table in ["contact_list", "contact_attempt"] {
        let path = std::path::Path::new(&data_dir)
            .join(&db.name)
            .join(format!("{table}.ibd"));
        let bytes = std::fs::read(&path).expect(
            "the test reads the server's data directory (run it as root, on the server's machine)",
        );
        for v in forgotten {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "{table}'s file still holds {v:?}"
            );
        }
    }
    c.query_drop("UNLOCK TABLES").expect("unlock");
}
