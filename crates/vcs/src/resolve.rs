//! From a module path to a repository (go: `cmd/go/internal/vcs/vcs.go`
//! `RepoRootForImportPath`; PROTOCOL §5).
//!
//! The first of these that applies decides:
//!
//! 1. **Configured rules** ([`RewriteRule`]), in order. They exist because enterprise hosts often
//!    cannot be discovered: GitLab answers `?go-get=1` for subgroups wrongly to callers without
//!    credentials, and some hosts serve no meta tags at all.
//! 2. **Known hosts**: `github.com/<owner>/<repo>` and `bitbucket.org/<owner>/<repo>` map to
//!    `https://<root>` without any network request, as in the `go` command (which also refuses
//!    other path shapes on these hosts).
//! 3. **A VCS suffix**: in `host/path/repo.git/sub`, the root is `host/path/repo.git`. As in the
//!    `go` command, the URL is the root without `.git`, with the first scheme that answers
//!    `git ls-remote`: `https`, then `ssh` (with `git://` and `http` first/in between for
//!    GOINSECURE paths); when none answers, `https`, so that the real error comes from the
//!    fetch.
//! 4. **`go-import` meta tags** from `https://<module>?go-get=1` (see [`parse_meta_go_imports`]):
//!    the tag whose prefix is a path prefix of the module (mod entries preferred, as the `go`
//!    command's `PreferMod`). A prefix other than the module path must be confirmed by the same
//!    tag at `https://<prefix>?go-get=1`. Only `git` is supported: a `mod` tag (a proxy URL) is
//!    used only when a `git` tag with the same prefix exists alongside it (then the git one
//!    serves), otherwise it is an [`ResolveFailure::Unsupported`] error, as are other VCSs.
//!    Go 1.25's optional fourth field, a subdirectory, says that the module tree lives in that
//!    directory of the repository ([`RepoRoot::subdir`]; its tags then carry that prefix).
//!
//! The meta request carries basic-auth credentials when agora's configuration has them for the
//! host, else from `.netrc` like the `go` command. `http://` is tried (after `https://` fails)
//! only for GOINSECURE paths, and for those TLS certificates are not verified either, again as in
//! the `go` command. Redirects from `https` to `http` are refused otherwise
//! ([`ResolveFailure::InsecureRedirect`], in the go command's words).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agora_gomod::{check_import_path, check_path, match_prefix_patterns};

use crate::credentials::{self, HostCredential};
use crate::error::{Error, ResolveFailure};
use agora_secret::redact;

use crate::git::Git;
use crate::repo::has_path_prefix;

/// Largest `?go-get=1` response body read; the tags must be in the head anyway.
const MAX_META_BODY: usize = 1 << 20;
/// How long a `go-import` answer is reused before the page is asked again.
const META_FRESH: Duration = Duration::from_secs(60);
/// Most `go-import` answers remembered (each is a few hundred bytes).
const META_CACHE_ENTRIES: usize = 8192;

/// A configured mapping from module paths to repository URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteRule {
    /// Slash-separated elements; each `*` matches exactly one path element
    /// (`gitlab.corp.example/*/*`). The module path's first elements, as many as the pattern
    /// has, are the repository root.
    pub pattern: String,
    /// The repository URL: `{root}` is replaced by the matched root and `{path}` by the root
    /// without its first element (`ssh://git@gitlab.corp.example/{path}.git`).
    pub url: String,
}

impl RewriteRule {
    /// The root this rule gives `module`, if it matches.
    pub fn matches(&self, module: &str) -> Option<String> {
        let pattern: Vec<&str> = self.pattern.split('/').collect();
        let elems: Vec<&str> = module.split('/').collect();
        if elems.len() < pattern.len() {
            return None;
        }
        let all = pattern.iter().zip(&elems).all(|(p, e)| *p == "*" || p == e);
        all.then(|| elems[..pattern.len()].join("/"))
    }

    /// The URL for a matched root.
    pub fn url_for(&self, root: &str) -> String {
        let path = root.split_once('/').map_or("", |(_, p)| p);
        self.url.replace("{root}", root).replace("{path}", path)
    }

    fn check(&self) -> Result<(), Error> {
        let bad = |why: &str| Err(Error::Config(format!("rule {:?}: {why}", self.pattern)));
        if self.pattern.is_empty() || self.pattern.split('/').any(str::is_empty) {
            return bad("empty path element");
        }
        if self.pattern.split('/').next() == Some("*") {
            return bad("the first element (the host) must be literal");
        }
        if self.url.is_empty() {
            return bad("empty url");
        }
        Ok(())
    }
}

/// How a repository root was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedBy {
    /// A configured [`RewriteRule`].
    Rule { pattern: String },
    /// github.com or bitbucket.org.
    KnownHost,
    /// A `.git` path element.
    VcsSuffix,
    /// A `go-import` meta tag served at `meta_url`.
    GoImport { meta_url: String },
}

/// A module's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRoot {
    /// The import-path prefix the repository serves (`github.com/o/r`).
    pub root: String,
    /// The URL to hand git.
    pub url: String,
    /// The directory of the repository that holds the import path `root` (the `go-import`
    /// subdirectory field, Go 1.25), cleaned; empty for the repository's root.
    pub subdir: String,
    pub by: ResolvedBy,
}

