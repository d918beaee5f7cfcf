//! The minimum release age of filter rules ([`crate::filter::MinAge`]): a public version younger
//! than its rule asks is refused (403 with `Retry-After`), left out of `@v/list`, and never the
//! answer to `@latest`, until it is old enough. A version's age comes from its time: a
//! pseudo-version carries it, anything else has it in its `.info` (read from the cache, or
//! fetched and kept like any other `.info`). Private modules are the company's own code and are
//! never held back.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use agora_gomod::module::ModulePath;
use agora_gomod::pseudo;
use agora_storage::{ArtifactKind, StorageKey};
use bytes::Bytes;
use futures::StreamExt;

use super::{FetchMode, Proxy, Served};
use crate::error::{CoreError, Subject};
use crate::filter::MinAge;
use crate::policy::Route;

/// `.info` files read or fetched at once while a list is checked.
const LIST_CONCURRENCY: usize = 8;

impl Proxy {
    pub(super) fn min_age(&self, module: &ModulePath, version: &str) -> Option<MinAge> {
        if self.inner.policy.route(module) == Route::Direct {
            return None;
        }
        self.inner.policy.filter().min_age(module.as_str(), version)
    }

    /// Refuses `module@version` while it is younger than its rule's minimum age. `time` is the
    /// version's time when the caller already has it; otherwise its `.info` is read, or fetched
    /// as `mode` allows.
    pub(super) async fn check_age(
        &self,
        module: &ModulePath,
        version: &str,
        time: Option<SystemTime>,
        mode: FetchMode,
    ) -> Result<(), CoreError> {
        let Some(min) = self.min_age(module, version) else {
            return Ok(());
        };
        let published = match time {
            Some(t) => t,
            None => self.version_time(module, version, mode).await?,
        };
        let allowed_from = published + min.age;
        if SystemTime::now() >= allowed_from {
            return Ok(());
        }
        Err(CoreError::TooNew {
            subject: Subject::version(module, version),
            published,
            allowed_from,
            rule: min.rule,
        })
    }

    /// An `.info` answer, checked: its version must be old enough.
    pub(super) async fn check_info_age(
        &self,
        module: &ModulePath,
        body: &Bytes,
    ) -> Result<(), CoreError> {
        if !self.inner.policy.filter().has_min_age(module.as_str()) {
            return Ok(());
        }
        let (version, time) = version_and_time(body).ok_or_else(|| CoreError::InvalidUpstream {
            subject: Subject::Module(module.clone()),
            reason: "an .info without Version and Time; its minimum release age cannot be checked"
                .to_owned(),
        })?;
        self.check_age(module, &version, Some(time), FetchMode::CacheOnly)
            .await
    }

    /// When `module@version` was published.
    async fn version_time(
        &self,
        module: &ModulePath,
        version: &str,
        mode: FetchMode,
    ) -> Result<SystemTime, CoreError> {
        if pseudo::is_pseudo_version(version) {
            if let Ok(t) = pseudo::pseudo_version_parsed_time(version) {
                return Ok(unix_time(t.to_unix()));
            }
        }
        let key = StorageKey::artifact(module, version, ArtifactKind::Info);
        let body = match self.inner.storage.get_bytes(&key).await? {
            Some((body, _)) => body,
            None => {
                self.on_miss(mode, &key)?;
                Box::pin(self.fetch(key, None)).await?
            }
        };
        version_and_time(&body)
            .map(|(_, t)| t)
            .ok_or_else(|| CoreError::InvalidUpstream {
                subject: Subject::version(module, version),
                reason: "the .info has no Time; its minimum release age cannot be checked"
                    .to_owned(),
            })
    }

