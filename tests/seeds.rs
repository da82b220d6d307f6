//! Issue 19, the seeds point by point, each driven the way the seed's user would: a request file under an
//! account's `[accounts.requests]` rules (001), checked in the demo store afterwards.

use crate::harness::{responses, today, Demo};
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
