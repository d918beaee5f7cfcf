//! What the proxy tells the metadata index ([`agora_index::Index`]) and what it learns from it:
//! every artifact it stores (with its size, `h1:` and origin), every hit (counted in memory and
//! flushed in batches, so the hit path never waits for a database), and the quarantined versions
//! it must refuse. Quarantines are read from a snapshot in memory, refreshed by [`Proxy::sync_index`]
//! (the server calls it every few seconds) and at once by [`Proxy::quarantine`] and
//! [`Proxy::lift`] on this replica: a quarantine set on another replica or by the CLI takes effect
//! at the next sync.
//!
//! The index is never the truth about what is stored: a failed write is logged, the request is
//! answered, and a later hit (or `agora index rebuild`) records the artifact.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::time::SystemTime;

use agora_gomod::module::ModulePath;
use agora_index::{ArtifactRecord, FlushReport, Index, IndexError, Origin, Quarantine};
use agora_storage::{ArtifactKind, ObjectInfo, StorageKey};
use bytes::Bytes;

use super::Proxy;
use crate::error::{CoreError, Subject};
use crate::source::{Source, SourceKind};

/// Where a fetched artifact came from, as the source that answered says.
#[derive(Clone, Debug)]
pub(super) struct Provenance {
    kind: SourceKind,
    describe: String,
}

impl Provenance {
    pub(super) fn of(source: &dyn Source) -> Self {
        Provenance {
            kind: source.kind(),
            describe: source.describe(),
        }
    }
}

/// Quarantined versions by module, then version: the reason.
#[derive(Default)]
pub(super) struct Quarantines {
    by_module: RwLock<HashMap<String, BTreeMap<String, String>>>,
}

impl Quarantines {
    fn replace(&self, all: Vec<Quarantine>) {
        let mut map: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for q in all {
            map.entry(q.module.into_string())
                .or_default()
                .insert(q.version, q.reason);
        }
        *self.by_module.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    fn set(&self, module: &ModulePath, version: &str, reason: Option<&str>) {
        let mut map = self.by_module.write().unwrap_or_else(|e| e.into_inner());
        match reason {
            Some(r) => {
                map.entry(module.as_str().to_owned())
                    .or_default()
                    .insert(version.to_owned(), r.to_owned());
            }
            None => {
                if let Some(versions) = map.get_mut(module.as_str()) {
                    versions.remove(version);
                    if versions.is_empty() {
                        map.remove(module.as_str());
                    }
                }
            }
        }
    }

    pub(super) fn reason(&self, module: &ModulePath, version: &str) -> Option<String> {
        let map = self.by_module.read().unwrap_or_else(|e| e.into_inner());
        map.get(module.as_str())?.get(version).cloned()
    }

    /// Whether any version of `module` is quarantined (no allocation: asked on every `@latest`).
    pub(super) fn any(&self, module: &ModulePath) -> bool {
        let map = self.by_module.read().unwrap_or_else(|e| e.into_inner());
        map.contains_key(module.as_str())
    }

    /// The quarantined versions of `module` (empty for nearly every module).
    pub(super) fn versions(&self, module: &ModulePath) -> Vec<String> {
        let map = self.by_module.read().unwrap_or_else(|e| e.into_inner());
        map.get(module.as_str())
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// `Origin` of a `.info` body written by the git source (`{"VCS","URL","Hash","Ref"}`).
fn git_origin(info: &[u8]) -> Option<Origin> {
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(rename = "Origin")]
        origin: Option<OriginJson>,
    }
    #[derive(serde::Deserialize)]
    struct OriginJson {
        #[serde(rename = "URL", default)]
        url: String,
        #[serde(rename = "Hash", default)]
        hash: String,
        #[serde(rename = "Ref", default)]
        reference: String,
    }
    let o = serde_json::from_slice::<Info>(info).ok()?.origin?;
    if o.url.is_empty() || o.hash.is_empty() {
        return None;
    }
    Some(Origin::Git {
        repository: o.url,
        commit: o.hash,
        reference: Some(o.reference).filter(|r| !r.is_empty()),
    })
}

impl Proxy {
    pub fn index(&self) -> Option<&Index> {
        self.inner.index.get()
    }

