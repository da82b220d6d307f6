//! `[accounts.requests]`: what an account requires of each request, the format document's per-product rules
//! ("the *accountid* … is required for Outbound", "the *shortcodes* array … is mandatory for" the SMS products,
//! "the *accountid* parameter can be ignored"). No I/O: [`RequestRules::apply`] works on a parsed
//! [`RequestFile`], so the daemon, the HTTP front doors and `gdprd validate` decide alike.
//!
//! A request that breaks a rule is refused on its own: each of its contacts answers the [`RuleError`], nothing is
//! searched for it, and the file's other requests run.

use super::parse::{Request, RequestFile};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[accounts.requests]`. The default (both `optional`) is how gdprd read every file before the rules existed,
/// so that an account that does not say keeps working as it did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestRules {
    /// What `accountid` is to this account's requests.
    pub accountid: AccountIdRule,
    /// What `shortcodes` are to this account's requests.
    pub shortcodes: ShortcodesRule,
    /// Enterprise numbers and the account ids of each ("an enterprise account number which will search all
    /// accounts in an enterprise"): a request whose `accountid` is one searches the records of all of them.
    pub enterprises: BTreeMap<String, Vec<String>>,
}

/// `[accounts.requests] accountid`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountIdRule {
    /// Every request must name an account id (the seed's Outbound): one without it, or with `""`, is refused.
    Required,
    /// An account id scopes the search when given; without it (or with `""`) every account of a shared store is
    /// searched.
    #[default]
    Optional,
    /// An account id is not used (the seed's Portico/MMM): every account of a shared store is searched, whatever
    /// the request says.
    Ignored,
}

/// `[accounts.requests] shortcodes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShortcodesRule {
    /// Every request must list at least one shortcode (the seed's SMS products): one without is refused.
    Required,
    /// Shortcodes limit the SMS search when given; without them SMS records are not searched.
    #[default]
    Optional,
}

/// Why a request is refused by its account's rules. The text is each of its contacts' response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `accountid` is required and the request gives none (or `""`).
    #[error("ERROR: request refused: this account requires \"accountid\" in every request (the account number to search); nothing was done for this contact")]
    AccountIdMissing,
    /// `shortcodes` are required and the request lists none.
    #[error("ERROR: request refused: this account requires \"shortcodes\" in every request (at least one SMS shortcode to search); nothing was done for this contact")]
    ShortcodesMissing,
}

impl RuleError {
    /// Every rule error, for reading responses back from their text.
    pub const ALL: [RuleError; 2] = [RuleError::AccountIdMissing, RuleError::ShortcodesMissing];
}

impl RequestRules {
    /// The account id a request searches with, after the rules: `None` means every account of a shared store.
    ///
    /// # Errors
    /// [`RuleError`] when the request breaks a rule.
    pub fn check(
        &self,
        accountid: Option<&str>,
        shortcodes: &[String],
    ) -> Result<Option<String>, RuleError> {
        // `""` names no account: it is "not given", never "the account whose id is empty".
        let given = accountid.filter(|a| !a.trim().is_empty());
        let accountid = match (self.accountid, given) {
            (AccountIdRule::Required, None) => return Err(RuleError::AccountIdMissing),
            (AccountIdRule::Ignored, _) => None,
            (_, given) => given.map(str::to_owned),
        };
        if self.shortcodes == ShortcodesRule::Required && shortcodes.is_empty() {
            return Err(RuleError::ShortcodesMissing);
        }
        Ok(accountid)
    }

    /// Applies the rules to every request of `file`: its `accountid` becomes the one searched with, and a
    /// request that breaks a rule is marked [`Request::refused`].
    pub fn apply(&self, file: &mut RequestFile) {
        for request in &mut file.requests {
            self.apply_one(request);
        }
    }

