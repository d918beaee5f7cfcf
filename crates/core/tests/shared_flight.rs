//! Shared single-flight across replicas ("Beyond one machine"): two `Proxy` instances over one
//! local store (as replicas share a bucket), one upstream GOPROXY that counts requests, and a real
//! `redis-server` holding the fetch locks.
//!
//! Timing: nothing here asserts an upper bound tighter than the generous per-test timeout; the
//! only lower bound (a dead holder is waited for) follows from a TTL the server enforces.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_core::{FetchLock, FetchMode, Policy, Proxy, ProxyOptions, ProxySource};
use agora_core::{RedisLock, RedisLockOptions};
use agora_gomod::module::ModulePath;
use agora_gomod::zip::{create_zip, MemFile, ZipOptions};
use agora_storage::Storage;
use agora_testkit::redis::Reply;
use agora_testkit::{Fault, RedisServer, UpstreamProxy};
use agora_upstream::{parse_goproxy, ClientOptions, UpstreamClient};
use bytes::Bytes;
use futures::StreamExt;
use tempfile::TempDir;

const MODULE: &str = "example.com/shared";
const GO_MOD: &str = "module example.com/shared\n\ngo 1.21\n";
const INFO: &str = r#"{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}"#;
/// Every test is bounded by this, however loaded the machine.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Concurrent requests per replica.
const PER_REPLICA: usize = 50;

fn module() -> ModulePath {
    ModulePath::new(MODULE).unwrap()
}

fn upstream_path(file: &str) -> String {
    format!("/{MODULE}/@v/{file}")
}

/// A valid module zip for `example.com/shared@version`.
fn module_zip(version: &str) -> Vec<u8> {
    let files = [
        MemFile::regular("go.mod", GO_MOD),
        MemFile::regular(
            "shared.go",
            format!("package shared\n\nconst Version = {version:?}\n"),
        ),
    ];
    let mut out = std::io::Cursor::new(Vec::new());
    create_zip(&mut out, MODULE, version, &files, &ZipOptions::default()).unwrap();
    out.into_inner()
}

/// A GOPROXY tree with `v1.0.0` and `v1.1.0`, plus `main.info` (a branch query that resolves to
/// `v1.0.0`), served by a counting upstream.
struct World {
    upstream: UpstreamProxy,
    /// Both replicas' store: a directory, like a bucket they share.
    data: TempDir,
    _tree: TempDir,
}

impl World {
    fn new() -> World {
        let tree = tempfile::tempdir().unwrap();
        let v = tree.path().join(MODULE).join("@v");
        std::fs::create_dir_all(&v).unwrap();
        let write = |name: &str, body: &[u8]| std::fs::write(v.join(name), body).unwrap();
        write("list", b"v1.0.0\nv1.1.0\n");
        for version in ["v1.0.0", "v1.1.0"] {
            write(
                &format!("{version}.info"),
                INFO.replace("v1.0.0", version).as_bytes(),
            );
            write(&format!("{version}.mod"), GO_MOD.as_bytes());
            write(&format!("{version}.zip"), &module_zip(version));
        }
        write("main.info", INFO.as_bytes());
        World {
            upstream: UpstreamProxy::serve_dir(tree.path()),
            data: tempfile::tempdir().unwrap(),
            _tree: tree,
        }
    }

    /// One replica: its own storage handle on the shared directory, its own upstream client,
    /// and `lock` if given.
    fn replica(&self, lock: Option<Arc<dyn FetchLock>>) -> Proxy {
        self.replica_with(ProxyOptions::default(), lock)
    }

    fn replica_with(&self, opts: ProxyOptions, lock: Option<Arc<dyn FetchLock>>) -> Proxy {
        let storage = Storage::local(self.data.path()).unwrap();
        let client = UpstreamClient::new(ClientOptions {
            retries: 0,
            ..Default::default()
        })
        .unwrap();
        let chain = parse_goproxy(&self.upstream.url()).unwrap();
        // Never used: the module is public, so only the chain is asked.
        let direct = Arc::new(ProxySource::new(
            "http://127.0.0.1:9".into(),
            client.clone(),
        ));
        let proxy = Proxy::builder(storage, Policy::new(&[], &[]), &chain, client, direct, opts);
        match lock {
            Some(lock) => proxy.lock(lock),
            None => proxy,
        }
        .build()
    }

    /// A replica with its own Redis connection.
    fn replica_with_redis(&self, opts: RedisLockOptions) -> Proxy {
        self.replica(Some(Arc::new(RedisLock::new(opts).unwrap())))
    }

    fn count(&self, file: &str) -> usize {
        self.upstream.count(&upstream_path(file))
    }
}

