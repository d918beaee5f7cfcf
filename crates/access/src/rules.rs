//! Per-module-path access rules: who may read which modules, and what a refused client is told.
//!
//! Rules use the go command's GOPRIVATE pattern syntax (comma-separated globs matching a path
//! prefix) and are tried in order; the first whose pattern matches the module path decides, and
//! the default applies when none does. Put narrow rules before broad ones.
//!
//! Matching ignores ASCII case. Go module paths are case-sensitive, but the git hosts behind them
//! usually are not (`github.com/Corp/Secret` fetches the same repository as
//! `github.com/corp/secret`), so a case-sensitive rule could be walked around by changing case.

use std::borrow::Cow;

use agora_gomod::module::match_prefix_patterns;
use serde::{Deserialize, Serialize};

use crate::credential::Principal;
use crate::error::AccessError;
use crate::token::valid_group_name;

/// Who a rule lets in. Written in configuration as a list of strings: `"anyone"` (unauthenticated
/// clients too), `"authenticated"` (any valid token), or group names; they combine, e.g.
/// `["payments", "sre"]`. An empty list lets nobody in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Allow {
    anyone: bool,
    authenticated: bool,
    groups: Vec<String>,
}

impl Allow {
    /// Everybody, with or without a token.
    pub fn anyone() -> Allow {
        Allow {
            anyone: true,
            ..Allow::default()
        }
    }

    /// Any valid token.
    pub fn authenticated() -> Allow {
        Allow {
            authenticated: true,
            ..Allow::default()
        }
    }

    /// Nobody at all.
    pub fn nobody() -> Allow {
        Allow::default()
    }

    /// Parses a configuration list; strings other than the two special words are group names and
    /// must be valid ones (a typo like `"payments, sre"` would otherwise silently lock everyone
    /// out).
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Allow, AccessError> {
        let mut allow = Allow::default();
        for item in list {
            match item.as_ref() {
                "anyone" => allow.anyone = true,
                "authenticated" => allow.authenticated = true,
                group if valid_group_name(group) => {
                    if !allow.groups.iter().any(|g| g == group) {
                        allow.groups.push(group.to_owned());
                    }
                }
                group => {
                    return Err(AccessError::InvalidGroup {
                        group: group.to_owned(),
                    })
                }
            }
        }
        Ok(allow)
    }

    pub fn permits(&self, who: &Principal) -> bool {
        if self.anyone {
            return true;
        }
        match who {
            Principal::Anonymous => false,
            Principal::Token(id) => {
                self.authenticated || self.groups.iter().any(|g| id.in_group(g))
            }
        }
    }

    pub fn is_anyone(&self) -> bool {
        self.anyone
    }

    pub fn is_nobody(&self) -> bool {
        !self.anyone && !self.authenticated && self.groups.is_empty()
    }
}

impl TryFrom<Vec<String>> for Allow {
    type Error = AccessError;

    fn try_from(list: Vec<String>) -> Result<Allow, AccessError> {
        Allow::parse(&list)
    }
}

impl From<Allow> for Vec<String> {
    fn from(allow: Allow) -> Vec<String> {
        let mut list = Vec::with_capacity(allow.groups.len() + 2);
        if allow.anyone {
            list.push("anyone".to_owned());
        }
        if allow.authenticated {
            list.push("authenticated".to_owned());
        }
        list.extend(allow.groups);
        list
    }
}

/// What a client that may not read a module is told.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDeny {
    /// 404, as if the module did not exist: the client learns nothing about the path.
    NotFound,
    /// 401 asking for credentials if it sent none, 403 if its token is not enough. The default,
    /// because it tells a user what is wrong; use `NotFound` for paths whose existence is
    /// itself confidential.
    #[default]
    Forbidden,
}

/// One rule: which modules (a GOPRIVATE-style pattern) and who may read them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    pub pattern: String,
    pub allow: Allow,
    /// Overrides [`AccessRules`]' `on_deny` for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_deny: Option<OnDeny>,
}

/// How a refused request is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyStatus {
    /// 401 with `WWW-Authenticate`: no credentials, and a token could get in.
    Unauthorized,
    /// 403: credentials (or none) that will not get in.
    Forbidden,
    /// 404: hides that the module exists.
    NotFound,
}

