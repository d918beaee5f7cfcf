//! [`Proxy`]: the GOPROXY protocol's answers, from cache or from a source.
//!
//! # Replicas
//! Several agora processes may share one store. Each fetch runs once per process
//! ([`SingleFlight`]); with a [`FetchLock`] ([`ProxyBuilder::lock`]) it also runs once across
//! processes. Inside the single-flight leader's work, `take_turn`:
//! 1. takes the lock for the flight key, and re-reads storage first (the previous holder may have
//!    just stored the answer), fetching only if it is still missing;
//! 2. when another replica holds the lock, polls storage every `poll` until the answer appears
//!    (write-once artifacts: the object exists; list/`@latest`: the stored copy differs from the
//!    one this request saw), or until the lock is free again (the holder failed or died: take it
//!    and fetch here);
//! 3. after waiting `queue_timeout`, fetches here without the lock, with a warning: a stuck holder
//!    or a misbehaving Redis costs a duplicate fetch, never a failed request (the other choice, 503,
//!    would turn a Redis problem into client errors);
//! 4. when the lock service fails, warns (at most every 30 s) and fetches here: per-replica
//!    single-flight, as without Redis.
//!
//! `.info` for a query that is not a canonical version (a branch, a commit prefix) cannot know the
//! key its answer will be stored under, so a waiter only waits for the lock to be free and then
//! fetches itself (the replicas resolve such a query one after another, not all at once).
//! Failed fetches are not shared either: after a holder's "not found" each waiting replica asks
//! once itself.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agora_gomod::module::{check_path_major, ModulePath};
use agora_storage::{ArtifactKind, Object, ObjectInfo, PutOutcome, Storage, StorageKey};
use agora_upstream::{walk, ChainEntry, Target, UpstreamClient};
use bytes::Bytes;

use crate::approve::{Approver, Candidate, Rejection};
use crate::error::CoreError;
use crate::lock::{FetchLock, LockGuard, WarnEvery};
use crate::metrics::Metrics;
use crate::policy::{DownloadMode, Policy, Route};
use crate::singleflight::SingleFlight;
use crate::source::{ProxySource, Source, SourceError, SourceKind};
use crate::sumdb::{verify_public, Checksums};
use crate::validate;
use agora_sumdb::SumdbError;

/// Tuning of the proxy's caching.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// A cached list or `@latest` younger than this is served without asking upstream.
    pub list_fresh: Duration,
    /// Past `list_fresh` and within this further window, the stale answer is served at once and
    /// refreshed in the background. Older answers are refreshed first and served stale only when
    /// every source fails.
    pub list_stale: Duration,
    /// Most fetches from upstream proxies running at once; more wait in a queue.
    pub max_upstream_fetches: usize,
    /// Most fetches from git running at once (each may run several git processes).
    pub max_git_fetches: usize,
    /// Longest wait in either queue before the request fails with 503.
    pub queue_timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            list_fresh: Duration::from_secs(60),
            list_stale: Duration::from_secs(3600),
            max_upstream_fetches: 32,
            max_git_fetches: 8,
            queue_timeout: Duration::from_secs(60),
        }
    }
}

/// How a request may fill a cache miss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchMode {
    /// As the module's download mode says (sync, async, redirect, none).
    Fetch,
    /// `Disable-Module-Fetch: true`: cache-only answers.
    CacheOnly,
    /// Fetch now whatever the download mode (the background half of `async`, and `doctor`).
    Background,
}

/// How an answer was obtained (reported to clients as `X-Agora-Cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// From cache, within its freshness window (or immutable).
    Hit,
    /// Fetched from a source just now.
    Miss,
    /// From cache, past its freshness window (being refreshed, or every source failed).
    Stale,
}

impl Freshness {
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Hit => "hit",
            Freshness::Miss => "miss",
            Freshness::Stale => "stale",
        }
    }
}

/// A small answer with its provenance.
#[derive(Clone, Debug)]
pub struct Served {
    pub body: Bytes,
    pub freshness: Freshness,
    pub last_modified: Option<SystemTime>,
}

impl Served {
    /// An answer fetched just now.
    fn fetched(body: Bytes) -> Self {
        Served {
            body,
            freshness: Freshness::Miss,
            last_modified: Some(SystemTime::now()),
        }
    }
}

