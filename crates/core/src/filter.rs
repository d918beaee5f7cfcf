//! What may be fetched at all: allow/deny rules by module-path pattern and version constraint
//! (block a module, block versions below a fixed release, allow only listed hosts).
//!
//! Rules are tried in order; the first rule whose pattern matches the module path and whose
//! version constraint (if any) holds for the version decides. Nothing matching means
//! [`Filter::default`]. A denied version is refused with a message naming the rule, and is never
//! fetched, cached or listed.
//!
//! Questions about a module without a version (`/@v/list`, `/@latest`) are answered per version:
//! the list keeps only versions the rules allow, and `@latest` is refused when the version it
//! resolves to is. The module as a whole is refused only when no version could be allowed: its
//! first matching rule without a constraint denies, or the default denies and no allow rule
//! matches the module at all.
//!
//! An allow rule may also ask for a minimum release age (`min_age`): the versions it decides are
//! served only once their `.info` time is that old ([`Filter::min_age`]). Supply-chain attacks
//! on public modules are usually found within days, so a week's delay keeps most of them out.

use std::fmt;
use std::time::Duration;

use agora_gomod::module::match_prefix_patterns;
use agora_gomod::semver;
use bytes::Bytes;

/// What a rule does to what it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    pub fn parse(s: &str) -> Result<Action, String> {
        match s {
            "allow" => Ok(Action::Allow),
            "deny" => Ok(Action::Deny),
            other => Err(format!("unknown action {other:?} (expected allow or deny)")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// A conjunction of comparisons against Go semantic versions, e.g. `>= v1.0.0, < v1.2.3`.
/// Comparison follows Go's semver order (pre-releases and pseudo-versions sort before their
/// release; `+incompatible` is ignored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionConstraint {
    text: String,
    clauses: Vec<(Op, String)>,
}

impl VersionConstraint {
    pub fn parse(text: &str) -> Result<VersionConstraint, String> {
        let mut clauses = Vec::new();
        for clause in text.split(',') {
            let clause = clause.trim();
            let (op, rest) = [
                ("<=", Op::Le),
                (">=", Op::Ge),
                ("!=", Op::Ne),
                ("<", Op::Lt),
                (">", Op::Gt),
                ("=", Op::Eq),
            ]
            .iter()
            .find_map(|(tok, op)| clause.strip_prefix(tok).map(|r| (*op, r)))
            .ok_or_else(|| {
                format!(
                    "version constraint {text:?}: {clause:?} must start with <, <=, >, >=, = or !="
                )
            })?;
            let version = rest.trim();
            if !semver::is_valid(version) {
                return Err(format!(
                    "version constraint {text:?}: {version:?} is not a semantic version (like v1.2.3)"
                ));
            }
            clauses.push((op, version.to_owned()));
        }
        Ok(VersionConstraint {
            text: text.trim().to_owned(),
            clauses,
        })
    }

    pub fn matches(&self, version: &str) -> bool {
        self.clauses.iter().all(|(op, bound)| {
            let ord = semver::compare(version, bound);
            match op {
                Op::Lt => ord.is_lt(),
                Op::Le => ord.is_le(),
                Op::Gt => ord.is_gt(),
                Op::Ge => ord.is_ge(),
                Op::Eq => ord.is_eq(),
                Op::Ne => ord.is_ne(),
            }
        })
    }
}

impl fmt::Display for VersionConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One allow/deny rule.
#[derive(Clone, Debug)]
pub struct FilterRule {
    /// Module-path patterns in GOPRIVATE syntax (comma-separated globs matching a path prefix).
    pub pattern: String,
    /// When set, the rule applies only to versions satisfying it.
    pub versions: Option<VersionConstraint>,
    pub action: Action,
    /// Shown to clients when the rule denies (e.g. an advisory ID).
    pub reason: String,
    /// For allow rules: versions are served only once this old (by their `.info` time).
    pub min_age: Option<Duration>,
}

/// A minimum release age that applies to a version: [`Filter::min_age`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinAge {
    pub age: Duration,
    /// Names the rule, for the client: `filter rule 2 (allow golang.org/x min_age 7d)`.
    pub rule: String,
}

/// Why something was refused: a message naming the rule, for the client (the caller names the
/// module or version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked(pub String);

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ordered rules and the default. [`Filter::default`] allows everything.
#[derive(Clone, Debug)]
pub struct Filter {
    default: Action,
    rules: Vec<FilterRule>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            default: Action::Allow,
            rules: Vec::new(),
        }
    }
}