impl RepoRoot {
    /// The repository as a path that access rules match (see [`repository_path`]).
    pub fn repository(&self) -> String {
        repository_path(&self.url)
    }
}

/// The repository a git URL names, written like a module path so that module-path patterns
/// can match it: `ssh://git@Host:2222/Team/Secret.git/` and `https://host/team/secret` are both
/// `host/team/secret`. Scheme, user, port, a trailing `/` and `.git` are dropped and the result is
/// in lowercase, because the hosts companies run (GitLab, GitHub, Gitea, Bitbucket) treat repository
/// paths case-insensitively and serve a repository with or without `.git`: every way of naming
/// one repository must meet the same access rule.
pub fn repository_path(url: &str) -> String {
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/').unwrap_or((rest, "")),
        // scp-like `[user@]host:path`; anything else is a local path.
        None => match url.split_once(':') {
            Some((host, path)) if !host.contains('/') => (host, path),
            _ => ("", url),
        },
    };
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(h, _)| h),
        None => host.split_once(':').map_or(host, |(h, _)| h),
    };
    let mut path = path.trim_matches('/');
    loop {
        let before = path;
        path = path
            .strip_suffix(".git")
            .unwrap_or(path)
            .trim_end_matches('/');
        if path == before {
            break;
        }
    }
    let mut out = String::with_capacity(host.len() + path.len() + 1);
    for part in [host, path] {
        if part.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('/');
        }
        // Empty elements (`a//b`) name the same repository on every host.
        let mut first = true;
        for elem in part.split('/').filter(|e| !e.is_empty()) {
            if !first {
                out.push('/');
            }
            out.push_str(elem);
            first = false;
        }
    }
    out.make_ascii_lowercase();
    out
}

/// What can be said about a module's repository without asking the network.
enum Offline {
    /// Configured rules and known hosts decide completely.
    Found(RepoRoot),
    /// A `.git` element: the root is known, the scheme must be probed.
    VcsSuffix { root: String },
    /// Only the `go-import` meta tags can tell.
    Meta,
}

/// A remembered `go-import` resolution.
#[derive(Debug)]
struct MetaEntry {
    at: Instant,
    root: RepoRoot,
}

/// Settings for [`Resolver`].
#[derive(Debug, Clone)]
pub struct ResolverOptions {
    pub rules: Vec<RewriteRule>,
    /// GOINSECURE-style patterns ([`match_prefix_patterns`]).
    pub insecure: Vec<String>,
    /// PEM CA certificates trusted in addition to the system store (which honours
    /// `SSL_CERT_FILE`/`SSL_CERT_DIR`).
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// Per-request timeout of the meta request and of each `git ls-remote` probe.
    pub timeout: Duration,
    pub credentials: Vec<HostCredential>,
}

impl Default for ResolverOptions {
    fn default() -> Self {
        ResolverOptions {
            rules: Vec::new(),
            insecure: Vec::new(),
            extra_ca_pem: Vec::new(),
            timeout: Duration::from_secs(30),
            credentials: Vec::new(),
        }
    }
}

/// Maps module paths to repositories.
#[derive(Debug)]
pub struct Resolver {
    opts: ResolverOptions,
    insecure: String,
    client: reqwest::Client,
    /// For GOINSECURE paths: no certificate verification, redirects to http allowed.
    insecure_client: reqwest::Client,
    /// Tests only: fetch meta pages from `<base>/<path>?go-get=1` instead.
    meta_base: Option<String>,
    /// Successful `go-import` resolutions by module path: fresh for [`META_FRESH`], and kept
    /// after that so that [`Resolver::repository`] can still name a repository when the page
    /// is unreachable.
    meta_cache: Mutex<HashMap<String, MetaEntry>>,
}

