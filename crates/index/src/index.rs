//! [`Index`]: the handle the proxy, the CLI and the web pages share. Records what is stored and
//! served, and answers listings, totals, the feed and quarantines. Retention plans are in
//! [`crate::retention`], rebuilding from storage in [`crate::rebuild`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use agora_gomod::module::ModulePath;
use agora_storage::{ObjectInfo, StorageKey};
use futures::TryStreamExt;
use sqlx::QueryBuilder;

use crate::config::IndexConfig;
use crate::db::{on_db, Backend, Db};
use crate::error::IndexError;
use crate::model::*;
use crate::served::{Served, ServedBatch};

/// Rows per multi-row statement: far below both backends' limits on bound parameters (13 a row).
pub(crate) const CHUNK: usize = 500;

/// The most entries one feed page returns (as index.golang.org).
pub const MAX_FEED_LIMIT: usize = 2000;

/// The metadata index. Cheap to clone (one pool and one [`ServedBatch`] shared by the clones).
#[derive(Clone, Debug)]
pub struct Index {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    /// Where the index is, safe to print.
    location: String,
    served: ServedBatch,
}

/// What one [`Index::flush_served`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Distinct artifacts updated (or added, when the index did not know them).
    pub artifacts: usize,
    /// Serves counted.
    pub serves: u64,
}

/// The row-building SQL of artifact upserts, shared by recording and flushing.
pub(crate) const INSERT_ARTIFACTS: &str =
    "INSERT INTO artifacts (module, version, kind, size, h1, stored_at, \
     origin, origin_url, origin_commit, origin_ref, served_count, last_served, last_used) ";

/// Recording an artifact again (another replica stored it too, a retried request, a rebuild)
/// keeps what was recorded first: the earliest stored time, the origin (unless it was unknown)
/// and any `h1` already known. Served counts are untouched.
pub(crate) const ON_CONFLICT_STORED: &str = " ON CONFLICT (module, version, kind) DO UPDATE SET \
     h1 = COALESCE(artifacts.h1, excluded.h1), \
     origin_url = CASE WHEN artifacts.origin = 'unknown' THEN excluded.origin_url ELSE artifacts.origin_url END, \
     origin_commit = CASE WHEN artifacts.origin = 'unknown' THEN excluded.origin_commit ELSE artifacts.origin_commit END, \
     origin_ref = CASE WHEN artifacts.origin = 'unknown' THEN excluded.origin_ref ELSE artifacts.origin_ref END, \
     origin = CASE WHEN artifacts.origin = 'unknown' THEN excluded.origin ELSE artifacts.origin END, \
     stored_at = CASE WHEN excluded.stored_at < artifacts.stored_at THEN excluded.stored_at ELSE artifacts.stored_at END, \
     last_used = CASE WHEN artifacts.last_served IS NOT NULL AND artifacts.last_served > \
         (CASE WHEN excluded.stored_at < artifacts.stored_at THEN excluded.stored_at ELSE artifacts.stored_at END) \
         THEN artifacts.last_served \
         ELSE (CASE WHEN excluded.stored_at < artifacts.stored_at THEN excluded.stored_at ELSE artifacts.stored_at END) END";

/// A flush adds serves to known artifacts; an artifact the index does not know (stored before the
/// index existed, or by a replica whose record was lost) is added with what the hit saw: its size
/// and modification time, origin unknown.
const ON_CONFLICT_SERVED: &str = " ON CONFLICT (module, version, kind) DO UPDATE SET \
     served_count = artifacts.served_count + excluded.served_count, \
     last_served = CASE WHEN artifacts.last_served IS NULL OR excluded.last_served > artifacts.last_served \
         THEN excluded.last_served ELSE artifacts.last_served END, \
     last_used = CASE WHEN excluded.last_served > artifacts.last_used \
         THEN excluded.last_served ELSE artifacts.last_used END";

pub(crate) const INSERT_VERSIONS: &str = "INSERT INTO versions (module, version, first_stored) ";

/// A version's feed time is the earliest time any of its artifacts was stored.
pub(crate) const ON_CONFLICT_VERSION_EARLIEST: &str =
    " ON CONFLICT (module, version) DO UPDATE SET \
     first_stored = CASE WHEN excluded.first_stored < versions.first_stored \
         THEN excluded.first_stored ELSE versions.first_stored END";

