//! Matching stored values, which are messy, against canonical devices: a stored phone `(781) 555-1212` matches
//! `+1 781 555 1212` once the store's default country code is added; emails match case-insensitively and by
//! either form of an internationalised domain; IP addresses match in the standard library's text form.
//!
//! A stored value is read in the everyday forms people and programs write:
//! - phones: any text around the number (`Tel: …`), an extension after `x`, `ext`, `ext.`, `extn`,
//!   `extension`, `#` or `;ext=` (dropped), several numbers in one cell (each starting with `+`, or separated by
//!   anything but spaces, tabs, `.`, `(`, `)`, `-`, and `/` between two digits), fullwidth digits and `＋`, the
//!   store's international prefix and the common ones (`00`, `011`). A number is always the whole run of its
//!   digits: `+1 781 555 1212` is never found inside `9917815551212`.
//! - emails: `<…>` around the address (`Test <test@test.com>`), a `mailto:` before it, spaces and zero-width
//!   characters around it; the domain is compared in its ASCII (punycode) form.
//! - IP addresses: `[…]` around an IPv6 address, a port (`10.10.10.10:443`, `[2001:db8::1]:443`), a prefix length
//!   (`/32`), an IPv4-mapped IPv6 address (`::ffff:10.10.10.10`) and zero-padded IPv4 parts (`010.010.010.010`,
//!   read as decimal, never octal).
//!
//! The PostgreSQL and MySQL stores first find candidate rows in SQL through an index on a normalised form of each
//! device column, [`sql_form`]; [`sql_candidates`] lists the normalised values a wanted device can have. A phone
//! cell whose form starts with [`SEVERAL`] holds something the index cannot answer (several numbers, letters
//! between digits): those rows are always read and checked here.

use super::mapping::PhoneConfig;
use crate::requests::DeviceKind;
use rustc_hash::FxHashSet;
use std::borrow::Cow;
use std::net::IpAddr;

/// The prefix of a phone's [`sql_form`] when the cell may hold more than one number: such rows are candidates
/// for every batch.
pub const SEVERAL: &str = "m";

/// International prefixes tried besides the store's own (ITU's `00` and North America's `011`), when the digits
/// after them are a plausible international number (9 digits or more, no leading zero): so a national number
/// that happens to start with `011` (Turin's area code) is not read as a foreign one.
const COMMON_INTERNATIONAL_PREFIXES: [&str; 2] = ["00", "011"];

/// Words that introduce an extension, longest first; matched case-insensitively.
const EXTENSION_MARKERS: [&str; 7] = ["extension", "extn", "ext.", "ext", ";ext=", "x", "#"];

/// Characters that may separate the digit groups of one number.
fn joins_digits(c: char) -> bool {
    matches!(c, ' ' | '\t' | '.' | '(' | ')' | '-')
}

/// Fullwidth digits and plus, the no-break space and the ideographic space: the non-ASCII characters a phone
/// is read through, with their ASCII meaning. [`sql_form`]'s SQL translates the same list.
pub const PHONE_TRANSLATIONS: [(char, char); 13] = [
    ('\u{FF10}', '0'),
    ('\u{FF11}', '1'),
    ('\u{FF12}', '2'),
    ('\u{FF13}', '3'),
    ('\u{FF14}', '4'),
    ('\u{FF15}', '5'),
    ('\u{FF16}', '6'),
    ('\u{FF17}', '7'),
    ('\u{FF18}', '8'),
    ('\u{FF19}', '9'),
    ('\u{FF0B}', '+'),
    ('\u{00A0}', ' '),
    ('\u{3000}', ' '),
];

/// Characters trimmed around a stored email address: whitespace and the zero-width characters that copy and
/// paste leave behind.
pub const EMAIL_TRIM: [char; 10] = [
    ' ', '\t', '\r', '\n', '\u{00A0}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}',
];

/// Characters trimmed around a stored IP address.
const IP_TRIM: [char; 4] = [' ', '\t', '\r', '\n'];

/// The keys a stored value could stand for, in [`crate::requests::Device::match_key`] form, most likely first.
pub fn stored_keys(kind: DeviceKind, stored: &str, phones: &PhoneConfig) -> Vec<String> {
    let mut keys = Vec::new();
    let mut scratch = Scratch::default();
    scratch.each_key(kind, stored, phones, |k| {
        keys.push(k.to_owned());
        false
    });
    keys
}

