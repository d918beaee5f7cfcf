//! The fetch pipeline on its own: a [`Proxy`] over in-memory storage with an in-memory source
//! (no network, no git), for what every artifact goes through on a miss: hit, miss, single-flight,
//! a failing source, validation refusing an answer, and a fetch lock another replica holds.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_core::{
    CoreError, FetchLock, FetchMode, Freshness, LockError, LockGuard, Policy, Proxy, ProxyOptions,
    Source, SourceError, SourceKind, ZipWritten,
};
use agora_gomod::module::ModulePath;
use agora_gomod::zip::{create_zip, MemFile, ZipOptions};
use agora_storage::{ArtifactKind, Storage, StorageKey};
use agora_upstream::{parse_goproxy, FetchError, UpstreamClient};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

const MODULE: &str = "corp.example/team/lib";
const GO_MOD: &str = "module corp.example/team/lib\n\ngo 1.21\n";
const INFO: &str = r#"{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}"#;

fn module() -> ModulePath {
    ModulePath::new(MODULE).unwrap()
}

/// A source answering from memory, counting its calls, optionally slow or failing.
#[derive(Default)]
struct MemSource {
    files: Mutex<HashMap<String, Bytes>>,
    calls: AtomicUsize,
    delay: Mutex<Duration>,
    fail: AtomicBool,
}

impl MemSource {
    fn with_module() -> Arc<Self> {
        let s = MemSource::default();
        let mut files = s.files.lock().unwrap();
        files.insert("list".into(), Bytes::from_static(b"v1.0.0\n"));
        files.insert("v1.0.0.info".into(), Bytes::from_static(INFO.as_bytes()));
        files.insert("v1.0.0.mod".into(), Bytes::from_static(GO_MOD.as_bytes()));
        let zip_files = [
            MemFile::regular("go.mod", GO_MOD),
            MemFile::regular("lib.go", "package lib\n"),
        ];
        let mut zip = std::io::Cursor::new(Vec::new());
        create_zip(
            &mut zip,
            MODULE,
            "v1.0.0",
            &zip_files,
            &ZipOptions::default(),
        )
        .unwrap();
        files.insert("v1.0.0.zip".into(), Bytes::from(zip.into_inner()));
        drop(files);
        Arc::new(s)
    }

    fn set(&self, name: &str, body: &str) {
        self.files
            .lock()
            .unwrap()
            .insert(name.into(), Bytes::from(body.to_owned()));
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn answer(&self, name: &str) -> Result<Bytes, SourceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        if self.fail.load(Ordering::SeqCst) {
            return Err(FetchError::Transport {
                url: "mem".into(),
                message: "connection reset".into(),
            }
            .into());
        }
        self.files
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| {
                FetchError::NotFound {
                    status: 404,
                    message: format!("no {name}"),
                }
                .into()
            })
    }
}

#[async_trait]
impl Source for MemSource {
    fn describe(&self) -> String {
        "mem".into()
    }

    fn kind(&self) -> SourceKind {
        SourceKind::Git
    }

    async fn list(&self, _: &ModulePath) -> Result<Bytes, SourceError> {
        self.answer("list").await
    }

    async fn latest(&self, _: &ModulePath) -> Result<Bytes, SourceError> {
        self.answer("v1.0.0.info").await
    }

    async fn info(&self, _: &ModulePath, query: &str) -> Result<Bytes, SourceError> {
        self.answer(&format!("{query}.info")).await
    }

    async fn go_mod(&self, _: &ModulePath, version: &str) -> Result<Bytes, SourceError> {
        self.answer(&format!("{version}.mod")).await
    }

    async fn zip(
        &self,
        _: &ModulePath,
        version: &str,
        dest: &Path,
    ) -> Result<ZipWritten, SourceError> {
        let body = self.answer(&format!("{version}.zip")).await?;
        std::fs::write(dest, &body).unwrap();
        // As another proxy's zip: checked and hashed by the proxy.
        Ok(ZipWritten {
            size: body.len() as u64,
            h1: None,
        })
    }
}

/// A proxy over `storage` whose private modules (`corp.example`) come from `source`.
fn proxy(storage: Storage, source: Arc<MemSource>, lock: Option<Arc<dyn FetchLock>>) -> Proxy {
    let chain = parse_goproxy("off").unwrap();
    let client = UpstreamClient::new(Default::default()).unwrap();
    let policy = Policy::new(&["corp.example".into()], &[]);
    let opts = ProxyOptions {
        queue_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let builder = Proxy::builder(storage, policy, &chain, client, source, opts);
    match lock {
        Some(lock) => builder.lock(lock),
        None => builder,
    }
    .build()
}

async fn zip_bytes(proxy: &Proxy) -> Result<(Bytes, Freshness), CoreError> {
    let (obj, fresh) = proxy.zip(&module(), "v1.0.0", FetchMode::Fetch).await?;
    let chunks: Vec<_> = obj.body.collect().await;
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(&c.unwrap());
    }
    Ok((Bytes::from(out), fresh))
}