/// Columns of an artifact as listed: version, kind, size, h1, stored_at, origin, url, commit,
/// ref, served_count, last_served.
type ArtifactTuple = (
    String,
    String,
    i64,
    Option<String>,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
);

fn artifact_row(t: ArtifactTuple) -> Result<(String, ArtifactRow), IndexError> {
    let (version, kind, size, h1, stored_at, origin, url, commit, reference, count, last) = t;
    Ok((
        version,
        ArtifactRow {
            kind: parse_kind(&kind)?,
            size: to_u64(size),
            h1,
            stored_at: from_nanos(stored_at),
            origin: Origin::from_columns(&origin, url, commit, reference)?,
            served_count: to_u64(count),
            last_served: last.map(from_nanos),
        },
    ))
}

/// Records of one statement, merged by key: PostgreSQL refuses an upsert that meets one row
/// twice, and "first recorded wins" must hold within a batch too.
pub(crate) fn merge_records(records: &[ArtifactRecord]) -> Vec<ArtifactRecord> {
    let mut at: HashMap<(&ModulePath, &str, agora_storage::ArtifactKind), usize> = HashMap::new();
    let mut out: Vec<ArtifactRecord> = Vec::with_capacity(records.len());
    for r in records {
        match at.get(&(&r.module, r.version.as_str(), r.kind)) {
            Some(&i) => {
                let kept = &mut out[i];
                kept.stored_at = kept.stored_at.min(r.stored_at);
                if kept.h1.is_none() {
                    kept.h1.clone_from(&r.h1);
                }
                if kept.origin == Origin::Unknown {
                    kept.origin = r.origin.clone();
                }
            }
            None => {
                at.insert((&r.module, r.version.as_str(), r.kind), out.len());
                out.push(r.clone());
            }
        }
    }
    out
}

/// (module, version) → earliest time, for the versions upsert of a batch.
pub(crate) fn earliest_versions<'a>(
    items: impl IntoIterator<Item = (&'a str, &'a str, SystemTime)>,
) -> Vec<(&'a str, &'a str, i64)> {
    let mut map: BTreeMap<(&str, &str), SystemTime> = BTreeMap::new();
    for (m, v, t) in items {
        map.entry((m, v))
            .and_modify(|e| *e = (*e).min(t))
            .or_insert(t);
    }
    map.into_iter()
        .map(|((m, v), t)| (m, v, to_nanos(t)))
        .collect()
}

fn check_version(version: &str) -> Result<(), IndexError> {
    if agora_gomod::semver::is_valid(version) {
        Ok(())
    } else {
        Err(IndexError::Invalid {
            what: "version",
            reason: format!("{version:?} is not a semantic version"),
        })
    }
}

/// Inserts `$chunk` (a slice of [`ArtifactRecord`]) with the stored-artifact upsert, and the
/// versions' feed times, on executor `$exec`. A macro because the executor's type differs per
/// backend.
macro_rules! insert_stored {
    ($exec:expr, $chunk:expr) => {{
        let merged = $crate::index::merge_records($chunk);
        let mut qb = ::sqlx::QueryBuilder::new($crate::index::INSERT_ARTIFACTS);
        qb.push_values(&merged, |mut b, r| {
            let (origin, url, commit, reference) = r.origin.columns();
            let stored = $crate::model::to_nanos(r.stored_at);
            b.push_bind(r.module.as_str())
                .push_bind(r.version.as_str())
                .push_bind($crate::model::kind_str(r.kind))
                .push_bind($crate::model::to_i64(r.size))
                .push_bind(r.h1.clone())
                .push_bind(stored)
                .push_bind(origin)
                .push_bind(url)
                .push_bind(commit)
                .push_bind(reference)
                .push_bind(0_i64)
                .push_bind(None::<i64>)
                .push_bind(stored);
        });
        qb.push($crate::index::ON_CONFLICT_STORED);
        qb.build()
            .execute($exec)
            .await
            .map_err($crate::error::IndexError::query("record_stored"))?;
        let versions = $crate::index::earliest_versions(
            merged
                .iter()
                .map(|r| (r.module.as_str(), r.version.as_str(), r.stored_at)),
        );
        let mut qb = ::sqlx::QueryBuilder::new($crate::index::INSERT_VERSIONS);
        qb.push_values(versions, |mut b, (m, v, t)| {
            b.push_bind(m).push_bind(v).push_bind(t);
        });
        qb.push($crate::index::ON_CONFLICT_VERSION_EARLIEST);
        qb.build()
            .execute($exec)
            .await
            .map_err($crate::error::IndexError::query("record_stored"))?;
    }};
}
pub(crate) use insert_stored;

