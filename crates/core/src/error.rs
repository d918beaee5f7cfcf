//! [`CoreError`]: why the proxy could not answer, and [`Subject`]: what about. Each variant has
//! one meaning for the client; the mapping to HTTP statuses lives in `agora-server`. Module and
//! version are fields, so what reads an error (logs, the not-found memory, the UI's failure list)
//! never parses a message. It is cheap to clone (the errors of other crates it carries are
//! shared), because one fetch's outcome goes to every request waiting for it.

use std::fmt;
use std::sync::Arc;

use agora_gomod::module::ModulePath;
use agora_storage::{StorageError, StorageKey};
use agora_upstream::FetchError;
use agora_vcs::GitFailure;

use crate::source::SourceError;

/// What a request was about. Displays as the go command names it: `module`, `module@version`
/// (or `module@query`), or a checksum database's name and path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A module as a whole: its version list, or its path alone.
    Module(ModulePath),
    /// A version of a module, or a query about it (`latest`, a branch, a commit prefix).
    Version { module: ModulePath, version: String },
    /// A path in a checksum database (`lookup/...`, `tile/...`, `latest`).
    Sumdb { name: String, path: String },
}

impl Subject {
    pub fn version(module: &ModulePath, version: &str) -> Subject {
        Subject::Version {
            module: module.clone(),
            version: version.to_owned(),
        }
    }

    /// What a request for `key` is about.
    pub fn of_key(key: &StorageKey) -> Subject {
        match key {
            StorageKey::List(m) => Subject::Module(m.clone()),
            StorageKey::Latest(m) => Subject::version(m, "latest"),
            StorageKey::Artifact {
                module, version, ..
            } => Subject::version(module, version),
            StorageKey::SumdbTile { name, path } => Subject::Sumdb {
                name: name.clone(),
                path: path.clone(),
            },
            StorageKey::SumdbLatest { name } => Subject::Sumdb {
                name: name.clone(),
                path: "latest".to_owned(),
            },
            StorageKey::OwnSumdb { name, path } => Subject::Sumdb {
                name: name.clone(),
                path: path.clone(),
            },
        }
    }

    /// The module, unless the subject is a checksum database's.
    pub fn module(&self) -> Option<&ModulePath> {
        match self {
            Subject::Module(m) | Subject::Version { module: m, .. } => Some(m),
            Subject::Sumdb { .. } => None,
        }
    }

