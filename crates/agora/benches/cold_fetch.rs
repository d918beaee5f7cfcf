//! Cold-fetch benchmark: the fixture module set fetched through an empty agora that computes
//! every answer from git (no upstream proxy), against `GOPROXY=direct go mod download` of the same
//! set by the go command itself. Both are measured in the same run on the same machine and
//! reported as a ratio, plus the cost of a new tag in a repository agora has already mirrored.
//!
//! Run: `cargo bench -p agora --bench cold_fetch` (needs scripts/setup). `AGORA_BENCH_RUNS=N`
//! sets the number of repetitions (default 3; the median is reported).

use std::time::{Duration, Instant};

use agora_testkit::fixtures::GREET;
use agora_testkit::git::git_command;
use agora_testkit::{public_modules, AgoraBuilder, GitHost, GoClient};

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("AGORA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let host = GitHost::new();
    let fixtures = public_modules(&host);
    let queries: Vec<String> = fixtures.queries().iter().map(|s| s.to_string()).collect();
    let gitconfig = host.gitconfig_path();

    let mut direct = Vec::new();
    let mut via_agora = Vec::new();
    let mut new_tag = Vec::new();
    let mut first_greet = Vec::new();
    for run in 0..runs {
        // The go command, straight from git, with an empty module cache.
        let go = GoClient::find().gitconfig(&gitconfig);
        let t = Instant::now();
        download_all(&go, "direct", &queries);
        direct.push(t.elapsed());

        // An empty agora in front of the same repositories; the client's cache is empty too.
        let data = tempfile::tempdir().unwrap();
        let agora = empty_agora(data.path(), &gitconfig).start();
        let go = GoClient::find().gitconfig(&gitconfig);
        let t = Instant::now();
        download_all(&go, agora.url(), &queries);
        via_agora.push(t.elapsed());

        // One module alone, cold, then a new tag of the same repository (the mirror exists).
        let data2 = tempfile::tempdir().unwrap();
        let agora2 = empty_agora(data2.path(), &gitconfig)
            .env("AGORA_GIT_REFRESH_INTERVAL", "0s")
            .start();
        let go = GoClient::find().gitconfig(&gitconfig);
        let t = Instant::now();
        download_all(&go, agora2.url(), &[format!("{GREET}@v1.0.0")]);
        first_greet.push(t.elapsed());
        let tag = format!("v1.3.{run}");
        let dir = host.repo_dir(GREET);
        std::fs::write(dir.join("bench.txt"), &tag).unwrap();
        for args in [
            vec!["add", "bench.txt"],
            vec!["commit", "-q", "-m", "bench"],
            vec!["tag", tag.as_str()],
        ] {
            let ok = git_command(&dir).args(&args).status().unwrap().success();
            assert!(ok, "git {args:?}");
        }
        let go = GoClient::find().gitconfig(&gitconfig);
        let t = Instant::now();
        download_all(&go, agora2.url(), &[format!("{GREET}@{tag}")]);
        new_tag.push(t.elapsed());
    }

    let (d, a) = (median(direct), median(via_agora));
    let (f, n) = (median(first_greet), median(new_tag));
    println!(
        "cold fetch of {} module versions, median of {runs} runs",
        queries.len()
    );
    println!("| measurement | time | ratio |");
    println!("|---|---|---|");
    println!(
        "| `GOPROXY=direct go mod download` (baseline) | {:.0} ms | 1.00 |",
        ms(d)
    );
    println!(
        "| same set through an empty agora (from git) | {:.0} ms | {:.2} |",
        ms(a),
        ms(a) / ms(d)
    );
    println!(
        "| first version of a repository through agora | {:.0} ms | 1.00 |",
        ms(f)
    );
    println!(
        "| new tag of an already mirrored repository | {:.0} ms | {:.2} |",
        ms(n),
        ms(n) / ms(f)
    );
}

/// agora with an empty data directory, no upstream, and the fixtures as private modules from git.
fn empty_agora(data: &std::path::Path, gitconfig: &std::path::Path) -> AgoraBuilder {
    AgoraBuilder::new(env!("CARGO_BIN_EXE_agora"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "off",
            "--data",
        ])
        .arg(data)
        .env("AGORA_ROUTING_PRIVATE", "github.com/agora-fixtures")
        .env("AGORA_LOG_LEVEL", "warn")
        .env("GIT_CONFIG_GLOBAL", gitconfig)
        .env_remove("GOPROXY")
        .env_remove("GOPRIVATE")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn download_all(go: &GoClient, goproxy: &str, queries: &[String]) {
    let mut args = vec!["mod".to_string(), "download".into(), "-json".into()];
    args.extend(queries.iter().cloned());
    let mut cmd = go.command(&args);
    cmd.env("GOPROXY", goproxy);
    let out = go.run(cmd).expect("go mod download");
    assert!(
        out.status.success(),
        "go mod download via {goproxy} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