impl Resolver {
    pub fn new(opts: ResolverOptions) -> Result<Self, Error> {
        for rule in &opts.rules {
            rule.check()?;
        }
        let mut certs = Vec::new();
        for pem in &opts.extra_ca_pem {
            let mut parsed = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Config(format!("CA certificates: {e}")))?;
            certs.append(&mut parsed);
        }
        let secure_redirects = || {
            reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 10 {
                    attempt.error("too many redirects")
                } else if attempt.url().scheme() != "https" {
                    let redirect = InsecureRedirect {
                        from: redact(attempt.previous().last().map_or("", |u| u.as_str())),
                        to: redact(attempt.url().as_str()),
                    };
                    attempt.error(redirect)
                } else {
                    attempt.follow()
                }
            })
        };
        let build = |insecure: bool| {
            let builder = reqwest::Client::builder()
                .user_agent(concat!("agora/", env!("CARGO_PKG_VERSION")))
                .timeout(opts.timeout)
                .tls_certs_merge(certs.clone());
            let builder = if insecure {
                builder.tls_danger_accept_invalid_certs(true)
            } else {
                builder.redirect(secure_redirects())
            };
            builder
                .build()
                .map_err(|e| Error::Config(format!("HTTP client: {e}")))
        };
        let client = build(false)?;
        let insecure_client = build(true)?;
        Ok(Resolver {
            insecure: opts.insecure.join(","),
            opts,
            client,
            insecure_client,
            meta_base: None,
            meta_cache: Mutex::new(HashMap::new()),
        })
    }

    /// Fetches `?go-get=1` pages from `<base>/<path>` (e.g. `http://127.0.0.1:8080`) instead of
    /// `https://<path>`, for tests that cannot serve a real host name. Credentials are still
    /// chosen by the module path's host. Only with the `test-hooks` feature, which this crate's
    /// own tests turn on.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn with_meta_base_for_tests(mut self, base: impl Into<String>) -> Self {
        self.meta_base = Some(base.into());
        self
    }

    pub fn options(&self) -> &ResolverOptions {
        &self.opts
    }

    fn is_insecure(&self, module: &str) -> bool {
        !self.insecure.is_empty() && match_prefix_patterns(&self.insecure, module)
    }

    fn fail(module: &str, kind: ResolveFailure, reason: impl Into<String>) -> Error {
        Error::Resolve {
            module: module.to_owned(),
            kind,
            reason: redact(&reason.into()),
        }
    }

    /// Finds the repository of `module` (see the module documentation for the order).
    pub async fn resolve(&self, module: &str) -> Result<RepoRoot, Error> {
        match self.resolve_offline(module)? {
            Offline::Found(root) => Ok(root),
            Offline::VcsSuffix { root } => {
                let repo = root.strip_suffix(".git").unwrap_or(&root);
                let url = self.probe_schemes(module, repo).await;
                Ok(RepoRoot {
                    root,
                    url,
                    subdir: String::new(),
                    by: ResolvedBy::VcsSuffix,
                })
            }
            Offline::Meta => {
                if let Some(root) = self.cached_meta(module, META_FRESH) {
                    return Ok(root);
                }
                let root = self.resolve_meta(module).await?;
                self.remember_meta(module, &root);
                Ok(root)
            }
        }
    }

    /// The repository `module` is served from, as a [`repository_path`], for access checks
    /// that must hold whatever module path reaches a repository. Configured rules, known hosts
    /// and `.git` elements answer without the network (no scheme probe: every scheme names the
    /// same repository). Paths that need their `go-import` tags are answered from the last
    /// successful lookup when the page cannot be reached now, and give `None` when `network` is
    /// false and nothing is remembered.
    pub async fn repository(&self, module: &str, network: bool) -> Result<Option<String>, Error> {
        match self.resolve_offline(module)? {
            Offline::Found(root) => Ok(Some(root.repository())),
            Offline::VcsSuffix { root } => Ok(Some(repository_path(&format!("https://{root}")))),
            Offline::Meta => {
                if let Some(root) = self.cached_meta(module, META_FRESH) {
                    return Ok(Some(root.repository()));
                }
                if !network {
                    return Ok(self
                        .cached_meta(module, Duration::MAX)
                        .map(|r| r.repository()));
                }
                match self.resolve_meta(module).await {
                    Ok(root) => {
                        self.remember_meta(module, &root);
                        Ok(Some(root.repository()))
                    }
                    Err(e) => match self.cached_meta(module, Duration::MAX) {
                        Some(stale) => {
                            tracing::debug!(module, error = %e, "go-import lookup failed; using the last answer for the access check");
                            Ok(Some(stale.repository()))
                        }
                        None => Err(e),
                    },
                }
            }
        }
    }

    /// Steps 1 to 3 (no network), or that step 4 is needed.
    fn resolve_offline(&self, module: &str) -> Result<Offline, Error> {
        check_path(module)
            .map_err(|e| Self::fail(module, ResolveFailure::NotFound, e.to_string()))?;
        for rule in &self.opts.rules {
            if let Some(root) = rule.matches(module) {
                return Ok(Offline::Found(RepoRoot {
                    url: rule.url_for(&root),
                    root,
                    subdir: String::new(),
                    by: ResolvedBy::Rule {
                        pattern: rule.pattern.clone(),
                    },
                }));
            }
        }
        if let Some(found) = known_host(module) {
            let root =
                found.map_err(|reason| Self::fail(module, ResolveFailure::NotFound, reason))?;
            return Ok(Offline::Found(RepoRoot {
                url: format!("https://{root}"),
                root,
                subdir: String::new(),
                by: ResolvedBy::KnownHost,
            }));
        }
        if let Some(root) = vcs_suffix_root(module) {
            return Ok(Offline::VcsSuffix { root });
        }
        Ok(Offline::Meta)
    }

    /// A remembered `go-import` resolution of `module` not older than `max_age`.
    fn cached_meta(&self, module: &str, max_age: Duration) -> Option<RepoRoot> {
        let cache = self.meta_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(module)
            .filter(|e| e.at.elapsed() <= max_age)
            .map(|e| e.root.clone())
    }

    fn remember_meta(&self, module: &str, root: &RepoRoot) {
        let mut cache = self.meta_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= META_CACHE_ENTRIES && !cache.contains_key(module) {
            cache.retain(|_, e| e.at.elapsed() <= META_FRESH);
            if cache.len() >= META_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(
            module.to_owned(),
            MetaEntry {
                at: Instant::now(),
                root: root.clone(),
            },
        );
    }

    /// The first scheme under which `git ls-remote` answers for `repo` (go: the `Ping` loop).
    async fn probe_schemes(&self, module: &str, repo: &str) -> String {
        let schemes: &[&str] = if self.is_insecure(module) {
            &["git", "https", "http", "ssh"]
        } else {
            &["https", "ssh"]
        };
        for scheme in schemes {
            let url = format!("{scheme}://{repo}");
            let env = credentials::git_env(&self.opts.credentials, &url);
            let git = Git::new(None, &["ls-remote", "--", &url, "HEAD"]).envs(&env);
            if let Ok(Ok(_)) = tokio::time::timeout(self.opts.timeout, git.run()).await {
                return url;
            }
        }
        format!("https://{repo}")
    }

    /// Step 4: the `go-import` meta tags.
    async fn resolve_meta(&self, module: &str) -> Result<RepoRoot, Error> {
        let (imports, meta_url) = self.fetch_meta(module, module).await?;
        let chosen = match_go_import(&imports, module)
            .map_err(|(kind, reason)| Self::fail(module, kind, format!("{meta_url}: {reason}")))?;
        if chosen.prefix != module {
            // The go command's check that the prefix really claims this tag, so that a page at
            // a deeper path cannot redirect a whole namespace.
            let (imports2, meta_url2) = self.fetch_meta(module, &chosen.prefix).await?;
            let again = match_go_import(&imports2, &chosen.prefix).map_err(|(kind, reason)| {
                Self::fail(module, kind, format!("{meta_url2}: {reason}"))
            })?;
            if again != chosen {
                return Err(Self::fail(
                    module,
                    ResolveFailure::BadMeta,
                    format!(
                        "{meta_url} and {meta_url2} disagree: {:?} vs {:?}",
                        chosen.content(),
                        again.content()
                    ),
                ));
            }
        }
        // The go command checks the subdirectory before the URL, with these words.
        let subdir = clean_subdir(chosen.subdir.as_deref().unwrap_or("")).map_err(|why| {
            Self::fail(
                module,
                ResolveFailure::BadMeta,
                format!(
                    "{meta_url}: invalid subdirectory {:?}: {why}",
                    chosen.subdir.as_deref().unwrap_or("")
                ),
            )
        })?;
        check_import_path(&chosen.prefix).map_err(|e| {
            Self::fail(
                module,
                ResolveFailure::BadMeta,
                format!("{meta_url}: invalid import path {:?}: {e}", chosen.prefix),
            )
        })?;
        let url = &chosen.repo_root;
        let scheme = url.split_once("://").map(|(s, _)| s);
        let allowed = match scheme {
            Some("https" | "ssh" | "git+ssh") => true,
            Some("http" | "git") => self.is_insecure(module),
            _ => false,
        };
        if !allowed {
            return Err(Self::fail(
                module,
                ResolveFailure::BadMeta,
                format!("{meta_url}: repository URL {url:?} has no scheme or an insecure one"),
            ));
        }
        Ok(RepoRoot {
            root: chosen.prefix.clone(),
            url: url.clone(),
            subdir,
            by: ResolvedBy::GoImport { meta_url },
        })
    }

    /// Fetches and parses `https://<path>?go-get=1` (or `http://` for GOINSECURE paths when
    /// https fails). Returns the tags and the URL they came from.
    async fn fetch_meta(
        &self,
        module: &str,
        path: &str,
    ) -> Result<(Vec<MetaImport>, String), Error> {
        let insecure = self.is_insecure(module);
        let host = path.split('/').next().unwrap_or("");
        if let Some(base) = &self.meta_base {
            let url = format!("{base}/{path}?go-get=1");
            let imports = self.get_meta(module, host, &url, true).await?;
            return Ok((imports, url));
        }
        let https = format!("https://{path}?go-get=1");
        match self.get_meta(module, host, &https, insecure).await {
            Ok(imports) => Ok((imports, https)),
            Err(e) if insecure && e.resolve_failure() != Some(ResolveFailure::AuthFailed) => {
                let http = format!("http://{path}?go-get=1");
                match self.get_meta(module, host, &http, true).await {
                    Ok(imports) => Ok((imports, http)),
                    // The https error tends to be the more telling one.
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// GETs one meta page; `host` picks the credentials.
    async fn get_meta(
        &self,
        module: &str,
        host: &str,
        url: &str,
        insecure: bool,
    ) -> Result<Vec<MetaImport>, Error> {
        let client = if insecure {
            &self.insecure_client
        } else {
            &self.client
        };
        let mut req = client.get(url);
        let scheme = url.split_once("://").map_or("https", |(s, _)| s);
        if let Some((user, password)) =
            credentials::find(&self.opts.credentials, scheme, host).and_then(HostCredential::basic)
        {
            req = req.basic_auth(user, Some(password));
        } else if let Some((user, password, _)) = credentials::netrc_lookup(host) {
            req = req.basic_auth(user, Some(password));
        }
        let fail = |kind, reason: String| Self::fail(module, kind, format!("{url}: {reason}"));
        let mut resp = req.send().await.map_err(|e| {
            let (kind, reason) = classify_http(&e);
            fail(kind, reason)
        })?;
        let status = resp.status();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() >= MAX_META_BODY {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let (kind, reason) = classify_http(&e);
                    return Err(fail(kind, reason));
                }
            }
        }
        // Like the go command: tags in an error page still count; the status matters only
        // when there are none.
        let imports = parse_meta_go_imports(&String::from_utf8_lossy(&body));
        if !imports.is_empty() {
            return Ok(imports);
        }
        let kind = match status.as_u16() {
            200..=299 => {
                return Err(fail(
                    ResolveFailure::NotFound,
                    "no go-import meta tags".to_owned(),
                ))
            }
            401 | 403 => ResolveFailure::AuthFailed,
            404 | 410 => ResolveFailure::NotFound,
            _ => ResolveFailure::Unreachable,
        };
        Err(fail(kind, format!("HTTP {status}")))
    }
}

/// A redirect from https to another scheme, refused (go: `web.checkRedirect`): the meta server
/// is misconfigured, and following it would let anyone on the path answer for the module.
#[derive(Debug)]
struct InsecureRedirect {
    from: String,
    to: String,
}

/// The go command's words.
impl std::fmt::Display for InsecureRedirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "redirected from secure URL {} to insecure URL {}",
            self.from, self.to
        )
    }
}

