//! Fault tests: agora must never lose or corrupt data when it is killed, when its upstream or git
//! server dies or lies, or when its storage stops taking writes; and no request path, however odd,
//! gets a 5xx or touches a file outside the data directory.
//!
//! The public modules here are synthetic (made with `agora_gomod::create_zip`, no go command
//! needed), so every test knows the exact bytes and `h1:` hash each artifact must have.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_gomod::module::escape_path;
use agora_gomod::{create_zip, MemFile};
use agora_testkit::fixtures::deterministic_bytes;
use agora_testkit::go::zip_entries;
use agora_testkit::{http, Fault, GitHost, HttpsGitServer, UpstreamProxy};

use crate::support::*;

const VERSION: &str = "v1.0.0";

/// One synthetic module version and the exact bytes of its three artifacts.
struct Synth {
    path: String,
    info: Vec<u8>,
    go_mod: Vec<u8>,
    zip: Vec<u8>,
    h1: String,
}

/// A GOPROXY tree of synthetic modules, `example.com/faults/t<N>/m00`... (every third one with
/// an upper-case letter, so escaping is exercised too). Each tree has its own `t<N>`: the shared
/// checksum database records one hash per module version for good.
struct SynthTree {
    dir: tempfile::TempDir,
    modules: Vec<Synth>,
}

