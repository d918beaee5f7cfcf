//! The checksum database: verifying what agora caches against it ([`Checksums`]), and proxying
//! it for clients (`/sumdb/<name>/...`, [`SumdbProxy`]).
//!
//! The go command asks `<proxy>/sumdb/<name>/supported` and, on 200, sends all its checksum
//! traffic through the proxy. Bodies pass through unchanged (they are signed). Tiles never change,
//! so they are cached, but only once they are proven to be part of the log (their size, and their
//! hashes against a verified tree head): one bad answer would otherwise break verification for
//! every client, for good. Lookups for private paths are refused locally and never leave the
//! building.

use std::sync::Arc;

use agora_gomod::module::{unescape_path, unescape_version, ModulePath};
use agora_storage::{layout, CachePolicy, Storage, StorageKey};
use agora_sumdb::client::{Ops, Remote};
use agora_sumdb::{Client, Database, SumdbError};
use agora_upstream::{FetchError, UpstreamClient};
use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{CoreError, Subject};
use crate::policy::{Policy, Route};
use crate::proxy::{FetchMode, Freshness, Proxy};
use crate::singleflight::SingleFlight;

/// A checksum database agora proxies: `name` as clients know it (`sum.golang.org`), `url` where
/// agora reaches it, and its verifier key (`name+hash+keydata`), without which nothing is
/// verified against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SumdbEndpoint {
    pub name: String,
    pub url: String,
    pub key: Option<String>,
}

/// The module whose versions are Go toolchains: always verified, as the go command does, since
/// toolchains cannot be listed in go.sum.
pub const TOOLCHAIN_MODULE: &str = "golang.org/toolchain";

/// Verifies hashes against one checksum database before anything is cached. Tiles and the
/// newest verified tree head are kept in storage, so verification survives restarts and
/// replicas sharing a store agree on the log they have seen.
pub struct Checksums {
    client: Client<StoreOps>,
}

impl Checksums {
    /// A verifier for `endpoint`, which must have a key.
    pub fn new(
        endpoint: &SumdbEndpoint,
        client: UpstreamClient,
        storage: Storage,
    ) -> Result<Checksums, String> {
        let key = endpoint
            .key
            .as_deref()
            .ok_or_else(|| format!("no verifier key for checksum database {}", endpoint.name))?;
        let db = Database::parse(&format!("{key} {}", endpoint.url))?
            .ok_or("checksum database is off")?;
        let ops = StoreOps {
            name: db.name.clone(),
            url: endpoint.url.clone(),
            client,
            storage,
            flights: SingleFlight::default(),
        };
        Ok(Checksums {
            client: Client::new(db, ops),
        })
    }

    pub fn name(&self) -> &str {
        &self.client.database().name
    }

    /// Checks `hash` of `module@version`'s zip (`file` `""`) or go.mod (`"/go.mod"`).
    pub async fn verify(
        &self,
        module: &str,
        version: &str,
        file: &'static str,
        hash: &str,
    ) -> Result<(), SumdbError> {
        self.client.verify(module, version, file, hash).await
    }

    /// See [`Client::authenticate_tile`].
    pub async fn authenticate_tile(&self, path: &str, data: &Bytes) -> Result<bool, SumdbError> {
        self.client.authenticate_tile(path, data).await
    }
}

/// Checks `hash` of `module@version`'s zip (`file` `""`) or go.mod (`"/go.mod"`) against the
/// checksum database, for the modules the go command checks: not private ones (routed to git, or
/// matching a no-checksum pattern), and always `golang.org/toolchain`, which is refused when no
/// database is configured. `Ok(true)` when verified, `Ok(false)` when the module is not checked.
pub async fn verify_public(
    policy: &Policy,
    checksums: Option<&Checksums>,
    module: &ModulePath,
    version: &str,
    file: &'static str,
    hash: &str,
) -> Result<bool, CoreError> {
    let toolchain = module.as_str() == TOOLCHAIN_MODULE;
    if !toolchain
        && (policy.route(module) == Route::Direct || !policy.sum_lookup_allowed(module.as_str()))
    {
        return Ok(false);
    }
    let Some(checksums) = checksums else {
        if toolchain {
            return Err(CoreError::Blocked {
                subject: Subject::version(module, version),
                reason: "toolchains are served only when they can be verified against a checksum database, and none is configured ([sumdb])".to_owned(),
            });
        }
        return Ok(false);
    };
    match checksums.verify(module.as_str(), version, file, hash).await {
        Ok(()) => Ok(true),
        Err(e) => {
            if e.is_security() {
                tracing::error!(module.path = %module, module.version = version, error = %e, "checksum verification failed; nothing stored");
            }
            Err(CoreError::from(e))
        }
    }
}

