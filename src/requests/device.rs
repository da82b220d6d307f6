//! Devices: the phone numbers, email addresses and IP addresses a request names, checked against the rules of
//! DESIGN.md 4 and brought into the canonical form used for matching.

use serde_json::Value;
use std::fmt;
use std::net::IpAddr;

/// The three kinds of device a contact may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceKind {
    /// A phone number, canonical form E.164 (`+17815551212`).
    Phone,
    /// An email address (RFC 6531/6532: Unicode and quoted local parts, internationalised domains),
    /// canonical form local part as given and domain in lower-cased ASCII (punycode).
    Email,
    /// An IPv4 or IPv6 address, canonical form the standard library's text form.
    Ipaddr,
}

impl DeviceKind {
    /// The key used in a contact object and in configuration (`phone`, `email`, `ipaddr`).
    pub fn key(self) -> &'static str {
        match self {
            DeviceKind::Phone => "phone",
            DeviceKind::Email => "email",
            DeviceKind::Ipaddr => "ipaddr",
        }
    }

    /// Reads a contact key.
    pub fn from_key(key: &str) -> Option<DeviceKind> {
        match key {
            "phone" => Some(DeviceKind::Phone),
            "email" => Some(DeviceKind::Email),
            "ipaddr" => Some(DeviceKind::Ipaddr),
            _ => None,
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A valid device in canonical form. Holds personal data: never log it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Device {
    kind: DeviceKind,
    canonical: String,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({}, <redacted>)", self.kind)
    }
}

/// Why a contact is not a valid device. The text is the response a customer reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Not an object with exactly one of the known keys and a string value.
    #[error("ERROR: incorrect device format: expected an object with exactly one of \"phone\", \"email\" or \"ipaddr\" and a string value")]
    Shape,
    /// A phone that is not ITU E.123 international.
    #[error("ERROR: incorrect device format: expected phone in ITU E.123 international format: +, country code and number, 8 to 15 digits in groups separated by single spaces, like \"+1 781 555 1212\"")]
    Phone,
    /// An email address that breaks the rules.
    #[error("ERROR: incorrect device format: expected email with one \"@\", a non-empty local part without illegal characters and a domain with at least one dot, like \"name@example.com\"")]
    Email,
    /// Not an IPv4 dotted quad or an IPv6 address.
    #[error("ERROR: incorrect device format: expected ipaddr as IPv4 dotted quad without leading zeros, like \"10.0.0.1\", or an IPv6 address")]
    Ipaddr,
}

impl DeviceError {
    /// Every variant, to read a response text back into its error.
    pub const ALL: [DeviceError; 4] = [
        DeviceError::Shape,
        DeviceError::Phone,
        DeviceError::Email,
        DeviceError::Ipaddr,
    ];
}

impl Device {
    /// Builds a device of `kind` from the value a customer wrote.
    ///
    /// # Errors
    /// The [`DeviceError`] for that kind when the value breaks its rule.
    pub fn new(kind: DeviceKind, value: &str) -> Result<Device, DeviceError> {
        let canonical = match kind {
            DeviceKind::Phone => canonical_phone(value).ok_or(DeviceError::Phone)?,
            DeviceKind::Email => canonical_email(value).ok_or(DeviceError::Email)?,
            DeviceKind::Ipaddr => value
                .parse::<IpAddr>()
                .map_err(|_| DeviceError::Ipaddr)?
                .to_string(),
        };
        Ok(Device { kind, canonical })
    }

    /// Reads one entry of a request's `contacts` array.
    ///
    /// # Errors
    /// [`DeviceError::Shape`] when it is not an object with exactly one known key and a string value, or the
    /// kind's own error when the value breaks its rule.
    pub fn from_contact(contact: &Value) -> Result<Device, DeviceError> {
        let object = contact.as_object().ok_or(DeviceError::Shape)?;
        if object.len() != 1 {
            return Err(DeviceError::Shape);
        }
        let (key, value) = object.iter().next().ok_or(DeviceError::Shape)?;
        let kind = DeviceKind::from_key(key).ok_or(DeviceError::Shape)?;
        let value = value.as_str().ok_or(DeviceError::Shape)?;
        Device::new(kind, value)
    }

    /// The device's kind.
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// The canonical text: `+17815551212`, `Name@example.com`, `10.0.0.1`.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The key stores match on: kind-tagged and case-folded where matching ignores case
    /// (`p:17815551212`, `e:name@example.com`, `i:10.0.0.1`).
    pub fn match_key(&self) -> String {
        match self.kind {
            DeviceKind::Phone => format!("p:{}", &self.canonical[1..]),
            DeviceKind::Email => format!("e:{}", self.canonical.to_lowercase()),
            DeviceKind::Ipaddr => format!("i:{}", self.canonical),
        }
    }
}

/// `+` country code then digit groups separated by single spaces, 8 to 15 digits, no leading zero.
fn canonical_phone(value: &str) -> Option<String> {
    let rest = value.strip_prefix('+')?;
    let mut digits = String::with_capacity(15);
    for group in rest.split(' ') {
        if group.is_empty() || !group.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.push_str(group);
    }
    let ok = (8..=15).contains(&digits.len()) && !digits.starts_with('0');
    ok.then(|| format!("+{digits}"))
}

