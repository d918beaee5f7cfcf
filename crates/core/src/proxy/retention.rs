//! Retention: deleting what the index's plan ([`agora_index::RetentionPolicy`]) says may go, zips
//! least recently used first. One replica collects at a time (the shared lock, when there is one);
//! artifacts used within `keep_recent` ([`HOT`] by default) are never deleted, so nothing being
//! fetched, stored or served right now disappears under a client. An evicted version is fetched again, and verified
//! again, on its next request.

use std::time::{Duration, SystemTime};

use agora_index::{Eviction, PlanSummary, RetentionPolicy};
use agora_storage::StorageKey;

use super::Proxy;
use crate::error::CoreError;

/// The default `keep_recent`: artifacts used more recently are left alone by a collection.
pub const HOT: Duration = Duration::from_secs(15 * 60);

/// Deleted keys are forgotten by the index in batches of this many.
const FORGET_BATCH: usize = 500;

/// What a collection planned and did.
#[derive(Clone, Debug, Default)]
pub struct Collection {
    /// The plan, in the order it would delete.
    pub evictions: Vec<Eviction>,
    pub summary: PlanSummary,
    /// Whether it deleted (`agora gc --apply`, the background collection) or only planned.
    pub applied: bool,
    /// Artifacts deleted and the bytes freed.
    pub deleted: u64,
    pub freed: u64,
    /// Planned, but used within `keep_recent`: kept this time.
    pub hot: u64,
}

/// A collection without its list of evictions (kept for the status page).
fn summary_of(c: &Collection) -> Collection {
    Collection {
        evictions: Vec::new(),
        ..c.clone()
    }
}

impl Proxy {
    /// Plans retention under `policy` and, with `apply`, deletes what the plan says except what
    /// was used within `keep_recent`. `None` when another replica is collecting right now.
    pub async fn collect(
        &self,
        policy: &RetentionPolicy,
        keep_recent: Duration,
        apply: bool,
    ) -> Result<Option<Collection>, CoreError> {
        let index = self.require_index()?;
        let _turn = match (&self.inner.lock, apply) {
            (Some(lock), true) => match lock.try_acquire("gc").await {
                Ok(Some(guard)) => Some(guard),
                Ok(None) => return Ok(None),
                Err(err) => {
                    tracing::warn!(error = %err, "lock service unavailable; collecting without it");
                    None
                }
            },
            _ => None,
        };
        // The last hits first, so that what was just served is not taken for unused.
        if let Err(err) = index.flush_served().await {
            tracing::warn!(error = %err, "could not write recent hits before planning retention");
        }
        let now = SystemTime::now();
        let plan = index
            .plan_retention(policy, now)
            .await
            .map_err(|e| CoreError::Internal(format!("retention plan: {e}")))?;
        let mut done = Collection {
            evictions: plan.evictions,
            summary: plan.summary,
            applied: apply,
            ..Collection::default()
        };
        if !apply {
            return Ok(Some(done));
        }
        let metrics = &self.inner.gate.metrics;
        let mut forget: Vec<StorageKey> = Vec::with_capacity(FORGET_BATCH);
        for e in &done.evictions {
            if now.duration_since(e.last_used).unwrap_or_default() < keep_recent {
                done.hot += 1;
                continue;
            }
            // Gone already (another collection, an operator) is as good as deleted.
            self.inner.storage.delete(&e.key).await?;
            if let StorageKey::Artifact { kind, .. } = &e.key {
                metrics.record_eviction(kind.extension(), e.size);
            }
            done.deleted += 1;
            done.freed += e.size;
            forget.push(e.key.clone());
            if forget.len() >= FORGET_BATCH {
                index
                    .forget(&forget)
                    .await
                    .map_err(|e| CoreError::Internal(format!("retention: {e}")))?;
                forget.clear();
            }
        }
        index
            .forget(&forget)
            .await
            .map_err(|e| CoreError::Internal(format!("retention: {e}")))?;
        *self
            .inner
            .last_collection
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((SystemTime::now(), summary_of(&done)));
        Ok(Some(done))
    }
}
