//! The demo installation: a contact-centre SQLite database with messy real-world data (contact lists, contact
//! attempt history, callbacks with states, SMS on shortcodes, call recordings on disk, web sessions), holding
//! every well-formed device of the seed's two sample requests, plus a ready config and account folders.
//!
//! Filler rows are deterministic: contact `i` has phone [`filler_phone`]`(i)` and email [`filler_email`]`(i)`,
//! so benchmarks and tests can name devices that are present.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{params, Connection};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;
use std::io;
use std::path::{Path, PathBuf};

/// The demo config, as shipped in `fixtures/demo/gdprd.toml`.
pub const DEMO_CONFIG: &str = include_str!("../fixtures/demo/gdprd.toml");
/// The file `gdprd demo` writes beside its config. Only a config with it beside may use the demo's published
/// password and token; `check-config` and `run` refuse them anywhere else.
pub const MARKER: &str = "gdprd-demo.marker";
/// The demo account's SFTP password, published in the README.
pub const DEMO_PASSWORD: &str = "demo";
/// The demo account's HTTP bearer token, published in the README.
pub const DEMO_TOKEN: &str = "demo-http-token";
/// The account id of the seed's sample requests.
pub const SAMPLE_ACCOUNT: &str = "30003748347";
/// Another tenant's account id: its rows share devices with the sample but must never be touched.
pub const OTHER_ACCOUNT: &str = "40004000400";

/// Why the demo could not be laid out.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file or folder could not be written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The database could not be written.
    #[error("demo database: {0}")]
    Database(#[from] rusqlite::Error),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> DemoError {
    let context = context.into();
    move |source| DemoError::Io { context, source }
}

const SCHEMA: &str = r"
CREATE TABLE contact_list (
    id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, first_name TEXT, last_name TEXT, phone TEXT, mobile TEXT,
    email TEXT, company TEXT, address TEXT, notes TEXT, created_at TEXT NOT NULL);
CREATE TABLE contact_attempt (
    id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, contact_id INTEGER, dialed_number TEXT, attempted_at TEXT,
    outcome TEXT, agent TEXT, agent_notes TEXT);
CREATE TABLE callback (
    id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, customer_number TEXT, customer_name TEXT, state TEXT NOT NULL,
    scheduled_for TEXT);
CREATE TABLE sms_message (
    id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, shortcode TEXT NOT NULL, msisdn TEXT, direction TEXT, body TEXT,
    sent_at TEXT);
CREATE TABLE call_recording (
    id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, caller_number TEXT, file_path TEXT, duration_s INTEGER,
    recorded_at TEXT);
CREATE TABLE web_session (
    id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, login_email TEXT, client_ip TEXT, user_agent TEXT,
    started_at TEXT, deleted_at TEXT);
CREATE TABLE email_suppression (
    id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, email TEXT NOT NULL, reason TEXT, suppressed_at TEXT NOT NULL);
";

/// The E.164 digits (without `+`) of filler contact `i`: North American numbers in area codes 200-299, which the
/// sample's devices (781, 617) never use.
pub fn filler_digits(i: u64) -> String {
    format!("1{}", 2_000_000_000 + i * 7 % 1_000_000_000)
}

/// Filler contact `i`'s phone as a customer would write it in a request (`+1 200 000 0007`).
pub fn filler_phone(i: u64) -> String {
    let d = filler_digits(i);
    format!("+1 {} {} {}", &d[1..4], &d[4..7], &d[7..])
}

/// Filler contact `i`'s email.
pub fn filler_email(i: u64) -> String {
    format!("user{i}@example.com")
}

/// A national number (10 digits) written the messy ways real lists have them.
fn messy(national: &str, style: u64) -> String {
    let (a, b, c) = (&national[0..3], &national[3..6], &national[6..]);
    match style % 7 {
        0 => format!("({a}) {b}-{c}"),
        1 => format!("{a}.{b}.{c}"),
        2 => format!("{a}{b}{c}"),
        3 => format!("1-{a}-{b}-{c}"),
        4 => format!("+1 {a} {b} {c}"),
        5 => format!("+1{a}{b}{c}"),
        _ => format!("011 1 {a} {b} {c}"),
    }
}

const FIRST: [&str; 8] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
];
const LAST: [&str; 8] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
];

