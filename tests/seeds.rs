//! Issue 19, the seeds point by point, each driven the way the seed's user would: a request file under an
//! account's `[accounts.requests]` rules (001), checked in the demo store afterwards.

use crate::harness::{responses, today, Demo};
use crate::http::{lcm_job, Api, TOKEN};
use gdprd::demo::{OTHER_ACCOUNT, SAMPLE_ACCOUNT};
use serde_json::{json, Value};

/// The text every contact of a request refused for a missing `accountid` answers.
const NO_ACCOUNTID: &str = "ERROR: request refused: this account requires \"accountid\" in every request (the account number to search); nothing was done for this contact";
/// The text every contact of a request refused for missing `shortcodes` answers.
const NO_SHORTCODES: &str = "ERROR: request refused: this account requires \"shortcodes\" in every request (at least one SMS shortcode to search); nothing was done for this contact";

/// Rows of the demo's contact list holding `email` (any case) for `account`.
fn rows(demo: &Demo, email: &str, account: &str) -> i64 {
    demo.db_count(&format!(
        "SELECT count(*) FROM contact_list WHERE lower(email) = lower('{email}') AND account_id = '{account}'"
    ))
}

/// Runs a forget of `requests` once with `run --once` and returns its execution log.
fn forget(demo: &Demo, requests: Value) -> Value {
    let name = format!("forget-{}_120000.json", today());
    demo.submit(
        &name,
        json!({ "requests": requests }).to_string().as_bytes(),
    );
    demo.run_once();
    demo.result_json(&format!("forget-{}_120000-execution-log.json", today()))
}

#[test]
fn an_account_requiring_accountid_and_shortcodes_refuses_each_request_that_lacks_one() {
    let demo = Demo::new(0, |c| {
        c.extend(
            "accounts[demo]",
            "[requests]\naccountid = \"required\"\nshortcodes = \"required\"",
        );
    });
    let log = forget(
        &demo,
        json!([
            {"shortcodes": ["11111"], "type": "FORGET", "contacts": [{"email": "test@test.com"}, {"phone": "617"}]},
            {"accountid": "", "shortcodes": ["11111"], "type": "FORGET", "contacts": [{"email": "test@test.com"}]},
            {"accountid": SAMPLE_ACCOUNT, "shortcodes": [], "type": "FORGET", "contacts": [{"email": "test@test.com"}]},
            {"accountid": SAMPLE_ACCOUNT, "shortcodes": ["11111"], "type": "FORGET", "contacts": [{"email": "genesys@genesys.com"}]}
        ]),
    );
    assert_eq!(
        responses(&log),
        [
            NO_ACCOUNTID,
            NO_ACCOUNTID,
            NO_ACCOUNTID,
            NO_SHORTCODES,
            "SUCCESS"
        ],
        "a refused request answers for every contact, even a malformed one; the file's other requests run"
    );
    // Nothing was searched for the refused requests: both tenants' test@test.com rows are still there.
    assert_eq!(rows(&demo, "test@test.com", SAMPLE_ACCOUNT), 1);
    assert_eq!(rows(&demo, "test@test.com", OTHER_ACCOUNT), 1);
    assert_eq!(rows(&demo, "genesys@genesys.com", SAMPLE_ACCOUNT), 0);
    // The audit trail says the same, per contact, without a device.
    assert_eq!(
        demo.ledger_count(&format!(
            "SELECT count(*) FROM audit WHERE outcome = '{}' AND device_hmac IS NULL",
            NO_ACCOUNTID.replace('\'', "''")
        )),
        3
    );
}

