//! Execution logs and rejection notices: the JSON a customer reads in `GDPR_Result`.

use serde_json::{json, Map, Value};

/// `<stem>-execution-log.json`.
pub fn log_name(stem: &str) -> String {
    format!("{stem}-execution-log.json")
}

/// `<stem>-execution-log-N.json`: the follow-up log of a file's retry number `n` (2, 3, …; see `gdprd retry`).
pub fn numbered_log_name(stem: &str, n: u32) -> String {
    format!("{stem}-execution-log-{n}.json")
}

/// `<stem>-rejected.json`: the name of a submission's first rejection notice.
pub fn rejected_name(stem: &str) -> String {
    format!("{stem}-rejected.json")
}

/// The names a rejection notice of `stem` takes, in order: `<stem>-rejected.json`, then `<stem>-rejected-2.json`,
/// `<stem>-rejected-3.json` and so on, so a later notice never replaces an earlier one.
pub fn rejected_names(stem: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(rejected_name(stem))
        .chain((2..=MAX_NOTICES).map(move |n| format!("{stem}-rejected-{n}.json")))
}

/// The most rejection notices one name can have in `GDPR_Result` at once.
pub const MAX_NOTICES: u32 = 1000;

/// Whether `result` is one of the rejection notices of `stem` (see [`rejected_names`]).
pub fn is_rejection_of(stem: &str, result: &str) -> bool {
    let Some(rest) = result
        .strip_prefix(stem)
        .and_then(|r| r.strip_prefix("-rejected"))
        .and_then(|r| r.strip_suffix(".json"))
    else {
        return false;
    };
    rest.is_empty()
        || rest
            .strip_prefix('-')
            .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 2) && !n.starts_with('0'))
}

/// `<stem>-archive.zip`.
pub fn archive_name(stem: &str) -> String {
    format!("{stem}-archive.zip")
}

/// The execution log of an executed file: the requests verbatim, then the same requests with a `response` on
/// each contact. `response(request, contact)` gives the text for each contact.
pub fn execution_log(raw_requests: &[Value], response: impl Fn(usize, usize) -> String) -> Vec<u8> {
    let result: Vec<Value> = raw_requests
        .iter()
        .enumerate()
        .map(|(r, request)| {
            let mut request = request.clone();
            if let Some(Value::Array(contacts)) = request.get_mut("contacts") {
                for (c, contact) in contacts.iter_mut().enumerate() {
                    let text = Value::String(response(r, c));
                    match contact {
                        Value::Object(fields) => {
                            fields.insert("response".into(), text);
                        }
                        other => {
                            let mut fields = Map::new();
                            fields.insert("contact".into(), other.take());
                            fields.insert("response".into(), text);
                            *other = Value::Object(fields);
                        }
                    }
                }
            }
            request
        })
        .collect();
    pretty(&json!({ "requests": raw_requests, "result": result }))
}

/// The execution log of a file refused whole: its name, the error, and its requests if they could be read.
pub fn refused_log(file: &str, error: &str, raw_requests: Option<&[Value]>) -> Vec<u8> {
    let mut log = Map::new();
    log.insert("file".into(), file.into());
    log.insert("error".into(), error.into());
    if let Some(requests) = raw_requests {
        log.insert("requests".into(), Value::Array(requests.to_vec()));
    }
    pretty(&Value::Object(log))
}

/// A rejection notice: `{"file": …, "error": "ERROR: …"}`.
pub fn rejection_notice(file: &str, error: &str) -> Vec<u8> {
    pretty(&json!({ "file": file, "error": error }))
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}").into_bytes());
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_added_to_a_copy_and_requests_stay_verbatim() {
        let raw: Vec<Value> = serde_json::from_str(
            r#"[{"type":"FORGET","contacts":[{"phone":"+1 781 555 1212"},"junk"],"requestcase":"1"}]"#,
        )
        .expect("json");
        let log: Value =
            serde_json::from_slice(&execution_log(&raw, |_, c| format!("R{c}"))).expect("log json");
        assert_eq!(log["requests"], Value::Array(raw.clone()));
        assert_eq!(log["result"][0]["contacts"][0]["response"], "R0");
        assert_eq!(
            log["result"][0]["contacts"][1],
            json!({"contact": "junk", "response": "R1"})
        );
        let keys: Vec<_> = log["result"][0]
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["type", "contacts", "requestcase"], "key order kept");
        let top: Vec<_> = log.as_object().expect("object").keys().cloned().collect();
        assert_eq!(top, ["requests", "result"]);
    }

    #[test]
    fn notices() {
        let n: Value =
            serde_json::from_slice(&rejection_notice("x.json", "ERROR: no")).expect("json");
        assert_eq!(n, json!({"file": "x.json", "error": "ERROR: no"}));
        let r: Value =
            serde_json::from_slice(&refused_log("x.json", "ERROR: bad", None)).expect("json");
        assert_eq!(r, json!({"file": "x.json", "error": "ERROR: bad"}));
        assert_eq!(rejected_name("notes.txt"), "notes.txt-rejected.json");
        let names: Vec<String> = rejected_names("f").take(3).collect();
        assert_eq!(
            names,
            ["f-rejected.json", "f-rejected-2.json", "f-rejected-3.json"]
        );
        assert!(names.iter().all(|n| is_rejection_of("f", n)));
        for other in [
            "f-rejected-1.json",
            "f-rejected-02.json",
            "f-rejected-x.json",
            "g-rejected.json",
            "f-execution-log.json",
        ] {
            assert!(!is_rejection_of("f", other), "{other}");
        }
    }
}
