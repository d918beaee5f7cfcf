//! Pseudo-versions (x/mod `module/pseudo.go`): versions that name an untagged commit.
//!
//! The three forms, with `yyyymmddhhmmss` the commit time in UTC and `abcdefabcdef` the 12-hex-digit
//! commit hash prefix:
//!
//! - `vX.0.0-yyyymmddhhmmss-abcdefabcdef` when no earlier version is known;
//! - `vX.Y.(Z+1)-0.yyyymmddhhmmss-abcdefabcdef` when the nearest tag is the release `vX.Y.Z`;
//! - `vX.Y.Z-pre.0.yyyymmddhhmmss-abcdefabcdef` when it is the pre-release `vX.Y.Z-pre`.
//!
//! Each may end in `+incompatible`. A pseudo-version sorts after its base tag and before the next
//! release, which is the whole point of the odd shapes.

use std::fmt;

use crate::error::Error;
use crate::semver;

/// A commit time in UTC, at whole-second precision, as a pseudo-version carries it.
///
/// Constructed from Unix seconds ([`PseudoTime::from_unix`], what git reports) or parsed from the
/// 14-digit `yyyymmddhhmmss` form ([`PseudoTime::parse`]); displayed in that same form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PseudoTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl PseudoTime {
    /// Go's zero `time.Time` (`0001-01-01 00:00:00`), used by zero pseudo-versions.
    pub const ZERO: PseudoTime = PseudoTime {
        year: 1,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
    };

    /// Converts seconds since the Unix epoch to a UTC calendar time. `None` outside years
    /// 0000–9999, which a 14-digit timestamp cannot represent.
    pub fn from_unix(secs: i64) -> Option<PseudoTime> {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days)?;
        Some(PseudoTime {
            year: u16::try_from(year).ok().filter(|&y| y <= 9999)?,
            month,
            day,
            // `rem` is in 0..86400, so these fit.
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        })
    }

    /// Seconds since the Unix epoch.
    pub fn to_unix(self) -> i64 {
        let days = days_from_civil(
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        );
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// Parses exactly 14 ASCII digits `yyyymmddhhmmss` and checks that they name a real time
    /// (month 1–12, a day that exists in that month, hour < 24, minute and second < 60), as Go's
    /// `time.Parse("20060102150405", ...)` does.
    pub fn parse(s: &str) -> Option<PseudoTime> {
        let b = s.as_bytes();
        if b.len() != 14 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let num = |range: std::ops::Range<usize>| {
            b[range]
                .iter()
                .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
        };
        // Each field has at most 4 digits, so the narrowing casts below cannot truncate
        // except for the 2-digit fields, which are < 100.
        let t = PseudoTime {
            year: num(0..4),
            month: num(4..6) as u8,
            day: num(6..8) as u8,
            hour: num(8..10) as u8,
            minute: num(10..12) as u8,
            second: num(12..14) as u8,
        };
        let valid = (1..=12).contains(&t.month)
            && t.day >= 1
            && t.day <= days_in_month(t.year, t.month)
            && t.hour < 24
            && t.minute < 60
            && t.second < 60;
        valid.then_some(t)
    }
}

impl fmt::Display for PseudoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

fn is_leap(year: u16) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> Option<(i64, u8, u8)> {
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era.checked_mul(400)? + i64::from(month <= 2);
    Some((year, month, day))
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Builds a pseudo-version (Go's `module.PseudoVersion`).
///
/// `major` is the major version prefix (`"v2"`; `""` means `"v0"`), `older` the nearest earlier
/// tag or `""` for none, `time` the commit time and `rev` the 12-hex-digit short hash. An
/// `older` with `+incompatible` passes that suffix on.
pub fn pseudo_version(major: &str, older: &str, time: PseudoTime, rev: &str) -> String {
    let major = if major.is_empty() { "v0" } else { major };
    let segment = format!("{time}-{rev}");
    let build = semver::build(older).unwrap_or("");
    let Some(older) = semver::canonical_semver(older) else {
        return format!("{major}.0.0-{segment}");
    };
    if semver::prerelease(&older).is_some() {
        return format!("{older}.0.{segment}{build}");
    }
    // A release vX.Y.Z: the pseudo-version is a pre-release of vX.Y.(Z+1).
    let dot = older.rfind('.').map_or(0, |i| i + 1);
    let (head, patch) = older.split_at(dot);
    format!("{head}{}-0.{segment}{build}", inc_decimal(patch))
}

/// The zero pseudo-version for a major version, `vN.0.0-00010101000000-000000000000`, which Go
/// uses as a placeholder for "some unknown revision".
pub fn zero_pseudo_version(major: &str) -> String {
    pseudo_version(major, "", PseudoTime::ZERO, "000000000000")
}

/// Adds one to a decimal digit string of any length.
fn inc_decimal(decimal: &str) -> String {
    let mut digits = decimal.as_bytes().to_vec();
    for d in digits.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return String::from_utf8(digits).unwrap_or_default();
        }
    }
    // All nines (or empty): carry into a new leading digit.
    let mut out = String::with_capacity(digits.len() + 1);
    out.push('1');
    out.extend(digits.iter().map(|&d| char::from(d)));
    out
}

