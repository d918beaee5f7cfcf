//! Persistent bare mirrors, one per repository URL, and reading from them.
//!
//! A mirror lives in `<root>/<sha256(url) hex>`: the directory name never contains any part of
//! the URL, so no input can steer it outside the root. It is created once (`git init --bare` into
//! a temporary directory, first fetch, rename into place, so a half-made mirror is never used)
//! and afterwards updated with an incremental `git fetch --prune`, never a second clone.
//!
//! # The first fetch
//!
//! Mirroring a repository's whole history before the first answer costs minutes for the large
//! repositories companies keep, where the go command fetches one commit. So by default
//! ([`FirstFetch::Minimal`]) a new mirror starts *partial*: its refs come from one
//! `git ls-remote`, and each commit a request needs is fetched alone (`git fetch --depth=1` of the
//! ref naming it). Shortly after the first such fetch, everything else is fetched in the
//! background; until it has finished, what needs history (pseudo-versions, hash prefixes,
//! ancestry) waits for it, so answers are the same as a complete mirror's. All fetches into a
//! partial mirror take turns. A partial mirror carries a marker file, so that a mirror left partial by a stopped
//! process is completed before its next use.
//!
//! # Object formats
//!
//! A repository names its objects with SHA-1 (40 hex digits) or SHA-256 (64), chosen when it is
//! created, and a fetch only works between repositories of the same format ("mismatched
//! algorithms: client sha1; server sha256"). `git ls-remote` works across formats, and the
//! length of the hashes it lists names the remote's: a partial mirror (the default first fetch)
//! is made in that format, as the go command makes its repositories. A mirror made by a full
//! first fetch starts in git's default format, and only when that fetch fails that way (git
//! reports it after the remote's greeting and before any object is sent) is it made again in
//! the remote's. The format is then read from the mirror's config ([`ObjectFormat`]); it
//! decides which hex strings are full object names (see [`Mirror::object_format`]). A repository
//! replaced by one in the other format fails a fetch the same way, and gets a new mirror.
//!
//! Concurrent callers for one repository share one fetch: each repository has an async mutex,
//! and whoever gets it after a fetch finds the mirror fresh and skips fetching. A fetch is also
//! skipped while the last one is younger than the configured refresh interval (measured from
//! `FETCH_HEAD`'s mtime after a restart).
//!
//! Credentials configured for a mirror's host ([`Mirrors::with_credentials`]), or a password in
//! the repository URL itself, reach every git command run on that mirror through its
//! environment (see [`crate::credentials`]); git's command lines and the mirror's config file
//! only ever hold the URL without the password.
//!
//! # Fewer git processes
//!
//! One version costs the proxy three requests (`.info`, `.mod`, `.zip`), each of which resolves
//! the version again; spawning git for every step of that was most of a cold fetch's time. So:
//!
//! - a fetch also fetches the remote's `HEAD` (into `refs/agora/head`), so no separate
//!   `ls-remote` is needed to follow the default branch;
//! - a repository's refs are read once per fetch (one `for-each-ref`) and kept until the next
//!   fetch, which is when they can change (within the refresh interval another process sharing
//!   the mirror directory may have fetched; its news are seen at our next fetch, as if we had
//!   not looked yet);
//! - commit times and small files at a commit are kept in a bounded memo shared by all mirrors:
//!   both are determined by the full commit hash, so they never go stale; a commit is read with
//!   the same `cat-file --batch` as files, not with `git log`;
//! - `git fetch` would run `git maintenance run --auto` before returning (a process, a few
//!   milliseconds, usually to find nothing to do) while the request that caused the fetch waits.
//!   Fetches skip it, and the same check runs after the fetch as a task of its own, at most one
//!   at a time per repository, so loose objects and packs are still consolidated as git would.
//!   It does not hold the repository's mutex: git's own lock files make a fetch or a read safe
//!   next to a running gc, as on any git server taking pushes while it repacks.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::credentials::{self, HostCredential};
use crate::error::{Error, GitFailure};
use agora_secret::redact;

use crate::git::Git;

/// Refspecs of a fetch: branches and tags only (not `refs/pull/*` and other host-specific
/// namespaces), force-updated because upstream may move them.
/// The fetch leaves housekeeping to a later, separate `git maintenance` run (see the module docs).
const FETCH_ARGS: &[&str] = &[
    "-c",
    "maintenance.auto=false",
    "fetch",
    "--quiet",
    "--prune",
    "--tags",
    "origin",
    "+refs/heads/*:refs/heads/*",
    "+refs/tags/*:refs/tags/*",
];

/// Where a fetch stores the commit the remote's `HEAD` names (the default branch's tip), which
/// `latest` needs. Outside `refs/heads` and `refs/tags`, so it is never taken for a branch or a
/// tag, and not touched by `--prune` (which only prunes what wildcard refspecs map).
const REMOTE_HEAD: &str = "refs/agora/head";

/// The refspec that fills [`REMOTE_HEAD`].
const REMOTE_HEAD_SPEC: &str = "+HEAD:refs/agora/head";

/// The file in a partial mirror (see the module docs, "The first fetch").
const PARTIAL_MARKER: &str = "agora-partial";

/// How long a partial mirror waits after its first commit before fetching the rest: a client
/// asks for a version's `.info`, `.mod` and `.zip` (and often several versions) in a burst, and
/// the whole fetch would compete with those answers for CPU and disk. A request that needs
/// history does not wait for this: it starts the fetch itself.
const COMPLETION_DELAY: Duration = Duration::from_secs(1);

/// Longest ref name element a mirror can hold: git writes `<element>.lock` before the ref
/// itself, and a file name has at most 255 bytes on the file systems mirrors live on.
const MAX_REF_ELEMENT: usize = 255 - ".lock".len();

/// Largest file kept in the object memo (go.mod files, LICENSE files of subdirectory modules).
const MEMO_MAX_FILE: usize = 64 << 10;
/// Bytes of file content the object memo holds at most, for all mirrors together.
const MEMO_FILE_BYTES: usize = 8 << 20;
/// Commit times the object memo holds at most.
const MEMO_COMMITS: usize = 1 << 16;

/// The set of mirrors under one root directory.
#[derive(Debug)]
pub struct Mirrors {
    root: PathBuf,
    refresh_interval: Duration,
    repos: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    fetches: AtomicU64,
    credentials: Vec<HostCredential>,
    objects: Arc<ObjectMemo>,
    first_fetch: FirstFetch,
}

/// How a new mirror gets its first objects (see the module docs, "The first fetch").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FirstFetch {
    /// List the refs, fetch each commit a request needs alone, and the rest in the background.
    #[default]
    Minimal,
    /// Fetch every branch and tag with its whole history before the first answer.
    Full,
}

