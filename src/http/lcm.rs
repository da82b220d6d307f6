//! `POST /lcm`: the agent privacy requests of the seed's contact centre, in its message envelope
//! (`channel`, `topic`, `subtopic`, `message`). `GetDataPrivacyStatusRequest` ("Access to PI Data") becomes an
//! export, `CreatePseudonymizationRequest` ("Pseudonymization") a pseudonymisation; an access request with
//! `IsPseudonymize: true` becomes both, the export first. Every field the seed marks "Mandatory: Yes" must be
//! there ([`MANDATORY`]); empty strings mean "not given" only where the seed's own samples send them. Phone
//! numbers arrive without `+` and are read with the account's default country code; `AccountNumber` scopes the
//! search as a file's `accountid` does. The customer's name, the agent's comments and ids are not personal data
//! gdprd searches by: they are not kept (the call id becomes the request case).

use super::jobs::NewJob;
use super::{blocking, ApiError, Ctx, Line};
use crate::requests::{DeviceKind, Kind};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use tracing::info;

/// A parsed agent request: what to run, on which devices.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct AgentRequest {
    /// The kinds of request file to claim, in order.
    pub kinds: Vec<Kind>,
    /// The answer's subtopic.
    pub reply: &'static str,
    /// The call id, echoed as the request case.
    pub call_id: Option<String>,
    /// The agent, for the log.
    pub agent: Option<String>,
    /// (field name, value as sent, device kind, normalised value).
    pub devices: Vec<(String, String, DeviceKind, String)>,
    /// `AccountNumber`: the account whose records are searched, as a file's `accountid`.
    pub account_number: String,
}

/// Why an agent request envelope is refused; its `Display` is the `error` of the answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum LcmError {
    /// The body does not parse as JSON.
    #[error("the body is not JSON: {error} (line {line} column {column})", error = .0, line = .0.line(), column = .0.column())]
    NotJson(serde_json::Error),
    /// The body is JSON, but not an object.
    #[error("the body must be a JSON object with channel, topic, subtopic and message")]
    NotAnObject,
    /// The channel is not `LCM`.
    #[error("channel must be \"LCM\"")]
    Channel,
    /// The topic is not `WebService`.
    #[error("topic must be \"WebService\"")]
    Topic,
    /// There is no `message` (or `data`) object.
    #[error("message must be an object")]
    Message,
    /// `source` is there but not a string.
    #[error("source must be a string")]
    Source,
    /// A text field of the message is not a string.
    #[error("message.{0} must be a string (\"\" when not given)")]
    NotText(&'static str),
    /// `IsPseudonymize` is neither a boolean nor `"true"`/`"false"`.
    #[error("message.IsPseudonymize must be true or false")]
    IsPseudonymize,
    /// The `RequestType` does not go with the subtopic.
    #[error("a {subtopic} has RequestType {expected:?}, not {found:?}")]
    RequestType {
        /// The subtopic.
        subtopic: &'static str,
        /// The request type it goes with.
        expected: &'static str,
        /// The request type sent.
        found: String,
    },
    /// A pseudonymisation request that says not to pseudonymise.
    #[error("a CreatePseudonymizationRequest with IsPseudonymize false asks for nothing: send a GetDataPrivacyStatusRequest for the data")]
    NothingAsked,
    /// The subtopic is not one gdprd answers.
    #[error(
        "subtopic must be GetDataPrivacyStatusRequest or CreatePseudonymizationRequest, not {0:?}"
    )]
    Subtopic(String),
    /// A field the seed marks mandatory is not in the message.
    #[error("message.{0} is missing: the seed marks every field of the message mandatory (send \"\" for OtherPhoneNumber, EmailID, OtherEmailID and AgentComments when there is nothing to give)")]
    Missing(&'static str),
    /// A mandatory field that must hold a value is empty.
    #[error("message.{0} is empty: it is mandatory and must be given")]
    Empty(&'static str),
}

/// A field of `message`, matched without regard to case (the seed writes both `CallId` and `callid`).
fn field<'a>(message: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    message
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The text fields of `message` that docs/openapi.json names: each must be a string when present.
const TEXT_FIELDS: [&str; 11] = [
    "CustomerName",
    "PhoneNumber",
    "OtherPhoneNumber",
    "EmailID",
    "OtherEmailID",
    "CustomerID",
    "AgentComments",
    "AccountNumber",
    "CallId",
    "AgentID",
    "RequestType",
];

/// The text fields the seed marks "Mandatory: Yes" (with `IsPseudonymize`, a boolean), each with whether it may
/// be `""` ("not given"): only where the seed's own samples send an empty string. `CustomerID` is in the samples
/// but not in the seed's table of parameters: it stays optional.
pub(super) const MANDATORY: [(&str, bool); 10] = [
    ("CustomerName", false),
    ("PhoneNumber", false),
    ("OtherPhoneNumber", true),
    ("EmailID", true),
    ("OtherEmailID", true),
    ("AgentComments", true),
    ("AccountNumber", false),
    ("CallId", false),
    ("AgentID", false),
    ("RequestType", false),
];

/// A text field; absent and `""` are "not given". Anything but a string (a number, `null`) is refused, as
/// docs/openapi.json says: a phone number sent as a JSON number has lost its leading zeros.
fn text(message: &Map<String, Value>, name: &'static str) -> Result<Option<String>, LcmError> {
    match field(message, name) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(LcmError::NotText(name)),
    }
}

