//! What verifying against the checksum database costs on a cold fetch through an upstream proxy
//! (issue 11's target: at most 1.2× the time without it, tiles warm).
//!
//! The fixture modules are served by a static upstream proxy on loopback; the checksum database
//! is the Go reference implementation on loopback (testkit's `SumdbServer`), knowing the go
//! command's hashes of every version. Each run fetches `.info`, `.mod` and `.zip` of every
//! version, one thread per version, all at once, from an empty agora:
//!
//! 1. with `sumdb.verify = false` (the baseline);
//! 2. verifying, with the tiles and the verified tree head already in storage (a busy proxy has
//!    them: tiles change only as the log grows), so each version costs its lookups;
//! 3. verifying with nothing in storage (tiles fetched and proven as needed), for reference.
//!
//! Rows alternate within each run; the median of `AGORA_BENCH_RUNS` runs (default 7) is reported.
//! Run: `cargo bench -p agora --bench verify` (needs scripts/setup: git and go).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use agora_testkit::{public_modules, AgoraBuilder, GitHost, GoClient, SumdbServer, UpstreamProxy};
use support::{fetch_all, median, ms};

fn main() {
    let runs: usize = std::env::var("AGORA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let host = GitHost::new();
    let fixtures = public_modules(&host);
    let go = GoClient::find().gitconfig(host.gitconfig_path());
    let queries: Vec<String> = fixtures.queries().iter().map(|s| s.to_string()).collect();
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let upstream = UpstreamProxy::from_fixtures(&go, &host, &refs);
    let db = SumdbServer::start("sumdb.agora.test");
    for q in &queries {
        let d = go.mod_download("direct", q).expect("baseline download");
        db.know_download(q, &d);
    }

    // One verifying pass fills a data directory with the tiles and tree head the runs reuse.
    let warm = tempfile::tempdir().unwrap();
    {
        let agora = agora(warm.path(), &upstream, &db, true).start();
        fetch_all(agora.url(), &queries);
    }

    let mut times: [Vec<Duration>; 3] = Default::default();
    for _ in 0..runs {
        for (row, times) in times.iter_mut().enumerate() {
            let data = tempfile::tempdir().unwrap();
            if row == 1 {
                copy_dir(&warm.path().join("sumdb"), &data.path().join("sumdb"));
                copy_dir(
                    &warm.path().join("_agora/sumdb"),
                    &data.path().join("_agora/sumdb"),
                );
            }
            let agora = agora(data.path(), &upstream, &db, row != 0).start();
            let start = Instant::now();
            fetch_all(agora.url(), &queries);
            times.push(start.elapsed());
        }
    }
    let t = times.map(median);
    println!(
        "cold fetch of {} module versions through an upstream proxy, median of {runs} runs",
        queries.len()
    );
    println!();
    println!("| measurement | time | ratio |");
    println!("|---|---:|---:|");
    for (i, name) in [
        "empty agora, `sumdb.verify = false` (baseline)",
        "empty agora verifying every go.mod and zip, tiles warm",
        "empty agora verifying, no tiles in storage",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "| {name} | {:.0} ms | {:.2} |",
            ms(t[i]),
            ms(t[i]) / ms(t[0])
        );
    }
}

fn agora(data: &Path, upstream: &UpstreamProxy, db: &SumdbServer, verify: bool) -> AgoraBuilder {
    let builder = AgoraBuilder::new(env!("CARGO_BIN_EXE_agora"))
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream"])
        .arg(upstream.url())
        .arg("--data")
        .arg(data)
        .env("GOSUMDB", db.gosumdb())
        .env("AGORA_SUMDB_VERIFY", verify.to_string())
        .env("AGORA_LOG_LEVEL", "warn")
        .env_remove("GOPROXY")
        .env_remove("GOPRIVATE")
        .env_remove("GONOSUMDB");
    // agora refuses unknown AGORA_* variables, such as this benchmark's own.
    std::env::vars_os()
        .filter(|(k, _)| k.to_string_lossy().starts_with("AGORA_BENCH_"))
        .fold(builder, |b, (k, _)| b.env_remove(k))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}
