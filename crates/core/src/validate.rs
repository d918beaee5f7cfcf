//! Checks on fetched artifacts. Nothing an upstream sends is cached before it passes here, so a
//! broken or hostile upstream cannot poison the cache.

use std::path::Path;

use agora_gomod::gomodfile::GoMod;
use agora_gomod::module::{check_path_major, ModulePath};
use agora_gomod::{pseudo, semver};
use bytes::Bytes;
use serde::Deserialize;

/// Why a fetched answer was refused (and not cached).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("malformed info JSON: {0}")]
    InfoJson(String),
    #[error("version {0:?} is not a canonical semantic version")]
    NotCanonical(String),
    /// The version does not fit the module path's major version suffix.
    #[error("{0}")]
    MajorVersion(String),
    #[error("asked for {asked}, got {got}")]
    OtherVersion { asked: String, got: String },
    #[error("malformed Time {0:?}")]
    Time(String),
    #[error("version list is not UTF-8")]
    ListNotUtf8,
    #[error("{0}")]
    GoModSyntax(String),
    #[error("not a go.mod: it declares no module")]
    NoModule,
    /// The zip breaks the module zip rules, or does not decompress.
    #[error("{0}")]
    Zip(String),
}

#[derive(Deserialize)]
struct InfoJson {
    #[serde(rename = "Version")]
    version: String,
    #[serde(rename = "Time")]
    time: Option<String>,
}

/// Whether `v` is exactly a canonical semantic version (what `.mod`/`.zip` requests must name).
pub fn is_canonical(v: &str) -> bool {
    semver::canonical(v).as_deref() == Some(v)
}

/// Checks an `.info` or `@latest` body for `module`, answering the query `requested` (`None` for
/// `@latest`). Returns the canonical version it names.
pub fn info(module: &ModulePath, requested: Option<&str>, body: &[u8]) -> Result<String, Invalid> {
    let info: InfoJson =
        serde_json::from_slice(body).map_err(|e| Invalid::InfoJson(e.to_string()))?;
    let v = info.version;
    if !is_canonical(&v) {
        return Err(Invalid::NotCanonical(v));
    }
    let (_, major) = module.split_version();
    check_path_major(&v, major).map_err(|e| Invalid::MajorVersion(e.to_string()))?;
    if let Some(req) = requested {
        // A canonical request valid for the path must be answered with itself; `v2.0.0` on a
        // path without `/v2` may come back as `v2.0.0+incompatible`.
        if is_canonical(req) && check_path_major(req, major).is_ok() && v != req {
            return Err(Invalid::OtherVersion {
                asked: req.to_owned(),
                got: v,
            });
        }
    }
    if let Some(t) = info.time.as_deref() {
        if !looks_like_rfc3339(t) {
            return Err(Invalid::Time(t.to_owned()));
        }
    }
    Ok(v)
}

/// Structural RFC 3339 check (`2006-01-02T15:04:05Z` or with fraction / offset).
fn looks_like_rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (t.ends_with('Z') || t[19..].contains(['+', '-']))
}

/// Cleans a version list: keeps lines whose first field is a valid, non-pseudo semantic version,
/// as the go command does when reading one. Invalid UTF-8 is refused outright.
pub fn list(body: &[u8]) -> Result<Bytes, Invalid> {
    let text = std::str::from_utf8(body).map_err(|_| Invalid::ListNotUtf8)?;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        if let Some(v) = fields.next() {
            if semver::is_valid(v) && !pseudo::is_pseudo_version(v) {
                out.push_str(line.trim());
                out.push('\n');
            }
        }
    }
    Ok(Bytes::from(out))
}

/// Checks a go.mod as the go command checks a dependency's: it must parse (leniently, as
/// `modfile.ParseLax` does) and declare a module. The declared path need not be `module`'s: a
/// fork's go.mod keeps the path of the module it replaces (`replace old => fork v1.2.3`), and the
/// go command and proxy.golang.org serve it as it is. A body with no `module` line (an HTML page,
/// `hello world`, an empty answer) is something no go command accepts from a proxy.
pub fn go_mod(_module: &ModulePath, body: &[u8]) -> Result<(), Invalid> {
    let parsed = GoMod::parse(body).map_err(|e| Invalid::GoModSyntax(e.to_string()))?;
    match parsed.module {
        Some(path) if !path.is_empty() => Ok(()),
        _ => Err(Invalid::NoModule),
    }
}

/// Checks a downloaded module zip as the go command does before using one: every entry under
/// `module@version/`, valid file paths, no duplicates or case collisions, size limits, and entries
/// that decompress to their declared sizes. Returns the zip's `h1:` hash.
pub fn zip(module: &ModulePath, version: &str, path: &Path) -> Result<String, Invalid> {
    let open = || {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| Invalid::Zip(format!("cannot reopen download: {e}")))
    };
    agora_gomod::zip::check_zip(open()?, module.as_str(), version)
        .map_err(|e| Invalid::Zip(e.to_string()))?;
    // Reading every entry once proves the content decompresses and matches its CRC and size.
    agora_gomod::dirhash::hash_zip(open()?).map_err(|e| Invalid::Zip(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> ModulePath {
        ModulePath::new(s).unwrap()
    }

    #[test]
    fn go_mod_checks() {
        let m = m("example.com/a");
        assert!(go_mod(&m, b"module example.com/a\n\ngo 1.21\n").is_ok());
        // A fork's go.mod declares the path it replaces.
        assert!(go_mod(&m, b"module example.com/original\n").is_ok());
        for bad in [
            &b""[..],
            b"hello world",
            b"<!DOCTYPE html>\n<html><body>Sign in</body></html>\n",
            b"go 1.21\n",
            b"\x00\x01garbage(",
        ] {
            assert!(
                go_mod(&m, bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn info_checks() {
        let ok = br#"{"Version":"v1.2.3","Time":"2020-01-02T03:04:05Z"}"#;
        assert_eq!(
            info(&m("example.com/a"), Some("v1.2.3"), ok).unwrap(),
            "v1.2.3"
        );
        assert_eq!(
            info(&m("example.com/a"), Some("main"), ok).unwrap(),
            "v1.2.3"
        );
        assert!(info(&m("example.com/a"), Some("v1.2.4"), ok).is_err());
        assert!(info(&m("example.com/a/v2"), Some("v1.2.3"), ok).is_err());
        assert!(info(&m("example.com/a"), None, b"{").is_err());
        assert!(info(&m("example.com/a"), None, br#"{"Version":"v1.2"}"#).is_err());
        assert!(info(
            &m("example.com/a"),
            None,
            br#"{"Version":"v1.0.0","Time":"yesterday"}"#
        )
        .is_err());
        let inc = br#"{"Version":"v2.0.0+incompatible","Time":"2020-01-02T03:04:05Z"}"#;
        assert!(info(&m("example.com/a"), Some("v2.0.0"), inc).is_ok());
    }

    #[test]
    fn list_keeps_valid_versions() {
        let body =
            b"v1.0.0\nv1.1.0 2020-01-01T00:00:00Z\ngarbage\nv0.0.0-20200101000000-abcdefabcdef\n\n";
        assert_eq!(
            &list(body).unwrap()[..],
            b"v1.0.0\nv1.1.0 2020-01-01T00:00:00Z\n"
        );
        assert!(list(b"\xff\n").is_err());
    }
}
