//! Persistent bare mirrors, one per repository URL, and reading from them.
//!
//! A mirror lives in `<root>/<sha256(url) hex>`: the directory name never contains any part of
//! the URL, so no input can steer it outside the root. It is created once (`git init --bare` into
//! a temporary directory, first fetch, rename into place, so a half-made mirror is never used)
//! and afterwards updated with an incremental `git fetch --prune`, never a second clone.
//!
//! Concurrent callers for one repository share one fetch: each repository has an async mutex,
//! and whoever gets it after a fetch finds the mirror fresh and skips fetching. A fetch is also
//! skipped while the last one is younger than the configured refresh interval (measured from
//! `FETCH_HEAD`'s mtime after a restart).
//!
//! Credentials configured for a mirror's host ([`Mirrors::with_credentials`]) reach every git
//! command run on that mirror through its environment (see [`crate::credentials`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::credentials::{self, HostCredential};
use crate::error::Error;
use crate::git::{redact, Git};

/// Refspecs of a fetch: branches and tags only (not `refs/pull/*` and other host-specific
/// namespaces), force-updated because upstream may move them.
const FETCH_ARGS: &[&str] = &[
    "fetch",
    "--quiet",
    "--prune",
    "--tags",
    "origin",
    "+refs/heads/*:refs/heads/*",
    "+refs/tags/*:refs/tags/*",
];

/// The set of mirrors under one root directory.
#[derive(Debug)]
pub struct Mirrors {
    root: PathBuf,
    refresh_interval: Duration,
    repos: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    fetches: AtomicU64,
    credentials: Vec<HostCredential>,
}

/// Per-repository state, guarded by the repository's async mutex.
#[derive(Debug, Default)]
struct Slot {
    last_fetch: Option<Instant>,
}

impl Mirrors {
    /// Mirrors under `root` (created on first use), refreshed at most once per
    /// `refresh_interval`. A zero interval fetches on every [`Mirrors::open`].
    pub fn new(root: impl Into<PathBuf>, refresh_interval: Duration) -> Self {
        Mirrors {
            root: root.into(),
            refresh_interval,
            repos: Mutex::new(HashMap::new()),
            fetches: AtomicU64::new(0),
            credentials: Vec::new(),
        }
    }

    /// Hands `credentials` to every git command on a mirror of the matching host (HTTPS
    /// passwords and tokens as a host-scoped `extraHeader`, SSH keys as the SSH command).
    pub fn with_credentials(mut self, credentials: Vec<HostCredential>) -> Self {
        self.credentials = credentials;
        self
    }

    /// The configured credentials.
    pub fn credentials(&self) -> &[HostCredential] {
        &self.credentials
    }

    /// The git environment for a repository URL: the credentials for its host, if any.
    pub(crate) fn env_for(&self, url: &str) -> Arc<Vec<(String, String)>> {
        Arc::new(credentials::git_env(&self.credentials, url))
    }

    /// `git ls-remote <url>` with the URL's credentials: the number of refs the remote has.
    /// For `agora doctor`; errors are classified as for fetches.
    pub async fn ls_remote(&self, url: &str) -> Result<usize, Error> {
        check_url(url)?;
        let env = self.env_for(url);
        // `--` keeps the URL from being taken for an option (check_url refuses a leading '-'
        // too); the displayed command has credentials redacted.
        let out = Git::new(None, &["ls-remote", "--", url])
            .envs(&env)
            .run()
            .await?;
        Ok(String::from_utf8_lossy(&out).lines().count())
    }