impl Filter {
    pub fn new(default: Action, rules: Vec<FilterRule>) -> Result<Filter, String> {
        if let Some((i, _)) = rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.pattern.trim().is_empty())
        {
            return Err(format!("filter rule {}: empty pattern", i + 1));
        }
        if let Some((i, _)) = rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.action == Action::Deny && r.min_age.is_some())
        {
            return Err(format!(
                "filter rule {}: min_age applies to allow rules only (a deny rule refuses every age)",
                i + 1
            ));
        }
        Ok(Filter { default, rules })
    }

    /// Whether every request passes (no rules, default allow): lets callers skip the work.
    pub fn is_open(&self) -> bool {
        self.default == Action::Allow && self.rules.is_empty()
    }

    /// Whether `module@version` may be fetched and served.
    pub fn check_version(&self, module: &str, version: &str) -> Result<(), Blocked> {
        let found = self.rules.iter().enumerate().find(|(_, r)| {
            match_prefix_patterns(&r.pattern, module)
                && r.versions.as_ref().is_none_or(|c| c.matches(version))
        });
        match found {
            Some((_, r)) if r.action == Action::Allow => Ok(()),
            Some((i, r)) => Err(self.blocked(Some((i, r)))),
            None if self.default == Action::Allow => Ok(()),
            None => Err(self.blocked(None)),
        }
    }

    /// The minimum release age for `module@version`, when the rule deciding it asks for one.
    pub fn min_age(&self, module: &str, version: &str) -> Option<MinAge> {
        if !self.has_min_age(module) {
            return None;
        }
        let (i, r) = self.rules.iter().enumerate().find(|(_, r)| {
            match_prefix_patterns(&r.pattern, module)
                && r.versions.as_ref().is_none_or(|c| c.matches(version))
        })?;
        let age = r.min_age.filter(|_| r.action == Action::Allow)?;
        Some(MinAge {
            age,
            rule: format!(
                "filter rule {} (allow {} min_age {})",
                i + 1,
                r.pattern,
                humantime::format_duration(age)
            ),
        })
    }

    /// Whether a rule with a minimum release age matches `module`: cheap, so callers skip the
    /// work of finding versions' times for every other module.
    pub fn has_min_age(&self, module: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.min_age.is_some() && match_prefix_patterns(&r.pattern, module))
    }

    /// Whether any version of `module` could be allowed (see the module docs).
    pub fn check_module(&self, module: &str) -> Result<(), Blocked> {
        let mut any_allow = false;
        for (i, r) in self.rules.iter().enumerate() {
            if !match_prefix_patterns(&r.pattern, module) {
                continue;
            }
            if r.versions.is_none() {
                return match r.action {
                    Action::Allow => Ok(()),
                    Action::Deny => Err(self.blocked(Some((i, r)))),
                };
            }
            any_allow |= r.action == Action::Allow;
        }
        if self.default == Action::Allow || any_allow {
            Ok(())
        } else {
            Err(self.blocked(None))
        }
    }

    /// A `/@v/list` body with the versions the rules deny removed.
    pub fn filter_list(&self, module: &str, body: &Bytes) -> Bytes {
        if self.is_open() {
            return body.clone();
        }
        retain_versions(body, |v| self.check_version(module, v).is_ok())
    }

    fn blocked(&self, rule: Option<(usize, &FilterRule)>) -> Blocked {
        match rule {
            Some((i, r)) => {
                let mut msg = format!(
                    "blocked by filter rule {} ({} {}",
                    i + 1,
                    r.action.as_str(),
                    r.pattern
                );
                if let Some(c) = &r.versions {
                    msg.push_str(&format!(" versions {c}"));
                }
                msg.push(')');
                if !r.reason.is_empty() {
                    msg.push_str(&format!(": {}", r.reason));
                }
                Blocked(msg)
            }
            None => Blocked(
                "blocked by the filter's default rule (deny): no allow rule matches".to_owned(),
            ),
        }
    }
}

