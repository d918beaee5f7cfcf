//! Cold-fetch benchmark: what an empty agora costs when it computes every answer from git (no
//! upstream proxy), against `GOPROXY=direct go mod download` of the same module versions by the go
//! command itself, and what a new tag of an already mirrored repository costs against the first
//! version of that repository. Every ratio is against a baseline measured in the same run.
//!
//! Rows (each the median of `AGORA_BENCH_RUNS` runs, default 5):
//!
//! 1. `GOPROXY=direct go mod download` of the fixture set (the baseline): one go process, empty
//!    module cache.
//! 2. The same `.info`, `.mod` and `.zip` files (what `go mod download` fetches) from an empty
//!    agora, by a minimal HTTP client in this process: one thread per module version asks for its
//!    `.info`, then `.mod`, then `.zip`, all versions at once. This is agora's own time, server-side.
//! 3. The same set through an empty agora by `go mod download` (includes the go process's own
//!    start-up and work, as a user would see it).
//! 4. The first version of a repository (`.info`, `.mod`, `.zip`) from an empty agora (baseline of 5).
//! 5. A new tag of that repository once its mirror is complete and older than the refresh
//!    interval, so that exactly one incremental `git fetch` is due, as in production.
//! 6. `GOPROXY=direct go mod download` of the first version of a repository with over 100 MiB of
//!    history and a small tree (baseline of 7): the go command fetches that one commit.
//! 7. The same version from an empty agora (`git.first_fetch = "minimal"`, the default: the
//!    commit alone, the history in the background).
//! 8. The same version from an empty agora with `git.first_fetch = "full"`: a whole mirror before
//!    the first answer (baseline of 9).
//! 9. A new tag of that repository, once the default agora of row 7 has completed its mirror and
//!    the mirror is due for a refresh: one incremental fetch.
//!
//! A last, untimed pass runs each case once more with `GIT_TRACE` and reports how many git
//! processes it started (`git` built-ins, including the ones git runs itself such as
//! `upload-pack` and `index-pack`). `AGORA_BENCH_TRACE_DIR=DIR` keeps those traces in `DIR`;
//! `AGORA_BENCH_VERBOSE=1` prints the time of every request.
//!
//! Run: `cargo bench -p agora --bench cold_fetch` (needs scripts/setup: git and go).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_testkit::fixtures::{deterministic_bytes, GREET};
use agora_testkit::git::git_command;
use agora_testkit::{public_modules, AgoraBuilder, GitHost, GoClient};
use support::{fetch_all, median, ms};

/// The refresh interval of the agora that serves the new-tag row: long enough that `.info`,
/// `.mod` and `.zip` of one version share one fetch, short enough to wait out between versions.
const REFRESH: Duration = Duration::from_secs(2);

/// A module whose repository has a long history (see [`make_history`]).
const HISTORY: &str = "github.com/agora-fixtures/history";
const HISTORY_COMMITS: usize = 1700;
const HISTORY_BLOB: usize = 64 << 10;

const ROWS: usize = 9;