#[tokio::test]
async fn a_miss_fetches_validates_and_stores_once_then_hits() {
    let source = MemSource::with_module();
    let storage = Storage::memory().unwrap();
    let p = proxy(storage.clone(), source.clone(), None);
    let m = module();

    let first = p.go_mod(&m, "v1.0.0", FetchMode::Fetch).await.unwrap();
    assert_eq!(first.freshness, Freshness::Miss);
    assert_eq!(first.body, GO_MOD.as_bytes());
    let again = p.go_mod(&m, "v1.0.0", FetchMode::Fetch).await.unwrap();
    assert_eq!(again.freshness, Freshness::Hit);
    assert_eq!(source.calls(), 1);

    let (zip, fresh) = zip_bytes(&p).await.unwrap();
    assert_eq!(fresh, Freshness::Miss);
    assert_eq!(zip, source.files.lock().unwrap()["v1.0.0.zip"]);
    assert_eq!(zip_bytes(&p).await.unwrap().1, Freshness::Hit);
    let info = p.info(&m, "v1.0.0", FetchMode::Fetch).await.unwrap();
    assert_eq!(info.body, INFO.as_bytes());
    assert_eq!(source.calls(), 3);
    let key = StorageKey::artifact(&m, "v1.0.0", ArtifactKind::Zip);
    assert!(storage.head(&key).await.unwrap().is_some());

    // Cache-only requests are answered from the store, and refused on a miss.
    let err = p
        .go_mod(&m, "v1.1.0", FetchMode::CacheOnly)
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::NotCached(_)), "{err:?}");
    assert_eq!(source.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_share_one_fetch() {
    let source = MemSource::with_module();
    *source.delay.lock().unwrap() = Duration::from_millis(200);
    let p = proxy(Storage::memory().unwrap(), source.clone(), None);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { zip_bytes(&p).await.map(|(b, _)| b) })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        bodies.push(t.await.unwrap().unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(source.calls(), 1);
    assert_eq!(p.fetches_in_flight(), 0);
}

#[tokio::test]
async fn a_failing_source_stores_nothing_and_is_asked_again() {
    let source = MemSource::with_module();
    source.fail.store(true, Ordering::SeqCst);
    let storage = Storage::memory().unwrap();
    let p = proxy(storage.clone(), source.clone(), None);
    let m = module();
    let err = p.go_mod(&m, "v1.0.0", FetchMode::Fetch).await.unwrap_err();
    assert!(matches!(err, CoreError::Upstream { .. }), "{err:?}");
    assert!(err.to_string().contains("connection reset"), "{err}");
    let key = StorageKey::artifact(&m, "v1.0.0", ArtifactKind::Mod);
    assert!(storage.head(&key).await.unwrap().is_none());

    // Not found is its own answer.
    source.fail.store(false, Ordering::SeqCst);
    let err = p.go_mod(&m, "v1.9.0", FetchMode::Fetch).await.unwrap_err();
    assert!(matches!(err, CoreError::NotFound { .. }), "{err:?}");

    // Failures are not remembered: the next request fetches.
    let ok = p.go_mod(&m, "v1.0.0", FetchMode::Fetch).await.unwrap();
    assert_eq!(ok.body, GO_MOD.as_bytes());
    assert_eq!(source.calls(), 3);
}

#[tokio::test]
async fn answers_that_fail_validation_are_refused_and_not_stored() {
    let source = MemSource::with_module();
    source.set("v1.0.0.mod", "<html>sign in</html>\n");
    source.set("v1.0.0.zip", "not a zip");
    source.set(
        "v1.0.0.info",
        r#"{"Version":"v1.0.1","Time":"2024-01-02T03:04:05Z"}"#,
    );
    let storage = Storage::memory().unwrap();
    let p = proxy(storage.clone(), source.clone(), None);
    let m = module();

    let err = p.go_mod(&m, "v1.0.0", FetchMode::Fetch).await.unwrap_err();
    assert!(matches!(err, CoreError::InvalidUpstream { .. }), "{err:?}");
    let err = zip_bytes(&p).await.unwrap_err();
    assert!(matches!(err, CoreError::InvalidUpstream { .. }), "{err:?}");
    let err = p.info(&m, "v1.0.0", FetchMode::Fetch).await.unwrap_err();
    assert!(matches!(err, CoreError::InvalidUpstream { .. }), "{err:?}");
    for kind in [ArtifactKind::Mod, ArtifactKind::Zip, ArtifactKind::Info] {
        let key = StorageKey::artifact(&m, "v1.0.0", kind);
        assert!(storage.head(&key).await.unwrap().is_none(), "{kind:?}");
    }
}

/// A fetch lock that another replica holds until `released`, and that counts attempts.
#[derive(Default)]
struct HeldElsewhere {
    released: AtomicBool,
    attempts: AtomicUsize,
}

#[async_trait]
impl FetchLock for HeldElsewhere {
    async fn try_acquire(&self, _key: &str) -> Result<Option<LockGuard>, LockError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if !self.released.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let (guard, holder) = LockGuard::pair();
        std::mem::forget(holder);
        Ok(Some(guard))
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(20)
    }
}