/// [`Ops`] over the upstream HTTP client and agora's storage.
struct StoreOps {
    name: String,
    url: String,
    client: UpstreamClient,
    storage: Storage,
    flights: SingleFlight<String, Result<Bytes, Remote>>,
}

impl StoreOps {
    fn tile_key(&self, path: &str) -> StorageKey {
        StorageKey::SumdbTile {
            name: self.name.clone(),
            path: path.to_owned(),
        }
    }

    fn latest_key(&self) -> StorageKey {
        StorageKey::SumdbLatest {
            name: self.name.clone(),
        }
    }
}

#[async_trait]
impl Ops for StoreOps {
    async fn fetch(&self, path: &str) -> Result<Bytes, Remote> {
        let (client, url, rel) = (self.client.clone(), self.url.clone(), path.to_owned());
        let (result, _) = self
            .flights
            .run(format!("{}/{path}", self.name), async move {
                client
                    .get_bytes(&url, &rel, MAX_SUMDB_BODY)
                    .await
                    .map_err(|e| match e {
                        FetchError::NotFound { message, .. } => Remote::NotFound(message),
                        other => Remote::Failed(other.to_string()),
                    })
            })
            .await;
        result.map_err(|p| Remote::Failed(p.to_string()))?
    }

    async fn cached_tile(&self, path: &str) -> Option<Bytes> {
        match self.storage.get_bytes(&self.tile_key(path)).await {
            Ok(found) => found.map(|(b, _)| b),
            Err(e) => {
                tracing::warn!(error = %e, "reading a checksum-database tile from storage");
                None
            }
        }
    }

    async fn save_tile(&self, path: &str, data: Bytes) {
        if let Err(e) = self.storage.put_once(&self.tile_key(path), data).await {
            tracing::warn!(error = %e, "keeping a verified checksum-database tile");
        }
    }

    async fn load_latest(&self) -> Option<Bytes> {
        match self.storage.get_bytes_fresh(&self.latest_key()).await {
            Ok(found) => found.map(|(b, _)| b),
            Err(e) => {
                tracing::warn!(error = %e, "reading the verified tree head from storage");
                None
            }
        }
    }

    async fn save_latest(&self, note: Bytes) {
        if let Err(e) = self.storage.put_overwrite(&self.latest_key(), note).await {
            tracing::warn!(error = %e, "keeping the verified tree head");
        }
    }
}

/// A checksum-database answer.
#[derive(Clone, Debug)]
pub struct SumdbAnswer {
    pub body: Bytes,
    pub content_type: &'static str,
    /// Immutable for tiles kept in storage, which clients may cache forever.
    pub cache_policy: CachePolicy,
    pub freshness: Freshness,
    /// When a kept tile was stored (its `Last-Modified`); `None` for what is not kept.
    pub last_modified: Option<std::time::SystemTime>,
}

/// A checked path under `/sumdb/<name>/` ([`SumdbPath::parse`]): parsed once, where the request
/// arrives, and answered by [`SumdbProxy::get`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SumdbPath {
    /// `latest`: the signed tree head.
    Latest,
    /// `lookup/<module>@<version>` (escaped); `module` and `version` unescaped.
    Lookup {
        rest: String,
        module: String,
        version: String,
    },
    /// `tile/...`.
    Tile { rest: String },
}

impl SumdbPath {
    /// Validates the part after `/sumdb/<name>/`. Anything not in the checksum-database protocol
    /// is refused, so arbitrary paths are never forwarded or stored.
    pub fn parse(rest: &str) -> Option<SumdbPath> {
        parse(rest)
    }

    /// The path as requested (escaped), to forward.
    pub fn rest(&self) -> &str {
        match self {
            SumdbPath::Latest => "latest",
            SumdbPath::Lookup { rest, .. } | SumdbPath::Tile { rest } => rest,
        }
    }
}

const MAX_SUMDB_BODY: u64 = 1 << 20;

pub struct SumdbProxy {
    endpoints: Vec<SumdbEndpoint>,
    /// The verifier of the endpoint of the same name, when it has a key.
    checksums: Option<Arc<Checksums>>,
    client: UpstreamClient,
    /// Tiles are fetched through the proxy's pipeline; storage and policy are the proxy's.
    proxy: Proxy,
    flights: SingleFlight<String, Result<Bytes, CoreError>>,
}