impl Index {
    /// Opens the index `config` names (SQLite under `data_dir` by default, created with its
    /// directory on first start) and brings its schema up to date. Never scans the store.
    pub async fn open(config: &IndexConfig, data_dir: &Path) -> Result<Index, IndexError> {
        let target = config.target(data_dir)?;
        let db = Db::open(config, &target).await?;
        let location = target.to_string();
        tracing::info!(index.location = %location, "index opened");
        Ok(Index {
            inner: Arc::new(Inner {
                db,
                location,
                served: ServedBatch::new(),
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        self.inner.db.backend()
    }

    /// Where the index is (a path or a URL without user information), for logs and `doctor`.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Writes pending serves and closes the pool. Other clones become unusable.
    pub async fn close(&self) -> Result<(), IndexError> {
        let flushed = self.flush_served().await;
        self.inner.db.close().await;
        flushed.map(|_| ())
    }

    /// Records a stored artifact. Idempotent: recording it again keeps the first record's stored
    /// time and origin (artifacts are write-once), filling in only what was unknown.
    pub async fn record_stored(&self, record: &ArtifactRecord) -> Result<(), IndexError> {
        self.record_stored_many(std::slice::from_ref(record)).await
    }

    /// [`record_stored`](Self::record_stored) for many artifacts, in one transaction (imports,
    /// rebuilds).
    pub async fn record_stored_many(&self, records: &[ArtifactRecord]) -> Result<(), IndexError> {
        if records.is_empty() {
            return Ok(());
        }
        let err = IndexError::query("record_stored");
        on_db!(self.db(), pool => {
            let mut tx = pool.begin().await.map_err(err)?;
            for chunk in records.chunks(CHUNK) {
                insert_stored!(&mut *tx, chunk);
            }
            tx.commit().await.map_err(IndexError::query("record_stored"))
        })
    }

    /// Counts one serve of `key` (a stored object described by `info`), in memory: no await, no
    /// database. Written by the next [`flush_served`](Self::flush_served). Keys that are not
    /// version artifacts are ignored.
    pub fn record_served(&self, key: &StorageKey, info: &ObjectInfo) {
        self.inner
            .served
            .record(key, info.size, info.last_modified, SystemTime::now());
    }

    /// The batch behind [`record_served`](Self::record_served) (for callers that know the time,
    /// and for tests).
    pub fn served_batch(&self) -> &ServedBatch {
        &self.inner.served
    }

    /// Writes the serves counted since the last flush, in one transaction. An artifact the index
    /// does not know is added from what the hit saw (size, modification time as its stored time,
    /// origin unknown): the cheap way to record what was stored before the index existed without
    /// scanning the store at start-up. On failure the counts are kept for the next flush.
    pub async fn flush_served(&self) -> Result<FlushReport, IndexError> {
        let entries = self.inner.served.take();
        if entries.is_empty() {
            return Ok(FlushReport::default());
        }
        let report = FlushReport {
            artifacts: entries.len(),
            serves: entries.iter().map(|(_, s)| s.count).sum(),
        };
        match self.write_served(&entries).await {
            Ok(()) => Ok(report),
            Err(e) => {
                self.inner.served.restore(entries);
                Err(e)
            }
        }
    }

    async fn write_served(&self, entries: &[(StorageKey, Served)]) -> Result<(), IndexError> {
        let rows: Vec<(&ModulePath, &str, &'static str, &Served)> = entries
            .iter()
            .filter_map(|(key, served)| match key {
                StorageKey::Artifact {
                    module,
                    version,
                    kind,
                } => Some((module, version.as_str(), kind_str(*kind), served)),
                _ => None,
            })
            .collect();
        let err = IndexError::query("flush_served");
        on_db!(self.db(), pool => {
            let mut tx = pool.begin().await.map_err(err)?;
            for chunk in rows.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(INSERT_ARTIFACTS);
                qb.push_values(chunk, |mut b, (module, version, kind, s)| {
                    let stored = to_nanos(s.stored);
                    let last = to_nanos(s.last);
                    b.push_bind(module.as_str())
                        .push_bind(*version)
                        .push_bind(*kind)
                        .push_bind(to_i64(s.size))
                        .push_bind(None::<String>)
                        .push_bind(stored)
                        .push_bind("unknown")
                        .push_bind(None::<String>)
                        .push_bind(None::<String>)
                        .push_bind(None::<String>)
                        .push_bind(to_i64(s.count))
                        .push_bind(last)
                        .push_bind(stored.max(last));
                });
                qb.push(ON_CONFLICT_SERVED);
                qb.build().execute(&mut *tx).await.map_err(IndexError::query("flush_served"))?;
                let versions = earliest_versions(
                    chunk.iter().map(|(m, v, _, s)| (m.as_str(), *v, s.stored)),
                );
                let mut qb = QueryBuilder::new(INSERT_VERSIONS);
                qb.push_values(versions, |mut b, (m, v, t)| {
                    b.push_bind(m).push_bind(v).push_bind(t);
                });
                // Only fills in versions the index did not know: a known version's feed time is
                // when it was recorded, not the object's modification time.
                qb.push(" ON CONFLICT (module, version) DO NOTHING");
                qb.build().execute(&mut *tx).await.map_err(IndexError::query("flush_served"))?;
            }
            tx.commit().await.map_err(IndexError::query("flush_served"))
        })
    }

    /// One artifact, if recorded.
    pub async fn artifact(&self, key: &StorageKey) -> Result<Option<ArtifactRow>, IndexError> {
        let StorageKey::Artifact {
            module,
            version,
            kind,
        } = key
        else {
            return Ok(None);
        };
        let err = IndexError::query("artifact");
        let row: Option<ArtifactTuple> = on_db!(self.db(), pool => {
            sqlx::query_as(
                "SELECT version, kind, size, h1, stored_at, origin, origin_url, origin_commit, \
                 origin_ref, served_count, last_served FROM artifacts \
                 WHERE module = $1 AND version = $2 AND kind = $3",
            )
            .bind(module.as_str())
            .bind(version.as_str())
            .bind(kind_str(*kind))
            .fetch_optional(pool)
            .await
            .map_err(err)?
        });
        row.map(|t| artifact_row(t).map(|(_, a)| a)).transpose()
    }

    /// Every version of `module` the index knows (stored, or quarantined before it was stored),
    /// in Go's semantic version order, each with its artifacts and quarantine.
    pub async fn versions(&self, module: &ModulePath) -> Result<Vec<VersionRow>, IndexError> {
        let m = module.as_str();
        let (artifacts, versions, quarantines) = on_db!(self.db(), pool => {
            let a: Vec<ArtifactTuple> = sqlx::query_as(
                "SELECT version, kind, size, h1, stored_at, origin, origin_url, origin_commit, \
                 origin_ref, served_count, last_served FROM artifacts WHERE module = $1",
            )
            .bind(m)
            .fetch_all(pool)
            .await
            .map_err(IndexError::query("versions"))?;
            let v: Vec<(String, i64)> =
                sqlx::query_as("SELECT version, first_stored FROM versions WHERE module = $1")
                .bind(m)
                .fetch_all(pool)
                .await
                .map_err(IndexError::query("versions"))?;
            let q: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT version, reason, actor, since FROM quarantines WHERE module = $1",
            )
            .bind(m)
            .fetch_all(pool)
            .await
            .map_err(IndexError::query("versions"))?;
            (a, v, q)
        });
        let mut rows: BTreeMap<String, VersionRow> = BTreeMap::new();
        fn slot(rows: &mut BTreeMap<String, VersionRow>, version: String) -> &mut VersionRow {
            rows.entry(version).or_insert_with_key(|v| VersionRow {
                version: v.clone(),
                first_stored: None,
                artifacts: Vec::new(),
                quarantine: None,
            })
        }
        for (version, first) in versions {
            slot(&mut rows, version).first_stored = Some(from_nanos(first));
        }
        for t in artifacts {
            let (version, a) = artifact_row(t)?;
            slot(&mut rows, version).artifacts.push(a);
        }
        for (version, reason, actor, since) in quarantines {
            slot(&mut rows, version.clone()).quarantine = Some(Quarantine {
                module: module.clone(),
                version: version.clone(),
                reason,
                actor,
                since: from_nanos(since),
            });
        }
        let mut out: Vec<VersionRow> = rows.into_values().collect();
        for r in &mut out {
            r.artifacts
                .sort_by_key(|a| KINDS.iter().position(|k| *k == a.kind));
        }
        out.sort_by(|a, b| agora_gomod::semver::compare(&a.version, &b.version));
        Ok(out)
    }

    /// Modules with their totals, in byte order of their paths, a page at a time (`agora ls
    /// [PATTERN]`). The pattern's literal beginning narrows the database walk; the rest is
    /// matched here, with Go's rules.
    pub async fn modules(&self, query: &ModuleQuery) -> Result<Vec<ModuleRow>, IndexError> {
        let pattern = query.pattern.as_deref().filter(|p| !p.is_empty());
        let prefix = pattern.map(literal_prefix).unwrap_or_default();
        let after = query.after.clone().unwrap_or_default();
        let limit = if query.limit == 0 {
            usize::MAX
        } else {
            query.limit
        };
        let mut out = Vec::new();
        on_db!(self.db(), pool => {
            let mut rows = sqlx::query_as::<_, (String, i64, i64, i64, i64, Option<i64>, i64)>(
                "SELECT module, COUNT(DISTINCT version), COUNT(*), CAST(SUM(size) AS BIGINT), \
                 MAX(stored_at), MAX(last_served), CAST(SUM(served_count) AS BIGINT) \
                 FROM artifacts WHERE module >= $1 AND module > $2 \
                 GROUP BY module ORDER BY module",
            )
            .bind(prefix.as_str())
            .bind(after.as_str())
            .fetch(pool);
            while let Some((module, versions, artifacts, bytes, stored, served, count)) =
                rows.try_next().await.map_err(IndexError::query("modules"))?
            {
                if !module.starts_with(prefix.as_str()) {
                    break;
                }
                if pattern.is_some_and(|p| !agora_gomod::match_prefix_patterns(p, &module)) {
                    continue;
                }
                out.push(ModuleRow {
                    module: parse_module(module)?,
                    versions: to_u64(versions),
                    artifacts: to_u64(artifacts),
                    bytes: to_u64(bytes),
                    last_stored: from_nanos(stored),
                    last_served: served.map(from_nanos),
                    served_count: to_u64(count),
                });
                if out.len() >= limit {
                    break;
                }
            }
        });
        Ok(out)
    }

    /// Modules whose path contains `text` (ASCII case-insensitively), those beginning with it
    /// first, then in path order; at most `limit`. Each with its number of versions, its latest
    /// (the highest release, else the highest version) and when a version was last stored. For
    /// the web UI's search: one pass over the versions table, not over every artifact.
    pub async fn search(&self, text: &str, limit: usize) -> Result<Vec<SearchHit>, IndexError> {
        let needle = text.trim().to_ascii_lowercase();
        let escaped: String = needle
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let anywhere = format!("%{escaped}%");
        let starting = format!("{escaped}%");
        let limit = to_i64(limit.min(1000) as u64);
        let err = IndexError::query("search");
        let rows: Vec<(String, i64, i64)> = on_db!(self.db(), pool => {
            sqlx::query_as(
                "SELECT module, COUNT(*), MAX(first_stored) FROM versions \
                 WHERE LOWER(module) LIKE $1 ESCAPE '\\' GROUP BY module \
                 ORDER BY CASE WHEN LOWER(module) LIKE $2 ESCAPE '\\' THEN 0 ELSE 1 END, module \
                 LIMIT $3",
            )
            .bind(anywhere.as_str())
            .bind(starting.as_str())
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(err)?
        });
        let mut hits = Vec::with_capacity(rows.len());
        for (module, versions, last) in rows {
            let err = IndexError::query("search");
            let listed: Vec<(String,)> = on_db!(self.db(), pool => {
                sqlx::query_as("SELECT version FROM versions WHERE module = $1")
                    .bind(module.as_str())
                    .fetch_all(pool)
                    .await
                    .map_err(err)?
            });
            let latest = latest_of(listed.iter().map(|(v,)| v.as_str()));
            hits.push(SearchHit {
                module: parse_module(module)?,
                versions: to_u64(versions),
                latest,
                last_stored: from_nanos(last),
            });
        }
        Ok(hits)
    }

    /// Totals: modules, versions, artifacts and bytes by kind and by origin, serves, quarantines.
    pub async fn stats(&self) -> Result<Stats, IndexError> {
        let err = || IndexError::query("stats");
        let (kinds, origins, (versions, modules), quarantined, served) = on_db!(self.db(), pool => {
            let kinds: Vec<(String, i64, i64)> = sqlx::query_as(
                "SELECT kind, COUNT(*), CAST(SUM(size) AS BIGINT) FROM artifacts GROUP BY kind",
            )
            .fetch_all(pool)
            .await
            .map_err(err())?;
            let origins: Vec<(String, Option<String>, i64, i64)> = sqlx::query_as(
                "SELECT origin, CASE WHEN origin = 'upstream' THEN origin_url END, COUNT(*), \
                 CAST(SUM(size) AS BIGINT) FROM artifacts GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .fetch_all(pool)
            .await
            .map_err(err())?;
            let counts: (i64, i64) =
                sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT module) FROM versions")
                .fetch_one(pool)
                .await
                .map_err(err())?;
            let quarantined: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM quarantines")
                .fetch_one(pool)
                .await
                .map_err(err())?;
            let served: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(served_count), 0) AS BIGINT) FROM artifacts",
            )
            .fetch_one(pool)
            .await
            .map_err(err())?;
            (kinds, origins, counts, quarantined, served)
        });
        let mut by_kind: Vec<(agora_storage::ArtifactKind, Totals)> =
            KINDS.iter().map(|k| (*k, Totals::default())).collect();
        for (kind, n, bytes) in kinds {
            let kind = parse_kind(&kind)?;
            if let Some((_, t)) = by_kind.iter_mut().find(|(k, _)| *k == kind) {
                *t = Totals {
                    artifacts: to_u64(n),
                    bytes: to_u64(bytes),
                };
            }
        }
        let by_origin = origins
            .into_iter()
            .map(|(origin, upstream, n, bytes)| {
                Ok(OriginTotals {
                    origin: OriginKind::parse(&origin)?,
                    upstream,
                    totals: Totals {
                        artifacts: to_u64(n),
                        bytes: to_u64(bytes),
                    },
                })
            })
            .collect::<Result<Vec<_>, IndexError>>()?;
        Ok(Stats {
            modules: to_u64(modules),
            versions: to_u64(versions),
            by_kind,
            by_origin,
            served: to_u64(served),
            quarantined: to_u64(quarantined),
        })
    }

