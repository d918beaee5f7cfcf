//! The crate's single error type.
//!
//! Messages follow the wording of the `go` command where one exists (`malformed module path "x":
//! missing dot in first path element`), because they end up in 404/410 bodies that the Go client
//! prints to its user, and a familiar message is the most useful one there.

use std::fmt;

/// Which kind of path a check was about; decides the allowed characters (x/mod `pathKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// A module path (`example.com/m/v2`).
    Module,
    /// An import path: a module path that may also contain `+`.
    Import,
    /// A file path inside a module zip.
    File,
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathKind::Module => "module",
            PathKind::Import => "import",
            PathKind::File => "file",
        })
    }
}

/// What an escaped string was supposed to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EscapeKind {
    /// An escaped module path (`github.com/!azure/x`).
    ModulePath,
    /// An escaped version (`v1.0.0-!r!c1`).
    Version,
}

impl fmt::Display for EscapeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EscapeKind::ModulePath => "module path",
            EscapeKind::Version => "version",
        })
    }
}

/// Every error this crate reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A module, import or file path broke Go's path rules.
    #[error("malformed {kind} path {path:?}: {reason}")]
    InvalidPath {
        kind: PathKind,
        path: String,
        reason: String,
    },

    /// A version string is not acceptable where it was used.
    #[error("version {version:?} invalid: {reason}")]
    InvalidVersion { version: String, reason: String },

    /// A string claimed to be a pseudo-version but is not a well-formed one.
    #[error("pseudo-version {version:?} invalid: {reason}")]
    InvalidPseudoVersion { version: String, reason: String },

    /// A `!`-escaped path or version from a URL could not be decoded.
    #[error("invalid escaped {kind} {escaped:?}{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    InvalidEscape {
        kind: EscapeKind,
        escaped: String,
        reason: Option<String>,
    },

    /// A go.mod file could not be parsed.
    #[error("go.mod:{line}: {reason}")]
    GoMod { line: usize, reason: String },

    /// A module zip (being built or checked) breaks the module zip rules.
    #[error("{module}@{version}: {reason}")]
    Zip {
        module: String,
        version: String,
        reason: String,
    },

    /// Content could not be hashed (a file name with a newline, an entry larger than declared).
    #[error("h1 hash: {reason}")]
    Hash { reason: String },

    /// The zip container itself is unreadable or could not be written.
    #[error("{context}: {source}")]
    ZipFormat {
        context: String,
        #[source]
        source: zip::result::ZipError,
    },

    /// Reading file content (supplied by the caller) or writing output failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn path(kind: PathKind, path: &str, reason: impl Into<String>) -> Self {
        Error::InvalidPath {
            kind,
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn version(version: &str, reason: impl Into<String>) -> Self {
        Error::InvalidVersion {
            version: version.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn pseudo(version: &str, reason: impl Into<String>) -> Self {
        Error::InvalidPseudoVersion {
            version: version.to_owned(),
            reason: reason.into(),
        }
    }
}