impl SumdbProxy {
    /// Proxies `endpoints`; tiles of the database `checksums` verifies are authenticated before
    /// they are kept, others only checked for size.
    pub fn new(
        endpoints: Vec<SumdbEndpoint>,
        checksums: Option<Arc<Checksums>>,
        client: UpstreamClient,
        proxy: Proxy,
    ) -> Self {
        SumdbProxy {
            endpoints,
            checksums,
            client,
            proxy,
            flights: SingleFlight::default(),
        }
    }

    fn endpoint(&self, name: &str) -> Option<&SumdbEndpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// `/sumdb/<name>/supported`.
    pub fn supports(&self, name: &str) -> bool {
        self.endpoint(name).is_some()
    }

    /// Any other `/sumdb/<name>/<rest>` request.
    pub async fn get(
        &self,
        name: &str,
        path: &SumdbPath,
        mode: FetchMode,
    ) -> Result<SumdbAnswer, CoreError> {
        let rest = path.rest();
        let subject = || Subject::Sumdb {
            name: name.to_owned(),
            path: rest.to_owned(),
        };
        let endpoint = self.endpoint(name).ok_or_else(|| {
            CoreError::not_found(subject(), "this checksum database is not proxied here")
        })?;
        match path {
            SumdbPath::Lookup { .. } | SumdbPath::Latest => {
                if let SumdbPath::Lookup { module, .. } = path {
                    if !self.proxy.policy().sum_lookup_allowed(module) {
                        return Err(CoreError::not_found(
                            subject(),
                            "private module (matches a no-checksum pattern); not looked up",
                        ));
                    }
                }
                // Lookups and the signed tree head change over time: always asked afresh.
                if mode == FetchMode::CacheOnly {
                    return Err(CoreError::NotCached(subject()));
                }
                let body = self.fetch(endpoint, rest).await?;
                // Not stored, so no key to ask: signed text that changes as the log grows.
                Ok(SumdbAnswer {
                    body,
                    content_type: layout::SUMDB_TEXT,
                    cache_policy: CachePolicy::Mutable,
                    freshness: Freshness::Miss,
                    last_modified: None,
                })
            }
            SumdbPath::Tile { .. } => {
                let key = StorageKey::SumdbTile {
                    name: name.to_owned(),
                    path: rest.to_owned(),
                };
                let content_type = key.content_type();
                let expected = agora_sumdb::tile::expected_len(rest);
                if let Some((body, info)) = self
                    .proxy
                    .storage()
                    .get_bytes(&key)
                    .await
                    .map_err(CoreError::from)?
                {
                    if expected.is_none_or(|len| len == body.len()) {
                        return Ok(SumdbAnswer {
                            body,
                            content_type,
                            cache_policy: key.cache_policy(),
                            freshness: Freshness::Hit,
                            last_modified: Some(info.last_modified),
                        });
                    }
                    // Kept before tiles were checked; write-once, so it is bypassed, not replaced.
                    tracing::error!(
                        sumdb = name,
                        tile = rest,
                        len = body.len(),
                        "a kept checksum-database tile has the wrong size; delete it from storage"
                    );
                }
                if mode == FetchMode::CacheOnly {
                    return Err(CoreError::NotCached(subject()));
                }
                let client = self.client.clone();
                let (url, rel) = (endpoint.url.clone(), rest.to_owned());
                let fetch = async move { Ok(client.get_bytes(&url, &rel, MAX_SUMDB_BODY).await?) };
                let body = self.proxy.fetch_tile(key.clone(), fetch).await?;
                let kept = match self.checksums.as_ref().filter(|c| c.name() == name) {
                    // Kept by the verifier once authenticated.
                    Some(checksums) => match checksums.authenticate_tile(rest, &body).await {
                        Ok(kept) => kept,
                        // The tree head could not be fetched: the client checks the tile itself,
                        // but it is not kept.
                        Err(e @ SumdbError::Unavailable { .. }) => {
                            tracing::debug!(error = %e, "tile served unverified and not kept");
                            false
                        }
                        Err(e) => {
                            tracing::error!(sumdb = name, tile = rest, error = %e, "refusing a checksum-database tile");
                            return Err(CoreError::from(e));
                        }
                    },
                    None => {
                        if expected.is_some_and(|len| len != body.len()) {
                            return Err(CoreError::InvalidUpstream {
                                subject: subject(),
                                reason: format!(
                                    "{} bytes for a tile of {} bytes",
                                    body.len(),
                                    expected.unwrap_or_default()
                                ),
                            });
                        }
                        self.proxy.storage().put_once(&key, body.clone()).await?;
                        true
                    }
                };
                // An unkept tile was not authenticated: clients should ask again. A kept one was
                // stored by now (by this request or an earlier one), so a client's
                // `If-Modified-Since` of this time matches it later.
                let (cache_policy, last_modified) = if kept {
                    (key.cache_policy(), Some(std::time::SystemTime::now()))
                } else {
                    (CachePolicy::Mutable, None)
                };
                Ok(SumdbAnswer {
                    body,
                    content_type,
                    cache_policy,
                    freshness: Freshness::Miss,
                    last_modified,
                })
            }
        }
    }