/// The normalised stored values that can stand for `key` (a [`crate::requests::Device::match_key`]), for
/// stores that prefilter in SQL with an index on [`sql_form`]: for a phone, every digit string [`stored_keys`]
/// could read as `key` (with an international prefix, without the country code, with the trunk prefix); for an
/// email, the lowercased address with its domain in ASCII and in Unicode form; for an IP address, its text
/// form. A superset: rows found through these are checked again with [`Matcher`], so SQL and the embedded
/// stores agree exactly.
pub fn sql_candidates(key: &str, phones: &PhoneConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(digits) = key.strip_prefix("p:") {
        out.push(digits.to_owned());
        if !phones.international_prefix.is_empty() {
            out.push(format!("{}{digits}", phones.international_prefix));
        }
        for prefix in COMMON_INTERNATIONAL_PREFIXES {
            if prefix != phones.international_prefix && plausibly_international(digits) {
                out.push(format!("{prefix}{digits}"));
            }
        }
        let cc = phones.default_country_code.as_str();
        if let Some(national) = digits.strip_prefix(cc).filter(|_| !cc.is_empty()) {
            out.push(national.to_owned());
            if !phones.trunk_prefix.is_empty() {
                out.push(format!("{}{national}", phones.trunk_prefix));
            }
        }
    } else if let Some(email) = key.strip_prefix("e:") {
        out.push(email.to_owned());
        if let Some((local, domain)) = email.rsplit_once('@') {
            if domain.split('.').any(|l| l.starts_with("xn--")) {
                let (unicode, result) = idna::domain_to_unicode(domain);
                if result.is_ok() && unicode != domain {
                    out.push(format!("{local}@{}", unicode.to_lowercase()));
                }
            }
        }
    } else if let Some(ip) = key.strip_prefix("i:") {
        out.push(ip.to_owned());
    }
    out
}

/// Whether digits after one of the [`COMMON_INTERNATIONAL_PREFIXES`] read as an international number.
fn plausibly_international(rest: &str) -> bool {
    rest.len() >= 9 && !rest.starts_with('0')
}

/// The normalised form of a stored value that the SQL stores index, written in Rust: the SQL expressions of
/// `sql.rs` compute exactly this (a test runs both on the same values).
/// - phone: the digits, after the fullwidth ones are read as ASCII and a trailing extension is dropped,
///   prefixed with [`SEVERAL`] when two digits are separated by anything but spaces, tabs, `.`, `(`, `)`, `-`;
/// - email: the address inside `<…>` if any, without a leading `mailto:` and without [`EMAIL_TRIM`]
///   characters around it, lowercased;
/// - IP address: lowercased, brackets, port, prefix length and `::ffff:` taken off, zero-padded IPv4 parts
///   unpadded.
pub fn sql_form(kind: DeviceKind, stored: &str) -> String {
    match kind {
        DeviceKind::Phone => {
            let translated = translate_phone(stored);
            let s = strip_extension(&translated);
            let mut form = String::new();
            if has_separated_digits(s) {
                form.push_str(SEVERAL);
            }
            form.extend(s.chars().filter(char::is_ascii_digit));
            form
        }
        DeviceKind::Email => email_address(stored).to_lowercase(),
        DeviceKind::Ipaddr => ip_text(stored).into_owned(),
    }
}

/// `stored` with [`PHONE_TRANSLATIONS`] applied.
fn translate_phone(stored: &str) -> Cow<'_, str> {
    if stored.is_ascii() {
        return Cow::Borrowed(stored);
    }
    Cow::Owned(
        stored
            .chars()
            .map(|c| {
                PHONE_TRANSLATIONS
                    .iter()
                    .find(|(from, _)| *from == c)
                    .map_or(c, |(_, to)| *to)
            })
            .collect(),
    )
}

/// `s` without a trailing extension: a marker of [`EXTENSION_MARKERS`], spaces or tabs, digits, spaces or tabs
/// at the end (the SQL `[ \t]*(x|ext\.?|extn|extension|#|;ext=)[ \t]*[0-9]+[ \t]*$`, case-insensitive).
fn strip_extension(s: &str) -> &str {
    let blank = |c: char| c == ' ' || c == '\t';
    let t = s.trim_end_matches(blank);
    let before_digits = t.trim_end_matches(|c: char| c.is_ascii_digit());
    if before_digits.len() == t.len() {
        return s;
    }
    let before = before_digits.trim_end_matches(blank);
    for marker in EXTENSION_MARKERS {
        if let Some(at) = before.len().checked_sub(marker.len()) {
            if before.is_char_boundary(at) && before[at..].eq_ignore_ascii_case(marker) {
                return before[..at].trim_end_matches(blank);
            }
        }
    }
    s
}

