//! Deterministic fixture repositories made with the system `git`, and a local "git host".
//!
//! [`Repo`] commits with a fixed author and committer and a fixed, increasing commit time (by default
//! 2024-01-02T03:04:05Z, then one hour later per commit), so commit hashes, `.info` times and
//! pseudo-versions are the same on every run and machine. Git runs with `GIT_CONFIG_NOSYSTEM=1` and
//! `GIT_CONFIG_GLOBAL=/dev/null`, so the developer's configuration (signing, hooks, autocrlf, default
//! branch) never leaks into a fixture.
//!
//! [`GitHost`] keeps repositories at `<root>/<host>/<path>` and writes a gitconfig that rewrites
//! `https://<host>/` to `file://<root>/<host>/` with `url.<base>.insteadOf`.
//!
//! # How the go command reaches these repositories (verified with Go 1.23.5, git 2.47)
//!
//! `file://` works; no HTTP server is needed. For `github.com/<owner>/<repo>` paths the go command
//! knows the repository root statically (no `?go-get=1` lookup) and runs
//! `git ls-remote`/`git fetch` on `https://github.com/<owner>/<repo>`; git applies `insteadOf` itself,
//! so the fetch reads the local repository. The go command only checks that the scheme of the URL
//! *it* computed is secure (`https`, or whatever `GIT_ALLOW_PROTOCOL` lists: cmd/go/internal/vcs
//! `isSecureScheme`); it never sets `GIT_ALLOW_PROTOCOL` or `GIT_PROTOCOL_FROM_USER` for git itself
//! (cmd/go/internal/modload/init.go only sets `GIT_TERMINAL_PROMPT=0` and a default
//! `GIT_SSH_COMMAND`). So the one thing to avoid is an inherited `GIT_ALLOW_PROTOCOL` without `file`
//! ([`GoClient`](crate::GoClient) removes it). `protocol.file.allow = always` is set in the gitconfig
//! anyway (git's default for non-submodule use, but explicit is safer against future defaults).
//!
//! For hosts other than github.com (registered with [`GitHost::host`]) the go command first asks
//! `https://<path>?go-get=1` for a go-import meta tag: serve that host's directory with an
//! [`HttpsGitServer`](crate::HttpsGitServer), which answers it (and serves git itself over HTTPS).
//! Without a server, the rewrite still serves agora (which maps paths to repository URLs by
//! configuration) and module paths carrying a `.git` suffix (`corp.example/team/lib.git`), for which
//! go skips the lookup.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use tempfile::TempDir;

/// Fixed identity of every fixture commit and tag.
pub const AUTHOR_NAME: &str = "Agora Fixtures";
/// Fixed e-mail of every fixture commit and tag.
pub const AUTHOR_EMAIL: &str = "fixtures@agora.test";
/// Commit time of the first commit of a [`Repo`]: 2024-01-02T03:04:05Z.
pub const DEFAULT_START: i64 = 1_704_164_645;
/// How far apart consecutive commits are.
pub const COMMIT_STEP_SECS: i64 = 3600;

/// A non-bare git work tree for building fixture history.
#[derive(Debug)]
pub struct Repo {
    dir: PathBuf,
    next_time: i64,
    last_time: Option<i64>,
}

impl Repo {
    /// `git init -b main` at `path` (created if missing).
    pub fn init(path: impl Into<PathBuf>) -> Repo {
        Repo::init_with_object_format(path, "sha1")
    }

    /// [`init`](Self::init) with `--object-format=<format>` (`sha1` or `sha256`): SHA-256
    /// repositories have 64-digit object names.
    pub fn init_with_object_format(path: impl Into<PathBuf>, format: &str) -> Repo {
        let dir = path.into();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create repo dir {}: {e}", dir.display()));
        let repo = Repo {
            dir,
            next_time: DEFAULT_START,
            last_time: None,
        };
        repo.git([
            "init",
            "-q",
            "-b",
            "main",
            &format!("--object-format={format}"),
        ]);
        repo
    }

    /// The work tree.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Sets the commit time of the next commit (later ones add one hour each).
    /// Accepts `YYYY-MM-DDTHH:MM:SSZ` (UTC only).
    pub fn at(&mut self, time: &str) -> &mut Self {
        self.next_time = parse_utc(time);
        self
    }

