//! Reading a request file: bytes to a validated [`RequestFile`], or the [`FileError`] that refuses it whole.
//!
//! Parsing is strict because a forget is irreversible: duplicate keys, unknown keys, deep nesting, a wrong or
//! mixed `type` all refuse the whole file. Bad contacts do not: each gets its own error response.

use super::device::{Device, DeviceError};
use super::name::Kind;
use super::rules::RuleError;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;

/// Caps on what one file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Most contacts accepted across all requests of a file.
    pub max_contacts: usize,
    /// Deepest nesting of arrays and objects accepted.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 10 * 1024 * 1024,
            max_contacts: 10_000,
            max_depth: 16,
        }
    }
}

/// Why a whole file is refused. The text is the top-level `"error"` of its execution log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// Larger than [`Limits::max_file_bytes`].
    #[error("ERROR: file is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// Not valid UTF-8.
    #[error("ERROR: file is not valid UTF-8 (invalid byte at line {line} column {column})")]
    NotUtf8 {
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 1-based column (in bytes) of the first invalid byte.
        column: usize,
    },
    /// Not valid JSON, or JSON with duplicate keys.
    #[error("ERROR: invalid JSON at line {line} column {column}: {message}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser says.
        message: String,
    },
    /// Arrays and objects nested deeper than [`Limits::max_depth`].
    #[error("ERROR: JSON nested deeper than {limit} levels at line {line} column {column}")]
    TooDeep {
        /// The limit in force.
        limit: usize,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// Valid JSON that breaks the request format; the text says where and how.
    #[error("ERROR: {0}")]
    Format(String),
    /// More contacts than [`Limits::max_contacts`].
    #[error("ERROR: file holds {count} contacts, more than the limit of {limit}")]
    TooManyContacts {
        /// Contacts in the file.
        count: usize,
        /// The limit in force.
        limit: usize,
    },
}

/// A validated request file: every request has the same type, matching the file name.
#[derive(Debug, Clone)]
pub struct RequestFile {
    /// The type shared by all requests.
    pub kind: Kind,
    /// The `requests` array exactly as submitted (key order kept), echoed in the execution log.
    pub raw_requests: Vec<Value>,
    /// The requests, in file order.
    pub requests: Vec<Request>,
}

/// One request of a file.
#[derive(Debug, Clone)]
pub struct Request {
    /// The `requestcase`, as text, if given.
    pub requestcase: Option<String>,
    /// SMS shortcodes to search; empty when absent.
    pub shortcodes: Vec<String>,
    /// The account whose records are searched, where a store has an account column.
    pub accountid: Option<String>,
    /// The contacts, each valid or with the error it answers.
    pub contacts: Vec<Result<Device, DeviceError>>,
    /// Why the account's rules refuse the request, once [`super::RequestRules::apply`] has looked: then every
    /// contact answers this error and nothing is searched for it.
    pub refused: Option<RuleError>,
    /// When `accountid` is an enterprise number of the account's `[accounts.requests] enterprises`, the
    /// enterprise's accounts (set by [`super::RequestRules::apply`]); their records are searched too.
    pub enterprise: Vec<String>,
}

impl RequestFile {
    /// Number of contacts across all requests.
    pub fn contact_count(&self) -> usize {
        self.requests.iter().map(|r| r.contacts.len()).sum()
    }
}

/// Reads and validates a file's bytes for a file whose name says `kind`.
///
/// # Errors
/// The [`FileError`] that refuses the whole file; nothing of it may be executed.
pub fn parse(bytes: &[u8], kind: Kind, limits: &Limits) -> Result<RequestFile, FileError> {
    let value = parse_json(bytes, limits)?;
    let top = value
        .as_object()
        .ok_or_else(|| format_err("the file must be a JSON object with a \"requests\" array"))?;
    if let Some(key) = top.keys().find(|k| *k != "requests") {
        return Err(format_err(format!(
            "unknown top-level key {key:?}: the file must hold only a \"requests\" array"
        )));
    }
    let raw_requests = match top.get("requests") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        Some(Value::Array(_)) => {
            return Err(format_err(
                "\"requests\" is empty: at least one request is required",
            ))
        }
        Some(_) => {
            return Err(format_err(
                "\"requests\" must be an array of request objects",
            ))
        }
        None => return Err(format_err("missing \"requests\" array")),
    };
    let mut requests = Vec::with_capacity(raw_requests.len());
    let mut count = 0usize;
    for (i, raw) in raw_requests.iter().enumerate() {
        let request = parse_request(i + 1, raw, kind)?;
        count += request.contacts.len();
        requests.push(request);
    }
    if count > limits.max_contacts {
        return Err(FileError::TooManyContacts {
            count,
            limit: limits.max_contacts,
        });
    }
    Ok(RequestFile {
        kind,
        raw_requests,
        requests,
    })
}

