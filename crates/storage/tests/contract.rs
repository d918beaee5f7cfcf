//! The storage contract: the same checks against every backend available here: a local directory,
//! memory, and S3 as served by moto (a mock, serialized so that its conditional writes are atomic)
//! and by Ceph's RADOS Gateway (RGW 16.2, a real S3 server), each at the bucket root and under a
//! prefix.
//!
//! What agora relies on from any backend: reads of what was written, write-once keys that exactly
//! one of many concurrent writers creates (and whose bytes are the winner's), large files streamed
//! in bounded memory, range reads, replaceable mutable keys, prefix listings that respect path
//! elements, and errors (not panics, not "not found") when the backend is unusable.
//!
//! RGW 16.2 honours `If-None-Match: *` on `PutObject`, atomically, but not on
//! `CompleteMultipartUpload` (a completion over an existing key replaces it; checked by hand), and
//! it answers `object_store`'s `UploadPartCopy`, sent without a `Content-Length`, with `411`: the
//! conditional copy that publishes files larger than a part by default (`large_files =
//! "multipart"`, see `remote.rs`) cannot work on it, and the write-once self check
//! ([`Storage::verify_write_once`], which agora runs at start-up) refuses it, pointing to
//! `large_files = "single_put"` (`rgw_needs_single_put_for_large_files`). So RGW is tested with
//! `single_put`, where large files are conditional puts too, and every check runs on it,
//! concurrent writers of large files included.
//!
//! GCS and Azure have no emulator on the test machines; `remote.rs`'s unit tests check that their
//! settings build a client.

use std::sync::Arc;
use std::time::Duration;

use agora_gomod::module::ModulePath;
use agora_storage::remote::PART_SIZE;
use agora_storage::{
    ArtifactKind, BackendKind, LargeFiles, Listed, PutOutcome, Secret, Storage, StorageConfig,
    StorageError, StorageKey,
};
use agora_testkit::{RgwServer, S3Server, S3Service};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use tempfile::TempDir;

/// A storage under test and what keeps it alive.
struct Env {
    storage: Storage,
    /// What is behind an S3 storage.
    remote: Option<Remote>,
    /// Whether files larger than a part are published with one conditional put (RGW, see the
    /// module docs) rather than a multipart upload and a conditional copy.
    single_put: bool,
    _dir: TempDir,
}

/// The bucket behind an S3 storage.
struct Remote {
    /// The raw bucket (to plant or inspect objects behind the storage's back).
    raw: Arc<dyn object_store::ObjectStore>,
    /// The prefix the storage uses in it.
    prefix: String,
    bucket: String,
    server: Server,
}

/// The S3 server of a test: a moto of its own, or the process's shared RGW.
enum Server {
    Moto(S3Server),
    Rgw(&'static RgwServer),
}

impl std::ops::Deref for Server {
    type Target = dyn S3Service;

    fn deref(&self) -> &Self::Target {
        match self {
            Server::Moto(moto) => moto,
            Server::Rgw(rgw) => *rgw,
        }
    }
}

fn local() -> Env {
    // Ceph takes seconds to start: begin while other backends' checks run (see `rgw.rs`).
    RgwServer::start_in_background();
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageConfig::default(), &dir.path().join("data")).unwrap();
    Env {
        storage,
        remote: None,
        single_put: false,
        _dir: dir,
    }
}

fn memory() -> Env {
    RgwServer::start_in_background();
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        backend: BackendKind::Memory,
        ..Default::default()
    };
    Env {
        storage: Storage::open(&config, dir.path()).unwrap(),
        remote: None,
        single_put: false,
        _dir: dir,
    }
}

fn s3_config(server: &dyn S3Service, bucket: &str, prefix: &str) -> StorageConfig {
    let mut c = StorageConfig {
        backend: BackendKind::S3,
        max_retries: 1,
        ..Default::default()
    };
    c.s3.bucket = bucket.to_owned();
    c.s3.prefix = prefix.to_owned();
    c.s3.endpoint = server.endpoint();
    c.s3.allow_http = true;
    c.s3.region = server.region().to_owned();
    c.s3.access_key_id = server.access_key_id().to_owned();
    c.s3.secret_access_key = Secret::new(server.secret_access_key());
    c
}

