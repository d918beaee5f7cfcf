//! A module inside a mirrored repository (go: `modfetch/coderepo.go` `newCodeRepo`, `findDir`).
//!
//! The module path splits into a prefix and a major-version suffix (`/v2`, `.v2`); the prefix
//! minus the repository root, under the `go-import` subdirectory if the meta tag gave one (Go
//! 1.25), is the module's directory in the repository (`code_dir`), which is also the tag prefix
//! (`code_dir/v1.2.3`). At a given commit the module's go.mod is found either in `code_dir/vN`
//! (the "major subdirectory" layout) or in `code_dir`.

use agora_gomod::gomodfile::{module_path, GoMod};
use agora_gomod::{format_module_line, path_major_prefix, semver, split_path_version};

use crate::error::Error;
use crate::mirror::Mirror;

/// Largest go.mod read from a repository. The go command passes a 16 MiB limit here but its git
/// backend ignores it, so it serves `.info`/`.mod` for a commit whose go.mod is larger (only the zip
/// is refused). agora does the same, with a higher bound that only protects its memory.
pub const MAX_GO_MOD: u64 = 64 << 20;

/// A module inside a repository mirror.
#[derive(Debug, Clone)]
pub struct CodeRepo {
    pub(crate) mirror: Mirror,
    pub(crate) module: String,
    pub(crate) root: String,
    pub(crate) code_dir: String,
    pub(crate) path_prefix: String,
    pub(crate) path_major: String,
    pub(crate) pseudo_major: String,
}

impl CodeRepo {
    /// The module `module` in the repository whose import-path root is `root` (for example
    /// `github.com/o/r` for module `github.com/o/r/sub/v2`), mirrored in `mirror`. `subdir` is
    /// the repository directory that `root` names (a cleaned `go-import` subdirectory; `""` for
    /// the repository root).
    pub fn new(mirror: Mirror, module: &str, root: &str, subdir: &str) -> Result<Self, Error> {
        let err = |reason: String| Error::Module {
            module: module.to_owned(),
            reason,
        };
        if !has_path_prefix(module, root) {
            return Err(err(format!("mismatched repo: found {root} for {module}")));
        }
        let (mut path_prefix, path_major) =
            split_path_version(module).ok_or_else(|| err("invalid module path".to_owned()))?;
        if root == module {
            path_prefix = module;
        }
        let code_dir = if root == module {
            String::new()
        } else {
            if !has_path_prefix(path_prefix, root) {
                return Err(err(format!(
                    "repository rooted at {root} cannot contain module {module}"
                )));
            }
            path_prefix[root.len()..].trim_matches('/').to_owned()
        };
        // go: `filepath.Join(codeDir, subdir)`, in that order (so a module below the root of a
        // subdirectory import is looked for in `<its dir>/<subdir>`); both are clean already.
        let code_dir = match (code_dir.is_empty(), subdir.is_empty()) {
            (_, true) => code_dir,
            (true, false) => subdir.to_owned(),
            (false, false) => format!("{code_dir}/{subdir}"),
        };
        Ok(CodeRepo {
            mirror,
            module: module.to_owned(),
            root: root.to_owned(),
            code_dir,
            path_prefix: path_prefix.to_owned(),
            path_major: path_major.to_owned(),
            pseudo_major: path_major_prefix(path_major).to_owned(),
        })
    }

    pub fn module_path(&self) -> &str {
        &self.module
    }

    /// The module's directory in the repository, `""` at the root.
    pub fn code_dir(&self) -> &str {
        &self.code_dir
    }

    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// The prefix of the module's tags: `code_dir/`, or nothing at the root.
    pub(crate) fn tag_prefix(&self) -> String {
        if self.code_dir.is_empty() {
            String::new()
        } else {
            format!("{}/", self.code_dir)
        }
    }