#[test]
fn an_ignored_accountid_searches_every_account_and_an_empty_one_is_not_given() {
    let demo = Demo::new(0, |c| {
        c.extend("accounts[demo]", "[requests]\naccountid = \"ignored\"");
    });
    let log = forget(
        &demo,
        json!([{"accountid": "99999999999", "type": "FORGET", "contacts": [{"email": "test@test.com"}]}]),
    );
    assert_eq!(responses(&log), ["SUCCESS"]);
    assert_eq!(rows(&demo, "test@test.com", SAMPLE_ACCOUNT), 0);
    assert_eq!(rows(&demo, "test@test.com", OTHER_ACCOUNT), 0);

    // The default (optional): `""` is "not given", so every account is searched, as without the key.
    let demo = Demo::new(0, |_| {});
    let log = forget(
        &demo,
        json!([{"accountid": "", "type": "FORGET", "contacts": [{"email": "genesys@genesys.com"}]},
               {"accountid": OTHER_ACCOUNT, "type": "FORGET", "contacts": [{"email": "test@test.com"}]}]),
    );
    assert_eq!(responses(&log), ["SUCCESS", "SUCCESS"]);
    assert_eq!(rows(&demo, "genesys@genesys.com", SAMPLE_ACCOUNT), 0);
    assert_eq!(
        rows(&demo, "test@test.com", SAMPLE_ACCOUNT),
        1,
        "a given accountid still scopes"
    );
    assert_eq!(rows(&demo, "test@test.com", OTHER_ACCOUNT), 0);
}

#[test]
fn validate_applies_the_accounts_rules() {
    let demo = Demo::new(0, |c| {
        c.extend("accounts[demo]", "[requests]\naccountid = \"required\"");
    });
    let file = demo
        .dir
        .path()
        .join(format!("forget-{}_120000.json", today()));
    std::fs::write(
        &file,
        json!({"requests": [{"type": "FORGET", "contacts": [{"email": "a@b.com"}, {"email": "c@d.com"}]}]})
            .to_string(),
    )
    .expect("file");
    let out = crate::harness::run(&[
        "validate",
        "--config",
        demo.config.to_str().expect("utf-8"),
        file.to_str().expect("utf-8"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("INVALID: 2 of 2 contacts would get an error"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("request 1 (2 contacts): {NO_ACCOUNTID}")),
        "{stdout}"
    );
}

/// The seed's pseudonymisation request (003), as shipped in fixtures/http/.
fn seed_pseudonymisation() -> String {
    std::fs::read_to_string(crate::harness::fixture(
        "http/seed-lcm-pseudonymization.json",
    ))
    .expect("fixture")
}

#[test]
fn an_agents_request_missing_a_mandatory_field_is_refused_naming_it_and_account_number_scopes_the_search(
) {
    let demo = crate::http::demo(0, |_| {});
    let daemon = demo.start();
    let api = Api::new(&daemon);
    let files = || demo.ledger_count("SELECT count(*) FROM files");
    // The seed: every field "Mandatory: Yes". A message with only EmailID was accepted before.
    let cases = [
        (
            r#"{"channel": "LCM", "topic": "WebService", "subtopic": "CreatePseudonymizationRequest", "message": {"EmailID": "test@test.com"}}"#.to_owned(),
            "message.CustomerName is missing",
        ),
        (
            seed_pseudonymisation().replace("\"OtherEmailID\": \"\",", ""),
            "message.OtherEmailID is missing",
        ),
        (
            seed_pseudonymisation().replace("\"AgentID\": \"rajat\"", "\"AgentID\": \"\""),
            "message.AgentID is empty",
        ),
    ];
    for (body, want) in cases {
        let r = api.post("/lcm", Some(TOKEN), "application/json", body);
        assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST);
        let answer: Value = r.json().expect("json");
        assert_eq!(answer["subtopic"], "Error");
        let error = answer["message"]["error"].as_str().expect("error");
        assert!(error.contains(want), "{error} lacks {want}");
    }
    assert_eq!(files(), 0, "nothing was claimed");

    // AccountNumber scopes the search as accountid does: only the other tenant's test@test.com is masked.
    let body = seed_pseudonymisation()
        .replace("\"EmailID\": \"\"", "\"EmailID\": \"test@test.com\"")
        .replace(
            "\"AccountNumber\": \"934|1|475|0|0|44|59\"",
            &format!("\"AccountNumber\": \"{OTHER_ACCOUNT}\""),
        );
    assert!(body.contains(OTHER_ACCOUNT), "{body}");
    let r = api.post("/lcm", Some(TOKEN), "application/json", body);
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let answer: Value = r.json().expect("json");
    let id = lcm_job(&answer, "response");
    let response = api.finished(id);
    assert_eq!(
        response["contacts"][1]["contactPseudonymised"], true,
        "{response}"
    );
    assert_eq!(rows(&demo, "test@test.com", OTHER_ACCOUNT), 0, "masked");
    assert_eq!(
        demo.db_count(&format!(
            "SELECT count(*) FROM contact_list WHERE account_id = '{OTHER_ACCOUNT}' AND email = '{}'",
            gdprd::stores::mask::mask("test@test.com")
        )),
        1
    );
    assert_eq!(
        rows(&demo, "test@test.com", SAMPLE_ACCOUNT),
        1,
        "the sample account's row is another account's: untouched"
    );
}

#[test]
fn http_jobs_carry_the_accounts_scope_and_its_rules() {
    let demo = crate::http::demo(0, |c| {
        c.extend("accounts[demo]", "[requests]\naccountid = \"required\"");
        c.extend(
            "accounts[other]",
            "[requests]\naccountid = \"required\"\nshortcodes = \"required\"",
        );
        c.extend(
            "accounts[other].http",
            &format!("accountid = \"{SAMPLE_ACCOUNT}\"\nshortcodes = [\"11111\"]"),
        );
    });
    let daemon = demo.start();
    let api = Api::new(&daemon);
    // The demo account requires an account id, and its HTTP settings give none: refused before any claim.
    let r = api.erasure("demo", TOKEN, "EMAIL,test@test.com");
    assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST);
    let answer: Value = r.json().expect("json");
    let error = answer["error"].as_str().expect("error");
    assert!(
        error.contains("requires \"accountid\"") && error.contains("[accounts.http] accountid"),
        "{error}"
    );
    assert_eq!(demo.ledger_count("SELECT count(*) FROM files"), 0);
    // The other account's jobs search its account id and shortcodes.
    let r = api.erasure("other", crate::http::OTHER_TOKEN, "EMAIL,test@test.com");
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let id = r.json::<Value>().expect("json")["id"].as_i64().expect("id");
    let r = api.wait(id, crate::http::OTHER_TOKEN);
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(rows(&demo, "test@test.com", SAMPLE_ACCOUNT), 0);
    assert_eq!(
        rows(&demo, "test@test.com", OTHER_ACCOUNT),
        1,
        "another account id's row is not searched"
    );
    let name: String = demo
        .ledger()
        .query_row("SELECT name FROM files WHERE id = ?1", [id], |r| r.get(0))
        .expect("job");
    let log: Value = serde_json::from_slice(
        &std::fs::read(demo.dir.path().join(format!(
            "accounts/other/GDPR_Result/{}-execution-log.json",
            name.trim_end_matches(".json")
        )))
        .expect("log"),
    )
    .expect("json");
    assert_eq!(log["requests"][0]["accountid"], SAMPLE_ACCOUNT);
    assert_eq!(log["requests"][0]["shortcodes"], json!(["11111"]));
}

