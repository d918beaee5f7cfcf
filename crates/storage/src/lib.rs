//! agora's artifact store.
//!
//! # Layout
//! - [`key`]: [`StorageKey`], the one place that knows where every object lives, its content type and
//!   its cache policy. The layout is the GOPROXY layout (`<escaped module>/@v/<escaped version>.zip`),
//!   so a local data directory is itself a valid `GOPROXY=file://...` tree.
//! - [`store`]: [`Storage`], a thin layer over the `object_store` crate (local directory or memory for
//!   now; S3-compatible backends plug in here) that adds write-once puts, atomic file ingestion and
//!   streaming reads.

pub mod key;
pub mod store;

pub use key::{ArtifactKind, CachePolicy, StorageKey};
pub use store::{Backend, Object, ObjectInfo, PutOutcome, Storage, StorageError};
