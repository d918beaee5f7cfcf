//! The web UI's module page for a module with 1,000 cached versions (issue 14's target: under
//! 50 ms server-side), and a search over 10,000 modules, through the router as a request
//! would go (access rules, index, storage, rendering), on local storage and the embedded SQLite
//! index in a temporary directory. The first line is the baseline measured in the same run: a
//! warm `.info` hit, the cheapest answer agora gives. Prints numbers; asserts nothing.
//!
//! ```sh
//! cargo bench -p agora-server --bench module_page
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use agora_core::{Policy, Proxy, ProxyOptions, ProxySource, SumdbProxy};
use agora_gomod::module::ModulePath;
use agora_index::{ArtifactRecord, Index, IndexConfig, Origin};
use agora_server::{router, AppState};
use agora_storage::{ArtifactKind, Storage, StorageKey};
use agora_upstream::{ClientOptions, UpstreamClient};
use axum::body::Body;
use axum::http::Request;
use bytes::Bytes;
use tower::ServiceExt;

const MODULE: &str = "github.com/bench/many";
const VERSIONS: u32 = 1000;
const OTHER_MODULES: u32 = 10_000;
const RUNS: usize = 25;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(&dir.path().join("data")).unwrap();
    let index = Index::open(&IndexConfig::default(), dir.path())
        .await
        .unwrap();
    let m = ModulePath::new(MODULE).unwrap();
    let mut records = Vec::new();
    let now = SystemTime::now();
    for i in 0..VERSIONS {
        let v = format!("v1.{}.{}", i / 100, i % 100);
        let info = format!(r#"{{"Version":"{v}","Time":"2024-01-01T00:00:00Z"}}"#);
        let go_mod = format!(
            "module {MODULE}\n\ngo 1.21\n\nrequire (\n\tgolang.org/x/mod v0.20.0\n\tgolang.org/x/text v0.16.0\n)\n\nretract v1.0.3 // broken\n"
        );
        for (kind, body) in [
            (ArtifactKind::Info, info.into_bytes()),
            (ArtifactKind::Mod, go_mod.into_bytes()),
        ] {
            let key = StorageKey::artifact(&m, &v, kind);
            storage.put_once(&key, Bytes::from(body)).await.unwrap();
            let origin = Origin::Upstream {
                url: "https://proxy.golang.org".into(),
            };
            let rec = ArtifactRecord::for_key(&key, 100, now, origin)
                .unwrap()
                .with_h1("h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
            records.push(rec);
        }
    }
    for i in 0..OTHER_MODULES {
        let om = ModulePath::new(&format!("github.com/org{}/lib{i}", i % 97)).unwrap();
        let key = StorageKey::artifact(&om, "v1.0.0", ArtifactKind::Info);
        records.push(ArtifactRecord::for_key(&key, 100, now, Origin::Unknown).unwrap());
    }
    index.record_stored_many(&records).await.unwrap();

    let client = UpstreamClient::new(ClientOptions {
        retries: 0,
        ..Default::default()
    })
    .unwrap();
    let nowhere = Arc::new(ProxySource::new(
        "http://127.0.0.1:9".into(),
        client.clone(),
    ));
    let proxy = Proxy::builder(
        storage,
        Policy::new(&[], &[]),
        &[],
        client.clone(),
        nowhere,
        ProxyOptions::default(),
    )
    .index(index)
    .build();
    proxy.sync_index().await.unwrap();
    let sumdb = Arc::new(SumdbProxy::new(Vec::new(), None, client, proxy.clone()));
    let app = router(AppState::new(proxy, sumdb));

    println!("web UI bench: {VERSIONS} versions of {MODULE}, {OTHER_MODULES} other modules");
    let base = time(&app, &format!("/{MODULE}/@v/v1.0.0.info")).await;
    let page = time(&app, &format!("/{MODULE}")).await;
    let search = time(&app, "/-/search?q=lib12").await;
    let row = |what: &str, (median, max, bytes): (Duration, Duration, usize), target: &str| {
        println!(
            "| {what} | {:.2} ms | {:.2} ms | {bytes} | {:.0} | {target} |",
            ms(median),
            ms(max),
            ms(median) / ms(base.0)
        )
    };
    println!("| request (median of {RUNS}) | median | max | bytes | × `.info` hit | target |");
    println!("|---|---:|---:|---:|---:|---|");
    row("`.info` hit (baseline)", base, "");
    row("module page, 1,000 versions", page, "50 ms");
    row("search `lib12` over 10,001 modules", search, "");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median and max time of `RUNS` GETs of `path` (after one warm-up), and the body size.
async fn time(app: &axum::Router, path: &str) -> (Duration, Duration, usize) {
    let get = || async {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .len()
    };
    let bytes = get().await;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        get().await;
        times.push(start.elapsed());
    }
    times.sort();
    (times[RUNS / 2], times[RUNS - 1], bytes)
}