/// Parses the request part of a JSON value (already read): used for both files and other front doors.
fn parse_request(n: usize, raw: &Value, kind: Kind) -> Result<Request, FileError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| format_err(format!("request {n} must be an object")))?;
    const KEYS: [&str; 5] = ["requestcase", "shortcodes", "accountid", "type", "contacts"];
    if let Some(key) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format_err(format!(
            "request {n}: unknown key {key:?} (allowed: requestcase, shortcodes, accountid, type, contacts)"
        )));
    }
    let found = match obj.get("type") {
        None => return Err(format_err(format!("request {n}: \"type\" is missing"))),
        Some(Value::String(s)) => Kind::from_type(s).ok_or_else(|| {
            format_err(format!(
                "request {n}: \"type\" must be \"FORGET\", \"EXPORT\" or \"PSEUDONYMISE\", not {s:?}"
            ))
        })?,
        Some(_) => {
            return Err(format_err(format!(
                "request {n}: \"type\" must be the string \"FORGET\", \"EXPORT\" or \"PSEUDONYMISE\""
            )))
        }
    };
    if found != kind {
        return Err(format_err(format!(
            "request {n}: \"type\" is {found} but the file name says {kind}: all requests of a {}-… file must be {kind}",
            kind.prefix()
        )));
    }
    let requestcase = scalar_text(obj.get("requestcase")).map_err(|()| {
        format_err(format!(
            "request {n}: \"requestcase\" must be a string or a number"
        ))
    })?;
    let accountid = scalar_text(obj.get("accountid")).map_err(|()| {
        format_err(format!(
            "request {n}: \"accountid\" must be a string or a number"
        ))
    })?;
    if let (Some(Value::Number(_)), Some(id)) = (obj.get("accountid"), &accountid) {
        whole_digits(n, "accountid", id)?;
    }
    let shortcodes = match obj.get("shortcodes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(codes)) => codes
            .iter()
            .map(|c| match scalar_text(Some(c)) {
                Ok(Some(s)) if c.is_number() => whole_digits(n, "shortcodes", &s).map(|()| s),
                Ok(Some(s)) if !s.is_empty() => Ok(s),
                _ => Err(format_err(format!(
                    "request {n}: each shortcode must be a non-empty string or number"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(format_err(format!(
                "request {n}: \"shortcodes\" must be an array"
            )))
        }
    };
    let contacts = match obj.get("contacts") {
        Some(Value::Array(c)) if !c.is_empty() => c.iter().map(Device::from_contact).collect(),
        Some(Value::Array(_)) => {
            return Err(format_err(format!(
                "request {n}: \"contacts\" is empty: at least one contact is required"
            )))
        }
        Some(_) => {
            return Err(format_err(format!(
                "request {n}: \"contacts\" must be an array"
            )))
        }
        None => return Err(format_err(format!("request {n}: \"contacts\" is missing"))),
    };
    Ok(Request {
        requestcase,
        shortcodes,
        accountid,
        contacts,
        refused: None,
        enterprise: Vec::new(),
    })
}

/// An account id or shortcode given as a JSON number is compared as the digits written: a number written any
/// other way (`1E2`, `100.0`, `-5`) could stand for several ids, so the file is refused rather than guessed at.
fn whole_digits(n: usize, key: &str, text: &str) -> Result<(), FileError> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    Err(format_err(format!(
        "request {n}: {key:?} {text} is a number not written as plain digits; write it as the digits of the id, or as a string (\"{text}\" is then compared as written)"
    )))
}

/// A string as it is, or a number as the text it was written with (the parser keeps every digit).
fn scalar_text(v: Option<&Value>) -> Result<Option<String>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(()),
    }
}

fn format_err(msg: impl Into<String>) -> FileError {
    FileError::Format(msg.into())
}