type Outcome = Result<Bytes, CoreError>;

/// One hop of a chain: the GOPROXY entry and the source that answers for it.
struct Hop {
    entry: ChainEntry,
    source: Option<Arc<dyn Source>>,
}

impl AsRef<ChainEntry> for Hop {
    fn as_ref(&self) -> &ChainEntry {
        &self.entry
    }
}

/// The proxy. Cheap to clone; all clones share caches and in-flight fetches.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Storage,
    policy: Policy,
    /// Public modules: the configured GOPROXY chain.
    chain: Vec<Hop>,
    /// Private modules: version control only.
    direct: Arc<dyn Source>,
    opts: ProxyOptions,
    flights: SingleFlight<String, Outcome>,
    gate: Gate,
    /// Asked before a newly fetched artifact is cached.
    approver: Option<Arc<dyn Approver>>,
    /// Shared with the other replicas: one fetch per key across all of them.
    lock: Option<Arc<dyn FetchLock>>,
    /// The checksum database public modules are verified against before they are cached.
    checksums: Option<Arc<Checksums>>,
    /// Rate limit of the "lock service unavailable" warning.
    lock_warning: WarnEvery,
}

/// What the cross-replica lock decided for one fetch.
enum Turn<T> {
    /// Another replica stored the answer: serve it, do not fetch.
    Stored(T),
    /// Fetch here. The guard, when there is one, tells the other replicas to wait; it must live
    /// until the answer is stored.
    Fetch(Option<LockGuard>),
}

/// Concurrency limits and metrics around every fetch from a source.
struct Gate {
    metrics: Arc<Metrics>,
    upstream: tokio::sync::Semaphore,
    git: tokio::sync::Semaphore,
    queue_timeout: Duration,
}

/// A [`Proxy`] being built (see [`Proxy::builder`]).
pub struct ProxyBuilder {
    storage: Storage,
    policy: Policy,
    chain: Vec<ChainEntry>,
    client: UpstreamClient,
    direct: Arc<dyn Source>,
    opts: ProxyOptions,
    approver: Option<Arc<dyn Approver>>,
    lock: Option<Arc<dyn FetchLock>>,
    checksums: Option<Arc<Checksums>>,
}

impl ProxyBuilder {
    /// An [`Approver`] consulted before each newly fetched artifact is cached.
    pub fn approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = Some(approver);
        self
    }

    /// A lock shared with the other replicas over the same store, so that each artifact is
    /// fetched once across all of them (see the module docs).
    pub fn lock(mut self, lock: Arc<dyn FetchLock>) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Verifies every public module's go.mod and zip against a checksum database before they
    /// are cached.
    pub fn checksums(mut self, checksums: Arc<Checksums>) -> Self {
        self.checksums = Some(checksums);
        self
    }

    pub fn build(self) -> Proxy {
        let ProxyBuilder {
            storage,
            policy,
            chain,
            client,
            direct,
            opts,
            approver,
            lock,
            checksums,
        } = self;
        let hop = |entry: &ChainEntry| Hop {
            entry: entry.clone(),
            source: match &entry.target {
                Target::Proxy(base) => {
                    Some(Arc::new(ProxySource::new(base.clone(), client.clone())) as Arc<dyn Source>)
                }
                Target::Direct => Some(direct.clone()),
                Target::Off => None,
            },
        };
        Proxy {
            inner: Arc::new(Inner {
                storage,
                policy,
                chain: chain.iter().map(hop).collect(),
                direct,
                gate: Gate {
                    metrics: Arc::new(Metrics::new()),
                    upstream: tokio::sync::Semaphore::new(opts.max_upstream_fetches.max(1)),
                    git: tokio::sync::Semaphore::new(opts.max_git_fetches.max(1)),
                    queue_timeout: opts.queue_timeout,
                },
                opts,
                flights: SingleFlight::default(),
                approver,
                lock,
                checksums,
                lock_warning: WarnEvery::new(Duration::from_secs(30)),
            }),
        }
    }
}

