//! The crate's error type for configuration and file problems: the tokens file, inline tokens,
//! access rules, the audit log file. These surface at startup, on reload, or from `agora token`,
//! so every message names the file or the entry at fault.
//!
//! A malformed `Authorization` header is a different matter (a per-request client error that the
//! server answers with 401), so it has its own small type, [`crate::CredentialError`].
//!
//! No message ever contains a token secret or a token hash: errors end up in logs.

use std::path::PathBuf;

/// Every configuration or file error this crate reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// Reading or writing a file (tokens file, audit log) failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A tokens file is not valid TOML or does not have the `[[token]]` shape. Only the parser's
    /// message and the line are kept: its default rendering quotes the offending line, which may
    /// hold a hash.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },

    /// One token entry is invalid. `origin` is the file path or "inline tokens"; `entry` names the
    /// token (`token "ci-payments"`, or `token #3` when the name itself is the problem).
    #[error("{origin}: {entry}: {reason}")]
    InvalidToken {
        origin: String,
        entry: String,
        reason: String,
    },

    /// `agora token add` with a name that is already taken.
    #[error("a token named {name:?} already exists (revoke it first to replace it)")]
    TokenExists { name: String },

    /// A group name that no token could ever carry.
    #[error("invalid group name {group:?}: use only letters, digits, '.', '_' and '-'")]
    InvalidGroup { group: String },

    /// An access rule that cannot work as written. `index` counts from 1, as people do.
    #[error("access rule #{index} (pattern {pattern:?}): {reason}")]
    InvalidRule {
        index: usize,
        pattern: String,
        reason: &'static str,
    },

    /// The operating system's random number generator failed (practically never).
    #[error("cannot get random bytes for a token: {0}")]
    Random(getrandom::Error),
}

impl AccessError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AccessError {
        let path = path.into();
        move |source| AccessError::Io { path, source }
    }
}