/// Writes the demo database at `path` (which must not exist) with `rows` filler contacts, and recording files
/// under `files_dir`.
///
/// # Errors
/// [`DemoError`].
pub fn create_database(path: &Path, rows: u64, files_dir: &Path) -> Result<(), DemoError> {
    if path.exists() {
        return Err(DemoError::Io {
            context: format!("{} already exists", path.display()),
            source: io::Error::from(io::ErrorKind::AlreadyExists),
        });
    }
    std::fs::create_dir_all(files_dir)
        .map_err(io_err(format!("cannot create {}", files_dir.display())))?;
    let mut conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA secure_delete = ON;",
    )?;
    conn.execute_batch(SCHEMA)?;
    let tx = conn.transaction()?;
    seed_sample(&tx, files_dir)?;
    fill(&tx, rows, files_dir)?;
    tx.commit()?;
    // Loading leaves old copies of values in unused page space (page splits) and the WAL: rebuild the file so it
    // holds each value only where a row holds it, and empty the WAL.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; ANALYZE; VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
    )?;
    Ok(())
}

/// The demo's tables, in the order they load (attempts point at contacts).
pub const TABLES: [&str; 7] = [
    "contact_list",
    "contact_attempt",
    "callback",
    "sms_message",
    "call_recording",
    "web_session",
    "email_suppression",
];

pub use crate::stores::demo_load::TableRows;

/// The rows of the demo database (the same [`create_database`] writes, recordings included under
/// `files_dir`), table by table as text: what `gdprd demo-db --postgres/--mysql` loads into a server.
///
/// # Errors
/// [`DemoError`].
pub fn demo_rows(rows: u64, files_dir: &Path) -> Result<Vec<TableRows>, DemoError> {
    std::fs::create_dir_all(files_dir)
        .map_err(io_err(format!("cannot create {}", files_dir.display())))?;
    let db = files_dir.join(format!(".gdprd-demo-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    create_database(&db, rows, files_dir)?;
    let read = || -> Result<Vec<TableRows>, DemoError> {
        let conn = Connection::open(&db)?;
        let mut out = Vec::new();
        for table in TABLES {
            let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY id"))?;
            let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
            let n = columns.len();
            let rows = stmt
                .query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => None,
                                rusqlite::types::ValueRef::Integer(v) => Some(v.to_string()),
                                rusqlite::types::ValueRef::Real(v) => Some(v.to_string()),
                                rusqlite::types::ValueRef::Text(t)
                                | rusqlite::types::ValueRef::Blob(t) => {
                                    Some(String::from_utf8_lossy(t).into_owned())
                                }
                            })
                        })
                        .collect::<Result<Vec<_>, rusqlite::Error>>()
                })?
                .collect::<Result<Vec<_>, _>>()?;
            out.push((table.to_owned(), columns, rows));
        }
        Ok(out)
    };
    let result = read();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    result
}

fn recording(files_dir: &Path, rel: &str) -> Result<(), DemoError> {
    let path = files_dir.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    }
    std::fs::write(&path, b"RIFF\x24\0\0\0WAVEfmt demo recording")
        .map_err(io_err(format!("cannot write {}", path.display())))
}

