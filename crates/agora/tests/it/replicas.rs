//! Several replicas: two agora processes sharing an S3-compatible bucket (moto) and a Redis lock.
//! Concurrent requests spread over both fetch a cold module once; a replica killed mid-fetch is
//! taken over by the other, and nothing partial is ever stored.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agora_testkit::fixtures::{BIG, GREET};
use agora_testkit::{http, Agora, Fault, RedisServer, S3Server, S3Service, UpstreamProxy};

use crate::support::*;

/// A replica's configuration: the shared bucket and Redis (`redis` may be empty: no lock).
fn replica_config(dir: &Path, name: &str, s3: &S3Server, bucket: &str, redis: &str) -> PathBuf {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "{}\n[redis]\nurl = {redis:?}\nlock_ttl = \"3s\"\nlock_poll = \"100ms\"\n",
            s3_storage_toml(s3, bucket)
        ),
    )
    .unwrap();
    config
}

fn replica(dir: &Path, name: &str, s3: &S3Server, bucket: &str, redis: &str, up: &str) -> Agora {
    let config = replica_config(dir, name, s3, bucket, redis);
    builder(&dir.join(name), up)
        .arg("--config")
        .arg(&config)
        .start()
}

/// GETs `path` from the replicas in turn, `n` requests at once; returns every (status, body).
fn spread(replicas: &[&Agora], path: &str, n: usize) -> Vec<(u16, Vec<u8>)> {
    let urls: Vec<String> = replicas
        .iter()
        .map(|a| format!("{}{path}", a.url()))
        .collect();
    let urls = Arc::new(urls);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let urls = urls.clone();
            std::thread::spawn(move || {
                let (s, _, body) = http::get(&urls[i % urls.len()]);
                (s, body)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn h1(zip: &[u8]) -> String {
    agora_gomod::dirhash::hash_zip(Cursor::new(zip)).unwrap()
}

#[test]
fn two_replicas_fetch_a_cold_module_once() {
    let s3 = S3Server::start();
    let redis = RedisServer::start();
    let up = upstream();
    // A slow upstream keeps the fetch in flight while all requests arrive.
    up.set_fault(Fault::Delay(Duration::from_millis(800)));
    let tmp = tempfile::tempdir().unwrap();
    let a = replica(tmp.path(), "a", &s3, s3.bucket(), &redis.url(), &up.url());
    let b = replica(tmp.path(), "b", &s3, s3.bucket(), &redis.url(), &up.url());

    let want = world().baseline[&format!("{GREET}@v1.1.0")]
        .sum
        .clone()
        .unwrap();
    for ext in ["info", "mod", "zip"] {
        let path = artifact_path(GREET, "v1.1.0", ext);
        let answers = spread(&[&a, &b], &path, 100);
        assert!(
            answers.iter().all(|(s, _)| *s == 200),
            "{ext}: {:?}",
            answers.iter().map(|a| a.0).collect::<Vec<_>>()
        );
        assert!(
            answers.windows(2).all(|w| w[0].1 == w[1].1),
            "{ext}: answers differ"
        );
        assert_eq!(up.count(&path), 1, "{ext}: fetched more than once");
        if ext == "zip" {
            assert_eq!(h1(&answers[0].1), want);
        }
    }
    // The artifacts are in the bucket, under the GOPROXY layout, and nowhere else, next to the
    // checksum-database tiles that proved them.
    let storage = open_bucket(&s3, s3.bucket(), tmp.path());
    let mut stored = list(&storage);
    stored.sort();
    assert!(stored
        .iter()
        .any(|p| p.starts_with("sumdb/sumdb.agora.test/tile/8/0/")));
    stored.retain(|p| !p.starts_with("sumdb/"));
    assert_eq!(
        stored,
        [
            "github.com/agora-fixtures/greet/@v/v1.1.0.info",
            "github.com/agora-fixtures/greet/@v/v1.1.0.mod",
            "github.com/agora-fixtures/greet/@v/v1.1.0.zip",
        ]
    );
}

#[test]
fn a_replica_killed_mid_fetch_is_taken_over() {
    let s3 = S3Server::start();
    let bucket = s3.new_bucket();
    let redis = RedisServer::start();
    let up = UpstreamProxy::serve_dir(&world().upstream_root);
    let tmp = tempfile::tempdir().unwrap();
    let mut a = replica(tmp.path(), "a", &s3, &bucket, &redis.url(), &up.url());
    let b = replica(tmp.path(), "b", &s3, &bucket, &redis.url(), &up.url());

    // A's fetch of the 1 MiB zip stalls half-way through the body; A dies while holding the lock.
    let path = artifact_path(BIG, "v1.0.0", "zip");
    up.set_path_fault(&path, Fault::Delay(Duration::from_secs(4)));
    let a_url = format!("{}{path}", a.url());
    let a_req = std::thread::spawn(move || http::try_request("GET", &a_url, &[], None));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while up.count(&path) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "A never asked upstream"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!redis.keys("agora:lock:*").is_empty(), "A holds a lock");
    // B's clients arrive while A holds the lock; then A is killed.
    let waiting = {
        let b_url = format!("{}{path}", b.url());
        std::thread::spawn(move || {
            (0..10)
                .map(|_| {
                    let u = b_url.clone();
                    std::thread::spawn(move || http::get(&u))
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    a.kill();
    assert!(
        a_req.join().unwrap().is_err(),
        "A's client sees the connection die"
    );
    up.clear_faults();

    let answers = waiting.join().unwrap();
    let want = world().baseline[&format!("{BIG}@v1.0.0")]
        .sum
        .clone()
        .unwrap();
    for (s, _, body) in &answers {
        assert_eq!(*s, 200, "{}", http::text(body));
        assert_eq!(h1(body), want);
    }
    // A's attempt and B's take-over: two upstream requests, one stored zip, complete.
    assert_eq!(up.count(&path), 2);
    let storage = open_bucket(&s3, &bucket, tmp.path());
    let mut stored = list(&storage);
    stored.retain(|p| !p.starts_with("sumdb/"));
    assert_eq!(stored, ["github.com/agora-fixtures/bigzip/@v/v1.0.0.zip"]);
}

#[test]
fn import_into_a_bucket_and_serve_from_it() {
    let s3 = S3Server::start();
    let bucket = s3.new_bucket();
    let tmp = tempfile::tempdir().unwrap();
    let config = replica_config(tmp.path(), "r", &s3, &bucket, "");
    let out = std::process::Command::new(agora_bin())
        .arg("import")
        .arg(world().go.download_cache())
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(tmp.path().join("import-scratch"))
        .env_remove("GOPROXY")
        .env("GOSUMDB", world().sumdb.gosumdb())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The upstream is off: everything served comes from the import.
    let agora = builder(&tmp.path().join("r"), "off")
        .arg("--config")
        .arg(&config)
        .start();
    let go = go_client().env("GOSUMDB", "off");
    for (q, want) in &world().baseline {
        let got = go
            .mod_download(agora.url(), q)
            .unwrap_or_else(|e| panic!("{q} from the bucket: {e}"));
        assert_eq!(got.sum, want.sum, "{q}");
    }
}

fn open_bucket(s3: &S3Server, bucket: &str, dir: &Path) -> agora_storage::Storage {
    let mut config = agora_storage::StorageConfig {
        backend: agora_storage::BackendKind::S3,
        ..Default::default()
    };
    config.s3.bucket = bucket.to_owned();
    config.s3.endpoint = s3.endpoint();
    config.s3.region = s3.region().to_owned();
    config.s3.allow_http = true;
    config.s3.access_key_id = s3.access_key_id().to_owned();
    config.s3.secret_access_key = agora_storage::Secret::new(s3.secret_access_key());
    agora_storage::Storage::open(&config, &dir.join("inspect")).unwrap()
}

/// Every stored object outside the private prefix.
fn list(storage: &agora_storage::Storage) -> Vec<String> {
    use futures::TryStreamExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(storage.list("").map_ok(|l| l.path).try_collect())
        .unwrap()
}
