//! Configuration: embedded defaults < the go command's variables < TOML file < `AGORA_*` variables
//! < command-line flags.
//!
//! Layers are merged as TOML values and deserialized once into [`Config`], which rejects unknown
//! keys by name. `AGORA_*` variables are derived from the key paths (`upstream.proxy` is
//! `AGORA_UPSTREAM_PROXY`), so every key can be set from the environment and an unknown variable is
//! an error rather than silently ignored.

use agora_access::OnDeny;
use agora_core::FailMode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use toml::Value;

/// The effective configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Plain-HTTP address to listen on (`0.0.0.0:3000`), or a Unix socket for a reverse proxy on
    /// this machine (`unix:/run/agora/agora.sock`); empty when only HTTPS is served.
    #[serde(with = "unset_if_empty")]
    pub listen: Option<String>,
    /// Local data directory (created with its parents on start).
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub upstream: UpstreamConfig,
    pub cache: CacheConfig,
    pub routing: RoutingConfig,
    pub sumdb: SumdbConfig,
    /// PEM file with extra CA certificates to trust, added to the system store, for upstream
    /// proxies, go-get lookups and git over HTTPS (an internal GitLab with a private CA).
    #[serde(with = "unset_if_empty")]
    pub ca_file: Option<PathBuf>,
    pub git: GitConfig,
    pub limits: LimitsConfig,
    pub server: ServerConfig,
    /// Download modes by module-path pattern (first match wins; `sync` otherwise). File-only.
    pub download: Vec<DownloadRule>,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub access: AccessConfig,
    pub filter: FilterConfig,
    pub validation: ValidationConfig,
    pub audit: AuditConfig,
    pub redis: RedisConfig,
    pub checksum_db: ChecksumDbConfig,
    /// Where artifacts live: the local data directory (default), S3-compatible storage, GCS or
    /// Azure. Git mirrors and scratch files stay on local disk under `data_dir` in every case.
    pub storage: agora_storage::StorageConfig,
    /// The metadata index: SQLite under the data directory unless `url` names a PostgreSQL
    /// database shared by the replicas.
    pub index: agora_index::IndexConfig,
    pub retention: RetentionConfig,
    pub tracing: TracingConfig,
}

/// `[retention]`: what may be deleted from the cache, and how often a server collects. Nothing
/// by default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Keep the store within this size (`"200GiB"`), by evicting the least recently used zips;
    /// empty: no budget.
    #[serde(with = "opt_size")]
    pub max_size: Option<bytesize::ByteSize>,
    /// Evict zips not served for this long (`"90d"`); empty: never for age.
    #[serde(with = "opt_duration")]
    pub unused_for: Option<Duration>,
    /// Module patterns kept forever.
    pub keep: Vec<String>,
    /// Keep the private modules (`routing` patterns) forever too: their tags may be gone from git.
    pub keep_private: bool,
    /// Also evict `.info` and `.mod` of versions unused for `unused_for`.
    pub metadata: bool,
    /// Never delete what was used (stored or served) this recently (default 15m): nothing in
    /// use disappears under a client.
    #[serde(with = "humantime_serde")]
    pub keep_recent: Duration,
    /// How often a server collects in the background (one replica at a time); empty: only
    /// `agora gc --apply` collects.
    #[serde(with = "opt_duration")]
    pub interval: Option<Duration>,
}

/// `""` ⇔ `None`, else a duration (`"90d"`): optional durations that keep an `AGORA_*` name.
mod opt_duration {
    use std::time::Duration;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        let text = v.map(|d| humantime::format_duration(d).to_string());
        s.serialize_str(text.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        humantime::parse_duration(s)
            .map(Some)
            .map_err(|e| D::Error::custom(format!("{s:?}: {e}")))
    }
}

/// `""` ⇔ `None`, else a size (`"200GiB"`, `"500 MB"`, bytes).
mod opt_size {
    use bytesize::ByteSize;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<ByteSize>, s: S) -> Result<S::Ok, S::Error> {
        let text = v.map(|b| b.display().iec().to_string());
        s.serialize_str(text.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
        let s = String::deserialize(d)?;
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<ByteSize>()
            .map(Some)
            .map_err(|e| D::Error::custom(format!("{s:?}: {e}")))
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_size: None,
            unused_for: None,
            keep: Vec::new(),
            keep_private: true,
            metadata: false,
            keep_recent: agora_core::HOT,
            interval: None,
        }
    }
}

impl RetentionConfig {
    /// The policy to plan with; `private` are the private module patterns (kept by default).
    pub fn policy(&self, private: &[String]) -> agora_index::RetentionPolicy {
        let mut keep = self.keep.clone();
        if self.keep_private {
            keep.extend(private.iter().cloned());
        }
        agora_index::RetentionPolicy {
            max_size: self.max_size.map(|b| b.as_u64()),
            unused_for: self.unused_for,
            keep,
            metadata: self.metadata,
        }
    }

    /// Whether any limit is set (without one, a collection deletes nothing).
    pub fn is_set(&self) -> bool {
        self.max_size.is_some() || self.unused_for.is_some()
    }
}

/// `[checksum_db]`: a checksum database of agora's own (`agora sumdb init` makes the key).
/// Clients then set `GOSUMDB` to its verifier key and drop `GONOSUMDB`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksumDbConfig {
    /// The database's name (`sum.corp.example`); empty: none.
    #[serde(with = "unset_if_empty")]
    pub name: Option<String>,
    /// The file holding the signer key (`PRIVATE+KEY+...`, mode 0600).
    #[serde(with = "unset_if_empty")]
    pub key_file: Option<PathBuf>,
    /// Or the environment variable holding it.
    #[serde(with = "unset_if_empty")]
    pub key_env: Option<String>,
}

