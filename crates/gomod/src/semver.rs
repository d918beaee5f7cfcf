//! Go's dialect of semantic versioning (x/mod `semver`).
//!
//! Differences from semver.org that matter here: the leading `v` is required, and the shorthands
//! `v1` and `v1.2` are valid (standing for `v1.0.0` and `v1.2.0`), but a shorthand cannot carry a
//! pre-release or build suffix. Numbers have no leading zeros and no size limit, so they are compared
//! as digit strings, never parsed into integers. Build metadata is ignored when comparing.
//!
//! Where Go returns `""` for "invalid", these functions return `None`.

use std::cmp::Ordering;

/// The pieces of a valid version, borrowed from the input.
#[derive(Debug, Clone, Copy)]
struct Parsed<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    /// What a shorthand omitted: `".0.0"` for `v1`, `".0"` for `v1.2`, else `""`.
    short: &'static str,
    /// Including the leading `-`, or empty.
    prerelease: &'a str,
    /// Including the leading `+`, or empty.
    build: &'a str,
}

fn parse(v: &str) -> Option<Parsed<'_>> {
    let rest = v.strip_prefix('v')?;
    let (major, rest) = parse_int(rest)?;
    let Some(rest) = non_empty(rest) else {
        return Some(Parsed {
            major,
            minor: "0",
            patch: "0",
            short: ".0.0",
            prerelease: "",
            build: "",
        });
    };
    let (minor, rest) = parse_int(rest.strip_prefix('.')?)?;
    let Some(rest) = non_empty(rest) else {
        return Some(Parsed {
            major,
            minor,
            patch: "0",
            short: ".0",
            prerelease: "",
            build: "",
        });
    };
    let (patch, mut rest) = parse_int(rest.strip_prefix('.')?)?;
    let mut prerelease = "";
    if rest.starts_with('-') {
        (prerelease, rest) = parse_prerelease(rest)?;
    }
    let mut build = "";
    if rest.starts_with('+') {
        (build, rest) = parse_build(rest)?;
    }
    if !rest.is_empty() {
        return None;
    }
    Some(Parsed {
        major,
        minor,
        patch,
        short: "",
        prerelease,
        build,
    })
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// A decimal number without leading zeros, then the rest.
fn parse_int(v: &str) -> Option<(&str, &str)> {
    let len = v.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 || (len > 1 && v.starts_with('0')) {
        return None;
    }
    Some(v.split_at(len))
}

/// `-` followed by dot-separated identifiers, up to a `+` or the end.
fn parse_prerelease(v: &str) -> Option<(&str, &str)> {
    let end = v.find('+').unwrap_or(v.len());
    let (pre, rest) = v.split_at(end);
    let idents = pre.strip_prefix('-')?;
    idents
        .split('.')
        .all(|id| is_ident(id) && !is_bad_num(id))
        .then_some((pre, rest))
}

/// `+` followed by dot-separated identifiers, to the end.
fn parse_build(v: &str) -> Option<(&str, &str)> {
    let idents = v.strip_prefix('+')?;
    idents.split('.').all(is_ident).then_some((v, ""))
}

fn is_ident(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// A numeric identifier with a leading zero, which semver forbids in pre-releases.
fn is_bad_num(id: &str) -> bool {
    is_num(id) && id.len() > 1 && id.starts_with('0')
}

fn is_num(id: &str) -> bool {
    id.bytes().all(|c| c.is_ascii_digit())
}

/// Reports whether `v` is a valid Go semantic version.
pub fn is_valid(v: &str) -> bool {
    parse(v).is_some()
}

/// The canonical form of `v` as the module system uses it (x/mod `module.CanonicalVersion`):
/// shorthands are expanded and build metadata is dropped, **except** `+incompatible`, which is kept
/// because it is part of a module version's identity (`v2.0.0+incompatible`).
///
/// `None` if `v` is invalid. For Go's plain `semver.Canonical`, see [`canonical_semver`].
pub fn canonical(v: &str) -> Option<String> {
    let mut c = canonical_semver(v)?;
    if build(v) == Some("+incompatible") {
        c.push_str("+incompatible");
    }
    Some(c)
}

/// Go's `semver.Canonical`: shorthands expanded, all build metadata (even `+incompatible`) dropped.
pub fn canonical_semver(v: &str) -> Option<String> {
    let p = parse(v)?;
    let without_build = &v[..v.len() - p.build.len()];
    Some(format!("{without_build}{}", p.short))
}

/// The major version prefix: `"v2"` for `v2.1.0`. `None` if `v` is invalid.
pub fn major(v: &str) -> Option<&str> {
    let p = parse(v)?;
    Some(&v[..1 + p.major.len()])
}

/// The `vMAJOR.MINOR` prefix: `"v2.1"` for `v2.1.0` and also for the shorthand `v2.1`; `"v2.0"` for
/// `v2`. `None` if `v` is invalid.
pub fn major_minor(v: &str) -> Option<String> {
    let p = parse(v)?;
    Some(format!("v{}.{}", p.major, p.minor))
}

/// The pre-release suffix including its `-` (`"-rc.1"`), or `None` if there is none or `v` is invalid.
pub fn prerelease(v: &str) -> Option<&str> {
    parse(v).and_then(|p| non_empty(p.prerelease))
}

/// The build suffix including its `+` (`"+incompatible"`), or `None` if there is none or `v` is
/// invalid.
pub fn build(v: &str) -> Option<&str> {
    parse(v).and_then(|p| non_empty(p.build))
}

/// Compares two versions by semver precedence. An invalid version is less than every valid one, and
/// two invalid versions are equal (as in Go). Build metadata does not count.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => compare_int(a.major, b.major)
            .then_with(|| compare_int(a.minor, b.minor))
            .then_with(|| compare_int(a.patch, b.patch))
            .then_with(|| compare_prerelease(a.prerelease, b.prerelease)),
    }
}

