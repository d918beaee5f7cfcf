//! agora's checksum-database client against the Go reference implementation: a database built
//! from `golang.org/x/mod/sumdb` (the one vendored in the Go toolchain) on loopback. The same
//! records, tree hashes, tiles and proofs must verify; tampering, unknown versions and a forked
//! log must not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agora_sumdb::client::{Ops, Remote};
use agora_sumdb::{Client, Database, SumdbError};
use agora_testkit::{http, SumdbServer};
use async_trait::async_trait;
use bytes::Bytes;

/// The database over HTTP, tiles and the tree head kept in memory; optionally corrupting every
/// tile the database sends (a broken or hostile network).
struct HttpOps {
    base: String,
    tiles: Mutex<HashMap<String, Bytes>>,
    latest: Mutex<Option<Bytes>>,
    corrupt_tiles: Mutex<bool>,
}

impl HttpOps {
    fn new(db: &SumdbServer) -> Arc<HttpOps> {
        Arc::new(HttpOps {
            base: db.url().to_owned(),
            tiles: Mutex::default(),
            latest: Mutex::default(),
            corrupt_tiles: Mutex::new(false),
        })
    }
}

#[async_trait]
impl Ops for HttpOps {
    async fn fetch(&self, path: &str) -> Result<Bytes, Remote> {
        let (status, _, body) = http::get_async(&format!("{}/{path}", self.base)).await;
        match status {
            200 => {
                let mut body = body;
                if path.starts_with("tile/") && *self.corrupt_tiles.lock().unwrap() {
                    body[0] ^= 1;
                }
                Ok(Bytes::from(body))
            }
            404 | 410 => Err(Remote::NotFound(
                String::from_utf8_lossy(&body).into_owned(),
            )),
            s => Err(Remote::Failed(format!("HTTP {s}"))),
        }
    }
    async fn cached_tile(&self, path: &str) -> Option<Bytes> {
        self.tiles.lock().unwrap().get(path).cloned()
    }
    async fn save_tile(&self, path: &str, data: Bytes) {
        self.tiles.lock().unwrap().insert(path.to_owned(), data);
    }
    async fn load_latest(&self) -> Option<Bytes> {
        self.latest.lock().unwrap().clone()
    }
    async fn save_latest(&self, note: Bytes) {
        *self.latest.lock().unwrap() = Some(note);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(db: &SumdbServer, ops: &Arc<HttpOps>) -> Client<Arc<HttpOps>> {
    let database = Database::parse(&db.gosumdb()).unwrap().unwrap();
    Client::new(database, ops.clone())
}

/// A fake but well-formed h1 hash, distinct per seed.
fn h1(seed: usize) -> String {
    use base64::prelude::{Engine, BASE64_STANDARD};
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(seed as u64).to_le_bytes());
    format!("h1:{}", BASE64_STANDARD.encode(b))
}

#[test]
fn hundreds_of_records_verify_through_growing_trees() {
    let db = SumdbServer::start("sumdb.agora.test");
    let n = 600;
    for i in 0..n {
        db.know(
            &format!("example.com/m{i}"),
            "v1.0.0",
            &h1(2 * i),
            &h1(2 * i + 1),
        );
    }
    let ops = HttpOps::new(&db);
    let c = client(&db, &ops);
    rt().block_on(async {
        // Each lookup grows the log by one record: every step proves the new tree extends the
        // old one, through partial tiles, full tiles and level-1 tiles.
        for i in 0..n {
            let m = format!("example.com/m{i}");
            c.verify(&m, "v1.0.0", "", &h1(2 * i)).await.unwrap();
            c.verify(&m, "v1.0.0", "/go.mod", &h1(2 * i + 1))
                .await
                .unwrap();
        }
        let tree = c.latest().await.unwrap().unwrap();
        assert_eq!(tree.n, n as u64);
        // A record from the beginning still verifies against the grown tree.
        let fresh = client(&db, &ops);
        fresh
            .verify("example.com/m3", "v1.0.0", "", &h1(6))
            .await
            .unwrap();
    });
    // Tiles were kept only once proven, and are the database's own bytes.
    let tiles = ops.tiles.lock().unwrap().clone();
    assert!(tiles.contains_key("tile/8/0/000"), "{:?}", tiles.keys());
    assert!(
        tiles.keys().any(|k| k.starts_with("tile/8/1/")),
        "{:?}",
        tiles.keys()
    );
    for (path, data) in &tiles {
        let (st, _, body) = http::get(&format!("{}/{path}", db.url()));
        assert_eq!(st, 200);
        assert_eq!(&body[..], &data[..], "{path}");
    }
}

#[test]
fn mismatches_unknown_versions_and_tampered_tiles_are_refused() {
    let db = SumdbServer::start("sumdb.agora.test");
    for i in 0..5 {
        db.know(
            &format!("example.com/t{i}"),
            "v1.2.3",
            &h1(10 * i),
            &h1(10 * i + 1),
        );
    }
    let ops = HttpOps::new(&db);
    let c = client(&db, &ops);
    rt().block_on(async {
        let err = c
            .verify("example.com/t0", "v1.2.3", "", &h1(99))
            .await
            .unwrap_err();
        assert!(matches!(err, SumdbError::Mismatch(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("checksum mismatch") && text.contains("SECURITY ERROR"),
            "{text}"
        );
        assert!(text.contains(&h1(99)) && text.contains(&h1(0)), "{text}");
        let err = c
            .verify("example.com/t0", "v1.2.3", "/go.mod", &h1(0))
            .await
            .unwrap_err();
        assert!(matches!(err, SumdbError::Mismatch(_)), "{err}");

        let err = c
            .verify("example.com/nope", "v1.0.0", "", &h1(1))
            .await
            .unwrap_err();
        assert!(matches!(err, SumdbError::NotFound { .. }), "{err}");

        // Corrupted tiles: no proof holds, nothing is kept.
        *ops.corrupt_tiles.lock().unwrap() = true;
        let kept = ops.tiles.lock().unwrap().len();
        let err = c
            .verify("example.com/t1", "v1.2.3", "", &h1(10))
            .await
            .unwrap_err();
        assert!(matches!(err, SumdbError::Security { .. }), "{err}");
        assert_eq!(ops.tiles.lock().unwrap().len(), kept);
        *ops.corrupt_tiles.lock().unwrap() = false;
        c.verify("example.com/t1", "v1.2.3", "", &h1(10))
            .await
            .unwrap();

        // A tile served to a client is authenticated before it is kept; a short or altered one
        // is refused.
        for i in 2..5 {
            c.verify(&format!("example.com/t{i}"), "v1.2.3", "", &h1(10 * i))
                .await
                .unwrap();
        }
        let path = "tile/8/0/000.p/5";
        let (_, _, good) = http::get_async(&format!("{}/{path}", db.url())).await;
        ops.tiles.lock().unwrap().clear();
        assert!(c
            .authenticate_tile(path, &Bytes::from(good.clone()))
            .await
            .unwrap());
        assert!(ops.tiles.lock().unwrap().contains_key(path));
        let err = c
            .authenticate_tile(path, &Bytes::from_static(&[7; 51]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("51 bytes"), "{err}");
        let mut bad = good.clone();
        bad[40] ^= 0x80;
        assert!(c.authenticate_tile(path, &Bytes::from(bad)).await.is_err());
        let (_, _, data) = http::get_async(&format!("{}/tile/8/data/000.p/5", db.url())).await;
        assert!(c
            .authenticate_tile("tile/8/data/000.p/5", &Bytes::from(data))
            .await
            .unwrap());
        // Beyond the tree: cannot be verified, so not kept (and no error).
        assert!(!c
            .authenticate_tile("tile/8/0/001", &Bytes::from(vec![0; 8192]))
            .await
            .unwrap());
    });
}

#[test]
fn a_forked_log_is_refused_even_after_a_restart() {
    let db = SumdbServer::start("sumdb.agora.test");
    for i in 0..3 {
        let m = format!("example.com/f{i}");
        db.know(&m, "v1.0.0", &h1(i), &h1(100 + i));
        // The fork tells another story about the same versions, signed with the same key.
        db.know_in_fork(&m, "v1.0.0", &h1(50 + i), &h1(100 + i));
    }
    let ops = HttpOps::new(&db);
    rt().block_on(async {
        let c = client(&db, &ops);
        for i in 0..3 {
            c.verify(&format!("example.com/f{i}"), "v1.0.0", "", &h1(i))
                .await
                .unwrap();
        }
    });
    db.fork();
    rt().block_on(async {
        // A fresh client (a restarted agora) starts from the kept tree head.
        let c = client(&db, &ops);
        let err = c
            .verify("example.com/f0", "v1.0.0", "", &h1(50))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SumdbError::Security { .. }), "{text}");
        assert!(text.contains("misbehavior"), "{text}");
        let err = c.refresh().await.unwrap_err();
        assert!(matches!(err, SumdbError::Security { .. }), "{err}");
    });
}

#[test]
fn notes_signed_by_another_key_are_refused() {
    let real = SumdbServer::start("sumdb.agora.test");
    let impostor = SumdbServer::start("sumdb.agora.test");
    impostor.know("example.com/x", "v1.0.0", &h1(1), &h1(2));
    // The impostor's answers, checked with the real database's key.
    let database = Database::parse(&format!("{} {}", real.key(), impostor.url()))
        .unwrap()
        .unwrap();
    let ops = HttpOps::new(&impostor);
    let c = Client::new(database, ops.clone());
    rt().block_on(async {
        let err = c
            .verify("example.com/x", "v1.0.0", "", &h1(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not signed"), "{err}");
    });
    assert!(ops.latest.lock().unwrap().is_none());
}
