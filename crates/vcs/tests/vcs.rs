//! Integration tests: real git repositories built in temp dirs, mirrored over `file://`, and the
//! real `go` command as the oracle for version lists and query answers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use agora_vcs::{CodeRepo, Error, GitFailure, Mirrors, ObjectFormat};
use serde_json::Value;

/// A git repository with deterministic commits (fixed identity, one hour apart).
struct Upstream {
    dir: PathBuf,
    commits: u32,
}

fn git_env(cmd: &mut Command) -> &mut Command {
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "A U Thor")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "C O Mitter")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
}

impl Upstream {
    fn new(dir: PathBuf) -> Self {
        Upstream::with_object_format(dir, "sha1")
    }

    /// A repository whose objects are named with `format` (`sha1`, or `sha256`: 64 digits).
    fn with_object_format(dir: PathBuf, format: &str) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let up = Upstream { dir, commits: 0 };
        up.git(&[
            "init",
            "-q",
            "-b",
            "main",
            &format!("--object-format={format}"),
        ]);
        up
    }

    fn git(&self, args: &[&str]) -> String {
        let date = format!("{} +0000", 1_600_000_000 + 3600 * i64::from(self.commits));
        let out = git_env(&mut Command::new("git"))
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .current_dir(&self.dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Writes files (empty content deletes) and commits; returns the hash.
    fn commit(&mut self, files: &[(&str, &str)]) -> String {
        for (name, content) in files {
            let path = self.dir.join(name);
            if content.is_empty() {
                let _ = std::fs::remove_file(&path);
            } else {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, content).unwrap();
            }
        }
        self.commits += 1;
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", "c"]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn tag(&self, name: &str) {
        self.git(&["tag", name]);
    }

    fn annotated_tag(&self, name: &str) {
        self.git(&["tag", "-a", "-m", name, name]);
    }
}

/// The oracle: `$AGORA_TEST_GO`, else Go 1.27.3 as `scripts/setup` installs it.
fn go_command() -> PathBuf {
    let go = std::env::var_os("AGORA_TEST_GO")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/agora-test/go1.27/bin/go"));
    assert!(go.is_file(), "{} missing: run scripts/setup", go.display());
    go
}

