//! Module paths, file paths and their URL escaping (x/mod `module`).
//!
//! Everything that arrives in a GOPROXY URL goes through here first: [`ModulePath::from_escaped`]
//! decodes and validates the `$mod` part, [`unescape_version`] the `$v` part. The checks are Go's,
//! including its quirks (Windows device names, `~1` short-name suffixes, `gopkg.in` majors), so that
//! we refuse exactly what the `go` command refuses.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, EscapeKind, PathKind};
use crate::semver;

/// Names that Windows reserves in any directory, compared case-insensitively against the part of a
/// path element before its first dot.
const BAD_WINDOWS_NAMES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Characters allowed in the first element of a module path (the would-be host name).
fn first_path_ok(c: char) -> bool {
    matches!(c, '-' | '.' | '0'..='9' | 'a'..='z')
}

fn mod_path_ok(c: char) -> bool {
    matches!(c, '-' | '.' | '_' | '~' | '0'..='9' | 'A'..='Z' | 'a'..='z')
}

fn import_path_ok(c: char) -> bool {
    mod_path_ok(c) || c == '+'
}

fn file_name_ok(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&()+,-.=@[]^_{}~ ".contains(c)
    } else {
        // Go's unicode.IsLetter: categories Lu, Ll, Lt, Lm, Lo. Rust's `is_alphabetic` is wider
        // (it adds Nl and Other_Alphabetic marks), so check the category precisely.
        crate::unicode::is_letter(c)
    }
}

/// Validates a module path (Go's `module.CheckPath`).
pub fn check_path(path: &str) -> Result<(), Error> {
    let err = |reason: String| Error::path(PathKind::Module, path, reason);
    check_path_kind(path, PathKind::Module).map_err(err)?;
    let first = path.split('/').next().unwrap_or_default();
    if first.is_empty() {
        return Err(err("leading slash".into()));
    }
    if !first.contains('.') {
        return Err(err("missing dot in first path element".into()));
    }
    if path.starts_with('-') {
        return Err(err("leading dash in first path element".into()));
    }
    if let Some(c) = first.chars().find(|&c| !first_path_ok(c)) {
        return Err(err(format!("invalid char {c:?} in first path element")));
    }
    if split_path_version(path).is_none() {
        return Err(err("invalid version".into()));
    }
    Ok(())
}

/// Validates an import path (Go's `module.CheckImportPath`): like a module path's elements, plus `+`,
/// without the first-element and major-version rules.
pub fn check_import_path(path: &str) -> Result<(), Error> {
    check_path_kind(path, PathKind::Import).map_err(|r| Error::path(PathKind::Import, path, r))
}

/// Validates a file path inside a module (Go's `module.CheckFilePath`). Slash-separated, relative,
/// clean-looking; module zips add more rules on top.
pub fn check_file_path(path: &str) -> Result<(), Error> {
    check_path_kind(path, PathKind::File).map_err(|r| Error::path(PathKind::File, path, r))
}

/// The shared element-by-element check; the error is the bare reason.
fn check_path_kind(path: &str, kind: PathKind) -> Result<(), String> {
    // `&str` is valid UTF-8 by construction, so Go's UTF-8 check has nothing to do here.
    if path.is_empty() {
        return Err("empty string".into());
    }
    if path.starts_with('-') && kind != PathKind::File {
        return Err("leading dash".into());
    }
    if path.contains("//") {
        return Err("double slash".into());
    }
    if path.ends_with('/') {
        return Err("trailing slash".into());
    }
    path.split('/').try_for_each(|elem| check_elem(elem, kind))
}