/// Bytes to a JSON value: size, UTF-8, nesting depth and duplicate keys checked, with line and column on errors.
///
/// # Errors
/// [`FileError::TooLarge`], [`FileError::NotUtf8`], [`FileError::TooDeep`] or [`FileError::Json`].
pub fn parse_json(bytes: &[u8], limits: &Limits) -> Result<Value, FileError> {
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(FileError::TooLarge {
            limit: limits.max_file_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = position(&bytes[..e.valid_up_to()]);
        FileError::NotUtf8 { line, column }
    })?;
    // A byte-order mark from a Windows editor is harmless: skip it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_depth(text, limits.max_depth)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictValue::deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v.0))
        .map_err(|e| FileError::Json {
            line: e.line(),
            // serde_json says column 0 for the start of a line (an empty file ends at "line 1 column 0");
            // columns are 1-based everywhere else, so that is column 1.
            column: e.column().max(1),
            message: strip_position(&e.to_string()),
        })?;
    Ok(value)
}

/// serde_json appends " at line L column C" to its messages; we say it in our own words.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// 1-based line and column just after `prefix`.
fn position(prefix: &[u8]) -> (usize, usize) {
    let line = 1 + prefix.iter().filter(|b| **b == b'\n').count();
    let column = 1 + prefix.iter().rev().take_while(|b| **b != b'\n').count();
    (line, column)
}

