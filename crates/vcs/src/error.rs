//! The crate's single error type.
//!
//! Failures of `git` itself are classified ([`GitFailure`]) from git's stderr so that the server
//! can answer 404/403/502 (503 when our own disk failed under git) and `agora doctor` can print
//! a hint; everything about a module or a
//! version that does not exist is [`Error::InvalidVersion`] or [`Error::Module`], which the server
//! answers with 404/410 ("not here, try the next proxy").
//!
//! An [`Error`] has two faces. Its `Display` is for operators (logs, `agora doctor`): git command
//! lines and stderr, mirror paths, the repository URLs rules rewrite module paths to.
//! [`Error::for_client`] is what a client of the proxy may read: the cause in the go command's
//! terms, built from the module path, the version and the failure's kind only, never from that
//! detail.

use std::fmt;
use std::path::PathBuf;

/// Why a `git` command failed, as far as its stderr tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GitFailure {
    /// The repository does not exist (or the host pretends so to hide a private repository).
    NotFound,
    /// Credentials are missing or rejected (HTTP 401/403, SSH publickey, disabled prompts).
    AuthFailed,
    /// DNS, TCP or timeout trouble reaching the host.
    Unreachable,
    /// TLS verification failed, typically an internal CA that is not configured.
    UnknownCa,
    /// Our own disk failed under git (full, over quota, read-only): a local storage failure,
    /// not the remote's.
    LocalStorage,
    /// Anything else; the stderr says more.
    Other,
}

impl fmt::Display for GitFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GitFailure::NotFound => "repository not found",
            GitFailure::AuthFailed => "authentication failed",
            GitFailure::Unreachable => "host unreachable",
            GitFailure::UnknownCa => "TLS certificate signed by unknown authority",
            GitFailure::LocalStorage => "local storage failed",
            GitFailure::Other => "git failed",
        })
    }
}

impl GitFailure {
    /// The failure as a client of the proxy is told it: the cause, no detail.
    fn for_client(self) -> &'static str {
        match self {
            GitFailure::NotFound => "repository not found",
            GitFailure::AuthFailed => "the git server refused agora's credentials",
            GitFailure::Unreachable => "the git server is unreachable",
            GitFailure::UnknownCa => {
                "untrusted certificate: the git server's TLS certificate is not trusted by agora"
            }
            GitFailure::LocalStorage => "agora's storage failed",
            GitFailure::Other => "unexpected git failure (the details are in agora's log)",
        }
    }
}

/// Why a module path could not be mapped to a repository (PROTOCOL §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolveFailure {
    /// Nothing answers for this path: HTTP 404/410, no `go-import` tag for it, or no repository
    /// at any of the URLs tried.
    NotFound,
    /// The `?go-get=1` page or the repository wants credentials (HTTP 401/403, SSH publickey).
    AuthFailed,
    /// DNS, TCP, TLS handshake or timeout trouble.
    Unreachable,
    /// TLS verification failed, typically an internal CA that is not configured.
    UnknownCa,
    /// The `go-import` tags are malformed, ambiguous or inconsistent between the module path and
    /// its prefix.
    BadMeta,
    /// The path is served by something agora cannot fetch from: a `mod` (proxy) or non-git VCS
    /// tag.
    Unsupported,
    /// The `?go-get=1` page redirects from https to http and the path is not GOINSECURE: refused,
    /// as by the go command. The meta server is misconfigured; the host is reachable.
    InsecureRedirect,
}

