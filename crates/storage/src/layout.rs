//! Where agora keeps things: every path it names in the store (the GOPROXY layout, checksum-database
//! tiles, the proxy-private `_agora/` tree) and under the local data directory (scratch files,
//! repository mirrors). Other modules and crates ask here instead of formatting paths, because
//! existing data directories and buckets depend on these exact names.
//!
//! Each [`StorageKey`] also says how its object is served: its content type and [`CachePolicy`].

use std::path::{Path, PathBuf};

use agora_gomod::module::{escape_version, unescape_path, unescape_version, ModulePath};

/// The proxy-private tree, in the store and under the data directory. It cannot collide with a
/// module path: its first element has no dot and starts with an underscore.
pub const PRIVATE_DIR: &str = "_agora";

/// Scratch files (downloads in progress, staged writes) under the data directory; see
/// [`scratch_dir`].
const SCRATCH_DIR: &str = "tmp";

/// Where a remote backend's multipart uploads land before their conditional copy to the final key.
pub const STAGING_PREFIX: &str = "_agora/staging";

/// Where write-once probes write and delete their objects.
pub const PROBE_PREFIX: &str = "_agora/probe";

/// The key readiness checks look up (never written: only whether the backend answers matters).
pub const READYZ_PROBE: &str = "_agora/readyz";

/// Content type of the checksum database's text answers (lookups, signed tree heads, data tiles),
/// spelled as agora has always sent it.
pub const SUMDB_TEXT: &str = "text/plain; charset=UTF-8";

/// Content type of GOPROXY text answers (lists, go.mod files).
const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// Per-process scratch directories live under this one (see `crate::scratch`). For the local
/// backend it is inside the data directory, on the same file system, so publishing is a hard link.
pub fn scratch_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(PRIVATE_DIR).join(SCRATCH_DIR)
}

/// The scratch directory of a memory backend (which has no data directory), `unique` to it.
pub(crate) fn memory_scratch_dir(unique: &str) -> PathBuf {
    std::env::temp_dir().join(format!("agora-scratch-{unique}"))
}

/// The default directory of repository mirrors (`git.mirror_dir` unset).
pub fn mirrors_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(PRIVATE_DIR).join("mirrors")
}

/// The CA bundle written for git when extra CA certificates are configured.
pub fn git_ca_bundle(data_dir: &Path) -> PathBuf {
    data_dir.join(PRIVATE_DIR).join("git-ca-bundle.pem")
}

/// Whether a stored path is in the proxy-private tree (left out of listings from the root).
pub fn is_private(path: &str) -> bool {
    path == PRIVATE_DIR
        || path
            .strip_prefix(PRIVATE_DIR)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `<escaped module>/@v/list`, in the store and on any GOPROXY server.
pub fn list_path(module: &ModulePath) -> String {
    format!("{}/@v/list", module.escaped())
}

/// `<escaped module>/@latest`.
pub fn latest_path(module: &ModulePath) -> String {
    format!("{}/@latest", module.escaped())
}

/// `<escaped module>/@v/<escaped version>.<ext>`. `version` may be a query (a branch name), as in
/// a request to an upstream proxy; it fails when it cannot be escaped.
pub fn version_path(
    module: &ModulePath,
    version: &str,
    kind: ArtifactKind,
) -> Result<String, agora_gomod::Error> {
    let v = escape_version(version)?;
    Ok(format!("{}/@v/{v}.{}", module.escaped(), kind.extension()))
}

/// Whether `path` is in a module's `@v` directory (of a GOPROXY tree, a store, a module cache).
pub fn in_version_dir(path: &str) -> bool {
    path.contains("/@v/")
}

/// A file of a GOPROXY tree, `<escaped module>/@v/<escaped version>.<ext>`, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionFile<'a> {
    pub module: ModulePath,
    pub version: String,
    /// Any extension (a module cache also has `.ziphash`, `.lock`, ...).
    pub ext: &'a str,
}

impl<'a> VersionFile<'a> {
    /// The inverse of [`version_path`], for any extension; `None` for other paths (lists,
    /// `@latest`, tiles) and for names that do not unescape to a valid module path and version.
    pub fn parse(path: &'a str) -> Option<Self> {
        let (module_dir, file) = path.rsplit_once("/@v/")?;
        let (escaped_version, ext) = file.rsplit_once('.')?;
        let module = ModulePath::new(&unescape_path(module_dir).ok()?).ok()?;
        let version = unescape_version(escaped_version).ok()?;
        Some(VersionFile {
            module,
            version,
            ext,
        })
    }
}

/// Longest path element (a module path element, `<escaped version>.<ext>`) a key may have: a
/// file name's limit on the file systems a local data directory lives on. Requests naming a
/// longer one are refused as "not found" before storage is asked (see `agora-server`'s request
/// parsing), since no file, and so no module or version, can exist under such a name.
pub const MAX_NAME_BYTES: usize = 255;

/// The kinds of per-version artifacts of the GOPROXY protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    Info,
    Mod,
    Zip,
}

