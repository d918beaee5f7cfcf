//! Go modules served straight from git repositories, computed the way the `go` command computes
//! them (`cmd/go/internal/modfetch/coderepo.go` and `codehost/git.go`), without a Go toolchain.
//!
//! All remote operations go through the system `git`, so the machine's `.gitconfig`
//! (`url.<x>.insteadOf`), `~/.ssh/config`, SSH keys, `.netrc` and credential helpers apply exactly
//! as on a developer's machine; credentials from agora's configuration come on top, per host.
//!
//! # Layout
//!
//! - [`Vcs`]: the facade the proxy uses: module path → repository → [`CodeRepo`].
//! - [`resolve`]: module path → repository root, URL and subdirectory (configured rules, known
//!   hosts, `.git` suffix, `go-import` meta tags).
//! - [`credentials`]: per-host credentials handed to git and to the meta request.
//! - [`mirror`]: one persistent bare mirror per repository URL, created once (in the remote's
//!   object format, SHA-1 or SHA-256) and then updated with incremental `git fetch`es
//!   (single-flight per repository, skipped while fresh); reading refs, commits and files from a
//!   mirror.
//! - [`repo`]: [`CodeRepo`], a module inside a mirrored repository (repository root, module
//!   subdirectory, major-version suffix) and where its go.mod lives at a commit.
//! - [`versions`]: the module's version list (`@v/list`) from the repository's tags.
//! - [`query`]: resolving a query (tag, branch, commit, pseudo-version, `latest`) to a canonical
//!   version, commit hash, commit time and [`Origin`] (`@v/<query>.info`).
//! - [`zip`]: the module zip of a version (`@v/<version>.zip`) and `@latest`.
//! - [`error`]: the crate's single [`Error`] type, with failures classified for callers, and
//!   [`ForClient`], what a client of the proxy may read of one.
//! - `git` (private): running `git` with a safe environment; redacting credentials.

pub mod credentials;
pub mod error;
mod git;
pub mod mirror;
pub mod query;
pub mod repo;
pub mod resolve;
pub mod versions;
pub mod zip;

use std::path::PathBuf;
use std::time::Duration;

pub use agora_secret::redact;
pub use credentials::HostCredential;
pub use error::{Error, ForClient, GitFailure, ResolveFailure};
pub use mirror::{Commit, FirstFetch, Mirror, Mirrors, ObjectFormat, Refs};
pub use query::{Origin, RevInfo};
pub use repo::CodeRepo;
pub use resolve::{repository_path, RepoRoot, ResolvedBy, Resolver, ResolverOptions, RewriteRule};
pub use zip::ZipInfo;

/// Settings for [`Vcs`].
#[derive(Debug, Clone)]
pub struct VcsOptions {
    /// Where the bare mirrors live.
    pub mirror_dir: PathBuf,
    /// How long a fetched mirror counts as fresh.
    pub refresh_interval: Duration,
    /// How a new mirror gets its first objects.
    pub first_fetch: FirstFetch,
    /// Rules, insecure patterns, CAs, timeout and credentials; the credentials also go to git.
    pub resolver: ResolverOptions,
}

/// Modules from git: resolution, mirrors and credentials together.
#[derive(Debug)]
pub struct Vcs {
    resolver: Resolver,
    mirrors: Mirrors,
}

impl Vcs {
    pub fn new(opts: VcsOptions) -> Result<Self, Error> {
        let mirrors = Mirrors::new(opts.mirror_dir, opts.refresh_interval)
            .with_credentials(opts.resolver.credentials.clone())
            .with_first_fetch(opts.first_fetch);
        let resolver = Resolver::new(opts.resolver)?;
        Ok(Vcs { resolver, mirrors })
    }

    /// The repository of `module` (see [`resolve`]).
    pub async fn resolve(&self, module: &str) -> Result<RepoRoot, Error> {
        self.resolver.resolve(module).await
    }

    /// The repository `module` is served from, for access checks (see
    /// [`Resolver::repository`]).
    pub async fn repository(&self, module: &str, network: bool) -> Result<Option<String>, Error> {
        self.resolver.repository(module, network).await
    }

    /// Resolves `module` and opens (creating or fetching as needed) its repository's mirror.
    pub async fn code_repo(&self, module: &str) -> Result<CodeRepo, Error> {
        let root = self.resolve(module).await?;
        let mirror = self.mirrors.open(&root.url).await?;
        CodeRepo::new(mirror, module, &root.root, &root.subdir)
    }

    /// `git ls-remote` of `url` with its credentials: the number of refs (for `agora doctor`).
    pub async fn ls_remote(&self, url: &str) -> Result<usize, Error> {
        self.mirrors.ls_remote(url).await
    }

    /// Which credentials apply to `url`, in words (never the secret): "agora config: …",
    /// ".netrc entry for HOST (…)", "system ssh for HOST (…)", or
    /// "none (system git configuration / credential helpers only)".
    pub fn credential_source(&self, url: &str) -> String {
        credentials::source(self.mirrors.credentials(), url)
    }

    pub fn mirrors(&self) -> &Mirrors {
        &self.mirrors
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }
}