/// A temp root holding upstream repos at `<root>/up/<owner>/<repo>`, a mirror root, and an
/// isolated environment for the `go` command that maps `https://github.com/` there.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl World {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let gitconfig = format!(
            "[url \"file://{}/up/\"]\n\tinsteadOf = https://github.com/\n[protocol \"file\"]\n\tallow = always\n",
            root.display()
        );
        std::fs::write(root.join("gitconfig"), gitconfig).unwrap();
        std::fs::create_dir_all(root.join("home")).unwrap();
        World { _tmp: tmp, root }
    }

    fn upstream(&self, owner_repo: &str) -> Upstream {
        Upstream::new(self.root.join("up").join(owner_repo))
    }

    fn upstream_sha256(&self, owner_repo: &str) -> Upstream {
        Upstream::with_object_format(self.root.join("up").join(owner_repo), "sha256")
    }

    fn url(&self, owner_repo: &str) -> String {
        format!("file://{}/up/{owner_repo}", self.root.display())
    }

    async fn code_repo(&self, mirrors: &Mirrors, module: &str, root: &str) -> CodeRepo {
        let owner_repo = root.strip_prefix("github.com/").unwrap();
        let mirror = mirrors.open(&self.url(owner_repo)).await.unwrap();
        CodeRepo::new(mirror, module, root, "").unwrap()
    }

    /// `go list -m -json <args>`, `Err(stderr)` on failure.
    fn go_list(&self, args: &[&str]) -> Result<Value, String> {
        let mut all = vec!["list", "-m", "-json"];
        all.extend_from_slice(args);
        self.go_json(&all)
    }

    /// The `h1:` hash of the zip of `module@version` per `go mod download`.
    fn go_sum(&self, module: &str, version: &str) -> String {
        let v = self
            .go_json(&["mod", "download", "-json", &format!("{module}@{version}")])
            .unwrap_or_else(|e| panic!("go mod download {module}@{version}: {e}"));
        v["Sum"].as_str().unwrap().to_owned()
    }

    /// `go <args>` with JSON output, `Err(stderr)` on failure.
    fn go_json(&self, args: &[&str]) -> Result<Value, String> {
        let r = &self.root;
        let out = Command::new(go_command())
            .args(args)
            .current_dir(r.join("home"))
            .env("HOME", r.join("home"))
            .env("GOPATH", r.join("gopath"))
            .env("GOMODCACHE", r.join("gopath/pkg/mod"))
            .env("GOCACHE", r.join("gocache"))
            .env("GOPROXY", "direct")
            .env("GOSUMDB", "off")
            .env("GOFLAGS", "-modcacherw")
            .env("GOTOOLCHAIN", "local")
            .env("GO111MODULE", "on")
            .env("GIT_CONFIG_GLOBAL", r.join("gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("the go command");
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn go_versions(&self, module: &str) -> Vec<String> {
        // The proxy's list includes retracted versions; `go list` shows them only on request.
        let v = self.go_list(&["-versions", "-retracted", module]).unwrap();
        v["Versions"]
            .as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    /// Compares `latest()` with `go list -m M@latest`; returns the version.
    async fn check_latest(&self, repo: &CodeRepo) -> String {
        let module = repo.module_path();
        let ours = repo.latest().await.unwrap();
        let go = self.go_list(&[&format!("{module}@latest")]).unwrap();
        assert_eq!(
            go["Version"].as_str(),
            Some(ours.version.as_str()),
            "{module}@latest"
        );
        ours.version
    }

    /// Compares our zip's h1 for `module@version` with go's `Sum`.
    async fn check_zip(&self, repo: &CodeRepo, version: &str) -> String {
        let module = repo.module_path();
        let dest = self.root.join(format!("zip-{}", module.replace('/', "_")));
        let ours = repo
            .zip(version, &dest)
            .await
            .unwrap_or_else(|e| panic!("{module}@{version}: {e}"));
        assert_eq!(ours.size, std::fs::metadata(&dest).unwrap().len());
        assert_eq!(ours.h1, self.go_sum(module, version), "{module}@{version}");
        std::fs::remove_file(&dest).unwrap();
        ours.h1
    }

    /// Compares our answer for `module@query` with go's: same version and time, or both fail.
    async fn check_query(&self, repo: &CodeRepo, query: &str) -> Option<String> {
        let ours = repo.stat(query).await;
        let module = repo.module_path();
        match (self.go_list(&[&format!("{module}@{query}")]), ours) {
            (Ok(go), Ok(ours)) => {
                assert_eq!(
                    (go["Version"].as_str(), go["Time"].as_str()),
                    (
                        Some(ours.version.as_str()),
                        Some(ours.time_rfc3339().as_str())
                    ),
                    "{module}@{query}"
                );
                Some(ours.version)
            }
            (Err(_), Err(e)) => {
                assert!(e.is_not_found(), "{module}@{query}: {e}");
                eprintln!("both refuse {module}@{query}: {e}");
                None
            }
            (go, ours) => panic!("{module}@{query}: go says {go:?}, we say {ours:?}"),
        }
    }
}

#[tokio::test]
async fn mirror_is_created_once_then_fetched_incrementally() {
    let world = World::new();
    let mut up = world.upstream("o/m");
    up.commit(&[("a.txt", "1")]);
    up.tag("v1.0.0");
    let url = world.url("o/m");

    // Concurrent first requests share one clone.
    let mirrors = Arc::new(Mirrors::new(world.root.join("mirrors"), Duration::ZERO));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (m, u) = (mirrors.clone(), url.clone());
            tokio::spawn(async move { m.open(&u).await.map(|m| m.dir().to_owned()) })
        })
        .collect();
    let mut dirs = Vec::new();
    for t in tasks {
        dirs.push(t.await.unwrap().unwrap());
    }
    assert!(dirs.windows(2).all(|w| w[0] == w[1]));
    // With a zero interval, every caller that waited behind the clone fetched again; what
    // matters is that exactly one created the mirror, which the marker below checks for later.
    let dir = dirs.remove(0);
    assert!(dir.starts_with(world.root.join("mirrors")));
    let marker = dir.join("agora-test-marker");
    std::fs::write(&marker, "x").unwrap();

    // A new tag upstream arrives through a fetch into the same directory, not a new clone.
    up.commit(&[("a.txt", "2")]);
    up.tag("v1.1.0");
    let mirror = mirrors.open(&url).await.unwrap();
    assert_eq!(mirror.dir(), dir);
    assert!(marker.exists(), "the mirror was re-created");
    let refs = mirror.refs().await.unwrap();
    assert!(refs.tags.contains_key("v1.1.0"));

    // Deleted upstream tags are pruned.
    up.git(&["tag", "-d", "v1.1.0"]);
    let refs = mirrors.open(&url).await.unwrap().refs().await.unwrap();
    assert!(!refs.tags.contains_key("v1.1.0"));

    // Within the refresh interval nothing is fetched, even for many concurrent callers.
    let fresh = Arc::new(Mirrors::new(
        world.root.join("mirrors"),
        Duration::from_secs(3600),
    ));
    up.tag("v1.2.0");
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (m, u) = (fresh.clone(), url.clone());
            tokio::spawn(async move { m.open(&u).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // FETCH_HEAD is recent, so even the first open of this new set skips the fetch.
    assert_eq!(fresh.fetch_count(), 0);
    let refs = fresh.open(&url).await.unwrap().refs().await.unwrap();
    assert!(!refs.tags.contains_key("v1.2.0"));
}

#[tokio::test]
async fn concurrent_opens_of_a_stale_mirror_share_one_fetch() {
    let world = World::new();
    let mut up = world.upstream("o/m");
    up.commit(&[("a.txt", "1")]);
    let url = world.url("o/m");
    let mirrors = Arc::new(Mirrors::new(
        world.root.join("mirrors"),
        Duration::from_secs(3600),
    ));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (m, u) = (mirrors.clone(), url.clone());
            tokio::spawn(async move { m.open(&u).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(mirrors.fetch_count(), 1);
}

#[tokio::test]
async fn missing_repository_is_classified_not_found() {
    let world = World::new();
    let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::ZERO);
    let err = mirrors.open(&world.url("o/absent")).await.unwrap_err();
    assert_eq!(err.git_failure(), Some(GitFailure::NotFound), "{err}");
    assert!(err.is_not_found());
    // No half-made mirror is left behind.
    let left: Vec<_> = std::fs::read_dir(world.root.join("mirrors"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(matches!(
        mirrors.open("ext::sh -c id").await,
        Err(Error::BadUrl { .. })
    ));
}

#[tokio::test]
async fn default_branch_follows_remote_head() {
    let world = World::new();
    let mut up = world.upstream("o/m");
    up.commit(&[("go.mod", "module github.com/o/m\n")]);
    up.git(&["checkout", "-q", "-b", "trunk"]);
    let tip = up.commit(&[("a.go", "package m\n")]);
    let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::ZERO);
    let mirror = mirrors.open(&world.url("o/m")).await.unwrap();
    assert_eq!(mirror.head().await.unwrap().as_deref(), Some(tip.as_str()));
    let data = mirror
        .read_file(&tip, "go.mod", 1 << 20)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(data, b"module github.com/o/m\n");
    assert_eq!(mirror.read_file(&tip, "nope", 1 << 20).await.unwrap(), None);
    // A directory is not a file.
    up.commit(&[("d/x", "1")]);
    let mirror = mirrors.open(&world.url("o/m")).await.unwrap();
    let head = mirror.head().await.unwrap().unwrap();
    assert_eq!(mirror.read_file(&head, "d", 1 << 20).await.unwrap(), None);
}

/// The remote's HEAD arrives with the fetch itself (no separate `ls-remote`): an empty
/// repository has none, a new default branch is followed, and a HEAD that names a missing branch
/// forgets the old one. Refs are re-read after each fetch, not served from before it.
#[tokio::test]
async fn remote_head_arrives_with_the_fetch() {
    let world = World::new();
    let mut up = world.upstream("o/h");
    let url = world.url("o/h");
    let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::ZERO);

    let mirror = mirrors.open(&url).await.unwrap();
    assert_eq!(mirror.head().await.unwrap(), None, "empty repository");
    assert!(mirror.refs().await.unwrap().heads.is_empty());

    let c1 = up.commit(&[("a.txt", "1")]);
    let mirror = mirrors.open(&url).await.unwrap();
    assert_eq!(mirror.head().await.unwrap().as_deref(), Some(c1.as_str()));
    assert_eq!(mirror.refs().await.unwrap().heads.get("main"), Some(&c1));

    up.git(&["checkout", "-q", "-b", "trunk"]);
    let c2 = up.commit(&[("a.txt", "2")]);
    up.tag("v1.0.0");
    let mirror = mirrors.open(&url).await.unwrap();
    assert_eq!(mirror.head().await.unwrap().as_deref(), Some(c2.as_str()));
    assert_eq!(mirror.refs().await.unwrap().tags.get("v1.0.0"), Some(&c2));
    assert_eq!(mirror.commit(&c2).await.unwrap().hash, c2);

    up.git(&["symbolic-ref", "HEAD", "refs/heads/gone"]);
    let mirror = mirrors.open(&url).await.unwrap();
    assert_eq!(mirror.head().await.unwrap(), None, "HEAD names no branch");
    assert_eq!(mirror.refs().await.unwrap().heads.get("trunk"), Some(&c2));
}

/// Module at the root, a nested module, a major-branch v2 and a major-subdirectory v3.
#[tokio::test]
async fn versions_and_queries_match_go() {
    let world = World::new();
    let mut up = world.upstream("o/r");
    let c1 = up.commit(&[
        ("go.mod", "module github.com/o/r\n"),
        ("a.go", "package r\n"),
    ]);
    up.tag("v0.1.0");
    let c2 = up.commit(&[("a.go", "package r // 2\n")]);
    up.annotated_tag("v1.0.0");
    up.tag("v1.2"); // non-canonical: not listed
    up.tag("v1.0.1+meta"); // non-canonical: not listed
    up.tag("v0.0.0-20200101000000-abcdefabcdef"); // pseudo-version tag: not listed
    up.commit(&[("sub/go.mod", "module github.com/o/r/sub\n")]);
    up.tag("sub/v0.1.0");
    up.tag("v1.1.0-rc.1");
    let c4 = up.commit(&[("b.go", "package r\n")]);
    up.commit(&[("v3/go.mod", "module github.com/o/r/v3\n")]);
    up.tag("v3.0.0");
    let c6 = up.commit(&[("c.go", "package r\n")]);
    // v2 lives on its own branch with a /v2 root go.mod.
    up.git(&["checkout", "-q", "-b", "v2", &c2]);
    up.commit(&[("go.mod", "module github.com/o/r/v2\n")]);
    up.tag("v2.0.0");
    up.git(&["checkout", "-q", "main"]);

    let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::from_secs(60));
    for module in [
        "github.com/o/r",
        "github.com/o/r/sub",
        "github.com/o/r/v2",
        "github.com/o/r/v3",
    ] {
        let repo = world.code_repo(&mirrors, module, "github.com/o/r").await;
        let ours = repo.versions().await.unwrap();
        assert_eq!(ours, world.go_versions(module), "{module}");
    }

    let r = world
        .code_repo(&mirrors, "github.com/o/r", "github.com/o/r")
        .await;
    assert_eq!(
        r.versions().await.unwrap(),
        ["v0.1.0", "v1.0.0", "v1.1.0-rc.1"]
    );
    let main_pseudo = world.check_query(&r, "main").await.unwrap();
    assert!(main_pseudo.starts_with("v1.1.0-rc.1.0."), "{main_pseudo}");
    for q in [
        "v1.0.0",
        "v0.1.0",
        &c1[..12],
        &c2,
        &c4[..7],
        &c6,
        "v3.0.0",   // a v3 tag, not allowed for the unsuffixed path
        "v9.9.9",   // no such version
        "nonesuch", // no such revision
        "v2",       // a branch named like a version
        &main_pseudo,
    ] {
        world.check_query(&r, q).await;
    }
    // `go list mod@v1.2` is a version-prefix query answered from the list; the proxy's
    // `.info` for `v1.2` is Repo.Stat: the tag `v1.2` names c2, whose canonical tag is v1.0.0.
    let info = r.stat("v1.2").await.unwrap();
    assert_eq!(
        (info.version.as_str(), info.hash.as_str()),
        ("v1.0.0", c2.as_str())
    );
    // Pseudo-versions that do not fit the commit.
    let wrong_time = main_pseudo.replacen("-rc.1.0.2020", "-rc.1.0.2019", 1);
    let no_such_base = main_pseudo.replacen("v1.1.0-rc.1.0.", "v1.5.1-0.", 1);
    let v1_base = main_pseudo.replacen("v1.1.0-rc.1.0.", "v1.0.1-0.", 1);
    for q in [&wrong_time, &no_such_base] {
        assert!(r.stat(q).await.is_err(), "{q}");
        world.check_query(&r, q).await;
    }
    // Any ancestor tag may be the base, not only the highest.
    assert_eq!(
        world.check_query(&r, &v1_base).await.as_ref(),
        Some(&v1_base)
    );

    let sub = world
        .code_repo(&mirrors, "github.com/o/r/sub", "github.com/o/r")
        .await;
    for q in ["v0.1.0", "main", &c6[..12]] {
        world.check_query(&sub, q).await;
    }
    let v2 = world
        .code_repo(&mirrors, "github.com/o/r/v2", "github.com/o/r")
        .await;
    for q in ["v2.0.0", "v2", "main"] {
        world.check_query(&v2, q).await;
    }
    let v3 = world
        .code_repo(&mirrors, "github.com/o/r/v3", "github.com/o/r")
        .await;
    for q in ["v3.0.0", "main"] {
        world.check_query(&v3, q).await;
    }
    // latest_head is go's Repo.Latest: the default branch's tip, as a pseudo-version.
    assert_eq!(r.latest_head().await.unwrap().version, main_pseudo);
    for repo in [&r, &sub, &v2, &v3] {
        world.check_latest(repo).await;
    }
}

/// A SHA-256 repository (64-digit object names): the mirror takes the remote's object format,
/// and hash queries of 7 to 64 digits resolve as in the go command, a 40-digit one as a prefix.
#[tokio::test]
async fn sha256_repository_matches_go() {
    let world = World::new();
    let mut up = world.upstream_sha256("o/s");
    let c1 = up.commit(&[
        ("go.mod", "module github.com/o/s\n"),
        ("a.go", "package s\n"),
    ]);
    assert_eq!(c1.len(), 64, "{c1}");
    up.tag("v1.0.0");
    let c2 = up.commit(&[("b.go", "package s\n")]);
    up.annotated_tag("v1.1.0");
    let c3 = up.commit(&[("c.go", "package s\n")]);

    let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::from_secs(60));
    let r = world
        .code_repo(&mirrors, "github.com/o/s", "github.com/o/s")
        .await;
    assert_eq!(
        r.versions().await.unwrap(),
        world.go_versions("github.com/o/s")
    );
    let pseudo = world.check_query(&r, &c3[..12]).await.unwrap();
    assert!(
        pseudo.starts_with("v1.1.1-0.") && pseudo.ends_with(&c3[..12]),
        "{pseudo}"
    );
    let too_long = format!("{c3}0");
    for q in [
        "v1.0.0",
        "v1.1.0",
        "main",
        &pseudo,
        &c1[..7],
        &c1[..40],
        &c1,
        &c2[..12],
        &c2[..40],
        &c3[..7],
        &c3[..39],
        &c3[..40],
        &c3[..41],
        &c3,
        &too_long,
    ] {
        world.check_query(&r, q).await;
    }
    world.check_latest(&r).await;
    world.check_zip(&r, "v1.1.0").await;
    world.check_zip(&r, &pseudo).await;

    // A 40-digit prefix names its commit; it is not taken for the commit's full name.
    let mirror = r.mirror();
    assert_eq!(mirror.commit(&c3[..40]).await.unwrap().hash, c3);
    assert_eq!(
        mirror.resolve_commit(&c3[..40]).await.unwrap(),
        Some(c3.clone())
    );
}

/// A repository replaced by one in the other object format (made again at the same URL with
/// `--object-format=sha256`, and back): the next fetch makes the mirror anew instead of failing
/// for good.
#[tokio::test]
async fn a_repository_replaced_in_another_object_format_gets_a_new_mirror() {
    let world = World::new();
    let mut up = world.upstream("o/x");
    up.commit(&[("go.mod", "module github.com/o/x\n")]);
    up.tag("v1.0.0");
    let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::ZERO);
    let r = world
        .code_repo(&mirrors, "github.com/o/x", "github.com/o/x")
        .await;
    assert_eq!(r.mirror().object_format(), ObjectFormat::Sha1);
    let dir = r.mirror().dir().to_owned();

    for (format, tag) in [
        (ObjectFormat::Sha256, "v1.1.0"),
        (ObjectFormat::Sha1, "v1.2.0"),
    ] {
        std::fs::remove_dir_all(world.root.join("up/o/x")).unwrap();
        let mut up = Upstream::with_object_format(world.root.join("up/o/x"), format.name());
        let c = up.commit(&[("go.mod", "module github.com/o/x\n"), ("a.go", tag)]);
        up.tag(tag);
        let r = world
            .code_repo(&mirrors, "github.com/o/x", "github.com/o/x")
            .await;
        assert_eq!(r.mirror().object_format(), format);
        assert_eq!(r.mirror().dir(), dir);
        assert_eq!(r.versions().await.unwrap(), [tag]);
        assert_eq!(r.stat(&c[..12]).await.unwrap().version, tag);
        assert_eq!(r.stat(&c).await.unwrap().version, tag);
    }
    // Nothing is left of the old mirrors or the attempts.
    let left = std::fs::read_dir(world.root.join("mirrors"))
        .unwrap()
        .count();
    assert_eq!(left, 1);
}

/// A repository without go.mod: v2+ tags become +incompatible, except for a major whose latest
/// tag has a go.mod.
#[tokio::test]
async fn incompatible_versions_match_go() {
    let world = World::new();
    let mut up = world.upstream("o/inc");
    up.commit(&[("a.go", "package inc\n")]);
    up.tag("v1.0.0");
    up.commit(&[("a.go", "package inc // 2\n")]);
    up.tag("v2.0.0");
    let c3 = up.commit(&[("a.go", "package inc // 3\n")]);
    up.tag("v2.1.0");
    up.commit(&[("go.mod", "module github.com/o/inc/v3\n")]);
    up.tag("v3.0.0");
    up.commit(&[("b.go", "package inc\n")]);
    up.git(&["checkout", "-q", "-b", "dev", &c3]);
    let dev = up.commit(&[("c.go", "package inc\n")]);
    up.git(&["checkout", "-q", "main"]);

    let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::from_secs(60));
    let inc = world
        .code_repo(&mirrors, "github.com/o/inc", "github.com/o/inc")
        .await;
    let ours = inc.versions().await.unwrap();
    assert_eq!(
        ours,
        ["v1.0.0", "v2.0.0+incompatible", "v2.1.0+incompatible"]
    );
    assert_eq!(ours, world.go_versions("github.com/o/inc"));
    let v3 = world
        .code_repo(&mirrors, "github.com/o/inc/v3", "github.com/o/inc")
        .await;
    assert_eq!(
        v3.versions().await.unwrap(),
        world.go_versions("github.com/o/inc/v3")
    );

    let dev_pseudo = world.check_query(&inc, "dev").await.unwrap();
    assert!(dev_pseudo.ends_with("+incompatible"), "{dev_pseudo}");
    world.check_latest(&inc).await;
    world.check_latest(&v3).await;
    for q in [
        "v2.1.0",
        "v2.1.0+incompatible",
        "v2.0.0+incompatible",
        "v1.0.0+incompatible",
        "v3.0.0",
        "main",
        &dev[..12],
        &dev_pseudo,
    ] {
        world.check_query(&inc, q).await;
    }
}