    pub(crate) fn invalid(&self, version: &str, reason: impl Into<String>) -> Error {
        Error::InvalidVersion {
            module: self.module.clone(),
            version: version.to_owned(),
            reason: format!("invalid version: {}", reason.into()),
        }
    }

    pub(crate) fn invalid_pseudo(&self, version: &str, reason: impl Into<String>) -> Error {
        Error::InvalidVersion {
            module: self.module.clone(),
            version: version.to_owned(),
            reason: format!("invalid pseudo-version: {}", reason.into()),
        }
    }

    /// `file` at `commit`, bounded by [`MAX_GO_MOD`].
    pub(crate) async fn read(&self, commit: &str, file: &str) -> Result<Option<Vec<u8>>, Error> {
        self.mirror.read_file(commit, file, MAX_GO_MOD).await
    }

    /// The go.mod files [`find_dir`](Self::find_dir) reads: `<code dir>/go.mod`, and for a major
    /// version module not at the repository root, `<code dir>/<vN>` with its go.mod.
    pub(crate) fn go_mod_files(&self) -> (String, Option<(String, String)>) {
        let join = |dir: &str, file: &str| {
            if dir.is_empty() {
                file.to_owned()
            } else {
                format!("{dir}/{file}")
            }
        };
        let file1 = join(&self.code_dir, "go.mod");
        let major = (!self.path_major.is_empty()
            && self.root != self.module
            && !self.path_major.starts_with('.'))
        .then(|| {
            let dir2 = join(&self.code_dir, &self.path_major[1..]);
            let file2 = join(&dir2, "go.mod");
            (dir2, file2)
        });
        (file1, major)
    }

    /// Where the module lives at `commit` for `version` (go: `findDir`): the directory and its
    /// go.mod, if it has one. `Ok(Err(reason))` when the commit does not hold this module.
    pub(crate) async fn find_dir(
        &self,
        commit: &str,
        version: &str,
    ) -> Result<Result<(String, Option<Vec<u8>>), String>, Error> {
        let short = &commit[..commit.len().min(12)];
        let (file1, major_dir) = self.go_mod_files();
        let gomod1 = self.read(commit, &file1).await?;
        let mpath1 = gomod1.as_deref().and_then(module_path).unwrap_or_default();
        let found1 = gomod1.is_some()
            && (is_major(&mpath1, &self.path_major)
                || (self.path_major.is_empty() && mpath1.starts_with("gopkg.in/")));

        let mut file2 = String::new();
        if let Some((dir2, f2)) = major_dir {
            file2 = f2;
            let gomod2 = self.read(commit, &file2).await?;
            let mpath2 = gomod2.as_deref().and_then(module_path).unwrap_or_default();
            let found2 = gomod2.is_some() && is_major(&mpath2, &self.path_major);
            if found1 && found2 {
                return Ok(Err(format!(
                    "{}/{file1} and ...{pm}/go.mod both have ...{pm} module paths at revision {short}",
                    self.path_prefix,
                    pm = self.path_major
                )));
            }
            if found2 {
                return Ok(Ok((dir2, gomod2)));
            }
            if gomod2.is_some() {
                return Ok(Err(if mpath2.is_empty() {
                    format!(
                        "{}/{file2} is missing module path at revision {short}",
                        self.root
                    )
                } else {
                    format!(
                        "{}/{file2} has non-...{} module path {mpath2:?} at revision {short}",
                        self.root, self.path_major
                    )
                }));
            }
        }
        if found1 {
            return Ok(Ok((self.code_dir.clone(), gomod1)));
        }
        if gomod1.is_some() {
            let suffix = if file2.is_empty() {
                String::new()
            } else {
                format!(" (and ...{}/go.mod does not exist)", self.path_major)
            };
            return Ok(Err(if mpath1.is_empty() {
                format!("{file1} is missing module path{suffix} at revision {short}")
            } else if !self.path_major.is_empty() {
                format!(
                    "{file1} has non-...{} module path {mpath1:?}{suffix} at revision {short}",
                    self.path_major
                )
            } else if split_path_version(&mpath1).is_none() {
                format!("{file1} has malformed module path {mpath1:?}{suffix} at revision {short}")
            } else {
                format!(
                    "{file1} has post-{} module path {mpath1:?}{suffix} at revision {short}",
                    semver::major(version).unwrap_or("")
                )
            }));
        }
        // No go.mod at all: only a root module without a major suffix (or gopkg.in) may do that.
        if self.code_dir.is_empty()
            && (self.path_major.is_empty() || self.path_major.starts_with('.'))
        {
            return Ok(Ok((String::new(), None)));
        }
        Ok(Err(if file2.is_empty() {
            format!("missing {}/go.mod at revision {short}", self.path_prefix)
        } else {
            format!(
                "missing {}/go.mod and ...{}/go.mod at revision {short}",
                self.path_prefix, self.path_major
            )
        }))
    }

