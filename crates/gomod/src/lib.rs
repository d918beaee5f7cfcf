//! Go's module rules as pure functions, consistent with the `go` command byte for byte.
//!
//! Everything here is synchronous and free of I/O except through the readers and
//! writers a caller passes in. Inputs are treated as untrusted (they come from HTTP requests and
//! remote repositories): no function panics on any input.
//!
//! # Layout
//!
//! - [`module`]: module, import and file path validation; `!`-escaping of paths and versions for
//!   URLs; major-version suffixes (`/v2`, `.v2`); GOPRIVATE-style prefix patterns; the
//!   [`ModulePath`] newtype.
//! - [`semver`]: Go's semantic versions (`v` prefix, `v1`/`v1.2` shorthands): validity, canonical
//!   forms, precedence, sorting.
//! - [`pseudo`]: pseudo-versions for untagged commits: building, recognising and taking apart.
//! - [`gomodfile`]: reading go.mod files as the `go` command reads a dependency's: module path,
//!   `go` directive, retractions; the synthesized `module <path>` go.mod.
//! - [`zip`]: module zips: which files go in (Go's classification rules, including the vendor
//!   and LICENSE quirks), writing them, and checking zips fetched from elsewhere.
//! - [`dirhash`]: the `h1:` hashes of module zips and go.mod files.
//! - [`error`]: the crate's single [`Error`] type.
//! - `glob` (private): Go's `path.Match`, behind [`module::match_prefix_patterns`].
//! - `zipdir` (private): reads a zip's central directory as written, duplicates included, which
//!   the `zip` crate's name index cannot show.
//! - `unicode` (private): Go's letter and case-folding tables (generated from Go, see
//!   `tools/gen_unicode_tables.go`), behind file path checks and zip collision checks.

pub mod dirhash;
pub mod error;
mod glob;
pub mod gomodfile;
pub mod module;
pub mod pseudo;
pub mod semver;
mod unicode;
mod unicode_tables;
pub mod zip;
mod zipdir;

pub use dirhash::{hash1, hash_go_mod, hash_zip, FileDigest};
pub use error::{Error, EscapeKind, PathKind};
pub use gomodfile::{format_module_line, GoMod, Retraction};
pub use module::{
    check, check_file_path, check_import_path, check_path, check_path_major, escape_path,
    escape_version, match_path_major, match_prefix_patterns, path_major_prefix, split_path_version,
    unescape_path, unescape_version, ModulePath,
};
pub use pseudo::{
    is_pseudo_version, is_zero_pseudo_version, pseudo_version, pseudo_version_base,
    pseudo_version_rev, pseudo_version_time, PseudoTime,
};
pub use zip::{
    check_files, check_zip, create_zip, CheckedFiles, CreatedZip, FileIssue, FileKind, MemFile,
    SourceFile, ZipOptions,
};