/// Refuses nesting deeper than `max` before the parser recurses into it.
fn check_depth(text: &str, max: usize) -> Result<(), FileError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    let (line, column) = position(&text.as_bytes()[..i]);
                    return Err(FileError::TooDeep {
                        limit: max,
                        line,
                        column,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The key under which serde_json passes a number's text to a visitor (its `arbitrary_precision` feature).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// A JSON value whose objects may not repeat a key.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // serde_json hands over a number as a map of one private key holding its text, so that no digit is
            // lost (`arbitrary_precision`); the number keeps that text, and the execution log echoes it.
            if out.is_empty() && key == NUMBER_TOKEN {
                let text: String = map.next_value()?;
                return text
                    .parse::<serde_json::Number>()
                    .map(Value::Number)
                    .map_err(de::Error::custom);
            }
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../fixtures/requests/seed-forget.json");

    fn limits() -> Limits {
        Limits::default()
    }

    fn refused(text: &str, kind: Kind) -> FileError {
        parse(text.as_bytes(), kind, &limits()).expect_err("should be refused")
    }

    #[test]
    fn seed_sample_parses_with_one_bad_contact() {
        let file = parse(SEED.as_bytes(), Kind::Forget, &limits()).expect("seed parses");
        assert_eq!(file.kind, Kind::Forget);
        assert_eq!(file.requests.len(), 2);
        assert_eq!(file.contact_count(), 12);
        let second = &file.requests[1];
        assert_eq!(second.requestcase.as_deref(), Some("6457657657"));
        assert_eq!(second.accountid.as_deref(), Some("30003748347"));
        assert_eq!(second.shortcodes, ["11111", "22222"]);
        let bad: Vec<_> = file
            .requests
            .iter()
            .flat_map(|r| r.contacts.iter())
            .filter_map(|c| c.as_ref().err())
            .collect();
        assert_eq!(bad.len(), 1);
        assert!(bad[0]
            .to_string()
            .starts_with("ERROR: incorrect device format"));
    }

    #[test]
    fn key_order_is_kept_verbatim() {
        let text =
            r#"{"requests":[{"type":"EXPORT","contacts":[{"email":"a@b.com"}],"accountid":"1"}]}"#;
        let file = parse(text.as_bytes(), Kind::Export, &limits()).expect("parses");
        let back = serde_json::to_string(&file.raw_requests).expect("serialises");
        assert_eq!(
            back,
            r#"[{"type":"EXPORT","contacts":[{"email":"a@b.com"}],"accountid":"1"}]"#
        );
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let err = refused(
            "{\"requests\": [\n  {\"type\": \"FORGET\",, }\n]}",
            Kind::Forget,
        );
        match err {
            FileError::Json { line, column, .. } => assert_eq!((line, column), (2, 21)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            refused("", Kind::Forget),
            FileError::Json { line: 1, .. }
        ));
    }

    #[test]
    fn an_empty_file_is_reported_at_column_1_not_0() {
        assert_eq!(
            refused("", Kind::Forget).to_string(),
            "ERROR: invalid JSON at line 1 column 1: EOF while parsing a value"
        );
        let err = refused("{\"requests\": [\n", Kind::Forget);
        assert!(
            matches!(
                err,
                FileError::Json {
                    line: 2,
                    column: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_file_is_refused() {
        let err = refused(&SEED[..SEED.len() / 2], Kind::Forget);
        assert!(matches!(err, FileError::Json { .. }), "{err:?}");
        assert!(err.to_string().contains("EOF"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = refused(
            r#"{"requests":[{"type":"FORGET","contacts":[{"phone":"+1 781 555 1212","phone":"+1 617 555 1212"}]}]}"#,
            Kind::Forget,
        );
        assert!(err.to_string().contains("duplicate key \"phone\""), "{err}");
        assert!(matches!(err, FileError::Json { line: 1, .. }));
    }

    #[test]
    fn not_utf8_is_refused() {
        let mut bytes = b"{\"requests\": [\n\"caf".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        let err = parse(&bytes, Kind::Forget, &limits()).expect_err("refused");
        assert_eq!(err, FileError::NotUtf8 { line: 2, column: 5 });
    }

    #[test]
    fn byte_order_mark_is_accepted() {
        let text = format!("\u{feff}{SEED}");
        assert!(parse(text.as_bytes(), Kind::Forget, &limits()).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = refused(&text, Kind::Forget);
        assert!(
            matches!(
                err,
                FileError::TooDeep {
                    limit: 16,
                    line: 1,
                    column: 17
                }
            ),
            "{err:?}"
        );
        // Brackets inside strings do not count.
        let text = format!(
            r#"{{"requests":[{{"type":"FORGET","requestcase":"{}","contacts":[{{"email":"a@b.com"}}]}}]}}"#,
            "[{".repeat(50)
        );
        assert!(parse(text.as_bytes(), Kind::Forget, &limits()).is_ok());
    }

    #[test]
    fn huge_file_is_refused() {
        let small = Limits {
            max_file_bytes: 100,
            ..limits()
        };
        let err = parse(SEED.as_bytes(), Kind::Forget, &small).expect_err("refused");
        assert_eq!(err, FileError::TooLarge { limit: 100 });
    }

    #[test]
    fn too_many_contacts_are_refused() {
        let few = Limits {
            max_contacts: 11,
            ..limits()
        };
        let err = parse(SEED.as_bytes(), Kind::Forget, &few).expect_err("refused");
        assert_eq!(
            err,
            FileError::TooManyContacts {
                count: 12,
                limit: 11
            }
        );
    }

    #[test]
    fn format_errors() {
        let cases: &[(&str, Kind, &str)] = &[
            ("[]", Kind::Forget, "must be a JSON object"),
            ("{}", Kind::Forget, "missing \"requests\""),
            (r#"{"requests":[]}"#, Kind::Forget, "\"requests\" is empty"),
            (r#"{"requests":{}}"#, Kind::Forget, "must be an array"),
            (
                r#"{"requests":[1]}"#,
                Kind::Forget,
                "request 1 must be an object",
            ),
            (
                r#"{"requests":[{"contacts":[{"email":"a@b.com"}]}]}"#,
                Kind::Forget,
                "\"type\" is missing",
            ),
            (
                r#"{"requests":[{"type":"DELETE","contacts":[{"email":"a@b.com"}]}]}"#,
                Kind::Forget,
                "not \"DELETE\"",
            ),
            (
                r#"{"requests":[{"type":"forget","contacts":[{"email":"a@b.com"}]}]}"#,
                Kind::Forget,
                "not \"forget\"",
            ),
            (
                r#"{"requests":[{"type":"EXPORT","contacts":[{"email":"a@b.com"}]}]}"#,
                Kind::Forget,
                "the file name says FORGET",
            ),
            (
                r#"{"requests":[{"type":"FORGET","contacts":[{"email":"a@b.com"}]},{"type":"EXPORT","contacts":[{"email":"a@b.com"}]}]}"#,
                Kind::Forget,
                "request 2: \"type\" is EXPORT",
            ),
            (
                r#"{"requests":[{"type":"FORGET","contacts":[]}]}"#,
                Kind::Forget,
                "\"contacts\" is empty",
            ),
            (
                r#"{"requests":[{"type":"FORGET"}]}"#,
                Kind::Forget,
                "\"contacts\" is missing",
            ),
            (
                r#"{"requests":[{"type":"FORGET","contact":[{"email":"a@b.com"}]}]}"#,
                Kind::Forget,
                "unknown key \"contact\"",
            ),
            (
                r#"{"requests":[{"type":"FORGET","shortcodes":"11111","contacts":[{"email":"a@b.com"}]}]}"#,
                Kind::Forget,
                "\"shortcodes\" must be an array",
            ),
            (
                r#"{"requests":[{"type":"FORGET","accountid":{},"contacts":[{"email":"a@b.com"}]}]}"#,
                Kind::Forget,
                "\"accountid\" must be",
            ),
            (
                r#"{"requests":[{"type":"FORGET","contacts":[{"email":"a@b.com"}]}],"result":[]}"#,
                Kind::Forget,
                "unknown top-level key \"result\"",
            ),
        ];
        for (text, kind, want) in cases {
            let err = refused(text, *kind);
            assert!(matches!(err, FileError::Format(_)), "{text}: {err:?}");
            assert!(err.to_string().starts_with("ERROR: "), "{err}");
            assert!(err.to_string().contains(want), "{text}: {err} lacks {want}");
        }
    }

    #[test]
    fn unknown_device_key_is_a_contact_error_not_a_file_error() {
        let text = r#"{"requests":[{"type":"EXPORT","contacts":[{"fax":"+1 781 555 1212"},{"email":"a@b.com"}]}]}"#;
        let file = parse(text.as_bytes(), Kind::Export, &limits()).expect("parses");
        assert_eq!(file.requests[0].contacts[0], Err(DeviceError::Shape));
        assert!(file.requests[0].contacts[1].is_ok());
    }

    #[test]
    fn numeric_requestcase_and_absent_optionals() {
        let text =
            r#"{"requests":[{"type":"EXPORT","requestcase":42,"contacts":[{"email":"a@b.com"}]}]}"#;
        let file = parse(text.as_bytes(), Kind::Export, &limits()).expect("parses");
        assert_eq!(file.requests[0].requestcase.as_deref(), Some("42"));
        assert!(file.requests[0].shortcodes.is_empty());
        assert_eq!(file.requests[0].accountid, None);
    }

    #[test]
    fn numbers_keep_every_digit_as_written() {
        let text = r#"{"requests":[{"type":"FORGET","requestcase":97456596893834123456789,"accountid":30003748347,"shortcodes":[11111,"22222"],"contacts":[{"email":"a@b.com"}]}]}"#;
        let file = parse(text.as_bytes(), Kind::Forget, &limits()).expect("parses");
        let r = &file.requests[0];
        assert_eq!(r.requestcase.as_deref(), Some("97456596893834123456789"));
        assert_eq!(r.accountid.as_deref(), Some("30003748347"));
        assert_eq!(r.shortcodes, ["11111", "22222"]);
        let echoed = serde_json::to_string(&file.raw_requests).expect("json");
        assert!(
            echoed.contains(r#""requestcase":97456596893834123456789,"accountid":30003748347"#),
            "{echoed}"
        );
        // A requestcase is not interpreted: every digit is echoed, trailing zeros too; only an exponent is
        // written the JSON library's way (`e+2`).
        let text = r#"{"requests":[{"type":"FORGET","requestcase":1.50E+2,"contacts":[{"email":"a@b.com"}]}]}"#;
        let file = parse(text.as_bytes(), Kind::Forget, &limits()).expect("parses");
        assert_eq!(file.requests[0].requestcase.as_deref(), Some("1.50e+2"));
        assert!(serde_json::to_string(&file.raw_requests)
            .expect("json")
            .contains("1.50e+2"));
    }

    #[test]
    fn an_accountid_or_shortcode_number_not_written_as_digits_refuses_the_file() {
        for (field, value) in [
            ("accountid", "1E2"),
            ("accountid", "100.0"),
            ("accountid", "-5"),
            ("shortcodes", "[1e5]"),
        ] {
            let text = format!(
                r#"{{"requests":[{{"type":"FORGET","{field}":{value},"contacts":[{{"email":"a@b.com"}}]}}]}}"#
            );
            let err = refused(&text, Kind::Forget);
            assert!(
                err.to_string()
                    .contains("is a number not written as plain digits"),
                "{text}: {err}"
            );
        }
        let text = r#"{"requests":[{"type":"FORGET","accountid":"1E2","contacts":[{"email":"a@b.com"}]}]}"#;
        let file = parse(text.as_bytes(), Kind::Forget, &limits())
            .expect("a string is compared as written");
        assert_eq!(file.requests[0].accountid.as_deref(), Some("1E2"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse(&bytes, Kind::Forget, &limits());
        }
    }
}
