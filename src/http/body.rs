//! What the front doors read before anything is claimed: a job's `text/csv` body of `lookup key, value` lines,
//! and phone numbers written without `+`. No I/O here.

use super::config::{HttpAccountConfig, LookupTarget};
use crate::requests::DeviceKind;

/// One line of a job body: the lookup key and value as written, and what became of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the body.
    pub line: usize,
    /// The lookup key as written (`EMAIL`, `MobileNumber`, …).
    pub name: String,
    /// The value as written.
    pub value: String,
    /// The device the key names, or why the line cannot be run (its `Display` is the line's response).
    pub device: Result<(DeviceKind, String), LineError>,
}

/// Why one line of a job body cannot be run; the other lines still run. Its `Display` is the line's response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line cannot be read as CSV fields.
    #[error("ERROR: line {line}: {problem}")]
    Unreadable {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with its quoting.
        problem: Quoting,
    },
    /// The line is not two non-empty fields.
    #[error("ERROR: line {line}: expected `lookup key, value` (two fields, neither empty)")]
    NotKeyAndValue {
        /// The line's number, from 1.
        line: usize,
    },
    /// The lookup key is not one of the account's.
    #[error("ERROR: unknown lookup key {key:?}; this account knows {}", known.join(", "))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The account's keys.
        known: Vec<String>,
    },
}

/// What is wrong with the quoting of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Quoting {
    /// A `"` opens a field that no `"` closes.
    #[error("a quoted field is not closed")]
    NotClosed,
    /// Something other than a comma follows a closing `"`.
    #[error("text after a closing quote")]
    TextAfterQuote,
    /// A `"` inside a field that does not start with one.
    #[error("a quote inside an unquoted field")]
    QuoteInside,
}

/// Why a whole body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not UTF-8.
    #[error("the body is not valid UTF-8 text (invalid byte at offset {0})")]
    NotUtf8(usize),
    /// No line at all.
    #[error("the body holds no `lookup key, value` line")]
    Empty,
    /// More lines than allowed.
    #[error("the body holds more than {0} lines; split it into several jobs")]
    TooManyLines(usize),
}

/// Typographic quotes that copy-paste from documents puts around CSV fields (the seed's own sample has them).
const CURLY_DOUBLE: [char; 6] = [
    '\u{201C}', '\u{201D}', '\u{201E}', '\u{201F}', '\u{2033}', '\u{00AB}',
];

/// Reads a job body into its lines. Blank lines are skipped; quotes (straight or typographic) around a key or
/// value are removed; one trailing empty field (`"a","b",`) is tolerated. A line that is not a key and a value,
/// or whose key this account does not know, gets an error of its own: the other lines still run.
///
/// # Errors
/// [`BodyError`] when the body as a whole cannot be read.
pub fn parse_lines(
    body: &[u8],
    account: &HttpAccountConfig,
    max_lines: usize,
) -> Result<Vec<Line>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::NotUtf8(e.valid_up_to()))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        if lines.len() == max_lines {
            return Err(BodyError::TooManyLines(max_lines));
        }
        lines.push(parse_line(i + 1, raw, account));
    }
    if lines.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(lines)
}

fn parse_line(line: usize, raw: &str, account: &HttpAccountConfig) -> Line {
    let fields = match split_fields(raw) {
        Ok(f) => f,
        Err(problem) => {
            return Line {
                line,
                name: String::new(),
                value: raw.trim().to_owned(),
                device: Err(LineError::Unreadable { line, problem }),
            }
        }
    };
    let mut fields = fields.into_iter();
    let name = fields.next().unwrap_or_default();
    let value = fields.next().unwrap_or_default();
    let extra = fields.any(|f| !f.is_empty());
    let device = if name.is_empty() || value.is_empty() || extra {
        Err(LineError::NotKeyAndValue { line })
    } else {
        match account.lookup_keys.get(&name) {
            Some(&LookupTarget::Device(kind)) => {
                Ok((kind, normalise(kind, &value, &account.default_country_code)))
            }
            None => Err(LineError::UnknownKey {
                key: name.clone(),
                known: account.lookup_keys.names().map(str::to_owned).collect(),
            }),
        }
    };
    Line {
        line,
        name,
        value,
        device,
    }
}

/// Splits one CSV line into trimmed fields, unquoting `"…"` fields (typographic quotes count as `"`, a doubled
/// `""` inside quotes is one `"`).
fn split_fields(raw: &str) -> Result<Vec<String>, Quoting> {
    let normalised: String = raw
        .chars()
        .map(|c| if CURLY_DOUBLE.contains(&c) { '"' } else { c })
        .collect();
    let mut fields = Vec::new();
    let mut chars = normalised.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(Quoting::NotClosed),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err(Quoting::TextAfterQuote),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim().to_owned());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err(Quoting::QuoteInside),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field.trim().to_owned());
        }
    }
}

/// The value as a request file would carry it: phones get their `+` ([`international`]), others stay.
pub fn normalise(kind: DeviceKind, value: &str, country_code: &str) -> String {
    match kind {
        DeviceKind::Phone => international(value, country_code),
        _ => value.trim().to_owned(),
    }
}