/// A `/@v/list` body with only the lines whose version `keep` accepts (blank lines dropped).
/// Every policy that hides versions from lists (filter rules, quarantines, minimum ages) goes
/// through here.
pub(crate) fn retain_versions(body: &[u8], mut keep: impl FnMut(&str) -> bool) -> Bytes {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let version = line.split_whitespace().next().unwrap_or("");
        if !version.is_empty() && keep(version) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, versions: Option<&str>, action: Action, reason: &str) -> FilterRule {
        FilterRule {
            pattern: pattern.into(),
            versions: versions.map(|v| VersionConstraint::parse(v).unwrap()),
            action,
            reason: reason.into(),
            min_age: None,
        }
    }

    #[test]
    fn min_age_comes_from_the_deciding_allow_rule() {
        let week = Duration::from_secs(7 * 86_400);
        let f = Filter::new(
            Action::Allow,
            vec![
                rule("corp.example", None, Action::Allow, ""),
                FilterRule {
                    min_age: Some(week),
                    ..rule("golang.org/x", Some("< v1.0.0"), Action::Allow, "")
                },
                rule("github.com/bad", None, Action::Deny, ""),
                FilterRule {
                    min_age: Some(week),
                    ..rule("*", None, Action::Allow, "")
                },
            ],
        )
        .unwrap();
        let m = f.min_age("golang.org/x/text", "v0.3.0").unwrap();
        assert_eq!(m.age, week);
        assert_eq!(m.rule, "filter rule 2 (allow golang.org/x min_age 7days)");
        // The last rule catches what rule 2's constraint leaves out.
        assert_eq!(
            f.min_age("golang.org/x/text", "v1.0.0")
                .unwrap()
                .rule
                .split(' ')
                .nth(2),
            Some("4")
        );
        assert_eq!(
            f.min_age("corp.example/lib", "v1.0.0"),
            None,
            "rule 1 decides"
        );
        assert_eq!(
            f.min_age("github.com/bad/m", "v1.0.0"),
            None,
            "a deny rule denies outright"
        );
        assert!(!Filter::default().has_min_age("golang.org/x/text"));
        let deny_with_age = FilterRule {
            min_age: Some(week),
            ..rule("github.com/bad", None, Action::Deny, "")
        };
        assert!(Filter::new(Action::Allow, vec![deny_with_age]).is_err());
    }

    #[test]
    fn constraints() {
        let c = VersionConstraint::parse(">= v1.0.0, < v1.2.3").unwrap();
        assert!(c.matches("v1.0.0"));
        assert!(c.matches("v1.2.2"));
        assert!(c.matches("v1.2.3-rc.1"));
        assert!(!c.matches("v1.2.3"));
        assert!(!c.matches("v0.9.0"));
        assert!(!c.matches("v0.0.0-20200101000000-abcdefabcdef"));
        let c = VersionConstraint::parse("<v2.0.0").unwrap();
        assert!(!c.matches("v2.0.0+incompatible"));
        assert!(c.matches("v1.9.9"));
        assert!(VersionConstraint::parse("= v1.0.0")
            .unwrap()
            .matches("v1.0.0"));
        assert!(VersionConstraint::parse("!= v1.0.0")
            .unwrap()
            .matches("v1.0.1"));
        assert!(VersionConstraint::parse("~v1").is_err());
        assert!(VersionConstraint::parse("< 1.2.3").is_err());
        assert!(VersionConstraint::parse("").is_err());
        assert!(VersionConstraint::parse("< v1.0.0,").is_err());
    }

    #[test]
    fn first_matching_rule_decides() {
        let f = Filter::new(
            Action::Allow,
            vec![
                rule("github.com/evil", None, Action::Deny, "malware"),
                rule(
                    "github.com/old/lib",
                    Some("< v1.2.3"),
                    Action::Deny,
                    "CVE-2026-0001",
                ),
            ],
        )
        .unwrap();
        let err = f.check_version("github.com/evil/x", "v1.0.0").unwrap_err();
        assert_eq!(
            err.0,
            "blocked by filter rule 1 (deny github.com/evil): malware"
        );
        assert!(f.check_module("github.com/evil/x").is_err());
        assert!(f.check_module("github.com/evilcorp/x").is_ok());
        let err = f.check_version("github.com/old/lib", "v1.2.2").unwrap_err();
        assert!(err.0.contains("rule 2"), "{err}");
        assert!(err.0.contains("versions < v1.2.3"), "{err}");
        assert!(f.check_version("github.com/old/lib", "v1.2.3").is_ok());
        assert!(f.check_module("github.com/old/lib").is_ok());
        assert_eq!(
            &f.filter_list(
                "github.com/old/lib",
                &Bytes::from_static(b"v1.0.0\nv1.2.3\nv1.3.0\n")
            )[..],
            b"v1.2.3\nv1.3.0\n"
        );
    }

    #[test]
    fn allow_list_of_hosts() {
        let f = Filter::new(
            Action::Deny,
            vec![
                rule("github.com,golang.org/x", None, Action::Allow, ""),
                rule("example.com/m", Some(">= v2.0.0"), Action::Allow, ""),
            ],
        )
        .unwrap();
        assert!(f.check_version("github.com/a/b", "v1.0.0").is_ok());
        assert!(f.check_version("golang.org/x/text", "v0.3.0").is_ok());
        let err = f.check_version("gopkg.in/yaml.v3", "v3.0.0").unwrap_err();
        assert!(err.0.contains("default rule"), "{err}");
        assert!(f.check_module("gopkg.in/yaml.v3").is_err());
        // A module allowed only from some version on: listed, but only from there.
        assert!(f.check_module("example.com/m").is_ok());
        assert!(f.check_version("example.com/m", "v1.0.0").is_err());
        assert!(f.check_version("example.com/m", "v2.1.0").is_ok());
    }

    #[test]
    fn empty_pattern_is_an_error() {
        assert!(Filter::new(Action::Allow, vec![rule(" ", None, Action::Deny, "")]).is_err());
        assert!(Filter::default().is_open());
    }
}
