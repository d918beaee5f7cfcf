//! The module's version list from the repository's tags (go: `codeRepo.Versions`), which is
//! what `@v/list` serves.
//!
//! A tag counts when it carries the module's prefix (`code_dir/`), the rest is a canonical
//! semantic version (so `v1.2` and `v1.2.3+meta` do not count) and not a pseudo-version, and its
//! major version fits the module path. For a root module without a major suffix, v2+ tags become
//! `+incompatible` versions, unless the latest compatible tag has a go.mod (then none at all), and
//! not for a major whose latest tag has a go.mod.

use agora_gomod::{is_pseudo_version, match_path_major, semver};

use crate::error::Error;
use crate::mirror::Refs;
use crate::repo::CodeRepo;

impl CodeRepo {
    /// The module's versions, sorted by semver precedence, compatible ones first, then the
    /// `+incompatible` ones. Includes retracted versions (the list does).
    pub async fn versions(&self) -> Result<Vec<String>, Error> {
        let refs = self.mirror.refs().await?;
        self.versions_from(&refs).await
    }

    pub(crate) async fn versions_from(&self, refs: &Refs) -> Result<Vec<String>, Error> {
        // gopkg.in/x.v2-unstable does not use the v2 tags (those belong to x.v2).
        if self.module.starts_with("gopkg.in/") && self.module.ends_with("-unstable") {
            return Ok(Vec::new());
        }
        let prefix = self.tag_prefix();
        let mut list = Vec::new();
        let mut incompatible = Vec::new();
        for tag in refs.tags.keys() {
            let Some(v) = tag.strip_prefix(&prefix) else {
                continue;
            };
            // Compare with the plain semver canonical form: a tag `v2.0.0+incompatible` is not a
            // version; the version `v2.0.0+incompatible` comes from the tag `v2.0.0`.
            if v.is_empty() || semver::canonical_semver(v).as_deref() != Some(v) {
                continue;
            }
            if is_pseudo_version(v) {
                continue;
            }
            if !match_path_major(v, &self.path_major) {
                if self.code_dir.is_empty()
                    && self.path_major.is_empty()
                    && semver::major(v).is_some_and(|m| m > "v1")
                {
                    incompatible.push(v.to_owned());
                }
                continue;
            }
            list.push(v.to_owned());
        }
        semver::sort(&mut list);
        semver::sort(&mut incompatible);
        if incompatible.is_empty() || !self.path_major.is_empty() {
            return Ok(list);
        }

        // Here code_dir is empty, so tag = version and go.mod is at the repository root.
        let has_go_mod = |v: &str| {
            let commit = refs.tags.get(v).cloned().unwrap_or_default();
            async move { Ok::<_, Error>(self.read(&commit, "go.mod").await?.is_some()) }
        };
        if let Some(last) = list.last() {
            // The author means consumers to stay on v0/v1 (golang.org/issue/34189).
            if has_go_mod(last).await? {
                return Ok(list);
            }
        }
        let mut last_major = "";
        let mut last_major_has_go_mod = false;
        for (i, v) in incompatible.iter().enumerate() {
            let major = semver::major(v).unwrap_or("");
            if major != last_major {
                let latest_at_major = incompatible[i..]
                    .iter()
                    .take_while(|w| semver::major(w) == Some(major))
                    .last()
                    .unwrap_or(v);
                last_major = major;
                last_major_has_go_mod = has_go_mod(latest_at_major).await?;
            }
            // A major whose latest release has a go.mod needs /vN; listing a few of its minor
            // versions as +incompatible would only confuse.
            if !last_major_has_go_mod {
                list.push(format!("{v}+incompatible"));
            }
        }
        Ok(list)
    }
}