fn check_elem(elem: &str, kind: PathKind) -> Result<(), String> {
    if elem.is_empty() {
        return Err("empty path element".into());
    }
    if elem.bytes().all(|b| b == b'.') {
        return Err(format!("invalid path element {elem:?}"));
    }
    if elem.starts_with('.') && kind == PathKind::Module {
        return Err("leading dot in path element".into());
    }
    if elem.ends_with('.') {
        return Err("trailing dot in path element".into());
    }
    let ok = match kind {
        PathKind::Module => mod_path_ok,
        PathKind::Import => import_path_ok,
        PathKind::File => file_name_ok,
    };
    if let Some(c) = elem.chars().find(|&c| !ok(c)) {
        return Err(format!("invalid char {c:?}"));
    }

    // Windows treats `CON.txt` like `CON`, so only the part before the first dot matters.
    let short = elem.split('.').next().unwrap_or_default();
    if BAD_WINDOWS_NAMES
        .iter()
        .any(|bad| bad.eq_ignore_ascii_case(short))
    {
        return Err(format!(
            "{short:?} disallowed as path element component on Windows"
        ));
    }

    if kind == PathKind::File {
        // File names predate this rule; changing them would change existing checksums.
        return Ok(());
    }

    // `PROGRA~1`-style 8.3 short names could alias other directories on Windows.
    if let Some((_, suffix)) = short.rsplit_once('~') {
        if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()) {
            return Err("trailing tilde and digits in path element".into());
        }
    }
    Ok(())
}

/// Checks that `version` is a valid semantic version that `path` may have (Go's `module.Check`):
/// the path is valid and its major-version suffix allows the version's major version.
pub fn check(path: &str, version: &str) -> Result<(), Error> {
    check_path(path)?;
    if !semver::is_valid(version) {
        return Err(Error::version(version, "not a semantic version"));
    }
    let (_, path_major) = split_path_version(path).unwrap_or((path, ""));
    check_path_major(version, path_major)
}

/// Splits a module path into its prefix and its major-version suffix (Go's `SplitPathVersion`):
/// `("example.com/m", "/v2")` for `example.com/m/v2`, `("gopkg.in/yaml", ".v2")` for
/// `gopkg.in/yaml.v2`, `(path, "")` when there is no suffix. `None` if the suffix is malformed
/// (`/v1`, `/v02`, `/v2.1`, or a `gopkg.in` path without `.vN`).
pub fn split_path_version(path: &str) -> Option<(&str, &str)> {
    if path.starts_with("gopkg.in/") {
        return split_gopkg_in(path);
    }
    let bytes = path.as_bytes();
    let mut i = bytes.len();
    let mut dot = false;
    while i > 0 && (bytes[i - 1].is_ascii_digit() || bytes[i - 1] == b'.') {
        dot |= bytes[i - 1] == b'.';
        i -= 1;
    }
    if i <= 1 || i == bytes.len() || bytes[i - 1] != b'v' || bytes[i - 2] != b'/' {
        return Some((path, ""));
    }
    let (prefix, path_major) = path.split_at(i - 2);
    if dot || path_major.as_bytes().get(2) == Some(&b'0') || path_major == "/v1" {
        return None;
    }
    Some((prefix, path_major))
}

/// `gopkg.in/name.vN` and `gopkg.in/user/name.vN[-unstable]`; the suffix is mandatory there.
fn split_gopkg_in(path: &str) -> Option<(&str, &str)> {
    let bytes = path.as_bytes();
    let mut i = bytes.len();
    if path.ends_with("-unstable") {
        i -= "-unstable".len();
    }
    while i > 0 && bytes[i - 1].is_ascii_digit() {
        i -= 1;
    }
    if i <= 1 || bytes[i - 1] != b'v' || bytes[i - 2] != b'.' {
        return None;
    }
    let (prefix, path_major) = path.split_at(i - 2);
    // `.v0` is allowed but `.v01` and `.v0-unstable` are not (Go compares the whole suffix).
    match path_major.as_bytes().get(2) {
        None => return None,
        Some(b'0') if path_major != ".v0" => return None,
        Some(_) => {}
    }
    Some((prefix, path_major))
}