impl std::error::Error for InsecureRedirect {}

/// Classifies a transport error. reqwest's messages carry the URL we built (never credentials,
/// which travel in a header), and the TLS cause sits deep in the source chain.
fn classify_http(e: &reqwest::Error) -> (ResolveFailure, String) {
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // Our own refusal says all there is to say; reqwest's "error following redirect" in
        // front of it would read like a network failure.
        if let Some(redirect) = s.downcast_ref::<InsecureRedirect>() {
            return (ResolveFailure::InsecureRedirect, redirect.to_string());
        }
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    let kind = if lower.contains("certificate") || lower.contains("unknownissuer") {
        ResolveFailure::UnknownCa
    } else {
        ResolveFailure::Unreachable
    };
    (kind, chain)
}

/// `Some(Ok(root))` for a well-formed github.com or bitbucket.org path, `Some(Err(reason))` for
/// a malformed one, `None` for other hosts (go: `vcsPaths`).
fn known_host(module: &str) -> Option<Result<String, String>> {
    let host = ["github.com", "bitbucket.org"]
        .into_iter()
        .find(|h| module.strip_prefix(h).is_some_and(|r| r.starts_with('/')))?;
    let elems: Vec<&str> = module.split('/').collect();
    let word = |e: &&str| {
        !e.is_empty()
            && e.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    };
    if elems.len() < 3 || !elems[1..].iter().all(word) {
        return Some(Err(format!("invalid {host} import path {module:?}")));
    }
    if host == "github.com" && elems[2].ends_with(".git") {
        return Some(Err(format!(
            "invalid version control suffix in {host}/ path {module:?}"
        )));
    }
    Some(Ok(elems[..3].join("/")))
}

