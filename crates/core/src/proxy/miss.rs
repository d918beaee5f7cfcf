//! What a cache miss does under the module's download mode.

use agora_storage::StorageKey;

use super::{key_module, FetchMode, Proxy};
use crate::error::{CoreError, Subject};
use crate::policy::DownloadMode;

impl Proxy {
    /// Decides what a cache miss of `key` does under `mode` and the module's download mode: `Ok`
    /// means fetch now; `async` starts the fetch as its own task and answers "not yet".
    pub(super) fn on_miss(&self, mode: FetchMode, key: &StorageKey) -> Result<(), CoreError> {
        let subject = Subject::of_key(key);
        match mode {
            FetchMode::CacheOnly => return Err(CoreError::NotCached(subject)),
            FetchMode::Background => return Ok(()),
            FetchMode::Fetch => {}
        }
        let Some(module) = key_module(key) else {
            return Ok(());
        };
        match self.inner.policy.download_mode(module) {
            DownloadMode::Sync => Ok(()),
            DownloadMode::None => Err(CoreError::NotCached(subject)),
            DownloadMode::Redirect(base) => Err(CoreError::Redirect {
                subject,
                // Storage keys are the GOPROXY layout, so a key's path is the request path.
                location: format!("{}/{}", base.trim_end_matches('/'), key.path()),
            }),
            DownloadMode::Async => {
                tokio::spawn(tracing::Instrument::in_current_span(
                    self.clone().fill(key.clone()),
                ));
                Err(CoreError::FetchingInBackground(subject))
            }
        }
    }

    /// Fetches `key` whatever the download mode (the background half of `async`).
    pub(super) async fn fill(self, key: StorageKey) {
        let result = match &key {
            StorageKey::SumdbTile { .. } | StorageKey::SumdbLatest { .. } => Ok(()),
            _ => self.fetch(key, None).await.map(drop),
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "background fetch failed");
        }
    }
}
