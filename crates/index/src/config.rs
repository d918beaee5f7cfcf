//! [`IndexConfig`], the `[index]` settings, and where they point: an embedded SQLite file (the
//! default, nothing to set up) or a PostgreSQL database shared by several replicas.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::IndexError;

/// Name of the embedded database under the data directory's private tree (see [`Target`]).
pub const SQLITE_FILE: &str = "index.sqlite3";

/// `[index]`.
///
/// ```toml
/// [index]
/// url = "postgres://agora@db.corp.example/agora"   # shared by every replica
/// ```
///
/// `Debug` redacts the URL's user information; [`IndexConfig::redacted`] gives a copy safe to
/// print (`agora config show`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Unset: SQLite at `<data_dir>/_agora/index.sqlite3`, created on first start.
    /// `sqlite://PATH` (relative paths are under the data directory) or
    /// `postgres://[user[:password]@]host[:port]/database[?sslmode=...]`. Empty means unset (so
    /// the key always shows, and `AGORA_INDEX_URL` exists).
    #[serde(with = "empty_is_none")]
    pub url: Option<String>,
    /// Connections kept open to the database (PostgreSQL; SQLite uses at most 4: it has one
    /// writer at a time anyway).
    pub max_connections: u32,
    /// How long opening the index, or waiting for a free connection, may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How often a server writes the hits it counted and reads the quarantines again (a
    /// quarantine set elsewhere takes effect within this time).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
}

/// `""` ⇔ `None`.
mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let s = String::deserialize(d)?;
        Ok((!s.trim().is_empty()).then_some(s))
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            url: None,
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
            sync_interval: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for IndexConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexConfig")
            .field("url", &self.url.as_deref().map(agora_secret::redact))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("sync_interval", &self.sync_interval)
            .finish()
    }
}

impl IndexConfig {
    /// A copy safe to print: the URL's user information is replaced by `***`.
    pub fn redacted(&self) -> IndexConfig {
        IndexConfig {
            url: self.url.as_deref().map(agora_secret::redact),
            ..self.clone()
        }
    }

    /// Where the settings point, with `data_dir` for the default and relative SQLite paths.
    pub fn target(&self, data_dir: &Path) -> Result<Target, IndexError> {
        let Some(url) = self.url.as_deref().filter(|u| !u.trim().is_empty()) else {
            return Ok(Target::Sqlite(default_sqlite_path(data_dir)));
        };
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if rest.is_empty() || rest.contains('?') {
                return Err(IndexError::Config {
                    setting: "url",
                    reason: format!(
                        "{}: a sqlite URL is sqlite://PATH, without options",
                        agora_secret::redact(url)
                    ),
                });
            }
            return Ok(Target::Sqlite(data_dir.join(rest)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Target::Postgres(url.to_owned()));
        }
        Err(IndexError::Config {
            setting: "url",
            reason: format!(
                "{}: expected sqlite://PATH or postgres://...",
                agora_secret::redact(url)
            ),
        })
    }
}

/// The embedded database of a data directory: in the proxy-private tree, so that the data
/// directory stays a clean GOPROXY tree (`GOPROXY=file://...`) and listings of the store from its
/// root never see it.
pub fn default_sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir
        .join(agora_storage::layout::PRIVATE_DIR)
        .join(SQLITE_FILE)
}

/// A resolved [`IndexConfig::url`].
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// The embedded database file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (may hold a password: print it only through [`Target::to_string`]).
    Postgres(String),
}

impl fmt::Display for Target {
    /// The location for logs and errors: a path, or the URL without user information.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Target::Postgres(url) => f.write_str(&agora_secret::redact(url)),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_and_never_show_passwords() {
        let data = Path::new("/data");
        let config = |url: Option<&str>| IndexConfig {
            url: url.map(str::to_owned),
            ..Default::default()
        };
        assert_eq!(
            config(None).target(data).unwrap(),
            Target::Sqlite("/data/_agora/index.sqlite3".into())
        );
        assert_eq!(
            config(Some("sqlite://idx.db")).target(data).unwrap(),
            Target::Sqlite("/data/idx.db".into())
        );
        assert_eq!(
            config(Some("sqlite:///var/lib/agora/i.db"))
                .target(data)
                .unwrap(),
            Target::Sqlite("/var/lib/agora/i.db".into())
        );
        let pg = config(Some("postgres://agora:hunter2@db.example/agora"));
        let target = pg.target(data).unwrap();
        assert!(matches!(&target, Target::Postgres(u) if u.contains("hunter2")));
        for shown in [
            target.to_string(),
            format!("{target:?}"),
            format!("{pg:?}"),
            format!("{:?}", pg.redacted()),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("db.example"), "{shown}");
        }
        let err = config(Some("mysql://u:hunter2@h/db"))
            .target(data)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("index.url") && !err.contains("hunter2"),
            "{err}"
        );
        assert!(config(Some("sqlite://x?mode=ro")).target(data).is_err());
    }

    #[test]
    fn settings_parse_from_toml() {
        let c: IndexConfig =
            toml::from_str("url = \"postgres://h/db\"\nconnect_timeout = \"3s\"").unwrap();
        assert_eq!(c.url.as_deref(), Some("postgres://h/db"));
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.max_connections, 8);
        assert!(toml::from_str::<IndexConfig>("uri = \"x\"").is_err());
    }
}