/// Rows for every well-formed device of the seed's two sample requests, in several tables, under the sample's
/// account id; plus rows that must survive a forget of the sample (another account, a shortcode not requested,
/// the malformed `617 555 1313`).
fn seed_sample(tx: &Connection, files_dir: &Path) -> Result<(), DemoError> {
    let a = SAMPLE_ACCOUNT;
    let now = "2026-01-15T10:00:00Z";
    let mut contact = tx.prepare(
        "INSERT INTO contact_list (account_id, first_name, last_name, phone, mobile, email, company, address, notes, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    contact.execute(params![
        a,
        "Ada",
        "Lovelace",
        "(781) 555-1212",
        "617-555-1212",
        "TEST@test.com",
        "Analytical Engines",
        "12 Babbage St",
        "prefers evenings",
        now
    ])?;
    contact.execute(params![
        a,
        "Grace",
        "Hopper",
        "+44 20 7946 0018",
        None::<String>,
        "genesys@genesys.com",
        "=HYPERLINK(\"http://x\")",
        "1 Cobol Way",
        "-called twice",
        now
    ])?;
    contact.execute(params![
        a,
        "Alan",
        "Turing",
        "6175551313",
        None::<String>,
        "alan@bletchley.example",
        "Bletchley",
        "3 Enigma Rd",
        "",
        now
    ])?;
    contact.execute(params![
        a,
        "Barbara",
        "Liskov",
        None::<String>,
        None::<String>,
        "test2@test.com",
        "CLU",
        "5 Substitution Ave",
        "",
        now
    ])?;
    contact.execute(params![
        a,
        "Edsger",
        "Dijkstra",
        None::<String>,
        "7815551313",
        "Genesys2@Genesys.com",
        "THE",
        "4 Shortest Path",
        "@mention",
        now
    ])?;
    contact.execute(params![
        OTHER_ACCOUNT,
        "Other",
        "Tenant",
        "(781) 555-1212",
        None::<String>,
        "test@test.com",
        "Other Co",
        "9 Elsewhere",
        "not ours",
        now
    ])?;
    let mut attempt = tx.prepare(
        "INSERT INTO contact_attempt (account_id, contact_id, dialed_number, attempted_at, outcome, agent, agent_notes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    attempt.execute(params![
        a,
        1,
        "7815551212",
        now,
        "ANSWERED",
        "agent7",
        "asked about invoice"
    ])?;
    attempt.execute(params![
        a,
        1,
        "1-781-555-1212",
        now,
        "NO_ANSWER",
        "agent2",
        ""
    ])?;
    attempt.execute(params![
        a,
        4,
        "(781) 555-1313",
        now,
        "BUSY",
        "agent7",
        "call back later"
    ])?;
    attempt.execute(params![
        a,
        1,
        "617.555.1212",
        now,
        "ANSWERED",
        "agent3",
        "mobile"
    ])?;
    attempt.execute(params![
        OTHER_ACCOUNT,
        5,
        "7815551212",
        now,
        "ANSWERED",
        "agent9",
        "other tenant"
    ])?;
    let mut callback = tx.prepare(
        "INSERT INTO callback (account_id, customer_number, customer_name, state, scheduled_for) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    callback.execute(params![a, "+1 781-555-1212", "Ada Lovelace", "QUEUED", now])?;
    callback.execute(params![
        a,
        "(781) 555-1212",
        "Ada Lovelace",
        "SCHEDULED",
        now
    ])?;
    callback.execute(params![
        a,
        "617 555 1212",
        "Ada Lovelace",
        "PROCESSING",
        now
    ])?;
    callback.execute(params![
        a,
        "781-555-1313",
        "Edsger Dijkstra",
        "COMPLETED",
        now
    ])?;
    callback.execute(params![
        a,
        "781.555.1313",
        "Edsger Dijkstra",
        "ROUTING",
        now
    ])?;
    let mut sms = tx.prepare(
        "INSERT INTO sms_message (account_id, shortcode, msisdn, direction, body, sent_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    sms.execute(params![a, "11111", "17815551212", "MO", "STOP", now])?;
    sms.execute(params![
        a,
        "22222",
        "+16175551212",
        "MT",
        "Your code is 1234",
        now
    ])?;
    sms.execute(params![
        a,
        "99999",
        "17815551212",
        "MT",
        "shared shortcode campaign",
        now
    ])?;
    sms.execute(params![
        a,
        "33333",
        "17815551212",
        "MT",
        "a shortcode the request did not name",
        now
    ])?;
    sms.execute(params![a, "11111", "7815551313", "MO", "HELP", now])?;
    let mut rec = tx.prepare(
        "INSERT INTO call_recording (account_id, caller_number, file_path, duration_s, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (number, file) in [
        ("781.555.1212", "2026/01/rec-sample-1.wav"),
        ("+1 (617) 555-1212", "2026/01/rec-sample-2.wav"),
        ("781-555-1313", "2026/01/rec-sample-3.wav"),
    ] {
        recording(files_dir, file)?;
        rec.execute(params![a, number, file, 95, now])?;
    }
    recording(files_dir, "2026/01/rec-other-tenant.wav")?;
    rec.execute(params![
        OTHER_ACCOUNT,
        "7815551212",
        "2026/01/rec-other-tenant.wav",
        30,
        now
    ])?;
    let mut web = tx.prepare(
        "INSERT INTO web_session (account_id, login_email, client_ip, user_agent, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    web.execute(params![
        a,
        "Test@Test.com",
        "10.10.10.10",
        "Mozilla/5.0 (Windows NT 10.0)",
        now
    ])?;
    web.execute(params![a, None::<String>, "11.11.11.11", "curl/8.0", now])?;
    web.execute(params![
        a,
        "genesys@genesys.com",
        "10.10.10.11",
        "Mozilla/5.0 (Macintosh)",
        now
    ])?;
    web.execute(params![
        a,
        "test2@test.com",
        " 11.11.11.12",
        "Mozilla/5.0 (X11; Linux)",
        now
    ])?;
    // Soft-deleted by the application: still personal data, still forgotten and exported.
    tx.execute(
        "INSERT INTO web_session (account_id, login_email, client_ip, user_agent, started_at, deleted_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![a, "genesys2@genesys.com", "192.0.2.7", "Mozilla/5.0 (iPhone)", now],
    )?;
    web.execute(params![
        OTHER_ACCOUNT,
        "test@test.com",
        "10.10.10.10",
        "other tenant",
        now
    ])?;
    let mut suppress = tx.prepare(
        "INSERT INTO email_suppression (account_id, email, reason, suppressed_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    suppress.execute(params![a, "TEST@test.com", "unsubscribed", now])?;
    suppress.execute(params![a, "genesys2@genesys.com", "complaint", now])?;
    suppress.execute(params![OTHER_ACCOUNT, "test@test.com", "unsubscribed", now])?;
    Ok(())
}

fn fill(tx: &Connection, rows: u64, files_dir: &Path) -> Result<(), DemoError> {
    let mut rng = StdRng::seed_from_u64(42);
    let accounts = [SAMPLE_ACCOUNT, "30003748348", OTHER_ACCOUNT];
    let mut contact = tx.prepare(
        "INSERT INTO contact_list (account_id, first_name, last_name, phone, mobile, email, company, address, notes, created_at)
         VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?8, '2025-06-01T09:00:00Z')",
    )?;
    let mut attempt = tx.prepare(
        "INSERT INTO contact_attempt (account_id, contact_id, dialed_number, attempted_at, outcome, agent, agent_notes)
         VALUES (?1, ?2, ?3, '2025-06-02T09:00:00Z', ?4, 'agent1', NULL)",
    )?;
    let mut callback = tx.prepare(
        "INSERT INTO callback (account_id, customer_number, customer_name, state, scheduled_for) VALUES (?1, ?2, ?3, ?4, '2025-06-03T09:00:00Z')",
    )?;
    let mut sms = tx.prepare(
        "INSERT INTO sms_message (account_id, shortcode, msisdn, direction, body, sent_at) VALUES (?1, ?2, ?3, 'MT', 'promo', '2025-06-04T09:00:00Z')",
    )?;
    let mut rec = tx.prepare(
        "INSERT INTO call_recording (account_id, caller_number, file_path, duration_s, recorded_at) VALUES (?1, ?2, ?3, 60, '2025-06-05T09:00:00Z')",
    )?;
    let mut web = tx.prepare(
        "INSERT INTO web_session (account_id, login_email, client_ip, user_agent, started_at) VALUES (?1, ?2, ?3, 'Mozilla/5.0', '2025-06-06T09:00:00Z')",
    )?;
    const STATES: [&str; 5] = ["SCHEDULED", "COMPLETED", "QUEUED", "PROCESSING", "ROUTING"];
    for i in 0..rows {
        let account = accounts[(i % 3) as usize];
        let national = &filler_digits(i)[1..];
        let phone = messy(national, i);
        let first = FIRST[rng.random_range(0..FIRST.len())];
        let last = LAST[rng.random_range(0..LAST.len())];
        contact.execute(params![
            account,
            first,
            last,
            phone,
            filler_email(i),
            "Acme",
            format!("{} Main St", i % 997),
            "filler"
        ])?;
        let contact_id = tx.last_insert_rowid();
        attempt.execute(params![
            account,
            contact_id,
            messy(national, i + 3),
            if i % 2 == 0 { "ANSWERED" } else { "NO_ANSWER" }
        ])?;
        if i % 10 == 0 {
            callback.execute(params![
                account,
                messy(national, i + 1),
                format!("{first} {last}"),
                STATES[(i / 10 % 5) as usize]
            ])?;
            sms.execute(params![
                account,
                ["11111", "22222", "99999"][(i / 10 % 3) as usize],
                national
            ])?;
        }
        if i % 50 == 0 {
            tx.execute(
                "INSERT INTO email_suppression (account_id, email, reason, suppressed_at) VALUES (?1, ?2, 'unsubscribed', '2025-06-07T09:00:00Z')",
                params![account, filler_email(i)],
            )?;
        }
        if i % 5 == 0 {
            let ip = format!("172.{}.{}.{}", 16 + (i >> 16) % 16, (i >> 8) % 256, i % 256);
            web.execute(params![account, filler_email(i), ip])?;
        }
        if i % 100 == 0 && i < 50_000 {
            let file = format!("2025/06/rec-{i}.wav");
            recording(files_dir, &file)?;
            rec.execute(params![account, phone, file])?;
        }
    }
    Ok(())
}