/// What one request answers.
#[derive(Clone, Copy, Debug)]
enum Ask {
    Zip(&'static str),
    Mod(&'static str),
    Info(&'static str),
    List,
}

async fn ask(proxy: &Proxy, what: Ask) -> Bytes {
    let m = module();
    let result = match what {
        Ask::Zip(v) => match proxy.zip(&m, v, FetchMode::Fetch).await {
            Ok((mut obj, _)) => {
                let mut body = Vec::new();
                while let Some(chunk) = obj.body.next().await {
                    body.extend_from_slice(&chunk.expect("read stored zip"));
                }
                Ok(Bytes::from(body))
            }
            Err(e) => Err(e),
        },
        Ask::Mod(v) => proxy.go_mod(&m, v, FetchMode::Fetch).await.map(|s| s.body),
        Ask::Info(q) => proxy.info(&m, q, FetchMode::Fetch).await.map(|s| s.body),
        Ask::List => proxy.list(&m, FetchMode::Fetch).await.map(|s| s.body),
    };
    result.unwrap_or_else(|e| panic!("{what:?} failed: {e}"))
}

/// Sends `per_replica` concurrent requests to every replica at once; returns every answer.
async fn hammer(replicas: &[Proxy], per_replica: usize, what: Ask) -> Vec<Bytes> {
    let mut tasks = Vec::new();
    for proxy in replicas {
        for _ in 0..per_replica {
            let proxy = proxy.clone();
            tasks.push(tokio::spawn(async move { ask(&proxy, what).await }));
        }
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("request task panicked"));
    }
    answers
}

fn assert_all_equal(answers: &[Bytes], expected: &[u8]) {
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(&a[..], expected, "answer {i} differs");
    }
}

/// Polls (bounded) until `f` holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lock_key(flight_key: &str) -> String {
    agora_core::lock::redis_key(flight_key)
}