/// Checks that `version` is allowed for a module whose path ends in `path_major` (as returned by
/// [`split_path_version`]): `""` allows v0, v1 and `+incompatible`; `/vN` and `.vN` allow vN.
pub fn check_path_major(version: &str, path_major: &str) -> Result<(), Error> {
    let mut path_major = path_major;
    if path_major.starts_with(".v") {
        path_major = path_major.strip_suffix("-unstable").unwrap_or(path_major);
    }
    // gopkg.in/x.v1 historically accepted v0 pseudo-versions.
    if version.starts_with("v0.0.0-") && path_major == ".v1" {
        return Ok(());
    }
    let m = semver::major(version);
    let want = if path_major.is_empty() {
        if matches!(m, Some("v0" | "v1")) || semver::build(version) == Some("+incompatible") {
            return Ok(());
        }
        "v0 or v1"
    } else if let Some(want) = path_major
        .strip_prefix('/')
        .or_else(|| path_major.strip_prefix('.'))
    {
        if m == Some(want) {
            return Ok(());
        }
        want
    } else {
        path_major
    };
    Err(Error::version(
        version,
        format!("should be {want}, not {}", m.unwrap_or_default()),
    ))
}

/// Reports whether `version` is allowed for `path_major`; see [`check_path_major`].
pub fn match_path_major(version: &str, path_major: &str) -> bool {
    check_path_major(version, path_major).is_ok()
}

/// The major version a path suffix requires: `"v2"` for `/v2`, `.v2` and `.v2-unstable`; `""` for no
/// suffix. Go panics on a malformed suffix; this returns `""` instead.
pub fn path_major_prefix(path_major: &str) -> &str {
    let Some(m) = path_major
        .strip_prefix('/')
        .or_else(|| path_major.strip_prefix('.'))
    else {
        return "";
    };
    let m = if path_major.starts_with('.') {
        m.strip_suffix("-unstable").unwrap_or(m)
    } else {
        m
    };
    if semver::major(m) == Some(m) {
        m
    } else {
        ""
    }
}

/// Escapes a module path for use in a URL or file name (Go's `EscapePath`): validates it, then
/// writes each upper-case letter as `!` plus its lower-case form, so that case-insensitive file
/// systems cannot confuse `github.com/Azure` with `github.com/azure`.
pub fn escape_path(path: &str) -> Result<String, Error> {
    check_path(path)?;
    Ok(escape_ascii(path))
}

/// Escapes a version like [`escape_path`] (Go's `EscapeVersion`). The version need not be semver,
/// but must be a valid file-name element without `!` (and ASCII, so it can be escaped).
pub fn escape_version(v: &str) -> Result<String, Error> {
    if check_elem(v, PathKind::File).is_err() || v.contains('!') || !v.is_ascii() {
        return Err(Error::version(v, "disallowed version string"));
    }
    Ok(escape_ascii(v))
}

/// `A-Z` → `!a`-`!z`; callers guarantee ASCII without `!`.
fn escape_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Decodes an escaped module path and validates the result (Go's `UnescapePath`).
pub fn unescape_path(escaped: &str) -> Result<String, Error> {
    let err = |reason: Option<String>| Error::InvalidEscape {
        kind: EscapeKind::ModulePath,
        escaped: escaped.to_owned(),
        reason,
    };
    let path = unescape_ascii(escaped).ok_or_else(|| err(None))?;
    check_path(&path).map_err(|e| err(Some(e.to_string())))?;
    Ok(path)
}

/// Decodes an escaped version and checks it is a valid file-name element (Go's `UnescapeVersion`).
/// It does not check that the result is semver: `.info` accepts branch names and hashes too.
pub fn unescape_version(escaped: &str) -> Result<String, Error> {
    let err = |reason: Option<String>| Error::InvalidEscape {
        kind: EscapeKind::Version,
        escaped: escaped.to_owned(),
        reason,
    };
    let v = unescape_ascii(escaped).ok_or_else(|| err(None))?;
    check_elem(&v, PathKind::File).map_err(|r| err(Some(r)))?;
    Ok(v)
}

/// `!a` → `A`. `None` for non-ASCII input, a bare upper-case letter, or `!` not followed by `a-z`:
/// every string has exactly one escaped form, so anything else is not one.
fn unescape_ascii(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut bytes = escaped.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'!' => match bytes.next() {
                Some(l @ b'a'..=b'z') => out.push(l.to_ascii_uppercase() as char),
                _ => return None,
            },
            b'A'..=b'Z' => return None,
            b if b.is_ascii() => out.push(b as char),
            _ => return None,
        }
    }
    Some(out)
}