/// Per-repository state, guarded by the repository's async mutex.
#[derive(Debug, Default)]
struct Slot {
    last_fetch: Option<Instant>,
    refs: Arc<RefsMemo>,
    /// Set while a `git maintenance` run for this repository is under way.
    maintaining: Arc<AtomicBool>,
    /// Remote refs the last fetch found it cannot store (see [`unmirrorable`]), left out of
    /// later fetches.
    skipped: Arc<Mutex<Vec<String>>>,
    partial: Arc<Partial>,
    /// Whether this process has looked for a partial mirror's marker left by an earlier one
    /// (once: later partial mirrors are made here and known).
    marker_checked: bool,
    /// The mirror's object format, once read from its config.
    format: Option<ObjectFormat>,
}

/// The state of a mirror made by a minimal first fetch, until its history is complete.
#[derive(Debug, Default)]
struct Partial {
    /// Whether the mirror still lacks history (the refs memo then holds the remote's refs).
    pending: AtomicBool,
    /// Set while a fetch of the whole repository runs in the background.
    completing: AtomicBool,
    /// Fetches into a partial mirror take turns: git's shallow file allows one at a time.
    turn: tokio::sync::Mutex<()>,
    /// Commits fetched so far (full hashes).
    have: Mutex<HashSet<String>>,
}

impl Partial {
    fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    fn has(&self, hash: &str) -> bool {
        self.have
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(hash)
    }
}

/// A repository's refs as of its last fetch, shared by every [`Mirror`] handle on it.
#[derive(Debug, Default)]
struct RefsMemo {
    inner: Mutex<RefsMemoInner>,
}

#[derive(Debug, Default)]
struct RefsMemoInner {
    /// Bumped after every fetch: refs read while a fetch ran are not kept.
    generation: u64,
    refs: Option<Arc<Refs>>,
}

impl RefsMemo {
    fn lock(&self) -> std::sync::MutexGuard<'_, RefsMemoInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the refs: called once a fetch has changed them.
    fn invalidate(&self) {
        let mut m = self.lock();
        m.generation += 1;
        m.refs = None;
    }

    /// Replaces the refs with `refs` (the remote's, for a partial mirror).
    fn set(&self, refs: Refs) {
        let mut m = self.lock();
        m.generation += 1;
        m.refs = Some(Arc::new(refs));
    }
}

/// What the full hash of a commit determines, and so can be kept across fetches and shared by
/// all mirrors: commit times, and small files (or their absence) at a commit. Bounded; the
/// oldest entries go first.
#[derive(Debug, Default)]
struct ObjectMemo {
    inner: Mutex<ObjectMemoInner>,
}

#[derive(Debug, Default)]
struct ObjectMemoInner {
    commits: HashMap<String, i64>,
    commit_order: VecDeque<String>,
    /// `"<commit>:<path>"` → the file, or `None` when there is none.
    files: HashMap<String, Option<Arc<[u8]>>>,
    file_order: VecDeque<String>,
    file_bytes: usize,
}

impl ObjectMemo {
    fn lock(&self) -> std::sync::MutexGuard<'_, ObjectMemoInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit_time(&self, hash: &str) -> Option<i64> {
        self.lock().commits.get(hash).copied()
    }

    fn put_commit_time(&self, hash: &str, time: i64) {
        let mut m = self.lock();
        if m.commits.insert(hash.to_owned(), time).is_none() {
            m.commit_order.push_back(hash.to_owned());
        }
        while m.commits.len() > MEMO_COMMITS {
            match m.commit_order.pop_front() {
                Some(old) => m.commits.remove(&old),
                None => break,
            };
        }
    }

    fn file(&self, key: &str) -> Option<Option<Arc<[u8]>>> {
        self.lock().files.get(key).cloned()
    }

    fn put_file(&self, key: String, data: Option<&[u8]>) {
        let len = data.map_or(0, <[u8]>::len);
        if len > MEMO_MAX_FILE {
            return;
        }
        let mut m = self.lock();
        if m.files.contains_key(&key) {
            return;
        }
        m.file_bytes += len + key.len();
        m.files.insert(key.clone(), data.map(Arc::from));
        m.file_order.push_back(key);
        while m.file_bytes > MEMO_FILE_BYTES {
            let Some(old) = m.file_order.pop_front() else {
                break;
            };
            if let Some(v) = m.files.remove(&old) {
                m.file_bytes -= v.map_or(0, |d| d.len()) + old.len();
            }
        }
    }
}

/// How a repository names its objects, fixed when it is created (`git init --object-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ObjectFormat {
    /// 40 hex digits; git's default.
    #[default]
    Sha1,
    /// 64 hex digits.
    Sha256,
}

impl ObjectFormat {
    /// The name git uses (`--object-format=<name>`, `extensions.objectFormat`).
    pub fn name(self) -> &'static str {
        match self {
            ObjectFormat::Sha1 => "sha1",
            ObjectFormat::Sha256 => "sha256",
        }
    }

    /// The number of hex digits of a full object name.
    pub fn hex_len(self) -> usize {
        match self {
            ObjectFormat::Sha1 => 40,
            ObjectFormat::Sha256 => 64,
        }
    }

    fn from_name(name: &str) -> Option<ObjectFormat> {
        [ObjectFormat::Sha1, ObjectFormat::Sha256]
            .into_iter()
            .find(|f| name.eq_ignore_ascii_case(f.name()))
    }

    /// The format a repository's config file declares: `extensions.objectFormat`, which `git
    /// init` writes for anything but SHA-1. `None` for a format this crate does not know. Read
    /// from the file rather than asked of git, which would be one more process per repository.
    fn from_config(text: &str) -> Option<ObjectFormat> {
        let mut in_extensions = false;
        let mut format = ObjectFormat::Sha1;
        for line in text.lines().map(str::trim) {
            if let Some(header) = line.strip_prefix('[') {
                let name = header.split(']').next().unwrap_or_default().trim();
                in_extensions = name.eq_ignore_ascii_case("extensions");
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if in_extensions && key.trim().eq_ignore_ascii_case("objectformat") {
                let value = value.split(['#', ';']).next().unwrap_or_default();
                // The last assignment wins, as in git.
                format = ObjectFormat::from_name(value.trim().trim_matches('"'))?;
            }
        }
        Some(format)
    }
}

/// The format a remote uses, when a fetch into a repository of format `local` failed because
/// the remote's is another. With protocol v2 git names it ("mismatched algorithms: client sha1;
/// server sha256"); with protocol v0 it only says that the server does not support ours, and
/// there are only two.
fn remote_object_format(err: &Error, local: ObjectFormat) -> Option<ObjectFormat> {
    let Error::Git { stderr, .. } = err else {
        return None;
    };
    let remote = if let Some((_, rest)) = stderr.split_once("mismatched algorithms:") {
        let (_, server) = rest.split_once("server ")?;
        let name = server
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or_default();
        ObjectFormat::from_name(name)?
    } else if stderr.contains("does not support this repository's object format") {
        match local {
            ObjectFormat::Sha1 => ObjectFormat::Sha256,
            ObjectFormat::Sha256 => ObjectFormat::Sha1,
        }
    } else {
        return None;
    };
    (remote != local).then_some(remote)
}

