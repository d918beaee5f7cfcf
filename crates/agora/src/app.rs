//! Wiring: builds the proxy's parts from a [`Config`]. Shared by `serve` and `doctor`, so both
//! see modules exactly the same way.

use agora_secret::Secret;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use agora_access::{AccessRule, AccessRules, Allow, AuditLog, TokenStore};
use agora_core::{
    Checksums, Policy, Proxy, ProxyOptions, RedisLock, RedisLockOptions, SumdbProxy, VcsSource,
    Webhook,
};
use agora_server::{Guard, TrustedProxies};
use agora_storage::Storage;
use agora_upstream::{ClientOptions, UpstreamClient};
use agora_vcs::{HostCredential, ResolverOptions, RewriteRule, Vcs, VcsOptions};

use crate::config::Config;

pub struct App {
    pub storage: Storage,
    pub proxy: Proxy,
    pub sumdb: SumdbProxy,
    pub vcs: Arc<Vcs>,
    pub policy: Policy,
    /// The checksum database public modules are verified against, if any.
    pub checksums: Option<Arc<Checksums>>,
}

/// Client-facing access control: who may read what, and the audit trail.
pub struct Access {
    pub guard: Arc<Guard>,
    pub tokens: Arc<TokenStore>,
}

/// Builds the [`Guard`] from the `auth`, `access`, `audit` and `server.trusted_proxies` sections.
pub fn access(config: &Config) -> Result<Access> {
    let file = config.auth.tokens_file.clone();
    let tokens = Arc::new(
        TokenStore::new(config.auth.tokens.clone(), file).context("loading client tokens")?,
    );
    let rules = config
        .access
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(AccessRule {
                pattern: r.pattern.clone(),
                allow: Allow::parse(&r.allow)
                    .with_context(|| format!("access.rules[{i}] ({})", r.pattern))?,
                on_deny: r.on_deny,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rules = AccessRules::new(
        Allow::parse(&config.access.default).context("access.default")?,
        config.access.on_deny,
        rules,
    )?;
    let audit = AuditLog::new(config.audit.file.clone()).context("opening the audit log")?;
    let trusted =
        TrustedProxies::parse(&config.server.trusted_proxies).context("server.trusted_proxies")?;
    let guard = Guard::new(
        tokens.clone(),
        rules,
        Arc::new(audit),
        trusted,
        config.auth.require_tls,
    );
    Ok(Access {
        guard: Arc::new(guard),
        tokens,
    })
}

/// Reads the configured extra CA bundle, if any.
fn extra_ca(config: &Config) -> Result<Vec<Vec<u8>>> {
    let Some(file) = &config.ca_file else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(file).with_context(|| format!("reading ca_file {}", file.display()))?;
    Ok(vec![pem])
}

/// git verifies TLS with its own bundle (`GIT_SSL_CAINFO`, `http.sslCAInfo`), not with ours. When
/// a CA file is configured, git gets a bundle of the system roots plus that file, written under the
/// data directory, so an internal GitLab with a private CA works without touching the system store.
fn git_ca_bundle(config: &Config, extra: &[Vec<u8>]) -> Result<Option<PathBuf>> {
    if extra.is_empty() {
        return Ok(None);
    }
    let system = std::env::var_os("GIT_SSL_CAINFO")
        .or_else(|| std::env::var_os("SSL_CERT_FILE"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let mut bundle = std::fs::read(&system).unwrap_or_default();
    for pem in extra {
        bundle.push(b'\n');
        bundle.extend_from_slice(pem);
    }
    let path = agora_storage::layout::git_ca_bundle(&config.data_dir);
    let dir = path.parent().expect("a file under the data directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&path, bundle).with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}

fn credentials(config: &Config) -> Result<Vec<HostCredential>> {
    config
        .git
        .credentials
        .iter()
        .map(|c| {
            Ok(HostCredential {
                host: c.host.clone(),
                username: (!c.username.is_empty()).then(|| c.username.clone()),
                password: c.secret()?.map(Secret::from),
                ssh_key: c.ssh_key.clone(),
            })
        })
        .collect()
}

/// The hosts of every URL the configuration names for the upstream client: only these may
/// resolve to internal addresses (see `agora_upstream::egress`).
fn configured_hosts(config: &Config, chain: &[agora_upstream::ChainEntry]) -> Vec<String> {
    let mut urls: Vec<&str> = chain
        .iter()
        .filter_map(|e| match &e.target {
            agora_upstream::Target::Proxy(base) => Some(base.as_str()),
            _ => None,
        })
        .collect();
    urls.push(config.sumdb.url.as_str());
    urls.extend(config.validation.url.as_deref());
    let name = config.sumdb.name.split('+').next().unwrap_or_default();
    let mut hosts: Vec<String> = urls
        .into_iter()
        .filter_map(|u| {
            let authority = u.split_once("://")?.1.split('/').next()?;
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let host = match host.strip_prefix('[') {
                Some(v6) => v6.split(']').next()?,
                None => host.split(':').next()?,
            };
            Some(host.to_owned())
        })
        .collect();
    hosts.push(name.split('/').next().unwrap_or_default().to_owned());
    hosts.retain(|h| !h.is_empty());
    hosts
}

/// Builds every part. `storage` is the artifact store to use (the data directory for `serve`; a
/// throw-away memory store for `doctor`, which must not write artifacts).
pub fn build(config: &Config, storage: Storage) -> Result<App> {
    let extra_ca_pem = extra_ca(config)?;
    if let Some(bundle) = git_ca_bundle(config, &extra_ca_pem)? {
        // Set once at start-up, before any thread or git process exists.
        std::env::set_var("GIT_SSL_CAINFO", bundle);
    }
    let chain = agora_upstream::parse_goproxy(&config.upstream.proxy)?;
    let client = UpstreamClient::new(ClientOptions {
        connect_timeout: config.upstream.connect_timeout,
        timeout: config.upstream.timeout,
        idle_timeout: config.upstream.idle_timeout,
        zip_timeout: config.upstream.zip_timeout,
        retries: config.upstream.retries,
        extra_ca_pem: extra_ca_pem.clone(),
        internal_hosts: configured_hosts(config, &chain),
        ..ClientOptions::default()
    })?;
    let download = config
        .download
        .iter()
        .map(|r| Ok((r.pattern.clone(), r.to_mode()?)))
        .collect::<Result<Vec<_>>>()?;
    let policy = Policy::new(
        &config.routing.direct_patterns(),
        &config.routing.nosum_patterns(),
    )
    .with_download_modes(download)
    .with_filter(config.filter.to_filter()?);
    let vcs = Arc::new(Vcs::new(VcsOptions {
        mirror_dir: config.mirror_dir(),
        refresh_interval: config.git.refresh_interval,
        first_fetch: config.git.first_fetch.to_vcs(),
        resolver: ResolverOptions {
            rules: config
                .git
                .rules
                .iter()
                .map(|r| RewriteRule {
                    pattern: r.pattern.clone(),
                    url: r.url.clone(),
                })
                .collect(),
            insecure: config.routing.insecure.clone(),
            extra_ca_pem,
            timeout: config.git.meta_timeout,
            credentials: credentials(config)?,
        },
    })?);
    let mut proxy = Proxy::builder(
        storage.clone(),
        policy.clone(),
        &chain,
        client.clone(),
        Arc::new(VcsSource::new(vcs.clone())),
        ProxyOptions {
            list_fresh: config.cache.list_fresh,
            list_stale: config.cache.list_stale,
            max_upstream_fetches: config.limits.upstream_fetches,
            max_git_fetches: config.limits.git_fetches,
            queue_timeout: config.limits.queue_timeout,
            not_found: config.cache.not_found,
        },
    );
    let mut shared_lock: Option<Arc<dyn agora_core::FetchLock>> = None;
    if let Some(url) = &config.redis.url {
        let lock = Arc::new(
            RedisLock::new(RedisLockOptions {
                url: url.clone(),
                ttl: config.redis.lock_ttl,
                poll: config.redis.lock_poll,
                ..RedisLockOptions::new(String::new())
            })
            .context("redis.url")?,
        );
        shared_lock = Some(lock.clone());
        proxy = proxy.lock(lock);
    }
    if let Some(key) = config.checksum_db.key()? {
        proxy = proxy.checksum_db(agora_core::ChecksumDb::new(
            key,
            storage.clone(),
            shared_lock,
        ));
    }
    if let Some(url) = &config.validation.url {
        proxy = proxy.approver(Arc::new(Webhook::new(
            url.clone(),
            config.validation.timeout,
            config.validation.fail,
            client.clone(),
        )));
    }
    let endpoint = config.sumdb_endpoint()?;
    let checksums = match endpoint.as_ref().filter(|e| e.key.is_some()) {
        Some(e) => Some(Arc::new(
            Checksums::new(e, client.clone(), storage.clone())
                .map_err(|m| anyhow::anyhow!("sumdb: {m}"))?,
        )),
        None => None,
    };
    if let Some(c) = &checksums {
        proxy = proxy.checksums(c.clone());
    }
    let proxy = proxy.build();
    let sumdb = SumdbProxy::new(
        endpoint.into_iter().collect(),
        checksums.clone(),
        client,
        proxy.clone(),
    );
    Ok(App {
        storage,
        proxy,
        sumdb,
        vcs,
        policy,
        checksums,
    })
}
