//! Matching stored values, which are messy, against canonical devices: a stored phone `(781) 555-1212` matches
//! `+1 781 555 1212` once the store's default country code is added; emails match case-insensitively; IP
//! addresses match in the standard library's text form.

use crate::config::PhoneConfig;
use crate::requests::DeviceKind;
use rustc_hash::FxHashSet;
use std::net::IpAddr;

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
/// stores that prefilter in SQL with an index: for a phone, every digit string [`stored_keys`] could read as
/// `key` (with the international prefix, without the country code, with the trunk prefix); for an email, the
/// lowercased address; for an IP address, its text form in lower and upper case. A superset: rows found
/// through these are checked again with [`Matcher`], so SQL and the embedded stores agree exactly.
pub fn sql_candidates(key: &str, phones: &PhoneConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(digits) = key.strip_prefix("p:") {
        out.push(digits.to_owned());
        if !phones.international_prefix.is_empty() {
            out.push(format!("{}{digits}", phones.international_prefix));
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
    } else if let Some(ip) = key.strip_prefix("i:") {
        out.push(ip.to_owned());
        let upper = ip.to_uppercase();
        if upper != ip {
            out.push(upper);
        }
    }
    out
}

/// Reusable buffers, so matching a stored value that matches nothing allocates nothing.
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
        let s = stored.trim();
        if s.is_empty() {
            return false;
        }
        let key = &mut self.key;
        key.clear();
        match kind {
            DeviceKind::Email => {
                key.push_str("e:");
                if s.is_ascii() {
                    key.extend(s.bytes().map(|b| char::from(b.to_ascii_lowercase())));
                } else {
                    key.extend(s.chars().flat_map(char::to_lowercase));
                }
                f(key)
            }
            DeviceKind::Ipaddr => {
                match s.parse::<IpAddr>() {
                    Ok(ip) => {
                        let _ = write!(key, "i:{ip}");
                    }
                    Err(_) => {
                        key.push_str("i:");
                        key.push_str(s);
                    }
                }
                f(key)
            }
            DeviceKind::Phone => {
                let digits = &mut self.digits;
                digits.clear();
                digits.extend(s.bytes().filter(u8::is_ascii_digit).map(char::from));
                if digits.is_empty() {
                    return false;
                }
                let intl = phones.international_prefix.as_str();
                let international = s.starts_with('+')
                    || (!intl.is_empty() && digits.len() > intl.len() && digits.starts_with(intl));
                if international {
                    let skip = if s.starts_with('+') { 0 } else { intl.len() };
                    key.push_str("p:");
                    key.push_str(&digits[skip..]);
                    return f(key);
                }
                let cc = phones.default_country_code.as_str();
                if !cc.is_empty() {
                    let trunk = phones.trunk_prefix.as_str();
                    let national = match digits.strip_prefix(trunk) {
                        Some(rest) if !trunk.is_empty() => rest,
                        _ => digits.as_str(),
                    };
                    key.push_str("p:");
                    key.push_str(cc);
                    key.push_str(national);
                    if f(key) {
                        return true;
                    }
                    key.clear();
                }
                key.push_str("p:");
                key.push_str(digits);
                f(key)
            }
        }
    }
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
            s in "[ +()0-9.-]{0,20}",
            cc in "|1|44|353",
            trunk in "|0",
            intl in "|00|011",
        ) {
            let phones = PhoneConfig {
                default_country_code: cc,
                trunk_prefix: trunk,
                international_prefix: intl,
            };
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            for key in stored_keys(DeviceKind::Phone, &s, &phones) {
                // Whatever key the matcher reads from a stored phone, the SQL prefilter on its digits finds it.
                prop_assert!(sql_candidates(&key, &phones).contains(&digits), "{} {:?}", key, phones);
            }
        }

        #[test]
        fn sql_candidates_cover_every_stored_email(s in "[ a-zA-Z@.]{1,20}") {
            for key in stored_keys(DeviceKind::Email, &s, &us()) {
                prop_assert!(sql_candidates(&key, &us()).contains(&s.trim().to_lowercase()));
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
