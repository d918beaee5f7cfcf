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
//!
//! Each answer carries its [`Origin`], what the go command prints for `GOPROXY=direct` and
//! proxies put into `.info`: which repository and commit, and what the answer depended on that
//! may change (a branch or tag name, the set of tags).

use std::cmp::Ordering;
use std::collections::HashMap;

use agora_gomod::{
    is_pseudo_version, match_path_major, pseudo_version, pseudo_version_base, pseudo_version_rev,
    pseudo_version_time, semver, PseudoTime, Retraction,
};

use base64::Engine as _;
use sha2::{Digest, Sha256};

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
    /// Where the answer came from; `None` when the go command gives none (see
    /// [`CodeRepo::latest`]).
    pub origin: Option<Origin>,
}

/// The provenance of an answer (go: `codehost.Origin`), with the go command's meaning for each
/// field; empty fields are left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Always `git`.
    pub vcs: String,
    /// The repository URL, without user information (see [`CodeRepo::origin_url`]).
    pub url: String,
    /// The module's directory in the repository.
    pub subdir: String,
    /// The commit.
    pub hash: String,
    /// With `tag_sum`: the answer depends on the tags with this prefix (a pseudo-version's base,
    /// the version list behind `latest`).
    pub tag_prefix: String,
    /// `t1:` + base64 of the SHA-256 of those tags and their commits (go: `gitRepo.Tags`).
    pub tag_sum: String,
    /// The answer depends on this ref naming `hash`: `refs/tags/…`, `refs/heads/…` or `HEAD`.
    pub reference: String,
}

impl Origin {
    /// The origin as a module cache keeps it for a canonical version (go: `writeDiskStat`):
    /// the tag list no longer matters once the version is known, and neither does the ref that
    /// named a pseudo-version's commit. A tagged version keeps (or gets) its own tag as the ref,
    /// which is what a request for the version itself answers, so the stored answer does not
    /// depend on which query (a branch, `latest`) resolved it first.
    pub fn for_version(&self, version: &str) -> Origin {
        let reference = if is_pseudo_version(version) {
            String::new()
        } else {
            let tag = version.strip_suffix("+incompatible").unwrap_or(version);
            if self.subdir.is_empty() {
                format!("refs/tags/{tag}")
            } else {
                format!("refs/tags/{}/{tag}", self.subdir)
            }
        };
        Origin {
            tag_prefix: String::new(),
            tag_sum: String::new(),
            reference,
            ..self.clone()
        }
    }

    /// Combines the origin of a version list with that of the version chosen from it (go:
    /// `modload.mergeOrigin`): `None` when they disagree.
    fn merge(&self, other: &Origin) -> Option<Origin> {
        if (&self.vcs, &self.url, &self.subdir) != (&other.vcs, &other.url, &other.subdir) {
            return None;
        }
        let mut merged = self.clone();
        let conflict = |a: &str, b: &str| !a.is_empty() && !b.is_empty() && a != b;
        if conflict(&self.hash, &other.hash)
            || conflict(&self.reference, &other.reference)
            || (!other.tag_sum.is_empty()
                && !self.tag_sum.is_empty()
                && (self.tag_sum != other.tag_sum || self.tag_prefix != other.tag_prefix))
        {
            return None;
        }
        if !other.hash.is_empty() {
            merged.hash.clone_from(&other.hash);
        }
        if !other.tag_sum.is_empty() {
            merged.tag_sum.clone_from(&other.tag_sum);
            merged.tag_prefix.clone_from(&other.tag_prefix);
        }
        if !other.reference.is_empty() {
            merged.reference.clone_from(&other.reference);
        }
        Some(merged)
    }
}

/// The checksum of the tags named `prefix…` (go: `gitRepo.Tags`): over the tags, sorted, whose
/// name after the prefix's directory part could matter to a version (a canonical semver, maybe
/// followed by more, and not a pseudo-version), the lines `"<tag>" <commit>` as Go's `%q`
/// writes the name.
pub(crate) fn tag_sum(refs: &Refs, prefix: &str) -> String {
    let dir = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
    let mut h = Sha256::new();
    for (tag, hash) in refs.tags.range(prefix.to_owned()..) {
        if !tag.starts_with(prefix) {
            break;
        }
        let rest = tag.strip_prefix(dir).unwrap_or(tag);
        let is_origin_tag = semver::canonical_semver(rest).is_some_and(|c| rest.starts_with(&c))
            && !is_pseudo_version(rest);
        if is_origin_tag {
            h.update(format!("{} {hash}\n", go_quote(tag)));
        }
    }
    format!(
        "t1:{}",
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    )
}