impl ChecksumDbConfig {
    /// The signer key, read from its file or variable; `None` when no database is configured.
    pub fn key(&self) -> Result<Option<agora_sumdb::log::LogKey>> {
        let Some(name) = &self.name else {
            return Ok(None);
        };
        let text = match (&self.key_file, &self.key_env) {
            (Some(f), _) => std::fs::read_to_string(f)
                .with_context(|| format!("checksum_db.key_file {}", f.display()))?,
            (None, Some(var)) => std::env::var(var)
                .with_context(|| format!("checksum_db.key_env: {var} is not set"))?,
            (None, None) => {
                bail!("checksum_db.name is set: set checksum_db.key_file or key_env too")
            }
        };
        let key = agora_sumdb::log::LogKey::parse(&text)
            .map_err(|e| anyhow::anyhow!("checksum_db key: {e}"))?;
        if key.name() != name {
            bail!(
                "checksum_db.name is {name:?} but the key is for {:?}",
                key.name()
            );
        }
        Ok(Some(key))
    }
}

/// A Redis shared by several replicas: one lock per fetch, so N replicas fetch a cold artifact
/// once. Without it (or while it is down) each replica fetches on its own.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; empty = no shared lock.
    #[serde(with = "unset_if_empty")]
    pub url: Option<String>,
    /// How long the others wait for a replica that died while fetching (renewed while alive).
    #[serde(with = "humantime_serde")]
    pub lock_ttl: Duration,
    /// How often a waiting replica looks for the artifact.
    #[serde(with = "humantime_serde")]
    pub lock_poll: Duration,
}

/// HTTPS served by agora itself (rustls). Certificates are reloaded when the files change and on
/// SIGHUP.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// HTTPS address (`0.0.0.0:3443`); empty = no HTTPS listener.
    #[serde(with = "unset_if_empty")]
    pub listen: Option<String>,
    /// PEM certificate chain.
    #[serde(with = "unset_if_empty")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    #[serde(with = "unset_if_empty")]
    pub key_file: Option<PathBuf>,
    /// How often the files are checked for changes.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

/// Client authentication: tokens, sent as `Authorization: Bearer` or as the password of basic
/// auth (what the go command sends from `.netrc`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Tokens file managed by `agora token` (re-read when it changes, so revocation needs no
    /// restart). Empty = tokens only from `auth.tokens`.
    #[serde(with = "unset_if_empty")]
    pub tokens_file: Option<PathBuf>,
    /// How often the tokens file is checked for changes.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Refuse credentials sent over plain HTTP (HTTPS terminated by a trusted proxy counts as
    /// HTTPS, see `server.trusted_proxies`).
    pub require_tls: bool,
    /// Tokens written in the configuration (`name`, `groups`, `hash = "sha256:<hex>"`), in
    /// addition to the tokens file. File-only.
    pub tokens: Vec<agora_access::TokenRecord>,
}

/// Who may read which modules. The first rule whose pattern matches decides; `default` otherwise.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Who may read modules no rule matches: `anyone` (no token needed), `authenticated` (any
    /// valid token) and/or group names.
    pub default: Vec<String>,
    /// Answer to a client that may not read a module: `not_found` (404, hides that it exists) or
    /// `forbidden` (401 without credentials, 403 with).
    pub on_deny: OnDeny,
    /// File-only.
    pub rules: Vec<AccessRuleConfig>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessRuleConfig {
    /// GOPRIVATE-style pattern.
    pub pattern: String,
    /// `anyone`, `authenticated` and/or group names.
    pub allow: Vec<String>,
    /// Overrides `access.on_deny` for this rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_deny: Option<OnDeny>,
}

/// What may be fetched at all: the first rule matching the module path (and version, when the
/// rule has `versions`) decides; `default` otherwise.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// `allow` or `deny` (deny + allow rules = an allow list).
    pub default: agora_core::Action,
    /// File-only.
    pub rules: Vec<FilterRuleConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRuleConfig {
    /// GOPRIVATE-style pattern.
    pub pattern: String,
    /// Optional constraint such as `< v1.2.3` or `>= v1.0.0, < v1.4.2`.
    #[serde(default, with = "unset_if_empty")]
    pub versions: Option<String>,
    /// `allow` (the default) or `deny`.
    #[serde(default = "allow")]
    pub action: agora_core::Action,
    /// Shown to clients when the rule denies.
    #[serde(default)]
    pub reason: String,
    /// For allow rules: a public version is served only once its `.info` time is this old
    /// (`7d`); until then it answers 403 with `Retry-After` and is left out of lists and
    /// `@latest`.
    #[serde(default, with = "humantime_serde")]
    pub min_age: Option<Duration>,
}

fn allow() -> agora_core::Action {
    agora_core::Action::Allow
}

impl FilterConfig {
    pub fn to_filter(&self) -> Result<agora_core::Filter> {
        use agora_core::{Filter, FilterRule, VersionConstraint};
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let ctx = |e: String| anyhow::anyhow!("filter.rules[{i}] ({}): {e}", r.pattern);
                Ok(FilterRule {
                    pattern: r.pattern.clone(),
                    versions: r
                        .versions
                        .as_deref()
                        .map(VersionConstraint::parse)
                        .transpose()
                        .map_err(ctx)?,
                    action: r.action,
                    reason: r.reason.clone(),
                    min_age: r.min_age,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Filter::new(self.default, rules).map_err(|e| anyhow::anyhow!("filter: {e}"))
    }
}

/// A webhook asked before each new artifact is cached (POST JSON; 2xx allows, 4xx denies).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Empty = no webhook.
    #[serde(with = "unset_if_empty")]
    pub url: Option<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// When the webhook cannot answer: `closed` (refuse for now, 503) or `open` (accept).
    pub fail: FailMode,
}

/// `[tracing]`: OpenTelemetry spans for requests, cache lookups, fetches, git commands and storage
/// writes, exported over OTLP/HTTP when `otlp_endpoint` is set; off (and free) otherwise.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP traces URL (`http://otel-collector:4318/v1/traces`); empty: off.
    #[serde(with = "unset_if_empty")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of traces kept (0.0 to 1.0) when the caller sent no sampling decision; a request
    /// with a `traceparent` header follows its caller's decision.
    pub sample_ratio: f64,
    /// Longest wait for the collector per export.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            service_name: "agora".into(),
            sample_ratio: 1.0,
            export_timeout: Duration::from_secs(10),
        }
    }
}