/// Whether two digits of `s` have something between them other than [`joins_digits`] characters.
fn has_separated_digits(s: &str) -> bool {
    let mut seen_digit = false;
    let mut separated = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if separated {
                return true;
            }
            seen_digit = true;
        } else if seen_digit && !joins_digits(c) {
            separated = true;
        }
    }
    false
}

/// The address in a stored email cell: inside `<…>` if there is a pair, then without [`EMAIL_TRIM`]
/// characters around it and without a leading `mailto:`.
fn email_address(stored: &str) -> &str {
    let mut s = stored;
    if let Some(open) = s.find('<') {
        if let Some(len) = s[open + 1..].find('>') {
            s = &s[open + 1..open + 1 + len];
        }
    }
    let s = s.trim_start_matches(EMAIL_TRIM);
    let s = match s.get(..7) {
        Some(m) if m.eq_ignore_ascii_case("mailto:") => s[7..].trim_start_matches(EMAIL_TRIM),
        _ => s,
    };
    s.trim_end_matches(EMAIL_TRIM)
}

/// The text of a stored IP address with what surrounds it in logs and URLs taken off (see [`sql_form`]); each
/// step is one removal of the SQL expression, in the same order.
fn ip_text(stored: &str) -> Cow<'_, str> {
    let trimmed = stored.trim_matches(IP_TRIM);
    let lower: Cow<'_, str> = if trimmed.is_ascii() {
        if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(trimmed.to_ascii_lowercase())
        } else {
            Cow::Borrowed(trimmed)
        }
    } else {
        Cow::Owned(trimmed.to_lowercase())
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let ipv4ish = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let mut t: &str = &lower;
    // `^\[|\](:[0-9]+)?$`
    t = t.strip_prefix('[').unwrap_or(t);
    if let Some(close) = t.rfind(']') {
        let after = &t[close + 1..];
        if after.is_empty() || after.strip_prefix(':').is_some_and(digits) {
            t = &t[..close];
        }
    }
    // `(?<=\.[0-9]{1,3}):[0-9]+$`: an IPv4 address's port.
    if let Some((addr, port)) = t.rsplit_once(':') {
        let last = addr.rsplit_once('.').map(|(_, l)| l);
        if digits(port) && last.is_some_and(|l| digits(l) && l.len() <= 3) {
            t = addr;
        }
    }
    // `/[0-9]{1,3}$`
    if let Some((addr, len)) = t.rsplit_once('/') {
        if digits(len) && len.len() <= 3 {
            t = addr;
        }
    }
    // `^::ffff:(?=[0-9.]+$)`
    if let Some(v4) = t.strip_prefix("::ffff:").filter(|v| ipv4ish(v)) {
        t = v4;
    }
    // `(?<=^|\.)0+(?=[0-9][0-9.]*$)`: leading zeros of the parts in the trailing run of digits and dots.
    let tail_start = t
        .trim_end_matches(|c: char| c.is_ascii_digit() || c == '.')
        .len();
    let padded =
        |begin: usize, part: &str| begin >= tail_start && part.len() > 1 && part.starts_with('0');
    let mut begin = 0;
    let mut any = false;
    for part in t.split('.') {
        any |= padded(begin, part);
        begin += part.len() + 1;
    }
    if any {
        let mut out = String::with_capacity(t.len());
        let mut begin = 0;
        for (i, part) in t.split('.').enumerate() {
            if i > 0 {
                out.push('.');
            }
            if padded(begin, part) {
                let kept = part.trim_start_matches('0');
                out.push_str(if kept.is_empty() { "0" } else { kept });
            } else {
                out.push_str(part);
            }
            begin += part.len() + 1;
        }
        return Cow::Owned(out);
    }
    if t.len() == lower.len() {
        lower
    } else {
        Cow::Owned(t.to_owned())
    }
}