    /// The feed (`/index?since=&limit=`): module versions first stored at or after `since`, in
    /// order of that time, then path, then version; at most `limit` (capped at
    /// [`MAX_FEED_LIMIT`]). As on index.golang.org the next page starts at the last timestamp
    /// seen, so entries sharing it come again; [`feed_after`](Self::feed_after) continues exactly.
    pub async fn feed(
        &self,
        since: SystemTime,
        limit: usize,
    ) -> Result<Vec<FeedEntry>, IndexError> {
        let limit = to_i64(limit.min(MAX_FEED_LIMIT) as u64);
        let err = IndexError::query("feed");
        let rows: Vec<(String, String, i64)> = on_db!(self.db(), pool => {
            sqlx::query_as(
                "SELECT module, version, first_stored FROM versions WHERE first_stored >= $1 \
                 ORDER BY first_stored, module, version LIMIT $2",
            )
            .bind(to_nanos(since))
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(err)?
        });
        feed_entries(rows)
    }

    /// The feed after `last` (the last entry of the previous page), without repeating entries
    /// that share its timestamp.
    pub async fn feed_after(
        &self,
        last: &FeedEntry,
        limit: usize,
    ) -> Result<Vec<FeedEntry>, IndexError> {
        let limit = to_i64(limit.min(MAX_FEED_LIMIT) as u64);
        let err = IndexError::query("feed");
        let rows: Vec<(String, String, i64)> = on_db!(self.db(), pool => {
            sqlx::query_as(
                "SELECT module, version, first_stored FROM versions \
                 WHERE (first_stored, module, version) > ($1, $2, $3) \
                 ORDER BY first_stored, module, version LIMIT $4",
            )
            .bind(to_nanos(last.timestamp))
            .bind(last.path.as_str())
            .bind(last.version.as_str())
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(err)?
        });
        feed_entries(rows)
    }

