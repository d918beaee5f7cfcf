//! agora's artifact store.
//!
//! # Layout
//! - [`layout`]: [`StorageKey`] and the private paths: the one place that knows where every object
//!   (and every file agora keeps under its data directory) lives, and each object's content type
//!   and cache policy. The layout is the GOPROXY layout (`<escaped module>/@v/<escaped
//!   version>.zip`), so a local data directory is itself a valid `GOPROXY=file://...` tree.
//! - [`store`]: [`Storage`], a thin layer over the `object_store` crate (local directory, memory, or
//!   a remote backend) that adds write-once puts, atomic file ingestion and streaming reads.
//! - [`config`]: [`StorageConfig`], the `[storage]` settings (backend, bucket, credentials), with
//!   redaction for `config show`; [`Storage::open`] (in [`store`]) turns them into a [`Storage`].
//! - `error`, `object` (private, re-exported): [`StorageError`], and [`Object`], [`ObjectInfo`],
//!   [`PutOutcome`]; apart so that the backends and settings below [`store`] need not depend on it.
//! - [`remote`]: S3-compatible, GCS and Azure backends, and how write-once holds on them
//!   (conditional puts; multipart upload to a staging key + conditional copy for large files).
//!   It works on a bare `object_store` client and knows nothing of [`Storage`].
//! - [`list`]: [`Storage::list`], a prefix walk for tools and tests (never on the request path).
//! - `local` (private): reads from a local data directory, without a hop to the blocking thread
//!   pool when the kernel can answer from its caches.
//! - `scratch` (private): the per-process scratch directories under `_agora/tmp` where downloads
//!   land before they are published, and removing those of processes that are gone.
//! - `memo` (private): an in-memory copy of small write-once objects (`.info`, `.mod`, tiles) in
//!   front of the backend; never of lists, `@latest` or zips.

pub mod config;
mod error;
pub mod layout;
pub mod list;
mod local;
mod memo;
mod object;
pub mod remote;
mod scratch;
pub mod store;

pub use config::{
    AzureConfig, BackendKind, GcsConfig, LargeFiles, S3Config, Secret, StorageConfig,
};
pub use error::StorageError;
pub use layout::{ArtifactKind, CachePolicy, StorageKey, MAX_NAME_BYTES};
pub use list::Listed;
pub use object::{Object, ObjectInfo, PutOutcome};
pub use remote::{RemoteLocation, WriteStats};
pub use store::{Backend, Storage};
