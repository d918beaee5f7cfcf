//! [`Storage::list`]: walking the stored tree, for tools (import, export, audits) and tests.
//!
//! Never on the request path: serving a request costs one `GET` (or `HEAD` + `GET`) of a known
//! key, whatever the store's size. Listing pages through the backend (1,000 keys a request on S3).

use std::time::SystemTime;

use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;

use crate::error::StorageError;
use crate::store::Storage;

/// One stored object, as [`Storage::list`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The object's path in the GOPROXY layout (what [`StorageKey::path`](crate::StorageKey::path)
    /// gives for it), relative to the store's root or prefix.
    pub path: String,
    pub size: u64,
    pub last_modified: SystemTime,
}

impl Storage {
    /// Every object under `prefix`, in no particular order. `prefix` is a directory: whole path
    /// elements, so `a/b` lists `a/b/...` but never `a/bc/...`; empty lists everything (except the
    /// proxy-private `_agora/` tree, which is only listed when asked for by name).
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed, StorageError>> {
        let trimmed = prefix.trim_matches('/');
        let parsed = match ObjectPath::parse(trimmed) {
            Ok(p) => p,
            Err(e) => {
                let err = StorageError::Config {
                    setting: "list prefix".to_owned(),
                    reason: format!("{prefix:?}: {e}"),
                };
                return futures::stream::once(async move { Err(err) }).boxed();
            }
        };
        let from_root = trimmed.is_empty();
        let key = trimmed.to_owned();
        self.object_store()
            .list((!from_root).then_some(&parsed))
            .filter_map(move |item| {
                let out = match item {
                    Ok(meta) => {
                        let path = meta.location.as_ref().to_owned();
                        // A key equal to the prefix is not under it (some backends report it).
                        let skip = (from_root && crate::layout::is_private(&path)) || path == key;
                        (!skip).then(|| {
                            Ok(Listed {
                                path,
                                size: meta.size,
                                last_modified: SystemTime::from(meta.last_modified),
                            })
                        })
                    }
                    // Not mapped to an empty listing: on S3 it means the bucket is missing.
                    Err(source) => Some(Err(StorageError::Backend {
                        op: "list",
                        key: key.clone(),
                        source,
                    })),
                };
                futures::future::ready(out)
            })
            .boxed()
    }
}