impl fmt::Display for ResolveFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResolveFailure::NotFound => "not found",
            ResolveFailure::AuthFailed => "authentication failed",
            ResolveFailure::Unreachable => "host unreachable",
            ResolveFailure::UnknownCa => "TLS certificate signed by unknown authority",
            ResolveFailure::BadMeta => "bad go-import meta tag",
            ResolveFailure::Unsupported => "unsupported",
            ResolveFailure::InsecureRedirect => "insecure redirect",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `git` exited unsuccessfully. `command` and `stderr` have credentials redacted.
    #[error("{command}: {kind}: {stderr}")]
    Git {
        command: String,
        kind: GitFailure,
        stderr: String,
    },
    /// `git` could not be started or talked to (not installed, pipe broken).
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// Local filesystem trouble around the mirror directories.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A repository URL we refuse to hand to git (unknown scheme, `ext::`, control characters).
    #[error("unsupported repository URL {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    /// `git` answered something we cannot parse.
    #[error("{command}: unexpected output {output:?}")]
    BadOutput { command: String, output: String },
    /// The module cannot live in this repository (path outside the root, malformed path, no
    /// commits at all).
    #[error("module {module}: {reason}")]
    Module { module: String, reason: String },
    /// The version or query does not name a usable revision of the module. "Not found" for the
    /// GOPROXY protocol. `reason` starts with "invalid version: " or "invalid pseudo-version: ",
    /// as in the `go` command's messages.
    #[error("{module}@{version}: {reason}")]
    InvalidVersion {
        module: String,
        version: String,
        reason: String,
    },
    /// The module path could not be mapped to a repository. `reason` never holds credentials.
    #[error("resolving {module}: {kind}: {reason}")]
    Resolve {
        module: String,
        kind: ResolveFailure,
        reason: String,
    },
    /// The version's files do not make a valid module zip (invalid file names, case collisions,
    /// over 500 MiB, ...): the version cannot be served, the same for every caller.
    #[error("{module}@{version}: {reason}")]
    Zip {
        module: String,
        version: String,
        reason: String,
    },
    /// Output of `git` beyond what we accept (an archive over the size limit).
    #[error("{what}: output larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    /// Invalid configuration handed to [`crate::Vcs::new`] or [`crate::Resolver::new`].
    #[error("invalid VCS configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether this error means "the module or version does not exist" (404/410) rather than a
    /// failure to find out (5xx).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Git { kind, .. } => *kind == GitFailure::NotFound,
            Error::Module { .. } | Error::InvalidVersion { .. } | Error::Zip { .. } => true,
            // Bad or unsupported meta tags are facts about the path, the same for every caller
            // and every retry: "not here" lets the client try its next proxy.
            Error::Resolve { kind, .. } => matches!(
                kind,
                ResolveFailure::NotFound
                    | ResolveFailure::BadMeta
                    | ResolveFailure::Unsupported
                    | ResolveFailure::InsecureRedirect
            ),
            _ => false,
        }
    }

    /// Whether our own disk failed (full, over quota, read-only) under git or while writing a
    /// mirror or an archive: a storage failure of this machine, not the remote's.
    pub fn is_local_storage(&self) -> bool {
        match self {
            Error::Git { kind, .. } => *kind == GitFailure::LocalStorage,
            Error::Io { source, .. } => is_disk_failure(source),
            _ => false,
        }
    }

    /// The classification of a resolution failure, if this is one.
    pub fn resolve_failure(&self) -> Option<ResolveFailure> {
        match self {
            Error::Resolve { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The classification of a git failure, if this is one. A resolution failure (the meta
    /// request, or a `git ls-remote` probe) maps to the nearest kind too, so that callers
    /// answering 403 for refused credentials or an unknown CA need to look in one place only;
    /// [`Error::resolve_failure`] has the finer kind.
    pub fn git_failure(&self) -> Option<GitFailure> {
        match self {
            Error::Git { kind, .. } => Some(*kind),
            Error::Resolve { kind, .. } => Some(match kind {
                ResolveFailure::NotFound => GitFailure::NotFound,
                ResolveFailure::AuthFailed => GitFailure::AuthFailed,
                ResolveFailure::Unreachable => GitFailure::Unreachable,
                ResolveFailure::UnknownCa => GitFailure::UnknownCa,
                ResolveFailure::BadMeta
                | ResolveFailure::Unsupported
                | ResolveFailure::InsecureRedirect => GitFailure::Other,
            }),
            _ => None,
        }
    }
}

impl Error {
    /// The error as a client of the proxy may read it (see the module documentation); `Display`
    /// is the detailed version, for agora's log.
    pub fn for_client(&self) -> ForClient<'_> {
        ForClient(self)
    }
}

/// [`Error::for_client`]: the cause in the go command's terms, without command lines, paths or
/// repository URLs. Failures of git or of resolution do not name the module (the caller says
/// what it was fetching); version and module errors do, as the go command's messages do.
#[derive(Debug)]
pub struct ForClient<'a>(&'a Error);

impl fmt::Display for ForClient<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Error::Git { kind, .. } => f.write_str(kind.for_client()),
            Error::Spawn { .. } => f.write_str("agora could not run git"),
            Error::Io { .. } => f.write_str("agora's git mirror failed"),
            Error::BadUrl { reason, .. } => write!(f, "unsupported repository URL: {reason}"),
            Error::BadOutput { .. } => f.write_str("git gave output agora does not understand"),
            // Built from the module path, the version and go's own wording of what is wrong
            // with them: already in the go command's terms.
            e @ (Error::Module { .. } | Error::InvalidVersion { .. } | Error::Zip { .. }) => {
                write!(f, "{e}")
            }
            // The go command shows both URLs of a refused redirect: the client could fetch the
            // page itself, and nothing in them is agora's.
            Error::Resolve {
                kind: ResolveFailure::InsecureRedirect,
                reason,
                ..
            } => write!(f, "insecure redirect: {reason}"),
            Error::Resolve { kind, .. } => {
                // The reason names the URLs that were tried: the kind is the cause.
                let cause = match kind {
                    ResolveFailure::InsecureRedirect => "insecure redirect",
                    ResolveFailure::NotFound => GitFailure::NotFound.for_client(),
                    ResolveFailure::AuthFailed => GitFailure::AuthFailed.for_client(),
                    ResolveFailure::Unreachable => GitFailure::Unreachable.for_client(),
                    ResolveFailure::UnknownCa => GitFailure::UnknownCa.for_client(),
                    ResolveFailure::BadMeta => "invalid go-import meta tags",
                    ResolveFailure::Unsupported => {
                        "not served from a git repository agora can fetch (a module proxy or \
                         another version control system)"
                    }
                };
                f.write_str(cause)
            }
            Error::TooLarge { limit, .. } => {
                write!(f, "the module's files are larger than {limit} bytes")
            }
            Error::Config(_) => f.write_str("agora's git configuration is invalid"),
        }
    }
}