impl Proxy {
    /// Builds a proxy over `storage` with the upstream `chain`, using `client` for every proxy hop
    /// and `direct` for `direct` hops and private modules; no approver, lock or checksum database.
    pub fn new(
        storage: Storage,
        policy: Policy,
        chain: &[ChainEntry],
        client: UpstreamClient,
        direct: Arc<dyn Source>,
        opts: ProxyOptions,
    ) -> Self {
        Proxy::builder(storage, policy, chain, client, direct, opts).build()
    }

    /// Starts building a proxy like [`Proxy::new`]'s, with the optional parts on the
    /// [`ProxyBuilder`].
    pub fn builder(
        storage: Storage,
        policy: Policy,
        chain: &[ChainEntry],
        client: UpstreamClient,
        direct: Arc<dyn Source>,
        opts: ProxyOptions,
    ) -> ProxyBuilder {
        ProxyBuilder {
            storage,
            policy,
            chain: chain.to_vec(),
            client,
            direct,
            opts,
            approver: None,
            lock: None,
            checksums: None,
        }
    }

    /// Checks `hash` of `module@version`'s zip (`file` `""`) or go.mod (`"/go.mod"`) against the
    /// checksum database (see [`verify_public`]), counting the outcome.
    async fn verify_sum(
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

    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.gate.metrics
    }

    /// Keys currently being fetched (for metrics and tests).
    pub fn fetches_in_flight(&self) -> usize {
        self.inner.flights.len()
    }

    /// The repository `module` is read from, as `host/path` (lowercase, no `.git`), for access
    /// rules that must protect a repository whatever module path reaches it: `.git` suffixes,
    /// case variants, vanity paths and `[[git.rules]]` aliases all name their repository here.
    /// Private modules are resolved as a fetch would resolve them (a `go-import` lookup is
    /// remembered); for public ones only what needs no request is said, since their bytes come
    /// from an upstream proxy. `None` when nothing names a repository.
    pub async fn repository(&self, module: &ModulePath) -> Result<Option<String>, CoreError> {
        let network = self.inner.policy.route(module) == Route::Direct;
        self.inner
            .direct
            .repository(module, network)
            .await
            .map_err(|e| CoreError::from_source(module.as_str(), e))
    }

    /// Asks the sources of `module` with `attempt`: a private module's own source, once; a
    /// public module's GOPROXY chain, by the go command's rules for walking it.
    async fn ask<'a, T, F, Fut>(
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

    /// `/@v/list`.
    pub async fn list(&self, module: &ModulePath, mode: FetchMode) -> Result<Served, CoreError> {
        self.check_module(module)?;
        let mut served = self
            .mutable(StorageKey::List(module.clone()), module, mode)
            .await?;
        served.body = self
            .inner
            .policy
            .filter()
            .filter_list(module.as_str(), &served.body);
        Ok(served)
    }

    /// `/@latest`.
    pub async fn latest(&self, module: &ModulePath, mode: FetchMode) -> Result<Served, CoreError> {
        self.check_module(module)?;
        let served = self
            .mutable(StorageKey::Latest(module.clone()), module, mode)
            .await?;
        if !self.inner.policy.filter().is_open() {
            let version = validate::info(module, None, &served.body)
                .map_err(|e| CoreError::Internal(format!("cached @latest: {e}")))?;
            self.check_allowed(module, &version)?;
        }
        Ok(served)
    }

    /// Filter rules: may `module` be asked about at all?
    fn check_module(&self, module: &ModulePath) -> Result<(), CoreError> {
        self.inner
            .policy
            .filter()
            .check_module(module.as_str())
            .map_err(|b| CoreError::Blocked(b.0))
    }

    /// Filter rules: may `module@version` be fetched and served?
    fn check_allowed(&self, module: &ModulePath, version: &str) -> Result<(), CoreError> {
        self.inner
            .policy
            .filter()
            .check_version(module.as_str(), version)
            .map_err(|b| CoreError::Blocked(b.0))
    }

    /// Asks the approver (if any) about an artifact that is about to be cached.
    async fn approve(&self, candidate: Candidate) -> Result<(), CoreError> {
        let Some(approver) = &self.inner.approver else {
            return Ok(());
        };
        approver.approve(&candidate).await.map_err(|r| match r {
            Rejection::Denied(m) => CoreError::Blocked(m),
            Rejection::Unavailable(m) => CoreError::Unavailable(m),
        })
    }