/// The outcome of an access check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny {
        status: DenyStatus,
        /// The deciding rule's index in configuration order; `None` for the default.
        rule: Option<usize>,
    },
}

/// The configuration shape of [`AccessRules`], before validation.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccessRules {
    #[serde(default = "Allow::anyone")]
    default_allow: Allow,
    #[serde(default)]
    on_deny: OnDeny,
    #[serde(default, rename = "rule")]
    rules: Vec<AccessRule>,
}

/// The access rules, validated. Deserializes from
///
/// ```toml
/// default_allow = ["authenticated"]   # default ["anyone"]
/// on_deny = "forbidden"               # or "not_found"; the default is "forbidden"
///
/// [[rule]]
/// pattern = "gitlab.corp.example/payments/*"
/// allow = ["payments", "sre"]
/// on_deny = "not_found"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawAccessRules", into = "RawAccessRules")]
pub struct AccessRules {
    default_allow: Allow,
    on_deny: OnDeny,
    rules: Vec<AccessRule>,
    /// `rules[i].pattern` in lowercase, for case-insensitive matching.
    folded: Vec<String>,
}

impl Default for AccessRules {
    fn default() -> Self {
        AccessRules::open()
    }
}

impl AccessRules {
    /// Everything readable by anyone: no token needed (the built-in default).
    pub fn open() -> AccessRules {
        AccessRules {
            default_allow: Allow::anyone(),
            on_deny: OnDeny::Forbidden,
            rules: Vec::new(),
            folded: Vec::new(),
        }
    }

    /// Validates the rules: every pattern must be able to match something, and must not contain
    /// whitespace (`"a, b"` would silently leave `b` unprotected: GOPRIVATE syntax does not trim).
    pub fn new(
        default_allow: Allow,
        on_deny: OnDeny,
        rules: Vec<AccessRule>,
    ) -> Result<AccessRules, AccessError> {
        for (i, rule) in rules.iter().enumerate() {
            let fail = |reason| AccessError::InvalidRule {
                index: i + 1,
                pattern: rule.pattern.clone(),
                reason,
            };
            if rule.pattern.contains(char::is_whitespace) {
                return Err(fail(
                    "the pattern contains whitespace (separate patterns with commas only)",
                ));
            }
            if rule
                .pattern
                .split(',')
                .all(|p| p.trim_end_matches('/').is_empty())
            {
                return Err(fail("the pattern is empty"));
            }
        }
        let folded = rules
            .iter()
            .map(|r| r.pattern.to_ascii_lowercase())
            .collect();
        Ok(AccessRules {
            default_allow,
            on_deny,
            rules,
            folded,
        })
    }

    pub fn default_allow(&self) -> &Allow {
        &self.default_allow
    }

    pub fn on_deny(&self) -> OnDeny {
        self.on_deny
    }

    pub fn rules(&self) -> &[AccessRule] {
        &self.rules
    }

    /// Whether any request could be refused (otherwise the server need not look at credentials).
    pub fn is_open(&self) -> bool {
        self.default_allow.is_anyone() && self.rules.iter().all(|r| r.allow.is_anyone())
    }

    /// The index of the first rule matching `module`.
    fn deciding_rule(&self, module: &str) -> Option<usize> {
        let module: Cow<str> = if module.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(module.to_ascii_lowercase())
        } else {
            Cow::Borrowed(module)
        };
        self.folded
            .iter()
            .position(|pattern| match_prefix_patterns(pattern, &module))
    }

    /// May `who` read `module`? The first matching rule decides, else the default.
    pub fn check(&self, who: &Principal, module: &str) -> Decision {
        match self.deciding_rule(module) {
            Some(i) => {
                let rule = &self.rules[i];
                decide(
                    who,
                    &rule.allow,
                    rule.on_deny.unwrap_or(self.on_deny),
                    Some(i),
                )
            }
            None => self.check_unscoped(who),
        }
    }

    /// For requests that name no module (checksum-database tiles): the default rule decides.
    pub fn check_unscoped(&self, who: &Principal) -> Decision {
        decide(who, &self.default_allow, self.on_deny, None)
    }

    /// Whether `module` is readable by fewer than everybody; such fetches go to the audit log.
    pub fn restricted(&self, module: &str) -> bool {
        let allow = match self.deciding_rule(module) {
            Some(i) => &self.rules[i].allow,
            None => &self.default_allow,
        };
        !allow.is_anyone()
    }
}

