//! The proxy's brain, independent of HTTP.
//!
//! # Layout
//! - [`proxy`]: [`Proxy`], answering the GOPROXY protocol's questions (list, latest, info, mod, zip)
//!   from storage or, on a miss, from a [`Source`] chosen by the routing policy; caches the answers
//!   (write-once for versions, freshness windows for lists) and validates what it fetched.
//! - [`source`]: [`Source`], anything that can answer for a module: an upstream proxy or version
//!   control.
//! - [`vcs_source`]: [`VcsSource`], the [`Source`] for version control: modules computed from
//!   their git repository by `agora-vcs`.
//! - [`filter`]: what may be fetched at all: allow/deny rules by module-path pattern and version
//!   constraint.
//! - [`approve`]: [`Approver`], a last check before a new artifact is cached (the validation
//!   webhook).
//! - [`policy`]: which modules go direct (GOPRIVATE/GONOPROXY-style patterns), which may be looked up
//!   in a checksum database (GONOSUMDB).
//! - [`singleflight`]: one fetch per key in this process, however many requests wait for it; the
//!   fetch runs as its own task, so it completes even if every client disconnects.
//! - [`lock`]: [`FetchLock`], one fetch per key across replicas sharing a store ([`RedisLock`]);
//!   losing Redis degrades to per-replica single-flight, never to an error.
//! - [`sumdb`]: [`Checksums`], verification of public modules against the checksum database
//!   before they are cached; checksum-database proxying with verified tile caching and
//!   private-path refusal.
//! - [`validate`]: checks on fetched artifacts before they are stored.
//! - [`metrics`]: [`Metrics`], the Prometheus registry (bounded label sets, no module paths).
//! - [`error`]: [`CoreError`], which the server maps to HTTP statuses in one place.
//! - [`checksum_db`]: [`ChecksumDb`], a checksum database of agora's own for the modules it
//!   serves (private ones included), in sum.golang.org's format.
//! - [`failures`]: the last failures answered, grouped by cause for the status page.
//! - [`health`]: how each source (upstream, git host, checksum database) has been answering.

pub mod approve;
pub mod checksum_db;
pub mod error;
pub mod failures;
pub mod filter;
pub mod health;
pub mod lock;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod singleflight;
pub mod source;
pub mod sumdb;
pub mod validate;
pub mod vcs_source;

pub use approve::{Approver, Candidate, FailMode, Rejection, Webhook};
pub use checksum_db::ChecksumDb;
pub use error::{CoreError, Subject};
pub use filter::{Action, Blocked, Filter, FilterRule, VersionConstraint};
pub use lock::{FetchLock, LockError, LockGuard, LockHolder, RedisLock, RedisLockOptions};
pub use metrics::Metrics;
pub use policy::{DownloadMode, Policy, Route};
pub use proxy::{
    Collection, FetchMode, Freshness, License, Overview, Proxy, ProxyBuilder, ProxyOptions, Served,
    VersionView, HOT,
};
pub use source::{ProxySource, Source, SourceError, SourceKind, ZipWritten};
pub use sumdb::{Checksums, SumdbAnswer, SumdbEndpoint, SumdbPath, SumdbProxy};
pub use vcs_source::VcsSource;
