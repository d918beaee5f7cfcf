//! Rebuilding the index from the store: for a lost or damaged index, or a store filled by other
//! means (a copied data directory, a bucket synced from elsewhere).
//!
//! One walk of [`Storage::list`] from the root; every `<module>/@v/<version>.{info,mod,zip}` is
//! recorded with its size, its modification time as its stored time (and so as its version's
//! feed time: the feed tells when this proxy got a version, which the `.info` `Time`, the
//! commit's time, does not) and an unknown origin. Nothing is read but the listing, unless
//! [`RebuildOptions::hash`] asks for the `h1:` of `.mod` files and zips, which reads every one
//! of them (a zip goes through a temporary file: its hash needs the central directory at its
//! end). Quarantines are kept; served counts start again from zero.
//!
//! It runs in one transaction, so readers see the old index until the new one is complete.

use std::io::{Seek, Write};

use agora_storage::layout::VersionFile;
use agora_storage::{ArtifactKind, Storage, StorageKey};
use futures::{StreamExt, TryStreamExt};

use crate::db::on_db;
use crate::error::IndexError;
use crate::index::{insert_stored, CHUNK};
use crate::model::{ArtifactRecord, Origin};
use crate::Index;

/// How to rebuild.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebuildOptions {
    /// Read every `.mod` and zip to record its `h1:` (slow on a large remote store).
    pub hash: bool,
}

/// What a rebuild found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub artifacts: u64,
    pub bytes: u64,
    /// Objects that are not version artifacts (lists, `@latest`, tiles, foreign files).
    pub skipped: u64,
}

impl Index {
    /// Replaces the index's artifacts and versions with what `storage` holds.
    pub async fn rebuild(
        &self,
        storage: &Storage,
        options: RebuildOptions,
    ) -> Result<RebuildReport, IndexError> {
        let mut report = RebuildReport::default();
        let err = || IndexError::query("rebuild");
        on_db!(self.db(), pool => {
            let mut tx = pool.begin().await.map_err(err())?;
            sqlx::query("DELETE FROM artifacts").execute(&mut *tx).await.map_err(err())?;
            sqlx::query("DELETE FROM versions").execute(&mut *tx).await.map_err(err())?;
            let mut listing = storage.list("");
            let mut batch: Vec<ArtifactRecord> = Vec::with_capacity(CHUNK);
            while let Some(listed) = listing.try_next().await? {
                let Some(file) = VersionFile::parse(&listed.path) else {
                    report.skipped += 1;
                    continue;
                };
                let Some(kind) = ArtifactKind::from_extension(file.ext) else {
                    report.skipped += 1;
                    continue;
                };
                let mut record = ArtifactRecord {
                    module: file.module,
                    version: file.version,
                    kind,
                    size: listed.size,
                    h1: None,
                    stored_at: listed.last_modified,
                    origin: Origin::Unknown,
                };
                if options.hash {
                    record.h1 = hash(storage, &record.key(), kind).await?;
                }
                report.artifacts += 1;
                report.bytes += listed.size;
                batch.push(record);
                if batch.len() == CHUNK {
                    insert_stored!(&mut *tx, &batch);
                    batch.clear();
                }
            }
            if !batch.is_empty() {
                insert_stored!(&mut *tx, &batch);
            }
            tx.commit().await.map_err(err())?;
        });
        tracing::info!(
            index.artifacts = report.artifacts,
            index.bytes = report.bytes,
            "index rebuilt from storage"
        );
        Ok(report)
    }
}

/// The `h1:` of a stored `.mod` or zip (`None` for `.info`, or an object gone meanwhile).
async fn hash(
    storage: &Storage,
    key: &StorageKey,
    kind: ArtifactKind,
) -> Result<Option<String>, IndexError> {
    match kind {
        ArtifactKind::Info => Ok(None),
        ArtifactKind::Mod => Ok(storage
            .get_bytes(key)
            .await?
            .map(|(body, _)| agora_gomod::hash_go_mod(&body))),
        ArtifactKind::Zip => {
            let Some(object) = storage.get(key).await? else {
                return Ok(None);
            };
            let io = |e: std::io::Error| IndexError::Invalid {
                what: "zip",
                reason: format!("{}: {e}", key.path()),
            };
            let mut file = tempfile::tempfile().map_err(io)?;
            let mut body = object.body;
            while let Some(chunk) = body.next().await {
                file.write_all(&chunk.map_err(io)?).map_err(io)?;
            }
            file.rewind().map_err(io)?;
            // A damaged zip gets no hash rather than failing the whole rebuild.
            let h1 = tokio::task::spawn_blocking(move || agora_gomod::hash_zip(file).ok())
                .await
                .ok()
                .flatten();
            Ok(h1)
        }
    }
}
