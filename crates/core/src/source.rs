//! [`Source`]: where a module's artifacts come from on a cache miss.

use std::path::Path;

use agora_gomod::module::{escape_version, ModulePath};
use agora_upstream::{FetchError, UpstreamClient};
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

/// Answers the GOPROXY protocol's questions for one origin. Returned bytes are unvalidated; the
/// proxy validates before caching.
#[async_trait]
pub trait Source: Send + Sync {
    /// A short description for logs (`https://proxy.golang.org`, `direct`); never credentials.
    fn describe(&self) -> String;
    async fn list(&self, module: &ModulePath) -> Result<Bytes, FetchError>;
    async fn latest(&self, module: &ModulePath) -> Result<Bytes, FetchError>;
    async fn info(&self, module: &ModulePath, query: &str) -> Result<Bytes, FetchError>;
    /// What to cache as `<version>.info` when a query that is not the version itself (a branch,
    /// a commit, `v2.0.0` for `v2.0.0+incompatible`) resolved to `version` from `body`: by
    /// default `body` as it came (an upstream's bytes are kept unchanged).
    fn info_for_version(&self, body: Bytes, _version: &str) -> Bytes {
        body
    }
    async fn go_mod(&self, module: &ModulePath, version: &str) -> Result<Bytes, FetchError>;
    /// Writes the zip to `dest` and returns its size.
    async fn zip(&self, module: &ModulePath, version: &str, dest: &Path)
        -> Result<u64, FetchError>;
    /// The repository this source reads `module` from, written as a module path
    /// (`host/group/project`), when the source knows repositories; with `network` false only
    /// what needs no request. Access rules are checked against it as well as the module path.
    async fn repository(
        &self,
        _module: &ModulePath,
        _network: bool,
    ) -> Result<Option<String>, FetchError> {
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

    fn version_path(module: &ModulePath, version: &str, ext: &str) -> Result<String, FetchError> {
        let v = escape_version(version).map_err(|e| FetchError::NotFound {
            status: 404,
            message: e.to_string(),
        })?;
        Ok(format!("{}/@v/{v}.{ext}", module.escaped()))
    }
}

#[async_trait]
impl Source for ProxySource {
    fn describe(&self) -> String {
        agora_secret::redact(&self.base)
    }

    async fn list(&self, module: &ModulePath) -> Result<Bytes, FetchError> {
        let rel = format!("{}/@v/list", module.escaped());
        self.client.get_bytes(&self.base, &rel, MAX_LIST).await
    }

    async fn latest(&self, module: &ModulePath) -> Result<Bytes, FetchError> {
        let rel = format!("{}/@latest", module.escaped());
        self.client.get_bytes(&self.base, &rel, MAX_INFO).await
    }

    async fn info(&self, module: &ModulePath, query: &str) -> Result<Bytes, FetchError> {
        let rel = Self::version_path(module, query, "info")?;
        self.client.get_bytes(&self.base, &rel, MAX_INFO).await
    }

    async fn go_mod(&self, module: &ModulePath, version: &str) -> Result<Bytes, FetchError> {
        let rel = Self::version_path(module, version, "mod")?;
        self.client.get_bytes(&self.base, &rel, MAX_MOD).await
    }

    async fn zip(
        &self,
        module: &ModulePath,
        version: &str,
        dest: &Path,
    ) -> Result<u64, FetchError> {
        let rel = Self::version_path(module, version, "zip")?;
        self.client
            .get_to_file(&self.base, &rel, dest, MAX_ZIP)
            .await
    }
}