    /// How many fetches (including first creations) this set has run; for metrics and tests.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The directory of the mirror for `url`.
    pub fn dir_for(&self, url: &str) -> PathBuf {
        let digest = Sha256::digest(url.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.root.join(hex)
    }

    /// Returns the mirror of `url`, creating it or fetching into it first unless it was
    /// refreshed within the refresh interval.
    pub async fn open(&self, url: &str) -> Result<Mirror, Error> {
        check_url(url)?;
        let slot = {
            let mut repos = self.repos.lock().unwrap_or_else(|e| e.into_inner());
            repos.entry(url.to_owned()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        let mirror = Mirror {
            dir: self.dir_for(url),
            url: redact(url),
            env: self.env_for(url),
        };
        let exists = mirror.dir.join("HEAD").is_file();
        if exists && self.is_fresh(&slot, &mirror.dir) {
            return Ok(mirror);
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        if exists {
            mirror.fetch().await?;
        } else {
            self.create(&mirror, url).await?;
        }
        tracing::debug!(
            repo.url = %mirror.url,
            created = !exists,
            duration_ms = started.elapsed().as_millis() as u64,
            "mirror fetched"
        );
        slot.last_fetch = Some(Instant::now());
        Ok(mirror)
    }

    fn is_fresh(&self, slot: &Slot, dir: &Path) -> bool {
        match slot.last_fetch {
            Some(at) => at.elapsed() < self.refresh_interval,
            // After a restart, the last fetch left FETCH_HEAD behind.
            None => std::fs::metadata(dir.join("FETCH_HEAD"))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age < self.refresh_interval),
        }
    }

    async fn create(&self, mirror: &Mirror, url: &str) -> Result<(), Error> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = mirror
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let tmp = self
            .root
            .join(format!(".tmp-{name}-{}-{nanos}", std::process::id()));
        let tmp_str = tmp.to_string_lossy().into_owned();
        let result = async {
            Git::new(None, &["init", "--quiet", "--bare", &tmp_str])
                .run()
                .await?;
            // The URL goes into the config file rather than onto a command line, where `ps`
            // would show any credentials in it.
            let config = tmp.join("config");
            let mut text = std::fs::read_to_string(&config).map_err(io_err(&config))?;
            text.push_str(&format!(
                "[remote \"origin\"]\n\turl = \"{}\"\n[gc]\n\tautoDetach = false\n",
                url.replace('\\', "\\\\").replace('"', "\\\"")
            ));
            std::fs::write(&config, text).map_err(io_err(&config))?;
            let staged = Mirror {
                dir: tmp.clone(),
                url: mirror.url.clone(),
                env: mirror.env.clone(),
            };
            staged.fetch().await
        }
        .await;
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&tmp, &mirror.dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another process won the race and made the mirror: use theirs.
            if !mirror.dir.join("HEAD").is_file() {
                return Err(Error::Io {
                    path: mirror.dir.clone(),
                    source: e,
                });
            }
        }
        Ok(())
    }
}

/// Refuses URLs git should not be handed: `ext::` and other remote helpers can run commands,
/// and control characters could break the config file.
fn check_url(url: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::BadUrl {
            url: redact(url),
            reason,
        })
    };
    if url.is_empty() || url.starts_with('-') {
        return bad("empty or starts with '-'");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("contains white space or control characters");
    }
    if url.contains("::") {
        return bad("remote helpers (<transport>::<address>) are not allowed");
    }
    match url.split_once("://") {
        Some((scheme, _)) => {
            if !matches!(
                scheme,
                "https" | "http" | "ssh" | "git" | "file" | "git+ssh"
            ) {
                return bad("scheme must be https, http, ssh, git or file");
            }
        }
        // scp-like `[user@]host:path`.
        None => {
            if !url.contains(':') {
                return bad("not a URL");
            }
        }
    }
    Ok(())
}

/// A commit's full hash and committer time (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub hash: String,
    pub time: i64,
}

/// The branches and tags of a mirror, each mapped to the commit it points to (annotated tags
/// peeled).
#[derive(Debug, Clone, Default)]
pub struct Refs {
    /// Tag name (without `refs/tags/`) → commit hash.
    pub tags: BTreeMap<String, String>,
    /// Branch name (without `refs/heads/`) → commit hash.
    pub heads: BTreeMap<String, String>,
}

impl Refs {
    /// The tags pointing at `hash`, sorted.
    pub fn tags_at(&self, hash: &str) -> Vec<String> {
        self.tags
            .iter()
            .filter(|(_, h)| h.as_str() == hash)
            .map(|(t, _)| t.clone())
            .collect()
    }
}