fn metric(proxy: &Proxy, line_start: &str) -> Option<u64> {
    proxy
        .metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test took too long")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_fetch_a_cold_zip_once() {
    let redis = RedisServer::start();
    let world = World::new();
    let replicas = [
        world.replica_with_redis(RedisLockOptions::new(redis.url())),
        world.replica_with_redis(RedisLockOptions::new(redis.url())),
    ];
    let answers = bounded(hammer(&replicas, PER_REPLICA, Ask::Zip("v1.0.0"))).await;
    assert_eq!(answers.len(), 2 * PER_REPLICA);
    assert_all_equal(&answers, &module_zip("v1.0.0"));
    assert_eq!(
        world.count("v1.0.0.zip"),
        1,
        "{:?}",
        world.upstream.requests()
    );
    // Released after the fetch (in the background).
    bounded(eventually("the lock is released", || {
        redis.keys("agora:lock:*").is_empty()
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_fetch_info_mod_and_list_once() {
    let redis = RedisServer::start();
    let world = World::new();
    let replicas = [
        world.replica_with_redis(RedisLockOptions::new(redis.url())),
        world.replica_with_redis(RedisLockOptions::new(redis.url())),
    ];
    let info = bounded(hammer(&replicas, PER_REPLICA, Ask::Info("v1.0.0"))).await;
    assert_all_equal(&info, INFO.as_bytes());
    assert_eq!(
        world.count("v1.0.0.info"),
        1,
        "{:?}",
        world.upstream.requests()
    );

    let go_mod = bounded(hammer(&replicas, PER_REPLICA, Ask::Mod("v1.0.0"))).await;
    assert_all_equal(&go_mod, GO_MOD.as_bytes());
    assert_eq!(
        world.count("v1.0.0.mod"),
        1,
        "{:?}",
        world.upstream.requests()
    );

    let list = bounded(hammer(&replicas, PER_REPLICA, Ask::List)).await;
    assert_all_equal(&list, b"v1.0.0\nv1.1.0\n");
    assert_eq!(world.count("list"), 1, "{:?}", world.upstream.requests());
}

/// A stale list is refreshed once for both replicas, even though each has just read the old copy
/// (and keeps it in memory for a second): the waiter re-reads storage, not its own copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_refresh_a_stale_list_once() {
    let redis = RedisServer::start();
    let world = World::new();
    let opts = ProxyOptions {
        list_fresh: Duration::ZERO,
        list_stale: Duration::ZERO,
        ..ProxyOptions::default()
    };
    let lock = || -> Option<Arc<dyn FetchLock>> {
        Some(Arc::new(
            RedisLock::new(RedisLockOptions::new(redis.url())).unwrap(),
        ))
    };
    let (a, b) = (
        world.replica_with(opts.clone(), lock()),
        world.replica_with(opts, lock()),
    );
    // Stored once; then each replica refreshes it on every request (no freshness window).
    bounded(ask(&a, Ask::List)).await;
    assert_eq!(world.count("list"), 1);
    world.upstream.set_path_fault(
        &upstream_path("list"),
        Fault::Delay(Duration::from_millis(300)),
    );
    let lists = bounded(hammer(&[a, b], PER_REPLICA, Ask::List)).await;
    assert_all_equal(&lists, b"v1.0.0\nv1.1.0\n");
    assert_eq!(world.count("list"), 2, "{:?}", world.upstream.requests());
}

/// The other replica's requests arrive while the fetch is under way; they are answered from
/// storage once the first replica has stored the zip.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_on_another_replica_get_the_artifact_once_stored() {
    let redis = RedisServer::start();
    let world = World::new();
    // Long enough that the other replica surely asks while the fetch is under way.
    world.upstream.set_path_fault(
        &upstream_path("v1.0.0.zip"),
        Fault::Delay(Duration::from_secs(3)),
    );
    let a = world.replica_with_redis(RedisLockOptions::new(redis.url()));
    let b = world.replica_with_redis(RedisLockOptions::new(redis.url()));

    let first = tokio::spawn({
        let a = a.clone();
        async move { ask(&a, Ask::Zip("v1.0.0")).await }
    });
    let key = lock_key(&format!("zip:{MODULE}@v1.0.0"));
    bounded(eventually("replica A holds the lock", || {
        redis.keys("agora:lock:*").contains(&key)
    }))
    .await;
    let waiters = bounded(hammer(std::slice::from_ref(&b), 20, Ask::Zip("v1.0.0"))).await;
    let first = bounded(first).await.unwrap();

    let zip = module_zip("v1.0.0");
    assert_all_equal(&waiters, &zip);
    assert_eq!(&first[..], &zip[..]);
    assert_eq!(
        world.count("v1.0.0.zip"),
        1,
        "{:?}",
        world.upstream.requests()
    );
    assert_eq!(
        metric(&b, "agora_lock_waits_total{outcome=\"served\"}"),
        Some(1),
        "{}",
        b.metrics().render()
    );
    assert_eq!(metric(&a, "agora_lock_acquired_total"), Some(1));
}

/// A replica died holding the lock (its key stays until the TTL runs out): the next replica waits
/// for the expiry, then fetches itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_holder_is_taken_over_after_its_lock_expires() {
    let redis = RedisServer::start();
    let world = World::new();
    let key = lock_key(&format!("zip:{MODULE}@v1.0.0"));
    let planted = redis.cmd(&["SET", &key, "dead-replica", "NX", "PX", "1500"]);
    assert_eq!(planted, Reply::Str("OK".into()));
    let a = world.replica_with_redis(RedisLockOptions::new(redis.url()));

    let started = Instant::now();
    let answers = bounded(hammer(std::slice::from_ref(&a), 10, Ask::Zip("v1.0.0"))).await;
    assert_all_equal(&answers, &module_zip("v1.0.0"));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "did not wait for the dead holder's lock: {:?}",
        started.elapsed()
    );
    assert_eq!(world.count("v1.0.0.zip"), 1);
    assert_eq!(
        metric(&a, "agora_lock_waits_total{outcome=\"took_over\"}"),
        Some(1),
        "{}",
        a.metrics().render()
    );
}

/// `.info` for a branch cannot be looked up in storage before it is resolved: the second replica
/// waits for the lock to be free, then resolves the query itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_branch_query_waits_for_the_lock_then_resolves_itself() {
    let redis = RedisServer::start();
    let world = World::new();
    world.upstream.set_path_fault(
        &upstream_path("main.info"),
        Fault::Delay(Duration::from_secs(2)),
    );
    let a = world.replica_with_redis(RedisLockOptions::new(redis.url()));
    let b = world.replica_with_redis(RedisLockOptions::new(redis.url()));

    let first = tokio::spawn({
        let a = a.clone();
        async move { hammer(&[a], 10, Ask::Info("main")).await }
    });
    let key = lock_key(&format!("info:{MODULE}@main"));
    bounded(eventually("replica A holds the lock", || {
        redis.keys("agora:lock:*").contains(&key)
    }))
    .await;
    let second = bounded(hammer(std::slice::from_ref(&b), 10, Ask::Info("main"))).await;
    let first = bounded(first).await.unwrap();
    assert_all_equal(&first, INFO.as_bytes());
    assert_all_equal(&second, INFO.as_bytes());
    assert_eq!(
        world.count("main.info"),
        2,
        "{:?}",
        world.upstream.requests()
    );
    assert_eq!(
        metric(&b, "agora_lock_waits_total{outcome=\"took_over\"}"),
        Some(1),
        "{}",
        b.metrics().render()
    );
}