    fn apply_one(&self, request: &mut Request) {
        match self.check(request.accountid.as_deref(), &request.shortcodes) {
            Ok(accountid) => {
                request.enterprise = accountid
                    .as_ref()
                    .and_then(|a| self.enterprises.get(a))
                    .cloned()
                    .unwrap_or_default();
                request.accountid = accountid;
            }
            Err(e) => request.refused = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::{parse, Kind};

    fn file(requests: &str) -> RequestFile {
        let text = format!("{{\"requests\":[{requests}]}}");
        parse::parse(text.as_bytes(), Kind::Forget, &Default::default()).expect("parses")
    }

    fn applied(rules: RequestRules, requests: &str) -> Vec<(Option<String>, Option<RuleError>)> {
        let mut f = file(requests);
        rules.apply(&mut f);
        f.requests
            .into_iter()
            .map(|r| (r.accountid, r.refused))
            .collect()
    }

    const C: &str = r#""type":"FORGET","contacts":[{"email":"a@b.com"}]"#;

    #[test]
    fn the_default_reads_files_as_before_and_an_empty_accountid_is_not_given() {
        let got = applied(
            RequestRules::default(),
            &format!(r#"{{{C}}},{{"accountid":"",{C}}},{{"accountid":"7",{C}}}"#),
        );
        assert_eq!(
            got,
            vec![(None, None), (None, None), (Some("7".into()), None)]
        );
    }

    #[test]
    fn a_required_accountid_refuses_the_request_without_one() {
        let rules = RequestRules {
            accountid: AccountIdRule::Required,
            ..RequestRules::default()
        };
        let got = applied(
            rules,
            &format!(r#"{{{C}}},{{"accountid":" ",{C}}},{{"accountid":30003748347,{C}}}"#),
        );
        assert_eq!(
            got,
            vec![
                (None, Some(RuleError::AccountIdMissing)),
                (Some(" ".into()), Some(RuleError::AccountIdMissing)),
                (Some("30003748347".into()), None)
            ]
        );
    }

    #[test]
    fn an_ignored_accountid_searches_every_account() {
        let rules = RequestRules {
            accountid: AccountIdRule::Ignored,
            ..RequestRules::default()
        };
        assert_eq!(
            applied(rules, &format!(r#"{{"accountid":"7",{C}}}"#)),
            vec![(None, None)]
        );
    }

    #[test]
    fn required_shortcodes_refuse_a_request_without_any() {
        let rules = RequestRules {
            shortcodes: ShortcodesRule::Required,
            ..RequestRules::default()
        };
        let got = applied(
            rules,
            &format!(r#"{{{C}}},{{"shortcodes":[],{C}}},{{"shortcodes":["11111"],{C}}}"#),
        );
        let refused = |r: &(Option<String>, Option<RuleError>)| r.1;
        assert_eq!(
            got.iter().map(refused).collect::<Vec<_>>(),
            vec![
                Some(RuleError::ShortcodesMissing),
                Some(RuleError::ShortcodesMissing),
                None
            ]
        );
    }

    #[test]
    fn an_enterprise_number_searches_its_accounts() {
        let rules: RequestRules =
            toml::from_str("[enterprises]\nE1 = [\"11\", \"12\"]").expect("toml");
        let mut f = file(&format!(
            r#"{{"accountid":"E1",{C}}},{{"accountid":"11",{C}}}"#
        ));
        rules.apply(&mut f);
        assert_eq!(
            f.requests[0].enterprise,
            vec!["11".to_owned(), "12".to_owned()]
        );
        assert!(f.requests[1].enterprise.is_empty());
        let ignored = RequestRules {
            accountid: AccountIdRule::Ignored,
            ..rules
        };
        let mut f = file(&format!(r#"{{"accountid":"E1",{C}}}"#));
        ignored.apply(&mut f);
        assert!(f.requests[0].enterprise.is_empty() && f.requests[0].accountid.is_none());
    }

    #[test]
    fn the_rules_read_from_toml() {
        let r: RequestRules =
            toml::from_str("accountid = \"required\"\nshortcodes = \"required\"").expect("toml");
        assert_eq!(r.accountid, AccountIdRule::Required);
        assert_eq!(r.shortcodes, ShortcodesRule::Required);
        assert!(toml::from_str::<RequestRules>("accountid = \"sometimes\"").is_err());
        assert!(toml::from_str::<RequestRules>("shortcodes = \"ignored\"").is_err());
        assert!(toml::from_str::<RequestRules>("accountids = \"required\"").is_err());
    }
}