    /// Forgets a module's artifacts (every version, or one), and their feed entries: after an
    /// operator deleted them from storage. Quarantines stay. Returns the artifacts forgotten.
    pub async fn remove(
        &self,
        module: &ModulePath,
        version: Option<&str>,
    ) -> Result<u64, IndexError> {
        let m = module.as_str();
        let err = || IndexError::query("remove");
        on_db!(self.db(), pool => {
            let mut tx = pool.begin().await.map_err(err())?;
            let n = match version {
                Some(v) => {
                    let n = sqlx::query("DELETE FROM artifacts WHERE module = $1 AND version = $2")
                        .bind(m)
                        .bind(v)
                        .execute(&mut *tx)
                        .await
                        .map_err(err())?
                        .rows_affected();
                    sqlx::query("DELETE FROM versions WHERE module = $1 AND version = $2")
                        .bind(m)
                        .bind(v)
                        .execute(&mut *tx)
                        .await
                        .map_err(err())?;
                    n
                }
                None => {
                    let n = sqlx::query("DELETE FROM artifacts WHERE module = $1")
                        .bind(m)
                        .execute(&mut *tx)
                        .await
                        .map_err(err())?
                        .rows_affected();
                    sqlx::query("DELETE FROM versions WHERE module = $1")
                        .bind(m)
                        .execute(&mut *tx)
                        .await
                        .map_err(err())?;
                    n
                }
            };
            tx.commit().await.map_err(err())?;
            Ok(n)
        })
    }

