//! The `GOPROXY` list and its fallback rules, as the go command implements them
//! (cmd/go/internal/modfetch/proxy.go).

use std::fmt;
use std::future::Future;

use crate::client::FetchError;

/// Where one entry of the list sends a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A module proxy base URL (`https://...`, `http://...` or `file://...`), without trailing `/`.
    Proxy(String),
    /// Fetch from version control.
    Direct,
    /// Refuse to fetch.
    Off,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Proxy(url) => f.write_str(url),
            Target::Direct => f.write_str("direct"),
            Target::Off => f.write_str("off"),
        }
    }
}

/// One entry of a parsed `GOPROXY` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainEntry {
    pub target: Target,
    /// True when the entry was followed by `|`: any error moves on to the next entry, not only
    /// "not found".
    pub fallback_on_error: bool,
}

impl AsRef<ChainEntry> for ChainEntry {
    fn as_ref(&self) -> &ChainEntry {
        self
    }
}

/// Why walking a chain failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("GOPROXY list {0:?} contains no entries")]
    Empty(String),
    #[error("invalid GOPROXY entry {entry:?}: {reason}")]
    InvalidEntry { entry: String, reason: &'static str },
}

/// Parses a `GOPROXY` value. Entries are separated by `,` or `|`; the separator *after* an entry
/// sets its fallback rule. `direct` and `off` end the list (later entries are ignored, as the go
/// command does). A bare host gets `https://`.
pub fn parse_goproxy(value: &str) -> Result<Vec<ChainEntry>, ChainError> {
    let mut entries = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let (raw, fallback_on_error) = match rest.find([',', '|']) {
            Some(i) => {
                let sep = rest.as_bytes()[i];
                let raw = &rest[..i];
                rest = &rest[i + 1..];
                (raw, sep == b'|')
            }
            None => {
                let raw = rest;
                rest = "";
                (raw, false)
            }
        };
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let target = match raw {
            "off" => Target::Off,
            "direct" => Target::Direct,
            _ => Target::Proxy(normalize_proxy_url(raw)?),
        };
        let terminal = matches!(target, Target::Off | Target::Direct);
        entries.push(ChainEntry {
            target,
            fallback_on_error,
        });
        if terminal {
            break;
        }
    }
    if entries.is_empty() {
        return Err(ChainError::Empty(value.to_owned()));
    }
    Ok(entries)
}