impl SynthTree {
    fn new(n: usize, blob_len: usize) -> SynthTree {
        let dir = tempfile::Builder::new()
            .prefix("agora-faults-")
            .tempdir()
            .unwrap();
        static TREES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let t = TREES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let modules = (0..n)
            .map(|i| {
                let path = if i % 3 == 0 {
                    format!("example.com/faults/t{t}/Mod{i:02}")
                } else {
                    format!("example.com/faults/t{t}/m{i:02}")
                };
                let synth = synth_module(&path, i as u64, blob_len);
                // The checksum database knows them, as it would know any public module.
                world().sumdb.know(
                    &path,
                    VERSION,
                    &synth.h1,
                    &agora_gomod::dirhash::hash_go_mod(&synth.go_mod),
                );
                let at = dir.path().join(escape_path(&path).unwrap()).join("@v");
                std::fs::create_dir_all(&at).unwrap();
                std::fs::write(at.join("list"), format!("{VERSION}\n")).unwrap();
                std::fs::write(at.join(format!("{VERSION}.info")), &synth.info).unwrap();
                std::fs::write(at.join(format!("{VERSION}.mod")), &synth.go_mod).unwrap();
                std::fs::write(at.join(format!("{VERSION}.zip")), &synth.zip).unwrap();
                synth
            })
            .collect();
        SynthTree { dir, modules }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Served key (relative path in the data directory, which is the GOPROXY layout) → bytes.
    fn expected(&self) -> BTreeMap<String, &[u8]> {
        let mut out = BTreeMap::new();
        for m in &self.modules {
            for (ext, bytes) in [("info", &m.info), ("mod", &m.go_mod), ("zip", &m.zip)] {
                let key = artifact_path(&m.path, VERSION, ext);
                out.insert(key.trim_start_matches('/').to_owned(), bytes.as_slice());
            }
        }
        out
    }
}

fn synth_module(path: &str, seed: u64, blob_len: usize) -> Synth {
    let go_mod = format!("module {path}\n\ngo 1.21\n").into_bytes();
    let files = vec![
        MemFile::regular("go.mod", go_mod.clone()),
        MemFile::regular(
            "lib.go",
            format!("package lib\n\n// Seed is {seed}.\nconst Seed = {seed}\n"),
        ),
        MemFile::regular("data/blob.bin", deterministic_bytes(seed + 1000, blob_len)),
    ];
    let mut out = Cursor::new(Vec::new());
    let created = create_zip(&mut out, path, VERSION, &files, &Default::default())
        .unwrap_or_else(|e| panic!("create zip for {path}: {e}"));
    let zip = out.into_inner();
    assert_eq!(
        agora_gomod::dirhash::hash_zip(Cursor::new(&zip)).unwrap(),
        created.h1
    );
    Synth {
        path: path.to_owned(),
        info: format!("{{\"Version\":\"{VERSION}\",\"Time\":\"2024-01-02T03:04:05Z\"}}")
            .into_bytes(),
        go_mod,
        zip,
        h1: created.h1,
    }
}

/// Checks the whole data directory: every file outside `_agora/` is a served key holding exactly
/// the expected bytes (zips also by `h1:`), nothing else. Returns the keys present.
fn check_data_dir(
    data: &Path,
    expected: &BTreeMap<String, &[u8]>,
    h1: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut present = Vec::new();
    let mut problems = Vec::new();
    for f in files_under(data) {
        if f.starts_with("_agora/") {
            continue;
        }
        if f.starts_with("sumdb/sumdb.agora.test/tile/") {
            // Checksum-database tiles, kept only once proven against the log.
            continue;
        }
        if f.ends_with("/@v/list") || f.ends_with("/@latest") {
            // Mutable answers: replaced atomically, so they must at least be complete.
            let body = std::fs::read(data.join(&f)).unwrap();
            if f.ends_with("/@v/list") && body != format!("{VERSION}\n").as_bytes() {
                problems.push(format!("{f}: list is {:?}", String::from_utf8_lossy(&body)));
            }
            continue;
        }
        let Some(want) = expected.get(&f) else {
            problems.push(format!("{f}: not a served key (leftover or stray file)"));
            continue;
        };
        let got = std::fs::read(data.join(&f)).unwrap();
        if got != *want {
            problems.push(format!(
                "{f}: {} bytes stored, {} expected: partial or corrupt artifact",
                got.len(),
                want.len()
            ));
        }
        if let Some(h) = h1.get(&f) {
            match agora_gomod::dirhash::hash_zip(Cursor::new(&got)) {
                Ok(got_h1) if &got_h1 == h => {}
                other => problems.push(format!("{f}: h1 {other:?}, want {h}")),
            }
        }
        present.push(f);
    }
    assert!(
        problems.is_empty(),
        "data directory {} is corrupt:\n{}",
        data.display(),
        problems.join("\n")
    );
    present
}

fn zip_h1s(tree: &SynthTree) -> BTreeMap<String, String> {
    tree.modules
        .iter()
        .map(|m| {
            (
                artifact_path(&m.path, VERSION, "zip")
                    .trim_start_matches('/')
                    .to_owned(),
                m.h1.clone(),
            )
        })
        .collect()
}

/// Data-directory files that are not served keys: scratch files and other leftovers.
fn scratch_files(data: &Path) -> Vec<String> {
    files_under(&data.join("_agora/tmp"))
}

/// `kill -9` while 50 zips (and their go.mod files) are being fetched: after the crash every
/// artifact in the data directory is absent or complete and hash-correct, every answer a client
/// got in full was correct, and a restarted agora on the same directory serves all of them.
#[test]
fn kill_9_during_fifty_concurrent_cold_fetches_leaves_no_partial_artifact() {
    let tree = SynthTree::new(50, 256 << 10);
    let expected = tree.expected();
    let h1 = zip_h1s(&tree);
    let up = UpstreamProxy::serve_dir(tree.root());
    // Stagger the upstream answers over 0..2 s so that at the kill some fetches are done, some
    // are streaming or being validated, and some have not started.
    for (i, m) in tree.modules.iter().enumerate() {
        let ms = 40 * i as u64;
        up.set_path_fault(
            &artifact_path(&m.path, VERSION, "zip"),
            Fault::Delay(Duration::from_millis(ms)),
        );
        up.set_path_fault(
            &artifact_path(&m.path, VERSION, "mod"),
            Fault::Delay(Duration::from_millis(ms / 2)),
        );
    }
    let data = tempfile::tempdir().unwrap();
    let mut agora = builder(data.path(), &up.url())
        .env("AGORA_UPSTREAM_RETRIES", "0")
        .start();

    let expected_arc: Arc<BTreeMap<String, Vec<u8>>> = Arc::new(
        expected
            .iter()
            .map(|(k, v)| (k.clone(), v.to_vec()))
            .collect(),
    );
    let mut threads = Vec::new();
    for m in &tree.modules {
        for ext in ["zip", "mod"] {
            let path = artifact_path(&m.path, VERSION, ext);
            let url = format!("{}{path}", agora.url());
            let expected = expected_arc.clone();
            threads.push(std::thread::spawn(move || {
                match http::try_request("GET", &url, &[], None) {
                    Ok((200, _, body)) => {
                        assert!(
                            body == expected[path.trim_start_matches('/')],
                            "{path}: a client was served {} wrong bytes before the crash",
                            body.len()
                        );
                        true
                    }
                    // The process died under the request: a transport error, never a short 200.
                    Ok((status, _, body)) => {
                        panic!(
                            "{path}: status {status} before the crash: {}",
                            http::text(&body)
                        )
                    }
                    Err(_) => false,
                }
            }));
        }
    }
    // Wait until fetches are under way, then kill in the middle of them.
    let deadline = Instant::now() + Duration::from_secs(20);
    while up.requests().len() < 30 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    agora.kill();
    let served: usize = threads
        .into_iter()
        .map(|t| usize::from(t.join().expect("client thread")))
        .sum();
    assert!(
        served < 100,
        "every request finished before the kill: the test did not crash agora mid-way"
    );

    let present = check_data_dir(data.path(), &expected, &h1);
    let leftovers = scratch_files(data.path());
    eprintln!(
        "after kill -9: {served}/100 answers completed, {} artifacts stored, {} scratch files left",
        present.len(),
        leftovers.len()
    );

    // Restart on the same data directory, upstream now fast: everything is served correctly.
    up.clear_faults();
    let agora = builder(data.path(), &up.url()).start();
    let threads: Vec<_> = expected_arc
        .keys()
        .map(|key| {
            let url = format!("{}/{key}", agora.url());
            let (key, expected) = (key.clone(), expected_arc.clone());
            std::thread::spawn(move || {
                let (status, _, body) = http::get(&url);
                assert_eq!(status, 200, "{key}: {}", http::text(&body));
                assert!(body == expected[&key], "{key}: wrong bytes after restart");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread after restart");
    }
    let present = check_data_dir(data.path(), &expected, &h1);
    assert_eq!(present.len(), expected.len(), "{present:?}");
    // Scratch files of the killed process do not end up under any key (checked above) and do
    // not stop anything; the restarted process leaves none of its own.
    let now = scratch_files(data.path());
    let own: Vec<_> = now.iter().filter(|f| !leftovers.contains(f)).collect();
    assert!(own.is_empty(), "scratch files left by a clean run: {own:?}");
}

/// The upstream dies mid-transfer or answers garbage: agora answers 502, stores nothing, and
/// serves and caches the good answer once the upstream is healthy again.
#[test]
fn upstream_death_and_garbage_are_refused_and_never_cached() {
    let tree = SynthTree::new(14, 64 << 10);
    let expected = tree.expected();
    let h1 = zip_h1s(&tree);
    let up = UpstreamProxy::serve_dir(tree.root());
    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), &up.url())
        .env("AGORA_UPSTREAM_RETRIES", "0")
        .start();
    let m = |i: usize| &tree.modules[i];
    let p = |i: usize, ext: &str| artifact_path(&m(i).path, VERSION, ext);

    // A zip of module 0 under module 1's name: wrong prefix.
    let other_zip = m(0).zip.clone();
    // A zip of module 2 made for another version: wrong version prefix.
    let mut other_version = Cursor::new(Vec::new());
    create_zip(
        &mut other_version,
        &m(2).path,
        "v1.0.1",
        &[MemFile::regular("go.mod", m(2).go_mod.clone())],
        &Default::default(),
    )
    .unwrap();
    let other_version = other_version.into_inner();

    enum Bad {
        Fault(Fault),
        Body(Vec<u8>),
    }
    let cases: Vec<(&str, String, Bad)> = vec![
        (
            "zip: connection dies mid-body",
            p(3, "zip"),
            Bad::Fault(Fault::Truncate(20_000)),
        ),
        (
            "zip: connection closed, no answer",
            p(4, "zip"),
            Bad::Fault(Fault::CloseConnection),
        ),
        (
            "info: connection dies mid-body",
            p(5, "info"),
            Bad::Fault(Fault::Truncate(5)),
        ),
        (
            "mod: connection dies mid-body",
            p(6, "mod"),
            Bad::Fault(Fault::Truncate(3)),
        ),
        (
            "zip: another module's zip",
            p(1, "zip"),
            Bad::Body(other_zip),
        ),
        (
            "zip: another version's zip",
            p(2, "zip"),
            Bad::Body(other_version),
        ),
        (
            "zip: truncated zip, complete HTTP answer",
            p(7, "zip"),
            Bad::Body(m(7).zip[..m(7).zip.len() / 2].to_vec()),
        ),
        (
            "zip: not a zip",
            p(8, "zip"),
            Bad::Body(b"<html>oops</html>".to_vec()),
        ),
        ("zip: empty body", p(9, "zip"), Bad::Body(Vec::new())),
        (
            "info: bad JSON",
            p(10, "info"),
            Bad::Body(b"{\"Version\": \"v1.0".to_vec()),
        ),
        (
            "info: another version",
            p(11, "info"),
            Bad::Body(b"{\"Version\":\"v1.0.1\",\"Time\":\"2024-01-02T03:04:05Z\"}".to_vec()),
        ),
        (
            "mod: no module line",
            p(12, "mod"),
            Bad::Body(b"hello world".to_vec()),
        ),
        (
            "mod: not a go.mod",
            p(13, "mod"),
            Bad::Body(b"\x00\x01garbage(".to_vec()),
        ),
    ];
    for (name, path, bad) in &cases {
        match bad {
            Bad::Fault(f) => up.set_path_fault(path, f.clone()),
            Bad::Body(b) => up.add_file(path, b.clone(), "application/octet-stream"),
        }
        let (s, _, body) = http::get(&format!("{}{path}", agora.url()));
        assert_eq!(s, 502, "{name}: {}", http::text(&body));
        assert!(!http::text(&body).trim().is_empty(), "{name}: no message");
    }
    let stored: Vec<_> = files_under(data.path())
        .into_iter()
        .filter(|f| !f.starts_with("_agora/"))
        .collect();
    assert!(stored.is_empty(), "refused answers were stored: {stored:?}");
    assert!(
        scratch_files(data.path()).is_empty(),
        "scratch files of refused downloads were left: {:?}",
        scratch_files(data.path())
    );

    // The upstream heals: the good answer is served, stored and then served from cache.
    up.clear_faults();
    for (name, path, _) in &cases {
        up.remove_file(path);
        let url = format!("{}{path}", agora.url());
        let (s, h, body) = http::get(&url);
        assert_eq!(s, 200, "{name} after healing: {}", http::text(&body));
        assert_eq!(h["x-agora-cache"], "miss", "{name}");
        assert!(
            body == expected[path.trim_start_matches('/')],
            "{name}: wrong bytes"
        );
        let before = up.count(path);
        let (s, h, again) = http::get(&url);
        assert_eq!(
            (s, h["x-agora-cache"].to_str().unwrap()),
            (200, "hit"),
            "{name}"
        );
        assert_eq!(again, body, "{name}");
        assert_eq!(
            up.count(path),
            before,
            "{name}: a cached answer went upstream"
        );
    }
    let present = check_data_dir(data.path(), &expected, &h1);
    assert_eq!(present.len(), cases.len(), "{present:?}");
}

/// A minimal agora config for one private HTTPS git host, with a rule (no go-get lookup).
fn private_config(dir: &Path, srv: &HttpsGitServer) -> PathBuf {
    let path = dir.join("agora.toml");
    let host = srv.host();
    std::fs::write(
        &path,
        format!(
            "ca_file = {ca:?}\n[routing]\nprivate = [{host:?}]\n\n[git]\nrefresh_interval = \"0s\"\n\n\
             [[git.rules]]\npattern = \"{host}/*/*\"\nurl = \"https://{host}/{{path}}.git\"\n\n\
             [[git.credentials]]\nhost = {host:?}\nusername = {user:?}\npassword = {token:?}\n",
            ca = srv.ca_cert().display().to_string(),
            user = srv.user(),
            token = srv.token(),
        ),
    )
    .unwrap();
    path
}

/// The git server of a private module is down before the fetch and dies during one (the pack
/// transfer is cut and the connection dropped, deterministically): agora answers a 5xx naming the
/// cause, caches nothing, and works again (same process, same mirror) once the server is back.
#[test]
fn git_server_dying_gives_a_clear_error_caches_nothing_and_recovers() {
    const H: &str = "gitlab-faults.corp.example";
    const BLOB: usize = 24 << 20;
    /// Where the pack download dies: a few hundred KiB into the ~24 MiB pack.
    const CUT: u64 = 300 << 10;
    let module = format!("{H}/team/big");
    let host = GitHost::new().host(H);
    let mut repo = host.repo(&module);
    repo.write("go.mod", format!("module {module}\n\ngo 1.21\n"))
        .write("big.go", "package big\n")
        // Incompressible, so the pack is as big as the blob and the cut lands inside it.
        .write("data/blob.bin", deterministic_bytes(7, BLOB));
    repo.commit("big");
    repo.tag(VERSION);

    let mut srv = HttpsGitServer::serve(&host, H);
    let tmp = tempfile::tempdir().unwrap();
    let config = private_config(tmp.path(), &srv);
    let empty_gitconfig = tmp.path().join("empty.gitconfig");
    std::fs::write(&empty_gitconfig, "").unwrap();
    let data = tmp.path().join("data");
    let agora = builder(&data, "off")
        .arg("--config")
        .arg(&config)
        .env("GIT_CONFIG_GLOBAL", &empty_gitconfig)
        .start();
    // agora hands git a CA bundle under its data directory, read by every git run. A restarted
    // test server has a fresh CA, which this appends (as an operator rotating a CA would).
    let bundle = data.join("_agora/git-ca-bundle.pem");
    assert!(
        bundle.is_file(),
        "agora wrote no git CA bundle at {}",
        bundle.display()
    );
    let trust = |srv: &HttpsGitServer| {
        let mut b = std::fs::read(&bundle).unwrap();
        b.push(b'\n');
        b.extend(std::fs::read(srv.ca_cert()).unwrap());
        std::fs::write(&bundle, b).unwrap();
    };
    let url = |ext: &str| format!("{}{}", agora.url(), artifact_path(&module, VERSION, ext));
    let stored = || -> Vec<String> {
        files_under(&data)
            .into_iter()
            .filter(|f| !f.starts_with("_agora/"))
            .collect()
    };

    // 1. Down before the fetch.
    srv.stop();
    drop(srv);
    for ext in ["info", "zip"] {
        let (s, _, body) = http::get(&url(ext));
        let text = http::text(&body);
        assert!(
            (500..600).contains(&s) && s != 500,
            "{ext} with the git server down: {s} {text}"
        );
        assert!(
            text.contains(H) || text.to_lowercase().contains("unreachable"),
            "{ext}: the message should name the unreachable host: {text}"
        );
    }
    assert!(stored().is_empty(), "{:?}", stored());

    // 2. Dies during the fetch: the server is up (refs are advertised) but every pack download
    // stops after CUT bytes and its connection is dropped. (http::get gives up after 60 s: a hang
    // fails the test.)
    let srv = HttpsGitServer::serve(&host, H);
    trust(&srv);
    srv.cut_fetches_after(Some(CUT));
    let (s, _, body) = http::get(&url("zip"));
    let text = http::text(&body);
    let requests = srv.requests();
    assert!(
        requests.iter().any(|r| r.cut),
        "agora's git never downloaded a pack (nothing was cut), so this tested nothing: {s} \
         {text}\n{requests:#?}"
    );
    assert!(
        (500..600).contains(&s) && s != 500,
        "zip while the pack transfer dies: {s} {text}"
    );
    assert!(
        text.contains(H) && text.contains("git"),
        "the message should say that git failed fetching from {H}: {text}"
    );
    assert!(
        stored().is_empty(),
        "a fetch cut mid-pack stored artifacts: {:?}",
        stored()
    );
    assert!(
        scratch_files(&data).is_empty(),
        "a fetch cut mid-pack left scratch files: {:?}",
        scratch_files(&data)
    );

    // 3. Back again: the same agora serves the module, from a mirror that may hold the broken
    // fetch.
    srv.cut_fetches_after(None);
    srv.reset_requests();
    let (s, _, info) = http::get(&url("info"));
    assert_eq!(s, 200, "info after recovery: {}", http::text(&info));
    let (s, _, zip) = http::get(&url("zip"));
    assert_eq!(s, 200, "zip after recovery: {}", http::text(&zip));
    assert!(srv.fetches("team/big") >= 1, "{:#?}", srv.requests());
    let entries: BTreeMap<String, Vec<u8>> = zip_entries(&zip).into_iter().collect();
    let prefix = format!("{module}@{VERSION}/");
    assert_eq!(
        entries.get(&format!("{prefix}data/blob.bin")).map(Vec::len),
        Some(BLOB),
        "zip entries: {:?}",
        entries.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        entries[&format!("{prefix}data/blob.bin")],
        deterministic_bytes(7, BLOB)
    );
    let key = artifact_path(&module, VERSION, "zip");
    let on_disk = std::fs::read(data.join(key.trim_start_matches('/'))).unwrap();
    assert_eq!(on_disk, zip, "stored zip differs from the served one");
    drop(srv);
    let log = agora.stderr_log();
    assert!(
        !log.contains(agora_testkit::gitserver::DEFAULT_TOKEN),
        "token in the log"
    );
}

/// Makes a directory tree immutable with `chattr +i` (which, unlike permissions, stops root too),
/// and mutable again on drop.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Immutable {
        let out = Command::new("chattr")
            .args(["-R", "+i"])
            .arg(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("run chattr (e2fsprogs) for the read-only storage test: {e}")
            });
        let guard = Immutable(dir.to_owned());
        assert!(
            out.status.success(),
            "chattr -R +i {} failed ({}): this test needs a file system with the immutable \
             attribute (ext4, xfs, btrfs) for its temporary directory; tests run as root, for whom \
             permissions do not make a directory read-only",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        guard
    }