/// The root of a path with a `.git` element (go: the generic `vcsPaths` entry):
/// `host.tld[:port]/path/repo.git/sub` → `host.tld[:port]/path/repo.git`.
fn vcs_suffix_root(module: &str) -> Option<String> {
    let elems: Vec<&str> = module.split('/').collect();
    let host = elems[0];
    let (name, port) = host.split_once(':').unwrap_or((host, ""));
    let host_ok = name.contains('.')
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && port.bytes().all(|b| b.is_ascii_digit());
    let elem_ok = |e: &str| {
        let e = e.strip_prefix('~').unwrap_or(e);
        !e.is_empty()
            && e.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    };
    if !host_ok || elems.len() < 2 || !elems[1..].iter().all(|e| elem_ok(e)) {
        return None;
    }
    let i = (1..elems.len()).find(|&i| {
        let e = elems[i].strip_prefix('~').unwrap_or(elems[i]);
        e.len() > 4 && e.ends_with(".git")
    })?;
    Some(elems[..=i].join("/"))
}

/// A `go-import` subdirectory as the module's directory in the repository: the go command refuses
/// a leading `/` or `-` (`validateRepoSubDir`) and then joins it to the module's directory with
/// `filepath.Join`, which cleans it (`./go/` is `go`). agora also refuses what cleans to `.` or
/// climbs out with `..`: no tag or file of the repository could be named with that prefix.
fn clean_subdir(subdir: &str) -> Result<String, &'static str> {
    if subdir.is_empty() {
        return Ok(String::new());
    }
    if subdir.starts_with('/') {
        return Err("leading slash");
    }
    if subdir.starts_with('-') {
        return Err("leading hyphen");
    }
    let mut parts: Vec<&str> = Vec::new();
    for elem in subdir.split('/') {
        match elem {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("outside the repository");
                }
            }
            e => parts.push(e),
        }
    }
    if parts.is_empty() {
        return Err("names the repository root");
    }
    Ok(parts.join("/"))
}

/// One `<meta name="go-import" content="prefix vcs url [subdir]">` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaImport {
    pub prefix: String,
    pub vcs: String,
    pub repo_root: String,
    /// Go 1.25's optional fourth field.
    pub subdir: Option<String>,
}

