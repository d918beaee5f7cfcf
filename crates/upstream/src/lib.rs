//! Talking to upstream module proxies and checksum databases.
//!
//! # Layout
//! - [`chain`]: the `GOPROXY` list syntax (`a,b|c,direct`) and the go command's rule for walking it:
//!   `,` falls through only on "not found" (404/410), `|` on any error; `direct` and `off` end it.
//! - [`client`]: one HTTP client for all upstreams: timeouts, retries with backoff on 429/5xx and
//!   transport failures, size limits, a proper User-Agent, and `file://` upstreams read from disk.
//! - [`egress`]: where upstream requests may go: redirects keep their scheme and stay out of
//!   internal address ranges, and only configured names may resolve into them.
//!
//! Upstream statuses are never passed through: they are mapped to [`FetchError`] here, and the
//! server decides what the client sees.

pub mod chain;
pub mod client;
pub mod egress;

pub use chain::{parse_goproxy, walk, ChainEntry, ChainError, Target, WalkError};
pub use client::{ClientOptions, FetchError, UpstreamClient};
