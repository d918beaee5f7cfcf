//! Who may fetch what: client tokens, the identities behind them, per-module-path access rules,
//! and the audit log of fetches. Pure logic and file I/O; the HTTP layer (`agora-server`) calls it.
//!
//! # Layout
//! - [`token`]: token secrets (generated, hashed, never stored), the tokens file that
//!   `agora token` manages ([`TokenFile`]), and [`TokenStore`], the per-request lookup that
//!   re-reads the file so revocation takes effect without a restart.
//! - [`credential`]: parsing the `Authorization` header into a [`Credential`], and [`Principal`],
//!   who a request is (anonymous or a token's [`Identity`]).
//! - [`rules`]: [`AccessRules`], GOPRIVATE-style path patterns mapped to who may read them, and
//!   the [`Decision`] (allow, or deny as 401, 403 or 404).
//! - [`audit`]: [`AuditLog`], one JSON line per fetch, to a file or through `tracing`.
//! - [`error`]: [`AccessError`], for configuration and file problems (startup and `agora token`).
//!
//! # Flow of a request
//! The server parses the header with [`parse_authorization`], calls
//! [`TokenStore::authenticate`] (a bad or unknown token is an error answer, not anonymity), asks
//! [`AccessRules::check`] with the resulting [`Principal`], and writes an [`AuditRecord`] for
//! requests on restricted paths.

pub mod audit;
pub mod credential;
pub mod error;
pub mod rules;
pub mod token;

pub use audit::{AdminRecord, AuditLog, AuditRecord};
pub use credential::{parse_authorization, Credential, CredentialError, Principal};
pub use error::AccessError;
pub use rules::{AccessRule, AccessRules, Allow, Decision, DenyStatus, OnDeny};
pub use token::{Identity, TokenFile, TokenRecord, TokenStore};