    /// Like [`at`](Self::at) with Unix seconds.
    pub fn at_unix(&mut self, secs: i64) -> &mut Self {
        self.next_time = secs;
        self
    }

    /// The commit time (Unix seconds) the next commit will get.
    pub fn next_time(&self) -> i64 {
        self.next_time
    }

    /// Writes a file (parents created), replacing a file or symlink that is there.
    pub fn write(&mut self, rel: &str, bytes: impl AsRef<[u8]>) -> &mut Self {
        let p = self.file(rel);
        if p.is_symlink() {
            std::fs::remove_file(&p).unwrap_or_else(|e| panic!("remove {}: {e}", p.display()));
        }
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        self
    }

    /// Creates a symlink `rel -> target` (replacing what is there).
    pub fn symlink(&mut self, rel: &str, target: &str) -> &mut Self {
        let p = self.file(rel);
        if p.symlink_metadata().is_ok() {
            std::fs::remove_file(&p).unwrap_or_else(|e| panic!("remove {}: {e}", p.display()));
        }
        std::os::unix::fs::symlink(target, &p)
            .unwrap_or_else(|e| panic!("symlink {} -> {target}: {e}", p.display()));
        self
    }

    /// Removes a file, symlink or directory tree from the work tree (staged at the next commit).
    pub fn remove(&mut self, rel: &str) -> &mut Self {
        let p = self.dir.join(rel);
        let meta = p
            .symlink_metadata()
            .unwrap_or_else(|e| panic!("remove {}: {e}", p.display()));
        let res = if meta.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        res.unwrap_or_else(|e| panic!("remove {}: {e}", p.display()));
        self
    }

    /// Stages everything (`git add -A`) and commits (empty commits allowed) with the fixed identity
    /// and the next commit time. Returns the full commit hash.
    pub fn commit(&mut self, msg: &str) -> String {
        self.git(["add", "-A"]);
        let time = self.next_time;
        self.git_at(
            time,
            ["commit", "-q", "--allow-empty", "--no-verify", "-m", msg],
        );
        self.last_time = Some(time);
        self.next_time = time + COMMIT_STEP_SECS;
        self.head()
    }

    /// A lightweight tag at HEAD.
    pub fn tag(&mut self, name: &str) -> &mut Self {
        self.git(["tag", name]);
        self
    }

    /// An annotated tag at HEAD, dated at the last commit's time.
    pub fn annotated_tag(&mut self, name: &str, msg: &str) -> &mut Self {
        let time = self.last_time.unwrap_or(self.next_time);
        self.git_at(time, ["tag", "-a", name, "-m", msg]);
        self
    }

    /// A lightweight tag at any revision.
    pub fn tag_at(&mut self, name: &str, rev: &str) -> &mut Self {
        self.git(["tag", name, rev]);
        self
    }

    /// Creates a branch at HEAD without switching to it.
    pub fn branch(&mut self, name: &str) -> &mut Self {
        self.git(["branch", name]);
        self
    }

    /// Switches the work tree to a branch, tag or commit.
    ///
    /// Leave fixture repositories on their default branch when done: the go command takes the
    /// remote's `HEAD` (the checked-out branch here) as the default branch.
    pub fn checkout(&mut self, name: &str) -> &mut Self {
        self.git(["checkout", "-q", name]);
        self
    }

    /// Full hash of HEAD.
    pub fn head(&self) -> String {
        self.rev_parse("HEAD")
    }

    /// Full hash of any revision.
    pub fn rev_parse(&self, rev: &str) -> String {
        self.git(["rev-parse", &format!("{rev}^{{commit}}")])
            .trim()
            .to_string()
    }

    /// Runs `git <args>` in the work tree with the isolated environment; returns stdout.
    ///
    /// # Panics
    /// When git fails, with its stderr.
    pub fn git<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = git_command(&self.dir);
        cmd.args(args);
        run_git(cmd)
    }

    fn git_at<I, S>(&self, time: i64, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let date = format!("@{time} +0000");
        let mut cmd = git_command(&self.dir);
        cmd.args(args)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date);
        run_git(cmd)
    }

    fn file(&self, rel: &str) -> PathBuf {
        assert!(
            !rel.is_empty() && !rel.starts_with('/'),
            "fixture path must be relative: {rel:?}"
        );
        let p = self.dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        p
    }
}