/// Reports whether any of the comma-separated glob patterns matches a prefix of `target` with the
/// same number of path elements (Go's `MatchPrefixPatterns`, the GOPRIVATE/GONOPROXY/GONOSUMDB rule).
/// `*.corp.example` matches `git.corp.example/x/y`; `corp.example/team` matches `corp.example/team/y`.
/// Patterns use Go's `path.Match` syntax; a malformed pattern matches nothing. Empty patterns and a
/// trailing `/` are ignored.
pub fn match_prefix_patterns(globs: &str, target: &str) -> bool {
    globs.split(',').any(|glob| {
        let glob = glob.strip_suffix('/').unwrap_or(glob);
        if glob.is_empty() {
            return false;
        }
        let mut n = glob.bytes().filter(|&b| b == b'/').count();
        let mut prefix = target;
        for (i, b) in target.bytes().enumerate() {
            if b == b'/' {
                if n == 0 {
                    prefix = &target[..i];
                    break;
                }
                n -= 1;
            }
        }
        // The pattern has more elements than the target: it cannot match.
        if n > 0 {
            return false;
        }
        crate::glob::path_match(glob, prefix).unwrap_or(false)
    })
}

/// A module path that passed [`check_path`]. Parse once at the edge; trust afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModulePath(String);

impl ModulePath {
    /// Validates `path` (Go's `CheckPath`).
    pub fn new(path: &str) -> Result<Self, Error> {
        check_path(path)?;
        Ok(ModulePath(path.to_owned()))
    }

    /// Decodes and validates the escaped form used in GOPROXY URLs.
    pub fn from_escaped(escaped: &str) -> Result<Self, Error> {
        unescape_path(escaped).map(ModulePath)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `!`-escaped form for URLs and storage keys.
    pub fn escaped(&self) -> String {
        escape_ascii(&self.0)
    }

    /// The `(prefix, path_major)` split; always succeeds since the path was checked.
    pub fn split_version(&self) -> (&str, &str) {
        split_path_version(&self.0).unwrap_or((&self.0, ""))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ModulePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ModulePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for ModulePath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ModulePath::new(s)
    }
}

impl TryFrom<String> for ModulePath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        check_path(&s)?;
        Ok(ModulePath(s))
    }
}

impl TryFrom<&str> for ModulePath {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        ModulePath::new(s)
    }
}