fn raw_bucket(server: &dyn S3Service, bucket: &str) -> Arc<dyn object_store::ObjectStore> {
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(server.endpoint())
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region(server.region())
            .with_access_key_id(server.access_key_id())
            .with_secret_access_key(server.secret_access_key())
            .build()
            .unwrap(),
    )
}

/// An S3 storage on a fresh bucket of `server`, under `prefix`.
fn on_s3(server: Server, prefix: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let bucket = server.new_bucket();
    let single_put = matches!(server, Server::Rgw(_));
    let mut config = s3_config(&*server, &bucket, prefix);
    if single_put {
        config.s3.large_files = LargeFiles::SinglePut;
    }
    let storage = Storage::open(&config, dir.path()).unwrap();
    Env {
        storage,
        single_put,
        remote: Some(Remote {
            raw: raw_bucket(&*server, &bucket),
            prefix: prefix.to_owned(),
            bucket,
            server,
        }),
        _dir: dir,
    }
}

fn s3() -> Env {
    on_s3(Server::Moto(S3Server::start()), "")
}

fn s3_prefixed() -> Env {
    on_s3(Server::Moto(S3Server::start()), "tenant/agora")
}

fn rgw() -> Env {
    on_s3(Server::Rgw(RgwServer::shared()), "")
}

fn rgw_prefixed() -> Env {
    on_s3(Server::Rgw(RgwServer::shared()), "tenant/agora")
}

/// The checks of `[...]`, once each, against the backend `$env()` makes.
macro_rules! backend {
    ($name:ident, $env:ident, [$($check:ident),* $(,)?]) => {
        mod $name {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() { super::$check(super::$env()).await })*
        }
    };
}

/// Each check, once per backend.
macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        backend!(local, local, [$($check,)*]);
        backend!(memory, memory, [$($check,)*]);
        backend!(s3, s3, [$($check,)*]);
        backend!(s3_prefixed, s3_prefixed, [$($check,)*]);
        backend!(rgw, rgw, [$($check,)*]);
        backend!(rgw_prefixed, rgw_prefixed, [$($check,)*]);
    };
}

contract!(
    get_put_head,
    list_respects_path_elements,
    concurrent_put_once_has_one_winner,
    mutable_keys_are_replaced,
    tilde_in_module_paths_is_kept_verbatim,
    readiness_and_write_once_self_check,
    large_file_streams_in_parts,
    concurrent_put_file_once_of_large_files_has_one_winner,
);

fn module(p: &str) -> ModulePath {
    ModulePath::new(p).unwrap()
}

fn info(m: &str, v: &str) -> StorageKey {
    StorageKey::artifact(&module(m), v, ArtifactKind::Info)
}

fn zip(m: &str, v: &str) -> StorageKey {
    StorageKey::artifact(&module(m), v, ArtifactKind::Zip)
}

/// Deterministic, position-dependent content (a misplaced part shows), different per `seed`.
fn byte_at(seed: u8, i: u64) -> u8 {
    let x = (i / 7).wrapping_mul(2_654_435_761) ^ i.rotate_left(17);
    (x >> 13) as u8 ^ seed
}

/// Writes `len` bytes of `byte_at(seed, ..)` to a fresh scratch file, a buffer at a time.
fn fill(storage: &Storage, hint: &str, seed: u8, len: u64) -> agora_storage::store::ScratchFile {
    use std::io::Write;
    let scratch = storage.scratch_file(hint);
    let mut f = std::io::BufWriter::new(std::fs::File::create(scratch.path()).unwrap());
    let mut buf = Vec::with_capacity(1 << 20);
    let mut i = 0;
    while i < len {
        buf.clear();
        let end = (i + (1 << 20)).min(len);
        buf.extend((i..end).map(|j| byte_at(seed, j)));
        f.write_all(&buf).unwrap();
        i = end;
    }
    f.flush().unwrap();
    scratch
}

/// Streams `key` and checks it is `len` bytes of `byte_at(seed, ..)` from `offset`.
async fn assert_body(
    body: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
    seed: u8,
    offset: u64,
    len: u64,
) {
    let mut pos = offset;
    let mut body = body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        for (k, b) in chunk.iter().enumerate() {
            assert_eq!(*b, byte_at(seed, pos + k as u64), "byte {}", pos + k as u64);
        }
        pos += chunk.len() as u64;
    }
    assert_eq!(pos - offset, len, "body length");
}

