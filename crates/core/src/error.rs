//! [`CoreError`]: why the proxy could not answer. Each variant has one meaning for the client;
//! the mapping to HTTP statuses lives in `agora-server`. It is cheap to clone (the errors of other
//! crates it carries are shared), because one fetch's outcome goes to every request waiting for
//! it.

use std::sync::Arc;

use agora_storage::StorageError;
use agora_upstream::FetchError;
use agora_vcs::GitFailure;

use crate::source::SourceError;

#[derive(Clone, Debug, thiserror::Error)]
pub enum CoreError {
    /// The module or version does not exist (upstream said 404/410, or the request cannot name
    /// anything that exists, such as a non-canonical version for `.zip`).
    #[error("{0}")]
    NotFound(String),
    /// `Disable-Module-Fetch: true` and the answer is not cached.
    #[error("{0}: not cached and fetching is disabled by Disable-Module-Fetch")]
    NotCached(String),
    /// The origin refused agora (credentials rejected, untrusted certificate): a configuration
    /// problem on agora's side that the client cannot fix by retrying.
    #[error("{0}")]
    Forbidden(String),
    /// Refused by a filter rule or the validation webhook; the message names the rule.
    #[error("{0}")]
    Blocked(String),
    /// A service agora needs to answer (the validation webhook) is unavailable; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// Not cached, and the download mode sends the client to another proxy: `location` is the
    /// same request there.
    #[error("{what}: not cached; fetch it from {location}")]
    Redirect { what: String, location: String },
    /// Not cached; a background fetch was started (download mode `async`).
    #[error("{0}: not cached yet; it is being fetched, retry shortly")]
    FetchingInBackground(String),
    /// Too many fetches queued: the limit's queue timeout passed.
    #[error("{0}")]
    Overloaded(String),
    /// Fetching is refused by configuration (GOPROXY=off).
    #[error("{0}: module lookup disabled by GOPROXY=off")]
    Disabled(String),
    /// The route exists but agora cannot serve it yet.
    #[error("{0}")]
    Unsupported(String),
    /// An upstream failed in a way that is not "not found".
    #[error("{what}: {source}")]
    Upstream {
        what: String,
        #[source]
        source: Arc<FetchError>,
    },
    /// Git failed for a reason other than "not found", a refusal or our own disk. `message` is
    /// the failure in the go command's terms ([`agora_vcs::Error::for_client`]); the detail is
    /// logged where the failure is translated.
    #[error("{what}: upstream git failed: {message}")]
    Git { what: String, message: String },
    /// The upstream answered, but the answer is not acceptable (and was not cached).
    #[error("{what}: invalid upstream answer: {reason}")]
    InvalidUpstream { what: String, reason: String },
    /// Verification against the checksum database failed: the version is unknown to it, our
    /// bytes differ from its record, it misbehaved, or it could not be asked.
    #[error("verifying {0}")]
    Checksum(Arc<agora_sumdb::SumdbError>),
    #[error(transparent)]
    Storage(Arc<StorageError>),
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    /// An upstream did not answer in time (the server answers 504 rather than 502).
    pub fn is_timeout(&self) -> bool {
        matches!(self, CoreError::Upstream { source, .. } if matches!(**source, FetchError::Timeout { .. }))
    }

    /// Translates what a source said about `what` (`module@version`): the one place where
    /// upstream and git failures become the proxy's vocabulary.
    pub fn from_source(what: &str, err: SourceError) -> Self {
        match err {
            SourceError::Upstream(e) => CoreError::from_fetch(what, e),
            SourceError::Vcs(e) => CoreError::from_vcs(what, e),
            SourceError::Invalid {
                source_name: _,
                reason,
            } => CoreError::InvalidUpstream {
                what: what.to_owned(),
                reason: reason.to_string(),
            },
            SourceError::Disabled => CoreError::Disabled(what.to_owned()),
            SourceError::Overloaded(message) => CoreError::Overloaded(format!("{what}: {message}")),
        }
    }

    /// A git failure: "does not exist" is not-found (404, the client may try elsewhere),
    /// rejected credentials or an untrusted certificate are refusals (403), our own disk failing
    /// under git (full, read-only) is a storage failure (503, like a download that cannot be
    /// written), everything else is [`CoreError::Git`] (502).
    ///
    /// What goes on to the client is the error's [`agora_vcs::Error::for_client`] text. The
    /// detail (git command lines, mirror paths, rewritten repository URLs) is logged here, once
    /// per fetch, except for storage failures, whose detail travels on to the server's log line
    /// for 5xx.
    fn from_vcs(what: &str, err: agora_vcs::Error) -> Self {
        if err.is_local_storage() {
            let path = match &err {
                agora_vcs::Error::Io { path, .. } => path.clone(),
                _ => "git mirror".into(),
            };
            return CoreError::Storage(Arc::new(StorageError::Scratch {
                path,
                source: std::io::Error::other(err.to_string()),
            }));
        }
        let message = err.for_client().to_string();
        if err.is_not_found() {
            // An everyday answer (the go command probes path prefixes): detail for debugging.
            tracing::debug!(module = what, error = %err, "not found in git");
            return CoreError::NotFound(format!("{what}: {message}"));
        }
        tracing::warn!(module = what, error = %err, "git failed");
        match err.git_failure() {
            Some(GitFailure::AuthFailed | GitFailure::UnknownCa) => {
                CoreError::Forbidden(format!("{what}: {message}"))
            }
            _ => CoreError::Git {
                what: what.to_owned(),
                message,
            },
        }
    }

    /// Wraps an upstream failure for `what` (`module@version`), keeping "not found" distinct.
    pub fn from_fetch(what: &str, err: FetchError) -> Self {
        match err {
            FetchError::NotFound { message, .. } => {
                CoreError::NotFound(format!("{what}: {message}"))
            }
            FetchError::Disabled => CoreError::Disabled(what.to_owned()),
            FetchError::Refused { message } => CoreError::Forbidden(format!("{what}: {message}")),
            // Our own disk failed while receiving a download: a storage problem (503, generic
            // body), not an upstream one.
            FetchError::Scratch { path, source } => {
                CoreError::Storage(Arc::new(StorageError::Scratch { path, source }))
            }
            FetchError::Overloaded(message) => CoreError::Overloaded(format!("{what}: {message}")),
            FetchError::Unsupported(msg) => CoreError::Unsupported(format!("{what}: {msg}")),
            FetchError::Invalid { reason, .. } => CoreError::InvalidUpstream {
                what: what.to_owned(),
                reason,
            },
            source => CoreError::Upstream {
                what: what.to_owned(),
                source: Arc::new(source),
            },
        }
    }
}

impl From<agora_sumdb::SumdbError> for CoreError {
    fn from(e: agora_sumdb::SumdbError) -> Self {
        CoreError::Checksum(Arc::new(e))
    }
}

impl From<StorageError> for CoreError {
    fn from(e: StorageError) -> Self {
        CoreError::Storage(Arc::new(e))
    }
}