impl From<ModulePath> for String {
    fn from(p: ModulePath) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (path, valid as module path, valid as import path, valid as file path)
    const PATHS: &[(&str, bool, bool, bool)] = &[
        ("x.y/z", true, true, true),
        ("x.y", true, true, true),
        ("", false, false, false),
        ("x.y/\u{FFFD}", false, false, false),
        ("/x.y/z", false, false, false),
        ("x./z", false, false, false),
        (".x/z", false, true, true),
        ("-x/z", false, false, true),
        ("x..y/z", true, true, true),
        ("x.y/z/../../w", false, false, false),
        ("x.y//z", false, false, false),
        ("x.y/z//w", false, false, false),
        ("x.y/z/", false, false, false),
        ("x.y/z/v0", false, true, true),
        ("x.y/z/v1", false, true, true),
        ("x.y/z/v2", true, true, true),
        ("x.y/z/v2.0", false, true, true),
        ("X.y/z", false, true, true),
        ("!x.y/z", false, false, true),
        ("_x.y/z", false, true, true),
        ("x.y!/z", false, false, true),
        ("x.y\"/z", false, false, false),
        ("x.y#/z", false, false, true),
        ("x.y$/z", false, false, true),
        ("x.y%/z", false, false, true),
        ("x.y&/z", false, false, true),
        ("x.y'/z", false, false, false),
        ("x.y(/z", false, false, true),
        ("x.y)/z", false, false, true),
        ("x.y*/z", false, false, false),
        ("x.y+/z", false, true, true),
        ("x.y,/z", false, false, true),
        ("x.y-/z", true, true, true),
        ("x.y./zt", false, false, false),
        ("x.y:/z", false, false, false),
        ("x.y;/z", false, false, false),
        ("x.y</z", false, false, false),
        ("x.y=/z", false, false, true),
        ("x.y>/z", false, false, false),
        ("x.y?/z", false, false, false),
        ("x.y@/z", false, false, true),
        ("x.y[/z", false, false, true),
        ("x.y\\/z", false, false, false),
        ("x.y]/z", false, false, true),
        ("x.y^/z", false, false, true),
        ("x.y_/z", false, true, true),
        ("x.y`/z", false, false, false),
        ("x.y{/z", false, false, true),
        ("x.y}/z", false, false, true),
        ("x.y~/z", false, true, true),
        ("x.y/z!", false, false, true),
        ("x.y/z\"", false, false, false),
        ("x.y/z+", false, true, true),
        ("x.y/z ", false, false, true),
        ("x.y/ z", false, false, true),
        ("x.y/z.", false, false, false),
        ("x.y/.z", false, true, true),
        ("x.y/..", false, false, false),
        ("x.y/...", false, false, false),
        ("x.y/z.go", true, true, true),
        ("x.y/é", false, false, true),
        ("x.y/日本", false, false, true),
        ("x.y/\u{0301}", false, false, false), // combining mark: not a letter
        ("x.y/Ⅻ", false, false, false),        // Nl, not L*: Go's IsLetter says no
        ("x.y/z~0", false, false, true),
        ("x.y/z~09", false, false, true),
        ("x.y/z09", true, true, true),
        ("x.y/z09~", true, true, true),
        ("x.y/z09~09z", true, true, true),
        ("x.y/z09~09z~09", false, false, true),
        ("x.y/z.x~1.go", true, true, true),
        ("x.y/z~1.go", false, false, true),
        ("com1", false, false, false),
        ("x.y/com1", false, false, false),
        ("x.y/COM1", false, false, false),
        ("x.y/com1.txt", false, false, false),
        ("x.y/comt1", true, true, true),
        ("x.y/com1x", true, true, true),
        ("x.y/lpt9", false, false, false),
        ("x.y/nul", false, false, false),
        ("x.y/con.", false, false, false),
        ("x.y/x.con", true, true, true),
        ("x.y/aux/z", false, false, false),
        ("-x.y/z", false, false, true),
        ("x.y-/z", true, true, true),
        ("exmaple/z", false, true, true),
        ("example.com:80/z", false, false, false),
        ("Example.com/z", false, true, true),
        ("gopkg.in/yaml.v2", true, true, true),
        ("gopkg.in/yaml", false, true, true),
        ("gopkg.in/yaml.v0", true, true, true),
        ("gopkg.in/yaml.v01", false, true, true),
        ("gopkg.in/user/yaml.v2-unstable", true, true, true),
        ("github.com/user/repo", true, true, true),
        ("github.com/User/Repo", true, true, true),
    ];

    #[test]
    fn path_checks() {
        for &(p, m, i, f) in PATHS {
            assert_eq!(
                check_path(p).is_ok(),
                m,
                "check_path({p:?}): {:?}",
                check_path(p)
            );
            assert_eq!(
                check_import_path(p).is_ok(),
                i,
                "check_import_path({p:?}): {:?}",
                check_import_path(p)
            );
            assert_eq!(
                check_file_path(p).is_ok(),
                f,
                "check_file_path({p:?}): {:?}",
                check_file_path(p)
            );
        }
    }

