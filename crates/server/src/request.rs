//! Request paths → typed requests. Everything after this module works with validated values.

use agora_core::SumdbPath;
use agora_gomod::module::{unescape_version, ModulePath};
use agora_storage::{ArtifactKind, MAX_NAME_BYTES};

use crate::error::AppError;

/// Longest request path accepted (module paths are far shorter in practice).
pub const MAX_PATH: usize = 2048;

/// A parsed GOPROXY or checksum-database request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyRequest {
    List(ModulePath),
    Latest(ModulePath),
    Artifact {
        module: ModulePath,
        /// The unescaped version or query (`v1.2.3`, `master`, `abc123def456`).
        version: String,
        kind: ArtifactKind,
    },
    SumdbSupported {
        name: String,
    },
    Sumdb {
        name: String,
        path: SumdbPath,
    },
}

/// The prefix that makes any GOPROXY request cache-only, as `Disable-Module-Fetch: true` does,
/// for clients that cannot send a header (`GOPROXY=https://agora.example/cached-only`). A module
/// path's first element has a dot, so no module path starts with it.
pub const CACHED_ONLY: &str = "/cached-only";

/// The request path without the [`CACHED_ONLY`] prefix, and whether it had it.
pub fn strip_cached_only(raw: &str) -> (&str, bool) {
    match raw.strip_prefix(CACHED_ONLY) {
        Some(rest) if rest.starts_with('/') => (rest, true),
        _ => (raw, false),
    }
}

/// Parses the path of a request (as received, possibly percent-encoded).
pub fn parse(raw: &str) -> Result<ProxyRequest, AppError> {
    if raw.len() > MAX_PATH {
        return Err(AppError::UriTooLong);
    }
    let lower = raw.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || raw.contains('\\') {
        return Err(AppError::BadRequest(
            "encoded slashes are not allowed".into(),
        ));
    }
    let decoded = percent_decode(raw)
        .ok_or_else(|| AppError::BadRequest("malformed percent-encoding".into()))?;
    if decoded.chars().any(char::is_control) {
        return Err(AppError::BadRequest("control characters in path".into()));
    }
    let path = decoded
        .strip_prefix('/')
        .ok_or_else(|| AppError::BadRequest("path must be absolute".into()))?;
    if path.is_empty() {
        return Err(AppError::NotFound("no module path in request".into()));
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(AppError::BadRequest(
            "empty, '.' or '..' path segments are not allowed".into(),
        ));
    }
    // Request paths are storage paths (the GOPROXY layout), so a longer element could never be
    // stored; refused here rather than failing in the file system as a storage error.
    if path.split('/').any(|seg| seg.len() > MAX_NAME_BYTES) {
        return Err(AppError::NotFound(format!(
            "a path element is longer than {MAX_NAME_BYTES} bytes"
        )));
    }

    if let Some(rest) = path.strip_prefix("sumdb/") {
        let (name, rest) = rest
            .split_once('/')
            .ok_or_else(|| AppError::NotFound("missing checksum database path".into()))?;
        if !is_host_name(name) {
            return Err(AppError::NotFound(format!(
                "invalid checksum database name {name:?}"
            )));
        }
        return Ok(if rest == "supported" {
            ProxyRequest::SumdbSupported {
                name: name.to_owned(),
            }
        } else {
            ProxyRequest::Sumdb {
                name: name.to_owned(),
                path: SumdbPath::parse(rest).ok_or_else(|| {
                    AppError::NotFound(format!("invalid checksum database path {rest:?}"))
                })?,
            }
        });
    }

    if let Some(module) = path.strip_suffix("/@latest") {
        return Ok(ProxyRequest::Latest(module_path(module)?));
    }
    let (module, file) = path
        .rsplit_once("/@v/")
        .ok_or_else(|| AppError::NotFound(format!("unknown path /{path}")))?;
    let module = module_path(module)?;
    if file == "list" {
        return Ok(ProxyRequest::List(module));
    }
    let (version, ext) = file
        .rsplit_once('.')
        .ok_or_else(|| AppError::NotFound(format!("unknown file {file:?}")))?;
    let kind = ArtifactKind::from_extension(ext)
        .ok_or_else(|| AppError::NotFound(format!("unknown file {file:?}")))?;
    let version = unescape_version(version)
        .map_err(|e| AppError::NotFound(format!("{module}@{version}: {e}")))?;
    Ok(ProxyRequest::Artifact {
        module,
        version,
        kind,
    })
}

