//! The only crate that knows HTTP.
//!
//! # Layout
//! - [`request`]: parses a request path into a typed [`request::ProxyRequest`] (escaped module path,
//!   version, artifact kind; checksum-database paths), rejecting garbage before anything else runs.
//! - [`error`]: [`error::AppError`], the one place where failures become status codes. 404/410 mean
//!   "not here, try the next proxy" to the go command; 5xx only for real failures.
//! - [`http_cache`]: validators (`ETag`, `Last-Modified`), conditional requests (304) and byte
//!   ranges (206/416): pure functions over headers.
//! - [`routes`]: the router: GOPROXY and checksum-database routes, health, readiness, version and
//!   `/metrics`; compression of text answers.
//! - [`serve`]: the connection loop (hyper), plain HTTP or HTTPS: header and send timeouts against
//!   slow clients, graceful shutdown; [`ServeOptions`] holds its limits. Marks each request with
//!   its peer and [`Transport`].
//! - [`listen`]: what it listens on: [`ListenAddr`] (`IP:PORT` or `unix:/path`), [`Listener`],
//!   and the Unix socket file's life ([`bind_unix`]).
//! - [`prefix`]: [`with_path_prefix`], the whole application under a path prefix (`/go`).
//! - [`trace`]: request spans for OpenTelemetry (`with_request_spans`), installed when agora
//!   exports traces; the trace id in log lines and audit records.
//! - [`tls`]: [`ReloadingTls`], the rustls configuration whose certificate is reloaded from its PEM
//!   files (on demand or by polling) without restarting.
//! - `feed`: `/index?since=&limit=`, what is cached in index.golang.org's format, filtered by the
//!   access rules.
//! - [`ui`]: the web UI (home, search, module pages, status, admin actions).
//! - `admin`: `/-/admin/...`, quarantine, lift and removal for the `admin` group, audited.
//! - [`identity`]: [`ClientInfo`], the client's address and scheme, believing forwarding headers
//!   only from [`TrustedProxies`].

mod admin;
pub mod error;
mod feed;
pub mod guard;
pub mod http_cache;
pub mod identity;
pub mod listen;
pub mod prefix;
pub mod request;
pub mod routes;
pub mod serve;
pub mod tls;
pub mod trace;
pub mod ui;

pub use guard::Guard;
pub use identity::{ClientInfo, TrustedProxies, TrustedProxyError};
#[cfg(unix)]
pub use listen::{bind_unix, UnixSocketFile};
pub use listen::{ListenAddr, ListenAddrError, Listener};
pub use prefix::{with_path_prefix, PathPrefix, PathPrefixError};
pub use routes::{router, AppState};
pub use serve::{
    serve, serve_tls, serve_with, CancellationToken, ServeOptions, Transport, UNIX_PEER,
};
pub use tls::{ReloadingTls, TlsError, TlsFiles};
