//! [`VcsSource`]: answering for a module straight from its git repository (agora-vcs), with no Go
//! toolchain. Used for private-module patterns and for `direct` entries of the upstream chain.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agora_gomod::module::ModulePath;
use agora_upstream::FetchError;
use agora_vcs::{GitFailure, RevInfo, Vcs};
use async_trait::async_trait;
use bytes::Bytes;

use crate::source::Source;

pub struct VcsSource {
    vcs: Arc<Vcs>,
}

impl VcsSource {
    pub fn new(vcs: Arc<Vcs>) -> Self {
        VcsSource { vcs }
    }

    async fn repo(&self, module: &ModulePath) -> Result<agora_vcs::CodeRepo, FetchError> {
        self.vcs
            .code_repo(module.as_str())
            .await
            .map_err(failed(module))
    }
}

/// [`map_err`] for `module`, for `Result::map_err`.
fn failed(module: &ModulePath) -> impl FnOnce(agora_vcs::Error) -> FetchError + '_ {
    move |err| map_err(module.as_str(), err)
}

/// The `.info` JSON the go command expects: `{"Version":…,"Time":…}`.
pub fn info_json(rev: &RevInfo) -> Bytes {
    let body = serde_json::json!({
        "Version": rev.version,
        "Time": rev.time_rfc3339(),
    });
    Bytes::from(body.to_string())
}

/// Maps a vcs failure of `module` to the proxy's vocabulary: "does not exist" is not-found (404,
/// the client may try elsewhere), rejected credentials or an untrusted certificate are refusals
/// (403), our own disk failing under git (full, read-only) is a storage failure (503, like a
/// download that cannot be written), everything else is a transport failure (502).
///
/// What goes on to the client is the error's [`agora_vcs::Error::for_client`] text. The detail
/// (git command lines, mirror paths, rewritten repository URLs) is logged here, once per fetch,
/// except for storage failures, whose detail travels on to the server's log line for 5xx.
pub fn map_err(module: &str, err: agora_vcs::Error) -> FetchError {
    if err.is_local_storage() {
        let path = match &err {
            agora_vcs::Error::Io { path, .. } => path.clone(),
            _ => PathBuf::from("git mirror"),
        };
        return FetchError::Scratch {
            path,
            source: std::io::Error::other(err.to_string()),
        };
    }
    let message = err.for_client().to_string();
    if err.is_not_found() {
        // An everyday answer (the go command probes path prefixes): detail for debugging only.
        tracing::debug!(module.path = module, error = %err, "not found in git");
        return FetchError::NotFound {
            status: 404,
            message,
        };
    }
    tracing::warn!(module.path = module, error = %err, "git failed");
    match err.git_failure() {
        Some(GitFailure::AuthFailed | GitFailure::UnknownCa) => FetchError::Refused { message },
        _ => FetchError::Transport {
            url: "git".into(),
            message,
        },
    }
}

#[async_trait]
impl Source for VcsSource {
    fn describe(&self) -> String {
        "direct".into()
    }

    async fn list(&self, module: &ModulePath) -> Result<Bytes, FetchError> {
        let repo = self.repo(module).await?;
        let versions = repo.versions().await.map_err(failed(module))?;
        let mut out = String::new();
        for v in versions {
            out.push_str(&v);
            out.push('\n');
        }
        Ok(Bytes::from(out))
    }

    async fn latest(&self, module: &ModulePath) -> Result<Bytes, FetchError> {
        let repo = self.repo(module).await?;
        Ok(info_json(&repo.latest().await.map_err(failed(module))?))
    }

    async fn info(&self, module: &ModulePath, query: &str) -> Result<Bytes, FetchError> {
        let repo = self.repo(module).await?;
        Ok(info_json(&repo.stat(query).await.map_err(failed(module))?))
    }

    async fn go_mod(&self, module: &ModulePath, version: &str) -> Result<Bytes, FetchError> {
        let repo = self.repo(module).await?;
        let rev = repo.stat(version).await.map_err(failed(module))?;
        let body = repo
            .go_mod_at(&rev.hash, version)
            .await
            .map_err(failed(module))?;
        Ok(Bytes::from(body))
    }

    async fn zip(
        &self,
        module: &ModulePath,
        version: &str,
        dest: &Path,
    ) -> Result<u64, FetchError> {
        let repo = self.repo(module).await?;
        let info = repo.zip(version, dest).await.map_err(failed(module))?;
        Ok(info.size)
    }

    async fn repository(
        &self,
        module: &ModulePath,
        network: bool,
    ) -> Result<Option<String>, FetchError> {
        self.vcs
            .repository(module.as_str(), network)
            .await
            .map_err(failed(module))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CoreError;

    /// Regression: a full local disk during git work answered 502 "upstream git failed"; it is
    /// a storage failure (503, generic body, counted as a storage error).
    #[test]
    fn a_full_local_disk_under_git_is_a_storage_error() {
        let full = agora_vcs::Error::Git {
            command: "git fetch".into(),
            kind: GitFailure::LocalStorage,
            stderr: "fatal: write error: No space left on device".into(),
        };
        let io = agora_vcs::Error::Io {
            path: "/data/_agora/mirrors/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        for err in [full, io] {
            let core = CoreError::from_fetch("m@v1.0.0", map_err("m", err));
            assert!(matches!(core, CoreError::Storage(_)), "{core:?}");
        }
        let other = agora_vcs::Error::Git {
            command: "git fetch".into(),
            kind: GitFailure::Other,
            stderr: "fatal: bad object".into(),
        };
        let core = CoreError::from_fetch("m@v1.0.0", map_err("m", other));
        assert!(matches!(core, CoreError::Upstream { .. }), "{core:?}");
    }
}