/// A mandatory text field that must hold a value.
fn given(message: &Map<String, Value>, name: &'static str) -> Result<String, LcmError> {
    text(message, name)?.ok_or(LcmError::Empty(name))
}

/// Reads an envelope. `country_code` is the account's default for phones without `+`.
pub(super) fn parse(body: &[u8], country_code: &str) -> Result<AgentRequest, LcmError> {
    let value: Value = serde_json::from_slice(body).map_err(LcmError::NotJson)?;
    let envelope = value.as_object().ok_or(LcmError::NotAnObject)?;
    let get = |k: &str| envelope.get(k).and_then(Value::as_str).unwrap_or("");
    if !get("channel").eq_ignore_ascii_case("LCM") {
        return Err(LcmError::Channel);
    }
    if !get("topic").eq_ignore_ascii_case("WebService") {
        return Err(LcmError::Topic);
    }
    let message = envelope
        .get("message")
        .or_else(|| envelope.get("data"))
        .and_then(Value::as_object)
        .ok_or(LcmError::Message)?;
    if envelope.get("source").is_some_and(|s| !s.is_string()) {
        return Err(LcmError::Source);
    }
    for name in TEXT_FIELDS {
        text(message, name)?;
    }
    for (name, may_be_empty) in MANDATORY {
        if field(message, name).is_none() {
            return Err(LcmError::Missing(name));
        }
        if !may_be_empty {
            given(message, name)?;
        }
    }
    let request_type = given(message, "RequestType")?;
    let pseudonymise = match field(message, "IsPseudonymize") {
        None => return Err(LcmError::Missing("IsPseudonymize")),
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(_) => return Err(LcmError::IsPseudonymize),
    };
    let (kinds, reply) = match get("subtopic") {
        "GetDataPrivacyStatusRequest" => {
            if !request_type.eq_ignore_ascii_case("Access to PI Data") {
                return Err(LcmError::RequestType {
                    subtopic: "GetDataPrivacyStatusRequest",
                    expected: "Access to PI Data",
                    found: request_type,
                });
            }
            let kinds = if pseudonymise {
                vec![Kind::Export, Kind::Pseudonymise]
            } else {
                vec![Kind::Export]
            };
            (kinds, "SetDataPrivacyStatusResponse")
        }
        "CreatePseudonymizationRequest" => {
            if !request_type.eq_ignore_ascii_case("Pseudonymization") {
                return Err(LcmError::RequestType {
                    subtopic: "CreatePseudonymizationRequest",
                    expected: "Pseudonymization",
                    found: request_type,
                });
            }
            if !pseudonymise {
                return Err(LcmError::NothingAsked);
            }
            (vec![Kind::Pseudonymise], "SetPseudonymizationResponse")
        }
        other => return Err(LcmError::Subtopic(other.to_owned())),
    };
    let mut devices = Vec::new();
    for (name, kind) in [
        ("PhoneNumber", DeviceKind::Phone),
        ("OtherPhoneNumber", DeviceKind::Phone),
        ("EmailID", DeviceKind::Email),
        ("OtherEmailID", DeviceKind::Email),
    ] {
        if let Some(value) = text(message, name)? {
            let device = super::body::normalise(kind, &value, country_code);
            devices.push((name.to_owned(), value, kind, device));
        }
    }
    Ok(AgentRequest {
        kinds,
        reply,
        call_id: text(message, "CallId")?,
        agent: text(message, "AgentID")?,
        devices,
        account_number: given(message, "AccountNumber")?,
    })
}