impl MetaImport {
    fn content(&self) -> String {
        let mut s = format!("{} {} {}", self.prefix, self.vcs, self.repo_root);
        if let Some(d) = &self.subdir {
            s.push(' ');
            s.push_str(d);
        }
        s
    }
}

/// Picks the tag for `module` (go: `matchGoImport` after `parseMetaGoImports` with
/// `PreferMod`), then applies agora's limit (git only).
fn match_go_import(
    imports: &[MetaImport],
    module: &str,
) -> Result<MetaImport, (ResolveFailure, String)> {
    // PreferMod ordering: mod entries first; a non-mod entry with the same prefix as a mod one
    // is superseded. We remember those git entries: they are what we can serve.
    let mods: Vec<&MetaImport> = imports.iter().filter(|m| m.vcs == "mod").collect();
    let mut list: Vec<&MetaImport> = mods.clone();
    list.extend(
        imports
            .iter()
            .filter(|m| m.vcs != "mod" && !mods.iter().any(|x| x.prefix == m.prefix)),
    );
    let mut found: Option<&MetaImport> = None;
    let mut mismatches = Vec::new();
    for m in list {
        if !has_path_prefix(module, &m.prefix) {
            mismatches.push(m.prefix.clone());
            continue;
        }
        if let Some(f) = found {
            if f.vcs == "mod" && m.vcs != "mod" {
                break;
            }
            return Err((
                ResolveFailure::BadMeta,
                format!("multiple meta tags match import path {module:?}"),
            ));
        }
        found = Some(m);
    }
    let Some(found) = found else {
        return Err((
            ResolveFailure::NotFound,
            if mismatches.is_empty() {
                "no go-import meta tags".to_owned()
            } else {
                format!(
                    "no go-import meta tag matches {module:?} (prefixes: {})",
                    mismatches.join(", ")
                )
            },
        ));
    };
    let chosen = if found.vcs == "mod" {
        match imports
            .iter()
            .find(|m| m.vcs == "git" && m.prefix == found.prefix)
        {
            Some(git) => git,
            None => {
                return Err((
                    ResolveFailure::Unsupported,
                    format!(
                        "{} is served by a module proxy at {} (go-import \"mod\"); agora fetches only from git",
                        found.prefix, found.repo_root
                    ),
                ))
            }
        }
    } else {
        found
    };
    if chosen.vcs != "git" {
        return Err((
            ResolveFailure::Unsupported,
            format!(
                "{} uses version control system {:?}; agora supports only git",
                chosen.prefix, chosen.vcs
            ),
        ));
    }
    Ok(chosen.clone())
}

/// The `go-import` tags of an HTML page (go: `parseMetaGoImports`): `<meta>` tags with
/// `name="go-import"` (case-insensitive) and 3 (or, since Go 1.25, 4) content fields. Parsing
/// stops at `<body>` or `</head>`; comments and the contents of `<script>`/`<style>` are skipped.
pub fn parse_meta_go_imports(html: &str) -> Vec<MetaImport> {
    let mut out = Vec::new();
    let b = html.as_bytes();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        i += off;
        let rest = &html[i..];
        if rest.starts_with("<!--") {
            i += rest.find("-->").map_or(rest.len(), |e| e + 3);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            i += rest.find('>').map_or(rest.len(), |e| e + 1);
            continue;
        }
        let closing = rest.starts_with("</");
        let name_start = i + if closing { 2 } else { 1 };
        let mut j = name_start;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'-' || b[j] == b':') {
            j += 1;
        }
        let name = html[name_start..j].to_ascii_lowercase();
        if name.is_empty() {
            i += 1;
            continue;
        }
        if closing {
            if name == "head" {
                break;
            }
            i = j + html[j..].find('>').map_or(html.len() - j, |e| e + 1);
            continue;
        }
        if name == "body" {
            break;
        }
        let (attrs, end) = parse_attrs(html, j);
        i = end;
        if name == "meta" {
            let get = |key: &str| {
                attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v.as_str())
            };
            if get("name").is_some_and(|n| n.eq_ignore_ascii_case("go-import")) {
                let f: Vec<&str> = get("content").unwrap_or("").split_whitespace().collect();
                if f.len() == 3 || f.len() == 4 {
                    out.push(MetaImport {
                        prefix: f[0].to_owned(),
                        vcs: f[1].to_owned(),
                        repo_root: f[2].to_owned(),
                        subdir: f.get(3).map(|s| (*s).to_owned()),
                    });
                }
            }
        } else if name == "script" || name == "style" {
            let close = format!("</{name}");
            let lower = html[i..].to_ascii_lowercase();
            i += lower.find(&close).unwrap_or(lower.len());
        }
    }
    out
}

/// Attributes of a start tag from byte `i` (after the name) to its `>`; returns them and the
/// index after the tag.
fn parse_attrs(html: &str, mut i: usize) -> (Vec<(String, String)>, usize) {
    let b = html.as_bytes();
    let mut attrs = Vec::new();
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() {
            return (attrs, i);
        }
        if b[i] == b'>' {
            return (attrs, i + 1);
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let key = html[start..i].to_owned();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vstart = i + 1;
                let vend = b[vstart..]
                    .iter()
                    .position(|&c| c == q)
                    .map_or(b.len(), |p| vstart + p);
                value = decode_entities(&html[vstart..vend]);
                i = (vend + 1).min(b.len());
            } else {
                let vstart = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                    i += 1;
                }
                value = decode_entities(&html[vstart..i]);
            }
        }
        if key.is_empty() {
            i += 1;
            continue;
        }
        attrs.push((key, value));
    }
}