    #[test]
    fn path_error_messages_match_go() {
        let msg = |p| check_path(p).unwrap_err().to_string();
        assert_eq!(
            msg("exmaple/z"),
            r#"malformed module path "exmaple/z": missing dot in first path element"#
        );
        assert_eq!(
            msg("x.y/z/v1"),
            r#"malformed module path "x.y/z/v1": invalid version"#
        );
        assert_eq!(
            msg("x.y/com1"),
            r#"malformed module path "x.y/com1": "com1" disallowed as path element component on Windows"#
        );
        assert_eq!(
            msg("Example.com/z"),
            r#"malformed module path "Example.com/z": invalid char 'E' in first path element"#
        );
    }

    #[test]
    fn split_versions() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("x.y/z", Some(("x.y/z", ""))),
            ("x.y/z/v2", Some(("x.y/z", "/v2"))),
            ("x.y/z/v10", Some(("x.y/z", "/v10"))),
            ("x.y/z/v1", None),
            ("x.y/z/v0", None),
            ("x.y/z/v02", None),
            ("x.y/z/v2.0", None),
            ("x.y/z/2", Some(("x.y/z/2", ""))),
            ("x.y/v2", Some(("x.y", "/v2"))),
            ("v2", Some(("v2", ""))),
            ("/v2", Some(("", "/v2"))),
            ("x.y/zv2", Some(("x.y/zv2", ""))),
            ("gopkg.in/yaml.v2", Some(("gopkg.in/yaml", ".v2"))),
            ("gopkg.in/yaml.v0", Some(("gopkg.in/yaml", ".v0"))),
            ("gopkg.in/yaml.v01", None),
            ("gopkg.in/yaml.v1", Some(("gopkg.in/yaml", ".v1"))),
            ("gopkg.in/yaml", None),
            ("gopkg.in/yaml.v", None),
            (
                "gopkg.in/user/yaml.v3-unstable",
                Some(("gopkg.in/user/yaml", ".v3-unstable")),
            ),
            ("gopkg.in/v2", None),
        ];
        for &(p, want) in cases {
            assert_eq!(split_path_version(p), want, "{p}");
        }
    }

    #[test]
    fn path_majors() {
        let cases: &[(&str, &str, bool)] = &[
            ("v0.1.0", "", true),
            ("v1.2.3", "", true),
            ("v2.0.0", "", false),
            ("v2.0.0+incompatible", "", true),
            ("v2.0.0", "/v2", true),
            ("v2.0.0+incompatible", "/v2", true),
            ("v3.0.0", "/v2", false),
            ("v1.0.0", "/v2", false),
            ("v2.0.0", ".v2", true),
            ("v2.0.0", ".v2-unstable", true),
            ("v1.0.0", ".v1", true),
            ("v0.0.0-20200101000000-abcdefabcdef", ".v1", true),
            ("v0.1.0", ".v1", false),
            ("v0.1.0", ".v0", true),
            ("bad", "", false),
            ("bad", "/v2", false),
        ];
        for &(v, pm, ok) in cases {
            assert_eq!(match_path_major(v, pm), ok, "{v} {pm}");
        }
        assert_eq!(
            check_path_major("v2.0.0", "").unwrap_err().to_string(),
            r#"version "v2.0.0" invalid: should be v0 or v1, not v2"#
        );
        assert_eq!(
            check_path_major("v1.0.0", "/v3").unwrap_err().to_string(),
            r#"version "v1.0.0" invalid: should be v3, not v1"#
        );

        assert_eq!(path_major_prefix(""), "");
        assert_eq!(path_major_prefix("/v2"), "v2");
        assert_eq!(path_major_prefix(".v2"), "v2");
        assert_eq!(path_major_prefix(".v2-unstable"), "v2");
        assert_eq!(path_major_prefix("/v2-unstable"), "");
        assert_eq!(path_major_prefix("v2"), "");
        assert_eq!(path_major_prefix("/v2.1"), "");
    }

    #[test]
    fn escaping() {
        let ok: &[(&str, &str)] = &[
            ("m.com/x", "m.com/x"),
            ("github.com/Azure/azure-sdk", "github.com/!azure/azure-sdk"),
            (
                "github.com/GoogleCloudPlatform/x",
                "github.com/!google!cloud!platform/x",
            ),
        ];
        for &(p, e) in ok {
            assert_eq!(escape_path(p).unwrap(), e);
            assert_eq!(unescape_path(e).unwrap(), p);
            assert_eq!(ModulePath::from_escaped(e).unwrap().as_str(), p);
            assert_eq!(ModulePath::new(p).unwrap().escaped(), e);
        }
        for bad in ["", "x", "m.com/x/v1", "m.com/é", "m.com/!x"] {
            assert!(escape_path(bad).is_err(), "{bad}");
        }
        for bad in [
            "github.com/Azure/x",  // bare upper case
            "github.com/!Azure/x", // ! before upper case
            "github.com/!/x",      // ! before slash
            "github.com/x!",       // trailing !
            "github.com/!!x",      // double !
            "github.com/é",        // non-ASCII
            "!github.com/x",       // decodes to an invalid first element
            "m.com/x/v1",          // valid escaping, invalid path
        ] {
            assert!(unescape_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            unescape_path("m.com/x!").unwrap_err().to_string(),
            r#"invalid escaped module path "m.com/x!""#
        );

        assert_eq!(escape_version("v1.0.0-RC1").unwrap(), "v1.0.0-!r!c1");
        assert_eq!(unescape_version("v1.0.0-!r!c1").unwrap(), "v1.0.0-RC1");
        assert_eq!(escape_version("master").unwrap(), "master");
        assert_eq!(
            unescape_version("v1.2.3+incompatible").unwrap(),
            "v1.2.3+incompatible"
        );
        for bad in ["", "v1!", "..", "v1/x", "é", "com1", "v1."] {
            assert!(escape_version(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "V1", "v1!", "v1/x", "..", "!!", "é", "com1", "v1."] {
            assert!(unescape_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefix_patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("*/quote", "rsc.io/quote", true),
            ("*/quote", "rsc.io/quote/v3", true),
            ("*/quote", "rsc.io/quote3", false),
            ("rsc.io", "rsc.io/quote", true),
            ("rsc.io/", "rsc.io/quote", true),
            ("rsc.io/quote", "rsc.io", false),
            ("rsc.io/quote/", "rsc.io/quote", true),
            ("*.io", "rsc.io/quote", true),
            ("*.corp.example", "git.corp.example/team/x", true),
            ("*.corp.example", "corp.example/team/x", false),
            ("corp.example,rsc.io", "rsc.io/quote", true),
            (",,rsc.io,", "rsc.io/quote", true),
            ("", "rsc.io/quote", false),
            ("rsc.i?", "rsc.io/x", true),
            ("rsc.[a-j]o", "rsc.io/x", true),
            ("rsc.[^a-j]o", "rsc.io/x", false),
            ("rsc.[", "rsc.io/x", false),
            ("rsc.io\\", "rsc.io", false),
            ("rsc\\.io", "rsc.io", true),
            ("*", "rsc.io/quote", true),
            ("*/*", "rsc.io", false),
            ("*/*", "rsc.io/quote/x", true),
            ("RSC.io", "rsc.io/quote", false),
        ];
        for &(g, t, want) in cases {
            assert_eq!(match_prefix_patterns(g, t), want, "{g} {t}");
        }
    }

    #[test]
    fn module_path_type() {
        let p: ModulePath = "github.com/User/repo/v2".parse().unwrap();
        assert_eq!(p.split_version(), ("github.com/User/repo", "/v2"));
        assert_eq!(p.to_string(), "github.com/User/repo/v2");
        assert!(ModulePath::try_from("nodot/x".to_string()).is_err());
        assert!(ModulePath::from_escaped("github.com/User").is_err());
    }
}