    fn clear(&self) {
        let _ = Command::new("chattr")
            .args(["-R", "-i"])
            .arg(&self.0)
            .status();
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The data directory stops taking writes (immutable, which holds for root too): cached artifacts
/// are still served, new ones get a clear 503 and a log line, `/readyz` is 503, nothing is
/// corrupted; once writable again everything works without a restart.
#[test]
fn storage_write_failure_gives_503_and_recovers_without_restart() {
    let tree = SynthTree::new(3, 64 << 10);
    let expected = tree.expected();
    let h1 = zip_h1s(&tree);
    let up = UpstreamProxy::serve_dir(tree.root());
    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), &up.url())
        .env("AGORA_UPSTREAM_RETRIES", "0")
        .start();
    let get = |i: usize, ext: &str| {
        let path = artifact_path(&tree.modules[i].path, VERSION, ext);
        let (s, h, body) = http::get(&format!("{}{path}", agora.url()));
        (s, h, body, path)
    };
    for ext in ["info", "mod", "zip"] {
        assert_eq!(get(0, ext).0, 200);
    }
    let ready = || http::get(&format!("{}/readyz", agora.url())).0;
    assert_eq!(ready(), 200);

    let lock = Immutable::set(data.path());
    // Cached artifacts are still served from a read-only directory.
    for ext in ["info", "mod", "zip"] {
        let (s, _, body, path) = get(0, ext);
        assert_eq!(
            s,
            200,
            "{path} (cached) while read-only: {}",
            http::text(&body)
        );
    }
    let mut failures = Vec::new();
    for ext in ["info", "mod", "zip"] {
        let (s, _, body, path) = get(1, ext);
        let text = http::text(&body);
        if s != 503 || !text.contains("storage") {
            failures.push(format!("{path}: {s} {text:?} (want 503 naming storage)"));
        }
    }
    let list = format!("/{}/@v/list", escape_path(&tree.modules[2].path).unwrap());
    let (s, _, body) = http::get(&format!("{}{list}", agora.url()));
    if s != 503 {
        failures.push(format!("{list}: {s} {:?} (want 503)", http::text(&body)));
    }
    let readyz = ready();
    if readyz != 503 {
        failures.push(format!(
            "/readyz: {readyz} while the data directory is read-only"
        ));
    }
    let log = agora.stderr_log();
    let logged = log
        .lines()
        .filter(|l| l.contains("503") && l.contains("storage"))
        .count();
    assert!(logged >= 1, "no log line about the storage failure:\n{log}");
    eprintln!(
        "storage failure log line: {}",
        log.lines().find(|l| l.contains("503")).unwrap_or_default()
    );
    lock.clear();
    drop(lock);

