//! The fetch pipeline: every miss (artifacts, lists, `@latest`) goes through [`Proxy::fetch`],
//! checksum-database tiles through [`Proxy::fetch_tile`]; both take their turn among replicas
//! (see [`super::replicas`]), and artifacts ask the module's sources with [`Proxy::ask`].

use std::sync::Arc;
use std::time::SystemTime;

use agora_gomod::module::ModulePath;
use agora_storage::{ArtifactKind, ObjectInfo, PutOutcome, StorageKey};
use agora_sumdb::SumdbError;
use agora_upstream::walk;
use bytes::Bytes;

use super::gate::timed;
use super::record::Provenance;
use super::replicas::Turn;
use super::{is_version, kind_label, FetchMode, Freshness, Hop, Proxy, Served};
use crate::approve::{Candidate, Rejection};
use crate::error::{CoreError, Subject};
use crate::policy::Route;
use crate::source::{Source, SourceError, SourceKind};
use crate::sumdb::verify_public;
use crate::validate;

pub(super) type Outcome = Result<Bytes, CoreError>;

impl Proxy {
    /// Checks `hash` of `module@version`'s zip (`file` `""`) or go.mod (`"/go.mod"`) against the
    /// checksum database (see [`verify_public`]), counting the outcome.
    #[tracing::instrument(level = "debug", name = "checksum.verify", skip_all,
        fields(module.path = %module, module.version = version, file))]
    pub(super) async fn verify_sum(
        &self,
        module: &ModulePath,
        version: &str,
        file: &'static str,
        hash: &str,
    ) -> Result<(), CoreError> {
        let checksums = self.inner.checksums.as_deref();
        let result =
            verify_public(&self.inner.policy, checksums, module, version, file, hash).await;
        let outcome = match &result {
            Ok(false) => return Ok(()),
            Ok(true) => "ok",
            Err(CoreError::Checksum(e)) => match **e {
                SumdbError::NotFound { .. } => "not_found",
                SumdbError::Mismatch(_) => "mismatch",
                SumdbError::Security { .. } => "security",
                SumdbError::Unavailable { .. } => "unavailable",
            },
            Err(_) => "unavailable",
        };
        self.inner.gate.metrics.record_verification(outcome);
        result.map(drop)
    }

    /// Asks the sources of `module` with `attempt`: a private module's own source, once; a
    /// public module's GOPROXY chain, by the go command's rules for walking it.
    pub(super) async fn ask<'a, T, F, Fut>(
        &'a self,
        module: &ModulePath,
        mut attempt: F,
    ) -> Result<T, SourceError>
    where
        F: FnMut(&'a Arc<dyn Source>) -> Fut,
        Fut: std::future::Future<Output = Result<T, SourceError>>,
    {
        match self.inner.policy.route(module) {
            Route::Direct => attempt(&self.inner.direct).await,
            Route::Upstream => {
                walk(&self.inner.chain, |hop: &'a Hop| {
                    // The walk ends at an `off` entry without asking it.
                    attempt(
                        hop.source
                            .as_ref()
                            .expect("only `off` entries have no source"),
                    )
                })
                .await
            }
        }
    }

    /// Asks the approver (if any) about an artifact that is about to be cached.
    pub(super) async fn approve(
        &self,
        module: &ModulePath,
        candidate: Candidate,
    ) -> Result<(), CoreError> {
        let Some(approver) = &self.inner.approver else {
            return Ok(());
        };
        approver.approve(&candidate).await.map_err(|r| {
            let subject = Subject::version(module, &candidate.version);
            match r {
                Rejection::Denied(reason) => CoreError::Blocked { subject, reason },
                Rejection::Unavailable(message) => CoreError::Unavailable { subject, message },
            }
        })
    }

    /// Cached-with-freshness answers (list, latest): see [`ProxyOptions`].
    pub(super) async fn mutable(
        &self,
        key: StorageKey,
        mode: FetchMode,
    ) -> Result<Served, CoreError> {
        let kind = kind_label(&key);
        let cached = self
            .inner
            .storage
            .get_bytes(&key)
            .await
            .map_err(CoreError::from)?;
        let Some((body, info)) = cached else {
            self.inner.gate.metrics.record_cache(kind, "miss");
            self.on_miss(mode, &key)?;
            // Fetches are boxed (here and in `info`, `go_mod`, `zip`): their state machines are
            // large, and would otherwise make every request's future, cache hits included, that
            // much bigger to allocate and move.
            let body = Box::pin(self.fetch(key, None)).await?;
            return Ok(Served::fetched(body));
        };
        let age = SystemTime::now()
            .duration_since(info.last_modified)
            .unwrap_or_default();
        let stale = Served {
            body: body.clone(),
            freshness: Freshness::Stale,
            last_modified: Some(info.last_modified),
        };
        if mode == FetchMode::CacheOnly || age < self.inner.opts.list_fresh {
            self.inner.gate.metrics.record_cache(kind, "hit");
            return Ok(Served {
                freshness: Freshness::Hit,
                ..stale
            });
        }
        self.inner.gate.metrics.record_cache(kind, "stale");
        if age < self.inner.opts.list_fresh + self.inner.opts.list_stale {
            // Stale-while-revalidate: the refresh runs as its own task.
            let this = self.clone();
            let seen = info.clone();
            tokio::spawn(async move {
                if let Err(err) = this.fetch(key, Some(seen)).await {
                    tracing::warn!(error = %err, "background refresh failed; keeping cached answer");
                }
            });
            return Ok(stale);
        }
        match Box::pin(self.fetch(key, Some(info))).await {
            Ok(body) => Ok(Served::fetched(body)),
            Err(err) if err.is_not_found() => Err(err),
            Err(err) => {
                tracing::warn!(error = %err, "every source failed; serving stale cached answer");
                Ok(stale)
            }
        }
    }

    /// The one fetch on a miss, whatever the key: single-flight in this process, a turn among
    /// the replicas (see [`super::replicas`]), then the key's own steps: the module's sources
    /// and the kind's validation; for artifacts the checksum database, the approver and a
    /// write-once store; for lists and `@latest` an overwrite. For those, `seen` is the stored
    /// copy the caller looked at (`None`: there was none): when another replica replaces it
    /// meanwhile, its answer is served instead of fetching again. The answer is the stored bytes
    /// (for a zip, nothing: the caller streams the stored copy).
    #[tracing::instrument(level = "debug", name = "fetch", skip_all, fields(storage.key = %key.path()))]
    pub(super) async fn fetch(&self, key: StorageKey, seen: Option<ObjectInfo>) -> Outcome {
        let flight_key = flight_key(&key);
        if let Some(err) = self.inner.absent.get(&flight_key) {
            self.inner
                .gate
                .metrics
                .record_cache(kind_label(&key), "absent");
            return Err(err);
        }
        let this = self.clone();
        let fk = flight_key.clone();
        let work = async move {
            let stored = || this.stored_answer(&key, seen.as_ref());
            let _guard = match this.take_turn(&fk, stored).await? {
                Turn::Stored(body) => return Ok(body),
                Turn::Fetch(guard) => guard,
            };
            match &key {
                StorageKey::List(m) | StorageKey::Latest(m) => this.refresh_now(&key, m).await,
                StorageKey::Artifact {
                    module,
                    version,
                    kind,
                } => match kind {
                    ArtifactKind::Info => this.fetch_info_now(module, version).await,
                    ArtifactKind::Mod => this.fetch_go_mod_now(module, version).await,
                    ArtifactKind::Zip => this.fetch_zip_now(module, version).await,
                },
                StorageKey::SumdbTile { .. }
                | StorageKey::SumdbLatest { .. }
                | StorageKey::OwnSumdb { .. } => Err(CoreError::Internal(
                    "checksum-database keys are not fetched by the module pipeline".into(),
                )),
            }
        };
        let outcome = self.fly(flight_key.clone(), work).await;
        self.inner.absent.note(&flight_key, &outcome);
        outcome
    }

    /// What another replica may have stored for `key` while this one waited for its turn.
    async fn stored_answer(
        &self,
        key: &StorageKey,
        seen: Option<&ObjectInfo>,
    ) -> Result<Option<Bytes>, CoreError> {
        let storage = &self.inner.storage;
        Ok(match key {
            StorageKey::List(_) | StorageKey::Latest(_) => {
                // Not this process's second-long copy: it may predate the other replica's
                // write. Compared with the stored copy's own metadata, not with this machine's
                // clock: the store's timestamps may be coarse or come from another clock.
                let found = storage.get_bytes_fresh(key).await?;
                found.and_then(|(body, info)| {
                    let same = seen.is_some_and(|s| {
                        s.last_modified == info.last_modified
                            && s.e_tag == info.e_tag
                            && s.size == info.size
                    });
                    (!same).then_some(body)
                })
            }
            // Only a version knows its storage key before the fetch; for other `.info` queries
            // a waiter can only wait for the lock to be free (see the replicas' docs).
            StorageKey::Artifact {
                module,
                version,
                kind: ArtifactKind::Info,
            } if !is_version(module, version) => None,
            StorageKey::Artifact {
                kind: ArtifactKind::Zip,
                ..
            } => storage.head(key).await?.map(|_| Bytes::new()),
            StorageKey::Artifact { .. }
            | StorageKey::SumdbTile { .. }
            | StorageKey::SumdbLatest { .. }
            | StorageKey::OwnSumdb { .. } => storage.get_bytes(key).await?.map(|(b, _)| b),
        })
    }

    /// A list or `@latest` from the sources, validated, replacing the cached copy.
    async fn refresh_now(&self, key: &StorageKey, module: &ModulePath) -> Outcome {
        let subject = Subject::of_key(key);
        let is_list = matches!(key, StorageKey::List(_));
        let gate = &self.inner.gate;
        let body = self
            .ask(module, |source| async move {
                let name = source_name(source.as_ref(), module);
                let body = if is_list {
                    timed(gate, source.kind(), &name, "list", source.list(module)).await?
                } else {
                    timed(gate, source.kind(), &name, "latest", source.latest(module)).await?
                };
                let checked = if is_list {
                    validate::list(&body)
                } else {
                    validate::info(module, None, &body).map(|_| body)
                };
                checked.map_err(|reason| SourceError::Invalid {
                    source_name: source.describe(),
                    reason,
                })
            })
            .await
            .map_err(|e| CoreError::from_source(&subject, e))?;
        self.inner.storage.put_overwrite(key, body.clone()).await?;
        Ok(body)
    }

    /// `.info` from the sources. A query (branch, commit) is checked against the filter once it
    /// names a version, and gets its own answer (its origin names the branch), not the version's
    /// stored one.
    pub(super) async fn fetch_info_now(&self, m: &ModulePath, q: &str) -> Outcome {
        let subject = Subject::version(m, q);
        let gate = &self.inner.gate;
        let (body, version, to_store, from) = self
            .ask(m, |source| async move {
                let name = source_name(source.as_ref(), m);
                let body = timed(gate, source.kind(), &name, "info", source.info(m, q)).await?;
                let version =
                    validate::info(m, Some(q), &body).map_err(|reason| SourceError::Invalid {
                        source_name: source.describe(),
                        reason,
                    })?;
                let to_store = if version == q {
                    body.clone()
                } else {
                    source.info_for_version(body.clone(), &version)
                };
                Ok((body, version, to_store, Provenance::of(source.as_ref())))
            })
            .await
            .map_err(|e| CoreError::from_source(&subject, e))?;
        self.check_allowed(m, &version)?;
        let key = StorageKey::artifact(m, &version, ArtifactKind::Info);
        if self.inner.approver.is_some() && self.inner.storage.head(&key).await?.is_none() {
            self.approve(m, Candidate::info(m, &version)).await?;
        }
        let info = Some(to_store.clone());
        let stored = self.store_once(&key, to_store, None, &from, info).await?;
        Ok(if version == q { stored } else { body })
    }

    /// `.mod` from the sources, verified against the checksum database for public modules.
    pub(super) async fn fetch_go_mod_now(&self, m: &ModulePath, v: &str) -> Outcome {
        let subject = Subject::version(m, v);
        let gate = &self.inner.gate;
        let (body, from) = self
            .ask(m, |source| async move {
                let name = source_name(source.as_ref(), m);
                let body = timed(gate, source.kind(), &name, "mod", source.go_mod(m, v)).await?;
                validate::go_mod(m, &body).map_err(|reason| SourceError::Invalid {
                    source_name: source.describe(),
                    reason,
                })?;
                Ok((body, Provenance::of(source.as_ref())))
            })
            .await
            .map_err(|e| CoreError::from_source(&subject, e))?;
        let h1 = agora_gomod::dirhash::hash_go_mod(&body);
        self.verify_sum(m, v, "/go.mod", &h1).await?;
        if let Some(db) = &self.inner.own_db {
            db.check(m, v, "/go.mod", &h1).await?;
        }
        self.approve(m, Candidate::go_mod(m, v, &body)).await?;
        let key = StorageKey::artifact(m, v, ArtifactKind::Mod);
        self.store_once(&key, body, Some(h1), &from, None).await
    }

    /// `.zip` from the sources into a scratch file, checked (structure, sizes, every entry's
    /// CRC) and hashed unless the source built it itself under the zip rules and says its hash,
    /// verified against the checksum database for public modules, then published.
    pub(super) async fn fetch_zip_now(&self, m: &ModulePath, v: &str) -> Outcome {
        let subject = Subject::version(m, v);
        let scratch = self.inner.storage.scratch_file(&subject.to_string());
        let gate = &self.inner.gate;
        let dest = scratch.path();
        let (hash, size, from) = self
            .ask(m, |source| async move {
                let name = source_name(source.as_ref(), m);
                let zip = source.zip(m, v, dest);
                let written = timed(gate, source.kind(), &name, "zip", zip).await?;
                let from = Provenance::of(source.as_ref());
                if let Some(h1) = written.h1 {
                    return Ok((h1, written.size, from));
                }
                let (mc, vc, dc) = (m.clone(), v.to_owned(), dest.to_owned());
                let checked = tokio::task::spawn_blocking(move || validate::zip(&mc, &vc, &dc))
                    .await
                    .unwrap_or_else(|e| {
                        Err(validate::Invalid::Zip(format!("zip check crashed: {e}")))
                    });
                let hash = checked.map_err(|reason| SourceError::Invalid {
                    source_name: source.describe(),
                    reason,
                })?;
                Ok((hash, written.size, from))
            })
            .await
            .map_err(|e| CoreError::from_source(&subject, e))?;
        self.verify_sum(m, v, "", &hash).await?;
        if let Some(db) = &self.inner.own_db {
            db.check(m, v, "", &hash).await?;
        }
        self.approve(m, Candidate::zip(m, v, hash.clone(), Some(size)))
            .await?;
        let key = StorageKey::artifact(m, v, ArtifactKind::Zip);
        match self.inner.storage.put_file_once(&key, &scratch).await? {
            PutOutcome::Created => self.record_stored(&key, size, Some(hash), &from, None),
            PutOutcome::AlreadyExists => {
                tracing::debug!(module.path = %m, module.version = %v, "zip stored concurrently by another writer");
            }
        }
        Ok(Bytes::new())
    }

    /// Stores a write-once artifact and records it in the index (with its `h1:`, where `from`
    /// says it came from, and the version's `.info` when the caller has it); when another writer
    /// won the race, answers with its bytes so that every client sees the same content.
    pub(super) async fn store_once(
        &self,
        key: &StorageKey,
        body: Bytes,
        h1: Option<String>,
        from: &Provenance,
        info: Option<Bytes>,
    ) -> Outcome {
        match self
            .inner
            .storage
            .put_once(key, body.clone())
            .await
            .map_err(CoreError::from)?
        {
            PutOutcome::Created => {
                self.record_stored(key, body.len() as u64, h1, from, info);
                Ok(body)
            }
            PutOutcome::AlreadyExists => Ok(self
                .inner
                .storage
                .get_bytes(key)
                .await
                .map_err(CoreError::from)?
                .map(|(b, _)| b)
                .unwrap_or(body)),
        }
    }

    /// Downloads a checksum-database tile on a miss, through the same single-flight, replica
    /// turn, upstream gate and fetch metrics as module artifacts (`fetch` asks the database).
    /// Whether the tile is kept is the caller's decision (it must be authenticated first); a
    /// replica that kept it while this one waited answers from storage.
    pub(crate) async fn fetch_tile<F>(&self, key: StorageKey, fetch: F) -> Outcome
    where
        F: std::future::Future<Output = Result<Bytes, SourceError>> + Send + 'static,
    {
        let flight_key = flight_key(&key);
        let this = self.clone();
        let fk = flight_key.clone();
        let work = async move {
            let stored = || this.stored_answer(&key, None);
            let _guard = match this.take_turn(&fk, stored).await? {
                Turn::Stored(body) => return Ok(body),
                Turn::Fetch(guard) => guard,
            };
            let name = match &key {
                StorageKey::SumdbTile { name, .. } | StorageKey::SumdbLatest { name } => {
                    name.as_str()
                }
                _ => "checksum database",
            };
            timed(&this.inner.gate, SourceKind::Upstream, name, "tile", fetch)
                .await
                .map_err(|e| CoreError::from_source(&Subject::of_key(&key), e))
        };
        self.fly(flight_key, work).await
    }
}

/// A source's name in the health record: an upstream by its (redacted) URL, git by the host of
/// the module path (one record per GitLab, not per repository).
fn source_name(source: &dyn Source, module: &ModulePath) -> String {
    match source.kind() {
        SourceKind::Upstream => source.describe(),
        SourceKind::Git => module
            .as_str()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The single-flight key of a fetch of `key`, also the name of its lock among replicas.
fn flight_key(key: &StorageKey) -> String {
    match key {
        StorageKey::List(_) | StorageKey::Latest(_) => key.path(),
        StorageKey::Artifact {
            module,
            version,
            kind,
        } => format!("{}:{}@{}", kind.extension(), module.escaped(), version),
        StorageKey::SumdbTile { .. }
        | StorageKey::SumdbLatest { .. }
        | StorageKey::OwnSumdb { .. } => format!("tile:{}", key.path()),
    }
}