/// Characters allowed unquoted in an email local part (RFC 5322 atext), besides letters and digits.
const ATEXT: &str = "!#$%&'*+/=?^_`{|}~-";

/// An email address by RFC 5321 as extended by RFC 6531/6532: a dot-atom local part (ASCII `atext` or any
/// non-ASCII character) or a quoted one (`"a b"`), and a domain that may be internationalised. The canonical
/// form keeps the local part as given and writes the domain in its lower-cased ASCII (punycode) form, so
/// `user@bücher.de` and `user@xn--bcher-kva.de` are one device.
fn canonical_email(value: &str) -> Option<String> {
    let (local, domain) = value.rsplit_once('@')?;
    if !local_part_ok(local) {
        return None;
    }
    let domain = ascii_domain(domain)?;
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
    let canonical = format!("{local}@{domain}");
    (domain_ok && canonical.len() <= 254).then_some(canonical)
}

/// A local part of at most 64 bytes: a dot-atom of `atext` and non-ASCII characters, or a quoted string of
/// printable ASCII (space included), non-ASCII characters and backslash pairs.
fn local_part_ok(local: &str) -> bool {
    if local.is_empty() || local.len() > 64 {
        return false;
    }
    if let Some(inner) = local
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .filter(|_| local.len() >= 2)
    {
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            let ok = match c {
                '\\' => chars.next().is_some_and(|q| (' '..='~').contains(&q)),
                '"' => false,
                c if c.is_ascii() => (' '..='~').contains(&c),
                c => !c.is_control(),
            };
            if !ok {
                return false;
            }
        }
        return true;
    }
    !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || c == '.'
                || ATEXT.contains(c)
                || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
        })
}

