//! Answers from agora's own checksum database ([`crate::checksum_db`]): a lookup of a version
//! not in the log yet first makes sure the version is served (fetched and, for public modules,
//! verified against the public database by the usual pipeline), then appends its hashes.

use agora_gomod::module::ModulePath;
use agora_storage::{ArtifactKind, StorageKey};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::{FetchMode, Proxy};
use crate::checksum_db::{ChecksumDb, Entry};
use crate::error::{CoreError, Subject};

impl Proxy {
    /// agora's own checksum database, when configured.
    pub fn checksum_db(&self) -> Option<&ChecksumDb> {
        self.inner.own_db.as_ref()
    }

    /// The own database's `lookup/module@version` answer, adding the version first if needed.
    pub async fn own_lookup(&self, module: &ModulePath, version: &str) -> Result<Bytes, CoreError> {
        let db = self
            .checksum_db()
            .ok_or_else(|| CoreError::Internal("no checksum database of agora's own".into()))?;
        if let Some(answer) = db.lookup(module, version).await? {
            return Ok(answer);
        }
        if !crate::validate::is_canonical(version) {
            return Err(CoreError::not_found(
                Subject::version(module, version),
                "invalid version: not a canonical version",
            ));
        }
        let entry = self.entry_of(module, version).await?;
        db.add(&[entry]).await?;
        db.lookup(module, version).await?.ok_or_else(|| {
            CoreError::Internal(format!(
                "{module}@{version}: not in the log right after it was added"
            ))
        })
    }

    /// The go.sum hashes of a version agora serves (fetched now if need be).
    async fn entry_of(&self, module: &ModulePath, version: &str) -> Result<Entry, CoreError> {
        let go_mod = self.go_mod(module, version, FetchMode::Fetch).await?;
        let mod_h1 = agora_gomod::dirhash::hash_go_mod(&go_mod.body);
        let (zip, _) = self.zip(module, version, FetchMode::Fetch).await?;
        let key = StorageKey::artifact(module, version, ArtifactKind::Zip);
        let recorded = match self.index() {
            Some(index) => index.artifact(&key).await.ok().flatten().and_then(|a| a.h1),
            None => None,
        };
        let zip_h1 = match recorded {
            Some(h1) => h1,
            None => {
                // Hash the stored zip (the index did not record its hash yet).
                let scratch = self
                    .inner
                    .storage
                    .scratch_file(&format!("{module}@{version}-sum"));
                let mut file = tokio::fs::File::create(scratch.path())
                    .await
                    .map_err(|e| CoreError::Internal(format!("scratch file: {e}")))?;
                let mut body = zip.body;
                use futures::StreamExt;
                while let Some(chunk) = body.next().await {
                    let chunk =
                        chunk.map_err(|e| CoreError::Internal(format!("reading zip: {e}")))?;
                    file.write_all(&chunk)
                        .await
                        .map_err(|e| CoreError::Internal(format!("scratch file: {e}")))?;
                }
                file.flush()
                    .await
                    .map_err(|e| CoreError::Internal(format!("scratch file: {e}")))?;
                drop(file);
                let path = scratch.path().to_owned();
                tokio::task::spawn_blocking(move || {
                    let f = std::fs::File::open(&path)?;
                    agora_gomod::dirhash::hash_zip(f)
                        .map_err(|e| std::io::Error::other(e.to_string()))
                })
                .await
                .map_err(|e| CoreError::Internal(format!("hashing crashed: {e}")))?
                .map_err(|e| CoreError::Internal(format!("hashing the zip: {e}")))?
            }
        };
        Ok(Entry {
            module: module.clone(),
            version: version.to_owned(),
            zip_h1,
            mod_h1,
        })
    }
}
