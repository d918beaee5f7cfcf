//! Retention: which artifacts to delete to stay within a size budget or to drop what nobody
//! used for a while, planned from the index alone (never by walking the store).
//!
//! What a Go build needs decides the order. The `.mod` files of every version in a module graph
//! are read to resolve it (even versions that are not selected), and `.info` answers version
//! queries; both are small and, once gone, cannot be fetched again if the upstream or the
//! repository has gone. Zips are large, and only the selected versions' zips are downloaded. So
//! zips go first, least recently used first ("used" is the last serve, or the store for one
//! never served); `.info`/`.mod` are only ever evicted by age, with the whole version unused, and
//! only when the policy asks for it ([`RetentionPolicy::metadata`]). Modules matching
//! [`RetentionPolicy::keep`] (by default the private ones: their repositories may be rewritten)
//! and quarantined versions (evidence) are never evicted.
//!
//! The plan is one ordered walk of an index (`kind, last_used`) with a running sum, streamed to
//! a visitor: memory does not grow with the number of artifacts ([`Index::retention`]);
//! [`Index::plan_retention`] collects the evictions into a [`Plan`].

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use agora_storage::{ArtifactKind, StorageKey};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::db::on_db;
use crate::error::IndexError;
use crate::model::{from_nanos, parse_kind, parse_module, to_nanos, to_u64, Totals};
use crate::Index;

/// `[retention]`: what may be deleted from the cache. The default deletes nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionPolicy {
    /// Keep the whole cache (every kind) within this many bytes, by evicting zips.
    pub max_size: Option<u64>,
    /// Evict zips (and, with `metadata`, whole versions) not used for this long.
    #[serde(with = "humantime_serde")]
    pub unused_for: Option<Duration>,
    /// GOPRIVATE-style patterns of modules kept forever (the proxy passes its private patterns).
    pub keep: Vec<String>,
    /// Also evict `.info` and `.mod` of versions entirely unused for `unused_for` (never for the
    /// size budget). Off by default: they keep module graphs resolvable.
    pub metadata: bool,
}

/// Why an artifact is planned for eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictReason {
    /// Not used for `unused_for`.
    Unused,
    /// Needed to get under `max_size`.
    OverBudget,
}

/// One artifact to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eviction {
    pub key: StorageKey,
    pub size: u64,
    /// Last served, or stored if never served.
    pub last_used: SystemTime,
    pub reason: EvictReason,
}

/// What a plan frees, with the totals it started from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanSummary {
    /// Every artifact in the index before the plan.
    pub before: Totals,
    /// What the plan evicts.
    pub evicted: Totals,
    /// Bytes left afterwards.
    pub bytes_after: u64,
    /// Whether `bytes_after` is within `max_size` (true without a budget). False when what may
    /// be evicted does not suffice (kept modules and metadata are larger than the budget).
    pub within_budget: bool,
}

/// A collected plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub evictions: Vec<Eviction>,
    pub summary: PlanSummary,
}

impl Index {
    /// Plans retention under `policy` at `now`, handing each eviction to `visit` in order (zips
    /// least recently used first, then metadata) and returning the totals. Reads only; the
    /// caller deletes from storage and then [`forget`](Index::forget)s what it deleted. Memory
    /// stays bounded whatever the number of artifacts.
    pub async fn retention(
        &self,
        policy: &RetentionPolicy,
        now: SystemTime,
        mut visit: impl FnMut(Eviction),
    ) -> Result<PlanSummary, IndexError> {
        let cutoff = policy
            .unused_for
            .map(|d| to_nanos(now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH)));
        let keep = policy.keep.join(",");
        let kept =
            |module: &str| !keep.is_empty() && agora_gomod::match_prefix_patterns(&keep, module);
        let quarantined: HashSet<(String, String)> = self
            .quarantines()
            .await?
            .into_iter()
            .map(|q| (q.module.into_string(), q.version))
            .collect();
        let is_quarantined = |m: &str, v: &str| {
            !quarantined.is_empty() && quarantined.contains(&(m.to_owned(), v.to_owned()))
        };