/// A `git` command in `dir` that ignores the system and user configuration and the caller's git
/// environment, with the fixed fixture identity.
pub fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir);
    for key in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_DATE",
    ] {
        cmd.env_remove(key);
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", AUTHOR_NAME)
        .env("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL)
        .env("GIT_COMMITTER_NAME", AUTHOR_NAME)
        .env("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL);
    cmd
}

fn run_git(mut cmd: Command) -> String {
    let desc = crate::go::describe(&cmd);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {desc} (is git installed? run scripts/setup): {e}"));
    assert!(
        out.status.success(),
        "{desc} failed ({}) in {}:\n{}{}",
        out.status,
        cmd.get_current_dir().unwrap_or(Path::new(".")).display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into Unix seconds.
///
/// # Panics
/// On any other format: fixtures are written by hand, a typo should be loud.
pub fn parse_utc(s: &str) -> i64 {
    let bad = || -> ! { panic!("expected a time like 2024-01-02T03:04:05Z, got {s:?}") };
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        bad();
    }
    let num = |r: std::ops::Range<usize>| -> i64 { s[r].parse().unwrap_or_else(|_| bad()) };
    let (y, mo, d) = (num(0..4), num(5..7), num(8..10));
    let (h, mi, se) = (num(11..13), num(14..16), num(17..19));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        bad();
    }
    // Days from civil (Howard Hinnant's algorithm), proleptic Gregorian calendar.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + h * 3600 + mi * 60 + se
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (what `.info` files carry as `Time`).
pub fn format_utc(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Formats Unix seconds as `YYYYMMDDHHMMSS`, the timestamp inside a pseudo-version.
pub fn pseudo_timestamp(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// Unix seconds to (year, month, day, hour, minute, second), UTC (Howard Hinnant's civil_from_days).
fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    (y, mo, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A directory of repositories laid out as `<root>/<host>/<path>`, plus a gitconfig that makes
/// `https://<host>/...` resolve to them. See the module docs for how the go command uses it.
///
/// The host list and extra configuration sit behind mutexes so that fixture builders taking
/// `&GitHost` (e.g. [`private_matrix`](crate::fixtures::private_matrix)) can register their host.
#[derive(Debug)]
pub struct GitHost {
    tmp: TempDir,
    hosts: Mutex<Vec<String>>,
    extra_config: Mutex<String>,
}

/// Poisoning only means another test thread panicked while holding the lock; the data is still fine.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for GitHost {
    fn default() -> Self {
        GitHost::new()
    }
}

impl GitHost {
    /// A host for `github.com`; add others with [`host`](Self::host).
    pub fn new() -> GitHost {
        let tmp = crate::scratch::tempdir("agora-git-");
        std::fs::create_dir_all(tmp.path().join("repos")).expect("create git host root");
        let host = GitHost {
            tmp,
            hosts: Mutex::new(vec!["github.com".to_string()]),
            extra_config: Mutex::new(String::new()),
        };
        host.write_config(&lock(&host.hosts));
        host
    }

    /// Also rewrites `https://<name>/` to this host's repositories.
    pub fn host(self, name: &str) -> Self {
        self.add_host(name);
        self
    }

    /// [`host`](Self::host) by reference. Idempotent.
    pub fn add_host(&self, name: &str) {
        let mut hosts = lock(&self.hosts);
        if !hosts.iter().any(|h| h == name) {
            hosts.push(name.to_string());
            std::fs::create_dir_all(self.root().join(name))
                .unwrap_or_else(|e| panic!("create host dir {name}: {e}"));
            self.write_config(&hosts);
        }
    }

    /// Whether `name` was registered with [`host`](Self::host) (github.com always is).
    pub fn has_host(&self, name: &str) -> bool {
        lock(&self.hosts).iter().any(|h| h == name)
    }

    /// Appends raw text to the generated gitconfig (e.g. an `[http]` section).
    pub fn append_config(&self, text: &str) {
        {
            let mut extra = lock(&self.extra_config);
            extra.push_str(text);
            if !text.ends_with('\n') {
                extra.push('\n');
            }
        }
        self.write_config(&lock(&self.hosts));
    }

    /// `<root>`: repositories live at `<root>/<host>/<path>`.
    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("repos")
    }

    /// The generated gitconfig, for `GIT_CONFIG_GLOBAL` (see [`GoClient::gitconfig`](crate::GoClient::gitconfig)).
    pub fn gitconfig_path(&self) -> PathBuf {
        self.tmp.path().join("gitconfig")
    }

    /// The directory of repository `repo_path` (e.g. `github.com/agora-fixtures/greet`).
    pub fn repo_dir(&self, repo_path: &str) -> PathBuf {
        self.root().join(repo_path)
    }

    /// `file://` URL of repository `repo_path`.
    pub fn file_url(&self, repo_path: &str) -> String {
        format!("file://{}", self.repo_dir(repo_path).display())
    }

    /// Creates (`git init`) repository `repo_path`, e.g. `github.com/agora-fixtures/greet`.
    pub fn repo(&self, repo_path: &str) -> Repo {
        self.repo_with_object_format(repo_path, "sha1")
    }

    /// [`repo`](Self::repo) with `--object-format=<format>` (`sha1` or `sha256`).
    pub fn repo_with_object_format(&self, repo_path: &str, format: &str) -> Repo {
        let host = repo_path.split('/').next().unwrap_or_default();
        assert!(
            self.has_host(host),
            "repository {repo_path:?} is on host {host:?}, which is not registered (GitHost::host)"
        );
        let dir = self.repo_dir(repo_path);
        assert!(
            !dir.join(".git").exists(),
            "fixture repository {repo_path} already exists"
        );
        Repo::init_with_object_format(dir, format)
    }

    fn write_config(&self, hosts: &[String]) {
        let root = self.root();
        let mut cfg = String::from(
            "# Generated by agora-testkit: serve https://<host>/... from local repositories.\n",
        );
        for h in hosts {
            cfg.push_str(&format!(
                "[url \"file://{}/{h}/\"]\n\tinsteadOf = https://{h}/\n",
                root.display()
            ));
        }
        cfg.push_str("[protocol \"file\"]\n\tallow = always\n");
        // The repositories may belong to another user than the process reading them.
        cfg.push_str("[safe]\n\tdirectory = *\n");
        cfg.push_str(&lock(&self.extra_config));
        let path = self.gitconfig_path();
        // Write-then-rename: a go command running concurrently never sees a half-written file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, cfg).expect("write gitconfig");
        std::fs::rename(&tmp, &path).expect("install gitconfig");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_utc_known_values() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), 0);
        assert_eq!(parse_utc("2024-01-02T03:04:05Z"), DEFAULT_START);
        assert_eq!(parse_utc("2000-03-01T00:00:00Z"), 951_868_800);
    }

    #[test]
    fn format_utc_round_trips() {
        for t in [
            "1970-01-01T00:00:00Z",
            "2024-01-02T03:04:05Z",
            "2000-02-29T23:59:59Z",
            "2100-12-31T12:00:00Z",
        ] {
            assert_eq!(format_utc(parse_utc(t)), t);
        }
        assert_eq!(pseudo_timestamp(DEFAULT_START), "20240102030405");
    }

    #[test]
    #[should_panic(expected = "expected a time like")]
    fn parse_utc_rejects_offsets() {
        parse_utc("2024-01-02T03:04:05+01:00");
    }

    #[test]
    fn commits_are_deterministic() {
        let make = || {
            let tmp = crate::scratch::tempdir("agora-repo-test-");
            let mut r = Repo::init(tmp.path().join("r"));
            r.write("a.txt", "hello\n");
            let c1 = r.commit("one");
            r.write("dir/b.txt", "b\n").symlink("link", "a.txt");
            let c2 = r.commit("two");
            let times = r.git(["log", "--format=%ct %at", "main"]);
            (c1, c2, times)
        };
        let (a1, a2, times) = make();
        let (b1, b2, _) = make();
        assert_eq!(
            (a1, a2),
            (b1, b2),
            "same content and times give the same hashes"
        );
        assert_eq!(
            times,
            format!(
                "{t} {t}\n{d} {d}\n",
                t = DEFAULT_START + 3600,
                d = DEFAULT_START
            )
        );
    }
}
