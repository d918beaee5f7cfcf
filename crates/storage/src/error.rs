//! [`StorageError`]: what can go wrong in the storage layer, shared by every backend and by the
//! settings checks (its own module so that none of them depends on [`crate::store`]).

use std::path::PathBuf;

/// Errors from the storage layer. They carry the key's path; never credentials.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("storage {op} failed for {key}: {source}")]
    Backend {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("storage {op} failed for {key}: {source}")]
    Local {
        op: &'static str,
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storage write failed: scratch file {path}: {source}")]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A setting is wrong (named as in agora's configuration, e.g. `storage.s3.bucket`).
    #[error("invalid setting {setting}: {reason}")]
    Config { setting: String, reason: String },
}
