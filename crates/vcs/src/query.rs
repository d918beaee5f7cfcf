//! Resolving a query to a canonical version (go: `codeRepo.Stat`/`convert` over
//! `gitRepo.stat`), which is what `@v/<query>.info` serves.
//!
//! Lookup order for a query: a hex string of 7 digits up to a full object name (40 digits, 64 in
//! a SHA-256 repository) as a commit, `refs/tags/<q>` (with the module's tag prefix for
//! semver-looking queries), `refs/heads/<q>`, `HEAD`, then a hex prefix of a ref tip. The commit
//! then gets its canonical name: a canonical tag on it (the requested one first, else the highest
//! allowed, not retracted one), else a pseudo-version based on the highest allowed tag reachable
//! from it (with the hash's first 12 digits, whatever the object format). A requested
//! pseudo-version is checked against the commit (hash, time, base tag an ancestor but not on the
//! commit itself).

use std::cmp::Ordering;
use std::collections::HashMap;

use agora_gomod::{
    is_pseudo_version, match_path_major, pseudo_version, pseudo_version_base, pseudo_version_rev,
    pseudo_version_time, semver, PseudoTime, Retraction,
};

use crate::error::Error;
use crate::mirror::{is_hex, Refs};
use crate::repo::CodeRepo;

/// Shortest hex string taken as a commit hash, as in the `go` command.
const MIN_HASH_DIGITS: usize = 7;

/// A resolved query: the module version and the commit it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevInfo {
    /// The canonical version (tag, `+incompatible` version or pseudo-version).
    pub version: String,
    /// The full commit hash.
    pub hash: String,
    /// The 12-digit short hash used in pseudo-versions.
    pub short: String,
    /// Committer time, Unix seconds.
    pub time: i64,
}

impl RevInfo {
    /// The commit time as `.info` carries it: RFC 3339, UTC, whole seconds.
    pub fn time_rfc3339(&self) -> String {
        let t = PseudoTime::from_unix(self.time).unwrap_or(PseudoTime::ZERO);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        )
    }
}

/// A commit as found by a lookup, before it gets a module version (go: `codehost.RevInfo`).
#[derive(Debug, Clone)]
struct CodeInfo {
    hash: String,
    short: String,
    time: i64,
    /// Tags on this very commit, sorted.
    tags: Vec<String>,
    /// The tag that was asked for, if the query was one of `tags`; else the hash.
    version: String,
}

/// Lazily computed facts for the `+incompatible` rules of one conversion.
#[derive(Default)]
struct IncompatibleCache {
    root_has_no_go_mod: Option<bool>,
    major_has_no_go_mod: HashMap<String, bool>,
}

impl CodeRepo {
    /// Resolves `query` (a version, branch, tag, commit hash or prefix, pseudo-version, or
    /// `latest`) to a canonical version and commit.
    pub async fn stat(&self, query: &str) -> Result<RevInfo, Error> {
        if query == "latest" {
            return self.latest_head().await;
        }
        let refs = self.mirror.refs().await?;
        let code_rev = self.rev_to_rev(query);
        let Some(info) = self.code_stat(&refs, &code_rev).await? else {
            return Err(self.invalid(query, format!("unknown revision {code_rev}")));
        };
        self.convert(&refs, &info, query).await
    }

    /// The canonical version of the default branch's tip (go: `codeRepo.Latest`): the proxy's
    /// fallback for `@latest` when the module has no tagged versions.
    pub async fn latest_head(&self) -> Result<RevInfo, Error> {
        let refs = self.mirror.refs().await?;
        let Some(head) = self.mirror.head().await? else {
            return Err(Error::Module {
                module: self.module.clone(),
                reason: "no commits".to_owned(),
            });
        };
        let info = self.stat_local(&refs, &head, &head).await?;
        self.convert(&refs, &info, "").await
    }

    /// Maps a module version to a repository revision (go: `revToRev`): a pseudo-version to its
    /// hash, a version to its tag with the module's prefix and without `+incompatible`.
    fn rev_to_rev(&self, rev: &str) -> String {
        if !semver::is_valid(rev) {
            return rev.to_owned();
        }
        if is_pseudo_version(rev) {
            return pseudo_version_rev(rev).unwrap_or_default();
        }
        let rev = rev.strip_suffix("+incompatible").unwrap_or(rev);
        format!("{}{rev}", self.tag_prefix())
    }