impl ArtifactKind {
    /// The file extension used in the protocol and in storage.
    pub fn extension(self) -> &'static str {
        match self {
            ArtifactKind::Info => "info",
            ArtifactKind::Mod => "mod",
            ArtifactKind::Zip => "zip",
        }
    }

    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext {
            "info" => Some(ArtifactKind::Info),
            "mod" => Some(ArtifactKind::Mod),
            "zip" => Some(ArtifactKind::Zip),
            _ => None,
        }
    }
}

/// How long clients and intermediaries may cache an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CachePolicy {
    /// Never changes once written (a version's info/mod/zip, a checksum-database tile).
    Immutable,
    /// May change at any time (version lists, `@latest`): short client-side caching only.
    Mutable,
}

impl CachePolicy {
    /// The `Cache-Control` of a fresh answer.
    pub fn header_value(self) -> &'static str {
        match self {
            CachePolicy::Immutable => "public, max-age=31536000, immutable",
            CachePolicy::Mutable => "public, max-age=60",
        }
    }

    /// The `Cache-Control` of an answer; `stale` when it is a stored copy served because the
    /// origin could not be asked, which must not be cached further downstream.
    pub fn cache_control(self, stale: bool) -> &'static str {
        match (self, stale) {
            (CachePolicy::Mutable, true) => "no-cache",
            _ => self.header_value(),
        }
    }
}

/// Every object agora stores. The string form of a key is only produced by [`StorageKey::path`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StorageKey {
    /// `<module>/@v/list`: the cached version list.
    List(ModulePath),
    /// `<module>/@latest`: the cached `@latest` answer.
    Latest(ModulePath),
    /// `<module>/@v/<version>.<ext>` for a canonical version.
    Artifact {
        module: ModulePath,
        /// A canonical version (validated by the caller; escaped here).
        version: String,
        kind: ArtifactKind,
    },
    /// `sumdb/<name>/<path>`: an immutable checksum-database object (a tile). `name` is a validated
    /// database host name and `path` a validated tile path; see `agora-core`'s sumdb module.
    SumdbTile { name: String, path: String },
    /// `_agora/sumdb/<name>/latest`: the newest signed tree head of database `name` that agora
    /// verified (every newer one must be consistent with it). Proxy-private, overwritten.
    SumdbLatest { name: String },
    /// `_agora/checksum-db/<name>/<path>`: agora's own checksum database `name`: its tiles
    /// (`tile/8/...`), its lookup entries (`lookup/<module>@<version>`) and its signed tree
    /// head (`latest`). Written by one appender at a time; what lies beyond the published tree
    /// may be rewritten after a crash, so none of it is write-once or cached in memory.
    OwnSumdb { name: String, path: String },
}

impl StorageKey {
    pub fn artifact(module: &ModulePath, version: &str, kind: ArtifactKind) -> Self {
        StorageKey::Artifact {
            module: module.clone(),
            version: version.to_owned(),
            kind,
        }
    }

    /// The object's path inside the store, in the GOPROXY layout.
    ///
    /// Module paths and versions are case-escaped (`!x` for upper-case letters) so that the layout
    /// works on case-insensitive file systems, exactly like the go command's module cache.
    pub fn path(&self) -> String {
        match self {
            StorageKey::List(m) => list_path(m),
            StorageKey::Latest(m) => latest_path(m),
            StorageKey::Artifact {
                module,
                version,
                kind,
            } => version_path(module, version, *kind).unwrap_or_else(|_| {
                // The version was validated as canonical semver by the caller, so this is never
                // reached; lower-casing keeps the key a path even if it were.
                let v = version.to_ascii_lowercase();
                format!("{}/@v/{v}.{}", module.escaped(), kind.extension())
            }),
            StorageKey::SumdbTile { name, path } => format!("sumdb/{name}/{path}"),
            StorageKey::SumdbLatest { name } => format!("{PRIVATE_DIR}/sumdb/{name}/latest"),
            StorageKey::OwnSumdb { name, path } => {
                format!("{PRIVATE_DIR}/checksum-db/{name}/{path}")
            }
        }
    }