fn decide(who: &Principal, allow: &Allow, on_deny: OnDeny, rule: Option<usize>) -> Decision {
    if allow.permits(who) {
        return Decision::Allow;
    }
    let status = match on_deny {
        // Anonymous or not: a client that may not read a path must not learn that it exists.
        OnDeny::NotFound => DenyStatus::NotFound,
        // Asking for credentials only makes sense if some token could get in.
        OnDeny::Forbidden => match who {
            Principal::Anonymous if !allow.is_nobody() => DenyStatus::Unauthorized,
            _ => DenyStatus::Forbidden,
        },
    };
    Decision::Deny { status, rule }
}

impl TryFrom<RawAccessRules> for AccessRules {
    type Error = AccessError;

    fn try_from(raw: RawAccessRules) -> Result<AccessRules, AccessError> {
        AccessRules::new(raw.default_allow, raw.on_deny, raw.rules)
    }
}

impl From<AccessRules> for RawAccessRules {
    fn from(rules: AccessRules) -> RawAccessRules {
        RawAccessRules {
            default_allow: rules.default_allow,
            on_deny: rules.on_deny,
            rules: rules.rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::token::Identity;

    fn token(name: &str, groups: &[&str]) -> Principal {
        Principal::Token(Arc::new(Identity {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }))
    }

    fn rule(pattern: &str, allow: &[&str], on_deny: Option<OnDeny>) -> AccessRule {
        AccessRule {
            pattern: pattern.into(),
            allow: Allow::parse(allow).unwrap(),
            on_deny,
        }
    }

    fn deny(status: DenyStatus, rule: Option<usize>) -> Decision {
        Decision::Deny { status, rule }
    }

    #[test]
    fn open_allows_everything() {
        let r = AccessRules::open();
        assert!(r.is_open());
        assert_eq!(
            r.check(&Principal::Anonymous, "x.example/m"),
            Decision::Allow
        );
        assert_eq!(r.check_unscoped(&Principal::Anonymous), Decision::Allow);
        assert!(!r.restricted("x.example/m"));
    }

    #[test]
    fn decision_table() {
        let anon = Principal::Anonymous;
        let member = token("ci", &["payments"]);
        let outsider = token("bob", &["web"]);
        for default_on_deny in [OnDeny::NotFound, OnDeny::Forbidden] {
            for rule_on_deny in [None, Some(OnDeny::NotFound), Some(OnDeny::Forbidden)] {
                let r = AccessRules::new(
                    Allow::parse(&["authenticated"]).unwrap(),
                    default_on_deny,
                    vec![rule("corp.example/pay", &["payments"], rule_on_deny)],
                )
                .unwrap();
                // What a denied client gets, by on_deny and by whether it sent a token.
                let status = |on_deny, anonymous| match (on_deny, anonymous) {
                    (OnDeny::NotFound, _) => DenyStatus::NotFound,
                    (OnDeny::Forbidden, true) => DenyStatus::Unauthorized,
                    (OnDeny::Forbidden, false) => DenyStatus::Forbidden,
                };
                let effective = rule_on_deny.unwrap_or(default_on_deny);

                // The rule decides: in the group, not in it, anonymous.
                let m = "corp.example/pay/svc";
                assert_eq!(r.check(&member, m), Decision::Allow);
                assert_eq!(
                    r.check(&outsider, m),
                    deny(status(effective, false), Some(0))
                );
                assert_eq!(r.check(&anon, m), deny(status(effective, true), Some(0)));

                // The default ("authenticated") decides.
                let p = "github.com/pkg/errors";
                assert_eq!(r.check(&member, p), Decision::Allow);
                assert_eq!(r.check(&outsider, p), Decision::Allow);
                let want = deny(status(default_on_deny, true), None);
                assert_eq!(r.check(&anon, p), want);
                assert_eq!(r.check_unscoped(&anon), want);
                assert_eq!(r.check_unscoped(&outsider), Decision::Allow);
                assert!(r.restricted(m) && r.restricted(p));
            }
        }
    }

    #[test]
    fn first_match_wins_and_specials() {
        let r = AccessRules::new(
            Allow::nobody(),
            OnDeny::Forbidden,
            vec![
                rule("corp.example/pay/public", &["anyone"], None),
                rule(
                    "corp.example/pay",
                    &["payments", "sre"],
                    Some(OnDeny::NotFound),
                ),
                rule("corp.example", &["authenticated"], None),
            ],
        )
        .unwrap();
        let anon = Principal::Anonymous;
        let sre = token("oncall", &["sre"]);
        let web = token("bob", &["web"]);

        // The narrow rule comes first and wins over the broader ones below it.
        assert_eq!(
            r.check(&anon, "corp.example/pay/public/v2"),
            Decision::Allow
        );
        assert!(!r.restricted("corp.example/pay/public"));
        assert_eq!(r.check(&sre, "corp.example/pay/x"), Decision::Allow);
        assert_eq!(
            r.check(&web, "corp.example/pay/x"),
            deny(DenyStatus::NotFound, Some(1))
        );
        assert_eq!(r.check(&web, "corp.example/web"), Decision::Allow);
        assert_eq!(
            r.check(&anon, "corp.example/web"),
            deny(DenyStatus::Unauthorized, Some(2))
        );
        // Prefix match is by path element: corp.example.evil.com is not corp.example.
        assert_eq!(
            r.check(&sre, "corp.example.evil.com/x"),
            deny(DenyStatus::Forbidden, None)
        );
        // Nobody: no point asking an anonymous client for credentials.
        assert_eq!(
            r.check(&anon, "github.com/x/y"),
            deny(DenyStatus::Forbidden, None)
        );
        assert!(r.restricted("github.com/x/y"));
        assert!(!r.is_open());
    }

    #[test]
    fn matching_ignores_case() {
        let r = AccessRules::new(
            Allow::anyone(),
            OnDeny::NotFound,
            vec![rule("github.com/Corp/*", &["corp"], None)],
        )
        .unwrap();
        let anon = Principal::Anonymous;
        for m in ["github.com/corp/secret", "GitHub.com/CORP/Secret/v2"] {
            assert_eq!(
                r.check(&anon, m),
                deny(DenyStatus::NotFound, Some(0)),
                "{m}"
            );
        }
        assert_eq!(r.check(&anon, "github.com/other/x"), Decision::Allow);
    }

    #[test]
    fn validation() {
        let bad = |pattern: &str| {
            AccessRules::new(
                Allow::anyone(),
                OnDeny::Forbidden,
                vec![rule(pattern, &["g"], None)],
            )
            .unwrap_err()
            .to_string()
        };
        assert!(bad("").contains("#1"));
        assert!(bad(",/").contains("empty"));
        assert!(bad("a.example, b.example").contains("whitespace"));
        assert!(Allow::parse(&["payments, sre"]).is_err());
        assert!(Allow::parse(&[""]).is_err());
        assert!(Allow::parse::<&str>(&[]).unwrap().is_nobody());
    }

    #[test]
    fn deserializes_from_toml() {
        let r: AccessRules = toml::from_str(
            r#"
            default_allow = ["authenticated"]
            [[rule]]
            pattern = "corp.example/pay"
            allow = ["payments", "sre", "payments"]
            on_deny = "not_found"
            "#,
        )
        .unwrap();
        assert_eq!(r.on_deny(), OnDeny::Forbidden);
        assert_eq!(r.rules()[0].on_deny, Some(OnDeny::NotFound));
        assert_eq!(
            Vec::<String>::from(r.rules()[0].allow.clone()),
            ["payments", "sre"]
        );
        let back: AccessRules = toml::from_str(&toml::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);

        let defaults: AccessRules = toml::from_str("").unwrap();
        assert_eq!(defaults, AccessRules::open());
        assert!(toml::from_str::<AccessRules>("[[rule]]\npattern = \"\"\nallow = []").is_err());
        assert!(toml::from_str::<AccessRules>("on_deny = \"teapot\"").is_err());
    }
}
