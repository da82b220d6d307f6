//! The HTTP front doors, driven over loopback by a real HTTP client (reqwest) against the real daemon and its
//! demo store: the seed's bodies, bad bodies, tokens and accounts, limits, agent requests, a restart in the
//! middle of a job, expiry after retention, the OpenAPI document, and one end-to-end run with `curl`.

use crate::durability::{chunks_done, BATCH, DEVICES};
use crate::harness::{fixture, wait_until, Config, Daemon, Demo};
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;

pub(crate) const TOKEN: &str = "demo-http-token";
pub(crate) const OTHER_TOKEN: &str = "other-http-token";

/// The demo plus a second account, `other`, with its own token; `edit` changes the config further.
pub(crate) fn demo(rows: u64, edit: impl FnOnce(&mut Config)) -> Demo {
    Demo::new(rows, |c| {
        let hash = hex::encode(Sha256::digest(OTHER_TOKEN.as_bytes()));
        c.merge(&format!(
            "[[accounts]]\nname = \"other\"\nroot = \"accounts/other\"\nstores = [\"demo\"]\n\n[accounts.http]\ntoken_hash = \"sha256:{hash}\""
        ));
        edit(c);
    })
}

/// A config edit adding `settings` (TOML lines) to `[http]`.
pub(crate) fn http_settings(settings: &'static str) -> impl FnOnce(&mut Config) {
    move |c| {
        c.extend("http", settings);
    }
}

/// The job id an LCM envelope's answer carries as text in `message.FIELD` (`response`, or `pseudonymization` for
/// the second job of an access request that also pseudonymises).
pub(crate) fn lcm_job(answer: &Value, field: &str) -> i64 {
    answer["message"][field]
        .as_str()
        .unwrap_or_else(|| panic!("message.{field} holds a job id as text: {answer}"))
        .parse()
        .unwrap_or_else(|e| panic!("message.{field} is numeric: {e}"))
}

/// A client for the daemon's front doors (redirects are not followed: the 303 is what is tested).
pub(crate) struct Api {
    pub(crate) base: String,
    client: Client,
}

impl Api {
    pub(crate) fn new(daemon: &Daemon) -> Api {
        Api::from_address(daemon, None)
    }

