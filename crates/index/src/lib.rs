//! agora's metadata index: every stored artifact (module, version, kind, size, `h1:`, when and
//! from where it was stored, when and how often it was served), quarantined versions, and what
//! is derived from them: listings (`agora ls`), totals, the index.golang.org-style feed
//! (`/index?since=`) and retention plans.
//!
//! The store stays the truth: the index can always be rebuilt from it ([`Index::rebuild`]), and
//! nothing on a hit waits for the index (serves are counted in memory and flushed in batches).
//! The embedded default is an SQLite file under the data directory, created on first start;
//! replicas share a PostgreSQL database (`[index] url = "postgres://..."`).
//!
//! # Layout
//!
//! - [`config`]: [`IndexConfig`] (`[index]`), and where it points ([`config::Target`]).
//! - `db` (private): the two backends behind one enum, and the embedded migrations
//!   (`migrations/{sqlite,postgres}`).
//! - [`index`]: [`Index`]: recording stored and served artifacts, listings, totals, the feed,
//!   removal and quarantines.
//! - [`served`]: [`ServedBatch`], the in-memory serve counts behind [`Index::record_served`].
//! - [`retention`]: [`RetentionPolicy`] and the streaming planner ([`Index::retention`],
//!   [`Index::plan_retention`]).
//! - [`rebuild`]: [`Index::rebuild`] from a [`Storage`](agora_storage::Storage) walk.
//! - [`model`]: the records and rows that go in and come out.
//! - `error` (re-exported): [`IndexError`].

pub mod config;
mod db;
mod error;
pub mod index;
pub mod model;
pub mod rebuild;
pub mod retention;
pub mod served;

pub use config::IndexConfig;
pub use db::Backend;
pub use error::IndexError;
pub use index::{latest_of, FlushReport, Index, MAX_FEED_LIMIT};
pub use model::{
    ArtifactRecord, ArtifactRow, FeedEntry, ModuleQuery, ModuleRow, Origin, OriginKind,
    OriginTotals, Quarantine, SearchHit, Stats, Totals, VersionRow,
};
pub use rebuild::{RebuildOptions, RebuildReport};
pub use retention::{EvictReason, Eviction, Plan, PlanSummary, RetentionPolicy};
pub use served::{Served, ServedBatch};