/// The demo's CSV contact list, `lists/contacts-2025-06.csv`: the sample's devices written the ways exported
/// lists have them, another tenant's row with a sample phone, and one filler contact in ten.
pub fn write_contact_list(folder: &Path, rows: u64) -> Result<(), DemoError> {
    std::fs::create_dir_all(folder)
        .map_err(io_err(format!("cannot create {}", folder.display())))?;
    let path = folder.join("contacts-2025-06.csv");
    let mut w = csv::Writer::from_path(&path)
        .map_err(|e| io_err(format!("cannot write {}", path.display()))(e.into()))?;
    let failed = |e: csv::Error| io_err("cannot write the contact list")(e.into());
    w.write_record([
        "list_id",
        "account_id",
        "first_name",
        "last_name",
        "phone",
        "email",
        "opt_in",
    ])
    .map_err(failed)?;
    let sample = [
        (
            "L1",
            SAMPLE_ACCOUNT,
            "Ada",
            "Lovelace",
            "(781) 555-1212",
            "TEST@test.com",
            "yes",
        ),
        (
            "L1",
            SAMPLE_ACCOUNT,
            "Grace",
            "Hopper",
            "+1 617 555 1212",
            "",
            "yes",
        ),
        (
            "L1",
            SAMPLE_ACCOUNT,
            "Alan",
            "Turing",
            "",
            "genesys@genesys.com",
            "no",
        ),
        (
            "L1",
            SAMPLE_ACCOUNT,
            "Edsger",
            "Dijkstra",
            "781.555.1313",
            "test2@test.com",
            "yes",
        ),
        (
            "L2",
            OTHER_ACCOUNT,
            "Barbara",
            "Liskov",
            "7815551212",
            "test@test.com",
            "yes",
        ),
        (
            "L1",
            SAMPLE_ACCOUNT,
            "Ken",
            "Thompson",
            "617 555 1313",
            "",
            "yes",
        ),
    ];
    for (list, account, first, last, phone, email, opt_in) in sample {
        w.write_record([list, account, first, last, phone, email, opt_in])
            .map_err(failed)?;
    }
    let accounts = [SAMPLE_ACCOUNT, "30003748348", OTHER_ACCOUNT];
    for i in (0..rows).step_by(10) {
        let national = &filler_digits(i)[1..];
        w.write_record([
            "L3",
            accounts[(i % 3) as usize],
            FIRST[(i % 8) as usize],
            LAST[(i / 8 % 8) as usize],
            &messy(national, i + 5),
            &filler_email(i),
            "yes",
        ])
        .map_err(failed)?;
    }
    w.flush().map_err(io_err("cannot write the contact list"))?;
    Ok(())
}

