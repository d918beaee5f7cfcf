//! Index at scale: 1,000,000 synthetic artifact rows (333,334 versions of 33,334 modules), then
//! the operations whose cost matters at that size. Prints numbers; asserts nothing about time.
//!
//! ```sh
//! cargo bench -p agora-index                                 # SQLite in a temporary directory
//! AGORA_BENCH_PG=1 cargo bench -p agora-index                # also a throwaway PostgreSQL (testkit)
//! AGORA_BENCH_PG_URL=postgres://... cargo bench -p agora-index   # also an existing, empty database
//! AGORA_BENCH_ROWS=100000 cargo bench -p agora-index         # fewer rows
//! ```
//!
//! Targets (issue 13): a feed page of 2,000 entries in 20 ms; a retention plan over everything in
//! 30 s and 200 MiB of peak RSS (VmHWM, reset before the plan through `/proc/self/clear_refs`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agora_gomod::module::ModulePath;
use agora_index::{
    ArtifactRecord, Index, IndexConfig, ModuleQuery, Origin, RetentionPolicy, MAX_FEED_LIMIT,
};
use agora_storage::{ArtifactKind, StorageKey};

const VERSIONS_PER_MODULE: u64 = 10;
const DAY: u64 = 86_400;

fn main() {
    let rows: u64 = std::env::var("AGORA_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    println!("agora-index bench: {rows} artifact rows");
    rt.block_on(run("sqlite", &IndexConfig::default(), dir.path(), rows));

    let mut _server = None;
    let url = match std::env::var("AGORA_BENCH_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("AGORA_BENCH_PG").is_some() => {
            let server = agora_testkit::PostgresServer::start();
            let url = server.create_database();
            _server = Some(server);
            Some(url)
        }
        _ => None,
    };
    match url {
        Some(url) => {
            let config = IndexConfig {
                url: Some(url),
                ..Default::default()
            };
            rt.block_on(run("postgres", &config, dir.path(), rows));
        }
        None => println!("postgres: skipped (set AGORA_BENCH_PG=1 or AGORA_BENCH_PG_URL)"),
    }
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// A small deterministic generator (no dependency for "random" sizes and serve times).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn module(i: u64) -> ModulePath {
    let host = match i % 4 {
        0 => "github.com",
        1 => "golang.org/x",
        2 => "gitlab.corp.example/team",
        _ => "example.com",
    };
    ModulePath::new(&format!("{host}/project{i:06}/module")).expect("valid module path")
}