    /// Forgets single artifacts (after retention deleted them from storage). The versions keep
    /// their feed entries: the feed tells when a version first appeared, whatever became of it.
    /// Returns the artifacts forgotten.
    pub async fn forget(&self, keys: &[StorageKey]) -> Result<u64, IndexError> {
        let err = || IndexError::query("forget");
        on_db!(self.db(), pool => {
            let mut tx = pool.begin().await.map_err(err())?;
            let mut n = 0;
            for key in keys {
                if let StorageKey::Artifact { module, version, kind } = key {
                    n += sqlx::query(
                        "DELETE FROM artifacts WHERE module = $1 AND version = $2 AND kind = $3",
                    )
                    .bind(module.as_str())
                    .bind(version.as_str())
                    .bind(kind_str(*kind))
                    .execute(&mut *tx)
                    .await
                    .map_err(err())?
                    .rows_affected();
                }
            }
            tx.commit().await.map_err(err())?;
            Ok(n)
        })
    }

    /// Quarantines a version (stored or not): the proxy refuses to serve it until it is lifted.
    /// Quarantining again updates the reason and actor and keeps the original time.
    pub async fn quarantine(
        &self,
        module: &ModulePath,
        version: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Quarantine, IndexError> {
        check_version(version)?;
        let now = to_nanos(SystemTime::now());
        let err = IndexError::query("quarantine");
        let since: i64 = on_db!(self.db(), pool => {
            sqlx::query_scalar(
                "INSERT INTO quarantines (module, version, reason, actor, since) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (module, version) DO UPDATE SET reason = excluded.reason, \
                 actor = excluded.actor RETURNING since",
            )
            .bind(module.as_str())
            .bind(version)
            .bind(reason)
            .bind(actor)
            .bind(now)
            .fetch_one(pool)
            .await
            .map_err(err)?
        });
        Ok(Quarantine {
            module: module.clone(),
            version: version.to_owned(),
            reason: reason.to_owned(),
            actor: actor.to_owned(),
            since: from_nanos(since),
        })
    }

    /// Lifts a quarantine; returns it (for the audit log), or `None` if there was none.
    pub async fn lift(
        &self,
        module: &ModulePath,
        version: &str,
    ) -> Result<Option<Quarantine>, IndexError> {
        self.quarantine_row(
            "lift",
            "DELETE FROM quarantines WHERE module = $1 AND version = $2 \
             RETURNING reason, actor, since",
            module,
            version,
        )
        .await
    }

    /// The quarantine of a version, if any.
    pub async fn quarantined(
        &self,
        module: &ModulePath,
        version: &str,
    ) -> Result<Option<Quarantine>, IndexError> {
        self.quarantine_row(
            "quarantined",
            "SELECT reason, actor, since FROM quarantines WHERE module = $1 AND version = $2",
            module,
            version,
        )
        .await
    }

    /// The quarantine row `sql` answers (reason, actor, since) for `module@version`, if any.
    async fn quarantine_row(
        &self,
        what: &'static str,
        sql: &'static str,
        module: &ModulePath,
        version: &str,
    ) -> Result<Option<Quarantine>, IndexError> {
        let err = IndexError::query(what);
        let row: Option<(String, String, i64)> = on_db!(self.db(), pool => {
            sqlx::query_as(sql)
                .bind(module.as_str())
                .bind(version)
                .fetch_optional(pool)
                .await
                .map_err(err)?
        });
        Ok(row.map(|(reason, actor, since)| Quarantine {
            module: module.clone(),
            version: version.to_owned(),
            reason,
            actor,
            since: from_nanos(since),
        }))
    }

    /// Every quarantine, by module and version (few: the proxy can keep them in memory and
    /// refresh them, rather than ask on every hit).
    pub async fn quarantines(&self) -> Result<Vec<Quarantine>, IndexError> {
        let err = IndexError::query("quarantines");
        let rows: Vec<(String, String, String, String, i64)> = on_db!(self.db(), pool => {
            sqlx::query_as(
                "SELECT module, version, reason, actor, since FROM quarantines \
                 ORDER BY module, version",
            )
            .fetch_all(pool)
            .await
            .map_err(err)?
        });
        rows.into_iter()
            .map(|(module, version, reason, actor, since)| {
                Ok(Quarantine {
                    module: parse_module(module)?,
                    version,
                    reason,
                    actor,
                    since: from_nanos(since),
                })
            })
            .collect()
    }
}

fn feed_entries(rows: Vec<(String, String, i64)>) -> Result<Vec<FeedEntry>, IndexError> {
    rows.into_iter()
        .map(|(module, version, t)| {
            Ok(FeedEntry {
                path: parse_module(module)?,
                version,
                timestamp: from_nanos(t),
            })
        })
        .collect()
}

/// The longest literal beginning shared by every comma-separated pattern: where in path order
/// their matches can start. Glob syntax (`*`, `?`, `[`, `\`) ends a literal.
fn literal_prefix(patterns: &str) -> String {
    let mut common: Option<&str> = None;
    for p in patterns.split(',') {
        let p = p.strip_suffix('/').unwrap_or(p);
        if p.is_empty() {
            continue;
        }
        let lit = &p[..p.find(['*', '?', '[', '\\']).unwrap_or(p.len())];
        common = Some(match common {
            None => lit,
            Some(c) => {
                let n = c
                    .char_indices()
                    .zip(lit.chars())
                    .take_while(|((_, a), b)| a == b)
                    .last()
                    .map_or(0, |((i, a), _)| i + a.len_utf8());
                &c[..n]
            }
        });
    }
    common.unwrap_or("").to_owned()
}

/// The go command's choice among versions without a query: the highest release, else the highest
/// pre-release or pseudo-version.
pub fn latest_of<'a>(versions: impl Iterator<Item = &'a str>) -> Option<String> {
    let release = |v: &str| agora_gomod::semver::prerelease(v).is_none_or(str::is_empty);
    versions
        .filter(|v| agora_gomod::semver::is_valid(v))
        .max_by(|a, b| {
            release(a)
                .cmp(&release(b))
                .then(agora_gomod::semver::compare(a, b))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefixes_of_patterns() {
        assert_eq!(literal_prefix("github.com/org"), "github.com/org");
        assert_eq!(literal_prefix("github.com/org/"), "github.com/org");
        assert_eq!(literal_prefix("*.corp.example"), "");
        assert_eq!(literal_prefix("github.com/a*"), "github.com/a");
        assert_eq!(
            literal_prefix("github.com/ab,github.com/ac"),
            "github.com/a"
        );
        assert_eq!(literal_prefix("a.example/x,b.example"), "");
        assert_eq!(literal_prefix(",,"), "");
    }
}