/// Everything in the demo's CSV contact lists.
fn lists(demo: &Demo) -> String {
    std::fs::read_dir(demo.dir.path().join("lists"))
        .expect("lists")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("csv"))
        .collect()
}

#[test]
fn a_wca_client_erases_through_the_seeds_own_paths_in_the_databases_stores_only() {
    let demo = crate::http::demo(0, |c| {
        c.extend("accounts[demo].http", "databases = { 10091 = [\"demo\"] }");
    });
    let daemon = demo.start();
    let api = Api::new(&daemon);
    assert!(lists(&demo).contains("test@test.com"));
    // The seed's request: POST /rest/databases/{databaseId}/gdpr_erasure, text/csv, one identifier a line.
    let body = "EMAIL,test@test.com\nEMAIL,nonexistent@eng.silverpop.com\n";
    let r = api.post(
        "/rest/databases/10091/gdpr_erasure",
        Some(TOKEN),
        "text/csv",
        body,
    );
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let accepted: Value = r.json().expect("json");
    let id = accepted["id"].as_i64().expect("numeric id");
    assert_eq!(location, format!("{}/rest/gdpr_jobs/{id}/status", api.base));
    assert_eq!(accepted["location"], location.as_str());
    // GET the status until it is COMPLETE (303 to the response); before, the seed's WAITING or IN PROGRESS.
    let status_path = format!("/rest/gdpr_jobs/{id}/status");
    let done = loop {
        let r = api.get(&status_path, Some(TOKEN));
        if r.status() == reqwest::StatusCode::SEE_OTHER {
            break r;
        }
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        let status: Value = r.json().expect("json");
        assert!(
            ["WAITING", "IN PROGRESS"].contains(&status["status"].as_str().expect("status")),
            "{status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let response_url = format!("{}/rest/gdpr_jobs/{id}/response", api.base);
    assert_eq!(done.headers()["location"], response_url.as_str());
    let status: Value = done.json().expect("json");
    assert_eq!(status["status"], "COMPLETE");
    assert_eq!(status["location"], response_url.as_str());
    // The response, in the seed's shape.
    let r = api.get(&format!("/rest/gdpr_jobs/{id}/response"), Some(TOKEN));
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let response: Value = r.json().expect("json");
    assert_eq!(response["databaseId"], 10091);
    assert_eq!(response["status"], "COMPLETE");
    let contacts = response["contacts"].as_array().expect("contacts");
    assert_eq!(contacts[0]["contactFound"], true);
    assert_eq!(contacts[0]["contactDeleted"], true);
    assert_eq!(
        contacts[0]["contactAnonymised"], true,
        "contact_list anonymises: the rows stay, with placeholders"
    );
    assert_eq!(
        contacts[0]["gdprIdentifiers"],
        json!([{"name": "EMAIL", "value": "test@test.com"}])
    );
    assert_eq!(contacts[1]["contactFound"], false);
    assert_eq!(contacts[1]["contactDeleted"], false);
    assert_eq!(contacts[1]["contactAnonymised"], false);
    // The gdprd paths serve the same job with gdprd's status names.
    let r = api.get(&format!("/gdpr_jobs/{id}/status"), Some(TOKEN));
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(r.json::<Value>().expect("json")["status"], "SUCCESS");
    // Database 10091 is the demo store alone: its rows are forgotten, the CSV lists are not searched.
    assert_eq!(rows(&demo, "test@test.com", SAMPLE_ACCOUNT), 0);
    assert_eq!(rows(&demo, "test@test.com", OTHER_ACCOUNT), 0);
    assert!(
        lists(&demo).contains("test@test.com"),
        "a store outside the database is untouched"
    );
    // A database the account does not map is not there.
    let r = api.post(
        "/rest/databases/777/gdpr_erasure",
        Some(TOKEN),
        "text/csv",
        body,
    );
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
    let error: Value = r.json().expect("json");
    assert!(
        error["error"]
            .as_str()
            .expect("error")
            .contains("no database \"777\""),
        "{error}"
    );
}

#[test]
fn an_enterprise_number_searches_all_of_its_accounts() {
    let demo = Demo::new(0, |c| {
        c.extend(
            "accounts[demo]",
            &format!("[requests.enterprises]\nE100 = [\"{SAMPLE_ACCOUNT}\", \"{OTHER_ACCOUNT}\"]"),
        );
    });
    assert!(lists(&demo).to_lowercase().contains("test@test.com"));
    let log = forget(
        &demo,
        json!([
            {"accountid": "E100", "type": "FORGET", "contacts": [{"email": "test@test.com"}]},
            {"accountid": "E999", "type": "FORGET", "contacts": [{"email": "genesys@genesys.com"}]}
        ]),
    );
    assert_eq!(
        responses(&log),
        ["SUCCESS", "SUCCESS: not found"],
        "an unknown number is an account id like any other"
    );
    // Both of the enterprise's accounts, in the SQLite store and the CSV lists.
    assert_eq!(rows(&demo, "test@test.com", SAMPLE_ACCOUNT), 0);
    assert_eq!(rows(&demo, "test@test.com", OTHER_ACCOUNT), 0);
    assert!(!lists(&demo).to_lowercase().contains("test@test.com"));
    assert_eq!(rows(&demo, "genesys@genesys.com", SAMPLE_ACCOUNT), 1);
}
