//! Pseudonymisation by masking, in the style of the seed's agent requests: `99999 99999` → `9xx9x x9xx9`,
//! `johndoe@zyxwv.com` → `jxxnxxe@xxxwv.com`.
//!
//! - Outside an email's domain, the letters and digits are counted through the whole value (punctuation and
//!   spaces do not restart the count): the first and every third after it stay, the others become `x`.
//!   Punctuation and spaces stay, so the shape survives for reports.
//! - In an email's domain, each label before the top-level domain has its first half (rounded up) masked and the
//!   rest kept; the top-level domain stays.
//!
//! The value can no longer be matched, but masked data is still personal data under the GDPR: about a third of
//! a phone number or local part, and half of a domain, stay readable.

/// The masked form of `value`.
pub fn mask(value: &str) -> String {
    match value.rsplit_once('@') {
        Some((local, domain)) => {
            let mut out = mask_every_third(local);
            out.push('@');
            let labels: Vec<&str> = domain.split('.').collect();
            let last = labels.len().saturating_sub(1);
            for (i, label) in labels.iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if i == last && labels.len() > 1 {
                    out.push_str(label);
                } else {
                    out.push_str(&mask_leading_half(label));
                }
            }
            out
        }
        None => mask_every_third(value),
    }
}

fn mask_every_third(text: &str) -> String {
    let mut at = 0usize;
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                let kept = at % 3 == 0;
                at += 1;
                if kept {
                    c
                } else {
                    'x'
                }
            } else {
                c
            }
        })
        .collect()
}

fn mask_leading_half(label: &str) -> String {
    let hidden = label
        .chars()
        .filter(|c| c.is_alphanumeric())
        .count()
        .div_ceil(2);
    let mut at = 0usize;
    label
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                at += 1;
                if at <= hidden {
                    return 'x';
                }
            }
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_seeds_examples() {
        assert_eq!(mask("99999 99999"), "9xx9x x9xx9");
        assert_eq!(mask("johndoe@zyxwv.com"), "jxxnxxe@xxxwv.com");
    }

    #[test]
    fn other_shapes() {
        assert_eq!(mask("+1 781 555 1212"), "+1 xx1 xx5 xx1x");
        assert_eq!(mask("Ada Lovelace"), "Axx Lxxexxcx");
        assert_eq!(mask("a@mail.example.co"), "a@xxil.xxxxple.co");
        assert_eq!(mask("x@localhost"), "x@xxxxxhost");
        assert_eq!(mask(""), "");
    }

    #[test]
    fn masking_twice_changes_nothing_more() {
        for v in [
            "99999 99999",
            "johndoe@zyxwv.com",
            "(781) 555-1212",
            "Ada Lovelace",
        ] {
            assert_eq!(mask(&mask(v)), mask(v), "{v}");
        }
    }

    proptest! {
        #[test]
        fn shape_is_kept_and_two_thirds_are_hidden(s in "[^@]{0,40}") {
            let m = mask(&s);
            prop_assert_eq!(m.chars().count(), s.chars().count());
            let mut at = 0;
            for (masked, original) in m.chars().zip(s.chars()) {
                if original.is_alphanumeric() {
                    prop_assert_eq!(masked, if at % 3 == 0 { original } else { 'x' });
                    at += 1;
                } else {
                    prop_assert_eq!(masked, original);
                }
            }
        }

        #[test]
        fn masking_is_idempotent(s in ".{0,40}") {
            prop_assert_eq!(mask(&mask(&s)), mask(&s));
        }
    }
}