fn module_path(escaped: &str) -> Result<ModulePath, AppError> {
    ModulePath::from_escaped(escaped).map_err(|e| AppError::NotFound(e.to_string()))
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.contains('.')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// Decodes `%XX` escapes; `None` for malformed escapes or invalid UTF-8. `+` stays `+` (the go
/// command sends it literally in versions like `v2.0.0+incompatible`).
fn percent_decode(s: &str) -> Option<String> {
    // The crate keeps a malformed escape as it is; a request path with one names nothing.
    let malformed = s.match_indices('%').any(|(i, _)| {
        !s.get(i + 1..i + 3)
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if malformed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|d| d.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_storage::StorageKey;
    use proptest::prelude::*;

    fn m(s: &str) -> ModulePath {
        ModulePath::new(s).unwrap()
    }

    #[test]
    fn parses_goproxy_paths() {
        assert_eq!(
            parse("/github.com/!burnt!sushi/toml/@v/list").unwrap(),
            ProxyRequest::List(m("github.com/BurntSushi/toml"))
        );
        assert_eq!(
            parse("/golang.org/x/text/@latest").unwrap(),
            ProxyRequest::Latest(m("golang.org/x/text"))
        );
        assert_eq!(
            parse("/example.com/m/@v/v2.0.0+incompatible.zip").unwrap(),
            ProxyRequest::Artifact {
                module: m("example.com/m"),
                version: "v2.0.0+incompatible".into(),
                kind: ArtifactKind::Zip
            }
        );
        assert_eq!(
            parse("/example.com/m/@v/v1.0.0-!r!c1.info").unwrap(),
            ProxyRequest::Artifact {
                module: m("example.com/m"),
                version: "v1.0.0-RC1".into(),
                kind: ArtifactKind::Info
            }
        );
        assert_eq!(
            parse("/example.com/%6d/@v/list").unwrap(),
            ProxyRequest::List(m("example.com/m"))
        );
        assert_eq!(
            parse("/sumdb/sum.golang.org/supported").unwrap(),
            ProxyRequest::SumdbSupported {
                name: "sum.golang.org".into()
            }
        );
        assert_eq!(
            parse("/sumdb/sum.golang.org/tile/8/0/000").unwrap(),
            ProxyRequest::Sumdb {
                name: "sum.golang.org".into(),
                path: SumdbPath::parse("tile/8/0/000").unwrap(),
            }
        );
    }

    #[test]
    fn rejects_bad_input_with_the_right_class() {
        let bad_request = [
            "/example.com/../etc/@v/list",
            "/example.com/m/../../@v/list",
            "/example.com//m/@v/list",
            "/example.com%2fm/@v/list",
            "/example.com%2Fm/@v/list",
            "/example.com/m/@v/%2e%2e%2fx.info",
            "/example.com/m/@v/v1%00.info",
            "/example.com/%zz/@v/list",
            "/example.com/%ff/@v/list",
            "/example.com\\m/@v/list",
        ];
        for p in bad_request {
            assert!(matches!(parse(p), Err(AppError::BadRequest(_))), "{p}");
        }
        let not_found = [
            "/",
            "/favicon.ico",
            "/example.com/m",
            "/example.com/M/@v/list",
            "/example.com/m!/@v/list",
            "/nodot/m/@v/list",
            "/example.com/m/@v/v1.0.0.tar",
            "/example.com/m/@v/V1.0.0.info",
            "/example.com/m/@v/v1.0.0",
            "/sumdb/sum.golang.org",
            "/sumdb/NotAHost/supported",
        ];
        for p in not_found {
            assert!(matches!(parse(p), Err(AppError::NotFound(_))), "{p}");
        }
        // Regression: longer than a file name can be: cannot exist (was a storage error, 503).
        let long_name = "a".repeat(MAX_NAME_BYTES + 1);
        let fits = "a".repeat(MAX_NAME_BYTES);
        for p in [
            format!("/example.com/{long_name}/@v/list"),
            format!("/example.com/{long_name}/@latest"),
            format!("/example.com/m/@v/v1.0.0-{}.info", &long_name[7..]),
            format!("/sumdb/sum.golang.org/tile/8/0/{long_name}"),
        ] {
            assert!(matches!(parse(&p), Err(AppError::NotFound(_))), "{p}");
        }
        assert!(parse(&format!("/example.com/{fits}/@v/list")).is_ok());
        assert!(parse(&format!("/example.com/m/@v/v1.0.0-{}.zip", &fits[11..])).is_ok());
        let long = format!("/example.com/{}/@v/list", "a".repeat(MAX_PATH));
        assert!(matches!(parse(&long), Err(AppError::UriTooLong)));
    }

    /// Fragments that make up hostile and odd request paths.
    const ATOMS: &[&str] = &[
        "github.com",
        "example.com",
        "x",
        "m",
        "M",
        "!m",
        "!",
        "~",
        "-",
        "_",
        "+",
        ".",
        "..",
        "...",
        "@v",
        "@latest",
        "list",
        "v1.0.0",
        "v1.0.0-!r!c1",
        "v2.0.0+incompatible",
        "master",
        ".info",
        ".mod",
        ".zip",
        "%2e",
        "%2E",
        "%2e%2e",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "%00",
        "%0a",
        "%7f",
        "%ff",
        "%c3%a9",
        "%e2%80%ae",
        "%zz",
        "%",
        "%2",
        "%40",
        "%21",
        "\\",
        "sumdb",
        "sum.golang.org",
        "tile",
        "lookup",
        "supported",
        "_agora",
        "tmp",
        "\u{e9}",
        "\u{202e}",
        "\u{0}",
        " ",
        "?",
        "#",
        ";",
        ":",
    ];

    const HOSTS: &[&str] = &[
        "github.com",
        "example.com",
        "golang.org",
        "gopkg.in",
        "a.b",
        "x-y.example",
        "sumdb",
        "sumdb/sum.golang.org",
        "sumdb/sum.golang.org/tile",
        "sumdb/sum.golang.org/lookup",
    ];
    const ELEMS: &[&str] = &[
        "x",
        "m",
        "!m",
        "!burnt!sushi",
        "toml",
        "v2",
        "yaml.v3",
        "a-b",
        "a_b",
        "a~b",
        "a.b",
        "..",
        ".",
        "%2e",
        "%2e%2e",
        "%41",
        "!!",
        "A",
        "\u{e9}",
        "8",
        "0",
        "x001",
        "234.p",
        "_agora",
        "@v",
        "tmp",
        "~",
        "a+b",
        "%21m",
    ];
    const TAILS: &[&str] = &[
        "",
        "/",
        "/@v/list",
        "/@latest",
        "/@v/v1.0.0.info",
        "/@v/v1.0.0.mod",
        "/@v/v1.0.0.zip",
        "/@v/v2.0.0+incompatible.zip",
        "/@v/v1.0.0-!r!c1.info",
        "/@v/master.info",
        "/@v/..info",
        "/@v/...info",
        "/@v/.zip",
        "/@v/v1.0.0.zip.zip",
        "/@v/%2e%2e.info",
        "/@v/v1.%2e.info",
        "/@v/!v1.0.0.info",
        "/@v/~.info",
        "/@v/v1.0.0%2b1.info",
        "/@v/v0.0.0-20240101000000-abcdefabcdef.zip",
        "/@v/a%2fb.info",
        "/@v/.%2e/x.info",
        "/supported",
        "/latest",
        "/lookup/example.com/m@v1.0.0",
        "/tile/8/0/x001/234.p/5",
        "/@v/v1.0.0-a.!b!c.info",
        "/@v/\u{e9}.info",
        "/@v/v1.0.0;x.mod",
    ];

    fn odd_path() -> impl Strategy<Value = String> {
        let segment = proptest::collection::vec(proptest::sample::select(ATOMS), 0..4)
            .prop_map(|atoms| atoms.concat());
        let structured = (
            proptest::collection::vec(segment, 0..7),
            proptest::bool::ANY,
            proptest::bool::ANY,
        )
            .prop_map(|(segs, lead, trail)| {
                let mut p = segs.join("/");
                if lead {
                    p.insert(0, '/');
                }
                if trail {
                    p.push('/');
                }
                p
            });
        // Close to valid requests, so that many are accepted and the property has teeth.
        let near_valid = (
            proptest::sample::select(HOSTS),
            proptest::collection::vec(proptest::sample::select(ELEMS), 0..4),
            proptest::sample::select(TAILS),
        )
            .prop_map(|(host, elems, tail)| {
                let mut p = format!("/{host}");
                for e in elems {
                    p.push('/');
                    p.push_str(e);
                }
                p + tail
            });
        prop_oneof![
            6 => near_valid,
            4 => structured,
            1 => "\\PC{0,300}",
            1 => "(/[a-z!.%0-9@~+-]{0,40}){0,12}",
            1 => (1usize..3000).prop_map(|n| format!("/example.com/{}/@v/list", "a".repeat(n))),
        ]
    }

    /// A path relative to the data directory that stays inside it.
    fn assert_contained(what: &str, path: &str) {
        assert!(!path.starts_with('/'), "{what}: absolute path {path:?}");
        assert!(!path.contains('\\'), "{what}: backslash in {path:?}");
        assert!(
            !path.chars().any(char::is_control),
            "{what}: control character in {path:?}"
        );
        for seg in path.split('/') {
            assert!(
                !seg.is_empty() && seg != "." && seg != "..",
                "{what}: segment {seg:?} in {path:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// `parse` never panics, and whatever it accepts maps to storage paths inside the data
        /// directory: no `..`, no leading `/`, no backslash, no empty segment.
        #[test]
        fn parse_never_panics_and_accepted_paths_stay_inside(raw in odd_path()) {
            let Ok(req) = parse(&raw) else { return Ok(()) };
            prop_assert!(raw.len() <= MAX_PATH);
            match &req {
                ProxyRequest::List(module) | ProxyRequest::Latest(module) => {
                    assert_contained(&raw, &module.escaped());
                    assert_contained(&raw, &StorageKey::List(module.clone()).path());
                    assert_contained(&raw, &StorageKey::Latest(module.clone()).path());
                }
                ProxyRequest::Artifact { module, version, kind } => {
                    assert_contained(&raw, &module.escaped());
                    // Only canonical versions are stored, but every version must be harmless.
                    let key = StorageKey::artifact(module, version, *kind);
                    assert_contained(&raw, &key.path());
                    prop_assert!(!version.contains('/'), "{raw:?}: version {version:?}");
                    // The module path round-trips through escaping.
                    let back = ModulePath::from_escaped(&module.escaped()).unwrap();
                    prop_assert_eq!(&back, module);
                }
                ProxyRequest::SumdbSupported { name } => {
                    assert_contained(&raw, name);
                    prop_assert!(!name.contains('/'));
                }
                ProxyRequest::Sumdb { name, path } => {
                    assert_contained(&raw, name);
                    assert_contained(&raw, path.rest());
                }
            }
        }
    }
}