    /// Cached-with-freshness answers (list, latest): see [`ProxyOptions`].
    async fn mutable(
        &self,
        key: StorageKey,
        module: &ModulePath,
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
            let body = Box::pin(self.refresh(key, module.clone(), None)).await?;
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
            let module = module.clone();
            let seen = info.clone();
            tokio::spawn(async move {
                if let Err(err) = this.refresh(key, module, Some(seen)).await {
                    tracing::warn!(error = %err, "background refresh failed; keeping cached answer");
                }
            });
            return Ok(stale);
        }
        match Box::pin(self.refresh(key, module.clone(), Some(info))).await {
            Ok(body) => Ok(Served::fetched(body)),
            Err(err) if matches!(err, CoreError::NotFound(_)) => Err(err),
            Err(err) => {
                tracing::warn!(error = %err, "every source failed; serving stale cached answer");
                Ok(stale)
            }
        }
    }

    /// Fetches a list or `@latest` answer, validates it and replaces the cached copy. `seen` is the
    /// stored copy the caller looked at (`None`: there was none): when another replica replaces it
    /// meanwhile, its answer is served instead of fetching again.
    async fn refresh(
        &self,
        key: StorageKey,
        module: ModulePath,
        seen: Option<ObjectInfo>,
    ) -> Outcome {
        let flight_key = key.path();
        let this = self.clone();
        let fk = flight_key.clone();
        let work = async move {
            // Compared with the stored copy's own metadata, not with this machine's clock: the
            // store's timestamps may be coarse (whole seconds) or come from another clock.
            let storage = &this.inner.storage;
            let newer = || async {
                // Not this process's second-long copy: it may predate the other replica's write.
                let found = storage
                    .get_bytes_fresh(&key)
                    .await
                    .map_err(CoreError::from)?;
                Ok(found.and_then(|(body, info)| {
                    let same = seen.as_ref().is_some_and(|s| {
                        s.last_modified == info.last_modified
                            && s.e_tag == info.e_tag
                            && s.size == info.size
                    });
                    (!same).then_some(body)
                }))
            };
            let _guard = match this.take_turn(&fk, newer).await? {
                Turn::Stored(body) => return Ok(body),
                Turn::Fetch(guard) => guard,
            };
            let what = describe_key(&key);
            let is_list = matches!(key, StorageKey::List(_));
            let gate = &this.inner.gate;
            let body = this
                .ask(&module, |source| {
                    let module = &module;
                    async move {
                        let body = if is_list {
                            timed(gate, source.as_ref(), "list", source.list(module)).await?
                        } else {
                            timed(gate, source.as_ref(), "latest", source.latest(module)).await?
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
                    }
                })
                .await
                .map_err(|e| CoreError::from_source(&what, e))?;
            this.inner
                .storage
                .put_overwrite(&key, body.clone())
                .await
                .map_err(CoreError::from)?;
            Ok(body)
        };
        self.fly(flight_key, work).await
    }

    /// `/@v/<query>.info`. Canonical versions are cached forever; other queries (branches, commit
    /// prefixes) are always resolved afresh and answered with their own `.info`, and the version
    /// they resolve to is cached as the source says ([`Source::info_for_version`]).
    pub async fn info(
        &self,
        module: &ModulePath,
        query: &str,
        mode: FetchMode,
    ) -> Result<Served, CoreError> {
        let key = StorageKey::artifact(module, query, ArtifactKind::Info);
        if is_version(module, query) {
            self.check_allowed(module, query)?;
            if let Some(hit) = self.cached(&key).await? {
                return Ok(hit);
            }
        }
        self.on_miss(mode, &key)?;
        let body = Box::pin(self.fetch_artifact(module, query, ArtifactKind::Info)).await?;
        Ok(Served::fetched(body))
    }

    /// `/@v/<version>.mod`.
    pub async fn go_mod(
        &self,
        module: &ModulePath,
        version: &str,
        mode: FetchMode,
    ) -> Result<Served, CoreError> {
        check_version(module, version)?;
        self.check_allowed(module, version)?;
        let key = StorageKey::artifact(module, version, ArtifactKind::Mod);
        if let Some(hit) = self.cached(&key).await? {
            return Ok(hit);
        }
        self.on_miss(mode, &key)?;
        let body = Box::pin(self.fetch_artifact(module, version, ArtifactKind::Mod)).await?;
        Ok(Served::fetched(body))
    }

    /// `/@v/<version>.zip`, streamed from storage. A miss downloads to a scratch file, checks the
    /// zip, publishes it atomically, then streams the stored copy.
    pub async fn zip(
        &self,
        module: &ModulePath,
        version: &str,
        mode: FetchMode,
    ) -> Result<(Object, Freshness), CoreError> {
        check_version(module, version)?;
        self.check_allowed(module, version)?;
        let key = StorageKey::artifact(module, version, ArtifactKind::Zip);
        if let Some(obj) = self.inner.storage.get(&key).await? {
            self.inner.gate.metrics.record_cache("zip", "hit");
            return Ok((obj, Freshness::Hit));
        }
        self.inner.gate.metrics.record_cache("zip", "miss");
        self.on_miss(mode, &key)?;
        Box::pin(self.fetch_artifact(module, version, ArtifactKind::Zip)).await?;
        let obj = self.inner.storage.get(&key).await?.ok_or_else(|| {
            CoreError::Internal(format!(
                "{module}@{version}: zip vanished right after it was stored"
            ))
        })?;
        Ok((obj, Freshness::Miss))
    }

    /// Bytes `range` (end exclusive, non-empty, within the zip) of a zip that [`zip`](Self::zip)
    /// found or stored, for an HTTP `Range` request: only the range is read from storage. Zips are
    /// write-once, so these are the bytes `zip` described; never fetches. `info` of the answer
    /// describes the whole zip.
    pub async fn zip_range(
        &self,
        module: &ModulePath,
        version: &str,
        range: Range<u64>,
    ) -> Result<Object, CoreError> {
        check_version(module, version)?;
        self.check_allowed(module, version)?;
        let key = StorageKey::artifact(module, version, ArtifactKind::Zip);
        self.inner
            .storage
            .get_range(&key, range)
            .await
            .map_err(CoreError::from)?
            .ok_or_else(|| {
                CoreError::Internal(format!(
                    "{module}@{version}: zip vanished while serving a range"
                ))
            })
    }

    /// The one fetch of a write-once artifact on a miss, whatever its kind: single-flight in this
    /// process, a turn among the replicas (see the module docs), the module's sources, the kind's
    /// validation, the checksum database, the approver, and a write-once store. `query` is the
    /// version (for `.info`, any query). The answer is the stored bytes (for a zip, nothing: the
    /// caller streams the stored copy).
    async fn fetch_artifact(
        &self,
        module: &ModulePath,
        query: &str,
        kind: ArtifactKind,
    ) -> Outcome {
        let flight_key = format!("{}:{}@{}", kind.extension(), module.escaped(), query);
        let this = self.clone();
        let (m, q, fk) = (module.clone(), query.to_owned(), flight_key.clone());
        let work = async move {
            // Only a version knows its storage key before the fetch; for other `.info` queries a
            // waiter can only wait for the lock to be free (see the module docs).
            let known_key = (kind != ArtifactKind::Info || is_version(&m, &q))
                .then(|| StorageKey::artifact(&m, &q, kind));
            let storage = &this.inner.storage;
            let stored = || async {
                let Some(key) = &known_key else {
                    return Ok(None);
                };
                Ok(match kind {
                    ArtifactKind::Zip => storage.head(key).await?.map(|_| Bytes::new()),
                    ArtifactKind::Info | ArtifactKind::Mod => {
                        storage.get_bytes(key).await?.map(|(b, _)| b)
                    }
                })
            };
            let _guard = match this.take_turn(&fk, stored).await? {
                Turn::Stored(body) => return Ok(body),
                Turn::Fetch(guard) => guard,
            };
            match kind {
                ArtifactKind::Info => this.fetch_info_now(&m, &q).await,
                ArtifactKind::Mod => this.fetch_go_mod_now(&m, &q).await,
                ArtifactKind::Zip => this.fetch_zip_now(&m, &q).await,
            }
        };
        self.fly(flight_key, work).await
    }

    /// `.info` from the sources. A query (branch, commit) is checked against the filter once it
    /// names a version, and gets its own answer (its origin names the branch), not the version's
    /// stored one.
    async fn fetch_info_now(&self, m: &ModulePath, q: &str) -> Outcome {
        let what = format!("{m}@{q}");
        let gate = &self.inner.gate;
        let (body, version, to_store) = self
            .ask(m, |source| async move {
                let body = timed(gate, source.as_ref(), "info", source.info(m, q)).await?;
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
                Ok((body, version, to_store))
            })
            .await
            .map_err(|e| CoreError::from_source(&what, e))?;
        self.check_allowed(m, &version)?;
        let key = StorageKey::artifact(m, &version, ArtifactKind::Info);
        if self.inner.approver.is_some() && self.inner.storage.head(&key).await?.is_none() {
            self.approve(Candidate::info(m, &version)).await?;
        }
        let stored = self.store_once(&key, to_store).await?;
        Ok(if version == q { stored } else { body })
    }

    /// `.mod` from the sources, verified against the checksum database for public modules.
    async fn fetch_go_mod_now(&self, m: &ModulePath, v: &str) -> Outcome {
        let what = format!("{m}@{v}");
        let gate = &self.inner.gate;
        let body = self
            .ask(m, |source| async move {
                let body = timed(gate, source.as_ref(), "mod", source.go_mod(m, v)).await?;
                validate::go_mod(m, &body).map_err(|reason| SourceError::Invalid {
                    source_name: source.describe(),
                    reason,
                })?;
                Ok(body)
            })
            .await
            .map_err(|e| CoreError::from_source(&what, e))?;
        self.verify_sum(m, v, "/go.mod", &agora_gomod::dirhash::hash_go_mod(&body))
            .await?;
        self.approve(Candidate::go_mod(m, v, &body)).await?;
        let key = StorageKey::artifact(m, v, ArtifactKind::Mod);
        self.store_once(&key, body).await
    }

    /// `.zip` from the sources into a scratch file, checked (structure, sizes, every entry's
    /// CRC) and hashed unless the source built it itself under the zip rules and says its hash,
    /// verified against the checksum database for public modules, then published.
    async fn fetch_zip_now(&self, m: &ModulePath, v: &str) -> Outcome {
        let what = format!("{m}@{v}");
        let scratch = self.inner.storage.scratch_file(&what);
        let gate = &self.inner.gate;
        let dest = scratch.path();
        let (hash, size) = self
            .ask(m, |source| async move {
                let written = timed(gate, source.as_ref(), "zip", source.zip(m, v, dest)).await?;
                if let Some(h1) = written.h1 {
                    return Ok((h1, written.size));
                }
                let (mc, vc, dc) = (m.clone(), v.to_owned(), dest.to_owned());
                let checked = tokio::task::spawn_blocking(move || validate::zip(&mc, &vc, &dc))
                    .await
                    .unwrap_or_else(|e| Err(format!("zip check crashed: {e}")));
                let hash = checked.map_err(|reason| SourceError::Invalid {
                    source_name: source.describe(),
                    reason,
                })?;
                Ok((hash, written.size))
            })
            .await
            .map_err(|e| CoreError::from_source(&what, e))?;
        self.verify_sum(m, v, "", &hash).await?;
        self.approve(Candidate::zip(m, v, hash, Some(size))).await?;
        let key = StorageKey::artifact(m, v, ArtifactKind::Zip);
        if self.inner.storage.put_file_once(&key, &scratch).await? == PutOutcome::AlreadyExists {
            tracing::debug!(module.path = %m, module.version = %v, "zip stored concurrently by another writer");
        }
        Ok(Bytes::new())
    }

    /// Decides what a cache miss of `key` does under `mode` and the module's download mode: `Ok`
    /// means fetch now; `async` starts the fetch as its own task and answers "not yet".
    fn on_miss(&self, mode: FetchMode, key: &StorageKey) -> Result<(), CoreError> {
        let what = describe_key(key);
        match mode {
            FetchMode::CacheOnly => return Err(CoreError::NotCached(what)),
            FetchMode::Background => return Ok(()),
            FetchMode::Fetch => {}
        }
        let Some(module) = key_module(key) else {
            return Ok(());
        };
        match self.inner.policy.download_mode(module) {
            DownloadMode::Sync => Ok(()),
            DownloadMode::None => Err(CoreError::NotCached(what)),
            DownloadMode::Redirect(base) => Err(CoreError::Redirect {
                what,
                // Storage keys are the GOPROXY layout, so a key's path is the request path.
                location: format!("{}/{}", base.trim_end_matches('/'), key.path()),
            }),
            DownloadMode::Async => {
                tokio::spawn(self.clone().fill(key.clone()));
                Err(CoreError::FetchingInBackground(what))
            }
        }
    }

    /// Fetches `key` whatever the download mode (the background half of `async`).
    async fn fill(self, key: StorageKey) {
        let result = match &key {
            StorageKey::List(m) | StorageKey::Latest(m) => {
                self.refresh(key.clone(), m.clone(), None).await.map(drop)
            }
            StorageKey::Artifact {
                module,
                version,
                kind,
            } => self.fetch_artifact(module, version, *kind).await.map(drop),
            StorageKey::SumdbTile { .. } | StorageKey::SumdbLatest { .. } => Ok(()),
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "background fetch failed");
        }
    }

    async fn cached(&self, key: &StorageKey) -> Result<Option<Served>, CoreError> {
        let found = self
            .inner
            .storage
            .get_bytes(key)
            .await
            .map_err(CoreError::from)?
            .map(|(body, info)| Served {
                body,
                freshness: Freshness::Hit,
                last_modified: Some(info.last_modified),
            });
        self.inner.gate.metrics.record_cache(
            kind_label(key),
            if found.is_some() { "hit" } else { "miss" },
        );
        Ok(found)
    }

    /// Stores a write-once artifact; when another writer won the race, answers with its bytes so
    /// that every client sees the same content.
    async fn store_once(&self, key: &StorageKey, body: Bytes) -> Outcome {
        match self
            .inner
            .storage
            .put_once(key, body.clone())
            .await
            .map_err(CoreError::from)?
        {
            PutOutcome::Created => Ok(body),
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

    /// Decides, with the replicas sharing the lock, whether this replica fetches `flight_key`
    /// (see the module docs). `stored` reads the answer another replica may have stored.
    async fn take_turn<T, F, Fut>(
        &self,
        flight_key: &str,
        mut stored: F,
    ) -> Result<Turn<T>, CoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, CoreError>>,
    {
        let Some(lock) = &self.inner.lock else {
            return Ok(Turn::Fetch(None));
        };
        let metrics = &self.inner.gate.metrics;
        let started = tokio::time::Instant::now();
        let deadline = started + self.inner.opts.queue_timeout;
        let mut waited = false;
        loop {
            match lock.try_acquire(flight_key).await {
                Ok(Some(guard)) => {
                    metrics.record_lock_acquired();
                    // The previous holder may have stored the answer just before releasing.
                    if let Some(found) = stored().await? {
                        if waited {
                            metrics.record_lock_wait("served");
                        }
                        return Ok(Turn::Stored(found));
                    }
                    if waited {
                        metrics.record_lock_wait("took_over");
                        tracing::debug!(
                            fetch.key = flight_key,
                            waited_ms = started.elapsed().as_millis() as u64,
                            "the replica holding the fetch lock stored nothing; fetching here"
                        );
                    }
                    return Ok(Turn::Fetch(Some(guard)));
                }
                Ok(None) => {}
                Err(err) => {
                    metrics.record_lock_error();
                    if self.inner.lock_warning.ready() {
                        tracing::warn!(
                            fetch.key = flight_key,
                            error = %err,
                            "fetch lock unavailable; fetching without coordinating with other \
                             replicas (further warnings suppressed for 30 s)"
                        );
                    }
                    return Ok(Turn::Fetch(None));
                }
            }
            // Another replica is fetching: wait for its answer to show up in storage.
            waited = true;
            let now = tokio::time::Instant::now();
            if now >= deadline {
                metrics.record_lock_wait("timed_out");
                tracing::warn!(
                    fetch.key = flight_key,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "another replica has been fetching for longer than queue_timeout; fetching \
                     here too"
                );
                return Ok(Turn::Fetch(None));
            }
            tokio::time::sleep(lock.poll_interval().min(deadline - now)).await;
            if let Some(found) = stored().await? {
                metrics.record_lock_wait("served");
                return Ok(Turn::Stored(found));
            }
        }
    }

    async fn fly<F>(&self, key: String, work: F) -> Outcome
    where
        F: std::future::Future<Output = Outcome> + Send + 'static,
    {
        let metrics = self.inner.gate.metrics.clone();
        let work = async move {
            metrics.fetch_started();
            let out = work.await;
            metrics.fetch_finished();
            out
        };
        let (result, role) = self.inner.flights.run(key, work).await;
        if role == crate::singleflight::Role::Waiter {
            self.inner.gate.metrics.record_singleflight_wait();
        }
        result.map_err(|panic| CoreError::Internal(panic.to_string()))?
    }
}

/// Whether `query` is a version of `module` (canonical, and of the path's major version): the
/// only queries whose `.info` is stored under their own name.
fn is_version(module: &ModulePath, query: &str) -> bool {
    let (_, major) = module.split_version();
    validate::is_canonical(query) && check_path_major(query, major).is_ok()
}

/// `.mod` and `.zip` exist only for canonical versions valid for the module path.
fn check_version(module: &ModulePath, version: &str) -> Result<(), CoreError> {
    if !validate::is_canonical(version) {
        return Err(CoreError::NotFound(format!(
            "{module}@{version}: invalid version: not a canonical version"
        )));
    }
    let (_, major) = module.split_version();
    check_path_major(version, major)
        .map_err(|e| CoreError::NotFound(format!("{module}@{version}: invalid version: {e}")))
}

/// Runs one fetch from `source` within the concurrency limit for its kind of source, recording
/// its duration and outcome.
async fn timed<T>(
    gate: &Gate,
    source: &dyn Source,
    kind: &'static str,
    fetch: impl std::future::Future<Output = Result<T, SourceError>>,
) -> Result<T, SourceError> {
    let kind_of_source = source.kind();
    let label = kind_of_source.label();
    let slots = match kind_of_source {
        SourceKind::Git => &gate.git,
        SourceKind::Upstream => &gate.upstream,
    };
    let _permit = tokio::time::timeout(gate.queue_timeout, slots.acquire())
        .await
        .map_err(|_| {
            SourceError::Overloaded(format!(
                "too many {label} fetches in progress; waited {:?} for a slot",
                gate.queue_timeout
            ))
        })?
        .map_err(|_| SourceError::Overloaded("shutting down".into()))?;
    let started = std::time::Instant::now();
    let result = fetch.await;
    gate.metrics
        .record_fetch(label, kind, result.is_ok(), started.elapsed());
    result
}

/// The `kind` label of a storage key in metrics.
fn kind_label(key: &StorageKey) -> &'static str {
    match key {
        StorageKey::List(_) => "list",
        StorageKey::Latest(_) => "latest",
        StorageKey::Artifact { kind, .. } => kind.extension(),
        StorageKey::SumdbTile { .. } | StorageKey::SumdbLatest { .. } => "tile",
    }
}

fn key_module(key: &StorageKey) -> Option<&ModulePath> {
    match key {
        StorageKey::List(m) | StorageKey::Latest(m) => Some(m),
        StorageKey::Artifact { module, .. } => Some(module),
        StorageKey::SumdbTile { .. } | StorageKey::SumdbLatest { .. } => None,
    }
}

/// `module`, `module@latest` or `module@version`, for messages.
fn describe_key(key: &StorageKey) -> String {
    match key {
        StorageKey::List(m) => m.to_string(),
        StorageKey::Latest(m) => format!("{m}@latest"),
        StorageKey::Artifact {
            module, version, ..
        } => format!("{module}@{version}"),
        StorageKey::SumdbTile { name, path } => format!("{name} {path}"),
        StorageKey::SumdbLatest { name } => format!("{name} latest"),
    }
}