/// Writes a new ed25519 key pair: the private key at `path` (mode 0600, OpenSSH format), the public key beside it
/// as `.pub`.
fn write_demo_key(path: &Path) -> Result<(), DemoError> {
    let encode = |e: russh::keys::ssh_key::Error| DemoError::Io {
        context: "cannot encode the demo key".into(),
        source: io::Error::other(e.to_string()),
    };
    let private = PrivateKey::from(Ed25519Keypair::from_seed(&rand::random::<[u8; 32]>()));
    let text = private.to_openssh(LineEnding::LF).map_err(encode)?;
    let public = private.public_key().to_openssh().map_err(encode)?;
    crate::transports::sftp_server::write_private(path, text.as_bytes())
        .map_err(io_err(format!("cannot write {}", path.display())))?;
    std::fs::write(path.with_extension("pub"), format!("{public} demo\n"))
        .map_err(io_err("cannot write the demo public key"))
}

/// What [`lay_out`] made.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The config file.
    pub config: PathBuf,
    /// The account's `GDPR_Submit`.
    pub submit: PathBuf,
    /// The account's `GDPR_Result`.
    pub result: PathBuf,
    /// The demo database.
    pub database: PathBuf,
    /// Whether the database was made now (false: an existing one is kept).
    pub created_database: bool,
    /// The demo account's private SSH key (its `.pub` beside it is the authorised key).
    pub key: PathBuf,
}

