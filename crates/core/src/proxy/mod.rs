//! [`Proxy`]: the GOPROXY protocol's answers, from cache or from a source.
//!
//! Laid out by responsibility:
//! - here: the options, the [`Proxy`] and its builder, and the protocol's questions (`list`,
//!   `latest`, `info`, `go_mod`, `zip`), each answered from storage or by a fetch;
//! - [`fetch`]: the one fetch pipeline every miss goes through (sources, validation, checksums,
//!   approval, storage) and the refresh of lists and `@latest`;
//! - [`miss`]: what a miss does under the module's download mode (`sync`, `async`, ...);
//! - [`absent`]: "not found" answers remembered for a short time;
//! - [`age`]: the minimum release age of filter rules;
//! - [`record`]: what the metadata index learns (stored and served artifacts) and quarantines;
//! - [`retention`]: deleting what the retention plan says may go;
//! - [`overview`]: what is known of one module, for people (the web UI);
//! - [`replicas`]: single-flight in this process and turns among replicas sharing a store;
//! - [`gate`]: concurrency limits and metrics around each fetch from a source.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agora_gomod::module::{check_path_major, ModulePath};
use agora_index::Index;
use agora_storage::{ArtifactKind, Object, Storage, StorageKey};
use agora_upstream::{ChainEntry, Target, UpstreamClient};
use bytes::Bytes;

use crate::approve::Approver;
use crate::error::{CoreError, Subject};
use crate::lock::{FetchLock, WarnEvery};
use crate::metrics::Metrics;
use crate::policy::{Policy, Route};
use crate::singleflight::SingleFlight;
use crate::source::{ProxySource, Source};
use crate::sumdb::Checksums;
use crate::validate;

mod absent;
mod age;
mod fetch;
mod gate;
mod miss;
mod overview;
mod own_db;
mod record;
mod replicas;
mod retention;

pub use overview::{License, Overview, VersionView};
pub use retention::{Collection, HOT};

use fetch::Outcome;
use gate::Gate;

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
    /// How long a "not found" from the sources is remembered (zero: not at all).
    pub not_found: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            list_fresh: Duration::from_secs(60),
            list_stale: Duration::from_secs(3600),
            max_upstream_fetches: 32,
            max_git_fetches: 8,
            queue_timeout: Duration::from_secs(60),
            not_found: Duration::from_secs(60),
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
    /// Recent "not found" answers, by flight key.
    absent: absent::Absent,
    gate: Gate,
    /// Asked before a newly fetched artifact is cached.
    approver: Option<Arc<dyn Approver>>,
    /// Shared with the other replicas: one fetch per key across all of them.
    lock: Option<Arc<dyn FetchLock>>,
    /// The checksum database public modules are verified against before they are cached.
    checksums: Option<Arc<Checksums>>,
    /// Rate limit of the "lock service unavailable" warning.
    lock_warning: WarnEvery,
    /// The metadata index: told about every stored artifact and hit. Set once, by the builder or
    /// [`Proxy::attach_index`] (opening it needs the async runtime, which wiring comes before).
    index: std::sync::OnceLock<Index>,
    /// Quarantined versions (a snapshot of the index's).
    quarantines: record::Quarantines,
    /// The last failures answered, for the status page.
    failures: crate::failures::FailureLog,
    /// agora's own checksum database, when configured.
    own_db: Option<crate::checksum_db::ChecksumDb>,
    /// When the last collection on this replica ran and what it did.
    last_collection: std::sync::Mutex<Option<(SystemTime, Collection)>>,
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
    index: Option<Index>,
    own_db: Option<crate::checksum_db::ChecksumDb>,
}

impl ProxyBuilder {
    /// A checksum database of agora's own: every version served is added to it, and bytes that
    /// differ from its record are refused.
    pub fn checksum_db(mut self, db: crate::checksum_db::ChecksumDb) -> Self {
        self.own_db = Some(db);
        self
    }