    /// The `Content-Type` the object is served with.
    pub fn content_type(&self) -> &'static str {
        match self {
            StorageKey::List(_) => TEXT,
            StorageKey::Latest(_) => JSON,
            StorageKey::Artifact { kind, .. } => match kind {
                ArtifactKind::Info => JSON,
                ArtifactKind::Mod => TEXT,
                ArtifactKind::Zip => "application/zip",
            },
            StorageKey::SumdbLatest { .. } => SUMDB_TEXT,
            StorageKey::SumdbTile { path, .. } | StorageKey::OwnSumdb { path, .. } => {
                // Data tiles are text; hash tiles are binary (as sum.golang.org serves them).
                if path.contains("/data/") {
                    SUMDB_TEXT
                } else {
                    "application/octet-stream"
                }
            }
        }
    }

    pub fn cache_policy(&self) -> CachePolicy {
        match self {
            StorageKey::List(_)
            | StorageKey::Latest(_)
            | StorageKey::SumdbLatest { .. }
            | StorageKey::OwnSumdb { .. } => CachePolicy::Mutable,
            StorageKey::Artifact { .. } | StorageKey::SumdbTile { .. } => CachePolicy::Immutable,
        }
    }

    /// Write-once keys must never be overwritten once stored.
    pub fn is_write_once(&self) -> bool {
        self.cache_policy() == CachePolicy::Immutable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str) -> ModulePath {
        ModulePath::new(p).unwrap()
    }

    #[test]
    fn paths_follow_the_goproxy_layout() {
        let module = m("github.com/BurntSushi/toml");
        assert_eq!(
            StorageKey::List(module.clone()).path(),
            "github.com/!burnt!sushi/toml/@v/list"
        );
        assert_eq!(
            StorageKey::Latest(module.clone()).path(),
            "github.com/!burnt!sushi/toml/@latest"
        );
        assert_eq!(
            StorageKey::artifact(&module, "v1.2.0-RC1", ArtifactKind::Zip).path(),
            "github.com/!burnt!sushi/toml/@v/v1.2.0-!r!c1.zip"
        );
        assert_eq!(
            StorageKey::SumdbTile {
                name: "sum.golang.org".into(),
                path: "tile/8/0/x001/234.p/5".into()
            }
            .path(),
            "sumdb/sum.golang.org/tile/8/0/x001/234.p/5"
        );
        assert_eq!(
            StorageKey::SumdbLatest {
                name: "sum.golang.org".into()
            }
            .path(),
            "_agora/sumdb/sum.golang.org/latest"
        );
    }

    #[test]
    fn private_paths() {
        let data = Path::new("/data");
        assert_eq!(scratch_dir(data), Path::new("/data/_agora/tmp"));
        assert_eq!(mirrors_dir(data), Path::new("/data/_agora/mirrors"));
        assert_eq!(
            git_ca_bundle(data),
            Path::new("/data/_agora/git-ca-bundle.pem")
        );
        assert!(is_private("_agora"));
        assert!(is_private("_agora/staging/x"));
        assert!(!is_private("_agorax/y"));
        assert!(!is_private("example.com/_agora"));
    }

    #[test]
    fn version_files_parse_back() {
        let module = m("github.com/BurntSushi/toml");
        let path = version_path(&module, "v1.2.0-RC1", ArtifactKind::Zip).unwrap();
        let parsed = VersionFile::parse(&path).unwrap();
        assert_eq!(
            (parsed.module, parsed.version.as_str(), parsed.ext),
            (module.clone(), "v1.2.0-RC1", "zip")
        );
        assert!(VersionFile::parse("github.com/!burnt!sushi/toml/@v/list").is_none());
        assert!(VersionFile::parse(&latest_path(&module)).is_none());
        assert!(version_path(&module, "a/b", ArtifactKind::Info).is_err());
    }

    /// What each kind of object is served with (pinned: clients and caches depend on it).
    #[test]
    fn content_types_and_cache_policies() {
        use CachePolicy::*;
        let module = m("example.com/a");
        let tile = |path: &str| StorageKey::SumdbTile {
            name: "sum.golang.org".into(),
            path: path.into(),
        };
        let cases = [
            (
                StorageKey::List(module.clone()),
                "text/plain; charset=utf-8",
                Mutable,
            ),
            (
                StorageKey::Latest(module.clone()),
                "application/json",
                Mutable,
            ),
            (
                StorageKey::artifact(&module, "v1.0.0", ArtifactKind::Info),
                "application/json",
                Immutable,
            ),
            (
                StorageKey::artifact(&module, "v1.0.0", ArtifactKind::Mod),
                "text/plain; charset=utf-8",
                Immutable,
            ),
            (
                StorageKey::artifact(&module, "v1.0.0", ArtifactKind::Zip),
                "application/zip",
                Immutable,
            ),
            (tile("tile/8/0/001"), "application/octet-stream", Immutable),
            (
                tile("tile/8/data/001"),
                "text/plain; charset=UTF-8",
                Immutable,
            ),
            (
                StorageKey::SumdbLatest {
                    name: "sum.golang.org".into(),
                },
                "text/plain; charset=UTF-8",
                Mutable,
            ),
        ];
        for (key, content_type, policy) in cases {
            assert_eq!(key.content_type(), content_type, "{key:?}");
            assert_eq!(key.cache_policy(), policy, "{key:?}");
        }
        let immutable = "public, max-age=31536000, immutable";
        assert_eq!(Immutable.cache_control(false), immutable);
        assert_eq!(Immutable.cache_control(true), immutable);
        assert_eq!(Mutable.cache_control(false), "public, max-age=60");
        assert_eq!(Mutable.cache_control(true), "no-cache");
    }

    #[test]
    fn policies() {
        let module = m("example.com/a");
        assert!(StorageKey::artifact(&module, "v1.0.0", ArtifactKind::Info).is_write_once());
        assert!(!StorageKey::List(module.clone()).is_write_once());
        assert_eq!(
            StorageKey::artifact(&module, "v1.0.0", ArtifactKind::Zip).content_type(),
            "application/zip"
        );
    }
}