/// Retracted tags (per the go.mod of the highest release) are not used as pseudo-version bases,
/// nor as the canonical name of a commit carrying several tags, but are still listed.
#[tokio::test]
async fn retracted_versions_match_go() {
    let world = World::new();
    let mut up = world.upstream("o/ret");
    let gomod = "module github.com/o/ret\n";
    up.commit(&[("go.mod", gomod)]);
    up.tag("v1.0.0");
    let c2 = up.commit(&[("a.go", "package ret\n")]);
    up.tag("v1.1.0");
    up.commit(&[(
        "go.mod",
        "module github.com/o/ret\n\nretract v1.1.0 // broken\n",
    )]);
    up.tag("v1.2.0");
    up.git(&["checkout", "-q", "-b", "fix", &c2]);
    up.commit(&[("b.go", "package ret\n")]);
    up.git(&["checkout", "-q", "main"]);

    let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::from_secs(60));
    let ret = world
        .code_repo(&mirrors, "github.com/o/ret", "github.com/o/ret")
        .await;
    let ours = ret.versions().await.unwrap();
    assert_eq!(ours, ["v1.0.0", "v1.1.0", "v1.2.0"]);
    assert_eq!(ours, world.go_versions("github.com/o/ret"));
    let retractions = ret.retractions().await.unwrap();
    assert_eq!(retractions.len(), 1);
    let fix = world.check_query(&ret, "fix").await.unwrap();
    assert!(fix.starts_with("v1.0.1-0."), "{fix}");
    world.check_query(&ret, "v1.1.0").await;
    assert_eq!(world.check_latest(&ret).await, "v1.2.0");
}