/// Decodes the character references that matter in attribute values.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, url: &str) -> RewriteRule {
        RewriteRule {
            pattern: pattern.into(),
            url: url.into(),
        }
    }

    #[test]
    fn every_name_of_a_repository_is_one_repository_path() {
        for url in [
            "https://git.corp.test/team/secret",
            "https://git.corp.test/team/secret.git",
            "https://git.corp.test/team/secret.git/",
            "https://git.corp.test//team//secret.git.git",
            "https://user:pw@git.corp.test:8443/team/secret.git",
            "ssh://git@Git.Corp.Test:2222/Team/Secret.git",
            "git@git.corp.test:team/secret.git",
            "git.corp.test:team/Secret",
            "git+ssh://git.corp.test/team/secret",
        ] {
            assert_eq!(repository_path(url), "git.corp.test/team/secret", "{url}");
        }
        assert_eq!(
            repository_path("https://[::1]:8443/a/b.git"),
            "::1/a/b",
            "IPv6 hosts lose their brackets and port"
        );
        assert_eq!(repository_path("/srv/git/a.git"), "srv/git/a");
        assert_eq!(repository_path("file:///srv/git/a"), "srv/git/a");
    }

    #[tokio::test]
    async fn repository_needs_no_network_for_rules_known_hosts_and_git_suffixes() {
        let resolver = Resolver::new(ResolverOptions {
            rules: vec![rule(
                "alias.corp.test/*",
                "ssh://git@git.corp.test/team/{path}.git",
            )],
            ..Default::default()
        })
        .unwrap();
        for (module, want) in [
            ("alias.corp.test/secret/sub", "git.corp.test/team/secret"),
            ("git.corp.test/team/secret.git", "git.corp.test/team/secret"),
            (
                "git.corp.test/Team/Secret.git/v2",
                "git.corp.test/team/secret",
            ),
            ("github.com/Corp/Secret/sub", "github.com/corp/secret"),
        ] {
            assert_eq!(
                resolver.repository(module, false).await.unwrap().as_deref(),
                Some(want),
                "{module}"
            );
        }
        // Meta tags are needed, the network is not allowed and nothing is remembered.
        assert_eq!(
            resolver.repository("vanity.test/x", false).await.unwrap(),
            None
        );
    }

    #[test]
    fn rules_match_and_template() {
        let r = rule(
            "gitlab.corp.example/*/*",
            "ssh://git@gitlab.corp.example/{path}.git",
        );
        assert_eq!(
            r.matches("gitlab.corp.example/g/p/sub/v2").as_deref(),
            Some("gitlab.corp.example/g/p")
        );
        assert_eq!(r.matches("gitlab.corp.example/g"), None);
        assert_eq!(r.matches("other.example/g/p"), None);
        assert_eq!(
            r.url_for("gitlab.corp.example/g/p"),
            "ssh://git@gitlab.corp.example/g/p.git"
        );
        let explicit = rule("gitlab.corp.example/group/sub/project", "https://x/{root}");
        assert_eq!(
            explicit
                .matches("gitlab.corp.example/group/sub/project/v3")
                .as_deref(),
            Some("gitlab.corp.example/group/sub/project")
        );
        assert_eq!(
            explicit.matches("gitlab.corp.example/group/sub/other"),
            None
        );
        assert_eq!(
            explicit.url_for("gitlab.corp.example/group/sub/project"),
            "https://x/gitlab.corp.example/group/sub/project"
        );
        assert!(rule("*/x", "u").check().is_err());
        assert!(rule("a//b", "u").check().is_err());
    }

    #[tokio::test]
    async fn rules_come_first_then_known_hosts() {
        let resolver = Resolver::new(ResolverOptions {
            rules: vec![
                rule(
                    "gitlab.corp.example/*/*",
                    "https://gitlab.corp.example/{path}.git",
                ),
                rule("github.com/special/*", "file:///srv/{path}"),
            ],
            ..Default::default()
        })
        .unwrap();
        let r = resolver
            .resolve("gitlab.corp.example/g/p/v2")
            .await
            .unwrap();
        assert_eq!(r.root, "gitlab.corp.example/g/p");
        assert_eq!(r.url, "https://gitlab.corp.example/g/p.git");
        assert!(matches!(r.by, ResolvedBy::Rule { .. }));
        let r = resolver.resolve("github.com/special/x/y").await.unwrap();
        assert_eq!(r.url, "file:///srv/special/x");
        let r = resolver.resolve("github.com/o/r/sub/v2").await.unwrap();
        assert_eq!(
            r,
            RepoRoot {
                root: "github.com/o/r".into(),
                url: "https://github.com/o/r".into(),
                subdir: String::new(),
                by: ResolvedBy::KnownHost
            }
        );
        let r = resolver.resolve("bitbucket.org/o/r").await.unwrap();
        assert_eq!(r.url, "https://bitbucket.org/o/r");
        let e = resolver.resolve("github.com/o").await.unwrap_err();
        assert_eq!(e.resolve_failure(), Some(ResolveFailure::NotFound), "{e}");
        let e = resolver.resolve("github.com/o/r.git").await.unwrap_err();
        assert!(e.to_string().contains("version control suffix"), "{e}");
    }

    #[test]
    fn vcs_suffix() {
        assert_eq!(
            vcs_suffix_root("git.example.com/a/repo.git/sub/v2").as_deref(),
            Some("git.example.com/a/repo.git")
        );
        assert_eq!(
            vcs_suffix_root("git.example.com:8443/~u/r.git").as_deref(),
            Some("git.example.com:8443/~u/r.git")
        );
        assert_eq!(vcs_suffix_root("git.example.com/a/.git"), None);
        assert_eq!(vcs_suffix_root("git.example.com/a/repo"), None);
        assert_eq!(vcs_suffix_root("nodot/a/repo.git"), None);
    }

    #[test]
    fn meta_tags_in_head_only() {
        let html = r#"<!DOCTYPE html>
<html><head>
<!-- <meta name="go-import" content="example.com/commented git https://x/c"> -->
<meta charset="utf-8">
<META NAME="Go-Import" CONTENT="example.com/a git https://git.example.com/a.git">
<meta name=go-import content='example.com/b  git   https://git.example.com/b?x=1&amp;y=2'/>
<meta name="go-import" content="example.com/bad git">
<meta name="go-source" content="example.com/a _ _ _">
<script>if (a < b) { document.write('<meta name="go-import" content="example.com/s git https://s">') }</script>
<meta name="go-import" content="example.com/d git https://git.example.com/r sub/dir">
</head>
<body>
<meta name="go-import" content="example.com/late git https://late">
</body></html>"#;
        let got = parse_meta_go_imports(html);
        let contents: Vec<String> = got.iter().map(MetaImport::content).collect();
        assert_eq!(
            contents,
            [
                "example.com/a git https://git.example.com/a.git",
                "example.com/b git https://git.example.com/b?x=1&y=2",
                "example.com/d git https://git.example.com/r sub/dir",
            ]
        );
        // Parsing stops at <body> even without </head>.
        let no_head_end =
            r#"<html><body><meta name="go-import" content="a.example/x git https://a"></body>"#;
        assert!(parse_meta_go_imports(no_head_end).is_empty());
        assert_eq!(decode_entities("a&#47;b&#x2F;c&bogus;"), "a/b/c&bogus;");
    }

    #[test]
    fn matching_tags() {
        let m = |prefix: &str, vcs: &str, url: &str| MetaImport {
            prefix: prefix.into(),
            vcs: vcs.into(),
            repo_root: url.into(),
            subdir: None,
        };
        let tags = [
            m("example.com/other", "git", "https://o"),
            m("example.com/a", "git", "https://a"),
        ];
        assert_eq!(
            match_go_import(&tags, "example.com/a/b").unwrap().repo_root,
            "https://a"
        );
        assert_eq!(
            match_go_import(&tags, "example.com/ab").unwrap_err().0,
            ResolveFailure::NotFound
        );
        let twice = [
            m("example.com/a", "git", "https://a"),
            m("example.com", "git", "https://b"),
        ];
        assert_eq!(
            match_go_import(&twice, "example.com/a").unwrap_err().0,
            ResolveFailure::BadMeta
        );
        let proxy_only = [m("example.com/a", "mod", "https://proxy")];
        let (kind, msg) = match_go_import(&proxy_only, "example.com/a").unwrap_err();
        assert_eq!(kind, ResolveFailure::Unsupported);
        assert!(msg.contains("module proxy"), "{msg}");
        let both = [
            m("example.com/a", "git", "https://a"),
            m("example.com/a", "mod", "https://proxy"),
        ];
        assert_eq!(
            match_go_import(&both, "example.com/a").unwrap().repo_root,
            "https://a"
        );
        let hg = [m("example.com/a", "hg", "https://a")];
        assert_eq!(
            match_go_import(&hg, "example.com/a").unwrap_err().0,
            ResolveFailure::Unsupported
        );
        let mut sub = m("example.com/a", "git", "https://a");
        sub.subdir = Some("go".into());
        assert_eq!(
            match_go_import(&[sub], "example.com/a")
                .unwrap()
                .subdir
                .as_deref(),
            Some("go")
        );
    }

    #[test]
    fn subdirectories_are_checked_like_the_go_command_and_cleaned() {
        assert_eq!(clean_subdir("").as_deref(), Ok(""));
        assert_eq!(clean_subdir("go").as_deref(), Ok("go"));
        assert_eq!(clean_subdir("./src//go/").as_deref(), Ok("src/go"));
        assert_eq!(clean_subdir("a/../b").as_deref(), Ok("b"));
        // Not special to the go command: a directory named `""`.
        assert_eq!(clean_subdir("\"\"").as_deref(), Ok("\"\""));
        assert_eq!(clean_subdir("/go"), Err("leading slash"));
        assert_eq!(clean_subdir("-go"), Err("leading hyphen"));
        assert!(clean_subdir(".").is_err());
        assert!(clean_subdir("a/../..").is_err());
    }
}
