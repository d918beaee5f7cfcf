//! Request paths → typed requests. Everything after this module works with validated values.

use agora_gomod::module::{unescape_version, ModulePath};
use agora_storage::ArtifactKind;

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
        rest: String,
    },
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
                rest: rest.to_owned(),
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
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
                rest: "tile/8/0/000".into()
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
        let long = format!("/example.com/{}/@v/list", "a".repeat(MAX_PATH));
        assert!(matches!(parse(&long), Err(AppError::UriTooLong)));
    }
}