/// A phone number written without `+` (`14152347172`, `0791 112 3456`) in the international form the request
/// format reads. `00` starts an international number; with a default country code, a leading `0` is the national
/// trunk prefix (dropped, country code added), a number already starting with the country code is taken as
/// international, and any other gets the country code; without one, the digits are taken as international.
/// A value that is not digits and separators (`-`, `.`, `(`, `)`, spaces) is returned as it is, so the request
/// answers it with the usual format error.
pub fn international(value: &str, country_code: &str) -> String {
    let value = value.trim();
    if value.starts_with('+') {
        return value.to_owned();
    }
    let separators = |c: char| matches!(c, ' ' | '-' | '.' | '(' | ')');
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_digit() || separators(c)) {
        return value.to_owned();
    }
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if let Some(rest) = digits.strip_prefix("00") {
        return format!("+{rest}");
    }
    if country_code.is_empty() || digits.starts_with(country_code) {
        return format!("+{digits}");
    }
    match digits.strip_prefix('0') {
        Some(national) => format!("+{country_code}{national}"),
        None => format!("+{country_code}{digits}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn account(cc: &str) -> HttpAccountConfig {
        toml::from_str::<crate::http::config::RawHttpAccountConfig>(&format!(
            "token_hash = \"sha256:{}\"\ndefault_country_code = {cc:?}\n[lookup_keys]\nEmail = \"email\"\nMobileNumber = \"phone\"\n",
            "0".repeat(64)
        ))
        .expect("account")
        .validate("test", &[])
        .expect("valid")
    }

    fn devices(body: &str) -> Vec<Result<(DeviceKind, String), LineError>> {
        parse_lines(body.as_bytes(), &account(""), 100)
            .expect("body")
            .into_iter()
            .map(|l| l.device)
            .collect()
    }

    #[test]
    fn the_seeds_body_with_curly_quotes_and_a_trailing_comma() {
        let body = "\u{201C}MobileNumber\u{201D},\u{201C}15063434670\u{201D}\n\
                    \u{201C}Email\u{201D},\u{201D}john@domain.com\u{201D}\n\
                    \u{201C}Email\u{201D},\u{201D}jill@domain.com\u{201D},\n";
        let lines = parse_lines(body.as_bytes(), &account(""), 100).expect("body");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].name, "MobileNumber");
        assert_eq!(
            lines[0].device,
            Ok((DeviceKind::Phone, "+15063434670".into()))
        );
        assert_eq!(
            lines[2].device,
            Ok((DeviceKind::Email, "jill@domain.com".into()))
        );
        assert_eq!(lines[2].line, 3);
    }

    #[test]
    fn plain_lines_and_case_insensitive_keys() {
        let d = devices("EMAIL,user1@eng.silverpop.com\r\n\r\n  email , \"user2@x.com\"  \n");
        assert_eq!(
            d,
            vec![
                Ok((DeviceKind::Email, "user1@eng.silverpop.com".into())),
                Ok((DeviceKind::Email, "user2@x.com".into()))
            ]
        );
    }

    #[test]
    fn bad_lines_answer_alone() {
        let d = devices("Fax,123\nEMAIL\n\"EMAIL\",\"a@b.com\" x\n\"EMAIL,a@b.com\nEMAIL,a@b.com,extra\nEMAIL,a\"b@c.com\nEMAIL,ok@b.com");
        assert!(
            d[0].as_ref()
                .is_err_and(|e| e.to_string().contains("unknown lookup key \"Fax\"")),
            "{d:?}"
        );
        assert!(
            d[1].as_ref()
                .is_err_and(|e| e.to_string().contains("line 2: expected")),
            "{d:?}"
        );
        assert!(
            d[2].as_ref()
                .is_err_and(|e| e.to_string().contains("after a closing quote")),
            "{d:?}"
        );
        assert!(
            d[3].as_ref()
                .is_err_and(|e| e.to_string().contains("not closed")),
            "{d:?}"
        );
        assert!(
            d[4].as_ref()
                .is_err_and(|e| e.to_string().contains("two fields")),
            "{d:?}"
        );
        assert!(
            d[5].as_ref()
                .is_err_and(|e| e.to_string().contains("quote inside")),
            "{d:?}"
        );
        assert_eq!(d[6], Ok((DeviceKind::Email, "ok@b.com".into())));
    }

    #[test]
    fn whole_body_errors() {
        let a = account("");
        assert_eq!(parse_lines(b"\n \n", &a, 10), Err(BodyError::Empty));
        assert_eq!(
            parse_lines(b"EMAIL,a@b.com\xff", &a, 10),
            Err(BodyError::NotUtf8(13))
        );
        assert_eq!(
            parse_lines(b"EMAIL,a@b.com\nEMAIL,c@d.com\n", &a, 1),
            Err(BodyError::TooManyLines(1))
        );
    }

    #[test]
    fn phones_without_plus() {
        assert_eq!(international("14152347172", ""), "+14152347172");
        assert_eq!(international("14152347172", "1"), "+14152347172");
        assert_eq!(international("(415) 234-7172", "1"), "+14152347172");
        assert_eq!(international("07911 123456", "44"), "+447911123456");
        assert_eq!(international("447911123456", "44"), "+447911123456");
        assert_eq!(international("0033 1 23 45 67 89", "44"), "+33123456789");
        assert_eq!(international("+1 415 234 7172", "44"), "+1 415 234 7172");
        assert_eq!(international("call me", "1"), "call me");
    }

    proptest! {
        #[test]
        fn any_body_reads_without_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_lines(&body, &account("1"), 50);
        }

        #[test]
        fn quoted_values_round_trip(v in "[a-z0-9@.,\" ]{1,20}") {
            let quoted = format!("\"EMAIL\",\"{}\"", v.replace('"', "\"\""));
            let fields = split_fields(&quoted).expect("quoted line");
            prop_assert_eq!(&fields[1], &v);
        }
    }
}