/// While held, the lock is renewed past its TTL; when another holder takes it over, the fetch
/// still completes, and the release leaves the new holder's lock alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_lock_is_renewed_and_losing_it_does_not_fail_the_fetch() {
    let redis = RedisServer::start();
    let world = World::new();
    world.upstream.set_path_fault(
        &upstream_path("v1.0.0.zip"),
        Fault::Delay(Duration::from_secs(5)),
    );
    let a = world.replica_with_redis(RedisLockOptions {
        ttl: Duration::from_millis(1500),
        ..RedisLockOptions::new(redis.url())
    });
    let fetch = tokio::spawn({
        let a = a.clone();
        async move { ask(&a, Ask::Zip("v1.0.0")).await }
    });
    let key = lock_key(&format!("zip:{MODULE}@v1.0.0"));
    bounded(eventually("replica A holds the lock", || {
        redis.keys("agora:lock:*").contains(&key)
    }))
    .await;
    let token = redis.cmd(&["GET", &key]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        redis.cmd(&["GET", &key]),
        token,
        "the lock outlived its 1.5 s TTL only if renewed"
    );

    // Another replica takes the lock over (as if A had stalled past the TTL).
    redis.cmd(&["SET", &key, "intruder", "PX", "60000"]);
    let body = bounded(fetch).await.unwrap();
    assert_eq!(&body[..], &module_zip("v1.0.0")[..]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        redis.cmd(&["GET", &key]),
        Reply::Str("intruder".into()),
        "a lost lock is neither renewed nor deleted"
    );
}

/// A `tracing` writer into a buffer, to see the degradation warning.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Redis stops: every request still succeeds, each replica fetching at most once (per-replica
/// single-flight), with a warning. Redis comes back: coordination resumes by itself.
///
/// Current-thread runtime, so that the thread-local log capture sees every task.
#[tokio::test]
async fn a_redis_outage_degrades_to_per_replica_single_flight_and_recovers() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);

    let mut redis = RedisServer::start();
    let world = World::new();
    let locks: Vec<RedisLock> = (0..2)
        .map(|_| RedisLock::new(RedisLockOptions::new(redis.url())).unwrap())
        .collect();
    let replicas: Vec<Proxy> = locks
        .iter()
        .map(|l| world.replica(Some(Arc::new(l.clone()) as Arc<dyn FetchLock>)))
        .collect();
    // Connected before the outage, so that the reconnecting path is the one exercised.
    for l in &locks {
        l.ping().await.expect("redis answers");
    }
    redis.stop();

    for what in [Ask::Zip("v1.0.0"), Ask::Info("v1.0.0"), Ask::List] {
        let answers = bounded(hammer(&replicas, 20, what)).await;
        assert_eq!(answers.len(), 40);
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "{what:?}");
    }
    for file in ["v1.0.0.zip", "v1.0.0.info", "list"] {
        let n = world.count(file);
        assert!((1..=2).contains(&n), "{file}: {n} upstream requests");
    }
    for r in &replicas {
        assert!(metric(r, "agora_lock_errors_total").unwrap_or(0) >= 1);
    }
    let text = logs.text();
    assert!(
        text.contains("fetch lock unavailable"),
        "no degradation warning logged:\n{text}"
    );
    assert!(!text.contains(&redis.url()), "the Redis URL was logged");

    // Redis is back: after the pause that follows a failure, the locks work again.
    redis.restart();
    for l in &locks {
        let deadline = Instant::now() + Duration::from_secs(60);
        while l.ping().await.is_err() {
            assert!(Instant::now() < deadline, "the lock never reconnected");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let answers = bounded(hammer(&replicas, 20, Ask::Zip("v1.1.0"))).await;
    assert_all_equal(&answers, &module_zip("v1.1.0"));
    assert_eq!(
        world.count("v1.1.0.zip"),
        1,
        "{:?}",
        world.upstream.requests()
    );
}

/// Redis was never there (a closed port): agora starts and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_redis_port_never_fails_a_request() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let world = World::new();
    let url = format!("redis://{closed}");
    let replicas = [
        world.replica_with_redis(RedisLockOptions::new(url.clone())),
        world.replica_with_redis(RedisLockOptions::new(url)),
    ];
    let answers = bounded(hammer(&replicas, PER_REPLICA, Ask::Zip("v1.0.0"))).await;
    assert_all_equal(&answers, &module_zip("v1.0.0"));
    let n = world.count("v1.0.0.zip");
    assert!((1..=2).contains(&n), "{n} upstream requests");
}