/// Subtracts one from a decimal digit string; `None` for zero.
fn dec_decimal(decimal: &str) -> Option<String> {
    let mut digits = decimal.as_bytes().to_vec();
    let i = digits.iter().rposition(|&d| d != b'0')?;
    for d in &mut digits[i + 1..] {
        *d = b'9';
    }
    if i == 0 && digits[0] == b'1' && digits.len() > 1 {
        digits.remove(0);
    } else {
        digits[i] -= 1;
    }
    String::from_utf8(digits).ok()
}

/// Reports whether `v` has the form of a pseudo-version (Go's `module.IsPseudoVersion`).
pub fn is_pseudo_version(v: &str) -> bool {
    v.bytes().filter(|&b| b == b'-').count() >= 2 && semver::is_valid(v) && matches_pseudo_form(v)
}

/// Go's `pseudoVersionRE`:
/// `^v[0-9]+\.(0\.0-|\d+\.\d+-([^+]*\.)?0\.)\d{14}-[A-Za-z0-9]+(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`.
///
/// Matched by hand: nothing before the build suffix may contain `+`, and the revision cannot
/// contain `-`, so the string splits deterministically from the right.
fn matches_pseudo_form(v: &str) -> bool {
    let (core, build) = match v.split_once('+') {
        Some((core, build)) => (core, Some(build)),
        None => (v, None),
    };
    if let Some(build) = build {
        let ok = build
            .split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
        if !ok {
            return false;
        }
    }
    let Some((before_rev, rev)) = core.rsplit_once('-') else {
        return false;
    };
    if rev.is_empty() || !rev.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    let Some(head) = before_rev
        .len()
        .checked_sub(14)
        .and_then(|i| before_rev.get(..i))
    else {
        return false;
    };
    if !before_rev.as_bytes()[head.len()..]
        .iter()
        .all(u8::is_ascii_digit)
    {
        return false;
    }
    // `head` is `v\d+\.0\.0-` or `v\d+\.\d+\.\d+-` followed by `0.` or `<anything>.0.`.
    let Some(rest) = head.strip_prefix('v') else {
        return false;
    };
    let Some((numbers, tail)) = rest.split_once('-') else {
        return false;
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    let [_, minor, patch] = parts.as_slice() else {
        return false;
    };
    if !parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    let form1 = tail.is_empty() && *minor == "0" && *patch == "0";
    let form2 = tail == "0." || tail.ends_with(".0.");
    form1 || form2
}

/// The pieces of a pseudo-version: (base, timestamp, rev, build).
fn parse_pseudo(v: &str) -> Result<(&str, &str, &str, &str), Error> {
    if !is_pseudo_version(v) {
        return Err(Error::pseudo(v, "syntax error"));
    }
    let build = semver::build(v).unwrap_or("");
    let core = &v[..v.len() - build.len()];
    // Both splits exist: is_pseudo_version guarantees at least two dashes before the build.
    let (rest, rev) = core.rsplit_once('-').unwrap_or((core, ""));
    let dash = rest.rfind('-').unwrap_or(0);
    let (base, timestamp) = match rest.rfind('.') {
        // "vX.Y.Z-pre.0" or "vX.Y.(Z+1)-0", then ".yyyymmddhhmmss"
        Some(dot) if dot > dash => (&rest[..dot], &rest[dot + 1..]),
        // "vX.0.0", then "-yyyymmddhhmmss"
        _ => (&rest[..dash], &rest[dash + 1..]),
    };
    Ok((base, timestamp, rev, build))
}

/// The version a pseudo-version was derived from (Go's `module.PseudoVersionBase`): `""` for the
/// `vX.0.0-...` form, `vX.Y.Z` for `vX.Y.(Z+1)-0.…`, `vX.Y.Z-pre` for `vX.Y.Z-pre.0.…`; a
/// `+incompatible` suffix is kept.
pub fn pseudo_version_base(v: &str) -> Result<String, Error> {
    let (base, _, _, build) = parse_pseudo(v)?;
    match semver::prerelease(base) {
        None => {
            if !build.is_empty() {
                return Err(Error::pseudo(
                    v,
                    format!("lacks base version, but has build metadata {build:?}"),
                ));
            }
            Ok(String::new())
        }
        Some("-0") => {
            let release = &base[..base.len() - 2];
            let dot = release.rfind('.').map_or(0, |i| i + 1);
            let (head, patch) = release.split_at(dot);
            let patch = dec_decimal(patch).ok_or_else(|| {
                Error::pseudo(
                    v,
                    format!("version before {release} would have negative patch number"),
                )
            })?;
            Ok(format!("{head}{patch}{build}"))
        }
        Some(_) => {
            let pre = base.strip_suffix(".0").unwrap_or(base);
            Ok(format!("{pre}{build}"))
        }
    }
}

/// The commit timestamp of a pseudo-version, `yyyymmddhhmmss` (Go's `module.PseudoVersionTime`,
/// which also rejects timestamps that are not a real time).
pub fn pseudo_version_time(v: &str) -> Result<String, Error> {
    pseudo_version_parsed_time(v).map(|t| t.to_string())
}

/// Like [`pseudo_version_time`], but parsed.
pub fn pseudo_version_parsed_time(v: &str) -> Result<PseudoTime, Error> {
    let (_, timestamp, _, _) = parse_pseudo(v)?;
    PseudoTime::parse(timestamp)
        .ok_or_else(|| Error::pseudo(v, format!("malformed time {timestamp:?}")))
}

/// The revision identifier of a pseudo-version: the 12-hex-digit short hash for pseudo-versions
/// the `go` command makes (Go's `module.PseudoVersionRev`).
pub fn pseudo_version_rev(v: &str) -> Result<String, Error> {
    parse_pseudo(v).map(|(_, _, rev, _)| rev.to_owned())
}

/// Reports whether `v` is the zero pseudo-version of its major version (Go's
/// `module.IsZeroPseudoVersion`).
pub fn is_zero_pseudo_version(v: &str) -> bool {
    v == zero_pseudo_version(semver::major(v).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: PseudoTime = PseudoTime {
        year: 2006,
        month: 1,
        day: 2,
        hour: 15,
        minute: 4,
        second: 5,
    };

    /// (major, older, pseudo-version built from them with time T and rev "abcdefabcdef", base)
    const BUILD: &[(&str, &str, &str, &str)] = &[
        ("", "", "v0.0.0-20060102150405-abcdefabcdef", ""),
        ("v0", "", "v0.0.0-20060102150405-abcdefabcdef", ""),
        ("v1", "", "v1.0.0-20060102150405-abcdefabcdef", ""),
        ("v2", "", "v2.0.0-20060102150405-abcdefabcdef", ""),
        (
            "v1",
            "v1.2.3",
            "v1.2.4-0.20060102150405-abcdefabcdef",
            "v1.2.3",
        ),
        (
            "v1",
            "v1.2.99",
            "v1.2.100-0.20060102150405-abcdefabcdef",
            "v1.2.99",
        ),
        (
            "v1",
            "v1.2.199",
            "v1.2.200-0.20060102150405-abcdefabcdef",
            "v1.2.199",
        ),
        (
            "v1",
            "v1.2",
            "v1.2.1-0.20060102150405-abcdefabcdef",
            "v1.2.0",
        ),
        (
            "v1",
            "v1.2.3-pre",
            "v1.2.3-pre.0.20060102150405-abcdefabcdef",
            "v1.2.3-pre",
        ),
        (
            "v1",
            "v1.3.0-alpha.1",
            "v1.3.0-alpha.1.0.20060102150405-abcdefabcdef",
            "v1.3.0-alpha.1",
        ),
        (
            "v2",
            "v2.1.0+incompatible",
            "v2.1.1-0.20060102150405-abcdefabcdef+incompatible",
            "v2.1.0+incompatible",
        ),
        (
            "v2",
            "v2.1.0-pre+incompatible",
            "v2.1.0-pre.0.20060102150405-abcdefabcdef+incompatible",
            "v2.1.0-pre+incompatible",
        ),
        (
            "v1",
            "v1.2.3+meta",
            "v1.2.4-0.20060102150405-abcdefabcdef+meta",
            "v1.2.3+meta",
        ),
    ];

    #[test]
    fn build_and_parse() {
        for &(major, older, want, base) in BUILD {
            let v = pseudo_version(major, older, T, "abcdefabcdef");
            assert_eq!(v, want, "pseudo_version({major:?}, {older:?})");
            assert!(is_pseudo_version(&v), "{v}");
            assert_eq!(pseudo_version_base(&v).unwrap(), base, "{v}");
            assert_eq!(pseudo_version_time(&v).unwrap(), "20060102150405", "{v}");
            assert_eq!(pseudo_version_rev(&v).unwrap(), "abcdefabcdef", "{v}");
            // A pseudo-version sorts after its base and before the next release.
            if !base.is_empty() {
                assert_eq!(semver::compare(base, &v), std::cmp::Ordering::Less, "{v}");
            }
        }
    }

    #[test]
    fn recognition() {
        let yes = [
            "v0.0.0-20060102150405-abcdefabcdef",
            "v1.0.0-20060102150405-abcdefabcdef",
            "v1.2.4-0.20060102150405-abcdefabcdef",
            "v1.2.3-pre.0.20060102150405-abcdefabcdef",
            "v1.2.3-pre-x.0.20060102150405-abcdefabcdef",
            "v2.0.1-0.20060102150405-abcdefabcdef+incompatible",
            "v1.0.0-20060102150405-a",
            "v1.2.3-0.0.20060102150405-ABCDEF",
            // The timestamp is only checked for shape here.
            "v0.0.0-99999999999999-abcdefabcdef",
        ];
        for v in yes {
            assert!(is_pseudo_version(v), "{v}");
        }
        let no = [
            "",
            "v1.2.3",
            "v1.2.3-pre",
            "v1.0.0-2006010215040-abcdefabcdef",    // 13 digits
            "v1.0.0-200601021504055-abcdefabcdef",  // 15 digits
            "v1.2.3-20060102150405-abcdefabcdef",   // form 1 needs .0.0
            "v1.2.3-1.20060102150405-abcdefabcdef", // needs 0 before the time
            "v1.2.3-pre.20060102150405-abcdefabcdef",
            "v1.0.0-20060102150405-",
            "v1.0.0-20060102150405",
            "v1.0.0-20060102150405-abc_def",
            "v1.0.0-20060102150405-abcdef+",
            "v1-20060102150405-abcdef",
            "1.0.0-20060102150405-abcdefabcdef",
            "v01.0.0-20060102150405-abcdefabcdef",
            "v1.2.3-x.0.20060102150405-abcdefabcdef+a+b",
        ];
        for v in no {
            assert!(!is_pseudo_version(v), "{v}");
            assert!(pseudo_version_base(v).is_err(), "{v}");
            assert!(pseudo_version_rev(v).is_err(), "{v}");
        }
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            pseudo_version_time("v0.0.0-20061302150405-abcdefabcdef")
                .unwrap_err()
                .to_string(),
            r#"pseudo-version "v0.0.0-20061302150405-abcdefabcdef" invalid: malformed time "20061302150405""#
        );
        assert!(pseudo_version_time("v0.0.0-20060230150405-abcdefabcdef").is_err());
        assert!(pseudo_version_time("v0.0.0-20060102240405-abcdefabcdef").is_err());
        assert!(pseudo_version_time("v0.0.0-20060102156005-abcdefabcdef").is_err());
        assert!(pseudo_version_time("v0.0.0-20060102150460-abcdefabcdef").is_err());
        assert!(pseudo_version_time("v0.0.0-20040229000000-abcdefabcdef").is_ok());
        assert!(pseudo_version_time("v0.0.0-19000229000000-abcdefabcdef").is_err());
        assert!(pseudo_version_time("v0.0.0-20000229000000-abcdefabcdef").is_ok());
        // v1.2.0-0... would be based on v1.2.-1.
        assert_eq!(
            pseudo_version_base("v1.2.0-0.20060102150405-abcdefabcdef")
                .unwrap_err()
                .to_string(),
            r#"pseudo-version "v1.2.0-0.20060102150405-abcdefabcdef" invalid: version before v1.2.0 would have negative patch number"#
        );
        assert!(pseudo_version_base("v1.0.0-20060102150405-abcdefabcdef+incompatible").is_err());
        assert_eq!(
            pseudo_version_base("v1.2.10-0.20060102150405-abcdefabcdef").unwrap(),
            "v1.2.9"
        );
        assert_eq!(
            pseudo_version_base("v1.2.100-0.20060102150405-abcdefabcdef").unwrap(),
            "v1.2.99"
        );
        assert_eq!(
            pseudo_version_base("v1.2.1-0.20060102150405-abcdefabcdef").unwrap(),
            "v1.2.0"
        );
    }

    #[test]
    fn zero() {
        assert_eq!(
            zero_pseudo_version(""),
            "v0.0.0-00010101000000-000000000000"
        );
        assert_eq!(
            zero_pseudo_version("v2"),
            "v2.0.0-00010101000000-000000000000"
        );
        assert!(is_zero_pseudo_version("v0.0.0-00010101000000-000000000000"));
        assert!(is_zero_pseudo_version("v3.0.0-00010101000000-000000000000"));
        assert!(!is_zero_pseudo_version(
            "v0.0.0-00010101000000-000000000001"
        ));
        assert!(!is_zero_pseudo_version("bad"));
    }

    #[test]
    fn times() {
        assert_eq!(
            PseudoTime::from_unix(0).unwrap().to_string(),
            "19700101000000"
        );
        assert_eq!(
            PseudoTime::from_unix(1_136_214_245).unwrap().to_string(),
            "20060102150405"
        );
        assert_eq!(T.to_unix(), 1_136_214_245);
        assert_eq!(
            PseudoTime::from_unix(-1).unwrap().to_string(),
            "19691231235959"
        );
        assert_eq!(
            PseudoTime::from_unix(951_782_400).unwrap().to_string(),
            "20000229000000"
        );
        assert_eq!(PseudoTime::ZERO.to_unix(), -62_135_596_800);
        assert_eq!(
            PseudoTime::from_unix(-62_135_596_800),
            Some(PseudoTime::ZERO)
        );
        assert_eq!(PseudoTime::from_unix(i64::MAX), None);
        assert_eq!(PseudoTime::from_unix(i64::MIN), None);
        assert_eq!(PseudoTime::from_unix(253_402_300_800), None); // year 10000
        assert_eq!(PseudoTime::parse("2006010215040"), None);
        assert_eq!(PseudoTime::parse("2006010215040x"), None);
        assert_eq!(PseudoTime::parse("20060102150405"), Some(T));
    }

    #[test]
    fn decimals() {
        assert_eq!(inc_decimal("0"), "1");
        assert_eq!(inc_decimal("9"), "10");
        assert_eq!(inc_decimal("199"), "200");
        assert_eq!(
            inc_decimal("999999999999999999999"),
            "1000000000000000000000"
        );
        assert_eq!(dec_decimal("0"), None);
        assert_eq!(dec_decimal("1").as_deref(), Some("0"));
        assert_eq!(dec_decimal("10").as_deref(), Some("9"));
        assert_eq!(dec_decimal("100").as_deref(), Some("99"));
        assert_eq!(
            dec_decimal("1000000000000000000000").as_deref(),
            Some("999999999999999999999")
        );
        assert_eq!(dec_decimal("210").as_deref(), Some("209"));
    }
}
