//! Where each object lives. No other code formats a storage path.

use agora_gomod::module::{escape_version, ModulePath};

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
    pub fn header_value(self) -> &'static str {
        match self {
            CachePolicy::Immutable => "public, max-age=31536000, immutable",
            CachePolicy::Mutable => "public, max-age=60",
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
            StorageKey::List(m) => format!("{}/@v/list", m.escaped()),
            StorageKey::Latest(m) => format!("{}/@latest", m.escaped()),
            StorageKey::Artifact {
                module,
                version,
                kind,
            } => {
                // The version was validated as canonical semver by the caller, which always escapes.
                let v = escape_version(version).unwrap_or_else(|_| version.to_ascii_lowercase());
                format!("{}/@v/{}.{}", module.escaped(), v, kind.extension())
            }
            StorageKey::SumdbTile { name, path } => format!("sumdb/{name}/{path}"),
            StorageKey::SumdbLatest { name } => format!("_agora/sumdb/{name}/latest"),
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            StorageKey::List(_) | StorageKey::SumdbLatest { .. } => "text/plain; charset=utf-8",
            StorageKey::Latest(_) => "application/json",
            StorageKey::Artifact { kind, .. } => match kind {
                ArtifactKind::Info => "application/json",
                ArtifactKind::Mod => "text/plain; charset=utf-8",
                ArtifactKind::Zip => "application/zip",
            },
            StorageKey::SumdbTile { path, .. } => {
                // Data tiles are text; hash tiles are binary (as sum.golang.org serves them).
                if path.contains("/data/") {
                    "text/plain; charset=utf-8"
                } else {
                    "application/octet-stream"
                }
            }
        }
    }

    pub fn cache_policy(&self) -> CachePolicy {
        match self {
            StorageKey::List(_) | StorageKey::Latest(_) | StorageKey::SumdbLatest { .. } => {
                CachePolicy::Mutable
            }
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
