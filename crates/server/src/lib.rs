//! The only crate that knows HTTP.
//!
//! # Layout
//! - [`request`]: parses a request path into a typed [`request::ProxyRequest`] (escaped module path,
//!   version, artifact kind; checksum-database paths), rejecting garbage before anything else runs.
//! - [`error`]: [`error::AppError`], the one place where failures become status codes. 404/410 mean
//!   "not here, try the next proxy" to the go command; 5xx only for real failures.
//! - [`routes`]: the router: GOPROXY and checksum-database routes, health, readiness and version.

pub mod error;
pub mod request;
pub mod routes;

pub use routes::{router, serve, AppState};