fn main() {
    let runs: usize = std::env::var("AGORA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let host = GitHost::new();
    let fixtures = public_modules(&host);
    make_history(&host);
    let queries: Vec<String> = fixtures.queries().iter().map(|s| s.to_string()).collect();
    let gitconfig = host.gitconfig_path();
    let trace_tmp = tempfile::tempdir().unwrap();
    let trace_dir = std::env::var_os("AGORA_BENCH_TRACE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| trace_tmp.path().to_owned());
    std::fs::create_dir_all(&trace_dir).unwrap();

    let mut times: [Vec<Duration>; ROWS] = Default::default();
    let mut tags = 0;
    // The last run is the traced one; it is not timed.
    let mut traces = [0; ROWS];
    for run in 0..=runs {
        let trace = (run == runs).then_some(trace_dir.as_path());
        let trace_file = |name: &str| trace.map(|d| d.join(name));
        let mut t = [Duration::ZERO; ROWS];

        // The go command, straight from git, with an empty module cache.
        let go = with_trace(GoClient::find().gitconfig(&gitconfig), trace_file("0"));
        let start = Instant::now();
        download_all(&go, "direct", &queries);
        t[0] = start.elapsed();

        // An empty agora, the same files by HTTP.
        let data = tempfile::tempdir().unwrap();
        let agora = empty_agora(data.path(), &gitconfig, trace_file("1")).start();
        let start = Instant::now();
        fetch_all(agora.url(), &queries);
        t[1] = start.elapsed();
        drop(agora);

        // An empty agora, the same set by the go command.
        let data = tempfile::tempdir().unwrap();
        let agora = empty_agora(data.path(), &gitconfig, trace_file("2")).start();
        let go = GoClient::find().gitconfig(&gitconfig);
        let start = Instant::now();
        download_all(&go, agora.url(), &queries);
        t[2] = start.elapsed();
        drop(agora);

        let tag = format!("v1.3.{tags}");
        tags += 1;
        (t[3], t[4]) = first_then_new_tag(
            &host,
            &gitconfig,
            GREET,
            "v1.0.0",
            &tag,
            [trace_file("3"), trace_file("4")],
        );

        let first = [format!("{HISTORY}@v1.0.0")];
        let go = with_trace(GoClient::find().gitconfig(&gitconfig), trace_file("5"));
        let start = Instant::now();
        download_all(&go, "direct", &first);
        t[5] = start.elapsed();

        let data = tempfile::tempdir().unwrap();
        let agora = empty_agora(data.path(), &gitconfig, trace_file("7"))
            .env("AGORA_GIT_FIRST_FETCH", "full")
            .start();
        let start = Instant::now();
        fetch_all(agora.url(), &first);
        t[7] = start.elapsed();
        drop(agora);

        let tag = format!("v1.3.{tags}");
        tags += 1;
        (t[6], t[8]) = first_then_new_tag(
            &host,
            &gitconfig,
            HISTORY,
            "v1.0.0",
            &tag,
            [trace_file("6"), trace_file("8")],
        );

        if trace.is_some() {
            for (i, n) in traces.iter_mut().enumerate() {
                *n = count_git(&trace_dir.join(i.to_string()));
            }
        } else {
            for (all, one) in times.iter_mut().zip(t) {
                all.push(one);
            }
        }
    }

    let t = times.map(median);
    println!(
        "cold fetch of {} module versions ({} repositories), median of {runs} runs",
        queries.len(),
        repositories(&queries)
    );
    println!();
    println!("| measurement | time | ratio | git processes |");
    println!("|---|---:|---:|---:|");
    let rows: [(&str, usize); ROWS] = [
        ("`GOPROXY=direct go mod download` (baseline)", 0),
        (
            "empty agora, `.info` + `.mod` + `.zip` of the same set by HTTP (server-side)",
            0,
        ),
        ("empty agora, `go mod download` of the same set through it", 0),
        (
            "first version of a small repository (greet), by HTTP (baseline of the next row)",
            3,
        ),
        (
            "new tag of greet, its mirror due for a refresh, by HTTP",
            3,
        ),
        (
            "`GOPROXY=direct go mod download` of the first version of `history` (baseline of the next row)",
            5,
        ),
        (
            "first version of `history` from an empty agora, by HTTP",
            5,
        ),
        (
            "the same with `git.first_fetch = \"full\"`: a whole mirror first (baseline of the next row)",
            7,
        ),
        (
            "new tag of `history`, its mirror complete and due for a refresh, by HTTP",
            7,
        ),
    ];
    for (i, (name, base)) in rows.iter().enumerate() {
        println!(
            "| {name} | {:.0} ms | {:.2} | {} |",
            ms(t[i]),
            ms(t[i]) / ms(t[*base]),
            traces[i]
        );
    }
    println!();
    println!(
        "`history`: {HISTORY_COMMITS} commits, each replacing a {} KiB incompressible file \
         ({} MiB of history, a small tree at every tag).",
        HISTORY_BLOB >> 10,
        (HISTORY_COMMITS * HISTORY_BLOB) >> 20
    );
}

/// `.info`, `.mod` and `.zip` of `module@first` from an empty agora, then of `module@tag` (made
/// here) once the mirror is older than the refresh interval: the two durations.
fn first_then_new_tag(
    host: &GitHost,
    gitconfig: &Path,
    module: &str,
    first: &str,
    tag: &str,
    traces: [Option<PathBuf>; 2],
) -> (Duration, Duration) {
    let data = tempfile::tempdir().unwrap();
    let agora = empty_agora(data.path(), gitconfig, traces[0].clone())
        .env(
            "AGORA_GIT_REFRESH_INTERVAL",
            format!("{}s", REFRESH.as_secs()),
        )
        .start();
    let start = Instant::now();
    fetch_all(agora.url(), &[format!("{module}@{first}")]);
    let first_t = start.elapsed();
    wait_for_complete_mirrors(data.path());
    let fetched = Instant::now();
    let dir = host.repo_dir(module);
    std::fs::write(dir.join("bench.txt"), tag).unwrap();
    for args in [
        vec!["add", "bench.txt"],
        vec!["commit", "-q", "-m", "bench"],
        vec!["tag", tag],
    ] {
        let ok = git_command(&dir).args(&args).status().unwrap().success();
        assert!(ok, "git {args:?}");
    }
    std::thread::sleep((REFRESH + Duration::from_millis(100)).saturating_sub(fetched.elapsed()));
    let [first_trace, tag_trace] = &traces;
    if let Some(f) = first_trace {
        // Count the new tag alone: git opens the trace file anew in each process.
        std::fs::rename(f, f.with_extension("first")).ok();
    }
    let start = Instant::now();
    fetch_all(agora.url(), &[format!("{module}@{tag}")]);
    let tag_t = start.elapsed();
    if let (Some(f), Some(g)) = (first_trace, tag_trace) {
        std::fs::rename(f, g).ok();
        std::fs::rename(f.with_extension("first"), f).ok();
    }
    (first_t, tag_t)
}

/// Waits until no mirror under the agora data directory `data` is partial (see `agora-vcs`'s
/// mirror docs: a partial mirror carries an `agora-partial` file until its history is in).
fn wait_for_complete_mirrors(data: &Path) {
    let root = data.join("_agora/mirrors");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let partial = std::fs::read_dir(&root)
            .map(|dirs| {
                dirs.flatten()
                    .any(|d| d.path().join("agora-partial").exists())
            })
            .unwrap_or(false);
        if !partial {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mirror still partial after 300 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`HISTORY`]: a module whose repository has a long history but a small tree, tagged `v1.0.0`
/// at its tip: where a mirror's second version (a fetch) and its first (a clone) part ways.
fn make_history(host: &GitHost) {
    let repo = agora_testkit::Repo::init(host.repo_dir(HISTORY));
    let dir = repo.path().to_owned();
    let mut stream = Vec::new();
    for i in 0..HISTORY_COMMITS {
        let time = 1_600_000_000 + 60 * i as i64;
        write!(
            stream,
            "commit refs/heads/main\ncommitter Agora Bench <bench@agora.test> {time} +0000\ndata 7\nhistory\n"
        )
        .unwrap();
        if i == 0 {
            let files = [
                ("go.mod", format!("module {HISTORY}\n\ngo 1.21\n")),
                ("history.go", "package history\n".to_owned()),
            ];
            for (name, body) in files {
                write!(
                    stream,
                    "M 100644 inline {name}\ndata {}\n{body}\n",
                    body.len()
                )
                .unwrap();
            }
        }
        let blob = deterministic_bytes(i as u64, HISTORY_BLOB);
        write!(stream, "M 100644 inline data.bin\ndata {}\n", blob.len()).unwrap();
        stream.extend_from_slice(&blob);
        stream.extend_from_slice(b"\n");
    }
    stream.extend_from_slice(b"reset refs/tags/v1.0.0\nfrom refs/heads/main\n\n");
    let mut child = git_command(&dir)
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success(), "git fast-import");
    let ok = git_command(&dir)
        .args(["reset", "-q", "--hard", "main"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "git reset");
}

/// Sets `GIT_TRACE` for the go command's git processes.
fn with_trace(go: GoClient, trace: Option<PathBuf>) -> GoClient {
    match trace {
        Some(path) => go.env("GIT_TRACE", path),
        None => go,
    }
}

/// The number of git processes a `GIT_TRACE` file records: every git process that runs a
/// built-in command logs exactly one `trace: built-in:` line.
fn count_git(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("trace: built-in: git "))
        .count()
}

fn repositories(queries: &[String]) -> usize {
    let mut repos: Vec<&str> = queries
        .iter()
        .map(|q| {
            let module = q.split('@').next().unwrap_or(q);
            // github.com/owner/repo[/...]
            let end = module
                .match_indices('/')
                .nth(2)
                .map_or(module.len(), |(i, _)| i);
            &module[..end]
        })
        .collect();
    repos.sort();
    repos.dedup();
    repos.len()
}

/// agora with an empty data directory, no upstream, and the fixtures as private modules from git.
fn empty_agora(data: &Path, gitconfig: &Path, trace: Option<PathBuf>) -> AgoraBuilder {
    let builder = AgoraBuilder::new(env!("CARGO_BIN_EXE_agora"))
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
        .env_remove("GOPRIVATE");
    // agora refuses unknown AGORA_* variables, such as this benchmark's own.
    let builder = std::env::vars_os()
        .filter(|(k, _)| k.to_string_lossy().starts_with("AGORA_BENCH_"))
        .fold(builder, |b, (k, _)| b.env_remove(k));
    match trace {
        Some(path) => builder.env("GIT_TRACE", path),
        None => builder.env_remove("GIT_TRACE"),
    }
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