/// Lays out a complete demo installation in `dir`: `gdprd.toml` (SFTP server on 127.0.0.1:`sftp_port`, HTTP
/// front doors on 127.0.0.1:`http_port`),
/// `demo.db` with `rows` filler contacts, `recordings/`, `accounts/demo/GDPR_Submit` and `GDPR_Result`, and the
/// demo account's key pair `demo_ed25519` (+ `.pub`). What already exists is kept.
///
/// # Errors
/// [`DemoError`].
pub fn lay_out(dir: &Path, rows: u64, sftp_port: u16, http_port: u16) -> Result<Layout, DemoError> {
    let submit = dir.join("accounts/demo/GDPR_Submit");
    let result = dir.join("accounts/demo/GDPR_Result");
    for d in [&submit, &result] {
        std::fs::create_dir_all(d).map_err(io_err(format!("cannot create {}", d.display())))?;
    }
    let config = dir.join("gdprd.toml");
    if !config.exists() {
        let text = DEMO_CONFIG
            .replace("127.0.0.1:2222", &format!("127.0.0.1:{sftp_port}"))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{http_port}"));
        std::fs::write(&config, text)
            .map_err(io_err(format!("cannot write {}", config.display())))?;
    }
    let marker = dir.join(MARKER);
    if !marker.exists() {
        std::fs::write(
            &marker,
            "Written by `gdprd demo`: the config beside it may use the demo's published password and token.\n",
        )
        .map_err(io_err(format!("cannot write {}", marker.display())))?;
    }
    let key = dir.join("demo_ed25519");
    if !key.exists() {
        write_demo_key(&key)?;
    }
    let database = dir.join("demo.db");
    let created_database = !database.exists();
    if created_database {
        create_database(&database, rows, &dir.join("recordings"))?;
    }
    let lists = dir.join("lists");
    if !lists.exists() {
        write_contact_list(&lists, rows)?;
    }
    Ok(Layout {
        config,
        submit,
        result,
        database,
        created_database,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::{Device, DeviceKind};

    /// docs/configuration.md shows the demo config, annotated: it must be the same configuration (issue 14 item
    /// 19: it had fallen behind the fixture, 17 lines short).
    #[test]
    fn the_annotated_example_in_the_docs_is_the_demo_config() {
        let doc = include_str!("../docs/configuration.md");
        let section = doc
            .split_once("## An annotated example: the demo")
            .expect("the section")
            .1;
        let block = section
            .split_once("```toml\n")
            .and_then(|(_, rest)| rest.split_once("```"))
            .expect("a toml block")
            .0;
        let shown: toml::Value = toml::from_str(block).expect("the doc's block parses");
        let shipped: toml::Value = toml::from_str(DEMO_CONFIG).expect("the fixture parses");
        assert_eq!(shown, shipped);
    }

    #[test]
    fn filler_devices_are_valid_and_distinct_from_the_sample() {
        for i in [0u64, 1, 999_999] {
            let d = Device::new(DeviceKind::Phone, &filler_phone(i)).expect("valid phone");
            assert_eq!(d.canonical(), format!("+{}", filler_digits(i)));
            assert!(!d.canonical().starts_with("+1781") && !d.canonical().starts_with("+1617"));
            assert!(Device::new(DeviceKind::Email, &filler_email(i)).is_ok());
        }
        assert_ne!(filler_digits(1), filler_digits(2));
    }

    #[test]
    fn database_holds_the_sample() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = lay_out(dir.path(), 50, 2222, 8080).expect("lay out");
        assert!(layout.created_database);
        let conn = Connection::open(&layout.database).expect("open");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM contact_list", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 56);
        assert!(dir
            .path()
            .join("recordings/2026/01/rec-sample-1.wav")
            .exists());
        let again = lay_out(dir.path(), 50, 2222, 8080).expect("again");
        assert!(!again.created_database, "an existing database is kept");
    }
}