/// Go's `strconv.Quote` for the strings tags can be: printable characters as they are, `"` and
/// `\` escaped, control characters as escapes.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
    /// The ref the query named (go: `Origin.Ref` of `gitRepo.stat`): `refs/tags/<tag>`,
    /// `refs/heads/<branch>` or `HEAD`; empty for a commit hash, which names itself.
    reference: String,
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
        let rev = self.convert(&refs, &info, query).await?;
        Ok(self.with_origin(rev, &refs, &info, query))
    }

    /// The repository URL for [`Origin::url`]: the mirror's URL with any user information
    /// (`https://user:token@host/…`, `ssh://git@host/…`) left out, so that no credential can
    /// reach a client or a cache.
    pub fn origin_url(&self) -> String {
        self.mirror.url().replacen("://***@", "://", 1)
    }

    /// Adds the origin of a conversion (go: the deferred part of `codeRepo.convert`): the
    /// commit, the ref the query named, and for a pseudo-version (unless it was asked for and
    /// has no base tag) the tags its base was chosen from.
    fn with_origin(
        &self,
        mut rev: RevInfo,
        refs: &Refs,
        info: &CodeInfo,
        stat_vers: &str,
    ) -> RevInfo {
        let mut origin = Origin {
            vcs: "git".to_owned(),
            url: self.origin_url(),
            subdir: self.code_dir.clone(),
            hash: info.hash.clone(),
            reference: info.reference.clone(),
            ..Origin::default()
        };
        let v = &rev.version;
        if is_pseudo_version(v) && (v != stat_vers || !v.starts_with("v0.0.0-")) {
            let mut prefix = self.tag_prefix();
            if !self.path_major.is_empty() {
                prefix.push_str(&self.path_major[1..]);
                prefix.push('.');
            }
            origin.tag_sum = tag_sum(refs, &prefix);
            origin.tag_prefix = prefix;
        }
        rev.origin = Some(origin);
        rev
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
        let mut info = self.stat_local(&refs, &head, &head).await?;
        info.reference = "HEAD".to_owned();
        let rev = self.convert(&refs, &info, "").await?;
        Ok(self.with_origin(rev, &refs, &info, ""))
    }

    /// The origin of the version list, as the go command's `latest` query starts from it (go:
    /// `codeRepo.Versions`): the module's tags.
    pub(crate) fn list_origin(&self, refs: &Refs) -> Origin {
        let prefix = self.tag_prefix();
        Origin {
            vcs: "git".to_owned(),
            url: self.origin_url(),
            subdir: self.code_dir.clone(),
            tag_sum: tag_sum(refs, &prefix),
            tag_prefix: prefix,
            ..Origin::default()
        }
    }

    /// [`Origin::merge`] for [`CodeRepo::latest`].
    pub(crate) fn merge_origin(list: &Origin, rev: &mut RevInfo) {
        rev.origin = rev.origin.as_ref().and_then(|o| list.merge(o));
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
        // A commit hash names itself: no ref in the origin (the go command's answer once it has
        // the commit; before, it may name a ref the commit is the tip of).
        if hexlike {
            if let Some(hash) = self.mirror.resolve_commit(rev).await? {
                return Ok(Some(self.stat_local(refs, rev, &hash).await?));
            }
        }
        let with_ref = |mut info: CodeInfo, reference: String| {
            info.reference = reference;
            Some(info)
        };
        if let Some(hash) = refs.tags.get(rev) {
            let info = self.stat_local(refs, rev, hash).await?;
            return Ok(with_ref(info, format!("refs/tags/{rev}")));
        }
        // A branch or HEAD moves, so the answer must not claim their name.
        if let Some(hash) = refs.heads.get(rev) {
            let info = self.stat_local(refs, hash, hash).await?;
            return Ok(with_ref(info, format!("refs/heads/{rev}")));
        }
        if rev == "HEAD" {
            if let Some(hash) = self.mirror.head().await? {
                let info = self.stat_local(refs, &hash, &hash).await?;
                return Ok(with_ref(info, "HEAD".to_owned()));
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
            reference: String::new(),
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
            origin: None,
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

        let (v, canonical) = self.tag_to_version(&info.version);
        if canonical {
            if let Ok(rev) = self.check_canonical(&mut cache, info, stat_vers, &v).await {
                return Ok(rev);
            }
        }

        // Retractions only steer the choice among tags (so a tag asked for by name does not
        // read them: they live at another commit); failing to read them is not fatal.
        let retractions = self.retractions().await.unwrap_or_default();
        let retracted = |v: &str| retractions.iter().any(|r: &Retraction| r.contains(v));

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

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(tags: &[(&str, &str)]) -> Refs {
        Refs {
            tags: tags
                .iter()
                .map(|(t, h)| ((*t).to_owned(), (*h).to_owned()))
                .collect(),
            ..Refs::default()
        }
    }

    /// The go command (1.27, `GOPROXY=direct go mod download -json m@latest`) printed this
    /// `TagSum` for a repository with exactly these two tags.
    #[test]
    fn tag_sum_is_the_go_commands() {
        let r = refs(&[
            ("v1.0.0", "35993d787f2373e63254338e412989293f051660"),
            ("v1.1.0-pre", "a176e45a08690a9196d6e40bae5f801228fff999"),
        ]);
        let want = "t1:slyUQIogPTypkEXhlGaPe29Ja3Kit/FmvKI/AirfQSc=";
        assert_eq!(tag_sum(&r, ""), want);
        // Tags that cannot matter to a version are not summed: other prefixes, non-semver
        // names, pseudo-versions.
        let mut more = r.clone();
        for (t, h) in [
            ("release-1", "1111111111111111111111111111111111111111"),
            ("sub/v1.0.0", "2222222222222222222222222222222222222222"),
            (
                "v0.0.0-20240102030405-abcdefabcdef",
                "3333333333333333333333333333333333333333",
            ),
        ] {
            more.tags.insert(t.to_owned(), h.to_owned());
        }
        assert_eq!(tag_sum(&more, ""), want);
        // Under a directory prefix the names are summed whole, the semver test is on the rest.
        let sub = refs(&[
            ("sub/v1.0.0", "35993d787f2373e63254338e412989293f051660"),
            ("sub/x", "35993d787f2373e63254338e412989293f051660"),
        ]);
        let only = refs(&[("sub/v1.0.0", "35993d787f2373e63254338e412989293f051660")]);
        assert_eq!(tag_sum(&sub, "sub/"), tag_sum(&only, "sub/"));
        assert_ne!(tag_sum(&sub, "sub/"), tag_sum(&sub, "sub/v2."));
    }

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        assert_eq!(go_quote("sub/v1.0.0"), r#""sub/v1.0.0""#);
        assert_eq!(go_quote("a\"b\\c\td\u{7f}é"), r#""a\"b\\c\td\x7fé""#);
    }

    #[test]
    fn a_version_keeps_only_what_it_depends_on() {
        let full = Origin {
            vcs: "git".into(),
            url: "https://h/r.git".into(),
            subdir: "go".into(),
            hash: "abc".into(),
            tag_prefix: "go/".into(),
            tag_sum: "t1:x".into(),
            reference: "refs/heads/main".into(),
        };
        let tagged = full.for_version("v1.2.0");
        assert_eq!(tagged.reference, "refs/tags/go/v1.2.0");
        assert!(tagged.tag_sum.is_empty() && tagged.tag_prefix.is_empty());
        assert_eq!(
            Origin {
                subdir: String::new(),
                ..full.clone()
            }
            .for_version("v2.0.0+incompatible")
            .reference,
            "refs/tags/v2.0.0"
        );
        let pseudo = full.for_version("v1.2.1-0.20240102030405-abcdefabcdef");
        assert!(pseudo.reference.is_empty());
        assert_eq!(pseudo.hash, "abc");
    }

    #[test]
    fn merging_origins_follows_the_go_command() {
        let list = Origin {
            vcs: "git".into(),
            url: "u".into(),
            tag_prefix: "".into(),
            tag_sum: "t1:list".into(),
            ..Origin::default()
        };
        let tag = Origin {
            vcs: "git".into(),
            url: "u".into(),
            hash: "h".into(),
            reference: "refs/tags/v1.0.0".into(),
            ..Origin::default()
        };
        let merged = list.merge(&tag).unwrap();
        assert_eq!(
            (
                merged.tag_sum.as_str(),
                merged.reference.as_str(),
                merged.hash.as_str()
            ),
            ("t1:list", "refs/tags/v1.0.0", "h")
        );
        // A /v2 module's pseudo-version sums the `v2.` tags, its list all tags: no origin.
        let pseudo = Origin {
            tag_prefix: "v2.".into(),
            tag_sum: "t1:v2".into(),
            ..tag.clone()
        };
        assert_eq!(list.merge(&pseudo), None);
    }
}