    /// The go.mod of the module at `commit` for a version already resolved there: the raw blob,
    /// or the synthesized `module <path>` line when the module has none.
    pub async fn go_mod_at(&self, commit: &str, version: &str) -> Result<Vec<u8>, Error> {
        match self.find_dir(commit, version).await? {
            Ok((_, Some(data))) => Ok(data),
            Ok((_, None)) => Ok(format_module_line(&self.module).into_bytes()),
            Err(reason) => Err(self.invalid(version, reason)),
        }
    }

    /// The retractions that apply to this module (go: `retractedVersions`): those in the go.mod
    /// of the highest release tag (else the highest tag), ignoring `+incompatible` versions.
    /// Any trouble reading them means "no retractions", as in the `go` command.
    pub async fn retractions(&self) -> Result<Vec<agora_gomod::Retraction>, Error> {
        let refs = self.mirror.refs().await?;
        let versions = self.versions_from(&refs).await?;
        let compatible: Vec<&String> = versions
            .iter()
            .take_while(|v| !v.ends_with("+incompatible"))
            .collect();
        let Some(highest) = compatible
            .iter()
            .rev()
            .find(|v| semver::prerelease(v).is_none())
            .or(compatible.last())
        else {
            return Ok(Vec::new());
        };
        let tag = format!("{}{highest}", self.tag_prefix());
        let Some(commit) = refs.tags.get(&tag) else {
            return Ok(Vec::new());
        };
        Ok(match self.find_dir(commit, highest).await? {
            Ok((_, Some(data))) => GoMod::parse(&data).map(|m| m.retract).unwrap_or_default(),
            _ => Vec::new(),
        })
    }
}

/// Whether a go.mod's module path `mpath` fits the major suffix `path_major` (go: `isMajor`).
fn is_major(mpath: &str, path_major: &str) -> bool {
    if mpath.is_empty() {
        return false;
    }
    let Some((_, mpath_major)) = split_path_version(mpath) else {
        return false;
    };
    if path_major.is_empty() {
        return matches!(path_major_prefix(mpath_major), "" | "v0" | "v1");
    }
    if mpath_major.is_empty() {
        return false;
    }
    path_major[1..] == mpath_major[1..]
}

/// Whether `prefix` is `s` or a leading run of its `/`-separated elements.
pub(crate) fn has_path_prefix(s: &str, prefix: &str) -> bool {
    match s.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefix() {
        assert!(has_path_prefix("a/b/c", "a/b"));
        assert!(has_path_prefix("a/b", "a/b"));
        assert!(!has_path_prefix("a/bc", "a/b"));
    }

    #[test]
    fn major() {
        assert!(is_major("example.com/m", ""));
        assert!(!is_major("example.com/m/v2", ""));
        assert!(is_major("example.com/m/v2", "/v2"));
        assert!(is_major("gopkg.in/yaml.v2", ".v2"));
        assert!(!is_major("example.com/m", "/v2"));
    }
}