/// One mirrored repository.
#[derive(Clone)]
pub struct Mirror {
    dir: PathBuf,
    /// The URL with credentials redacted, for messages.
    url: String,
    /// Credentials for the URL's host, for every git command on this mirror.
    env: Arc<Vec<(String, String)>>,
}

/// Leaves out the environment, which may hold credentials.
impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("dir", &self.dir)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// The bare repository's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The repository URL, credentials redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn git<'a>(&'a self, args: &[&'a str]) -> Git<'a> {
        Git::new(Some(&self.dir), args).envs(&self.env)
    }

    /// Fetches branches and tags, then points `HEAD` where the remote's `HEAD` points, which a
    /// fetch does not do and which `latest` needs.
    async fn fetch(&self) -> Result<(), Error> {
        self.git(FETCH_ARGS).run().await?;
        let out = self
            .git(&["ls-remote", "--symref", "origin", "HEAD"])
            .run()
            .await?;
        let out = String::from_utf8_lossy(&out);
        let mut symref = None;
        let mut hash = None;
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("ref: ") {
                symref = rest.split('\t').next().map(str::to_owned);
            } else if let Some((h, name)) = line.split_once('\t') {
                if name == "HEAD" && is_hex(h) {
                    hash = Some(h.to_owned());
                }
            }
        }
        match (symref, hash) {
            (Some(branch), _) if branch.starts_with("refs/heads/") => {
                self.git(&["symbolic-ref", "HEAD", &branch]).run().await?;
            }
            (_, Some(hash)) => {
                self.git(&["update-ref", "--no-deref", "HEAD", &hash])
                    .run()
                    .await?;
            }
            // An empty repository has no HEAD to follow.
            _ => {}
        }
        Ok(())
    }

    /// All branches and tags, with one `git for-each-ref`.
    pub async fn refs(&self) -> Result<Refs, Error> {
        let git = self.git(&[
            "for-each-ref",
            "--format=%(objectname) %(*objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        ]);
        let out = git.run().await?;
        let out = String::from_utf8_lossy(&out);
        let mut refs = Refs::default();
        for line in out.lines() {
            let mut f = line.splitn(3, ' ');
            let (Some(obj), Some(peeled), Some(name)) = (f.next(), f.next(), f.next()) else {
                return Err(Error::BadOutput {
                    command: git.display(),
                    output: line.to_owned(),
                });
            };
            let hash = if peeled.is_empty() { obj } else { peeled };
            if let Some(tag) = name.strip_prefix("refs/tags/") {
                refs.tags.insert(tag.to_owned(), hash.to_owned());
            } else if let Some(branch) = name.strip_prefix("refs/heads/") {
                refs.heads.insert(branch.to_owned(), hash.to_owned());
            }
        }
        Ok(refs)
    }

    /// The commit `HEAD` points to, `None` in an empty repository.
    pub async fn head(&self) -> Result<Option<String>, Error> {
        self.resolve_commit("HEAD").await
    }

    /// Resolves a revision that is a full or abbreviated hash, `HEAD` or a full ref name to a
    /// commit hash; `None` if it names no commit (or an ambiguous prefix). Callers pass only
    /// such checked revisions, never raw input, so nothing can be taken for an option.
    pub async fn resolve_commit(&self, rev: &str) -> Result<Option<String>, Error> {
        debug_assert!(!rev.starts_with('-'));
        let spec = format!("{rev}^{{commit}}");
        let git = self.git(&["rev-parse", "--quiet", "--verify", &spec]);
        let out = git.output(None).await?;
        if !out.status.success() {
            return Ok(None);
        }
        let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !is_hex(&hash) {
            return Err(Error::BadOutput {
                command: git.display(),
                output: hash,
            });
        }
        Ok(Some(hash))
    }

    /// Hash and committer time of a commit given by full hash.
    pub async fn commit(&self, hash: &str) -> Result<Commit, Error> {
        let git = self.git(&[
            "-c",
            "log.showsignature=false",
            "log",
            "--no-decorate",
            "-n1",
            "--format=format:%H %ct",
            hash,
            "--",
        ]);
        let out = git.run().await?;
        let out = String::from_utf8_lossy(&out);
        let mut f = out.split_whitespace();
        match (f.next(), f.next().and_then(|t| t.parse().ok())) {
            (Some(h), Some(time)) if is_hex(h) => Ok(Commit {
                hash: h.to_owned(),
                time,
            }),
            _ => Err(Error::BadOutput {
                command: git.display(),
                output: out.into_owned(),
            }),
        }
    }

    /// The contents of the regular file `path` in commit `hash`, `None` if there is none (or
    /// it is a directory or submodule). Files larger than `max_size` are an error.
    pub async fn read_file(
        &self,
        hash: &str,
        path: &str,
        max_size: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        // `--batch` reports a missing object as "<spec> missing" instead of failing, which
        // tells "no such file" apart from real errors.
        let git = self.git(&["cat-file", "--batch"]);
        if path.contains('\n') {
            return Ok(None);
        }
        let input = format!("{hash}:{path}\n");
        let out = git.output(Some(input.as_bytes())).await?;
        if !out.status.success() {
            return Err(git.failure(&out));
        }
        let bad = || Error::BadOutput {
            command: git.display(),
            output: String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(200)]).into_owned(),
        };
        let nl = out
            .stdout
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(bad)?;
        let header = String::from_utf8_lossy(&out.stdout[..nl]);
        let f: Vec<&str> = header.split(' ').collect();
        if f.last() == Some(&"missing") || f.last() == Some(&"ambiguous") {
            return Ok(None);
        }
        let [_, kind, size] = f[..] else {
            return Err(bad());
        };
        if kind != "blob" {
            return Ok(None);
        }
        let size: u64 = size.parse().map_err(|_| bad())?;
        if size > max_size {
            return Err(Error::BadOutput {
                command: git.display(),
                output: format!("{path}: file too large ({size} > {max_size} bytes)"),
            });
        }
        let body = out
            .stdout
            .get(nl + 1..nl + 1 + size as usize)
            .ok_or_else(bad)?;
        Ok(Some(body.to_vec()))
    }

    /// Tags (without `refs/tags/`) whose commits are ancestors of, or equal to, `hash`.
    pub async fn merged_tags(&self, hash: &str) -> Result<Vec<String>, Error> {
        let out = self
            .git(&[
                "for-each-ref",
                "--format=%(refname)",
                "--merged",
                hash,
                "refs/tags",
            ])
            .run()
            .await?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.strip_prefix("refs/tags/"))
            .map(str::to_owned)
            .collect())
    }

    /// Whether tag `tag` is an ancestor of (or equal to) commit `hash`.
    pub async fn tag_is_ancestor(&self, tag: &str, hash: &str) -> Result<bool, Error> {
        let tag_ref = format!("refs/tags/{tag}");
        let git = self.git(&["merge-base", "--is-ancestor", "--", &tag_ref, hash]);
        let out = git.output(None).await?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(git.failure(&out)),
        }
    }
}

pub(crate) fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_is_hash_of_url() {
        let m = Mirrors::new("/r", Duration::ZERO);
        let d = m.dir_for("https://example.com/../../etc");
        assert_eq!(d.parent(), Some(Path::new("/r")));
        assert_eq!(d.file_name().map(|n| n.len()), Some(64));
    }

    #[test]
    fn rejects_dangerous_urls() {
        for url in [
            "ext::sh -c touch% /tmp/x",
            "-uhttps://x",
            "https://x/a b",
            "ftp://x/y",
            "",
            "justaname",
        ] {
            assert!(check_url(url).is_err(), "{url}");
        }
        for url in [
            "https://github.com/o/r",
            "ssh://git@h/x.git",
            "git@h:x.git",
            "file:///tmp/x",
        ] {
            assert!(check_url(url).is_ok(), "{url}");
        }
    }
}