/// Reusable buffers, so matching a stored value that matches nothing allocates little.
#[derive(Debug, Default)]
struct Scratch {
    key: String,
    digits: String,
}

impl Scratch {
    /// Calls `f` with each key `stored` could stand for, most likely first, until `f` returns true.
    fn each_key(
        &mut self,
        kind: DeviceKind,
        stored: &str,
        phones: &PhoneConfig,
        mut f: impl FnMut(&str) -> bool,
    ) -> bool {
        use std::fmt::Write;
        let key = &mut self.key;
        key.clear();
        match kind {
            DeviceKind::Email => {
                let s = email_address(stored);
                if s.is_empty() {
                    return false;
                }
                key.push_str("e:");
                if s.is_ascii() {
                    // Most stored emails: lowercased in place, in one pass.
                    key.push_str(s);
                    key.make_ascii_lowercase();
                    return f(key);
                }
                let (local, domain) = s.rsplit_once('@').unwrap_or((s, ""));
                push_lowercase(key, local);
                if s.len() > local.len() {
                    key.push('@');
                    if domain.is_ascii() {
                        push_lowercase(key, domain);
                    } else {
                        let at = key.len();
                        push_lowercase(key, domain);
                        // The ASCII form, when the stored domain is exactly its Unicode form (so that SQL, which
                        // compares the lowercased text with both forms, finds the same rows).
                        if let Some(ascii) = crate::requests::device::ascii_domain(domain) {
                            if idna::domain_to_unicode(&ascii).0 == key[at..] {
                                key.truncate(at);
                                key.push_str(&ascii);
                            }
                        }
                    }
                }
                f(key)
            }
            DeviceKind::Ipaddr => {
                // Most stored addresses are IPv4 in the standard text form already (the parser refuses
                // padded parts): the key is the text itself.
                if stored.len() <= 15 && stored.parse::<std::net::Ipv4Addr>().is_ok() {
                    key.push_str("i:");
                    key.push_str(stored);
                    return f(key);
                }
                let s = ip_text(stored);
                if s.is_empty() {
                    return false;
                }
                match s.parse::<IpAddr>() {
                    Ok(ip) => {
                        let _ = write!(key, "i:{ip}");
                    }
                    Err(_) => {
                        key.push_str("i:");
                        key.push_str(&s);
                    }
                }
                f(key)
            }
            DeviceKind::Phone => {
                // Most stored phones are one number in digits and joiners: read them in one pass.
                let Scratch { key, digits } = self;
                digits.clear();
                let mut plus = false;
                let plain = stored.bytes().all(|b| match b {
                    b'0'..=b'9' => {
                        digits.push(char::from(b));
                        true
                    }
                    b'+' if digits.is_empty() && !plus => {
                        plus = true;
                        true
                    }
                    b => joins_digits(char::from(b)),
                });
                if plain {
                    return !digits.is_empty() && phone_keys(key, digits, plus, phones, &mut f);
                }
                let translated = translate_phone(stored);
                let s = strip_extension(&translated);
                self.each_phone(s, phones, f)
            }
        }
    }

    /// Reads the numbers in `s` (a trailing extension already taken off) and calls `f` with their keys.
    fn each_phone(
        &mut self,
        s: &str,
        phones: &PhoneConfig,
        mut f: impl FnMut(&str) -> bool,
    ) -> bool {
        let Scratch { key, digits } = self;
        digits.clear();
        let mut plus = false;
        let mut extension = Extension::No;
        let mut prev: Option<char> = None;
        for (i, c) in s.char_indices() {
            let previous = prev.replace(c);
            match extension {
                Extension::Marker(end) if i < end => continue,
                Extension::Marker(_) if matches!(c, ' ' | '\t' | '.' | ':' | '=') => continue,
                Extension::Marker(_) | Extension::Digits if c.is_ascii_digit() => {
                    extension = Extension::Digits;
                    continue;
                }
                _ => extension = Extension::No,
            }
            if c.is_ascii_digit() {
                digits.push(c);
            } else if joins_digits(c)
                || (c == '/'
                    && previous.is_some_and(|p| p.is_ascii_digit())
                    && s[i + 1..].starts_with(|n: char| n.is_ascii_digit()))
            {
                // Inside a number (`030/1234567` is one), or before one.
            } else {
                let had_number = !digits.is_empty();
                if had_number && phone_keys(key, digits, plus, phones, &mut f) {
                    return true;
                }
                digits.clear();
                plus = c == '+';
                let word_start = previous.is_none_or(|p| !p.is_alphabetic());
                if had_number && word_start {
                    let rest = &s[i..];
                    if let Some(m) = EXTENSION_MARKERS.iter().find(|m| {
                        rest.get(..m.len())
                            .is_some_and(|w| w.eq_ignore_ascii_case(m))
                            && !rest[m.len()..].starts_with(char::is_alphabetic)
                    }) {
                        extension = Extension::Marker(i + m.len());
                    }
                }
            }
        }
        !digits.is_empty() && phone_keys(key, digits, plus, phones, &mut f)
    }
}

