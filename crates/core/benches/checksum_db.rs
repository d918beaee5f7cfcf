//! agora's own checksum database at work: 10,000 new versions appended one lookup at a time
//! (each publishes a new signed tree, as lookups of versions not yet in the log do), the same
//! appended in one batch, and lookups of versions already in the log (the baseline: what every
//! later client pays). Local storage in a temporary directory. Prints numbers; asserts nothing.
//!
//! ```sh
//! cargo bench -p agora-core --bench checksum_db
//! AGORA_BENCH_VERSIONS=1000 cargo bench -p agora-core --bench checksum_db
//! ```

use std::time::{Duration, Instant};

use agora_core::checksum_db::{ChecksumDb, Entry};
use agora_gomod::module::ModulePath;
use agora_storage::Storage;
use agora_sumdb::log::{generate_key, LogKey};

fn main() {
    let n: usize = std::env::var("AGORA_BENCH_VERSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n));
}

fn entries(n: usize, tag: &str) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry {
            module: ModulePath::new(&format!("git.corp.example/team{}/svc{i}", i % 50)).unwrap(),
            version: format!("v1.{}.0", i % 7),
            zip_h1: format!("h1:{tag}{i:040}="),
            mod_h1: format!("h1:{tag}{i:039}m="),
        })
        .collect()
}

async fn run(n: usize) {
    let (skey, _) = generate_key("sum.bench.example").unwrap();
    let key = LogKey::parse(&skey).unwrap();

    // One lookup at a time: each appends one record and publishes.
    let dir = tempfile::tempdir().unwrap();
    let db = ChecksumDb::new(key.clone(), Storage::local(dir.path()).unwrap(), None);
    let list = entries(n, "a");
    let start = Instant::now();
    for e in &list {
        db.add(std::slice::from_ref(e)).await.unwrap();
        db.lookup(&e.module, &e.version).await.unwrap().unwrap();
    }
    let one_by_one = start.elapsed();

    // The same number in one append.
    let dir2 = tempfile::tempdir().unwrap();
    let db2 = ChecksumDb::new(key, Storage::local(dir2.path()).unwrap(), None);
    let start = Instant::now();
    db2.add(&entries(n, "b")).await.unwrap();
    let batch = start.elapsed();

    // Baseline: lookups of versions already in the log.
    let start = Instant::now();
    for e in &list {
        db.lookup(&e.module, &e.version).await.unwrap().unwrap();
    }
    let lookups = start.elapsed();
    let (tree, _) = db.published().await.unwrap();
    assert_eq!(tree.n, n as u64);

    let per = |d: Duration| d.as_secs_f64() * 1e3 / n as f64;
    println!("own checksum database bench: {n} versions, local storage");
    println!("| measurement | total | per version | × lookup |");
    println!("|---|---:|---:|---:|");
    println!(
        "| lookup of a version in the log (baseline) | {:.2} s | {:.3} ms | 1.0 |",
        lookups.as_secs_f64(),
        per(lookups)
    );
    println!(
        "| first lookup: append one version and publish, {n} times | {:.2} s | {:.3} ms | {:.1} |",
        one_by_one.as_secs_f64(),
        per(one_by_one),
        per(one_by_one) / per(lookups)
    );
    println!(
        "| {n} versions in one append | {:.2} s | {:.3} ms | {:.2} |",
        batch.as_secs_f64(),
        per(batch),
        per(batch) / per(lookups)
    );
    let verify = Instant::now();
    db.verify().await.unwrap();
    println!(
        "| `agora sumdb verify` of the {n}-record log | {:.2} s | | |",
        verify.elapsed().as_secs_f64()
    );
}