/// One structured line per request for a private module (who, what, when, result).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// JSON-lines file (reopened on SIGHUP, for log rotation). Empty = the main log, target
    /// `agora::audit`.
    #[serde(with = "unset_if_empty")]
    pub file: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most fetches from upstream proxies at once; more wait in a queue.
    pub upstream_fetches: usize,
    /// Most fetches from git at once.
    pub git_fetches: usize,
    /// Longest wait in a queue before answering 503.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
}

/// HTTP connection handling (slow clients, shutdown).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Time allowed to send a request head; also the keep-alive idle timeout (slowloris).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Longest a response write may stay blocked on a client that does not read.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub keep_alive: bool,
    /// Load balancers (IPs or CIDRs) whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed.
    /// A client on a Unix socket is `127.0.0.1`.
    pub trusted_proxies: Vec<String>,
    /// Serve everything under this path (`/go`: `GOPROXY=https://host/go`), behind an ingress
    /// shared with other services; other paths answer 404. Empty = at the root.
    #[serde(with = "unset_if_empty")]
    pub path_prefix: Option<String>,
}

/// What a cache miss does for modules matching `pattern`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadRule {
    /// GOPRIVATE-style pattern.
    pub pattern: String,
    /// `sync` (fetch, then answer), `async` (404 now, fetch in the background), `redirect` (to
    /// `url`), `none` (cache only).
    pub mode: DownloadModeConfig,
    /// The proxy to redirect to, for `redirect`.
    #[serde(default, with = "unset_if_empty")]
    pub url: Option<String>,
}

/// `download[].mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownloadModeConfig {
    Sync,
    Async,
    Redirect,
    None,
}

impl DownloadRule {
    pub fn to_mode(&self) -> Result<agora_core::DownloadMode> {
        use agora_core::DownloadMode;
        Ok(match (self.mode, &self.url) {
            (DownloadModeConfig::Sync, _) => DownloadMode::Sync,
            (DownloadModeConfig::Async, _) => DownloadMode::Async,
            (DownloadModeConfig::None, _) => DownloadMode::None,
            (DownloadModeConfig::Redirect, Some(url)) => DownloadMode::Redirect(url.clone()),
            (DownloadModeConfig::Redirect, None) => bail!(
                "download rule {:?}: mode redirect needs a url",
                self.pattern
            ),
        })
    }
}

/// Fetching private modules straight from git.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    /// Where bare repository mirrors live (default `<data_dir>/_agora/mirrors`). They are a cache:
    /// deleting them costs one clone per repository.
    #[serde(with = "unset_if_empty")]
    pub mirror_dir: Option<PathBuf>,
    /// A mirror fetched less than this long ago is not fetched again for a new request.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// How a new mirror starts: `minimal` answers from the commits a request needs and fetches
    /// the history in the background; `full` mirrors everything before the first answer.
    pub first_fetch: FirstFetchConfig,
    /// Time limit for a `?go-get=1` lookup.
    #[serde(with = "humantime_serde")]
    pub meta_timeout: Duration,
    /// Module path → repository rules, tried before go-get lookups (GitLab answers those wrongly
    /// for subgroups). File-only.
    pub rules: Vec<RuleConfig>,
    /// Per-host credentials handed to git (never logged, redacted in `config show`). File-only.
    pub credentials: Vec<CredentialConfig>,
}

/// `git.first_fetch`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirstFetchConfig {
    #[default]
    Minimal,
    Full,
}

impl FirstFetchConfig {
    pub fn to_vcs(self) -> agora_vcs::FirstFetch {
        match self {
            FirstFetchConfig::Minimal => agora_vcs::FirstFetch::Minimal,
            FirstFetchConfig::Full => agora_vcs::FirstFetch::Full,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Path elements; each `*` matches one element: `gitlab.corp.example/*/*`.
    pub pattern: String,
    /// Repository URL template: `{root}` is the matched prefix, `{path}` the same without its host,
    /// e.g. `ssh://git@gitlab.corp.example/{path}.git`. A `user:password@` in an https URL is
    /// taken out before git sees the URL and handed to git as a header, like `[[git.credentials]]`;
    /// prefer those, which can read the secret from a file or the environment.
    pub url: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialConfig {
    /// The host the credential is for. With a port (`git.corp.example:8443`) it applies to that
    /// port only (a URL without a port has its scheme's default one); without a port, to every
    /// port of the host, so give the port on a host that serves several things (`127.0.0.1`).
    pub host: String,
    /// HTTPS user name (GitLab tokens: any non-empty name, e.g. `oauth2`).
    pub username: String,
    /// HTTPS password or token. Prefer `password_file` or `password_env`.
    #[serde(with = "unset_if_empty")]
    pub password: Option<String>,
    /// File holding the password or token (trailing newline ignored).
    #[serde(with = "unset_if_empty")]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password or token.
    #[serde(with = "unset_if_empty")]
    pub password_env: Option<String>,
    /// SSH private key used for this host.
    #[serde(with = "unset_if_empty")]
    pub ssh_key: Option<PathBuf>,
}

impl CredentialConfig {
    /// The secret, from whichever source is configured.
    pub fn secret(&self) -> Result<Option<String>> {
        if let Some(password) = &self.password {
            return Ok(Some(password.clone()));
        }
        if let Some(file) = &self.password_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading password_file for host {}", self.host))?;
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()));
        }
        if let Some(var) = &self.password_env {
            let v = std::env::var(var).with_context(|| {
                format!(
                    "environment variable {var} (password_env for host {}) is not set",
                    self.host
                )
            })?;
            return Ok(Some(v));
        }
        Ok(None)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `agora=debug,info`); `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The upstream chain, in `GOPROXY` syntax (`https://goproxy.cn,direct`).
    pub proxy: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Whole-request limit for small answers.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest silence while streaming a body.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Whole-request limit for zips.
    #[serde(with = "humantime_serde")]
    pub zip_timeout: Duration,
    /// Extra attempts on 429/5xx and transport failures.
    pub retries: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Lists and `@latest` younger than this are served from cache without asking upstream.
    #[serde(with = "humantime_serde")]
    pub list_fresh: Duration,
    /// Further window in which a stale list is served at once while it is refreshed.
    #[serde(with = "humantime_serde")]
    pub list_stale: Duration,
    /// How long a "not found" from upstream or git is remembered (`0s`: never), so repeated
    /// requests for a missing module cost one upstream request.
    #[serde(with = "humantime_serde")]
    pub not_found: Duration,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Private module patterns (`GOPRIVATE` syntax): fetched directly, never sent upstream, never
    /// looked up in a checksum database.
    pub private: Vec<String>,
    /// Extra patterns fetched directly (`GONOPROXY`).
    pub noproxy: Vec<String>,
    /// Extra patterns never looked up in a checksum database (`GONOSUMDB`).
    pub nosumdb: Vec<String>,
    /// Patterns that may be fetched over plain HTTP (`GOINSECURE`).
    pub insecure: Vec<String>,
}