fn envelope(subtopic: &str, message: Value) -> Value {
    json!({ "channel": "LCM", "topic": "WebService", "subtopic": subtopic, "message": message })
}

/// `POST /lcm`.
pub(super) async fn submit(
    (State(state), Extension(caller), _headers): Ctx,
    body: Bytes,
) -> Result<Response, ApiError> {
    let account = caller.account;
    let Some(http) = account.http.clone().filter(|h| h.lcm) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "agent requests are not enabled for this account ([accounts.http] lcm = false)",
        ));
    };
    let request = match parse(&body, &http.default_country_code) {
        Ok(r) => r,
        Err(e) => {
            return Ok((
                StatusCode::BAD_REQUEST,
                Json(envelope("Error", json!({ "error": e.to_string() }))),
            )
                .into_response())
        }
    };
    let lines: Vec<Line> = request
        .devices
        .iter()
        .enumerate()
        .map(|(i, (name, value, kind, device))| Line {
            line: i + 1,
            name: name.clone(),
            value: value.clone(),
            device: Ok((*kind, device.clone())),
        })
        .collect();
    let kinds = request.kinds.clone();
    let call_id = request.call_id.clone();
    let account_number = request.account_number.clone();
    let ids = blocking(move || {
        kinds
            .iter()
            .map(|kind| {
                let job = NewJob {
                    kind: *kind,
                    origin: "lcm",
                    requestcase: call_id.as_deref(),
                    accountid: Some(&account_number),
                    database: None,
                };
                super::jobs::create(&state, &account, &job, &lines)
            })
            .collect::<Result<Vec<i64>, ApiError>>()
    })
    .await?;
    if let Some(agent) = &request.agent {
        info!(agent = %agent, requests = ?ids, "agent privacy request accepted");
    }
    let mut message = json!({ "response": ids.first().map(ToString::to_string) });
    if let Some(second) = ids.get(1) {
        message["pseudonymization"] = Value::from(second.to_string());
    }
    Ok(Json(envelope(request.reply, message)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCESS: &str = r#"{
        "channel": "LCM", "topic": "WebService", "subtopic": "GetDataPrivacyStatusRequest",
        "message": {
            "CustomerName": "John Smith", "PhoneNumber": "14152347172", "OtherPhoneNumber": "",
            "EmailID": "", "OtherEmailID": "", "CustomerID": "", "AgentComments": "",
            "AccountNumber": "934|1|475|0|0|44|59", "callid": "934|1|475|0|0|44|59",
            "AgentID": "rajat", "RequestType": "Access to PI Data", "IsPseudonymize": false
        }
    }"#;

    #[test]
    fn the_seeds_access_request() {
        let r = parse(ACCESS.as_bytes(), "1").expect("parses");
        assert_eq!(r.kinds, vec![Kind::Export]);
        assert_eq!(r.reply, "SetDataPrivacyStatusResponse");
        assert_eq!(r.call_id.as_deref(), Some("934|1|475|0|0|44|59"));
        assert_eq!(r.account_number, "934|1|475|0|0|44|59");
        assert_eq!(
            r.devices,
            vec![(
                "PhoneNumber".into(),
                "14152347172".into(),
                DeviceKind::Phone,
                "+14152347172".into()
            )]
        );
    }

    #[test]
    fn the_seeds_pseudonymisation_request() {
        let body = ACCESS
            .replace(
                "GetDataPrivacyStatusRequest",
                "CreatePseudonymizationRequest",
            )
            .replace("Access to PI Data", "Pseudonymization")
            .replace("false", "true")
            .replace("\"EmailID\": \"\"", "\"EmailID\": \"john@zyxwv.com\"");
        let r = parse(body.as_bytes(), "1").expect("parses");
        assert_eq!(r.kinds, vec![Kind::Pseudonymise]);
        assert_eq!(r.reply, "SetPseudonymizationResponse");
        assert_eq!(r.devices.len(), 2);
        let both = parse(ACCESS.replace("false", "true").as_bytes(), "1").expect("parses");
        assert_eq!(both.kinds, vec![Kind::Export, Kind::Pseudonymise]);
    }

    #[test]
    fn refusals_say_why() {
        let cases = [
            ("[]".to_owned(), "JSON object"),
            ("{".to_owned(), "not JSON"),
            (ACCESS.replace("\"LCM\"", "\"SMS\""), "channel"),
            (
                ACCESS.replace("GetDataPrivacyStatusRequest", "Hello"),
                "subtopic",
            ),
            (
                ACCESS.replace("Access to PI Data", "Pseudonymization"),
                "RequestType",
            ),
            (
                ACCESS.replace("\"14152347172\"", "\"\""),
                "message.PhoneNumber is empty: it is mandatory",
            ),
            (
                ACCESS.replace("\"AccountNumber\": \"934|1|475|0|0|44|59\",", ""),
                "message.AccountNumber is missing",
            ),
            (
                ACCESS.replace(
                    "\"AccountNumber\": \"934|1|475|0|0|44|59\"",
                    "\"AccountNumber\": \" \"",
                ),
                "message.AccountNumber is empty",
            ),
            (
                ACCESS.replace("\"AgentComments\": \"\",", ""),
                "message.AgentComments is missing",
            ),
            (
                ACCESS.replace(", \"IsPseudonymize\": false", ""),
                "message.IsPseudonymize is missing",
            ),
            (
                ACCESS.replace("\"callid\": \"934|1|475|0|0|44|59\",", ""),
                "message.CallId is missing",
            ),
            (
                ACCESS.replace(
                    "\"RequestType\": \"Access to PI Data\"",
                    "\"RequestType\": \"\"",
                ),
                "message.RequestType is empty",
            ),
            (ACCESS.replace("\"14152347172\"", "[1]"), "must be a string"),
            (ACCESS.replace("false", "\"maybe\""), "IsPseudonymize"),
            (ACCESS.replace("false", "null"), "IsPseudonymize"),
            (
                ACCESS.replace("\"OtherEmailID\": \"\"", "\"OtherEmailID\": 0"),
                "message.OtherEmailID must be a string",
            ),
            (
                ACCESS.replace("\"AgentID\": \"rajat\"", "\"AgentID\": null"),
                "message.AgentID must be a string",
            ),
            (
                ACCESS.replace("\"AgentComments\": \"\"", "\"AgentComments\": 7"),
                "message.AgentComments must be a string",
            ),
        ];
        for (body, want) in cases {
            assert_ne!(body, ACCESS, "the case must change the request: {want}");
            let e = parse(body.as_bytes(), "1").expect_err("refused");
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
    }
}