/// The lower-cased ASCII form of a domain: itself when it is ASCII (no IDNA mapping, so ASCII rules stay as
/// they were), else its IDNA (UTS 46) punycode form; `None` when IDNA refuses it.
pub(crate) fn ascii_domain(domain: &str) -> Option<String> {
    if domain.is_ascii() {
        return Some(domain.to_ascii_lowercase());
    }
    idna::domain_to_ascii_cow(domain.as_bytes(), idna::AsciiDenyList::STD3)
        .ok()
        .map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn ok(kind: DeviceKind, v: &str) -> String {
        Device::new(kind, v)
            .unwrap_or_else(|e| panic!("{v}: {e}"))
            .canonical()
            .to_owned()
    }

    #[test]
    fn seed_phones() {
        assert_eq!(ok(DeviceKind::Phone, "+1 781 555 1212"), "+17815551212");
        assert_eq!(ok(DeviceKind::Phone, "+1 617 555 1212"), "+16175551212");
        assert_eq!(ok(DeviceKind::Phone, "+1 781 555 1313"), "+17815551313");
        let err = Device::from_contact(&json!({"phone": "617 555 1313"})).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("ERROR: incorrect device format"));
    }

    #[test]
    fn phone_rules() {
        assert_eq!(ok(DeviceKind::Phone, "+17815551212"), "+17815551212");
        assert_eq!(ok(DeviceKind::Phone, "+44 20 7946 0018"), "+442079460018");
        for bad in [
            "+1  781 555 1212",
            "+1 781-555-1212",
            "+1 (781) 555 1212",
            " +1 781 555 1212",
            "+1 781 555 1212 ",
            "+1234567",
            "+1234567890123456",
            "+0 781 555 1212",
            "++1 781 555 1212",
            "+",
            "",
            "+1 781 555 121２",
        ] {
            assert_eq!(
                Device::new(DeviceKind::Phone, bad),
                Err(DeviceError::Phone),
                "{bad}"
            );
        }
    }

    #[test]
    fn seed_emails_and_rules() {
        assert_eq!(ok(DeviceKind::Email, "test@test.com"), "test@test.com");
        assert_eq!(
            ok(DeviceKind::Email, "genesys2@genesys.com"),
            "genesys2@genesys.com"
        );
        assert_eq!(
            ok(DeviceKind::Email, "Jane.Doe+x@Example.COM"),
            "Jane.Doe+x@example.com"
        );
        for bad in [
            "test",
            "test@",
            "@test.com",
            "a@b@test.com",
            "test@test",
            "te st@test.com",
            "test@te_st.com",
            "test@.test.com",
            "test@test..com",
            "test@-test.com",
            ".test@test.com",
            "te..st@test.com",
            "test(x)@test.com",
            "test@test.123",
        ] {
            assert_eq!(
                Device::new(DeviceKind::Email, bad),
                Err(DeviceError::Email),
                "{bad}"
            );
        }
    }

    #[test]
    fn internationalised_emails_are_refused() {
        assert_eq!(
            ok(DeviceKind::Email, "müller@example.de"),
            "müller@example.de"
        );
        assert_eq!(
            ok(DeviceKind::Email, "user@bücher.de"),
            "user@xn--bcher-kva.de"
        );
        assert_eq!(
            ok(DeviceKind::Email, "user@BÜCHER.de"),
            "user@xn--bcher-kva.de"
        );
        assert_eq!(
            ok(DeviceKind::Email, "user@xn--bcher-kva.de"),
            "user@xn--bcher-kva.de"
        );
        assert_eq!(
            ok(DeviceKind::Email, "\"a b\"@test.com"),
            "\"a b\"@test.com"
        );
        assert_eq!(
            ok(DeviceKind::Email, "\"a@b\"@test.com"),
            "\"a@b\"@test.com"
        );
        assert_eq!(
            ok(DeviceKind::Email, "用户@例子.广告"),
            "用户@xn--fsqu00a.xn--4rr70v"
        );
        for bad in [
            "\"a\"b\"@test.com",
            "\"a\u{7}b\"@test.com",
            "\"@test.com",
            "mü ller@example.de",
            "user@bü cher.de",
            "user@bücher",
        ] {
            assert_eq!(
                Device::new(DeviceKind::Email, bad),
                Err(DeviceError::Email),
                "{bad}"
            );
        }
    }

    #[test]
    fn email_match_key_ignores_case() {
        let a = Device::new(DeviceKind::Email, "Test@Test.com").expect("valid");
        let b = Device::new(DeviceKind::Email, "test@TEST.COM").expect("valid");
        assert_eq!(a.match_key(), b.match_key());
        assert_eq!(a.canonical(), "Test@test.com");
    }

    #[test]
    fn ip_rules() {
        assert_eq!(ok(DeviceKind::Ipaddr, "10.10.10.10"), "10.10.10.10");
        assert_eq!(ok(DeviceKind::Ipaddr, "2001:DB8:0:0::1"), "2001:db8::1");
        for bad in [
            "010.10.10.10",
            "10.10.10",
            "10.10.10.256",
            "10.10.10.10 ",
            "host",
            "",
        ] {
            assert_eq!(
                Device::new(DeviceKind::Ipaddr, bad),
                Err(DeviceError::Ipaddr),
                "{bad}"
            );
        }
    }

    #[test]
    fn contact_shapes() {
        for bad in [
            json!("test@test.com"),
            json!({}),
            json!({"phone": "+1 781 555 1212", "email": "test@test.com"}),
            json!({"fax": "+1 781 555 1212"}),
            json!({"Phone": "+1 781 555 1212"}),
            json!({"phone": 17815551212u64}),
            json!({"phone": null}),
            json!([{"phone": "+1 781 555 1212"}]),
        ] {
            assert_eq!(Device::from_contact(&bad), Err(DeviceError::Shape), "{bad}");
        }
        let d = Device::from_contact(&json!({"ipaddr": "11.11.11.11"})).expect("valid");
        assert_eq!(d.kind(), DeviceKind::Ipaddr);
        assert_eq!(d.match_key(), "i:11.11.11.11");
    }

    #[test]
    fn debug_hides_the_value() {
        let d = Device::new(DeviceKind::Email, "secret@test.com").expect("valid");
        assert!(!format!("{d:?}").contains("secret"));
    }

    proptest! {
        #[test]
        fn grouped_phones_are_accepted(cc in "[1-9][0-9]{0,2}", groups in proptest::collection::vec("[0-9]{1,4}", 1..5)) {
            let digits: String = std::iter::once(cc.clone()).chain(groups.iter().cloned()).collect();
            let text = format!("+{} {}", cc, groups.join(" "));
            let result = Device::new(DeviceKind::Phone, &text);
            if (8..=15).contains(&digits.len()) {
                prop_assert_eq!(result.expect("valid").canonical().to_owned(), format!("+{digits}"));
            } else {
                prop_assert_eq!(result, Err(DeviceError::Phone));
            }
        }

        #[test]
        fn phones_without_plus_are_refused(digits in "[0-9 ]{0,20}") {
            prop_assert_eq!(Device::new(DeviceKind::Phone, &digits), Err(DeviceError::Phone));
        }

        #[test]
        fn ipv4_round_trips(a in any::<u8>(), b in any::<u8>(), c in any::<u8>(), d in any::<u8>()) {
            let text = format!("{a}.{b}.{c}.{d}");
            prop_assert_eq!(ok(DeviceKind::Ipaddr, &text), text);
        }

        #[test]
        fn emails_with_two_ats_are_refused(a in "[a-z]{1,8}", b in "[a-z]{1,8}", c in "[a-z]{1,8}") {
            let text = format!("{a}@{b}@{c}.com");
            prop_assert_eq!(Device::new(DeviceKind::Email, &text), Err(DeviceError::Email));
        }

        #[test]
        fn arbitrary_values_never_panic(kind in 0usize..3, value in "\\PC{0,40}") {
            let kind = [DeviceKind::Phone, DeviceKind::Email, DeviceKind::Ipaddr][kind];
            if let Ok(d) = Device::new(kind, &value) {
                // Canonical forms are stable: parsing one again gives the same device.
                prop_assert_eq!(Device::new(kind, d.canonical()).map(|x| x.match_key()), Ok(d.match_key()));
            }
        }
    }
}