    /// The metadata index to record stored and served artifacts in, and to read quarantines
    /// from (call [`Proxy::sync_index`] once before serving, then every few seconds).
    pub fn index(mut self, index: Index) -> Self {
        self.index = Some(index);
        self
    }

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
            index,
            own_db,
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
                    health: Default::default(),
                    queued: Default::default(),
                },
                absent: absent::Absent::new(opts.not_found),
                opts,
                flights: SingleFlight::default(),
                approver,
                lock,
                checksums,
                lock_warning: WarnEvery::new(Duration::from_secs(30)),
                index: index.map(std::sync::OnceLock::from).unwrap_or_default(),
                quarantines: record::Quarantines::default(),
                failures: crate::failures::FailureLog::default(),
                own_db,
                last_collection: std::sync::Mutex::new(None),
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
            index: None,
            own_db: None,
        }
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

    /// Fetches waiting for a slot under `limits` (`upstream_fetches`, `git_fetches`).
    pub fn fetches_queued(&self) -> usize {
        self.inner
            .gate
            .queued
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How each source has been answering this process's fetches.
    pub fn source_health(&self) -> Vec<(String, crate::health::SourceStats)> {
        self.inner.gate.health.snapshot()
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
            .map_err(|e| CoreError::from_source(&Subject::Module(module.clone()), e))
    }

    /// The failures answered lately (see [`crate::failures`]); the server notes each.
    pub fn failures(&self) -> &crate::failures::FailureLog {
        &self.inner.failures
    }

    /// When this replica last collected, and what it did.
    pub fn last_collection(&self) -> Option<(SystemTime, Collection)> {
        self.inner
            .last_collection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the lock shared with other replicas answers: `None` without one.
    pub async fn lock_health(&self) -> Option<Result<(), String>> {
        let lock = self.inner.lock.as_ref()?;
        Some(
            lock.try_acquire("health")
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        )
    }

    /// Whether requests can be answered: storage answers and misses can be staged (`/readyz`).
    pub async fn ready(&self) -> Result<(), CoreError> {
        Ok(self.inner.storage.check().await?)
    }

    /// `/@v/list`.
    pub async fn list(&self, module: &ModulePath, mode: FetchMode) -> Result<Served, CoreError> {
        self.check_module(module)?;
        let mut served = self.mutable(StorageKey::List(module.clone()), mode).await?;
        let allowed = self
            .inner
            .policy
            .filter()
            .filter_list(module.as_str(), &served.body);
        let allowed = self.drop_quarantined(module, allowed);
        served.body = self.drop_young(module, allowed, mode).await;
        Ok(served)
    }

    /// `/@latest`.
    pub async fn latest(&self, module: &ModulePath, mode: FetchMode) -> Result<Served, CoreError> {
        self.check_module(module)?;
        let served = self
            .mutable(StorageKey::Latest(module.clone()), mode)
            .await?;
        if self.inner.policy.filter().is_open() && !self.inner.quarantines.any(module) {
            return Ok(served);
        }
        let version = validate::info(module, None, &served.body)
            .map_err(|e| CoreError::Internal(format!("cached @latest: {e}")))?;
        match self.check_allowed(module, &version) {
            Ok(()) => self.latest_old_enough(module, served, mode).await,
            Err(refusal @ CoreError::Quarantined { .. }) => {
                self.latest_from_list(module, refusal, mode).await
            }
            Err(err) => Err(err),
        }
    }

    /// The key of `.mod` or `.zip` of `module@version`, once the version is one such files exist
    /// for and the filter rules allow it.
    fn version_key(
        &self,
        module: &ModulePath,
        version: &str,
        kind: ArtifactKind,
    ) -> Result<StorageKey, CoreError> {
        check_version(module, version)?;
        self.check_allowed(module, version)?;
        Ok(StorageKey::artifact(module, version, kind))
    }

    /// Filter rules: may `module` be asked about at all?
    fn check_module(&self, module: &ModulePath) -> Result<(), CoreError> {
        self.inner
            .policy
            .filter()
            .check_module(module.as_str())
            .map_err(|b| CoreError::Blocked {
                subject: Subject::Module(module.clone()),
                reason: b.0,
            })
    }

    /// Filter rules and quarantines: may `module@version` be fetched and served?
    fn check_allowed(&self, module: &ModulePath, version: &str) -> Result<(), CoreError> {
        self.check_quarantine(module, version)?;
        self.inner
            .policy
            .filter()
            .check_version(module.as_str(), version)
            .map_err(|b| CoreError::Blocked {
                subject: Subject::version(module, version),
                reason: b.0,
            })
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
                self.check_info_age(module, &hit.body).await?;
                return Ok(hit);
            }
        }
        self.on_miss(mode, &key)?;
        let body = Box::pin(self.fetch(key, None)).await?;
        self.check_info_age(module, &body).await?;
        Ok(Served::fetched(body))
    }

    /// `/@v/<version>.mod`.
    pub async fn go_mod(
        &self,
        module: &ModulePath,
        version: &str,
        mode: FetchMode,
    ) -> Result<Served, CoreError> {
        let key = self.version_key(module, version, ArtifactKind::Mod)?;
        self.check_age(module, version, None, mode).await?;
        if let Some(hit) = self.cached(&key).await? {
            return Ok(hit);
        }
        self.on_miss(mode, &key)?;
        let body = Box::pin(self.fetch(key, None)).await?;
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
        let key = self.version_key(module, version, ArtifactKind::Zip)?;
        self.check_age(module, version, None, mode).await?;
        if let Some(obj) = self.cached_zip(&key).await? {
            return Ok((obj, Freshness::Hit));
        }
        self.on_miss(mode, &key)?;
        Box::pin(self.fetch(key.clone(), None)).await?;
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
        let key = self.version_key(module, version, ArtifactKind::Zip)?;
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

    /// A stored zip, opened for streaming.
    #[tracing::instrument(level = "debug", name = "cache.lookup", skip_all,
        fields(storage.key = %key.path(), cache.result = tracing::field::Empty))]
    async fn cached_zip(&self, key: &StorageKey) -> Result<Option<Object>, CoreError> {
        let found = self.inner.storage.get(key).await?;
        if let Some(obj) = &found {
            self.record_served(key, &obj.info);
        }
        let result = if found.is_some() { "hit" } else { "miss" };
        tracing::Span::current().record("cache.result", result);
        self.inner.gate.metrics.record_cache("zip", result);
        Ok(found)
    }

    #[tracing::instrument(level = "debug", name = "cache.lookup", skip_all,
        fields(storage.key = %key.path(), cache.result = tracing::field::Empty))]
    async fn cached(&self, key: &StorageKey) -> Result<Option<Served>, CoreError> {
        let found = self
            .inner
            .storage
            .get_bytes(key)
            .await
            .map_err(CoreError::from)?
            .map(|(body, info)| {
                self.record_served(key, &info);
                Served {
                    body,
                    freshness: Freshness::Hit,
                    last_modified: Some(info.last_modified),
                }
            });
        let result = if found.is_some() { "hit" } else { "miss" };
        tracing::Span::current().record("cache.result", result);
        self.inner
            .gate
            .metrics
            .record_cache(kind_label(key), result);
        Ok(found)
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
        return Err(CoreError::not_found(
            Subject::version(module, version),
            "invalid version: not a canonical version",
        ));
    }
    let (_, major) = module.split_version();
    check_path_major(version, major).map_err(|e| {
        CoreError::not_found(
            Subject::version(module, version),
            format!("invalid version: {e}"),
        )
    })
}

/// The `kind` label of a storage key in metrics.
fn kind_label(key: &StorageKey) -> &'static str {
    match key {
        StorageKey::List(_) => "list",
        StorageKey::Latest(_) => "latest",
        StorageKey::Artifact { kind, .. } => kind.extension(),
        StorageKey::SumdbTile { .. }
        | StorageKey::SumdbLatest { .. }
        | StorageKey::OwnSumdb { .. } => "tile",
    }
}

fn key_module(key: &StorageKey) -> Option<&ModulePath> {
    match key {
        StorageKey::List(m) | StorageKey::Latest(m) => Some(m),
        StorageKey::Artifact { module, .. } => Some(module),
        StorageKey::SumdbTile { .. }
        | StorageKey::SumdbLatest { .. }
        | StorageKey::OwnSumdb { .. } => None,
    }
}