#[tokio::test]
async fn while_another_replica_holds_the_lock_its_stored_answer_is_served() {
    let source = MemSource::with_module();
    let storage = Storage::memory().unwrap();
    let lock = Arc::new(HeldElsewhere::default());
    let p = proxy(storage.clone(), source.clone(), Some(lock.clone()));
    let m = module();

    // The other replica stores the go.mod while this one waits.
    let key = StorageKey::artifact(&m, "v1.0.0", ArtifactKind::Mod);
    let (s, k) = (storage.clone(), key.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.put_once(&k, Bytes::from_static(GO_MOD.as_bytes()))
            .await
            .unwrap();
    });
    let served = p.go_mod(&m, "v1.0.0", FetchMode::Fetch).await.unwrap();
    assert_eq!(served.body, GO_MOD.as_bytes());
    assert_eq!(
        source.calls(),
        0,
        "the holder's answer is used, not fetched again"
    );
    assert!(lock.attempts.load(Ordering::SeqCst) >= 2);

    // Once the lock is free and nothing was stored, this replica fetches itself.
    lock.released.store(true, Ordering::SeqCst);
    let served = p.info(&m, "v1.0.0", FetchMode::Fetch).await.unwrap();
    assert_eq!(served.body, INFO.as_bytes());
    assert_eq!(source.calls(), 1);
}

#[tokio::test]
async fn lists_and_latest_go_through_the_same_pipeline() {
    let source = MemSource::with_module();
    let storage = Storage::memory().unwrap();
    let p = proxy(storage.clone(), source.clone(), None);
    let m = module();
    let list = p.list(&m, FetchMode::Fetch).await.unwrap();
    assert_eq!(
        (list.body.as_ref(), list.freshness),
        (&b"v1.0.0\n"[..], Freshness::Miss)
    );
    let latest = p.latest(&m, FetchMode::Fetch).await.unwrap();
    assert_eq!(latest.body, INFO.as_bytes());
    // Fresh copies are served without asking again.
    assert_eq!(
        p.list(&m, FetchMode::Fetch).await.unwrap().freshness,
        Freshness::Hit
    );
    assert_eq!(source.calls(), 2);
    // An invalid list is refused and not stored.
    let other = MemSource::with_module();
    other
        .files
        .lock()
        .unwrap()
        .insert("list".into(), Bytes::from_static(b"\xff\n"));
    let q = proxy(Storage::memory().unwrap(), other, None);
    let err = q.list(&m, FetchMode::Fetch).await.unwrap_err();
    assert!(matches!(err, CoreError::InvalidUpstream { .. }), "{err:?}");
}

/// A "not found" is remembered for `not_found` (the go command probes every path prefix, and a
/// build may ask for a missing version many times), then asked again; a version published
/// meanwhile is found after that time. Failures other than "not found" are never remembered.
#[tokio::test]
async fn a_not_found_is_remembered_for_a_while_then_asked_again() {
    let source = MemSource::with_module();
    let chain = parse_goproxy("off").unwrap();
    let client = UpstreamClient::new(Default::default()).unwrap();
    let policy = Policy::new(&["corp.example".into()], &[]);
    let opts = ProxyOptions {
        not_found: Duration::from_millis(300),
        ..Default::default()
    };
    let p = Proxy::builder(
        Storage::memory().unwrap(),
        policy,
        &chain,
        client,
        source.clone(),
        opts,
    )
    .build();
    let m = module();
    for _ in 0..20 {
        let err = p.go_mod(&m, "v1.1.0", FetchMode::Fetch).await.unwrap_err();
        assert!(matches!(err, CoreError::NotFound { .. }), "{err:?}");
    }
    assert_eq!(source.calls(), 1, "twenty requests, one question");
    assert!(p
        .metrics()
        .render()
        .contains("agora_cache_lookups_total{kind=\"mod\",result=\"absent\"} 19"));

    source.set("v1.1.0.mod", GO_MOD);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let found = p.go_mod(&m, "v1.1.0", FetchMode::Fetch).await.unwrap();
    assert_eq!(found.freshness, Freshness::Miss);
    assert_eq!(source.calls(), 2);
}