impl RoutingConfig {
    pub fn direct_patterns(&self) -> Vec<String> {
        union(&self.private, &self.noproxy)
    }

    pub fn nosum_patterns(&self) -> Vec<String> {
        union(&self.private, &self.nosumdb)
    }
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    for p in b {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SumdbConfig {
    /// The checksum database, as the first field of `GOSUMDB`: `off`, a name whose key agora
    /// knows (`sum.golang.org`, `sum.golang.google.cn`), or a verifier key `name+hash+keydata`.
    /// Proxied under `/sumdb/<name>/`.
    pub name: String,
    /// Where agora reaches it (default `https://<name>`).
    pub url: String,
    /// Verify every public module's go.mod and zip against it before caching them.
    pub verify: bool,
}

/// Optional keys: `""` (in a file or an `AGORA_*` variable) means unset, and unset is written as
/// `""`. Every key so keeps a value in the serialized defaults, which is where the variables'
/// names come from, while the program sees an `Option`.
mod unset_if_empty {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serializer};

    /// A text-like value read from TOML.
    pub trait Text: Sized {
        fn from_text(s: String) -> Self;
        fn as_text(&self) -> std::borrow::Cow<'_, str>;
    }

    impl Text for String {
        fn from_text(s: String) -> Self {
            s
        }
        fn as_text(&self) -> std::borrow::Cow<'_, str> {
            self.into()
        }
    }

    impl Text for PathBuf {
        fn from_text(s: String) -> Self {
            PathBuf::from(s)
        }
        fn as_text(&self) -> std::borrow::Cow<'_, str> {
            self.to_string_lossy()
        }
    }

    pub fn serialize<S: Serializer, T: Text>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_ref().map(Text::as_text).as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Text>(d: D) -> Result<Option<T>, D::Error> {
        let s = String::deserialize(d)?;
        Ok((!s.trim().is_empty()).then(|| T::from_text(s)))
    }
}

impl Default for Config {
    /// The embedded defaults. Where a library has defaults of its own, they are taken from it,
    /// so that each default is written once.
    fn default() -> Self {
        let client = agora_upstream::ClientOptions::default();
        let proxy = agora_core::ProxyOptions::default();
        let serve = agora_server::ServeOptions::default();
        Config {
            listen: Some("0.0.0.0:3000".into()),
            data_dir: PathBuf::from("agora-data"),
            log: LogConfig {
                format: LogFormat::Text,
                level: "info".into(),
            },
            upstream: UpstreamConfig {
                proxy: "https://proxy.golang.org".into(),
                connect_timeout: client.connect_timeout,
                timeout: client.timeout,
                idle_timeout: client.idle_timeout,
                zip_timeout: client.zip_timeout,
                retries: client.retries,
            },
            cache: CacheConfig {
                list_fresh: proxy.list_fresh,
                list_stale: proxy.list_stale,
                not_found: proxy.not_found,
            },
            routing: RoutingConfig::default(),
            sumdb: SumdbConfig {
                name: "sum.golang.org".into(),
                url: String::new(),
                verify: true,
            },
            ca_file: None,
            git: GitConfig {
                mirror_dir: None,
                refresh_interval: Duration::from_secs(10),
                first_fetch: FirstFetchConfig::Minimal,
                meta_timeout: Duration::from_secs(15),
                rules: Vec::new(),
                credentials: Vec::new(),
            },
            limits: LimitsConfig {
                upstream_fetches: proxy.max_upstream_fetches,
                git_fetches: proxy.max_git_fetches,
                queue_timeout: proxy.queue_timeout,
            },
            server: ServerConfig {
                header_timeout: serve.header_timeout,
                send_timeout: serve.send_timeout,
                shutdown_timeout: serve.shutdown_timeout,
                keep_alive: serve.keep_alive,
                trusted_proxies: Vec::new(),
                path_prefix: None,
            },
            download: Vec::new(),
            tls: TlsConfig {
                listen: None,
                cert_file: None,
                key_file: None,
                reload_interval: Duration::from_secs(10),
            },
            auth: AuthConfig {
                tokens_file: None,
                reload_interval: Duration::from_secs(2),
                require_tls: false,
                tokens: Vec::new(),
            },
            access: AccessConfig {
                default: vec!["anyone".into()],
                on_deny: OnDeny::Forbidden,
                rules: Vec::new(),
            },
            filter: FilterConfig {
                default: agora_core::Action::Allow,
                rules: Vec::new(),
            },
            validation: ValidationConfig {
                url: None,
                timeout: Duration::from_secs(10),
                fail: FailMode::Closed,
            },
            audit: AuditConfig::default(),
            storage: agora_storage::StorageConfig::default(),
            index: agora_index::IndexConfig::default(),
            retention: RetentionConfig::default(),
            redis: RedisConfig {
                url: None,
                lock_ttl: Duration::from_secs(30),
                lock_poll: Duration::from_millis(200),
            },
            checksum_db: ChecksumDbConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

/// `$XDG_DATA_HOME/agora`, else `~/.local/share/agora`, else `./agora-data` (the embedded default).
fn default_data_dir(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    if let Some(x) = env.get("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("agora"));
    }
    env.get("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share/agora"))
}

/// Values given on the command line (highest precedence).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub upstream: Option<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
}

/// Loads the configuration from every layer. `env` is the process environment (a parameter so
/// tests need not mutate the real one).
pub fn load(
    file: Option<&Path>,
    env: &BTreeMap<String, String>,
    flags: &Overrides,
) -> Result<Config> {
    let mut defaults = Config::default();
    if let Some(dir) = default_data_dir(env) {
        defaults.data_dir = dir;
    }
    apply_go_env(&mut defaults, env)?;
    let mut merged = Value::try_from(&defaults).context("serializing defaults")?;
    let leaves = leaf_paths(&merged);

    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let parsed: Value = toml::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        merge(&mut merged, parsed);
    }