    /// A client whose connections come from `local` (another loopback address than an attacker's).
    pub(crate) fn from_address(daemon: &Daemon, local: Option<std::net::IpAddr>) -> Api {
        let mut base = None;
        wait_until(Duration::from_secs(20), "the HTTP listener", || {
            base = daemon
                .log_text()
                .lines()
                .find(|l| l.contains("HTTP front doors listening"))
                .and_then(|l| l.split("address=").nth(1))
                .map(|a| format!("http://{}", a.trim()));
            base.is_some()
        });
        Api {
            base: base.expect("address"),
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(local)
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    pub(crate) fn post(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Response {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type)
            .body(body.into());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().expect("POST")
    }

    pub(crate) fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().expect("GET")
    }

    /// POSTs `body` as an erasure job for `account` with `token`, whatever the answer.
    pub(crate) fn erasure(&self, account: &str, token: &str, body: &str) -> Response {
        self.post(
            &format!("/accounts/{account}/gdpr_erasure"),
            Some(token),
            "text/csv",
            body,
        )
    }

    /// Submits a job of `kind` (`gdpr_erasure`, `gdpr_access`) for the demo account; returns its id.
    pub(crate) fn job(&self, kind: &str, body: &str) -> i64 {
        let r = self.post(
            &format!("/accounts/demo/{kind}"),
            Some(TOKEN),
            "text/csv",
            body,
        );
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let json: Value = r.json().expect("json");
        let id = json["id"].as_i64().expect("numeric id");
        assert_eq!(json["location"], location.as_str());
        assert_eq!(location, format!("{}/gdpr_jobs/{id}/status", self.base));
        id
    }

    /// Polls a job's status until it leaves SUBMITTED / IN_PROGRESS; returns the last answer.
    pub(crate) fn wait(&self, id: i64, token: &str) -> Response {
        let start = std::time::Instant::now();
        loop {
            let r = self.get(&format!("/gdpr_jobs/{id}/status"), Some(token));
            if r.status() != StatusCode::OK {
                return r;
            }
            let json: Value = r.json().expect("status json");
            let status = json["status"].as_str().expect("status").to_owned();
            assert!(
                ["SUBMITTED", "IN_PROGRESS", "FAILED"].contains(&status.as_str()),
                "{json}"
            );
            if status == "FAILED" {
                panic!("job {id} failed: {json}");
            }
            // A hang detector, not a speed check: the resumed 2,000-device job of the restart test takes about
            // 100 s of a debug build on a loaded 2-core machine; the durability tests allow the same 600 s.
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "job {id} did not finish within 600 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for success (303 to the response) and returns the response.
    pub(crate) fn finished(&self, id: i64) -> Value {
        let r = self.wait(id, TOKEN);
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        assert_eq!(location, format!("{}/gdpr_jobs/{id}/response", self.base));
        let r = self.get(&format!("/gdpr_jobs/{id}/response"), Some(TOKEN));
        assert_eq!(r.status(), StatusCode::OK);
        r.json().expect("response json")
    }
}

fn contacts(response: &Value) -> &Vec<Value> {
    response["contacts"].as_array().expect("contacts")
}

fn field<'a>(response: &'a Value, key: &str) -> Vec<&'a Value> {
    contacts(response).iter().map(|c| &c[key]).collect()
}

fn identifier(contact: &Value) -> (String, String) {
    let id = &contact["gdprIdentifiers"][0];
    (
        id["name"].as_str().expect("name").to_owned(),
        id["value"].as_str().expect("value").to_owned(),
    )
}

fn ledger_name(demo: &Demo, id: i64) -> String {
    demo.ledger()
        .query_row("SELECT name FROM files WHERE id = ?1", [id], |r| r.get(0))
        .expect("job in the ledger")
}

#[test]
fn the_seeds_erasure_bodies_run_like_files() {
    let demo = demo(100, |_| {});
    let daemon = demo.start();
    let api = Api::new(&daemon);
    // The seed's body as printed: typographic quotes, a trailing comma; none of them is in the demo store.
    let seed = std::fs::read_to_string(fixture("http/seed-erasure.csv")).expect("fixture");
    let id = api.job("gdpr_erasure", &seed);
    let response = api.finished(id);
    let names: Vec<(String, String)> = contacts(&response).iter().map(identifier).collect();
    assert_eq!(
        names,
        [
            ("MobileNumber", "15063434670"),
            ("MobileNumber", "15066754325"),
            ("Email", "john@domain.com"),
            ("MobileNumber", "18884266840"),
            ("Email", "jill@domain.com"),
            ("Email", "jack@somedomain.com"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert!(field(&response, "contactFound")
        .iter()
        .all(|f| **f == false));
    assert!(field(&response, "contactDeleted")
        .iter()
        .all(|f| **f == false));
    assert!(field(&response, "response")
        .iter()
        .all(|r| *r == "SUCCESS: not found"));
    assert_eq!(response["type"], "ERASURE");
    assert_eq!(response["account"], "demo");

    // The same shape naming the demo's sample records: they are erased like a dropped file would erase them.
    assert_eq!(demo.sample_email_rows(), 1);
    let body = seed
        .replace("15063434670", "17815551212")
        .replace("john@domain.com", "test@test.com");
    let id = api.job("gdpr_erasure", &body);
    let response = api.finished(id);
    let found: Vec<bool> = field(&response, "contactFound")
        .iter()
        .map(|v| v.as_bool().expect("bool"))
        .collect();
    assert_eq!(found, [true, false, true, false, false, false]);
    assert_eq!(field(&response, "contactDeleted")[0], &Value::from(true));
    assert_eq!(
        demo.sample_email_rows(),
        0,
        "the sample's email is forgotten"
    );
    assert_eq!(
        demo.db_count("SELECT count(*) FROM contact_list WHERE phone = '+1 781 555 1212'"),
        0
    );
    // It went through the ledger, the audit trail and GDPR_Result like a file.
    let name = ledger_name(&demo, id);
    assert!(name.starts_with("forget-api-"), "{name}");
    let stem = name.trim_end_matches(".json");
    assert_eq!(
        response["executionLog"],
        format!("{stem}-execution-log.json").as_str()
    );
    let log = demo.result_json(&format!("{stem}-execution-log.json"));
    assert_eq!(log["requests"][0]["type"], "FORGET");
    assert_eq!(log["requests"][0]["contacts"][0]["phone"], "+17815551212");
    let audited = demo.ledger_count(&format!(
        "SELECT count(*) FROM audit WHERE file = '{name}' AND action = 'forget'"
    ));
    assert_eq!(audited, 6);
    let status = crate::harness::run(&["status", "--config", demo.config.to_str().expect("utf-8")]);
    assert!(String::from_utf8_lossy(&status.stdout).contains(&name));

    // The seed's plain body, too.
    let plain = std::fs::read_to_string(fixture("http/seed-erasure-plain.csv")).expect("fixture");
    let response = api.finished(api.job("gdpr_erasure", &plain));
    assert_eq!(contacts(&response).len(), 4);
    assert!(contacts(&response)
        .iter()
        .all(|c| identifier(c).0 == "EMAIL"));
}

#[test]
fn an_access_job_links_the_archive_the_drop_folder_would_write() {
    let demo = demo(100, |_| {});
    let daemon = demo.start();
    let api = Api::new(&daemon);
    let id = api.job(
        "gdpr_access",
        "EMAIL,test@test.com\nMobileNumber,17815551212\n",
    );
    let response = api.finished(id);
    assert_eq!(response["type"], "ACCESS");
    assert_eq!(
        field(&response, "contactFound"),
        [&Value::from(true), &Value::from(true)]
    );
    assert!(contacts(&response)[0].get("contactDeleted").is_none());
    let archive_url = response["archive"].as_str().expect("archive link");
    assert_eq!(archive_url, format!("{}/gdpr_jobs/{id}/archive", api.base));
    let r = api.get(&format!("/gdpr_jobs/{id}/archive"), Some(TOKEN));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let served = r.bytes().expect("archive bytes");
    let stem = ledger_name(&demo, id).trim_end_matches(".json").to_owned();
    let on_disk = std::fs::read(demo.result.join(format!("{stem}-archive.zip")))
        .expect("archive in GDPR_Result");
    assert_eq!(
        served.as_ref(),
        on_disk.as_slice(),
        "the same ZIP as in GDPR_Result"
    );
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(on_disk)).expect("zip");
    let mut all = String::new();
    for i in 0..zip.len() {
        use std::io::Read;
        zip.by_index(i)
            .expect("entry")
            .read_to_string(&mut all)
            .expect("csv");
    }
    assert!(
        all.contains("TEST@test.com"),
        "the contact's rows are exported"
    );
    // An erasure job has no archive.
    let erasure = api.job("gdpr_erasure", "EMAIL,nobody@example.org");
    let response = api.finished(erasure);
    assert!(response.get("archive").is_none());
    let r = api.get(&format!("/gdpr_jobs/{erasure}/archive"), Some(TOKEN));
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn bad_bodies_get_clear_answers_and_bad_lines_answer_alone() {
    let demo = demo(100, http_settings("max_body_bytes = 1000\nmax_lines = 5\n"));
    let daemon = demo.start();
    let api = Api::new(&daemon);
    // Unknown lookup keys and a broken line are errors for their lines only.
    let id = api.job(
        "gdpr_erasure",
        "Fax,+1 781 555 1212\n\"EMAIL,test@test.com\nEMAIL,test@test.com\nEMAIL,not-an-email\n",
    );
    let response = api.finished(id);
    let answers: Vec<String> = field(&response, "response")
        .iter()
        .map(|r| r.as_str().expect("text").to_owned())
        .collect();
    assert!(
        answers[0].starts_with("ERROR: unknown lookup key \"Fax\""),
        "{answers:?}"
    );
    assert!(
        answers[1].contains("line 2: a quoted field is not closed"),
        "{answers:?}"
    );
    assert_eq!(answers[2], "SUCCESS");
    assert!(
        answers[3].starts_with("ERROR: incorrect device format"),
        "{answers:?}"
    );
    assert_eq!(demo.sample_email_rows(), 0);

    let accepted = demo.ledger_count("SELECT count(*) FROM files");
    let refused = |body: Vec<u8>, content_type: &str, status: StatusCode, says: &str| {
        let r = api.post(
            "/accounts/demo/gdpr_erasure",
            Some(TOKEN),
            content_type,
            body,
        );
        assert_eq!(r.status(), status, "{says}");
        let json: Value = r.json().expect("error json");
        let error = json["error"].as_str().expect("error text");
        assert!(error.contains(says), "{error} lacks {says}");
    };
    refused(
        b"Fax,1\nPager,2".to_vec(),
        "text/csv",
        StatusCode::BAD_REQUEST,
        "unknown lookup key \"Fax\"",
    );
    refused(
        b"\n\n".to_vec(),
        "text/csv",
        StatusCode::BAD_REQUEST,
        "no `lookup key, value` line",
    );
    refused(
        b"EMAIL,a\xff@b.com".to_vec(),
        "text/csv",
        StatusCode::BAD_REQUEST,
        "not valid UTF-8",
    );
    refused(
        b"EMAIL,a@b.com".to_vec(),
        "application/json",
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "text/csv",
    );
    refused(
        "EMAIL,a@b.com\n".repeat(6).into_bytes(),
        "text/csv",
        StatusCode::PAYLOAD_TOO_LARGE,
        "more than 5 lines",
    );
    let r = api.post(
        "/accounts/demo/gdpr_erasure",
        Some(TOKEN),
        "text/csv",
        format!("EMAIL,{}@b.com", "a".repeat(2000)),
    );
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let json: Value = r.json().expect("error json");
    assert!(
        json["error"]
            .as_str()
            .expect("text")
            .contains("larger than the limit of 1000 bytes"),
        "{json}"
    );
    assert_eq!(
        demo.ledger_count("SELECT count(*) FROM files"),
        accepted,
        "a refused body claims nothing"
    );
    let r = api.get("/gdpr_jobs/abc/status", Some(TOKEN));
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn a_malformed_job_id_without_a_token_gets_401_before_404() {
    let demo = demo(10, http_settings("auth_failures = 100\n"));
    let daemon = demo.start();
    let api = Api::new(&daemon);
    for id in ["abc", "0", "-1", "99999999999999999999"] {
        for what in ["status", "response", "archive"] {
            let path = format!("/gdpr_jobs/{id}/{what}");
            assert_eq!(
                api.get(&path, None).status(),
                StatusCode::UNAUTHORIZED,
                "{path}"
            );
            assert_eq!(
                api.get(&path, Some("wrong")).status(),
                StatusCode::UNAUTHORIZED,
                "{path}"
            );
            let r = api.get(&path, Some(TOKEN));
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
}

#[test]
fn a_405_answer_has_the_json_error_body_of_every_refusal() {
    let demo = demo(10, |_| {});
    let daemon = demo.start();
    let api = Api::new(&daemon);
    for (method, path) in [
        (reqwest::Method::GET, "/lcm"),
        (reqwest::Method::DELETE, "/gdpr_jobs/1/status"),
        (reqwest::Method::PUT, "/accounts/demo/gdpr_erasure"),
    ] {
        let r = api
            .client
            .request(method.clone(), format!("{}{path}", api.base))
            .bearer_auth(TOKEN)
            .send()
            .expect("request");
        assert_eq!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(r.headers()["content-type"], "application/json");
        let json: Value = r.json().expect("a JSON body");
        assert!(
            json["error"]
                .as_str()
                .is_some_and(|e| e.contains(&format!("{method} is not served here"))),
            "{json}"
        );
    }
}

#[test]
fn tokens_and_accounts_are_kept_apart() {
    let demo = demo(100, http_settings("auth_failures = 3\n"));
    let daemon = demo.start();
    let api = Api::new(&daemon);
    let id = api.job("gdpr_erasure", "EMAIL,test@test.com");
    api.finished(id);
    // Another account's token sees nothing of this job.
    for what in ["status", "response", "archive"] {
        let r = api.get(&format!("/gdpr_jobs/{id}/{what}"), Some(OTHER_TOKEN));
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{what}");
    }
    // A job of a file dropped in GDPR_Submit is not an HTTP job.
    let r = api.get("/gdpr_jobs/99999/status", Some(TOKEN));
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A token opens its own account only.
    let r = api.erasure("other", TOKEN, "EMAIL,a@b.com");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = api.erasure("other", OTHER_TOKEN, "EMAIL,a@b.com");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let theirs: Value = r.json().expect("json");
    let theirs = theirs["id"].as_i64().expect("id");
    let r = api.get(&format!("/gdpr_jobs/{theirs}/status"), Some(TOKEN));
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_ne!(
        api.wait(theirs, OTHER_TOKEN).status(),
        StatusCode::NOT_FOUND
    );
    // No token, a wrong token: 401 with a challenge; three failures block the address for the window.
    let r = api.get(&format!("/gdpr_jobs/{id}/status"), None);
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .expect("header")
        .starts_with("Bearer"));
    for _ in 0..2 {
        let r = api.get(&format!("/gdpr_jobs/{id}/status"), Some("guess"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = api.get(&format!("/gdpr_jobs/{id}/status"), Some(TOKEN));
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right token waits"
    );
    assert!(daemon.log_text().contains("HTTP authentication failed"));
    assert!(
        !daemon.log_text().contains("guess"),
        "tokens are not logged"
    );
}

#[test]
fn submissions_are_rate_limited_per_account() {
    let demo = demo(100, http_settings("submit_per_minute = 2\n"));
    let daemon = demo.start();
    let api = Api::new(&daemon);
    api.job("gdpr_erasure", "EMAIL,a@b.com");
    api.job("gdpr_access", "EMAIL,a@b.com");
    let r = api.erasure("demo", TOKEN, "EMAIL,a@b.com");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let json: Value = r.json().expect("json");
    assert!(json["error"]
        .as_str()
        .expect("text")
        .contains("2 requests a minute"));
    // Another account has its own budget.
    let r = api.erasure("other", OTHER_TOKEN, "EMAIL,a@b.com");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[test]
fn the_seeds_agent_requests() {
    let demo = demo(100, |_| {});
    let daemon = demo.start();
    let api = Api::new(&daemon);
    let access = std::fs::read_to_string(fixture("http/seed-lcm-access.json")).expect("fixture");
    let r = api.post("/lcm", Some(TOKEN), "application/json", access.clone());
    assert_eq!(r.status(), StatusCode::OK);
    let answer: Value = r.json().expect("json");
    assert_eq!(answer["channel"], "LCM");
    assert_eq!(answer["subtopic"], "SetDataPrivacyStatusResponse");
    let id = lcm_job(&answer, "response");
    let response = api.finished(id);
    assert_eq!(
        identifier(&contacts(&response)[0]),
        ("PhoneNumber".into(), "14152347172".into())
    );
    assert_eq!(
        field(&response, "response"),
        [&Value::from("SUCCESS: not found")]
    );
    // It is an export like any other: the archive and the log are in GDPR_Result, the call id is the case.
    let stem = ledger_name(&demo, id).trim_end_matches(".json").to_owned();
    assert!(stem.starts_with("export-lcm-"), "{stem}");
    assert!(demo.result.join(format!("{stem}-archive.zip")).exists());
    let log = demo.result_json(&format!("{stem}-execution-log.json"));
    assert_eq!(log["requests"][0]["requestcase"], "934|1|475|0|0|44|59");
    assert_eq!(log["requests"][0]["contacts"][0]["phone"], "+14152347172");

    // The pseudonymisation request, naming the demo's Grace Hopper (+1 617 555 1212) and genesys@genesys.com.
    let db = demo.db();
    let before: Vec<(i64, String, String)> = db
        .prepare("SELECT id, email, first_name FROM contact_list WHERE lower(email) = 'genesys@genesys.com'")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(!before.is_empty());
    let rows = demo.db_count("SELECT count(*) FROM contact_list");
    let pseudo = std::fs::read_to_string(fixture("http/seed-lcm-pseudonymization.json"))
        .expect("fixture")
        .replace("14152347172", "16175551212")
        .replace("\"EmailID\": \"\"", "\"EmailID\": \"genesys@genesys.com\"")
        // The LCM key scopes the search as a file's accountid does: the sample's account.
        .replace(
            "\"AccountNumber\": \"934|1|475|0|0|44|59\"",
            &format!("\"AccountNumber\": \"{}\"", gdprd::demo::SAMPLE_ACCOUNT),
        );
    let r = api.post("/lcm", Some(TOKEN), "application/json", pseudo);
    assert_eq!(r.status(), StatusCode::OK);
    let answer: Value = r.json().expect("json");
    assert_eq!(answer["subtopic"], "SetPseudonymizationResponse");
    let id = lcm_job(&answer, "response");
    let response = api.finished(id);
    assert_eq!(response["type"], "PSEUDONYMISATION");
    assert_eq!(
        field(&response, "contactPseudonymised"),
        [&Value::from(true), &Value::from(true)],
        "{response}"
    );
    for (row, email, first) in &before {
        let (e, f): (String, String) = db
            .query_row(
                "SELECT email, first_name FROM contact_list WHERE id = ?1",
                [row],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("row kept");
        assert_eq!(e, gdprd::stores::mask::mask(email));
        assert_eq!(f, gdprd::stores::mask::mask(first));
    }
    assert_eq!(
        gdprd::stores::mask::mask("genesys@genesys.com"),
        "gxxexxs@xxxxsys.com"
    );
    assert_eq!(
        demo.db_count("SELECT count(*) FROM contact_list"),
        rows,
        "nothing is deleted"
    );
    let lists = std::fs::read_dir(demo.dir.path().join("lists"))
        .expect("lists")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("csv"))
        .collect::<String>();
    assert!(
        lists.contains("+1 xx7 xx5 xx1x"),
        "the CSV list masks the phone too"
    );
    assert!(!lists.contains("+1 617 555 1212"));
    let stem = ledger_name(&demo, id).trim_end_matches(".json").to_owned();
    assert!(stem.starts_with("pseudonymise-lcm-"));
    assert_eq!(
        demo.ledger_count(&format!(
            "SELECT count(*) FROM audit WHERE file = '{stem}.json' AND action = 'pseudonymise'"
        )),
        2
    );

    // Access with IsPseudonymize: true is both, the export first.
    let both = access.replace("\"IsPseudonymize\": false", "\"IsPseudonymize\": true");
    let answer: Value = api
        .post("/lcm", Some(TOKEN), "application/json", both)
        .json()
        .expect("json");
    let first = lcm_job(&answer, "response");
    let second = lcm_job(&answer, "pseudonymization");
    assert!(second > first);
    assert!(ledger_name(&demo, second).starts_with("pseudonymise-lcm-"));

    // A broken envelope is answered in an envelope.
    let r = api.post(
        "/lcm",
        Some(TOKEN),
        "application/json",
        access.replace("\"LCM\"", "\"SMS\""),
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let answer: Value = r.json().expect("json");
    assert!(answer["message"]["error"]
        .as_str()
        .expect("error")
        .contains("channel"));
}

#[test]
fn a_restart_in_the_middle_of_a_job_resumes_it_exactly_once() {
    let demo = demo(20_000, |c| {
        c.merge(&format!("[limits]\nbatch_size = {BATCH}"));
    });
    let mut daemon = demo.start();
    let api = Api::new(&daemon);
    let body: String = (0..DEVICES)
        .map(|i| format!("EMAIL,user{i}@example.com\n"))
        .collect();
    let id = api.job("gdpr_erasure", &body);
    wait_until(Duration::from_secs(60), "a few chunks", || {
        chunks_done(&demo) >= 5
    });
    let r = api.get(&format!("/gdpr_jobs/{id}/status"), Some(TOKEN));
    let json: Value = r.json().expect("json");
    assert_eq!(json["status"], "IN_PROGRESS");
    daemon.signal("KILL");
    daemon.wait_exit(Duration::from_secs(10));
    assert!(
        chunks_done(&demo) < (DEVICES / BATCH) as i64,
        "killed in the middle"
    );
    drop(daemon);
    let daemon = demo.start();
    let api = Api::new(&daemon);
    let response = api.finished(id);
    assert_eq!(contacts(&response).len() as u64, DEVICES);
    assert!(field(&response, "contactDeleted")
        .iter()
        .all(|d| **d == true));
    let name = ledger_name(&demo, id);
    crate::durability::assert_log_and_ledger_exactly_once(&demo, &name, |_| true);
    assert!(daemon.log_text().contains("resuming claimed file"));
}

#[test]
fn after_retention_a_jobs_urls_answer_gone() {
    let demo = demo(100, |_| {});
    let daemon = demo.start();
    let api = Api::new(&daemon);
    let erasure = api.job("gdpr_erasure", "EMAIL,test@test.com");
    api.finished(erasure);
    let access = api.job("gdpr_access", "EMAIL,alan@bletchley.example");
    api.finished(access);
    assert!(demo
        .dir
        .path()
        .join(format!("state/jobs/{access}.lines.json"))
        .exists());
    drop(daemon);
    let day = 86_400;
    // Two days on: still there (retention is 3 days).
    let daemon =
        demo.start_with_env(&[("GDPRD_TEST_CLOCK_OFFSET_SECONDS", &(2 * day).to_string())]);
    let api = Api::new(&daemon);
    assert_eq!(api.wait(erasure, TOKEN).status(), StatusCode::SEE_OTHER);
    assert_eq!(
        api.get(&format!("/gdpr_jobs/{access}/archive"), Some(TOKEN))
            .status(),
        StatusCode::OK
    );
    drop(daemon);
    // Four days on: gone, and so are the lines and the results.
    let daemon =
        demo.start_with_env(&[("GDPRD_TEST_CLOCK_OFFSET_SECONDS", &(4 * day).to_string())]);
    let api = Api::new(&daemon);
    for id in [erasure, access] {
        for what in ["status", "response", "archive"] {
            let r = api.get(&format!("/gdpr_jobs/{id}/{what}"), Some(TOKEN));
            assert_eq!(r.status(), StatusCode::GONE, "{what} of {id}");
        }
    }
    for id in [erasure, access] {
        let sidecar =
            std::fs::read_to_string(demo.dir.path().join(format!("state/jobs/{id}.json")))
                .expect("tombstone");
        assert!(!sidecar.contains("@"), "no identifier is kept: {sidecar}");
        assert!(sidecar.contains("\"expired\":true"), "{sidecar}");
        assert!(
            !demo
                .dir
                .path()
                .join(format!("state/jobs/{id}.lines.json"))
                .exists(),
            "the lines are deleted"
        );
    }
    wait_until(
        Duration::from_secs(10),
        "retention to empty GDPR_Result",
        || demo.results().is_empty(),
    );
}

#[test]
fn the_openapi_document_matches_the_served_routes() {
    let doc: Value = serde_json::from_slice(
        &std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json"))
            .expect("docs/openapi.json"),
    )
    .expect("OpenAPI is JSON");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut served: Vec<(String, String)> = gdprd::http::ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    served.sort();
    assert_eq!(
        documented, served,
        "docs/openapi.json and the router disagree"
    );
    // And the running server answers each documented route (401 without a token), and nothing else. Each 401 is
    // a failed authentication from this address: allow more than there are routes, or the throttle would block
    // the probes that follow.
    let demo = demo(10, http_settings("auth_failures = 100\n"));
    let daemon = demo.start();
    let api = Api::new(&daemon);
    for (method, path) in &documented {
        let path = path.replace("{account}", "demo").replace("{id}", "1");
        let r = if method == "get" {
            api.get(&path, None)
        } else {
            api.post(&path, None, "text/csv", "EMAIL,a@b.com")
        };
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    assert_eq!(
        api.get("/gdpr_jobs/1", Some(TOKEN)).status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get("/lcm", Some(TOKEN)).status(),
        StatusCode::METHOD_NOT_ALLOWED
    );

    // What the document allows, the server accepts, and what the server refuses, the document does not allow:
    // bodies around the edges the HTTP fuzzer found (an empty CSV body, `message: {}`, a number for a string),
    // checked by a JSON Schema validator against docs/openapi.json.
    let access = std::fs::read_to_string(fixture("http/seed-lcm-access.json")).expect("fixture");
    let pseudo =
        std::fs::read_to_string(fixture("http/seed-lcm-pseudonymization.json")).expect("fixture");
    let erasure = "/accounts/{account}/gdpr_erasure";
    let probes: Vec<(&str, &str, String)> = vec![
        (erasure, "text/csv", String::new()),
        (erasure, "text/csv", "\n \n".into()),
        (erasure, "text/csv", "x".into()),
        (erasure, "text/csv", "Fax,1\nPager,2".into()),
        (erasure, "text/csv", "\"EMAIL,a@b.com".into()),
        (erasure, "text/csv", "EMAIL,a@b.com".into()),
        (
            erasure,
            "text/csv",
            std::fs::read_to_string(fixture("http/seed-erasure.csv")).expect("fixture"),
        ),
        ("/lcm", "application/json", access.clone()),
        ("/lcm", "application/json", pseudo.clone()),
        (
            "/lcm",
            "application/json",
            r#"{"channel": "LCM", "topic": "WebService", "subtopic": "GetDataPrivacyStatusRequest", "message": {}}"#.into(),
        ),
        (
            "/lcm",
            "application/json",
            access.replace("\"OtherEmailID\": \"\"", "\"OtherEmailID\": 0"),
        ),
        (
            "/lcm",
            "application/json",
            access.replace("\"AgentID\": \"rajat\"", "\"AgentID\": 7"),
        ),
        (
            "/lcm",
            "application/json",
            access.replace("\"14152347172\"", "null"),
        ),
        (
            "/lcm",
            "application/json",
            access.replace("Access to PI Data", "Pseudonymization"),
        ),
        (
            "/lcm",
            "application/json",
            access.replace("\"IsPseudonymize\": false", "\"IsPseudonymize\": \"true\""),
        ),
        (
            "/lcm",
            "application/json",
            pseudo.replace("\"IsPseudonymize\": true", "\"IsPseudonymize\": false"),
        ),
    ];
    let allowed = openapi_allows(&probes);
    let mut disagree = Vec::new();
    for ((path, content_type, body), allowed) in probes.iter().zip(allowed) {
        let served = path.replace("{account}", "demo");
        let r = api.post(&served, Some(TOKEN), content_type, body.clone());
        if r.status().is_success() != allowed {
            disagree.push(format!(
                "{path} {body:?}: the document {} it, the server answers {}",
                if allowed { "allows" } else { "refuses" },
                r.status()
            ));
        }
    }
    assert!(disagree.is_empty(), "{disagree:#?}");
}

/// Whether docs/openapi.json's request schema allows each (path, content type, body), asked of Python's
/// `jsonschema` (in a venv made once per test run under cargo's temporary folder).
fn openapi_allows(probes: &[(&str, &str, String)]) -> Vec<bool> {
    static PYTHON: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let python = PYTHON.get_or_init(|| {
        crate::harness::python_venv("jsonschema-venv", &["jsonschema"], "jsonschema")
    });
    const CHECK: &str = r#"
import json, sys, jsonschema
doc = json.load(open(sys.argv[1]))
answers = []
for path, content_type, body in json.load(sys.stdin):
    schema = dict(doc["paths"][path]["post"]["requestBody"]["content"][content_type]["schema"])
    schema["components"] = doc["components"]
    try:
        instance = body if content_type.startswith("text/") else json.loads(body)
    except ValueError:
        answers.append(False)
        continue
    answers.append(jsonschema.Draft4Validator(schema).is_valid(instance))
print(json.dumps(answers))
"#;
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let mut child = std::process::Command::new(python)
        .args(["-c", CHECK])
        .arg(doc)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(&serde_json::to_vec(probes).expect("probes as JSON"))
            .expect("write probes");
    }
    let out = child.wait_with_output().expect("python answers");
    assert!(out.status.success(), "the schema check failed");
    serde_json::from_slice(&out.stdout).expect("a list of answers")
}

#[test]
fn curl_end_to_end() {
    let demo = demo(100, |_| {});
    let daemon = demo.start();
    let api = Api::new(&daemon);
    let out = std::process::Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/http_e2e.sh"))
        .args([&api.base, TOKEN])
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("erasure job done: "), "{stdout}");
    assert_eq!(demo.sample_email_rows(), 0);
}