/// Zips of a root module, a subdirectory module with the root LICENSE, a v2 subdirectory
/// module, and a pseudo-version, from a tree with .gitattributes tricks, symlinks, vendored
/// files, a nested module and a long path; h1 must equal go's.
#[tokio::test]
async fn zips_match_go() {
    let world = World::new();
    let mut up = world.upstream("o/z");
    let long_dir = "d".repeat(60);
    let long = format!("{long_dir}/{}/deep.go", "e".repeat(60));
    up.commit(&[
        ("go.mod", "module github.com/o/z\n\ngo 1.21\n"),
        ("LICENSE", "root license\n"),
        (
            ".gitattributes",
            "ignored.go export-ignore\nsubst.go export-subst\n*.txt text eol=crlf\nident.go ident\n",
        ),
        ("a.go", "package z\n"),
        ("ignored.go", "package z // export-ignore, yet in the zip\n"),
        ("subst.go", "package z // $Format:%H$ stays\n"),
        ("notes.txt", "line one\nline two\n"),
        ("ident.go", "package z // $Id$\n"),
        ("vendor/modules.txt", "# example.com/v v1.0.0\n"),
        ("vendor/example.com/v/v.go", "package v\n"),
        ("internal/vendor/x.go", "package vendor\n"),
        ("nested/go.mod", "module github.com/o/z/nested\n"),
        ("nested/n.go", "package nested\n"),
        (&long, "package deep\n"),
        ("sub/go.mod", "module github.com/o/z/sub\n"),
        ("sub/s.go", "package sub\n"),
        ("sub/notes.txt", "sub\nnotes\n"),
        ("v2/go.mod", "module github.com/o/z/v2\n"),
        ("v2/z.go", "package z\n"),
        ("own/go.mod", "module github.com/o/z/own\n"),
        ("own/LICENSE", "own license\n"),
    ]);
    std::os::unix::fs::symlink("a.go", up.dir.join("link.go")).unwrap();
    std::os::unix::fs::symlink("../a.go", up.dir.join("sub/link.go")).unwrap();
    up.commit(&[]);
    up.tag("v1.0.0");
    up.tag("sub/v1.0.0");
    up.tag("own/v1.0.0");
    up.tag("v2.0.0");
    up.commit(&[("b.go", "package z\n")]);

    let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::from_secs(60));
    let z = world
        .code_repo(&mirrors, "github.com/o/z", "github.com/o/z")
        .await;
    world.check_zip(&z, "v1.0.0").await;
    let head = z.latest_head().await.unwrap().version;
    world.check_zip(&z, &head).await;
    for module in [
        "github.com/o/z/sub",
        "github.com/o/z/v2",
        "github.com/o/z/own",
    ] {
        let repo = world.code_repo(&mirrors, module, "github.com/o/z").await;
        let v = if module.ends_with("v2") {
            "v2.0.0"
        } else {
            "v1.0.0"
        };
        world.check_zip(&repo, v).await;
        world.check_latest(&repo).await;
    }

    // An untagged nested module: latest is the default branch's pseudo-version.
    let nested = world
        .code_repo(&mirrors, "github.com/o/z/nested", "github.com/o/z")
        .await;
    let v = world.check_latest(&nested).await;
    assert!(v.starts_with("v0.0.0-"), "{v}");
    world.check_zip(&nested, &v).await;

    // The file set, to see that the cases above were exercised as intended.
    let dest = world.root.join("z.zip");
    z.zip("v1.0.0", &dest).await.unwrap();
    let mut names: Vec<String> = {
        let zr = zip_names(&dest);
        zr.into_iter()
            .map(|n| n.strip_prefix("github.com/o/z@v1.0.0/").unwrap().to_owned())
            .collect()
    };
    names.sort();
    let mut want = vec![
        ".gitattributes",
        "LICENSE",
        "a.go",
        "go.mod",
        "ident.go",
        "ignored.go",
        "notes.txt",
        "subst.go",
        // Below go 1.24, modules.txt is kept and the historic vendor bug drops
        // internal/vendor/x.go (go agrees: the h1 above matched).
        "vendor/modules.txt",
        &long,
    ];
    want.sort();
    assert_eq!(names, want);

    // Versions that do not exist are "not found", and leave no file behind.
    let bad = world.root.join("bad.zip");
    for v in ["v1.9.9", "master", "v1.0"] {
        let e = z.zip(v, &bad).await.unwrap_err();
        assert!(e.is_not_found(), "{v}: {e}");
        assert!(!bad.exists());
    }
}

