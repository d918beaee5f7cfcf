//! What goes into the index and what comes out of it: [`ArtifactRecord`] and [`Origin`] in;
//! [`VersionRow`], [`ModuleRow`], [`FeedEntry`], [`Stats`] and [`Quarantine`] out. Also how times
//! and kinds are written in the database (nanoseconds since the epoch, `info`/`mod`/`zip`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_gomod::module::ModulePath;
use agora_storage::{ArtifactKind, StorageKey};

use crate::error::IndexError;

/// A stored artifact, as the proxy records it right after `storage.put`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRecord {
    pub module: ModulePath,
    /// A canonical version (as in the artifact's [`StorageKey`]).
    pub version: String,
    pub kind: ArtifactKind,
    pub size: u64,
    /// `h1:` of the zip or go.mod; `None` for `.info` (which has none) or when unknown.
    pub h1: Option<String>,
    /// When it was stored (the first time: recording again keeps the earliest).
    pub stored_at: SystemTime,
    pub origin: Origin,
}

impl ArtifactRecord {
    /// A record for `key`; `None` for keys that are not version artifacts (lists, `@latest`,
    /// tiles), which the index does not keep.
    pub fn for_key(
        key: &StorageKey,
        size: u64,
        stored_at: SystemTime,
        origin: Origin,
    ) -> Option<ArtifactRecord> {
        let StorageKey::Artifact {
            module,
            version,
            kind,
        } = key
        else {
            return None;
        };
        Some(ArtifactRecord {
            module: module.clone(),
            version: version.clone(),
            kind: *kind,
            size,
            h1: None,
            stored_at,
            origin,
        })
    }

    pub fn with_h1(mut self, h1: impl Into<String>) -> Self {
        self.h1 = Some(h1.into());
        self
    }

    pub fn key(&self) -> StorageKey {
        StorageKey::artifact(&self.module, &self.version, self.kind)
    }
}

/// Where an artifact came from. URLs are recorded without user information.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An upstream GOPROXY server (its base URL).
    Upstream { url: String },
    /// Built from a git repository at `commit`, found through `reference` (a tag or branch).
    Git {
        repository: String,
        commit: String,
        reference: Option<String>,
    },
    /// Not known: found in storage by a rebuild, or served before it was recorded.
    Unknown,
}

/// [`Origin`] without its details, for totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OriginKind {
    Upstream,
    Git,
    Unknown,
}

impl OriginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OriginKind::Upstream => "upstream",
            OriginKind::Git => "git",
            OriginKind::Unknown => "unknown",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, IndexError> {
        match s {
            "upstream" => Ok(OriginKind::Upstream),
            "git" => Ok(OriginKind::Git),
            "unknown" => Ok(OriginKind::Unknown),
            other => Err(IndexError::corrupt("origin", other)),
        }
    }
}

/// An origin's columns: (origin, url, commit, ref).
pub(crate) type OriginColumns = (&'static str, Option<String>, Option<String>, Option<String>);

impl Origin {
    pub fn kind(&self) -> OriginKind {
        match self {
            Origin::Upstream { .. } => OriginKind::Upstream,
            Origin::Git { .. } => OriginKind::Git,
            Origin::Unknown => OriginKind::Unknown,
        }
    }

    /// The columns it is stored in; URLs lose their user information here, whatever the caller
    /// passed, so no credential is ever written to the index.
    pub(crate) fn columns(&self) -> OriginColumns {
        let kind = self.kind().as_str();
        match self {
            Origin::Upstream { url } => (kind, Some(agora_secret::redact(url)), None, None),
            Origin::Git {
                repository,
                commit,
                reference,
            } => (
                kind,
                Some(agora_secret::redact(repository)),
                Some(commit.clone()),
                reference.clone(),
            ),
            Origin::Unknown => (kind, None, None, None),
        }
    }

    pub(crate) fn from_columns(
        kind: &str,
        url: Option<String>,
        commit: Option<String>,
        reference: Option<String>,
    ) -> Result<Origin, IndexError> {
        Ok(match OriginKind::parse(kind)? {
            OriginKind::Upstream => Origin::Upstream {
                url: url.unwrap_or_default(),
            },
            OriginKind::Git => Origin::Git {
                repository: url.unwrap_or_default(),
                commit: commit.unwrap_or_default(),
                reference,
            },
            OriginKind::Unknown => Origin::Unknown,
        })
    }
}

/// One artifact of a version, as [`Index::versions`](crate::Index::versions) lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRow {
    pub kind: ArtifactKind,
    pub size: u64,
    pub h1: Option<String>,
    pub stored_at: SystemTime,
    pub origin: Origin,
    /// Times served (as flushed so far; see [`Index::flush_served`](crate::Index::flush_served)).
    pub served_count: u64,
    pub last_served: Option<SystemTime>,
}

/// A version of a module: its artifacts (`.info`, `.mod`, `.zip` order; any may be missing) and
/// its quarantine, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRow {
    pub version: String,
    /// When any of its artifacts was first stored (its feed time); `None` for a version that is
    /// only quarantined, never stored.
    pub first_stored: Option<SystemTime>,
    pub artifacts: Vec<ArtifactRow>,
    pub quarantine: Option<Quarantine>,
}

