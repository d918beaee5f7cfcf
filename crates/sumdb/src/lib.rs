//! The Go checksum database (`sum.golang.org` and databases like it), as the go command uses it:
//! which database `GOSUMDB` names and with which key, how its signed tree heads, records and
//! tiles look, and a [`Client`] that proves a module version's hashes are in the log before agora
//! caches it (PROTOCOL §7; go: `golang.org/x/mod/sumdb`).
//!
//! No HTTP and no storage here: the [`Ops`] a caller implements fetch from the database and keep
//! tiles and the newest verified tree head wherever the caller keeps things.
//!
//! # Layout
//! - [`gosumdb`]: [`Database`], parsed from `GOSUMDB` syntax (`off`, `name`, `name+hash+key`,
//!   each optionally followed by a URL), with the well-known keys built in.
//! - [`tree`]: signed tree heads: opening a note with the database's key, the tree it names.
//! - [`record`]: `lookup` answers (record id, go.sum lines, tree note) and data tiles.
//! - [`tile`]: tile paths and the size a well-formed tile has.
//! - [`client`]: [`Client`]: lookups proven against the newest verified tree, tree heads proven
//!   consistent with it (a fork is a [`SumdbError::Security`]), and tiles authenticated before they
//!   are kept.
//! - [`log`]: the server side, for a database of agora's own: keys, records, signed tree heads
//!   and the tiles an append writes.
//! - [`error`]: [`SumdbError`], why a version could not be verified.

pub mod client;
pub mod error;
pub mod gosumdb;
pub mod log;
pub mod record;
pub mod tile;
pub mod tree;

pub use client::{Client, Ops, Remote, Sums};
pub use error::{Mismatch, SumdbError};
pub use gosumdb::Database;
pub use tree::Tree;

/// Tile height of every Go checksum database (the go command's default; sum.golang.org uses it).
pub const TILE_HEIGHT: u8 = 8;