/// Names in a zip file, from its central directory.
fn zip_names(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    // End of central directory: signature, then entry count and directory offset.
    let eocd = data.windows(4).rposition(|w| w == b"PK\x05\x06").unwrap();
    let le16 = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]) as usize;
    let le32 = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().unwrap()) as usize;
    let count = le16(eocd + 10);
    let mut at = le32(eocd + 16);
    let mut names = Vec::new();
    for _ in 0..count {
        let (n, x, c) = (le16(at + 28), le16(at + 30), le16(at + 32));
        names.push(String::from_utf8(data[at + 46..at + 46 + n].to_vec()).unwrap());
        at += 46 + n + x + c;
    }
    names
}

/// The facade: a rule maps github.com to the local upstreams, code_repo resolves and mirrors.
#[tokio::test]
async fn vcs_facade_with_rules() {
    use agora_vcs::{ResolvedBy, ResolverOptions, RewriteRule, Vcs, VcsOptions};
    let world = World::new();
    let mut up = world.upstream("o/f");
    up.commit(&[
        ("go.mod", "module github.com/o/f\n"),
        ("f.go", "package f\n"),
    ]);
    up.tag("v0.1.0");
    let vcs = Vcs::new(VcsOptions {
        mirror_dir: world.root.join("mirrors"),
        refresh_interval: Duration::from_secs(60),
        first_fetch: Default::default(),
        resolver: ResolverOptions {
            rules: vec![RewriteRule {
                pattern: "github.com/*/*".into(),
                url: format!("file://{}/up/{{path}}", world.root.display()),
            }],
            ..Default::default()
        },
    })
    .unwrap();
    let root = vcs.resolve("github.com/o/f/pkg").await.unwrap();
    assert_eq!(root.root, "github.com/o/f");
    assert_eq!(
        root.by,
        ResolvedBy::Rule {
            pattern: "github.com/*/*".into()
        }
    );
    let repo = vcs.code_repo("github.com/o/f").await.unwrap();
    assert_eq!(repo.versions().await.unwrap(), ["v0.1.0"]);
    world.check_zip(&repo, "v0.1.0").await;
    assert_eq!(vcs.ls_remote(&root.url).await.unwrap(), 3); // HEAD, main, v0.1.0
    assert!(vcs.mirrors().fetch_count() >= 1);
    let e = vcs.code_repo("github.com/o/absent").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

/// `git <args>` in the mirror `dir`, its output.
fn mirror_git(dir: &Path, args: &[&str]) -> String {
    let out = git_env(Command::new("git").arg("--git-dir").arg(dir).args(args))
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_new_mirror_answers_from_its_refs_and_completes_its_history_exactly() {
    let world = World::new();
    let mut up = world.upstream("o/h");
    let mut first = String::new();
    for i in 0..30 {
        let mut files = vec![("data.txt", format!("{i}\n"))];
        if i == 0 {
            files.push(("go.mod", "module github.com/o/h\n".to_owned()));
        }
        let files: Vec<(&str, &str)> = files.iter().map(|(n, b)| (*n, b.as_str())).collect();
        let c = up.commit(&files);
        if i == 0 {
            first = c;
        }
        match i {
            4 => up.tag("v0.1.0"),
            19 => up.annotated_tag("v1.0.0"),
            _ => {}
        }
    }
    let url = world.url("o/h");
    let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::from_secs(3600));

    // The mirror starts with the remote's refs and no objects at all.
    let mirror = mirrors.open(&url).await.unwrap();
    let dir = mirror.dir().to_owned();
    assert!(dir.join("agora-partial").exists());
    let objects = mirror_git(&dir, &["count-objects", "-v"]);
    let lines: Vec<&str> = objects.lines().collect();
    assert!(
        lines.contains(&"count: 0") && lines.contains(&"in-pack: 0"),
        "{objects}"
    );
    let refs = mirror.refs().await.unwrap();
    assert_eq!(
        refs.tags.keys().collect::<Vec<_>>(),
        ["v0.1.0", "v1.0.0"],
        "{refs:?}"
    );
    assert_eq!(
        refs.tags["v1.0.0"],
        up.git(&["rev-parse", "v1.0.0^{commit}"]).trim()
    );
    assert_eq!(refs.remote_head, refs.heads.get("main").cloned());

    // Tagged versions, a branch (a pseudo-version: needs history), a commit prefix, an old
    // commit no ref names, the go.mod and the zip: all as the go command answers them.
    let repo = CodeRepo::new(mirror, "github.com/o/h", "github.com/o/h", "").unwrap();
    world.check_query(&repo, "v1.0.0").await.unwrap();
    world.check_zip(&repo, "v1.0.0").await;
    world.check_query(&repo, "v0.1.0").await.unwrap();
    let main = world.check_query(&repo, "main").await.unwrap();
    assert!(main.starts_with("v1.0.1-0."), "{main}");
    world.check_query(&repo, &first[..12]).await.unwrap();
    assert_eq!(world.check_latest(&repo).await, "v1.0.0");

    // Whatever needed history waited for the whole mirror: complete, not shallow, not marked.
    assert!(!dir.join("agora-partial").exists());
    assert!(!dir.join("shallow").exists());
    assert_eq!(
        mirror_git(&dir, &["rev-list", "--count", "main"]).trim(),
        "30"
    );

    // A refresh of the complete mirror fetches the news.
    up.commit(&[("data.txt", "new\n")]);
    up.tag("v1.1.0");
    let fresh = Mirrors::new(world.root.join("mirrors"), Duration::ZERO);
    let refs = fresh.open(&url).await.unwrap().refs().await.unwrap();
    assert!(refs.tags.contains_key("v1.1.0"));
}

#[tokio::test]
async fn a_mirror_left_partial_is_completed_before_its_next_use() {
    let world = World::new();
    let mut up = world.upstream("o/p");
    up.commit(&[("go.mod", "module github.com/o/p\n")]);
    up.tag("v1.0.0");
    up.commit(&[("a.go", "package p\n")]);
    up.tag("v1.1.0");
    let url = world.url("o/p");
    let dir = {
        // One commit fetched, then the process "stops" before the history is in: a runtime
        // that ends drops the background fetch.
        let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::from_secs(3600));
        let mirror = mirrors.open(&url).await.unwrap();
        mirror.dir().to_owned()
    };
    assert!(dir.join("agora-partial").exists());

    let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::from_secs(3600));
    let mirror = mirrors.open(&url).await.unwrap();
    assert!(!dir.join("agora-partial").exists());
    assert_eq!(
        mirror_git(&dir, &["rev-list", "--count", "v1.1.0"]).trim(),
        "2"
    );
    let repo = CodeRepo::new(mirror, "github.com/o/p", "github.com/o/p", "").unwrap();
    world.check_query(&repo, "v1.0.0").await.unwrap();
}

#[tokio::test]
async fn full_first_fetch_mirrors_everything_first() {
    let world = World::new();
    let mut up = world.upstream("o/f");
    up.commit(&[("go.mod", "module github.com/o/f\n")]);
    up.commit(&[("a.go", "package f\n")]);
    up.tag("v1.0.0");
    let mirrors = Mirrors::new(world.root.join("mirrors"), Duration::from_secs(3600))
        .with_first_fetch(agora_vcs::FirstFetch::Full);
    let mirror = mirrors.open(&world.url("o/f")).await.unwrap();
    assert!(!mirror.dir().join("agora-partial").exists());
    assert_eq!(
        mirror_git(mirror.dir(), &["rev-list", "--count", "v1.0.0"]).trim(),
        "2"
    );
}