    async fn fetch(&self, endpoint: &SumdbEndpoint, rest: &str) -> Result<Bytes, CoreError> {
        let client = self.client.clone();
        let url = endpoint.url.clone();
        let rel = rest.to_owned();
        let subject = Subject::Sumdb {
            name: endpoint.name.clone(),
            path: rest.to_owned(),
        };
        let (result, _) = self
            .flights
            .run(format!("{}/{rest}", endpoint.name), async move {
                client
                    .get_bytes(&url, &rel, MAX_SUMDB_BODY)
                    .await
                    .map_err(|e| CoreError::from_fetch(&subject, e))
            })
            .await;
        result.map_err(|p| CoreError::Internal(p.to_string()))?
    }
}

fn parse(rest: &str) -> Option<SumdbPath> {
    if rest == "latest" {
        return Some(SumdbPath::Latest);
    }
    if let Some(target) = rest.strip_prefix("lookup/") {
        let (path, version) = target.rsplit_once('@')?;
        let module = unescape_path(path).ok()?;
        let version = unescape_version(version).ok()?;
        return Some(SumdbPath::Lookup {
            rest: rest.to_owned(),
            module,
            version,
        });
    }
    let tile = rest.strip_prefix("tile/")?;
    let mut parts = tile.splitn(3, '/');
    let height = parts.next()?;
    let level = parts.next()?;
    let index = parts.next()?;
    if !is_small_number(height, 30) || height == "0" {
        return None;
    }
    if level != "data" && !is_small_number(level, 63) {
        return None;
    }
    let (index, width) = match index.split_once(".p/") {
        Some((i, w)) => (i, Some(w)),
        None => (index, None),
    };
    if let Some(w) = width {
        if !is_small_number(w, 255) || w == "0" {
            return None;
        }
    }
    let groups: Vec<&str> = index.split('/').collect();
    let (last, prefix) = groups.split_last()?;
    let three_digits = |s: &str| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !three_digits(last)
        || !prefix
            .iter()
            .all(|g| g.strip_prefix('x').is_some_and(three_digits))
    {
        return None;
    }
    Some(SumdbPath::Tile {
        rest: rest.to_owned(),
    })
}

/// A decimal without leading zeros, at most `max`.
fn is_small_number(s: &str, max: u32) -> bool {
    !s.is_empty()
        && s.len() <= 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.parse::<u32>().is_ok_and(|n| n <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_checksum_database_protocol() {
        assert_eq!(parse("latest"), Some(SumdbPath::Latest));
        assert_eq!(
            parse("lookup/github.com/!burnt!sushi/toml@v1.2.0"),
            Some(SumdbPath::Lookup {
                rest: "lookup/github.com/!burnt!sushi/toml@v1.2.0".into(),
                module: "github.com/BurntSushi/toml".into(),
                version: "v1.2.0".into(),
            })
        );
        for tile in ["tile/8/0/000", "tile/8/data/x001/x234/567.p/13"] {
            let parsed = parse(tile).unwrap();
            assert_eq!(parsed.rest(), tile);
            assert!(matches!(parsed, SumdbPath::Tile { .. }));
        }
        for bad in [
            "",
            "supported",
            "lookup/github.com/x",
            "lookup/../../etc@v1",
            "lookup/github.com/Upper@v1.0.0",
            "tile/8/0/00",
            "tile/8/0/../000",
            "tile/08/0/000",
            "tile/8/0/000.p/0",
            "tile/8/0/000.p/256",
            "tile/8/0/x1/000",
            "tile/8/0/000/",
            "tile/8/x/000",
            "other/thing",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