    // Writable again: no restart needed.
    assert_eq!(ready(), 200);
    for i in 0..3 {
        for ext in ["info", "mod", "zip"] {
            let (s, _, body, path) = get(i, ext);
            assert_eq!(s, 200, "{path} after recovery: {}", http::text(&body));
            assert!(
                body == expected[path.trim_start_matches('/')],
                "{path}: wrong bytes"
            );
        }
    }
    check_data_dir(data.path(), &expected, &h1);
    assert!(
        failures.is_empty(),
        "while the data directory was read-only:\n{}",
        failures.join("\n")
    );
}

/// A small deterministic generator (xorshift), so the live path test needs no extra crate and
/// every run sends the same paths.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// ~300 random, odd and long request paths over raw TCP: never a 5xx, and nothing written
/// outside `_agora/` of the data directory (nested three levels deep inside the watched tree, so
/// a traversal of up to three `..` would land where it is seen).
#[test]
fn random_and_hostile_request_paths_never_get_a_5xx_or_touch_files() {
    let empty = tempfile::tempdir().unwrap();
    let up = UpstreamProxy::serve_dir(empty.path());
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("a/b/data");
    let agora = builder(&data, &up.url())
        .env("AGORA_UPSTREAM_RETRIES", "0")
        .start();
    let before = files_under(parent.path());

    let atoms = [
        "github.com",
        "example.com",
        "golang.org",
        "x",
        "m",
        "!m",
        "!",
        "!!",
        "M",
        "@v",
        "@latest",
        "list",
        "v1.0.0",
        "v1.0.0.info",
        "v1.0.0.mod",
        "v1.0.0.zip",
        "v2.0.0+incompatible.zip",
        "v1.0.0-!r!c.1.info",
        "..",
        ".",
        "...",
        "..;",
        "%2e%2e",
        "%2E%2e",
        "%2e",
        "%2f",
        "%5c",
        "%00",
        "%0a",
        "%ff",
        "%c3%a9",
        "%e2%80%ae",
        "%zz",
        "%",
        "%2",
        "~",
        "-",
        "_",
        "+",
        ";",
        ":",
        "=",
        "&",
        "?go-get=1",
        "'",
        "$",
        "*",
        "sumdb",
        "sum.golang.org",
        "lookup",
        "tile",
        "etc",
        "passwd",
        "_agora",
        "tmp",
        "readyz",
        "a.b.c",
        "xn--nxasmq6b.com",
        "%40v",
        "v1.0.0%2Binc.zip",
        "gopkg.in",
        "yaml.v3",
        "v0.0.0-20240101000000-abcdefabcdef.zip",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut paths: Vec<String> = vec![
        "/".into(),
        "//".into(),
        "/..".into(),
        "/../../../../etc/passwd".into(),
        "/_agora/tmp/x/@v/list".into(),
        "/_agora/readyz".into(),
        "/sumdb/sum.golang.org/../../_agora/x".into(),
        "/sumdb/sum.golang.org/tile/8/0/%2e%2e/x".into(),
        "/example.com/m/@v/..%2f..%2f..%2fescape.zip".into(),
        "/example.com/m/@v/%2e%2e.info".into(),
        "/example.com/m/@v/....info".into(),
        "/example.com/m/@v/.info".into(),
        "/example.com/m/@v/..zip".into(),
        "/example.com/./m/@v/list".into(),
        "/example.com/m/@v/v1.0.0.info/../../../x".into(),
        format!("/example.com/{}/@v/list", "a".repeat(2100)),
        format!("/example.com/{}/@v/list", "a/".repeat(500)),
        format!("/example.com/m/@v/v1.0.0-{}.info", "a".repeat(1500)),
        format!("/{}", "%2e%2e/".repeat(300)),
    ];
    while paths.len() < 300 {
        let n = 1 + rng.below(8);
        let mut p = String::new();
        for _ in 0..n {
            p.push('/');
            let k = 1 + rng.below(3);
            for _ in 0..k {
                p.push_str(rng.pick(&atoms));
            }
        }
        if rng.below(4) == 0 {
            p.push('/');
        }
        paths.push(p);
    }

    let mut fives = Vec::new();
    for path in &paths {
        let (status, body) = raw_request(agora.url(), "GET", path);
        if status >= 500 {
            fives.push(format!("GET {path} -> {status}: {}", body.trim()));
        }
    }
    assert!(fives.is_empty(), "5xx answers:\n{}", fives.join("\n"));
    assert_eq!(http::get(&format!("{}/healthz", agora.url())).0, 200);
    let after = files_under(parent.path());
    let new: Vec<_> = after
        .iter()
        .filter(|f| !before.contains(f) && !f.starts_with("a/b/data/_agora/"))
        .collect();
    assert!(new.is_empty(), "request paths wrote files: {new:?}");
}

/// Waits until `_agora/tmp` holds a scratch file that is not in `known`, and returns it.
fn new_scratch_file(data: &Path, known: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = scratch_files(data);
        if let Some(f) = now.iter().find(|f| !known.contains(f)) {
            return f.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no new scratch file appeared: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Regression: after `kill -9` in the middle of downloads, their scratch files (13 MB and 53 MB
/// in the attack) stayed in `_agora/tmp` across restarts. A starting agora removes the scratch
/// files of dead processes, and keeps those of a live agora sharing the data directory.
#[test]
fn scratch_files_of_a_killed_agora_go_at_restart_a_live_ones_stay() {
    let tree = SynthTree::new(2, 1 << 20);
    let up = UpstreamProxy::serve_dir(tree.root());
    let zips: Vec<String> = tree
        .modules
        .iter()
        .map(|m| artifact_path(&m.path, VERSION, "zip"))
        .collect();
    // Both downloads stall after their first bytes: they are in progress until the test ends.
    for zip in &zips {
        up.set_path_fault(zip, Fault::Stall(64 << 10));
    }
    let data = tempfile::tempdir().unwrap();
    let mut doomed = builder(data.path(), &up.url())
        .env("AGORA_UPSTREAM_RETRIES", "0")
        .start();
    let live = builder(data.path(), &up.url())
        .env("AGORA_UPSTREAM_RETRIES", "0")
        .start();
    let download = |base: &str, path: &str| {
        let url = format!("{base}{path}");
        std::thread::spawn(move || {
            let _ = http::try_request("GET", &url, &[], None);
        });
    };
    download(doomed.url(), &zips[0]);
    let doomed_file = new_scratch_file(data.path(), &[]);
    download(live.url(), &zips[1]);
    let live_file = new_scratch_file(data.path(), std::slice::from_ref(&doomed_file));
    doomed.kill();

    let _restarted = builder(data.path(), &up.url()).start();
    let left = scratch_files(data.path());
    assert!(
        !left.contains(&doomed_file),
        "the killed process's scratch file {doomed_file} survived the restart: {left:?}"
    );
    assert!(
        left.contains(&live_file),
        "the live process's scratch file {live_file} was removed: {left:?}"
    );
    drop(live);
}