/// Whether an I/O error says the local disk cannot take writes.
pub(crate) fn is_disk_failure(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::ReadOnlyFilesystem
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: clients were sent the `Display` of these errors, with git's command line, the
    /// mirror path and the rewritten repository URL in it.
    #[test]
    fn the_client_text_names_the_cause_and_nothing_internal() {
        let url = "https://git.internal.example/team/lib.git";
        let cases = [
            (
                Error::Git {
                    command: format!("git -C /data/_agora/mirrors/x fetch -- {url}"),
                    kind: GitFailure::AuthFailed,
                    stderr: format!("fatal: Authentication failed for '{url}'"),
                },
                "the git server refused agora's credentials",
            ),
            (
                Error::Resolve {
                    module: "alias.example/lib".into(),
                    kind: ResolveFailure::NotFound,
                    reason: format!("{url}: git ls-remote -- {url} HEAD: not found"),
                },
                "repository not found",
            ),
            (
                Error::Resolve {
                    module: "alias.example/lib".into(),
                    kind: ResolveFailure::UnknownCa,
                    reason: format!("{url}: certificate signed by unknown authority"),
                },
                "untrusted certificate",
            ),
            (
                Error::Io {
                    path: "/data/_agora/mirrors/x".into(),
                    source: std::io::Error::other("boom"),
                },
                "agora's git mirror failed",
            ),
            (
                Error::BadOutput {
                    command: "git -C /data/_agora/mirrors/x rev-parse".into(),
                    output: "garbage".into(),
                },
                "git gave output agora does not understand",
            ),
        ];
        for (err, cause) in cases {
            let client = err.for_client().to_string();
            assert!(client.starts_with(cause), "{client}");
            for internal in ["git.internal", "/data", "--", "ls-remote", "fetch"] {
                assert!(!client.contains(internal), "{internal}: {client}");
            }
            assert!(err.to_string().contains("/data") || err.to_string().contains(url));
        }
        let unknown = Error::InvalidVersion {
            module: "alias.example/lib".into(),
            version: "v1.2.3".into(),
            reason: "invalid version: unknown revision v1.2.3".into(),
        };
        assert_eq!(
            unknown.for_client().to_string(),
            "alias.example/lib@v1.2.3: invalid version: unknown revision v1.2.3"
        );
    }
}