/// Peak resident set size (VmHWM) in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn run(name: &str, config: &IndexConfig, data_dir: &std::path::Path, rows: u64) {
    let index = Index::open(config, data_dir).await.expect("open index");
    let versions = rows.div_ceil(3);
    let modules = versions.div_ceil(VERSIONS_PER_MODULE);
    let mut rng = Lcg(42);

    // Fill: every version's three artifacts, stored one second apart, in batches of 10,000.
    let start = Instant::now();
    let mut batch = Vec::with_capacity(10_002);
    let mut n = 0u64;
    'fill: for mi in 0..modules {
        let path = module(mi);
        for vi in 0..VERSIONS_PER_MODULE {
            let version = format!("v1.{vi}.0");
            let stored = t(n / 3);
            for (kind, size) in [
                (ArtifactKind::Info, 150),
                (ArtifactKind::Mod, 300 + rng.next() % 2000),
                (ArtifactKind::Zip, 10_000 + rng.next() % 5_000_000),
            ] {
                batch.push(ArtifactRecord {
                    module: path.clone(),
                    version: version.clone(),
                    kind,
                    size,
                    h1: (kind != ArtifactKind::Info)
                        .then(|| "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".to_owned()),
                    stored_at: stored,
                    origin: Origin::Upstream {
                        url: "https://proxy.golang.org".into(),
                    },
                });
                n += 1;
                if n >= rows {
                    break 'fill;
                }
            }
            if batch.len() >= 10_000 {
                index.record_stored_many(&batch).await.expect("record");
                batch.clear();
            }
        }
    }
    index.record_stored_many(&batch).await.expect("record");
    drop(batch);
    let fill = start.elapsed();
    println!(
        "{name}: recorded {n} artifacts in {:.1} s ({:.0} rows/s)",
        fill.as_secs_f64(),
        n as f64 / fill.as_secs_f64()
    );

    // Serves: half of the zips, flushed in batches of 100,000 (a busy interval's distinct keys).
    let start = Instant::now();
    let span = n / 3;
    let mut flushed = 0;
    for i in 0..span / 2 {
        let v = rng.next() % span;
        let key = StorageKey::artifact(
            &module(v / VERSIONS_PER_MODULE),
            &format!("v1.{}.0", v % VERSIONS_PER_MODULE),
            ArtifactKind::Zip,
        );
        index
            .served_batch()
            .record(&key, 1, t(0), t(span + rng.next() % (30 * DAY)));
        if i % 100_000 == 99_999 {
            flushed += index.flush_served().await.expect("flush").artifacts;
        }
    }
    flushed += index.flush_served().await.expect("flush").artifacts;
    let served = start.elapsed();
    println!(
        "{name}: flushed serves of {flushed} artifacts in {:.1} s ({:.0} artifacts/s)",
        served.as_secs_f64(),
        flushed as f64 / served.as_secs_f64()
    );

    // Feed pages of 2,000: from the middle (warm), and continued with the cursor.
    let middle = t(span / 2);
    let mut times = Vec::new();
    let mut page = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        page = index.feed(middle, MAX_FEED_LIMIT).await.expect("feed");
        times.push(start.elapsed());
    }
    times.sort();
    let start = Instant::now();
    let next = index
        .feed_after(page.last().expect("a page"), MAX_FEED_LIMIT)
        .await
        .expect("feed_after");
    let after = start.elapsed();
    println!(
        "{name}: feed page of {} entries: median {}, max {} (target 20 ms); next page by cursor ({} entries) {}",
        page.len(),
        ms(times[times.len() / 2]),
        ms(*times.last().expect("timed")),
        next.len(),
        ms(after)
    );

    // Listing and totals.
    let start = Instant::now();
    let stats = index.stats().await.expect("stats");
    println!(
        "{name}: stats in {} ({} modules, {} versions, {} artifacts, {:.1} GiB)",
        ms(start.elapsed()),
        stats.modules,
        stats.versions,
        stats.total().artifacts,
        stats.total().bytes as f64 / (1u64 << 30) as f64
    );
    let start = Instant::now();
    let listed = index
        .modules(&ModuleQuery {
            pattern: Some("golang.org/x".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("modules");
    println!(
        "{name}: ls golang.org/x (first {}) in {}",
        listed.len(),
        ms(start.elapsed())
    );
    let start = Instant::now();
    let vs = index.versions(&module(7)).await.expect("versions");
    println!(
        "{name}: versions of one module ({}) in {}",
        vs.len(),
        ms(start.elapsed())
    );

    // Retention over everything: a budget of half the bytes, 20 days unused, private modules kept.
    let now = t(span + 30 * DAY);
    let policy = RetentionPolicy {
        max_size: Some(stats.total().bytes / 2),
        unused_for: Some(Duration::from_secs(20 * DAY)),
        keep: vec!["gitlab.corp.example".into()],
        metadata: false,
    };
    for collected in [false, true] {
        let reset = reset_peak_rss();
        let base = peak_rss_kib();
        let start = Instant::now();
        let (count, summary) = if collected {
            let plan = index.plan_retention(&policy, now).await.expect("plan");
            (plan.evictions.len() as u64, plan.summary)
        } else {
            let mut count = 0u64;
            let summary = index
                .retention(&policy, now, |_| count += 1)
                .await
                .expect("retention");
            (count, summary)
        };
        let took = start.elapsed();
        let peak = peak_rss_kib();
        println!(
            "{name}: retention plan ({}) in {:.2} s (target 30 s): {count} zips, {:.1} GiB freed, within budget {}; peak RSS {:.0} MiB{} (target 200 MiB)",
            if collected { "collected" } else { "streamed" },
            took.as_secs_f64(),
            summary.evicted.bytes as f64 / (1u64 << 30) as f64,
            summary.within_budget,
            peak as f64 / 1024.0,
            if reset {
                format!(", {:.0} MiB at its start", base as f64 / 1024.0)
            } else {
                " (whole process: peak not resettable)".to_owned()
            },
        );
    }
    index.close().await.expect("close");
}