fn normalize_proxy_url(raw: &str) -> Result<String, ChainError> {
    let invalid = |reason| ChainError::InvalidEntry {
        entry: raw.to_owned(),
        reason,
    };
    let url = if raw.contains(":/") || raw.starts_with('/') {
        raw.to_owned()
    } else if raw.contains(['.', ':', '/']) {
        format!("https://{raw}")
    } else {
        // Single words are reserved for built-in behaviours, as in the go command.
        return Err(invalid(
            "unknown keyword (expected a URL, \"direct\" or \"off\")",
        ));
    };
    let scheme_end = url.find("://").ok_or_else(|| invalid("missing scheme"))?;
    match &url[..scheme_end] {
        "http" | "https" | "file" => {}
        _ => return Err(invalid("unsupported scheme (use http, https or file)")),
    }
    if url[scheme_end + 3..].is_empty() {
        return Err(invalid("missing host"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Walks `entries` in order with `attempt`, applying the go command's fallback rules:
/// success stops; "not found" moves on; any other error moves on only after a `|` entry.
/// When every entry fails, the most informative error is returned (a real failure beats a
/// "not found", which beats nothing at all).
pub async fn walk<'a, E, T, X, F, Fut>(entries: &'a [E], mut attempt: F) -> Result<T, X>
where
    E: AsRef<ChainEntry>,
    X: WalkError,
    F: FnMut(&'a E) -> Fut,
    Fut: Future<Output = Result<T, X>>,
{
    let mut best: Option<X> = None;
    for item in entries {
        let entry = item.as_ref();
        if entry.target == Target::Off {
            return Err(best.unwrap_or_else(X::disabled));
        }
        match attempt(item).await {
            Ok(v) => return Ok(v),
            Err(err) => {
                let not_found = err.is_not_found();
                let terminal = entry.target == Target::Direct;
                if terminal || (!not_found && !entry.fallback_on_error) {
                    return Err(err);
                }
                best = Some(match best {
                    // Keep the first real failure; a later "not found" does not hide it.
                    Some(prev) if !prev.is_not_found() && not_found => prev,
                    _ => err,
                });
            }
        }
    }
    Err(best.unwrap_or_else(X::disabled))
}

/// What [`walk`] needs to know of an attempt's error.
pub trait WalkError {
    /// "Not here": the go command moves on to the next `,` entry only for these.
    fn is_not_found(&self) -> bool;
    /// The answer when the list ends in `off` (or is empty) with nothing better.
    fn disabled() -> Self;
}

impl WalkError for FetchError {
    fn is_not_found(&self) -> bool {
        FetchError::is_not_found(self)
    }

    fn disabled() -> Self {
        FetchError::Disabled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(url: &str, fallback_on_error: bool) -> ChainEntry {
        ChainEntry {
            target: Target::Proxy(url.into()),
            fallback_on_error,
        }
    }

    #[test]
    fn parses_like_the_go_command() {
        assert_eq!(
            parse_goproxy("https://a.example,b.example|http://c.example/x/,direct,https://ignored")
                .unwrap(),
            vec![
                proxy("https://a.example", false),
                proxy("https://b.example", true),
                proxy("http://c.example/x", false),
                ChainEntry {
                    target: Target::Direct,
                    fallback_on_error: false
                },
            ]
        );
        assert_eq!(
            parse_goproxy(" off ").unwrap(),
            vec![ChainEntry {
                target: Target::Off,
                fallback_on_error: false
            }]
        );
        assert_eq!(
            parse_goproxy("file:///srv/goproxy").unwrap(),
            vec![proxy("file:///srv/goproxy", false)]
        );
        assert!(matches!(parse_goproxy(" , "), Err(ChainError::Empty(_))));
        assert!(parse_goproxy("noproxy").is_err());
        assert!(parse_goproxy("ftp://x.example").is_err());
    }

    fn run(
        entries: &[ChainEntry],
        results: Vec<Result<u32, FetchError>>,
    ) -> (Result<u32, FetchError>, usize) {
        let results = std::sync::Mutex::new(results.into_iter());
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let out = futures::executor::block_on(walk(entries, |_| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let next = results.lock().unwrap().next().expect("too many calls");
            async move { next }
        }));
        (out, calls.into_inner())
    }

    fn nf() -> FetchError {
        FetchError::NotFound {
            status: 404,
            message: "not found".into(),
        }
    }

    fn boom() -> FetchError {
        FetchError::Status {
            url: "https://a.example/x".into(),
            status: 500,
        }
    }

    #[test]
    fn comma_falls_through_only_on_not_found() {
        let chain = [proxy("a", false), proxy("b", false)];
        let (r, calls) = run(&chain, vec![Err(nf()), Ok(2)]);
        assert_eq!((r.unwrap(), calls), (2, 2));
        let (r, calls) = run(&chain, vec![Err(boom()), Ok(2)]);
        assert!(matches!(r, Err(FetchError::Status { status: 500, .. })));
        assert_eq!(calls, 1);
    }

    #[test]
    fn pipe_falls_through_on_any_error() {
        let chain = [proxy("a", true), proxy("b", false)];
        let (r, calls) = run(&chain, vec![Err(boom()), Ok(2)]);
        assert_eq!((r.unwrap(), calls), (2, 2));
        // A real failure is reported over a later "not found".
        let (r, _) = run(&chain, vec![Err(boom()), Err(nf())]);
        assert!(matches!(r, Err(FetchError::Status { status: 500, .. })));
    }

    #[test]
    fn off_stops() {
        let chain = parse_goproxy("a.example,off").unwrap();
        let (r, calls) = run(&chain, vec![Err(nf())]);
        assert!(r.unwrap_err().is_not_found());
        assert_eq!(calls, 1);
        let (r, calls) = run(&parse_goproxy("off").unwrap(), vec![]);
        assert!(matches!(r, Err(FetchError::Disabled)));
        assert_eq!(calls, 0);
    }
}