/// Where the phone reader is in an extension: its digits are no number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extension {
    No,
    /// After a marker that ends at this byte offset, before its digits.
    Marker(usize),
    /// In the extension's digits.
    Digits,
}

/// Lowercases `s` onto `key`.
fn push_lowercase(key: &mut String, s: &str) {
    if s.is_ascii() {
        key.extend(s.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        key.extend(s.chars().flat_map(char::to_lowercase));
    }
}

/// Calls `f` with each key the digits of one stored number could stand for, until it returns true.
fn phone_keys(
    key: &mut String,
    digits: &str,
    plus: bool,
    phones: &PhoneConfig,
    f: &mut impl FnMut(&str) -> bool,
) -> bool {
    let mut try_key = |key: &mut String, parts: &[&str]| {
        key.clear();
        key.push_str("p:");
        for p in parts {
            key.push_str(p);
        }
        f(key)
    };
    if plus {
        return try_key(key, &[digits]);
    }
    let intl = phones.international_prefix.as_str();
    if !intl.is_empty() && digits.len() > intl.len() && digits.starts_with(intl) {
        return try_key(key, &[&digits[intl.len()..]]);
    }
    for prefix in COMMON_INTERNATIONAL_PREFIXES {
        if let Some(rest) = digits.strip_prefix(prefix) {
            if prefix != intl && plausibly_international(rest) && try_key(key, &[rest]) {
                return true;
            }
        }
    }
    let cc = phones.default_country_code.as_str();
    if !cc.is_empty() {
        let trunk = phones.trunk_prefix.as_str();
        let national = match digits.strip_prefix(trunk) {
            Some(rest) if !trunk.is_empty() => rest,
            _ => digits,
        };
        if try_key(key, &[cc, national]) {
            return true;
        }
    }
    try_key(key, &[digits])
}

/// Matches stored values against the keys of a batch; one per store connection.
#[derive(Debug, Default)]
pub struct Matcher {
    phones: PhoneConfig,
    wanted: FxHashSet<String>,
    scratch: Scratch,
}

impl Matcher {
    /// A matcher reading stored phones by `phones`, wanting nothing yet.
    pub fn new(phones: PhoneConfig) -> Matcher {
        Matcher {
            phones,
            ..Matcher::default()
        }
    }

    /// Replaces the keys wanted.
    pub fn set_wanted(&mut self, wanted: impl IntoIterator<Item = String>) {
        self.wanted = wanted.into_iter().collect();
    }

    /// The first key of `stored` that is wanted.
    pub fn find(&mut self, kind: DeviceKind, stored: &str) -> Option<String> {
        let wanted = &self.wanted;
        let mut hit = None;
        self.scratch.each_key(kind, stored, &self.phones, |k| {
            let found = wanted.contains(k);
            if found {
                hit = Some(k.to_owned());
            }
            found
        });
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::Device;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn us() -> PhoneConfig {
        PhoneConfig {
            default_country_code: "1".into(),
            trunk_prefix: String::new(),
            international_prefix: "011".into(),
        }
    }

    fn key(kind: DeviceKind, v: &str) -> String {
        Device::new(kind, v).expect("valid").match_key()
    }

    #[test]
    fn messy_phones_match() {
        let want = key(DeviceKind::Phone, "+1 781 555 1212");
        for stored in [
            "(781) 555-1212",
            "781.555.1212",
            "7815551212",
            "1-781-555-1212",
            "+1 (781) 555-1212",
            "011 1 781 555 1212",
            " +17815551212 ",
        ] {
            assert!(
                stored_keys(DeviceKind::Phone, stored, &us()).contains(&want),
                "{stored}"
            );
        }
        for other in ["(781) 555-1213", "+44 781 555 1212", "555-1212", "", "n/a"] {
            assert!(
                !stored_keys(DeviceKind::Phone, other, &us()).contains(&want),
                "{other}"
            );
        }
    }

    fn matches(kind: DeviceKind, stored: &str, device: &str) -> bool {
        stored_keys(kind, stored, &us()).contains(&key(kind, device))
    }

    #[test]
    fn phones_with_extensions_prefixes_or_company_are_never_matched() {
        let phone = DeviceKind::Phone;
        for stored in [
            "(781) 555-1212 ext. 42",
            "(781) 555-1212 EXT 42",
            "781-555-1212x42",
            "+1 781 555 1212 x123",
            "+1 781 555 1212 extension 9",
            "tel:+1-781-555-1212;ext=7",
            "+1 781 555 1212 #12345678901",
            "001 781 555 1212",
            "011 1 781 555 1212",
            "00 1 781 555 1212",
            "+1 781 555 1212 / +1 617 555 0000",
            "+1 617 555 0000 / +1 781 555 1212",
            "+1 617 555 0000, (781) 555-1212",
            "617-555-0000; 781-555-1212",
            "home: 617 555 0000 mobile: 781 555 1212",
            "+1 617 555 0000 x12 / +1 781 555 1212",
            "＋１ ７８１ ５５５ １２１２",
            "(７８１) ５５５-１２１２",
            "+1\u{a0}781\u{a0}555\u{a0}1212",
            "Tel: +1 781 555 1212",
        ] {
            assert!(matches(phone, stored, "+1 781 555 1212"), "{stored}");
            if stored.contains('/')
                || stored.contains(',')
                || stored.contains(';') && !stored.contains("ext=")
            {
                assert!(matches(phone, stored, "+1 617 555 0000"), "{stored}");
            }
        }
        // A number is the whole run of its digits: never found inside a longer one, nor its extension read as one.
        for stored in [
            "9917815551212",
            "17815551212123",
            "781555121242",
            "+1 781 555 12123",
            "+44 1 781 555 1212",
            "0001 781 555 1212",
            "+1 617 555 0000 x17815551212",
            "+1 617 555 0000 ext 7815551212",
            "fax 1212",
        ] {
            assert!(!matches(phone, stored, "+1 781 555 1212"), "{stored}");
        }
        // A national number starting with 011 is not read as an international one.
        let italy = PhoneConfig {
            default_country_code: "39".into(),
            trunk_prefix: String::new(),
            international_prefix: "00".into(),
        };
        let keys = stored_keys(phone, "011 1234567", &italy);
        assert!(keys.contains(&key(phone, "+39 011 1234567")), "{keys:?}");
        assert!(!keys.iter().any(|k| k == "p:1234567"), "{keys:?}");
    }

    #[test]
    fn emails_in_brackets_mailto_or_with_zero_width_spaces_are_never_matched() {
        let email = DeviceKind::Email;
        for stored in [
            "<test@test.com>",
            "mailto:test@test.com",
            "MAILTO: Test@Test.com",
            "Test <test@test.com>",
            "\"Test, T.\" <mailto:test@test.com> (work)",
            "test@test.com\u{200b}",
            "\u{feff} test@test.com \u{200b}\n",
        ] {
            assert!(matches(email, stored, "test@test.com"), "{stored:?}");
        }
        for stored in [
            "<test@test.com.evil>",
            "xtest@test.com",
            "test@test.com.",
            "mailto:",
        ] {
            assert!(!matches(email, stored, "test@test.com"), "{stored:?}");
        }
    }

    #[test]
    fn internationalised_domains_match_their_punycode_and_back() {
        let email = DeviceKind::Email;
        assert!(matches(email, "user@xn--bcher-kva.de", "user@bücher.de"));
        assert!(matches(email, "user@bücher.de", "user@xn--bcher-kva.de"));
        assert!(matches(email, "User@BÜCHER.DE", "user@bücher.de"));
        assert!(matches(email, "Müller@example.de", "müller@example.de"));
        assert!(matches(email, "\"a b\"@test.com", "\"a b\"@test.com"));
        assert!(!matches(email, "user@bucher.de", "user@bücher.de"));
        let k = key(email, "user@bücher.de");
        let c = sql_candidates(&k, &us());
        assert_eq!(c, ["user@xn--bcher-kva.de", "user@bücher.de"]);
    }

    #[test]
    fn padded_ported_bracketed_and_mapped_ips_are_never_matched() {
        let ip = DeviceKind::Ipaddr;
        for stored in [
            "010.010.010.010",
            "10.10.10.010",
            "10.10.10.10:443",
            "10.10.10.10/32",
            "::ffff:10.10.10.10",
            "::FFFF:010.10.10.10",
            "[::ffff:10.10.10.10]:8080",
            " 10.10.10.10\n",
        ] {
            assert!(matches(ip, stored, "10.10.10.10"), "{stored:?}");
            assert_eq!(sql_form(ip, stored), "10.10.10.10", "{stored:?}");
        }
        for stored in ["[2001:db8::1]", "[2001:DB8::1]:443", "2001:db8::1/128"] {
            assert!(matches(ip, stored, "2001:db8::1"), "{stored:?}");
            assert_eq!(sql_form(ip, stored), "2001:db8::1", "{stored:?}");
        }
        for stored in ["110.10.10.10", "10.10.10.100", "10.10.10.1:0", "8.10.10.10"] {
            assert!(!matches(ip, stored, "10.10.10.10"), "{stored:?}");
        }
        assert_eq!(sql_form(ip, "0.0.0.0"), "0.0.0.0");
        assert_eq!(sql_form(ip, "000.00.0.000"), "0.0.0.0");
    }

    #[test]
    fn sql_form_of_phones() {
        let p = DeviceKind::Phone;
        assert_eq!(sql_form(p, "(781) 555-1212 ext. 42"), "7815551212");
        assert_eq!(sql_form(p, "+1 781 555 1212 x123"), "17815551212");
        assert_eq!(
            sql_form(p, "００１ ７８１ ５５５ １２１２"),
            "0017815551212"
        );
        assert_eq!(sql_form(p, "Tel: +1 781 555 1212"), "17815551212");
        assert_eq!(
            sql_form(p, "+1 781 555 1212 / +1 617 555 0000"),
            "m1781555121216175550000"
        );
        assert_eq!(sql_form(p, "030/1234567"), "m0301234567");
        assert_eq!(sql_form(p, "x42"), "");
    }

    #[test]
    fn trunk_prefix_is_dropped() {
        let uk = PhoneConfig {
            default_country_code: "44".into(),
            trunk_prefix: "0".into(),
            international_prefix: "00".into(),
        };
        let want = key(DeviceKind::Phone, "+44 20 7946 0018");
        for stored in ["020 7946 0018", "0044 20 7946 0018", "+44 (0)20 7946 0018x"] {
            let keys = stored_keys(DeviceKind::Phone, stored, &uk);
            if stored.contains("(0)") {
                // "+44 (0)20…" keeps the 0 after +44: a different number by the digits rule; documented.
                assert!(!keys.contains(&want), "{stored}");
            } else {
                assert!(keys.contains(&want), "{stored}: {keys:?}");
            }
        }
    }

    #[test]
    fn emails_and_ips() {
        let mut m = Matcher::new(us());
        m.set_wanted([key(DeviceKind::Email, "test@test.com")]);
        assert_eq!(
            m.find(DeviceKind::Email, " TEST@Test.COM ").as_deref(),
            Some("e:test@test.com")
        );
        assert!(m.find(DeviceKind::Email, "test@test.co").is_none());
        m.set_wanted([key(DeviceKind::Ipaddr, "2001:db8::1")]);
        assert!(m.find(DeviceKind::Ipaddr, "2001:DB8:0:0:0:0:0:1").is_some());
        assert!(m.find(DeviceKind::Ipaddr, "[2001:db8::1]:443").is_some());
        assert!(
            m.find(DeviceKind::Email, " TEST@Test.COM ").is_none(),
            "the wanted set was replaced"
        );
    }

    proptest! {
        #[test]
        fn a_canonical_phone_always_matches_itself(digits in "[1-9][0-9]{7,14}") {
            let want = format!("p:{digits}");
            let keys = stored_keys(DeviceKind::Phone, &format!("+{}", digits), &us());
            prop_assert!(keys.contains(&want));
        }

        #[test]
        fn sql_candidates_cover_every_stored_phone(
            s in "[ +()0-9.x/,;#-]{0,24}|[ +０-９ext.x\u{a0}0-9-]{0,24}|(Tel|ext|x|EXT\\.|#|;ext=| |/|,|\\+|[0-9]{1,4}|１){0,10}",
            cc in "|1|44|353",
            trunk in "|0",
            intl in "|00|011",
        ) {
            let phones = PhoneConfig {
                default_country_code: cc,
                trunk_prefix: trunk,
                international_prefix: intl,
            };
            let form = sql_form(DeviceKind::Phone, &s);
            for key in stored_keys(DeviceKind::Phone, &s, &phones) {
                // Whatever key the matcher reads from a stored phone, the SQL prefilter on its form finds it.
                prop_assert!(
                    form.starts_with(SEVERAL) || sql_candidates(&key, &phones).contains(&form),
                    "{:?}: {} {} {:?}", s, key, form, phones
                );
            }
        }

        #[test]
        fn the_one_pass_reading_of_plain_phones_agrees_with_the_full_one(s in "[ +()0-9.\t-]{0,20}") {
            let mut slow = Vec::new();
            Scratch::default().each_phone(strip_extension(&s), &us(), |k| {
                slow.push(k.to_owned());
                false
            });
            prop_assert_eq!(stored_keys(DeviceKind::Phone, &s, &us()), slow);
        }

        #[test]
        fn the_short_readings_of_plain_ipv4_and_ascii_emails_agree_with_the_full_ones(
            parts in proptest::array::uniform4(0u16..300),
            pad in proptest::array::uniform4(0usize..3),
            email in "[ a-zA-Z0-9@.<>_+-]{1,24}",
        ) {
            let ip = parts.iter().zip(pad).map(|(p, z)| format!("{}{p}", "0".repeat(z))).collect::<Vec<_>>().join(".");
            let full = match ip_text(&ip).parse::<IpAddr>() {
                Ok(addr) => format!("i:{addr}"),
                Err(_) => format!("i:{}", ip_text(&ip)),
            };
            prop_assert_eq!(stored_keys(DeviceKind::Ipaddr, &ip, &us()), vec![full]);
            let address = email_address(&email);
            let expected: Vec<String> = if address.is_empty() {
                Vec::new()
            } else {
                vec![format!("e:{}", address.to_lowercase())]
            };
            prop_assert_eq!(stored_keys(DeviceKind::Email, &email, &us()), expected);
        }

        #[test]
        fn sql_candidates_cover_every_stored_email(
            s in "[ a-zA-Z@.]{1,20}|(Test |<|>|mailto:|MAILTO:| |\u{200b}|\u{feff}|müller|user|@|bücher|xn--bcher-kva|\\.de|\\.com){1,8}"
        ) {
            let form = sql_form(DeviceKind::Email, &s);
            for key in stored_keys(DeviceKind::Email, &s, &us()) {
                prop_assert!(sql_candidates(&key, &us()).contains(&form), "{:?}: {} {}", s, key, form);
            }
        }

        #[test]
        fn sql_candidates_cover_every_stored_ipv4(
            s in "(\\[|::ffff:|::FFFF:)?(0{0,2}[0-9]{1,3}\\.){3}0{0,2}[0-9]{1,3}(\\]|:443|/32|/8| )?"
        ) {
            let form = sql_form(DeviceKind::Ipaddr, &s);
            for key in stored_keys(DeviceKind::Ipaddr, &s, &us()) {
                if key[2..].parse::<IpAddr>().is_ok() {
                    prop_assert!(sql_candidates(&key, &us()).contains(&form), "{:?}: {} {}", s, key, form);
                }
            }
        }

        #[test]
        fn matcher_agrees_with_stored_keys(s in "[ +()0-9.-]{0,20}|\\PC{0,30}", pick in 0usize..3) {
            for kind in [DeviceKind::Phone, DeviceKind::Email, DeviceKind::Ipaddr] {
                let keys = stored_keys(kind, &s, &us());
                // Wanting one of its keys (or none), the matcher finds the first wanted one.
                let wanted: HashSet<String> = keys.iter().skip(pick).take(1).cloned().collect();
                let mut m = Matcher::new(us());
                m.set_wanted(wanted.clone());
                prop_assert_eq!(m.find(kind, &s), keys.iter().find(|k| wanted.contains(*k)).cloned());
            }
        }
    }
}