/// The greater of two versions by [`compare`]; `b` on a tie.
///
/// Unlike Go's `semver.Max`, this returns one of the inputs unchanged rather than its canonical
/// form; call [`canonical`] on the result if that is wanted.
pub fn max<'a>(a: &'a str, b: &'a str) -> &'a str {
    if compare(a, b) == Ordering::Greater {
        a
    } else {
        b
    }
}

/// Sorts versions in increasing semver order, breaking ties (such as `v1` and `v1.0.0`, or different
/// build suffixes) by plain string order, like Go's `semver.Sort`. Invalid versions sort first.
pub fn sort(versions: &mut [String]) {
    versions.sort_by(|a, b| compare(a, b).then_with(|| a.cmp(b)));
}

/// Compares decimal strings without leading zeros: longer is larger, else lexical.
fn compare_int(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn compare_prerelease(a: &str, b: &str) -> Ordering {
    // A version without a pre-release has higher precedence than one with.
    match (a.strip_prefix('-'), b.strip_prefix('-')) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => {
            let mut a_ids = a.split('.');
            let mut b_ids = b.split('.');
            loop {
                match (a_ids.next(), b_ids.next()) {
                    (None, None) => return Ordering::Equal,
                    // A larger set of identifiers wins when all before are equal.
                    (None, Some(_)) => return Ordering::Less,
                    (Some(_), None) => return Ordering::Greater,
                    (Some(x), Some(y)) => {
                        let ord = compare_ident(x, y);
                        if ord != Ordering::Equal {
                            return ord;
                        }
                    }
                }
            }
        }
    }
}