    // `agora auth`'s variables belong to a client and may sit in the same shell.
    let client_env = |k: &str| crate::auth_cmd::CLIENT_ENV.contains(&k);
    for (name, raw) in env
        .iter()
        .filter(|(k, _)| k.starts_with("AGORA_") && !client_env(k))
    {
        let Some((path, kind)) = leaves.iter().find(|(p, _)| env_name(p) == *name) else {
            bail!(
                "unknown environment variable {name} (known: {})",
                leaves
                    .iter()
                    .map(|(p, _)| env_name(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let value = parse_env_value(raw, kind)
            .with_context(|| format!("invalid value for environment variable {name}"))?;
        set_path(&mut merged, path, value);
    }

    let flag_values = [
        ("listen", flags.listen.clone()),
        (
            "data_dir",
            flags.data_dir.as_ref().map(|p| p.display().to_string()),
        ),
        ("upstream.proxy", flags.upstream.clone()),
        ("log.format", flags.log_format.clone()),
        ("log.level", flags.log_level.clone()),
    ];
    for (path, value) in flag_values {
        if let Some(v) = value {
            set_path(&mut merged, path, Value::String(v));
        }
    }

    // serde_path_to_error names the key a bad value is at (`access.on_deny: unknown variant`).
    let config: Config = serde_path_to_error::deserialize(merged).map_err(|e| {
        anyhow::anyhow!(
            "invalid configuration: {}: {}",
            e.path(),
            e.inner().message()
        )
    })?;
    config.validate()?;
    Ok(config)
}

/// The go command's own variables are defaults for agora's upstream and routing settings.
fn apply_go_env(config: &mut Config, env: &BTreeMap<String, String>) -> Result<()> {
    let list = |name: &str| -> Vec<String> {
        env.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(v) = env.get("GOPROXY").filter(|v| !v.trim().is_empty()) {
        config.upstream.proxy = v.clone();
    }
    config.routing.private = list("GOPRIVATE");
    config.routing.noproxy = list("GONOPROXY");
    config.routing.nosumdb = list("GONOSUMDB");
    config.routing.insecure = list("GOINSECURE");
    if let Some(v) = env.get("GOSUMDB").filter(|v| !v.trim().is_empty()) {
        // GOSUMDB is "off", "name", "name+hash+key", each optionally followed by a URL.
        let mut fields = v.split_whitespace();
        config.sumdb.name = fields.next().unwrap_or_default().to_owned();
        config.sumdb.url = fields.next().unwrap_or_default().to_owned();
    }
    Ok(())
}

impl Config {
    fn validate(&self) -> Result<()> {
        if let Some(name) = &self.checksum_db.name {
            if !name.contains('.') || name.contains(['/', ' ', '+']) {
                bail!("checksum_db.name {name:?}: use a host-like name (sum.corp.example)");
            }
            if *name == self.sumdb.name {
                bail!("checksum_db.name {name:?} is the upstream database's name (sumdb.name)");
            }
        }
        if !(0.0..=1.0).contains(&self.tracing.sample_ratio) {
            bail!(
                "tracing.sample_ratio = {}: use a share between 0.0 and 1.0",
                self.tracing.sample_ratio
            );
        }
        if let Some(endpoint) = &self.tracing.otlp_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                bail!(
                    "tracing.otlp_endpoint = {:?}: use an http:// or https:// URL (OTLP over HTTP)",
                    agora_secret::redact(endpoint)
                );
            }
        }
        if let Some(listen) = &self.listen {
            listen
                .parse::<agora_server::ListenAddr>()
                .context("listen")?;
        }
        if let Some(listen) = &self.tls.listen {
            if listen.starts_with(agora_server::listen::UNIX_SCHEME) {
                bail!(
                    "tls.listen = {listen:?}: HTTPS is not served on a Unix socket; set \
                     listen = {listen:?} instead (the reverse proxy in front terminates TLS)"
                );
            }
            listen
                .parse::<std::net::SocketAddr>()
                .with_context(|| format!("invalid tls.listen address {listen:?}"))?;
            if self.tls.cert_file.is_none() || self.tls.key_file.is_none() {
                bail!("tls.listen is set: tls.cert_file and tls.key_file must be set too");
            }
        }
        if self.listen.is_none() && self.tls.listen.is_none() {
            bail!("nothing to listen on: set listen, tls.listen or both");
        }
        if let Some(prefix) = &self.server.path_prefix {
            agora_server::PathPrefix::new(prefix).context("server.path_prefix")?;
        }
        self.filter.to_filter()?;
        if self.redis.url.is_some() && self.redis.lock_ttl >= self.limits.queue_timeout {
            bail!(
                "redis.lock_ttl ({:?}) must be shorter than limits.queue_timeout ({:?}): a waiting replica must outlive a dead holder's lock",
                self.redis.lock_ttl,
                self.limits.queue_timeout
            );
        }
        agora_upstream::parse_goproxy(&self.upstream.proxy).context("invalid upstream.proxy")?;
        if self.data_dir.as_os_str().is_empty() {
            bail!("data_dir must not be empty");
        }
        for (i, c) in self.git.credentials.iter().enumerate() {
            if c.host.is_empty() {
                bail!("git.credentials[{i}]: host must be set");
            }
            let sources = [
                c.password.is_some(),
                c.password_file.is_some(),
                c.password_env.is_some(),
            ]
            .into_iter()
            .filter(|&set| set)
            .count();
            if sources > 1 {
                bail!(
                    "git.credentials[{i}] ({}): set only one of password, password_file, password_env",
                    c.host
                );
            }
        }
        for rule in &self.download {
            rule.to_mode()?;
        }
        if self.limits.upstream_fetches == 0 || self.limits.git_fetches == 0 {
            bail!("limits.upstream_fetches and limits.git_fetches must be at least 1");
        }
        for (i, r) in self.git.rules.iter().enumerate() {
            if r.pattern.is_empty() || r.url.is_empty() {
                bail!("git.rules[{i}]: pattern and url must both be set");
            }
        }
        Ok(())
    }

    /// The checksum database endpoint, if one is proxied. It has a key unless `sumdb.verify` is
    /// off; a database whose key agora does not know needs its key in `sumdb.name`.
    pub fn sumdb_endpoint(&self) -> Result<Option<agora_core::SumdbEndpoint>> {
        let name = self.sumdb.name.trim();
        if name.is_empty() || name == "off" {
            return Ok(None);
        }
        let url = self.sumdb.url.trim().trim_end_matches('/');
        let url = if url.is_empty() || url.contains("://") {
            url.to_owned()
        } else {
            format!("https://{url}")
        };
        match agora_sumdb::Database::parse(&format!("{name} {url}")) {
            Ok(Some(db)) => Ok(Some(agora_core::SumdbEndpoint {
                name: db.name,
                url: db.url,
                key: self.sumdb.verify.then_some(db.key),
            })),
            Ok(None) => Ok(None),
            Err(_) if !self.sumdb.verify && !name.contains('+') => {
                Ok(Some(agora_core::SumdbEndpoint {
                    name: name.to_owned(),
                    url: if url.is_empty() {
                        format!("https://{name}")
                    } else {
                        url
                    },
                    key: None,
                }))
            }
            Err(e) => bail!(
                "sumdb.name = {name:?}: {e}; give the database's verifier key (name+hash+keydata), \
                 or set sumdb.verify = false to proxy it without verifying anything"
            ),
        }
    }

    /// Where repository mirrors live.
    pub fn mirror_dir(&self) -> PathBuf {
        match &self.git.mirror_dir {
            Some(dir) => dir.clone(),
            None => agora_storage::layout::mirrors_dir(&self.data_dir),
        }
    }

    /// The configuration as TOML with secrets (credentials in URLs) redacted.
    pub fn to_redacted_toml(&self) -> Result<String> {
        let mut shown = self.clone();
        shown.upstream.proxy = shown
            .upstream
            .proxy
            .split_inclusive([',', '|'])
            .map(agora_secret::redact)
            .collect();
        shown.sumdb.url = agora_secret::redact(&shown.sumdb.url);
        for rule in &mut shown.git.rules {
            rule.url = agora_secret::redact(&rule.url);
        }
        for c in &mut shown.git.credentials {
            if c.password.is_some() {
                c.password = Some("***".into());
            }
        }
        for url in [
            &mut shown.validation.url,
            &mut shown.redis.url,
            &mut shown.tracing.otlp_endpoint,
        ] {
            *url = url.as_deref().map(agora_secret::redact);
        }
        shown.storage = shown.storage.redacted();
        shown.index = shown.index.redacted();
        shown.storage.s3.endpoint = agora_secret::redact(&shown.storage.s3.endpoint);
        // Not secrets (hashes of 256-bit random tokens), but nobody needs them on a screen.
        for t in &mut shown.auth.tokens {
            t.hash = "sha256:***".into();
        }
        Ok(toml::to_string_pretty(&shown)?)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeafKind {
    Text,
    Integer,
    Bool,
    List,
}

fn leaf_paths(v: &Value) -> Vec<(String, LeafKind)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, LeafKind)>) {
        match v {
            Value::Table(t) => {
                for (k, child) in t {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, child, out);
                }
            }
            Value::Integer(_) => out.push((prefix.to_owned(), LeafKind::Integer)),
            Value::Boolean(_) => out.push((prefix.to_owned(), LeafKind::Bool)),
            Value::Array(_) => out.push((prefix.to_owned(), LeafKind::List)),
            _ => out.push((prefix.to_owned(), LeafKind::Text)),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

fn env_name(path: &str) -> String {
    format!("AGORA_{}", path.replace('.', "_").to_ascii_uppercase())
}

fn parse_env_value(raw: &str, kind: &LeafKind) -> Result<Value> {
    Ok(match kind {
        LeafKind::Text => Value::String(raw.to_owned()),
        LeafKind::Integer => Value::Integer(raw.trim().parse().context("expected an integer")?),
        LeafKind::Bool => Value::Boolean(
            raw.trim()
                .parse()
                .context("expected \"true\" or \"false\"")?,
        ),
        LeafKind::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
    })
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Table(b), Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut cur = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Value::Table(t) = cur else { return };
        if parts.peek().is_none() {
            t.insert(part.to_owned(), value);
            return;
        }
        cur = t
            .entry(part.to_owned())
            .or_insert_with(|| Value::Table(Default::default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    /// Optional keys are `Option`s to the program and `""` (unset) on the outside, so each one
    /// still has its `AGORA_*` variable; choices are enums, refused by name when misspelt.
    #[test]
    fn optional_keys_and_choices_are_typed() {
        let c = load(None, &env(&[("HOME", "/h")]), &Overrides::default()).unwrap();
        assert_eq!((c.redis.url.clone(), c.ca_file.clone()), (None, None));
        let c = load(
            None,
            &env(&[
                ("HOME", "/h"),
                ("AGORA_REDIS_URL", "redis://127.0.0.1:6379"),
                ("AGORA_LISTEN", ""),
                ("AGORA_TLS_LISTEN", "127.0.0.1:3443"),
                ("AGORA_TLS_CERT_FILE", "/c.pem"),
                ("AGORA_TLS_KEY_FILE", "/k.pem"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.redis.url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(c.listen, None, "an empty variable unsets the key");
        assert_eq!(c.tls.key_file, Some(PathBuf::from("/k.pem")));
        assert!(c.to_redacted_toml().unwrap().contains("listen = \"\""));

        let file = write("[filter]\ndefault = \"deny\"\n[[filter.rules]]\npattern = \"a.example\"\naction = \"allow\"\nversions = \"\"\n");
        let c = load(
            Some(file.path()),
            &env(&[("HOME", "/h")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.filter.default, agora_core::Action::Deny);
        assert_eq!(c.filter.rules[0].versions, None);
        let file = write("[[filter.rules]]\npattern = \"a.example\"\naction = \"alow\"\n");
        let err = load(
            Some(file.path()),
            &env(&[("HOME", "/h")]),
            &Overrides::default(),
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("filter.rules[0].action") && text.contains("alow"),
            "{text}"
        );
        let file = write("[[download]]\npattern = \"a.example\"\nmode = \"redirect\"\n");
        let err = load(
            Some(file.path()),
            &env(&[("HOME", "/h")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("needs a url"), "{err:#}");
    }

    #[test]
    fn embedded_defaults_need_nothing() {
        let c = load(None, &env(&[("HOME", "/home/u")]), &Overrides::default()).unwrap();
        assert_eq!(c.listen.as_deref(), Some("0.0.0.0:3000"));
        assert_eq!(c.upstream.proxy, "https://proxy.golang.org");
        assert_eq!(c.data_dir, PathBuf::from("/home/u/.local/share/agora"));
        let db = c.sumdb_endpoint().unwrap().unwrap();
        assert_eq!(db.url, "https://sum.golang.org");
        assert!(
            db.key.unwrap().starts_with("sum.golang.org+033de0ae+"),
            "verified by default, with the built-in key"
        );
    }

    #[test]
    fn precedence_is_go_env_then_file_then_agora_env_then_flags() {
        let file = write(
            "listen = \"127.0.0.1:4000\"\n[upstream]\nproxy = \"https://goproxy.cn\"\nretries = 5\n[routing]\nprivate = [\"gitlab.corp.example\"]\n",
        );
        let e = env(&[
            ("GOPROXY", "https://from-go-env.example"),
            ("GONOSUMDB", "secret.example"),
            ("GOSUMDB", "sum.golang.google.cn"),
            ("AGORA_UPSTREAM_RETRIES", "7"),
            ("AGORA_LISTEN", "127.0.0.1:5000"),
            ("AGORA_CACHE_LIST_FRESH", "5m"),
        ]);
        let flags = Overrides {
            listen: Some("127.0.0.1:6000".into()),
            ..Overrides::default()
        };
        let c = load(Some(file.path()), &e, &flags).unwrap();
        assert_eq!(
            c.listen.as_deref(),
            Some("127.0.0.1:6000"),
            "flag beats env and file"
        );
        assert_eq!(c.upstream.proxy, "https://goproxy.cn", "file beats GOPROXY");
        assert_eq!(c.upstream.retries, 7, "AGORA_* beats file");
        assert_eq!(c.cache.list_fresh, Duration::from_secs(300));
        assert_eq!(c.routing.direct_patterns(), vec!["gitlab.corp.example"]);
        assert_eq!(
            c.routing.nosum_patterns(),
            vec!["gitlab.corp.example", "secret.example"]
        );
        let s = c.sumdb_endpoint().unwrap().unwrap();
        assert_eq!(
            (s.name.as_str(), s.url.as_str()),
            ("sum.golang.org", "https://sum.golang.google.cn"),
            "the mirror in China serves sum.golang.org's log"
        );
    }

    /// `agora auth` reads these; a developer who also runs agora keeps them in the same shell.
    #[test]
    fn the_client_variables_of_agora_auth_are_not_configuration() {
        let c = load(
            None,
            &env(&[
                ("AGORA_URL", "https://agora.corp.example"),
                ("AGORA_TOKEN", "agora_x"),
                ("AGORA_TOKEN_FILE", "/dev/null"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(!c.to_redacted_toml().unwrap().contains("agora_x"));
    }

    #[test]
    fn choices_are_typed_and_a_bad_one_names_its_key() {
        let file = write(
            "[access]\non_deny = \"not_found\"\n[[access.rules]]\npattern = \"x\"\nallow = [\"anyone\"]\n\n[[access.rules]]\npattern = \"y\"\nallow = [\"anyone\"]\non_deny = \"forbidden\"\n",
        );
        let c = load(Some(file.path()), &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.access.on_deny, OnDeny::NotFound);
        assert_eq!(c.access.rules[0].on_deny, None);
        assert_eq!(c.access.rules[1].on_deny, Some(OnDeny::Forbidden));
        assert_eq!(c.validation.fail, FailMode::Closed);
        for (var, value, key) in [
            ("AGORA_ACCESS_ON_DENY", "hide", "access.on_deny"),
            ("AGORA_VALIDATION_FAIL", "maybe", "validation.fail"),
            ("AGORA_GIT_FIRST_FETCH", "lazy", "git.first_fetch"),
        ] {
            let err = load(None, &env(&[(var, value)]), &Overrides::default()).unwrap_err();
            let shown = format!("{err:#}");
            assert!(shown.contains(key) && shown.contains(value), "{shown}");
        }
    }

    #[test]
    fn unknown_keys_and_variables_are_named() {
        let file = write("[upstream]\nproxxy = \"x\"\n");
        let err = load(Some(file.path()), &env(&[]), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("proxxy"), "{err:#}");
        let err = load(
            None,
            &env(&[("AGORA_LISTEN_ADDR", "x")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("AGORA_LISTEN_ADDR"), "{err:#}");
        let err = load(
            None,
            &env(&[("AGORA_UPSTREAM_RETRIES", "many")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("AGORA_UPSTREAM_RETRIES"),
            "{err:#}"
        );
        let err = load(
            None,
            &env(&[("GOPROXY", "nonsense")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("upstream.proxy"), "{err:#}");
    }

    #[test]
    fn path_prefix_is_checked_at_load() {
        let with = |value: &str| {
            load(
                None,
                &env(&[("AGORA_SERVER_PATH_PREFIX", value)]),
                &Overrides::default(),
            )
        };
        assert_eq!(with("").unwrap().server.path_prefix, None, "empty = unset");
        assert_eq!(
            with("/go").unwrap().server.path_prefix.as_deref(),
            Some("/go")
        );
        assert_eq!(
            with("/proxy/go").unwrap().server.path_prefix.as_deref(),
            Some("/proxy/go")
        );
        for (bad, why) in [
            ("go", "start with"),
            ("/", "at least one"),
            ("/go/", "end with"),
            ("/proxy//go", "//"),
            ("/proxy/../go", ".."),
            ("/./go", ".."),
            ("/go@v1", "@"),
            ("/g%20o", "may only"),
        ] {
            let err = format!("{:#}", with(bad).unwrap_err());
            assert!(
                err.contains("server.path_prefix") && err.contains(why),
                "{bad}: {err}"
            );
        }
        let file = write("[server]\npath_prefix = \"/go/\"\n");
        let err = load(Some(file.path()), &env(&[]), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("end with"), "{err:#}");
    }

    #[test]
    fn listen_takes_a_unix_socket_but_tls_listen_does_not() {
        let c = load(
            None,
            &env(&[("AGORA_LISTEN", "unix:/run/agora/agora.sock")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.listen.as_deref(), Some("unix:/run/agora/agora.sock"));
        let err = load(
            None,
            &env(&[("AGORA_LISTEN", "unix:agora.sock")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("absolute path"), "{err:#}");
        let err = load(
            None,
            &env(&[
                ("AGORA_TLS_LISTEN", "unix:/run/agora/tls.sock"),
                ("AGORA_TLS_CERT_FILE", "/c.pem"),
                ("AGORA_TLS_KEY_FILE", "/k.pem"),
            ]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("not served on a Unix socket"),
            "{err:#}"
        );
    }

    #[test]
    fn show_redacts_credentials() {
        let c = load(
            None,
            &env(&[(
                "GOPROXY",
                "https://alice:s3cret@proxy.corp.example,https://goproxy.cn|direct",
            )]),
            &Overrides::default(),
        )
        .unwrap();
        let mut c = c;
        c.git.credentials.push(CredentialConfig {
            host: "gitlab.corp.example".into(),
            username: "oauth2".into(),
            password: Some("glpat-topsecret".into()),
            ..CredentialConfig::default()
        });
        let shown = c.to_redacted_toml().unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(
            shown.contains("https://***@proxy.corp.example,https://goproxy.cn|direct"),
            "{shown}"
        );
    }

    #[test]
    fn index_and_retention_settings_have_environment_names() {
        let env: BTreeMap<String, String> = [
            (
                "AGORA_INDEX_URL",
                "postgres://agora:pw@db.corp.example/agora",
            ),
            ("AGORA_RETENTION_MAX_SIZE", "10GiB"),
            ("AGORA_RETENTION_UNUSED_FOR", "30d"),
            ("AGORA_RETENTION_INTERVAL", "1h"),
            ("AGORA_RETENTION_KEEP", "github.com/corp,golang.org/x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let c = load(None, &env, &Overrides::default()).unwrap();
        assert_eq!(
            c.index.url.as_deref(),
            Some("postgres://agora:pw@db.corp.example/agora")
        );
        assert_eq!(c.retention.max_size, Some(bytesize::ByteSize::gib(10)));
        assert_eq!(
            c.retention.unused_for,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(c.retention.interval, Some(Duration::from_secs(3600)));
        let policy = c.retention.policy(&["gitlab.corp.example".to_owned()]);
        assert_eq!(
            policy.keep,
            ["github.com/corp", "golang.org/x", "gitlab.corp.example"]
        );
        assert_eq!(policy.max_size, Some(10 << 30));
        let shown = c.to_redacted_toml().unwrap();
        assert!(!shown.contains(":pw@"), "{shown}");
        // Unset stays unset.
        let c = load(None, &BTreeMap::new(), &Overrides::default()).unwrap();
        assert_eq!((c.index.url, c.retention.max_size), (None, None));
        assert!(!c.retention.is_set());
        let bad: BTreeMap<String, String> =
            [("AGORA_RETENTION_MAX_SIZE".to_owned(), "lots".to_owned())].into();
        assert!(load(None, &bad, &Overrides::default()).is_err());
    }
}