async fn collect(
    body: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
) -> Vec<u8> {
    body.try_collect::<Vec<Bytes>>().await.unwrap().concat()
}

async fn list(storage: &Storage, prefix: &str) -> Vec<Listed> {
    let mut all: Vec<Listed> = storage.list(prefix).try_collect().await.unwrap();
    all.sort_by(|a, b| a.path.cmp(&b.path));
    all
}

async fn paths(storage: &Storage, prefix: &str) -> Vec<String> {
    list(storage, prefix)
        .await
        .into_iter()
        .map(|l| l.path)
        .collect()
}

async fn get_put_head(env: Env) {
    let s = &env.storage;
    let k = info("example.com/get/put", "v1.0.0");
    assert!(s.head(&k).await.unwrap().is_none());
    assert!(s.get(&k).await.unwrap().is_none());
    assert!(s.get_bytes(&k).await.unwrap().is_none());
    assert!(s.get_range(&k, 0..1).await.unwrap().is_none());

    let body = Bytes::from_static(br#"{"Version":"v1.0.0"}"#);
    assert_eq!(
        s.put_once(&k, body.clone()).await.unwrap(),
        PutOutcome::Created
    );
    let head = s.head(&k).await.unwrap().expect("stored");
    assert_eq!(head.size, body.len() as u64);
    let (bytes, info) = s.get_bytes(&k).await.unwrap().unwrap();
    assert_eq!(bytes, body);
    assert_eq!(info.size, body.len() as u64);
    let obj = s.get(&k).await.unwrap().unwrap();
    assert_eq!(obj.info.size, body.len() as u64);
    assert_eq!(collect(obj.body).await, body.to_vec());

    assert_eq!(
        s.put_once(&k, Bytes::from_static(b"{}")).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(
        s.get_bytes(&k).await.unwrap().unwrap().0,
        body,
        "write-once keeps the first"
    );

    let part = s.get_range(&k, 2..9).await.unwrap().unwrap();
    assert_eq!(
        part.info.size,
        body.len() as u64,
        "info describes the whole object"
    );
    assert_eq!(collect(part.body).await, body[2..9].to_vec());

    // A small file goes through put_file_once too (one conditional put on remote backends).
    let z = zip("example.com/get/put", "v1.0.0");
    let scratch = fill(s, "small", 3, 1000);
    assert_eq!(
        s.put_file_once(&z, &scratch).await.unwrap(),
        PutOutcome::Created
    );
    let obj = s.get(&z).await.unwrap().unwrap();
    assert_eq!(obj.info.size, 1000);
    assert_body(obj.body, 3, 0, 1000).await;
    let again = fill(s, "small", 4, 1000);
    assert_eq!(
        s.put_file_once(&z, &again).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_body(s.get(&z).await.unwrap().unwrap().body, 3, 0, 1000).await;
}

async fn list_respects_path_elements(env: Env) {
    let s = &env.storage;
    for (m, v) in [
        ("example.com/a/b", "v1.0.0"),
        ("example.com/a/b", "v1.1.0"),
        ("example.com/a/bc", "v1.0.0"),
        ("example.com/a/b/c", "v0.1.0"),
        ("example.com/ab", "v1.0.0"),
    ] {
        s.put_once(&info(m, v), Bytes::from(format!("{m}@{v}")))
            .await
            .unwrap();
    }
    s.put_overwrite(
        &StorageKey::List(module("example.com/a/b")),
        Bytes::from_static(b"v1.0.0\n"),
    )
    .await
    .unwrap();
    // Something private exists on every backend (a scratch file on local disk, a probe object).
    let _scratch = fill(s, "in-progress", 1, 10);
    s.verify_write_once().await.unwrap();

    assert_eq!(
        paths(s, "example.com/a/b").await,
        [
            "example.com/a/b/@v/list",
            "example.com/a/b/@v/v1.0.0.info",
            "example.com/a/b/@v/v1.1.0.info",
            "example.com/a/b/c/@v/v0.1.0.info",
        ],
        "a/b lists a/b/... and never a/bc/..."
    );
    assert_eq!(
        paths(s, "example.com/a/b/").await,
        paths(s, "example.com/a/b").await
    );
    assert_eq!(
        paths(s, "example.com/a/bc").await,
        ["example.com/a/bc/@v/v1.0.0.info"]
    );
    assert_eq!(paths(s, "example.com/a").await.len(), 5);
    assert!(
        paths(s, "example.com/a/b/@v/v1.0.0.info").await.is_empty(),
        "a key is not a directory"
    );
    assert!(paths(s, "example.com/nothing").await.is_empty());

    let all = list(s, "").await;
    assert_eq!(all.len(), 6, "everything but the private tree: {all:?}");
    assert!(all.iter().all(|l| !l.path.starts_with("_agora")));
    let listed = all
        .iter()
        .find(|l| l.path == "example.com/ab/@v/v1.0.0.info")
        .unwrap();
    assert_eq!(listed.size, "example.com/ab@v1.0.0".len() as u64);
    assert!(listed.last_modified > std::time::SystemTime::UNIX_EPOCH);
}

async fn concurrent_put_once_has_one_winner(env: Env) {
    let s = &env.storage;
    let k = info("example.com/race", "v1.0.0");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (s, k) = (s.clone(), k.clone());
            tokio::spawn(async move {
                let body = Bytes::from(format!("writer {i}"));
                (s.put_once(&k, body.clone()).await.unwrap(), body)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (outcome, body) = t.await.unwrap();
        if outcome == PutOutcome::Created {
            winners.push(body);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer creates the key");
    assert_eq!(
        s.get_bytes(&k).await.unwrap().unwrap().0,
        winners[0],
        "the winner's bytes"
    );
}

async fn concurrent_put_file_once_of_large_files_has_one_winner(env: Env) {
    let s = &env.storage;
    let k = zip("example.com/race/large", "v1.0.0");
    let len = PART_SIZE as u64 + 4321; // two parts on remote backends
    let tasks: Vec<_> = (0..6u8)
        .map(|seed| {
            let (s, k) = (s.clone(), k.clone());
            let scratch = fill(&s, "race", seed, len);
            tokio::spawn(async move { (s.put_file_once(&k, &scratch).await.unwrap(), seed) })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (outcome, seed) = t.await.unwrap();
        if outcome == PutOutcome::Created {
            winners.push(seed);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one writer creates the key: {winners:?}"
    );
    let obj = s.get(&k).await.unwrap().unwrap();
    assert_eq!(obj.info.size, len);
    assert_body(obj.body, winners[0], 0, len).await;
    assert!(
        paths(s, "_agora/staging").await.is_empty(),
        "staging objects are deleted, by winners and losers"
    );
}

async fn large_file_streams_in_parts(env: Env) {
    let s = &env.storage;
    let k = zip("example.com/large", "v1.0.0");
    let len: u64 = 64 << 20;
    let scratch = fill(s, "large", 9, len);
    let before = s.write_stats();
    assert_eq!(
        s.put_file_once(&k, &scratch).await.unwrap(),
        PutOutcome::Created
    );
    let stats = s.write_stats();
    if env.single_put {
        // One conditional put of the mapped file.
        assert_eq!(stats.single_puts - before.single_puts, 1, "{stats:?}");
        assert_eq!(
            stats.multipart_uploads, before.multipart_uploads,
            "{stats:?}"
        );
    } else if env.remote.is_some() {
        // The multipart path, one part in memory at a time; never the whole file.
        assert_eq!(
            stats.multipart_uploads - before.multipart_uploads,
            1,
            "{stats:?}"
        );
        assert_eq!(
            stats.parts - before.parts,
            len / PART_SIZE as u64,
            "{stats:?}"
        );
        assert_eq!(stats.largest_part, PART_SIZE as u64, "{stats:?}");
        assert_eq!(stats.single_puts, before.single_puts, "{stats:?}");
    }
    assert!(
        paths(s, "_agora/staging").await.is_empty(),
        "staging object deleted"
    );
    drop(scratch);

    let obj = s.get(&k).await.unwrap().unwrap();
    assert_eq!(obj.info.size, len);
    assert_body(obj.body, 9, 0, len).await;
    // Ranges, across a part boundary and at the end.
    let p = PART_SIZE as u64;
    for range in [p - 10..p + 10, len - 5..len, 0..1] {
        let part = s.get_range(&k, range.clone()).await.unwrap().unwrap();
        assert_eq!(part.info.size, len);
        assert_body(part.body, 9, range.start, range.end - range.start).await;
    }
}

async fn mutable_keys_are_replaced(env: Env) {
    let s = &env.storage;
    let m = module("example.com/mutable");
    for key in [StorageKey::List(m.clone()), StorageKey::Latest(m.clone())] {
        assert!(s.get_bytes(&key).await.unwrap().is_none());
        for body in [&b"v1.0.0\n"[..], b"v1.0.0\nv1.1.0\n", b"v1.2.0\n"] {
            s.put_overwrite(&key, Bytes::copy_from_slice(body))
                .await
                .unwrap();
            assert_eq!(&s.get_bytes(&key).await.unwrap().unwrap().0[..], body);
            assert_eq!(s.head(&key).await.unwrap().unwrap().size, body.len() as u64);
        }
    }
}

/// `~` is legal in module paths; `object_store`'s `Path::from` would store it as `%7E`. (With `!`
/// from case-escaping, the other character of escaped paths that URLs treat specially.)
async fn tilde_in_module_paths_is_kept_verbatim(env: Env) {
    let s = &env.storage;
    let k = info("example.com/A~b/c", "v1.0.0");
    let z = zip("example.com/A~b/c", "v1.0.0");
    s.put_once(&k, Bytes::from_static(b"{}")).await.unwrap();
    // Larger than a part (the staging key and the copy see the name too).
    let len = PART_SIZE as u64 + 1;
    let scratch = fill(s, "tilde", 2, len);
    s.put_file_once(&z, &scratch).await.unwrap();
    assert_eq!(&s.get_bytes(&k).await.unwrap().unwrap().0[..], b"{}");
    assert_eq!(s.get(&z).await.unwrap().unwrap().info.size, len);
    assert_eq!(
        paths(s, "example.com/!a~b").await,
        [
            "example.com/!a~b/c/@v/v1.0.0.info",
            "example.com/!a~b/c/@v/v1.0.0.zip"
        ]
    );
    if let Some(Remote { raw, prefix, .. }) = &env.remote {
        let key = if prefix.is_empty() {
            k.path()
        } else {
            format!("{prefix}/{}", k.path())
        };
        let key = object_store::path::Path::parse(key).unwrap();
        assert_eq!(key.as_ref().matches('~').count(), 1);
        raw.head(&key)
            .await
            .expect("the bucket holds the key verbatim");
    }
    if let agora_storage::Backend::Local(root) = s.backend() {
        assert!(root.join("example.com/!a~b/c/@v/v1.0.0.info").is_file());
    }
}

async fn readiness_and_write_once_self_check(env: Env) {
    let s = &env.storage;
    s.check().await.unwrap();
    s.verify_write_once().await.unwrap();
    assert!(
        paths(s, "_agora/probe").await.is_empty(),
        "probe objects deleted"
    );
    assert_eq!(s.sweep_staging(Duration::from_secs(3600)).await.unwrap(), 0);
}

// ---- S3 only (moto and RGW): leftovers, errors, display ----

#[tokio::test]
async fn s3_sweep_removes_only_stale_staging_objects() {
    sweep_removes_only_stale_staging_objects(s3_prefixed()).await
}

#[tokio::test]
async fn rgw_sweep_removes_only_stale_staging_objects() {
    sweep_removes_only_stale_staging_objects(rgw_prefixed()).await
}

async fn sweep_removes_only_stale_staging_objects(env: Env) {
    let Remote { raw, prefix, .. } = env.remote.as_ref().unwrap();
    let staged = object_store::path::Path::from(format!("{prefix}/_agora/staging/crashed-upload"));
    raw.put(&staged, Bytes::from_static(b"partial").into())
        .await
        .unwrap();
    let s = &env.storage;
    assert_eq!(
        paths(s, "_agora/staging").await,
        ["_agora/staging/crashed-upload"]
    );
    assert_eq!(
        s.sweep_staging(Duration::from_secs(3600)).await.unwrap(),
        0,
        "young: kept"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        s.sweep_staging(Duration::from_millis(500)).await.unwrap(),
        1
    );
    assert!(paths(s, "_agora/staging").await.is_empty());
    assert!(raw.head(&staged).await.is_err());
}

#[tokio::test]
async fn s3_prefix_keeps_objects_inside_it() {
    prefix_keeps_objects_inside_it(s3_prefixed()).await
}

#[tokio::test]
async fn rgw_prefix_keeps_objects_inside_it() {
    prefix_keeps_objects_inside_it(rgw_prefixed()).await
}

async fn prefix_keeps_objects_inside_it(env: Env) {
    let remote = env.remote.as_ref().unwrap();
    let k = info("example.com/p", "v1.0.0");
    env.storage
        .put_once(&k, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let keys: Vec<String> = remote
        .raw
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(keys, ["tenant/agora/example.com/p/@v/v1.0.0.info"]);
    assert_eq!(
        env.storage.backend().to_string(),
        format!(
            "s3://{}/tenant/agora at {}",
            remote.bucket,
            remote.server.endpoint()
        )
    );
}

#[tokio::test]
async fn s3_missing_bucket_is_an_error() {
    missing_bucket_is_an_error(&S3Server::start()).await
}

#[tokio::test]
async fn rgw_missing_bucket_is_an_error() {
    missing_bucket_is_an_error(RgwServer::shared()).await
}

/// RGW 16.2 with the default way of publishing large files: the conditional copy fails (see the
/// module docs), and the self check refuses the store, naming the setting that works.
#[tokio::test]
async fn rgw_needs_single_put_for_large_files() {
    let server = RgwServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let bucket = server.new_bucket();
    let s = Storage::open(&s3_config(server, &bucket, ""), dir.path()).unwrap();
    let e = s.verify_write_once().await.expect_err(
        "the write-once self check passed with large_files = multipart: this Ceph does \
         conditional copies, and RGW can be tested with the default (update the module docs, \
         the README and docs/deployment.md)",
    );
    assert!(matches!(e, StorageError::Config { .. }), "{e}");
    let said = e.to_string();
    assert!(said.contains("conditional copy"), "{said}");
    assert!(said.contains("large_files = \"single_put\""), "{said}");
    assert!(
        paths(&s, "_agora/probe").await.is_empty(),
        "probe objects deleted"
    );
}

/// A missing bucket is an error everywhere it can be seen (S3 answers 404 to a key of a missing
/// bucket, so a read is only a miss; but writes, listing and readiness fail).
async fn missing_bucket_is_an_error(server: &dyn S3Service) {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(&s3_config(server, "no-such-bucket", ""), dir.path()).unwrap();
    let k = info("example.com/x", "v1.0.0");
    let e = s.check().await.unwrap_err();
    assert_no_secret(&e, server);
    let e = s.put_once(&k, Bytes::from_static(b"{}")).await.unwrap_err();
    assert_no_secret(&e, server);
    let scratch = fill(&s, "x", 1, PART_SIZE as u64 + 1);
    let e = s
        .put_file_once(&zip("example.com/x", "v1.0.0"), &scratch)
        .await
        .unwrap_err();
    assert_no_secret(&e, server);
    assert!(s.list("").try_collect::<Vec<_>>().await.is_err());
    assert!(s.verify_write_once().await.is_err());
}

#[tokio::test]
async fn s3_unreachable_endpoint_is_an_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again: nothing listens there
    let dir = tempfile::tempdir().unwrap();
    let mut c = StorageConfig {
        backend: BackendKind::S3,
        max_retries: 0,
        connect_timeout: Duration::from_secs(1),
        retry_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    c.s3.bucket = "goproxy".into();
    c.s3.endpoint = format!("http://127.0.0.1:{port}");
    c.s3.allow_http = true;
    c.s3.access_key_id = "id".into();
    c.s3.secret_access_key = Secret::new("unreachable-s3cr3t");
    let s = Storage::open(&c, dir.path()).unwrap();
    let k = info("example.com/x", "v1.0.0");
    let errors = [
        s.check().await.unwrap_err(),
        s.head(&k).await.unwrap_err(),
        s.get(&k).await.err().unwrap(),
        s.get_bytes(&k).await.unwrap_err(),
        s.put_once(&k, Bytes::from_static(b"{}")).await.unwrap_err(),
    ];
    for e in errors {
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("unreachable-s3cr3t"), "{shown}");
    }
}

fn assert_no_secret(e: &StorageError, server: &dyn S3Service) {
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(server.secret_access_key()), "{shown}");
}