    /// The version or query, when there is one.
    pub fn version_or_query(&self) -> Option<&str> {
        match self {
            Subject::Version { version, .. } => Some(version),
            Subject::Module(_) | Subject::Sumdb { .. } => None,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Module(m) => write!(f, "{m}"),
            Subject::Version { module, version } => write!(f, "{module}@{version}"),
            Subject::Sumdb { name, path } => write!(f, "{name} {path}"),
        }
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum CoreError {
    /// The module or version does not exist (upstream said 404/410, or the request cannot name
    /// anything that exists, such as a non-canonical version for `.zip`).
    #[error("{subject}: {message}")]
    NotFound { subject: Subject, message: String },
    /// A cache-only request (`Disable-Module-Fetch: true`, `/cached-only/`) and the answer is not
    /// cached.
    #[error(
        "{0}: not cached, and this request may not fetch (Disable-Module-Fetch, /cached-only/)"
    )]
    NotCached(Subject),
    /// The origin refused agora (credentials rejected, untrusted certificate): a configuration
    /// problem on agora's side that the client cannot fix by retrying.
    #[error("{subject}: {message}")]
    Forbidden { subject: Subject, message: String },
    /// Refused by a filter rule or the validation webhook; the reason names the rule.
    #[error("{subject}: {reason}")]
    Blocked { subject: Subject, reason: String },
    /// Quarantined by an operator (`agora quarantine`): not served, not listed, kept aside.
    #[error("{subject}: quarantined: {reason}")]
    Quarantined { subject: Subject, reason: String },
    /// Allowed, but younger than the minimum release age of the filter rule deciding it: served
    /// from `allowed_from` on.
    #[error(
        "{subject}: too new: published {}, served from {} on ({rule})",
        humantime::format_rfc3339_seconds(*.published),
        humantime::format_rfc3339_seconds(*.allowed_from)
    )]
    TooNew {
        subject: Subject,
        published: std::time::SystemTime,
        allowed_from: std::time::SystemTime,
        rule: String,
    },
    /// A service agora needs to answer (the validation webhook) is unavailable; retry later.
    #[error("{subject}: {message}")]
    Unavailable { subject: Subject, message: String },
    /// Not cached, and the download mode sends the client to another proxy: `location` is the
    /// same request there.
    #[error("{subject}: not cached; fetch it from {location}")]
    Redirect { subject: Subject, location: String },
    /// Not cached; a background fetch was started (download mode `async`).
    #[error("{0}: not cached yet; it is being fetched, retry shortly")]
    FetchingInBackground(Subject),
    /// Too many fetches queued: the limit's queue timeout passed.
    #[error("{subject}: {message}")]
    Overloaded { subject: Subject, message: String },
    /// Fetching is refused by configuration (GOPROXY=off).
    #[error("{0}: module lookup disabled by GOPROXY=off")]
    Disabled(Subject),
    /// The route exists but agora cannot serve it yet.
    #[error("{subject}: {message}")]
    Unsupported { subject: Subject, message: String },
    /// An upstream failed in a way that is not "not found".
    #[error("{subject}: {source}")]
    Upstream {
        subject: Subject,
        #[source]
        source: Arc<FetchError>,
    },
    /// Git failed for a reason other than "not found", a refusal or our own disk. `message` is
    /// the failure in the go command's terms ([`agora_vcs::Error::for_client`]); the detail is
    /// logged where the failure is translated.
    #[error("{subject}: upstream git failed: {message}")]
    Git { subject: Subject, message: String },
    /// The upstream answered, but the answer is not acceptable (and was not cached).
    #[error("{subject}: invalid upstream answer: {reason}")]
    InvalidUpstream { subject: Subject, reason: String },
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

    /// What kind of failure this is, for people grouping failures (the status page), with a
    /// hint of what to look at; `None` for answers that are not failures of agora or its sources
    /// (not found, not cached, refused by policy, redirects).
    pub fn failure_cause(&self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            CoreError::Upstream { .. } => (
                "upstream",
                "an upstream proxy failed or timed out: check upstream.proxy and the network",
            ),
            CoreError::InvalidUpstream { .. } => (
                "invalid upstream answer",
                "an upstream sent something the go command would refuse: nothing was cached",
            ),
            CoreError::Git { .. } => (
                "git",
                "git failed for a private module: run `agora doctor MODULE@VERSION` for the step and a hint",
            ),
            CoreError::Forbidden { .. } => (
                "credentials",
                "a source refused agora's credentials or certificate: run `agora doctor MODULE` to see which",
            ),
            CoreError::Checksum(_) => (
                "checksum database",
                "verification failed or could not be done: a mismatch is a security error, check the log",
            ),
            CoreError::Unavailable { .. } => (
                "validation webhook",
                "the validation webhook did not answer: check validation.url",
            ),
            CoreError::Overloaded { .. } => (
                "overloaded",
                "fetches queued past limits.queue_timeout: raise limits or add replicas",
            ),
            CoreError::Storage(_) => (
                "storage",
                "the store failed: check /readyz, disk space or the bucket's credentials",
            ),
            CoreError::Internal(_) => ("internal", "a bug or an invariant broken: check the log"),
            CoreError::NotFound { .. }
            | CoreError::NotCached(_)
            | CoreError::Blocked { .. }
            | CoreError::Quarantined { .. }
            | CoreError::TooNew { .. }
            | CoreError::Redirect { .. }
            | CoreError::FetchingInBackground(_)
            | CoreError::Disabled(_)
            | CoreError::Unsupported { .. } => return None,
        })
    }

    /// Whether the answer is "does not exist" (404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CoreError::NotFound { .. })
    }

    /// What the failed request was about, when the error says.
    pub fn subject(&self) -> Option<&Subject> {
        match self {
            CoreError::NotFound { subject, .. }
            | CoreError::NotCached(subject)
            | CoreError::Forbidden { subject, .. }
            | CoreError::Blocked { subject, .. }
            | CoreError::Quarantined { subject, .. }
            | CoreError::TooNew { subject, .. }
            | CoreError::Unavailable { subject, .. }
            | CoreError::Redirect { subject, .. }
            | CoreError::FetchingInBackground(subject)
            | CoreError::Overloaded { subject, .. }
            | CoreError::Disabled(subject)
            | CoreError::Unsupported { subject, .. }
            | CoreError::Upstream { subject, .. }
            | CoreError::Git { subject, .. }
            | CoreError::InvalidUpstream { subject, .. } => Some(subject),
            CoreError::Checksum(_) | CoreError::Storage(_) | CoreError::Internal(_) => None,
        }
    }

    pub(crate) fn not_found(subject: Subject, message: impl Into<String>) -> Self {
        CoreError::NotFound {
            subject,
            message: message.into(),
        }
    }

    /// Translates what a source said about `subject`: the one place where upstream and git
    /// failures become the proxy's vocabulary.
    pub fn from_source(subject: &Subject, err: SourceError) -> Self {
        match err {
            SourceError::Upstream(e) => CoreError::from_fetch(subject, e),
            SourceError::Vcs(e) => CoreError::from_vcs(subject, e),
            SourceError::Invalid {
                source_name: _,
                reason,
            } => CoreError::InvalidUpstream {
                subject: subject.clone(),
                reason: reason.to_string(),
            },
            SourceError::Disabled => CoreError::Disabled(subject.clone()),
            SourceError::Overloaded(message) => CoreError::Overloaded {
                subject: subject.clone(),
                message,
            },
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
    fn from_vcs(subject: &Subject, err: agora_vcs::Error) -> Self {
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
            tracing::debug!(module = %subject, error = %err, "not found in git");
            return CoreError::not_found(subject.clone(), message);
        }
        tracing::warn!(module = %subject, error = %err, "git failed");
        let subject = subject.clone();
        match err.git_failure() {
            Some(GitFailure::AuthFailed | GitFailure::UnknownCa) => {
                CoreError::Forbidden { subject, message }
            }
            _ => CoreError::Git { subject, message },
        }
    }

    /// Wraps an upstream failure for `subject`, keeping "not found" distinct.
    pub fn from_fetch(subject: &Subject, err: FetchError) -> Self {
        let subject = subject.clone();
        match err {
            FetchError::NotFound { message, .. } => CoreError::NotFound { subject, message },
            FetchError::Disabled => CoreError::Disabled(subject),
            FetchError::Refused { message } => CoreError::Forbidden { subject, message },
            // Our own disk failed while receiving a download: a storage problem (503, generic
            // body), not an upstream one.
            FetchError::Scratch { path, source } => {
                CoreError::Storage(Arc::new(StorageError::Scratch { path, source }))
            }
            FetchError::Overloaded(message) => CoreError::Overloaded { subject, message },
            FetchError::Unsupported(message) => CoreError::Unsupported { subject, message },
            FetchError::Invalid { reason, .. } => CoreError::InvalidUpstream { subject, reason },
            source => CoreError::Upstream {
                subject,
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