/// Numeric identifiers compare numerically and below alphanumeric ones, which compare in ASCII order.
fn compare_ident(x: &str, y: &str) -> Ordering {
    match (is_num(x), is_num(y)) {
        (true, true) => compare_int(x, y),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x.cmp(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, canonical_semver or "" if invalid), in increasing order; equal neighbours share a
    /// canonical form.
    const ORDERED: &[(&str, &str)] = &[
        ("bad", ""),
        ("v1-alpha.beta.gamma", ""),
        ("v1-pre", ""),
        ("v1+meta", ""),
        ("v1-pre+meta", ""),
        ("v1.2-pre", ""),
        ("v1.2+meta", ""),
        ("v1.2-pre+meta", ""),
        ("v1.0.0-alpha", "v1.0.0-alpha"),
        ("v1.0.0-alpha.1", "v1.0.0-alpha.1"),
        ("v1.0.0-alpha.beta", "v1.0.0-alpha.beta"),
        ("v1.0.0-beta", "v1.0.0-beta"),
        ("v1.0.0-beta.2", "v1.0.0-beta.2"),
        ("v1.0.0-beta.11", "v1.0.0-beta.11"),
        ("v1.0.0-rc.1", "v1.0.0-rc.1"),
        ("v1", "v1.0.0"),
        ("v1.0", "v1.0.0"),
        ("v1.0.0", "v1.0.0"),
        ("v1.2", "v1.2.0"),
        ("v1.2.0", "v1.2.0"),
        ("v1.2.3-456", "v1.2.3-456"),
        ("v1.2.3-456.789", "v1.2.3-456.789"),
        ("v1.2.3-456-789", "v1.2.3-456-789"),
        ("v1.2.3-456a", "v1.2.3-456a"),
        ("v1.2.3-pre", "v1.2.3-pre"),
        ("v1.2.3-pre+meta", "v1.2.3-pre"),
        ("v1.2.3-pre.1", "v1.2.3-pre.1"),
        ("v1.2.3-zzz", "v1.2.3-zzz"),
        ("v1.2.3", "v1.2.3"),
        ("v1.2.3+meta", "v1.2.3"),
        ("v1.2.3+meta-pre", "v1.2.3"),
        ("v1.2.3+meta-pre.sha.256a", "v1.2.3"),
    ];

    const INVALID: &[&str] = &[
        "",
        "1.2.3",
        "v",
        "v01",
        "v1.02",
        "v1.2.03",
        "v1.2.3-",
        "v1.2.3-01",
        "v1.2.3-pre..1",
        "v1.2.3-pre.",
        "v1.2.3+",
        "v1.2.3+a..b",
        "v1.2.3+a+b",
        "v1.2.3.4",
        "v1.2.3-pré",
        "v1.2.3 ",
        "V1.2.3",
        "v-1.2.3",
    ];

    #[test]
    fn canonical_and_validity() {
        for &(v, want) in ORDERED {
            assert_eq!(canonical_semver(v).unwrap_or_default(), want, "{v}");
            assert_eq!(is_valid(v), !want.is_empty(), "{v}");
        }
        for v in INVALID {
            assert!(!is_valid(v), "{v:?} should be invalid");
            assert_eq!(canonical(v), None);
            assert_eq!(major(v), None);
            assert_eq!(compare(v, "bad"), Ordering::Equal);
        }
        // Numbers bigger than any integer type are fine.
        let huge = "v123456789012345678901234567890.0.0";
        assert!(is_valid(huge));
        assert_eq!(
            compare(huge, "v99999999999999999999.0.0"),
            Ordering::Greater
        );
    }

    #[test]
    fn canonical_keeps_incompatible() {
        assert_eq!(
            canonical("v2.0.0+incompatible").as_deref(),
            Some("v2.0.0+incompatible")
        );
        assert_eq!(
            canonical_semver("v2.0.0+incompatible").as_deref(),
            Some("v2.0.0")
        );
        assert_eq!(canonical("v2.0.0+other").as_deref(), Some("v2.0.0"));
        assert_eq!(
            canonical("v2.0.0+incompatible.x").as_deref(),
            Some("v2.0.0")
        );
    }

    #[test]
    fn compare_follows_table_order() {
        for (i, &(a, ca)) in ORDERED.iter().enumerate() {
            for (j, &(b, cb)) in ORDERED.iter().enumerate() {
                let want = if ca == cb { Ordering::Equal } else { i.cmp(&j) };
                assert_eq!(compare(a, b), want, "compare({a}, {b})");
            }
        }
    }

    #[test]
    fn parts() {
        /// (v, major, major_minor, prerelease, build)
        type Case = (
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            ("v1", Some("v1"), Some("v1.0"), None, None),
            ("v1.2", Some("v1"), Some("v1.2"), None, None),
            ("v1.2.3", Some("v1"), Some("v1.2"), None, None),
            (
                "v2.3.4-pre.1+build.5",
                Some("v2"),
                Some("v2.3"),
                Some("-pre.1"),
                Some("+build.5"),
            ),
            (
                "v10.0.0+incompatible",
                Some("v10"),
                Some("v10.0"),
                None,
                Some("+incompatible"),
            ),
            ("v1.2.3-", None, None, None, None),
            ("1.2.3", None, None, None, None),
        ];
        for &(v, ma, mm, pre, b) in cases {
            assert_eq!(major(v), ma, "{v}");
            assert_eq!(major_minor(v).as_deref(), mm, "{v}");
            assert_eq!(prerelease(v), pre, "{v}");
            assert_eq!(build(v), b, "{v}");
        }
    }

    #[test]
    fn max_and_sort() {
        assert_eq!(max("v1.2.3", "v1.10.0"), "v1.10.0");
        assert_eq!(max("v1.10.0", "v1.2.3"), "v1.10.0");
        assert_eq!(max("bad", "v0.0.1"), "v0.0.1");
        assert_eq!(max("v1", "v1.0.0"), "v1.0.0", "ties return b");
        let mut vs: Vec<String> = [
            "v1.0.0",
            "v1",
            "bad",
            "v0.9.0",
            "v1.0.0-rc.1",
            "v1.0.0+b",
            "v1.0.0+a",
            "v2.0.0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        sort(&mut vs);
        assert_eq!(
            vs,
            [
                "bad",
                "v0.9.0",
                "v1.0.0-rc.1",
                "v1",
                "v1.0.0",
                "v1.0.0+a",
                "v1.0.0+b",
                "v2.0.0"
            ]
        );
    }
}
