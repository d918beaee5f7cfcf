//! [`Source`]: where a module's artifacts come from on a cache miss.

use std::path::Path;

use agora_gomod::module::ModulePath;
use agora_storage::layout;
use agora_storage::ArtifactKind;
use agora_upstream::{FetchError, UpstreamClient, WalkError};
use async_trait::async_trait;
use bytes::Bytes;

/// Largest `.info`/`@latest` answer accepted (they are a few hundred bytes in practice).
pub const MAX_INFO: u64 = 1 << 20;
/// Largest go.mod accepted from an upstream proxy: the go command's go.mod limit. (The go command
/// reads a proxy's `.mod` without a limit, but refuses the zip of a module whose go.mod is larger,
/// so no proxy that builds its zips, proxy.golang.org included, has such a version to serve.)
pub const MAX_MOD: u64 = agora_gomod::zip::MAX_GO_MOD;
/// Largest version list accepted.
pub const MAX_LIST: u64 = 16 << 20;
/// Largest module zip, as the go command enforces (500 MiB).
pub const MAX_ZIP: u64 = 500 << 20;

/// Why a [`Source`] could not answer: the errors of the origins themselves (kept as they are,
/// translated once, by [`crate::CoreError::from_source`]) and the proxy's own reasons.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An upstream proxy failed or said "not found".
    #[error(transparent)]
    Upstream(#[from] FetchError),
    /// Git failed or the module is not in the repository.
    #[error(transparent)]
    Vcs(#[from] agora_vcs::Error),
    /// The source's answer was checked and refused (not cached).
    #[error("{source_name} sent an invalid answer: {reason}")]
    Invalid {
        source_name: String,
        reason: crate::validate::Invalid,
    },
    /// The chain ends in `off` (GOPROXY=off).
    #[error("module fetching is disabled (GOPROXY=off)")]
    Disabled,
    /// The wait for a fetch slot timed out.
    #[error("{0}")]
    Overloaded(String),
}

impl WalkError for SourceError {
    fn is_not_found(&self) -> bool {
        match self {
            SourceError::Upstream(e) => e.is_not_found(),
            SourceError::Vcs(e) => e.is_not_found() && !e.is_local_storage(),
            _ => false,
        }
    }

    fn disabled() -> Self {
        SourceError::Disabled
    }
}

/// A zip a [`Source`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZipWritten {
    /// Its size in bytes.
    pub size: u64,
    /// Its `h1:` hash when the source built the zip itself under Go's zip rules (as the git
    /// source does): such a zip is not read back to check and hash it again. `None` for a zip
    /// as another proxy sent it, which the proxy checks and hashes.
    pub h1: Option<String>,
}

/// What kind of origin a [`Source`] is: each kind has its own limit of fetches at once and its
/// own label in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// Another module proxy, over HTTP.
    Upstream,
    /// Version control (git processes on this machine).
    Git,
}

impl SourceKind {
    /// The `source` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Upstream => "upstream",
            SourceKind::Git => "git",
        }
    }
}

/// Answers the GOPROXY protocol's questions for one origin. Returned bytes are unvalidated; the
/// proxy validates before caching.
#[async_trait]
pub trait Source: Send + Sync {
    /// A short description for logs (`https://proxy.golang.org`, `direct`); never credentials.
    fn describe(&self) -> String;
    fn kind(&self) -> SourceKind {
        SourceKind::Upstream
    }
    async fn list(&self, module: &ModulePath) -> Result<Bytes, SourceError>;
    async fn latest(&self, module: &ModulePath) -> Result<Bytes, SourceError>;
    async fn info(&self, module: &ModulePath, query: &str) -> Result<Bytes, SourceError>;
    /// What to cache as `<version>.info` when a query that is not the version itself (a branch,
    /// a commit, `v2.0.0` for `v2.0.0+incompatible`) resolved to `version` from `body`: by
    /// default `body` as it came (an upstream's bytes are kept unchanged).
    fn info_for_version(&self, body: Bytes, _version: &str) -> Bytes {
        body
    }
    async fn go_mod(&self, module: &ModulePath, version: &str) -> Result<Bytes, SourceError>;
    /// Writes the zip to `dest`.
    async fn zip(
        &self,
        module: &ModulePath,
        version: &str,
        dest: &Path,
    ) -> Result<ZipWritten, SourceError>;
    /// The repository this source reads `module` from, written as a module path
    /// (`host/group/project`), when the source knows repositories; with `network` false only
    /// what needs no request. Access rules are checked against it as well as the module path.
    async fn repository(
        &self,
        _module: &ModulePath,
        _network: bool,
    ) -> Result<Option<String>, SourceError> {
        Ok(None)
    }
}

/// An upstream module proxy.
pub struct ProxySource {
    base: String,
    client: UpstreamClient,
}

impl ProxySource {
    pub fn new(base: String, client: UpstreamClient) -> Self {
        ProxySource { base, client }
    }

    /// An upstream proxy has agora's layout (both are the GOPROXY protocol's).
    fn version_path(
        module: &ModulePath,
        version: &str,
        kind: ArtifactKind,
    ) -> Result<String, FetchError> {
        layout::version_path(module, version, kind).map_err(|e| FetchError::NotFound {
            status: 404,
            message: e.to_string(),
        })
    }
}

#[async_trait]
impl Source for ProxySource {
    fn describe(&self) -> String {
        agora_secret::redact(&self.base)
    }

    async fn list(&self, module: &ModulePath) -> Result<Bytes, SourceError> {
        let rel = layout::list_path(module);
        Ok(self.client.get_bytes(&self.base, &rel, MAX_LIST).await?)
    }

    async fn latest(&self, module: &ModulePath) -> Result<Bytes, SourceError> {
        let rel = layout::latest_path(module);
        Ok(self.client.get_bytes(&self.base, &rel, MAX_INFO).await?)
    }

    async fn info(&self, module: &ModulePath, query: &str) -> Result<Bytes, SourceError> {
        let rel = Self::version_path(module, query, ArtifactKind::Info)?;
        Ok(self.client.get_bytes(&self.base, &rel, MAX_INFO).await?)
    }

    async fn go_mod(&self, module: &ModulePath, version: &str) -> Result<Bytes, SourceError> {
        let rel = Self::version_path(module, version, ArtifactKind::Mod)?;
        Ok(self.client.get_bytes(&self.base, &rel, MAX_MOD).await?)
    }

    async fn zip(
        &self,
        module: &ModulePath,
        version: &str,
        dest: &Path,
    ) -> Result<ZipWritten, SourceError> {
        let rel = Self::version_path(module, version, ArtifactKind::Zip)?;
        let size = self
            .client
            .get_to_file(&self.base, &rel, dest, MAX_ZIP)
            .await?;
        Ok(ZipWritten { size, h1: None })
    }
}