    /// Attaches the metadata index after the proxy was built; `false` if it already had one.
    /// Call [`sync_index`](Self::sync_index) before serving, then every few seconds.
    pub fn attach_index(&self, index: Index) -> bool {
        self.inner.index.set(index).is_ok()
    }

    /// Records an artifact this replica just stored, in the background. `info` is the version's
    /// `.info` when the caller has it (a git origin is read from it).
    pub(super) fn record_stored(
        &self,
        key: &StorageKey,
        size: u64,
        h1: Option<String>,
        from: &Provenance,
        info: Option<Bytes>,
    ) {
        let Some(index) = self.inner.index.get().cloned() else {
            return;
        };
        let StorageKey::Artifact {
            module, version, ..
        } = key
        else {
            return;
        };
        let (key, from, module, version) =
            (key.clone(), from.clone(), module.clone(), version.clone());
        let storage = self.inner.storage.clone();
        tokio::spawn(async move {
            let origin = match from.kind {
                SourceKind::Upstream => Origin::Upstream { url: from.describe },
                SourceKind::Git => {
                    let info = match info {
                        Some(b) => Some(b),
                        None => storage
                            .get_bytes(&StorageKey::artifact(&module, &version, ArtifactKind::Info))
                            .await
                            .ok()
                            .flatten()
                            .map(|(b, _)| b),
                    };
                    info.as_deref()
                        .and_then(git_origin)
                        .unwrap_or(Origin::Unknown)
                }
            };
            let Some(mut record) = ArtifactRecord::for_key(&key, size, SystemTime::now(), origin)
            else {
                return;
            };
            record.h1 = h1;
            if let Err(err) = index.record_stored(&record).await {
                tracing::warn!(error = %err, key = %key.path(), "the index did not record a stored artifact; a later hit or `agora index rebuild` will");
            }
        });
    }

    /// Counts a hit (in memory; see the module docs).
    pub(super) fn record_served(&self, key: &StorageKey, info: &ObjectInfo) {
        if let Some(index) = self.inner.index.get() {
            index.record_served(key, info);
        }
    }

    /// Writes the hits counted since the last call and reloads the quarantined versions. The
    /// server calls it every few seconds and once more at shutdown.
    pub async fn sync_index(&self) -> Result<FlushReport, IndexError> {
        let Some(index) = self.inner.index.get() else {
            return Ok(FlushReport::default());
        };
        let flushed = index.flush_served().await;
        let quarantines = index.quarantines().await?;
        self.inner.quarantines.replace(quarantines);
        flushed
    }

    /// Sets the `stored_*` metrics from the index's totals (a query over every artifact: call it
    /// every minute or so, not on every sync).
    pub async fn refresh_store_metrics(&self) -> Result<(), IndexError> {
        let Some(index) = self.inner.index.get() else {
            return Ok(());
        };
        let stats = index.stats().await?;
        for (kind, totals) in &stats.by_kind {
            self.inner
                .gate
                .metrics
                .set_stored(kind.extension(), totals.artifacts, totals.bytes);
        }
        Ok(())
    }

    /// Refuses a quarantined version.
    pub(super) fn check_quarantine(
        &self,
        module: &ModulePath,
        version: &str,
    ) -> Result<(), CoreError> {
        match self.inner.quarantines.reason(module, version) {
            None => Ok(()),
            Some(reason) => Err(CoreError::Quarantined {
                subject: Subject::version(module, version),
                reason,
            }),
        }
    }

    /// A `/@v/list` body without the quarantined versions.
    pub(super) fn drop_quarantined(&self, module: &ModulePath, body: Bytes) -> Bytes {
        let hidden = self.inner.quarantines.versions(module);
        if hidden.is_empty() {
            return body;
        }
        crate::filter::retain_versions(&body, |v| !hidden.iter().any(|h| h == v))
    }

