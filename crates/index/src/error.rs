//! [`IndexError`], the crate's one error type.
//!
//! A database URL never appears in an error as configured: only through
//! [`agora_secret::redact`], so a password in `postgres://user:pw@host/db` stays out of logs and
//! answers. Messages of the database drivers are redacted too, in case one quotes what it was given.

use std::path::PathBuf;

/// What can go wrong with the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The `[index]` settings are unusable (an unknown URL scheme, a malformed URL).
    #[error("index.{setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },

    /// The directory of the embedded SQLite file could not be created.
    #[error("cannot create the index directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The database could not be reached or opened. `url` is redacted.
    #[error("cannot open the index at {url}: {message}")]
    Connect { url: String, message: String },

    /// Bringing the schema up to date failed (or the database was written by a newer agora).
    #[error("index schema migration failed at {url}: {message}")]
    Migrate { url: String, message: String },

    /// A query failed. `op` names what the index was doing (`record_stored`, `feed`, ...).
    #[error("index {op} failed: {message}")]
    Query { op: &'static str, message: String },

    /// A stored row does not decode (a module path or version that is not valid, an unknown
    /// kind): the database was written by something other than agora, or damaged.
    #[error("index row unreadable ({what}): {value:?}")]
    Corrupt { what: &'static str, value: String },

    /// An argument the index cannot use (a bad pattern, a version that is not canonical).
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    /// Reading the store during a rebuild failed.
    #[error("index rebuild: {0}")]
    Storage(#[from] agora_storage::StorageError),
}

impl IndexError {
    /// A failed query of operation `op`, with the driver's message redacted.
    pub(crate) fn query(op: &'static str) -> impl FnOnce(sqlx::Error) -> IndexError {
        move |e| IndexError::Query {
            op,
            message: agora_secret::redact(&e.to_string()),
        }
    }

    pub(crate) fn corrupt(what: &'static str, value: impl Into<String>) -> IndexError {
        IndexError::Corrupt {
            what,
            value: value.into(),
        }
    }
}