impl VersionRow {
    pub fn artifact(&self, kind: ArtifactKind) -> Option<&ArtifactRow> {
        self.artifacts.iter().find(|a| a.kind == kind)
    }
}

/// What [`Index::modules`](crate::Index::modules) lists: modules in byte order of their paths,
/// optionally filtered, a page at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleQuery {
    /// Comma-separated GOPRIVATE-style patterns (`github.com/org`, `*.corp.example`): a module
    /// is listed when one matches a prefix of its path made of whole elements. A malformed
    /// pattern matches nothing, as in GOPRIVATE.
    pub pattern: Option<String>,
    /// Start after this module path (the last one of the previous page).
    pub after: Option<String>,
    /// At most this many (0: no limit).
    pub limit: usize,
}

/// A module and its totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleRow {
    pub module: ModulePath,
    pub versions: u64,
    pub artifacts: u64,
    pub bytes: u64,
    pub last_stored: SystemTime,
    pub last_served: Option<SystemTime>,
    pub served_count: u64,
}

/// A module found by [`Index::search`](crate::Index::search).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    pub module: ModulePath,
    pub versions: u64,
    /// The highest release, else the highest version, of those stored.
    pub latest: Option<String>,
    /// When a version of it was last stored.
    pub last_stored: SystemTime,
}

/// One entry of the feed (`/index?since=`): a module version, first stored at `timestamp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedEntry {
    pub path: ModulePath,
    pub version: String,
    pub timestamp: SystemTime,
}

/// A version that must not be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantine {
    pub module: ModulePath,
    pub version: String,
    pub reason: String,
    /// Who quarantined it (a token name, `cli`, a scanner).
    pub actor: String,
    pub since: SystemTime,
}

/// Artifacts and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub artifacts: u64,
    pub bytes: u64,
}

/// Totals by where artifacts came from; `upstream` names the upstream URL for
/// [`OriginKind::Upstream`] (there are few), `None` otherwise (repositories are many).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginTotals {
    pub origin: OriginKind,
    pub upstream: Option<String>,
    pub totals: Totals,
}

/// What [`Index::stats`](crate::Index::stats) reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub modules: u64,
    pub versions: u64,
    /// `.info`, `.mod`, `.zip` (all three, in that order, zeros included).
    pub by_kind: Vec<(ArtifactKind, Totals)>,
    /// Sorted by origin, then upstream URL.
    pub by_origin: Vec<OriginTotals>,
    /// Serves flushed so far.
    pub served: u64,
    pub quarantined: u64,
}

impl Stats {
    pub fn kind(&self, kind: ArtifactKind) -> Totals {
        self.by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, t)| *t)
            .unwrap_or_default()
    }

    /// Every artifact.
    pub fn total(&self) -> Totals {
        self.by_kind
            .iter()
            .fold(Totals::default(), |a, (_, t)| Totals {
                artifacts: a.artifacts + t.artifacts,
                bytes: a.bytes + t.bytes,
            })
    }
}

pub(crate) const KINDS: [ArtifactKind; 3] =
    [ArtifactKind::Info, ArtifactKind::Mod, ArtifactKind::Zip];

pub(crate) fn kind_str(kind: ArtifactKind) -> &'static str {
    kind.extension()
}

pub(crate) fn parse_kind(s: &str) -> Result<ArtifactKind, IndexError> {
    ArtifactKind::from_extension(s).ok_or_else(|| IndexError::corrupt("kind", s))
}

pub(crate) fn parse_module(s: String) -> Result<ModulePath, IndexError> {
    ModulePath::new(&s).map_err(|_| IndexError::corrupt("module", s))
}

/// A time as stored: nanoseconds since the Unix epoch, clamped to what an `i64` holds (1970 to
/// 2262), which no artifact's time leaves.
pub(crate) fn to_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

pub(crate) fn from_nanos(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

/// A count or size as stored (`BIGINT`): sizes over 8 EiB do not exist.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_at_nanosecond_precision() {
        let t = UNIX_EPOCH + Duration::new(1_764_900_000, 123_456_789);
        assert_eq!(from_nanos(to_nanos(t)), t);
        assert_eq!(to_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(from_nanos(-5), UNIX_EPOCH);
    }

    #[test]
    fn origins_lose_user_information() {
        let (_, url, _, _) = Origin::Git {
            repository: "https://u:hunter2@git.example/r.git".into(),
            commit: "abc".into(),
            reference: Some("refs/tags/v1.0.0".into()),
        }
        .columns();
        assert_eq!(url.as_deref(), Some("https://***@git.example/r.git"));
    }

    #[test]
    fn only_artifact_keys_make_records() {
        let m = ModulePath::new("example.com/a").unwrap();
        let key = StorageKey::artifact(&m, "v1.0.0", ArtifactKind::Zip);
        let r = ArtifactRecord::for_key(&key, 3, UNIX_EPOCH, Origin::Unknown).unwrap();
        assert_eq!(r.key(), key);
        assert!(
            ArtifactRecord::for_key(&StorageKey::List(m), 3, UNIX_EPOCH, Origin::Unknown).is_none()
        );
    }
}