    /// A `/@v/list` body without the versions too young to serve. A version whose time cannot
    /// be learned is left out too (and logged): the rule holds even when an upstream fails.
    pub(super) async fn drop_young(
        &self,
        module: &ModulePath,
        body: Bytes,
        mode: FetchMode,
    ) -> Bytes {
        if self.inner.policy.route(module) == Route::Direct
            || !self.inner.policy.filter().has_min_age(module.as_str())
        {
            return body;
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        let versions: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        let checked: Vec<(String, Result<(), CoreError>)> = futures::stream::iter(versions)
            .map(|v| async move {
                let checked = self.check_age(module, &v, None, mode).await;
                (v, checked)
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .collect()
            .await;
        let mut young = HashSet::new();
        for (v, checked) in checked {
            match checked {
                Ok(()) => continue,
                Err(CoreError::TooNew { .. }) => {}
                Err(err @ CoreError::NotCached(_)) => {
                    tracing::debug!(error = %err, "version left out of a cache-only list: its age is unknown");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "version left out of the list: its age is unknown");
                }
            }
            young.insert(v);
        }
        if young.is_empty() {
            return body;
        }
        crate::filter::retain_versions(&body, |v| !young.contains(v))
    }

    /// `@latest` when the version it names is too new: the highest version of the list that is
    /// old enough (releases before pre-releases, as the go command picks), or the refusal.
    pub(super) async fn latest_old_enough(
        &self,
        module: &ModulePath,
        latest: Served,
        mode: FetchMode,
    ) -> Result<Served, CoreError> {
        let refusal = match self.check_info_age(module, &latest.body).await {
            Ok(()) => return Ok(latest),
            Err(err @ CoreError::TooNew { .. }) => err,
            Err(err) => return Err(err),
        };
        self.latest_from_list(module, refusal, mode).await
    }

    /// `@latest` when the version it names may not be served (too new, quarantined): the highest
    /// version of the list, which leaves out what may not be served (releases before
    /// pre-releases, as the go command picks), or `refusal` when none is left.
    pub(super) async fn latest_from_list(
        &self,
        module: &ModulePath,
        refusal: CoreError,
        mode: FetchMode,
    ) -> Result<Served, CoreError> {
        let list = self.list(module, mode).await?;
        let text = String::from_utf8_lossy(&list.body);
        let best = agora_index::latest_of(text.lines().filter_map(|l| l.split_whitespace().next()));
        match best {
            Some(version) => self.info(module, &version, mode).await,
            None => Err(refusal),
        }
    }
}

/// The time a pseudo-version carries.
pub(super) fn pseudo_time(version: &str) -> Option<SystemTime> {
    if !pseudo::is_pseudo_version(version) {
        return None;
    }
    let t = pseudo::pseudo_version_parsed_time(version).ok()?;
    Some(unix_time(t.to_unix()))
}

/// The `Time` of an `.info` body.
pub(super) fn info_time(body: &[u8]) -> Option<SystemTime> {
    version_and_time(body).map(|(_, t)| t)
}

fn unix_time(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()),
    }
}

/// `Version` and `Time` of an `.info` body.
fn version_and_time(body: &[u8]) -> Option<(String, SystemTime)> {
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(rename = "Version")]
        version: String,
        #[serde(rename = "Time")]
        time: Option<String>,
    }
    let info: Info = serde_json::from_slice(body).ok()?;
    let time = chrono::DateTime::parse_from_rfc3339(info.time.as_deref()?).ok()?;
    Some((info.version, SystemTime::from(time)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_times_with_offsets_and_fractions() {
        let (v, t) =
            version_and_time(br#"{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}"#).unwrap();
        assert_eq!(v, "v1.0.0");
        assert_eq!(t, unix_time(1_704_164_645));
        let (_, t2) =
            version_and_time(br#"{"Version":"v1.0.0","Time":"2024-01-02T05:04:05.5+02:00"}"#)
                .unwrap();
        assert_eq!(t2, unix_time(1_704_164_645) + Duration::from_millis(500));
        assert!(version_and_time(br#"{"Version":"v1.0.0"}"#).is_none());
        assert!(unix_time(-62_135_596_800) < SystemTime::UNIX_EPOCH);
    }
}