/// Whether `hash` is a full object name in a repository of `format`, the only kind of name whose
/// object cannot change or become ambiguous. In a SHA-256 repository 40 digits are a prefix.
fn is_full_hash(hash: &str, format: ObjectFormat) -> bool {
    hash.len() == format.hex_len() && is_hex(hash)
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
            objects: Arc::default(),
            first_fetch: FirstFetch::default(),
        }
    }

    /// Sets how new mirrors get their first objects.
    pub fn with_first_fetch(mut self, first_fetch: FirstFetch) -> Self {
        self.first_fetch = first_fetch;
        self
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

    /// `git ls-remote <url>` with the URL's credentials: the number of refs the remote has.
    /// For `agora doctor`; errors are classified as for fetches.
    pub async fn ls_remote(&self, url: &str) -> Result<usize, Error> {
        check_url(url)?;
        let remote = credentials::git_remote(&self.credentials, url);
        // `--` keeps the URL from being taken for an option (check_url refuses a leading '-'
        // too); a password in the configured URL travels in the environment, not here.
        let out = Git::new(None, &["ls-remote", "--", &remote.url])
            .envs(&remote.env)
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
    ///
    /// A password in `url` never reaches git's command lines or the mirror's config: git gets
    /// the URL without it, and the password in its environment (see [`credentials::git_remote`]).
    /// The mirror is named after that URL too, so changing the password keeps the mirror.
    pub async fn open(&self, url: &str) -> Result<Mirror, Error> {
        check_url(url)?;
        let remote = credentials::git_remote(&self.credentials, url);
        let slot = {
            let mut repos = self.repos.lock().unwrap_or_else(|e| e.into_inner());
            repos.entry(remote.url.clone()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if remote.url != url {
            self.remove_mirror_with_password(url);
        }
        let url = remote.url.as_str();
        let mut mirror = Mirror {
            dir: self.dir_for(url),
            url: redact(url),
            env: Arc::new(remote.env.clone()),
            refs: slot.refs.clone(),
            objects: self.objects.clone(),
            skipped: slot.skipped.clone(),
            partial: slot.partial.clone(),
            format: ObjectFormat::default(),
        };
        let exists = mirror.dir.join("HEAD").is_file();
        if exists {
            mirror.format = object_format(&mut slot, &mirror.dir)?;
            // A mirror a stopped process left partial: complete it now.
            if !std::mem::replace(&mut slot.marker_checked, true)
                && !mirror.partial.pending()
                && mirror.dir.join(PARTIAL_MARKER).exists()
            {
                mirror.partial.pending.store(true, Ordering::Release);
                slot.last_fetch = None;
            }
            if self.is_fresh(&slot, &mirror.dir) {
                return Ok(mirror);
            }
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        if !exists && self.first_fetch == FirstFetch::Minimal {
            slot.format = None;
            self.create_partial(&mirror, url).await?;
            mirror.format = object_format(&mut slot, &mirror.dir)?;
            tracing::debug!(
                repo.url = %mirror.url,
                duration_ms = started.elapsed().as_millis() as u64,
                "partial mirror made"
            );
            slot.last_fetch = Some(Instant::now());
            return Ok(mirror);
        }
        let fetched = if exists {
            let fetched = if mirror.partial.pending() {
                // Due for a refresh: fetching everything is what completes it, unless the
                // background fetch (which may have started before the refresh was due) did so
                // meanwhile.
                match mirror.complete().await {
                    Ok(true) => Ok(()),
                    Ok(false) => mirror.fetch(false).await,
                    Err(e) => Err(e),
                }
            } else {
                mirror.fetch(false).await
            };
            match fetched {
                // The repository was replaced by one in another object format: nothing of the
                // mirror can be used any more (the go command stays stuck on its copy until its
                // cache is cleaned).
                Err(err) if remote_object_format(&err, mirror.format).is_some() => {
                    tracing::warn!(
                        repo.url = %mirror.url,
                        error = %err,
                        "the repository now names its objects in another format: making its mirror anew"
                    );
                    slot.format = None;
                    mirror.partial.pending.store(false, Ordering::Release);
                    self.create(&mirror, url, true).await
                }
                fetched => fetched,
            }
        } else {
            // Whatever was there before (an operator may delete a mirror) is gone.
            slot.format = None;
            self.create(&mirror, url, false).await
        };
        // Even a failed fetch may have moved some refs.
        slot.refs.invalidate();
        fetched?;
        tracing::debug!(
            repo.url = %mirror.url,
            created = !exists,
            duration_ms = started.elapsed().as_millis() as u64,
            "mirror fetched"
        );
        slot.last_fetch = Some(Instant::now());
        mirror.format = object_format(&mut slot, &mirror.dir)?;
        mirror.maintain(&slot.maintaining);
        Ok(mirror)
    }

    /// Removes the mirror an older agora made for `url` with its password in it (in the
    /// directory's name's hash and in its config file); the mirror of the URL without the
    /// password replaces it.
    fn remove_mirror_with_password(&self, url: &str) {
        let old = self.dir_for(url);
        if old.join("HEAD").is_file() && std::fs::remove_dir_all(&old).is_ok() {
            tracing::info!(
                repo.url = %redact(url),
                "removed a mirror whose config held the repository URL's password"
            );
        }
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

    /// Makes the mirror of `url` with all its history in a temporary directory and moves it into
    /// place, replacing the one there if `replace`.
    async fn create(&self, mirror: &Mirror, url: &str, replace: bool) -> Result<(), Error> {
        let tmp = self.staging_dir(mirror)?;
        // git's default object format first, the remote's if that is another (see the module
        // docs): at most two attempts.
        let mut format = None;
        loop {
            let staged = async {
                let staged = init_staging(mirror, url, &tmp, format).await?;
                match staged.fetch(false).await {
                    Ok(()) => Ok(None),
                    Err(err) => match remote_object_format(&err, staged.format) {
                        Some(remote) => Ok(Some((remote, err))),
                        None => Err(err),
                    },
                }
            }
            .await;
            match staged {
                Ok(None) => break,
                Ok(Some((remote, err))) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    if format.is_some() {
                        return Err(err);
                    }
                    tracing::debug!(
                        repo.url = %mirror.url,
                        object_format = remote.name(),
                        "the remote uses another object format: making the mirror in it"
                    );
                    format = Some(remote);
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(e);
                }
            }
        }
        self.publish(mirror, &tmp, replace).map(drop)
    }

    /// Makes a partial mirror (see the module docs, "The first fetch"): an empty repository in
    /// the remote's object format, marked partial, whose refs are the remote's as
    /// `git ls-remote` lists them.
    async fn create_partial(&self, mirror: &Mirror, url: &str) -> Result<(), Error> {
        let tmp = self.staging_dir(mirror)?;
        let made = async {
            let mut staged = init_staging(mirror, url, &tmp, None).await?;
            let refs = staged.remote_refs_peeled().await?;
            // ls-remote works across object formats, and the hashes' length names the remote's.
            if let Some(remote) = refs.object_format().filter(|f| *f != staged.format) {
                std::fs::remove_dir_all(&tmp).map_err(|source| Error::Io {
                    path: tmp.clone(),
                    source,
                })?;
                staged = init_staging(mirror, url, &tmp, Some(remote)).await?;
            }
            let marker = staged.dir.join(PARTIAL_MARKER);
            std::fs::write(&marker, b"").map_err(|source| Error::Io {
                path: marker,
                source,
            })?;
            Ok(refs)
        }
        .await;
        let refs = match made {
            Ok(refs) => refs,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let made_here = self.publish(mirror, &tmp, false)?;
        if made_here || mirror.dir.join(PARTIAL_MARKER).exists() {
            mirror.refs.set(refs);
            mirror.partial.pending.store(true, Ordering::Release);
        } else {
            // Another process made a complete mirror meanwhile.
            mirror.refs.invalidate();
        }
        Ok(())
    }

    /// A new temporary directory name next to the mirrors, for a mirror being made.
    fn staging_dir(&self, mirror: &Mirror) -> Result<PathBuf, Error> {
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
        Ok(tmp)
    }

    /// Moves the mirror made at `tmp` into place, replacing the one there if `replace`.
    /// `Ok(false)`: another process made the mirror meanwhile; theirs is used.
    fn publish(&self, mirror: &Mirror, tmp: &Path, replace: bool) -> Result<bool, Error> {
        // A directory cannot be renamed over a non-empty one: the old mirror moves aside first.
        // Another process may be replacing it too; then either new mirror will do.
        let old = replace.then(|| {
            let mut old = tmp.as_os_str().to_owned();
            old.push(".old");
            let old = PathBuf::from(old);
            let _ = std::fs::rename(&mirror.dir, &old);
            old
        });
        let renamed = std::fs::rename(tmp, &mirror.dir);
        if let Some(old) = old {
            let _ = std::fs::remove_dir_all(old);
        }
        if let Err(e) = renamed {
            let _ = std::fs::remove_dir_all(tmp);
            // Another process won the race and made the mirror: use theirs.
            if !mirror.dir.join("HEAD").is_file() {
                return Err(Error::Io {
                    path: mirror.dir.clone(),
                    source: e,
                });
            }
            return Ok(false);
        }
        Ok(true)
    }
}

/// Makes an empty mirror of `url` at `tmp` (`git init --bare`, in object format `format`, git's
/// default if `None`), ready to fetch into.
async fn init_staging(
    mirror: &Mirror,
    url: &str,
    tmp: &Path,
    format: Option<ObjectFormat>,
) -> Result<Mirror, Error> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let tmp_str = tmp.to_string_lossy();
    let format_arg = format.map(|f| format!("--object-format={}", f.name()));
    // No template: its sample hooks and files are a dozen file creations that cost more than
    // the rest of the init on slow file systems, and a mirror needs none of them.
    let mut args = vec!["init", "--quiet", "--bare", "--template="];
    // Only when needed: git before 2.29 knows no such option.
    args.extend(format_arg.as_deref());
    args.push(&tmp_str);
    Git::new(None, &args).run().await?;
    // The URL (without password, see `open`) goes into the config file rather than onto a
    // command line.
    let config = tmp.join("config");
    let mut text = std::fs::read_to_string(&config).map_err(io_err(&config))?;
    let local = ObjectFormat::from_config(&text).ok_or_else(|| unknown_format(&config))?;
    text.push_str(&format!(
        "[remote \"origin\"]\n\turl = \"{}\"\n[gc]\n\tautoDetach = false\n",
        url.replace('\\', "\\\\").replace('"', "\\\"")
    ));
    std::fs::write(&config, text).map_err(io_err(&config))?;
    let staged = Mirror {
        dir: tmp.to_owned(),
        url: mirror.url.clone(),
        env: mirror.env.clone(),
        refs: Arc::default(),
        objects: mirror.objects.clone(),
        skipped: mirror.skipped.clone(),
        partial: Arc::default(),
        format: local,
    };
    Ok(staged)
}

/// The object format of the mirror at `dir`, read from its config once per repository.
fn object_format(slot: &mut Slot, dir: &Path) -> Result<ObjectFormat, Error> {
    if let Some(format) = slot.format {
        return Ok(format);
    }
    let config = dir.join("config");
    let text = std::fs::read_to_string(&config).map_err(|source| Error::Io {
        path: config.clone(),
        source,
    })?;
    let format = ObjectFormat::from_config(&text).ok_or_else(|| unknown_format(&config))?;
    slot.format = Some(format);
    Ok(format)
}

fn unknown_format(config: &Path) -> Error {
    Error::Io {
        path: config.to_owned(),
        source: std::io::Error::other("extensions.objectFormat names an unknown object format"),
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

/// The refs among `names` that a mirror cannot store, sorted: those with an element longer than
/// [`MAX_REF_ELEMENT`], and those below another ref (`refs/tags/v1` and `refs/tags/v1/x` cannot
/// both be files; the shorter one is kept). Names git refuses anyway (`a..b`, `x.lock`) are not
/// listed: git skips them itself, and would refuse them in a refspec too.
fn unmirrorable(names: &[String]) -> Vec<String> {
    let valid: std::collections::BTreeSet<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| is_valid_ref_name(n))
        .collect();
    let storable = |n: &str| n.split('/').all(|e| e.len() <= MAX_REF_ELEMENT);
    valid
        .iter()
        .filter(|n| {
            !storable(n)
                || n.match_indices('/')
                    .any(|(i, _)| storable(&n[..i]) && valid.contains(&n[..i]))
        })
        .map(|n| (*n).to_owned())
        .collect()
}

/// Whether git accepts `name` as a ref name (`git check-ref-format`'s rules).
fn is_valid_ref_name(name: &str) -> bool {
    !name.is_empty()
        && name != "@"
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.contains("@{")
        && !name.bytes().any(|b| {
            b < 0x20
                || b == 0x7f
                || matches!(b, b' ' | b'~' | b'^' | b':' | b'?' | b'*' | b'[' | b'\\')
        })
        && name
            .split('/')
            .all(|e| !e.is_empty() && !e.starts_with('.') && !e.ends_with(".lock"))
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
    /// The commit the remote's `HEAD` named at the last fetch; `None` if it named none, or if
    /// the mirror was last fetched by an agora that did not record it (then the mirror's own
    /// `HEAD` follows the remote's).
    pub remote_head: Option<String>,
}

impl Refs {
    /// The object format the refs' hashes are in, `None` when there are none.
    fn object_format(&self) -> Option<ObjectFormat> {
        let hash = self
            .tags
            .values()
            .chain(self.heads.values())
            .chain(&self.remote_head)
            .next()?;
        [ObjectFormat::Sha1, ObjectFormat::Sha256]
            .into_iter()
            .find(|f| f.hex_len() == hash.len())
    }

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
    refs: Arc<RefsMemo>,
    objects: Arc<ObjectMemo>,
    /// Remote refs to leave out of fetches (shared with the repository's slot).
    skipped: Arc<Mutex<Vec<String>>>,
    /// Shared with the repository's slot.
    partial: Arc<Partial>,
    format: ObjectFormat,
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

    /// How the repository names its objects: hex strings of [`ObjectFormat::hex_len`] digits
    /// are full names, shorter ones prefixes.
    pub fn object_format(&self) -> ObjectFormat {
        self.format
    }

    pub(crate) fn git<'a>(&'a self, args: &[&'a str]) -> Git<'a> {
        Git::new(Some(&self.dir), args).envs(&self.env)
    }

    /// Starts `git maintenance run --auto` as a task of its own, unless one is still running for
    /// this repository (see the module docs).
    fn maintain(&self, running: &Arc<AtomicBool>) {
        if running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (mirror, running) = (self.clone(), running.clone());
        tokio::spawn(async move {
            let git = mirror.git(&["maintenance", "run", "--auto", "--quiet"]);
            if let Err(err) = git.run().await {
                tracing::warn!(repo.url = %mirror.url, error = %err, "git maintenance failed");
            }
            running.store(false, Ordering::Release);
        });
    }

    /// Fetches branches, tags and the commit the remote's `HEAD` names (into [`REMOTE_HEAD`]),
    /// all in one `git fetch`.
    ///
    /// One remote ref that git cannot store here (see [`unmirrorable`]) fails the whole fetch,
    /// which would make the repository unusable for good. So when a fetch fails for no reason
    /// the classification knows, the remote's refs are listed, and the fetch runs again without
    /// those that cannot be mirrored; they are logged, and left out of later fetches without
    /// the detour.
    ///
    /// `unshallow` also fetches the history a partial mirror's shallow fetches left out.
    async fn fetch(&self, unshallow: bool) -> Result<(), Error> {
        let skipped = self
            .skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let err = match self.fetch_without(&skipped, unshallow).await {
            Ok(()) => return Ok(()),
            // Another object format is no matter of refs (see `Mirrors::create`).
            Err(err) if remote_object_format(&err, self.format).is_some() => return Err(err),
            Err(
                err @ Error::Git {
                    kind: GitFailure::Other,
                    ..
                },
            ) => err,
            Err(err) => return Err(err),
        };
        let Ok(remote) = self.remote_refs().await else {
            return Err(err);
        };
        let skip = unmirrorable(&remote);
        if skip.is_empty() || skip == skipped {
            return Err(err);
        }
        tracing::warn!(
            repo.url = %self.url,
            refs = ?skip,
            "skipping refs that cannot be mirrored (a name element longer than {MAX_REF_ELEMENT} \
             bytes, or a ref that is also a directory of another)"
        );
        let fetched = self.fetch_without(&skip, unshallow).await;
        *self.skipped.lock().unwrap_or_else(|e| e.into_inner()) = skip;
        fetched
    }

    /// One `git fetch` of branches, tags and `HEAD`, leaving out the refs in `skip` (negative
    /// refspecs, which keep `--prune` working for the rest).
    async fn fetch_without(&self, skip: &[String], unshallow: bool) -> Result<(), Error> {
        let negative: Vec<String> = skip.iter().map(|r| format!("^{r}")).collect();
        let mut args = FETCH_ARGS.to_vec();
        if unshallow {
            let at = args
                .iter()
                .position(|a| *a == "origin")
                .unwrap_or(args.len());
            args.insert(at, "--unshallow");
        }
        args.extend(negative.iter().map(String::as_str));
        let without_head = args.clone();
        args.push(REMOTE_HEAD_SPEC);
        match self.git(&args).run().await {
            Ok(_) => Ok(()),
            // An empty repository, or one whose HEAD names a missing branch, has no HEAD to
            // follow: fetch the rest, and forget the HEAD of an earlier fetch.
            Err(Error::Git { stderr, .. }) if stderr.contains("couldn't find remote ref HEAD") => {
                self.git(&without_head).run().await?;
                self.git(&["update-ref", "-d", REMOTE_HEAD]).run().await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The names of the remote's branches and tags (`git ls-remote --refs origin`).
    async fn remote_refs(&self) -> Result<Vec<String>, Error> {
        let out = self.git(&["ls-remote", "--refs", "origin"]).run().await?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|line| line.split_once('\t').map(|(_, name)| name))
            .filter(|name| name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
            .map(str::to_owned)
            .collect())
    }

    /// The remote's branches, tags (peeled) and `HEAD`, from one `git ls-remote`: the refs of a
    /// partial mirror. Refs a mirror could not store are left out, as a fetch leaves them out.
    async fn remote_refs_peeled(&self) -> Result<Refs, Error> {
        let git = self.git(&["ls-remote", "origin", "HEAD", "refs/heads/*", "refs/tags/*"]);
        let out = git.run().await?;
        let out = String::from_utf8_lossy(&out);
        let mut listed: Vec<(&str, &str)> = Vec::new();
        for line in out.lines() {
            let Some((hash, name)) = line.split_once('\t') else {
                return Err(Error::BadOutput {
                    command: git.display(),
                    output: line.to_owned(),
                });
            };
            if !(is_full_hash(hash, ObjectFormat::Sha1) || is_full_hash(hash, ObjectFormat::Sha256))
            {
                return Err(Error::BadOutput {
                    command: git.display(),
                    output: line.to_owned(),
                });
            }
            listed.push((hash, name));
        }
        let names: Vec<String> = listed
            .iter()
            .map(|(_, n)| n.strip_suffix("^{}").unwrap_or(n).to_owned())
            .filter(|n| n.starts_with("refs/"))
            .collect();
        let skip = unmirrorable(&names);
        let mut refs = Refs::default();
        for (hash, name) in listed {
            let (name, peeled) = match name.strip_suffix("^{}") {
                Some(n) => (n, true),
                None => (name, false),
            };
            if name == "HEAD" {
                refs.remote_head = Some(hash.to_owned());
                continue;
            }
            if !is_valid_ref_name(name) || skip.iter().any(|s| s == name) {
                continue;
            }
            if let Some(tag) = name.strip_prefix("refs/tags/") {
                // The peeled line follows the tag's own; it wins.
                if peeled || !refs.tags.contains_key(tag) {
                    refs.tags.insert(tag.to_owned(), hash.to_owned());
                }
            } else if let Some(branch) = name.strip_prefix("refs/heads/") {
                if !peeled {
                    refs.heads.insert(branch.to_owned(), hash.to_owned());
                }
            }
        }
        Ok(refs)
    }

    /// Makes sure commit `hash` (a full hash) is in the mirror: in a partial mirror, fetches it
    /// alone (`--depth=1`, by the ref that names it) unless it is there already, and starts
    /// completing the mirror in the background. Other revisions need the complete mirror.
    pub(crate) async fn ensure_commit(&self, hash: &str) -> Result<(), Error> {
        let partial = &self.partial;
        if !partial.pending() || partial.has(hash) {
            return Ok(());
        }
        if !is_full_hash(hash, self.format) {
            return self.ensure_complete().await;
        }
        let turn = partial.turn.lock().await;
        if !partial.pending() || partial.has(hash) {
            return Ok(());
        }
        let refs = self.refs().await?;
        let named = refs
            .tags
            .iter()
            .find(|(_, h)| *h == hash)
            .map(|(t, _)| format!("refs/tags/{t}"))
            .or_else(|| {
                refs.heads
                    .iter()
                    .find(|(_, h)| *h == hash)
                    .map(|(b, _)| format!("refs/heads/{b}"))
            });
        // A commit no ref names is asked for by hash (protocol v2 servers allow that).
        let refspec = named.map_or_else(|| hash.to_owned(), |r| format!("+{r}:{r}"));
        let args = [
            "-c",
            "maintenance.auto=false",
            "fetch",
            "--quiet",
            "--no-tags",
            "--depth=1",
            "origin",
            &refspec,
        ];
        let started = Instant::now();
        match self.git(&args).run().await {
            Ok(_) => {
                tracing::debug!(
                    repo.url = %self.url,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "fetched one commit into a partial mirror"
                );
                partial
                    .have
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(hash.to_owned());
                drop(turn);
                self.complete_in_background();
                Ok(())
            }
            Err(err) => {
                // A server without shallow fetches, say: fetch everything instead.
                tracing::info!(
                    repo.url = %self.url,
                    error = %err,
                    "fetching one commit failed; fetching the whole repository"
                );
                self.complete_in_turn().await.map(drop)
            }
        }
    }

    /// Waits until a partial mirror has its whole history (fetching it if nobody is).
    pub(crate) async fn ensure_complete(&self) -> Result<(), Error> {
        if !self.partial.pending() {
            return Ok(());
        }
        self.complete().await.map(drop)
    }

    /// Fetches everything into a partial mirror, making it complete. `Ok(false)`: it was
    /// complete already (another fetch completed it meanwhile), nothing was fetched.
    async fn complete(&self) -> Result<bool, Error> {
        let _turn = self.partial.turn.lock().await;
        self.complete_in_turn().await
    }

    async fn complete_in_turn(&self) -> Result<bool, Error> {
        if !self.partial.pending() {
            return Ok(false);
        }
        let started = Instant::now();
        let shallow = self.dir.join("shallow").is_file();
        let fetched = self.fetch(shallow).await;
        self.refs.invalidate();
        fetched?;
        let marker = self.dir.join(PARTIAL_MARKER);
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Io {
                    path: marker,
                    source: e,
                })
            }
            _ => {}
        }
        self.partial.pending.store(false, Ordering::Release);
        self.partial
            .have
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        tracing::debug!(
            repo.url = %self.url,
            duration_ms = started.elapsed().as_millis() as u64,
            "partial mirror completed"
        );
        Ok(true)
    }

    /// Starts [`complete`](Self::complete) as a task of its own, unless one is running.
    fn complete_in_background(&self) {
        if self.partial.completing.swap(true, Ordering::AcqRel) {
            return;
        }
        let mirror = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(COMPLETION_DELAY).await;
            if let Err(err) = mirror.complete().await {
                // The next request that needs history, or the next refresh, tries again.
                tracing::warn!(repo.url = %mirror.url, error = %err, "completing a mirror failed");
            }
            mirror.partial.completing.store(false, Ordering::Release);
        });
    }

    /// All branches and tags, and the remote's `HEAD`: one `git for-each-ref` per fetch, shared
    /// by every handle on this repository.
    pub async fn refs(&self) -> Result<Arc<Refs>, Error> {
        let generation = {
            let m = self.refs.lock();
            if let Some(refs) = &m.refs {
                return Ok(refs.clone());
            }
            m.generation
        };
        let refs = Arc::new(self.read_refs().await?);
        let mut m = self.refs.lock();
        // Refs read while a fetch was changing them may be half old, half new: don't keep them.
        if m.generation == generation {
            m.refs = Some(refs.clone());
        }
        Ok(refs)
    }

    async fn read_refs(&self) -> Result<Refs, Error> {
        let git = self.git(&[
            "for-each-ref",
            "--format=%(objectname) %(*objectname) %(refname)",
            "refs/heads",
            "refs/tags",
            REMOTE_HEAD,
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
            } else if name == REMOTE_HEAD {
                refs.remote_head = Some(hash.to_owned());
            }
        }
        Ok(refs)
    }

    /// The commit the remote's `HEAD` named at the last fetch, `None` in an empty repository.
    pub async fn head(&self) -> Result<Option<String>, Error> {
        if let Some(hash) = &self.refs().await?.remote_head {
            return Ok(Some(hash.clone()));
        }
        // A mirror last fetched by an older agora: its own HEAD follows the remote's.
        self.resolve_commit("HEAD").await
    }

    /// Resolves a revision that is a full or abbreviated hash, `HEAD` or a full ref name to a
    /// commit hash; `None` if it names no commit (or an ambiguous prefix). Callers pass only
    /// such checked revisions, never raw input, so nothing can be taken for an option.
    pub async fn resolve_commit(&self, rev: &str) -> Result<Option<String>, Error> {
        debug_assert!(!rev.starts_with('-'));
        self.ensure_complete().await?;
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
        self.commit_with_files(hash, &[]).await
    }

    /// [`commit`](Self::commit), also reading `files` at that commit into the memo when the
    /// commit has to be read: one git process instead of one more per file, for callers about
    /// to ask for them (the go.mod files a version check reads).
    pub async fn commit_with_files(&self, hash: &str, files: &[String]) -> Result<Commit, Error> {
        self.ensure_commit(hash).await?;
        let full = is_full_hash(hash, self.format);
        if full {
            if let Some(time) = self.objects.commit_time(hash) {
                return Ok(Commit {
                    hash: hash.to_owned(),
                    time,
                });
            }
        }
        // Only files whose answer can be kept: at a full hash, and not known yet.
        let files: Vec<&String> = files
            .iter()
            .filter(|f| {
                full && !f.contains('\n') && self.objects.file(&format!("{hash}:{f}")).is_none()
            })
            .collect();
        let mut input = format!("{hash}^{{commit}}\n");
        for f in &files {
            input.push_str(&format!("{hash}:{f}\n"));
        }
        let git = self.git(&["cat-file", "--batch"]);
        let out = git.output(Some(input.as_bytes())).await?;
        if !out.status.success() {
            return Err(git.failure(&out));
        }
        let bad = || Error::BadOutput {
            command: format!("{} <<< {hash}^{{commit}}", git.display()),
            output: String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(200)]).into_owned(),
        };
        let records = batch_records(&out.stdout).ok_or_else(bad)?;
        if records.len() != files.len() + 1 {
            return Err(bad());
        }
        let commit = parse_commit(&records[0]).ok_or_else(bad)?;
        if full && commit.hash == hash {
            self.objects.put_commit_time(hash, commit.time);
            for (file, record) in files.iter().zip(&records[1..]) {
                let data = match record {
                    BatchRecord::Object {
                        kind: "blob", data, ..
                    } => Some(*data),
                    // Absent, or not a regular file (a directory, a submodule).
                    _ => None,
                };
                self.objects.put_file(format!("{hash}:{file}"), data);
            }
        }
        Ok(commit)
    }

    /// The contents of the regular file `path` in commit `hash`, `None` if there is none (or
    /// it is a directory or submodule). Files larger than `max_size` are an error.
    pub async fn read_file(
        &self,
        hash: &str,
        path: &str,
        max_size: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.ensure_commit(hash).await?;
        if !is_full_hash(hash, self.format) || path.contains('\n') {
            return self.read_file_uncached(hash, path, max_size).await;
        }
        let key = format!("{hash}:{path}");
        match self.objects.file(&key) {
            Some(None) => return Ok(None),
            // A file over this caller's limit goes to git, for the error.
            Some(Some(data)) if data.len() as u64 <= max_size => return Ok(Some(data.to_vec())),
            _ => {}
        }
        let data = self.read_file_uncached(hash, path, max_size).await?;
        // git says "missing" alike for a missing file and for a commit this mirror does not
        // have (yet): an absence is kept only for a commit known to be here.
        if data.is_some() || self.objects.commit_time(hash).is_some() {
            self.objects.put_file(key, data.as_deref());
        }
        Ok(data)
    }

    async fn read_file_uncached(
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
        match batch_records(&out.stdout).ok_or_else(bad)?[..] {
            [BatchRecord::Object {
                kind: "blob", data, ..
            }] => {
                if data.len() as u64 > max_size {
                    return Err(Error::BadOutput {
                        command: git.display(),
                        output: format!(
                            "{path}: file too large ({} > {max_size} bytes)",
                            data.len()
                        ),
                    });
                }
                Ok(Some(data.to_vec()))
            }
            // Absent, or not a regular file.
            [_] => Ok(None),
            _ => Err(bad()),
        }
    }

    /// Tags (without `refs/tags/`) whose commits are ancestors of, or equal to, `hash`.
    pub async fn merged_tags(&self, hash: &str) -> Result<Vec<String>, Error> {
        self.ensure_complete().await?;
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
        self.ensure_complete().await?;
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

/// One answer of `git cat-file --batch`.
#[derive(Debug, PartialEq, Eq)]
enum BatchRecord<'a> {
    /// No such object (or an ambiguous name).
    Missing,
    Object {
        hash: &'a str,
        kind: &'a str,
        data: &'a [u8],
    },
}

/// Splits `git cat-file --batch` output into its answers: a `<hash> <type> <size>` line, the
/// object and a newline each, or a `<name> missing` (`ambiguous`) line. `None` if the output does
/// not have that shape (cut short, say).
fn batch_records(mut out: &[u8]) -> Option<Vec<BatchRecord<'_>>> {
    let mut records = Vec::new();
    while !out.is_empty() {
        let nl = out.iter().position(|&b| b == b'\n')?;
        let header = std::str::from_utf8(&out[..nl]).ok()?;
        out = &out[nl + 1..];
        // A missing name is echoed, spaces and all; an object's header ends with its size.
        if header.ends_with(" missing") || header.ends_with(" ambiguous") {
            records.push(BatchRecord::Missing);
            continue;
        }
        let mut f = header.split(' ');
        let (Some(hash), Some(kind), Some(size), None) = (f.next(), f.next(), f.next(), f.next())
        else {
            return None;
        };
        let size: usize = size.parse().ok()?;
        let data = out.get(..size)?;
        if out.get(size) != Some(&b'\n') || !is_hex(hash) {
            return None;
        }
        out = &out[size + 1..];
        records.push(BatchRecord::Object { hash, kind, data });
    }
    Some(records)
}

/// Hash and committer time of a commit object: its `committer` header ends with
/// `<unix time> <zone>` (what `git log --format=%ct` prints). `None` for anything else.
fn parse_commit(record: &BatchRecord<'_>) -> Option<Commit> {
    let BatchRecord::Object {
        hash,
        kind: "commit",
        data,
    } = record
    else {
        return None;
    };
    // Headers end at the first empty line; the message may contain anything.
    let time = data
        .split(|&b| b == b'\n')
        .take_while(|line| !line.is_empty())
        .find_map(|line| line.strip_prefix(b"committer "))
        .and_then(|committer| {
            let committer = std::str::from_utf8(committer).ok()?;
            let mut rest = committer.rsplitn(3, ' ');
            let (_zone, time) = (rest.next()?, rest.next()?);
            time.parse().ok()
        })?;
    Some(Commit {
        hash: (*hash).to_owned(),
        time,
    })
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

    #[test]
    fn refs_a_mirror_cannot_store() {
        let long = format!("refs/tags/v1.0.0-{}", "x".repeat(300));
        let fits = format!("refs/tags/v1.0.0-{}", "x".repeat(MAX_REF_ELEMENT - 7));
        let names: Vec<String> = [
            "refs/heads/main",
            "refs/tags/v1.0.0",
            "refs/tags/v1.1.0",
            "refs/tags/v1.1.0/x",
            "refs/tags/v1.1.0/x/y",
            "refs/heads/bad..name",
            "refs/tags/x.lock",
            long.as_str(),
            fits.as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            unmirrorable(&names),
            [long.as_str(), "refs/tags/v1.1.0/x", "refs/tags/v1.1.0/x/y"]
        );
        assert!(unmirrorable(&names[..3]).is_empty());
        // A ref below one that is too long is too long itself.
        let below = vec![long.clone(), format!("{long}/a")];
        assert_eq!(unmirrorable(&below), below);
        for bad in [
            "a..b", "a/.b", "a/b.lock", "a b", "a^", "a:b", "a@{1}", "a/", "a.", "@",
        ] {
            assert!(!is_valid_ref_name(bad), "{bad}");
        }
        assert!(is_valid_ref_name("refs/tags/v1.0.0+incompatible"));
    }

    #[test]
    fn object_formats_from_config_and_from_fetch_errors() {
        let sha1 = "[core]\n\trepositoryformatversion = 0\n\tbare = true\n";
        let sha256 = "[core]\n\trepositoryformatversion = 1\n\tbare = true\n[extensions]\n\tobjectformat = sha256\n";
        assert_eq!(ObjectFormat::from_config(sha1), Some(ObjectFormat::Sha1));
        assert_eq!(
            ObjectFormat::from_config(sha256),
            Some(ObjectFormat::Sha256)
        );
        let spelled =
            "[Extensions]\n  objectFormat = \"SHA256\" ; comment\n[remote \"origin\"]\n\turl = x\n";
        assert_eq!(
            ObjectFormat::from_config(spelled),
            Some(ObjectFormat::Sha256)
        );
        let elsewhere = "[core]\n\tobjectformat = sha256\n";
        assert_eq!(
            ObjectFormat::from_config(elsewhere),
            Some(ObjectFormat::Sha1)
        );
        assert_eq!(
            ObjectFormat::from_config("[extensions]\nobjectformat = sha3\n"),
            None
        );

        let failed = |stderr: &str| Error::Git {
            command: "git fetch".into(),
            kind: GitFailure::Other,
            stderr: stderr.into(),
        };
        let v2 = failed("fatal: mismatched algorithms: client sha1; server sha256");
        assert_eq!(
            remote_object_format(&v2, ObjectFormat::Sha1),
            Some(ObjectFormat::Sha256)
        );
        let back = failed("fatal: mismatched algorithms: client sha256; server sha1");
        assert_eq!(
            remote_object_format(&back, ObjectFormat::Sha256),
            Some(ObjectFormat::Sha1)
        );
        let v0 = failed(
            "fatal: Server does not support this repository's object format\nfatal: the remote end hung up unexpectedly",
        );
        assert_eq!(
            remote_object_format(&v0, ObjectFormat::Sha1),
            Some(ObjectFormat::Sha256)
        );
        let unknown = failed("fatal: mismatched algorithms: client sha1; server sha3");
        assert_eq!(remote_object_format(&unknown, ObjectFormat::Sha1), None);
        let other = failed("fatal: repository 'https://h/x/' not found");
        assert_eq!(remote_object_format(&other, ObjectFormat::Sha1), None);
    }

    #[test]
    fn full_hashes_have_the_length_of_the_object_format() {
        let sha1 = "0123456789abcdef0123456789abcdef01234567";
        let sha256 = format!("{sha1}0123456789abcdef01234567");
        assert!(is_full_hash(sha1, ObjectFormat::Sha1));
        // A 40-digit prefix of a SHA-256 name.
        assert!(!is_full_hash(sha1, ObjectFormat::Sha256));
        assert!(is_full_hash(&sha256, ObjectFormat::Sha256));
        assert!(!is_full_hash(&sha256, ObjectFormat::Sha1));
        assert!(!is_full_hash(&sha1.replace('0', "g"), ObjectFormat::Sha1));
    }

    /// Regression: a mirror of a SHA-256 repository could not be made ("mismatched algorithms");
    /// and where hashes are kept for good (the object memo, shared by all mirrors), only full
    /// names may be keys: a 40-digit prefix of a SHA-256 name is no SHA-1 name.
    #[tokio::test]
    async fn a_40_digit_prefix_of_a_sha256_name_is_a_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .current_dir(&repo)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_AUTHOR_NAME", "A")
                .env("GIT_AUTHOR_EMAIL", "a@example.com")
                .env("GIT_COMMITTER_NAME", "C")
                .env("GIT_COMMITTER_EMAIL", "c@example.com")
                .env("GIT_COMMITTER_DATE", "1700000000 +0000")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        git(&["init", "-q", "-b", "main", "--object-format=sha256"]);
        std::fs::write(repo.join("go.mod"), "module example.com/m\n").unwrap();
        git(&["add", "go.mod"]);
        git(&["commit", "-q", "-m", "one"]);
        let full = git(&["rev-parse", "HEAD"]);
        assert_eq!(full.len(), 64);
        let prefix = &full[..40];

        let mirrors = Mirrors::new(tmp.path().join("mirrors"), Duration::ZERO);
        let url = format!("file://{}", repo.display());
        let mirror = mirrors.open(&url).await.unwrap();
        assert_eq!(mirror.object_format(), ObjectFormat::Sha256);
        let commit = mirror.commit(prefix).await.unwrap();
        assert_eq!(
            (commit.hash.as_str(), commit.time),
            (full.as_str(), 1_700_000_000)
        );
        let files = ["go.mod".to_owned()];
        mirror.commit_with_files(prefix, &files).await.unwrap();
        let data = mirror.read_file(prefix, "go.mod", 1 << 10).await.unwrap();
        assert_eq!(data.as_deref(), Some(&b"module example.com/m\n"[..]));
        assert_eq!(
            mirror.read_file(prefix, "absent", 1 << 10).await.unwrap(),
            None
        );
        for key in [format!("{prefix}:go.mod"), format!("{prefix}:absent")] {
            assert_eq!(mirror.objects.file(&key), None, "{key} is in the memo");
        }
        assert_eq!(mirror.objects.commit_time(prefix), None);
        // The full name is kept.
        mirror.commit_with_files(&full, &files).await.unwrap();
        assert_eq!(mirror.objects.commit_time(&full), Some(1_700_000_000));
        assert!(mirror.objects.file(&format!("{full}:go.mod")).is_some());

        // An existing mirror's format comes from its config (another set, as after a restart).
        let again = Mirrors::new(tmp.path().join("mirrors"), Duration::from_secs(3600));
        let mirror = again.open(&url).await.unwrap();
        assert_eq!(again.fetch_count(), 0);
        assert_eq!(mirror.object_format(), ObjectFormat::Sha256);
    }

    #[test]
    fn batch_output_splits_into_objects_and_missing_names() {
        let raw = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
                   author A <a@x> 1000 +0100\n\
                   committer C <c@x> 1700000000 -0700\n\
                   \n\
                   committer Fake <f@x> 5 +0000\n";
        let hash = "0123456789abcdef0123456789abcdef01234567";
        let out = format!(
            "{hash} commit {}\n{raw}\n{hash}:a b/go.mod missing\n{hash} blob 5\nab\ncd\n",
            raw.len()
        );
        let records = batch_records(out.as_bytes()).unwrap();
        assert_eq!(records.len(), 3);
        let c = parse_commit(&records[0]).unwrap();
        assert_eq!((c.hash.as_str(), c.time), (hash, 1_700_000_000));
        assert_eq!(records[1], BatchRecord::Missing);
        assert_eq!(
            records[2],
            BatchRecord::Object {
                hash,
                kind: "blob",
                data: b"ab\ncd"
            }
        );
        assert!(parse_commit(&records[2]).is_none());
        // Cut short: fewer bytes than the header announces.
        let short = format!("{hash} commit 999\n{raw}");
        assert!(batch_records(short.as_bytes()).is_none());
        assert!(batch_records(b"garbage\n").is_none());
        assert_eq!(batch_records(b"").unwrap(), vec![]);
    }
}
