//! Checksum-database proxying (`/sumdb/<name>/...`).
//!
//! The go command asks `<proxy>/sumdb/<name>/supported` and, on 200, sends all its checksum
//! traffic through the proxy. Bodies pass through unchanged (they are signed). Tiles never change,
//! so they are cached; lookups for private paths are refused locally and never leave the building.

use std::sync::Arc;

use agora_gomod::module::{unescape_path, unescape_version};
use agora_storage::{Storage, StorageKey};
use agora_upstream::UpstreamClient;
use bytes::Bytes;

use crate::error::CoreError;
use crate::policy::Policy;
use crate::proxy::{FetchMode, Freshness};
use crate::singleflight::SingleFlight;

/// A checksum database agora proxies: `name` as clients know it (`sum.golang.org`), `url` where
/// agora reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SumdbEndpoint {
    pub name: String,
    pub url: String,
}

/// A checksum-database answer.
#[derive(Clone, Debug)]
pub struct SumdbAnswer {
    pub body: Bytes,
    pub content_type: &'static str,
    /// Tiles are immutable and may be cached by clients forever.
    pub immutable: bool,
    pub freshness: Freshness,
}

/// What a validated `/sumdb/<name>/<rest>` request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SumdbPath {
    Latest,
    Lookup { module: String },
    Tile { data: bool },
}

const MAX_SUMDB_BODY: u64 = 1 << 20;

pub struct SumdbProxy {
    endpoints: Vec<SumdbEndpoint>,
    client: UpstreamClient,
    storage: Storage,
    policy: Policy,
    flights: SingleFlight<String, Result<Bytes, Arc<CoreError>>>,
}

impl SumdbProxy {
    pub fn new(
        endpoints: Vec<SumdbEndpoint>,
        client: UpstreamClient,
        storage: Storage,
        policy: Policy,
    ) -> Self {
        SumdbProxy {
            endpoints,
            client,
            storage,
            policy,
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
        rest: &str,
        mode: FetchMode,
    ) -> Result<SumdbAnswer, Arc<CoreError>> {
        let endpoint = self.endpoint(name).ok_or_else(|| {
            Arc::new(CoreError::NotFound(format!(
                "checksum database {name:?} is not proxied here"
            )))
        })?;
        let parsed = parse(rest).ok_or_else(|| {
            Arc::new(CoreError::NotFound(format!(
                "invalid checksum database path {rest:?}"
            )))
        })?;
        let text = "text/plain; charset=UTF-8";
        match &parsed {
            SumdbPath::Lookup { .. } | SumdbPath::Latest => {
                if let SumdbPath::Lookup { module } = &parsed {
                    if !self.policy.sum_lookup_allowed(module) {
                        return Err(Arc::new(CoreError::NotFound(format!(
                            "{module}: private module (matches a no-checksum pattern); not looked up"
                        ))));
                    }
                }
                // Lookups and the signed tree head change over time: always asked afresh.
                if mode == FetchMode::CacheOnly {
                    return Err(Arc::new(CoreError::NotCached(format!("{name} {rest}"))));
                }
                let body = self.fetch(endpoint, rest).await?;
                Ok(SumdbAnswer {
                    body,
                    content_type: text,
                    immutable: false,
                    freshness: Freshness::Miss,
                })
            }
            SumdbPath::Tile { data } => {
                let content_type = if *data {
                    text
                } else {
                    "application/octet-stream"
                };
                let key = StorageKey::SumdbTile {
                    name: name.to_owned(),
                    path: rest.to_owned(),
                };
                if let Some((body, _)) = self.storage.get_bytes(&key).await.map_err(arc)? {
                    return Ok(SumdbAnswer {
                        body,
                        content_type,
                        immutable: true,
                        freshness: Freshness::Hit,
                    });
                }
                if mode == FetchMode::CacheOnly {
                    return Err(Arc::new(CoreError::NotCached(format!("{name} {rest}"))));
                }
                let body = self.fetch(endpoint, rest).await?;
                self.storage
                    .put_once(&key, body.clone())
                    .await
                    .map_err(arc)?;
                Ok(SumdbAnswer {
                    body,
                    content_type,
                    immutable: true,
                    freshness: Freshness::Miss,
                })
            }
        }
    }

    async fn fetch(&self, endpoint: &SumdbEndpoint, rest: &str) -> Result<Bytes, Arc<CoreError>> {
        let client = self.client.clone();
        let url = endpoint.url.clone();
        let rel = rest.to_owned();
        let what = format!("{} {rest}", endpoint.name);
        let (result, _) = self
            .flights
            .run(format!("{}/{rest}", endpoint.name), async move {
                client
                    .get_bytes(&url, &rel, MAX_SUMDB_BODY)
                    .await
                    .map_err(|e| Arc::new(CoreError::from_fetch(&what, e)))
            })
            .await;
        result.map_err(|p| Arc::new(CoreError::Internal(p.to_string())))?
    }
}

fn arc(e: impl Into<CoreError>) -> Arc<CoreError> {
    Arc::new(e.into())
}

/// Validates the part after `/sumdb/<name>/`. Anything not in the checksum-database protocol is
/// refused, so arbitrary paths are never forwarded or stored.
fn parse(rest: &str) -> Option<SumdbPath> {
    if rest == "latest" {
        return Some(SumdbPath::Latest);
    }
    if let Some(target) = rest.strip_prefix("lookup/") {
        let (path, version) = target.rsplit_once('@')?;
        let module = unescape_path(path).ok()?;
        unescape_version(version).ok()?;
        return Some(SumdbPath::Lookup { module });
    }
    let tile = rest.strip_prefix("tile/")?;
    let mut parts = tile.splitn(3, '/');
    let height = parts.next()?;
    let level = parts.next()?;
    let index = parts.next()?;
    if !is_small_number(height, 30) || height == "0" {
        return None;
    }
    let data = level == "data";
    if !data && !is_small_number(level, 63) {
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
    Some(SumdbPath::Tile { data })
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
                module: "github.com/BurntSushi/toml".into()
            })
        );
        assert_eq!(parse("tile/8/0/000"), Some(SumdbPath::Tile { data: false }));
        assert_eq!(
            parse("tile/8/data/x001/x234/567.p/13"),
            Some(SumdbPath::Tile { data: true })
        );
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