    /// Finds the commit a repository revision names (go: `gitRepo.stat`). Only hex strings and
    /// hashes taken from refs reach git, so a query cannot smuggle in options or rev syntax.
    async fn code_stat(&self, refs: &Refs, rev: &str) -> Result<Option<CodeInfo>, Error> {
        // Up to the length of a full name in this repository, as in the go command: in a
        // SHA-1 repository 41 to 64 digits name nothing but perhaps a tag or a branch.
        let max_digits = self.mirror.object_format().hex_len();
        let hexlike = (MIN_HASH_DIGITS..=max_digits).contains(&rev.len()) && is_hex(rev);
        if hexlike {
            if let Some(hash) = self.mirror.resolve_commit(rev).await? {
                return Ok(Some(self.stat_local(refs, rev, &hash).await?));
            }
        }
        if let Some(hash) = refs.tags.get(rev) {
            return Ok(Some(self.stat_local(refs, rev, hash).await?));
        }
        // A branch or HEAD moves, so the answer must not claim their name.
        if let Some(hash) = refs.heads.get(rev) {
            return Ok(Some(self.stat_local(refs, hash, hash).await?));
        }
        if rev == "HEAD" {
            if let Some(hash) = self.mirror.head().await? {
                return Ok(Some(self.stat_local(refs, &hash, &hash).await?));
            }
        }
        if hexlike {
            let mut found: Option<&String> = None;
            for hash in refs.tags.values().chain(refs.heads.values()) {
                if hash.starts_with(rev) {
                    if found.is_some_and(|f| f != hash) {
                        return Err(self.invalid(rev, format!("ambiguous revision {rev}")));
                    }
                    found = Some(hash);
                }
            }
            if let Some(hash) = found {
                return Ok(Some(self.stat_local(refs, rev, hash).await?));
            }
        }
        Ok(None)
    }

    /// The [`CodeInfo`] of commit `hash`, looked up as `version` (go: `statLocal`).
    async fn stat_local(&self, refs: &Refs, version: &str, hash: &str) -> Result<CodeInfo, Error> {
        // A version check reads the go.mod files next: read them with the commit.
        let (file1, major_dir) = self.go_mod_files();
        let files: Vec<String> = std::iter::once(file1)
            .chain(major_dir.map(|(_, file2)| file2))
            .collect();
        let commit = self.mirror.commit_with_files(hash, &files).await?;
        let tags = refs.tags_at(&commit.hash);
        let version = if commit.hash.starts_with(version) {
            commit.hash.clone()
        } else {
            version.to_owned()
        };
        let version = if tags.contains(&version) {
            version
        } else {
            commit.hash.clone()
        };
        Ok(CodeInfo {
            short: commit.hash[..12.min(commit.hash.len())].to_owned(),
            hash: commit.hash,
            time: commit.time,
            tags,
            version,
        })
    }

    /// `(version, is_canonical)` for a tag with the module's prefix (go: `tagToVersion`);
    /// `("", false)` for tags that are not versions of this module.
    fn tag_to_version(&self, tag: &str) -> (String, bool) {
        let prefix = self.tag_prefix();
        let Some(trimmed) = tag.strip_prefix(&prefix) else {
            return (String::new(), false);
        };
        if is_pseudo_version(tag) {
            return (String::new(), false);
        }
        match semver::canonical_semver(trimmed) {
            // `v1` and `v1.2` are shorthands, not versions of a commit.
            Some(v) if trimmed.starts_with(&v) => {
                let canonical = v == trimmed;
                (v, canonical)
            }
            _ => (String::new(), false),
        }
    }