        let err = || IndexError::query("retention");
        let (count, bytes): (i64, i64) = on_db!(self.db(), pool => {
            sqlx::query_as("SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM artifacts")
                .fetch_one(pool)
                .await
                .map_err(err())?
        });
        let before = Totals {
            artifacts: to_u64(count),
            bytes: to_u64(bytes),
        };
        let mut remaining = before.bytes;
        let mut evicted = Totals::default();
        let mut evict = |e: Eviction, remaining: &mut u64| {
            *remaining = remaining.saturating_sub(e.size);
            evicted.artifacts += 1;
            evicted.bytes += e.size;
            visit(e);
        };

        // Zips, least recently used first: evict while too old or over budget, stop at the first
        // that is neither (every later one is newer, and the budget only gets closer).
        on_db!(self.db(), pool => {
            let mut rows = sqlx::query_as::<_, (String, String, i64, i64)>(
                "SELECT module, version, size, last_used FROM artifacts WHERE kind = 'zip' \
                 ORDER BY last_used, module, version",
            )
            .fetch(pool);
            while let Some((module, version, size, last_used)) =
                rows.try_next().await.map_err(err())?
            {
                let old = cutoff.is_some_and(|c| last_used < c);
                let over = policy.max_size.is_some_and(|max| remaining > max);
                if !old && !over {
                    break;
                }
                if kept(&module) || is_quarantined(&module, &version) {
                    continue;
                }
                let key = StorageKey::Artifact {
                    module: parse_module(module)?,
                    version,
                    kind: ArtifactKind::Zip,
                };
                let reason = if old { EvictReason::Unused } else { EvictReason::OverBudget };
                evict(
                    Eviction { key, size: to_u64(size), last_used: from_nanos(last_used), reason },
                    &mut remaining,
                );
            }
        });

        // Metadata: only by age, only of versions none of whose artifacts was used since.
        if let (true, Some(cutoff)) = (policy.metadata, cutoff) {
            on_db!(self.db(), pool => {
                let mut rows = sqlx::query_as::<_, (String, String, String, i64, i64)>(
                    "SELECT a.module, a.version, a.kind, a.size, a.last_used FROM artifacts a \
                     WHERE a.kind <> 'zip' AND a.last_used < $1 AND NOT EXISTS ( \
                         SELECT 1 FROM artifacts b WHERE b.module = a.module \
                         AND b.version = a.version AND b.last_used >= $1) \
                     ORDER BY a.last_used, a.module, a.version, a.kind",
                )
                .bind(cutoff)
                .fetch(pool);
                while let Some((module, version, kind, size, last_used)) =
                    rows.try_next().await.map_err(err())?
                {
                    if kept(&module) || is_quarantined(&module, &version) {
                        continue;
                    }
                    let key = StorageKey::Artifact {
                        module: parse_module(module)?,
                        version,
                        kind: parse_kind(&kind)?,
                    };
                    evict(
                        Eviction {
                            key,
                            size: to_u64(size),
                            last_used: from_nanos(last_used),
                            reason: EvictReason::Unused,
                        },
                        &mut remaining,
                    );
                }
            });
        }

        Ok(PlanSummary {
            before,
            evicted,
            bytes_after: remaining,
            within_budget: policy.max_size.is_none_or(|max| remaining <= max),
        })
    }

    /// [`retention`](Self::retention), collected. Its memory grows with the number of evictions
    /// (about 150 bytes each); prefer the visitor to act on very large plans.
    pub async fn plan_retention(
        &self,
        policy: &RetentionPolicy,
        now: SystemTime,
    ) -> Result<Plan, IndexError> {
        let mut evictions = Vec::new();
        let summary = self.retention(policy, now, |e| evictions.push(e)).await?;
        Ok(Plan { evictions, summary })
    }
}