    /// Quarantines `module@version` (stored or not) with `reason`, as `actor`: answered 410 Gone
    /// from now on by this replica, by the others at their next sync. Its artifacts stay in
    /// storage, out of reach, until the quarantine is lifted or they are removed.
    pub async fn quarantine(
        &self,
        module: &ModulePath,
        version: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Quarantine, CoreError> {
        let index = self.require_index()?;
        let q = index
            .quarantine(module, version, reason, actor)
            .await
            .map_err(|e| index_error(module, version, e))?;
        self.inner.quarantines.set(module, version, Some(reason));
        Ok(q)
    }

    /// Lifts the quarantine of `module@version`; `None` when there was none.
    pub async fn lift(
        &self,
        module: &ModulePath,
        version: &str,
    ) -> Result<Option<Quarantine>, CoreError> {
        let index = self.require_index()?;
        let lifted = index
            .lift(module, version)
            .await
            .map_err(|e| index_error(module, version, e))?;
        self.inner.quarantines.set(module, version, None);
        Ok(lifted)
    }

    /// Deletes `module@version`'s artifacts (or every version's, with `None`) from storage and the
    /// index, with the module's cached list and `@latest`; returns the storage keys deleted.
    /// For a secret leaked in a private module: the next request fetches whatever the source
    /// has then. Quarantines stay.
    pub async fn remove(
        &self,
        module: &ModulePath,
        version: Option<&str>,
    ) -> Result<Vec<StorageKey>, CoreError> {
        let index = self.require_index()?;
        let versions: Vec<String> = match version {
            Some(v) => vec![v.to_owned()],
            None => index
                .versions(module)
                .await
                .map_err(|e| index_error(module, "", e))?
                .into_iter()
                .map(|r| r.version)
                .collect(),
        };
        let mut keys: Vec<StorageKey> = versions
            .iter()
            .flat_map(|v| {
                [ArtifactKind::Info, ArtifactKind::Mod, ArtifactKind::Zip]
                    .map(|k| StorageKey::artifact(module, v, k))
            })
            .collect();
        keys.push(StorageKey::List(module.clone()));
        keys.push(StorageKey::Latest(module.clone()));
        let mut deleted = Vec::new();
        for key in keys {
            if self.inner.storage.delete(&key).await? {
                deleted.push(key);
            }
        }
        index
            .remove(module, version)
            .await
            .map_err(|e| index_error(module, version.unwrap_or(""), e))?;
        Ok(deleted)
    }

    pub(super) fn require_index(&self) -> Result<&Index, CoreError> {
        self.inner
            .index
            .get()
            .ok_or_else(|| CoreError::Internal("no metadata index is configured".into()))
    }
}

fn index_error(module: &ModulePath, version: &str, err: IndexError) -> CoreError {
    let subject = if version.is_empty() {
        module.to_string()
    } else {
        format!("{module}@{version}")
    };
    CoreError::Internal(format!("{subject}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_origin_from_info() {
        let o = git_origin(
            br#"{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z","Origin":{"VCS":"git","URL":"https://git.corp.example/a/b","Hash":"0123abcd","Ref":"refs/tags/v1.0.0"}}"#,
        );
        assert_eq!(
            o,
            Some(Origin::Git {
                repository: "https://git.corp.example/a/b".into(),
                commit: "0123abcd".into(),
                reference: Some("refs/tags/v1.0.0".into()),
            })
        );
        assert_eq!(git_origin(br#"{"Version":"v1.0.0"}"#), None);
        assert_eq!(git_origin(b"not json"), None);
    }

    #[test]
    fn quarantine_snapshot() {
        let q = Quarantines::default();
        let m = ModulePath::new("example.com/m").unwrap();
        assert_eq!(q.reason(&m, "v1.0.0"), None);
        q.set(&m, "v1.0.0", Some("leaked key"));
        assert_eq!(q.reason(&m, "v1.0.0").as_deref(), Some("leaked key"));
        assert_eq!(q.versions(&m), vec!["v1.0.0".to_owned()]);
        q.set(&m, "v1.0.0", None);
        assert!(q.versions(&m).is_empty());
    }
}