    /// Whether `v` may be served as `v+incompatible` from this commit (go: `canUseIncompatible`).
    async fn can_use_incompatible(
        &self,
        cache: &mut IncompatibleCache,
        info: &CodeInfo,
        stat_vers: &str,
        v: &str,
    ) -> Result<bool, Error> {
        if !self.code_dir.is_empty() || !self.path_major.is_empty() {
            return Ok(false);
        }
        let root_ok = match cache.root_has_no_go_mod {
            Some(ok) => ok,
            None => {
                let ok = self.read(&info.hash, "go.mod").await?.is_none();
                cache.root_has_no_go_mod = Some(ok);
                ok
            }
        };
        if !root_ok {
            return Ok(false);
        }
        // A vN/go.mod means the author uses the major-subdirectory layout for vN: vN.x.y is then
        // that module's version, not an +incompatible one (unless explicitly asked for).
        if !v.is_empty() && !stat_vers.ends_with("+incompatible") {
            let major = semver::major(v).unwrap_or("").to_owned();
            let ok = match cache.major_has_no_go_mod.get(&major) {
                Some(&ok) => ok,
                None => {
                    let file = format!("{major}/go.mod");
                    let ok = self.read(&info.hash, &file).await?.is_none();
                    cache.major_has_no_go_mod.insert(major, ok);
                    ok
                }
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Checks that `v` is a valid version of the module at this commit and returns the answer
    /// (go: `checkCanonical` inside `convert`).
    async fn check_canonical(
        &self,
        cache: &mut IncompatibleCache,
        info: &CodeInfo,
        stat_vers: &str,
        v: &str,
    ) -> Result<RevInfo, Error> {
        if let Err(reason) = self.find_dir(&info.hash, v).await? {
            return Err(self.invalid(v, reason));
        }
        let mut v = v.to_owned();
        if Some(v.as_str()) == Some(stat_vers.strip_suffix("+incompatible").unwrap_or(stat_vers)) {
            v = stat_vers.to_owned();
        }
        let base = v.strip_suffix("+incompatible").unwrap_or(&v).to_owned();
        let mut err_incompatible = None;
        if !match_path_major(&base, &self.path_major) {
            if self
                .can_use_incompatible(cache, info, stat_vers, &base)
                .await?
            {
                v = format!("{base}+incompatible");
            } else if !self.path_major.is_empty() {
                err_incompatible = Some(self.invalid(
                    &v,
                    "module path includes a major version suffix, so major version must match",
                ));
            } else {
                let want = format!(
                    "{}/{}",
                    self.path_prefix,
                    semver::major(&v).unwrap_or_default()
                );
                err_incompatible = Some(self.invalid(
                    &v,
                    format!(
                        "module contains a go.mod file, so module path must match major version ({want:?})"
                    ),
                ));
            }
        } else if v.ends_with("+incompatible") {
            err_incompatible = Some(self.invalid(
                &v,
                format!(
                    "+incompatible suffix not allowed: major version {} is compatible",
                    semver::major(&v).unwrap_or_default()
                ),
            ));
        }
        // A canonical request must come back unchanged (but for +incompatible): asking for
        // v1.2.3 and getting a pseudo-version means there is no such tag.
        if !stat_vers.is_empty() && semver::canonical(stat_vers).as_deref() == Some(stat_vers) {
            let stat_base = stat_vers.strip_suffix("+incompatible").unwrap_or(stat_vers);
            if stat_base != base {
                return Err(self.invalid(
                    stat_vers,
                    format!("resolves to version {v} ({stat_base} is not a tag)"),
                ));
            }
        }
        if let Some(e) = err_incompatible {
            return Err(e);
        }
        Ok(RevInfo {
            version: v,
            hash: info.hash.clone(),
            short: info.short.clone(),
            time: info.time,
        })
    }

    /// Gives the commit its canonical version (go: `convert`).
    async fn convert(
        &self,
        refs: &Refs,
        info: &CodeInfo,
        stat_vers: &str,
    ) -> Result<RevInfo, Error> {
        let mut cache = IncompatibleCache::default();
        if is_pseudo_version(stat_vers) {
            let rev = self
                .check_canonical(&mut cache, info, stat_vers, stat_vers)
                .await?;
            self.validate_pseudo_version(refs, info, stat_vers).await?;
            return Ok(rev);
        }

        // Retractions only steer the choice among tags; failing to read them is not fatal.
        let retractions = self.retractions().await.unwrap_or_default();
        let retracted = |v: &str| retractions.iter().any(|r: &Retraction| r.contains(v));

        let (v, canonical) = self.tag_to_version(&info.version);
        if canonical {
            if let Ok(rev) = self.check_canonical(&mut cache, info, stat_vers, &v).await {
                return Ok(rev);
            }
        }

        let mut highest = String::new();
        let mut pseudo_base = String::new();
        for tag in &info.tags {
            let (v, canonical) = self.tag_to_version(tag);
            if !stat_vers.is_empty() && semver::compare(&v, stat_vers) == Ordering::Equal {
                if canonical {
                    return self.check_canonical(&mut cache, info, stat_vers, &v).await;
                }
                pseudo_base = v.clone();
            }
            if canonical
                && semver::compare(&highest, &v) == Ordering::Less
                && !retracted(&v)
                && (match_path_major(&v, &self.path_major)
                    || self
                        .can_use_incompatible(&mut cache, info, stat_vers, &v)
                        .await?)
            {
                highest = v;
            }
        }
        if !highest.is_empty() {
            return self
                .check_canonical(&mut cache, info, stat_vers, &highest)
                .await;
        }

        if pseudo_base.is_empty() {
            // The highest allowed tag reachable from the commit (go: `RecentTag`).
            let prefix = self.tag_prefix();
            let mut best = String::new();
            for tag in self.mirror.merged_tags(&info.hash).await? {
                let Some(semtag) = tag.strip_prefix(&prefix) else {
                    continue;
                };
                let (v, _) = self.tag_to_version(&tag);
                if v.is_empty() || retracted(&v) {
                    continue;
                }
                if !match_path_major(&v, &self.path_major)
                    && !self
                        .can_use_incompatible(&mut cache, info, stat_vers, &v)
                        .await?
                {
                    continue;
                }
                if semver::compare(semtag, &best) == Ordering::Greater {
                    best = semtag.to_owned();
                }
            }
            if !best.is_empty() {
                pseudo_base = self.tag_to_version(&format!("{prefix}{best}")).0;
            }
        }

        let time = PseudoTime::from_unix(info.time).ok_or_else(|| {
            self.invalid(stat_vers, format!("commit time {} out of range", info.time))
        })?;
        let pseudo = pseudo_version(&self.pseudo_major, &pseudo_base, time, &info.short);
        self.check_canonical(&mut cache, info, stat_vers, &pseudo)
            .await
    }

    /// Checks a requested pseudo-version against the commit it names (go:
    /// `validatePseudoVersion`).
    async fn validate_pseudo_version(
        &self,
        refs: &Refs,
        info: &CodeInfo,
        version: &str,
    ) -> Result<(), Error> {
        let bad = |reason: String| self.invalid_pseudo(version, reason);
        let rev = pseudo_version_rev(version).map_err(|e| bad(e.to_string()))?;
        if rev != info.short {
            return Err(bad(if rev.starts_with(&info.short) {
                format!(
                    "revision is longer than canonical (expected {})",
                    info.short
                )
            } else if info.short.starts_with(&rev) {
                format!(
                    "revision is shorter than canonical (expected {})",
                    info.short
                )
            } else {
                format!(
                    "does not match short name of revision (expected {})",
                    info.short
                )
            }));
        }
        let t = pseudo_version_time(version).map_err(|e| bad(e.to_string()))?;
        let want = PseudoTime::from_unix(info.time).map(|t| t.to_string());
        if want.as_deref() != Some(t.as_str()) {
            return Err(bad(format!(
                "does not match version-control timestamp (expected {})",
                want.unwrap_or_default()
            )));
        }
        let tag_prefix = self.tag_prefix();
        let base = pseudo_version_base(version.strip_suffix("+incompatible").unwrap_or(version))
            .map_err(|e| bad(e.to_string()))?;
        if base.is_empty() {
            if self.pseudo_major.is_empty() && semver::major(version) == Some("v1") {
                return Err(bad(
                    "major version without preceding tag must be v0, not v1".to_owned(),
                ));
            }
            return Ok(());
        }
        for tag in &info.tags {
            if tag.strip_prefix(&tag_prefix).unwrap_or(tag) == base {
                return Err(bad(format!(
                    "tag ({tag}) found on revision {rev} is already canonical, so should not be replaced with a pseudo-version derived from that tag"
                )));
            }
        }
        let wanted = format!("{tag_prefix}{base}");
        let mut last_tag = None;
        for tag in refs.tags.keys().filter(|t| t.starts_with(&wanted)) {
            let version_only = tag.strip_prefix(&tag_prefix).unwrap_or(tag);
            if semver::compare(version_only, &base) == Ordering::Equal {
                last_tag = Some(tag);
                if self.mirror.tag_is_ancestor(tag, &info.hash).await? {
                    return Ok(());
                }
            }
        }
        Err(bad(match last_tag {
            None => format!("preceding tag ({base}) not found"),
            Some(tag) => format!("revision {rev} is not a descendent of preceding tag ({tag})"),
        }))
    }
}
