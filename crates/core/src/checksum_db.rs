//! [`ChecksumDb`]: a checksum database of agora's own, so that private modules are verified by
//! the go command like public ones (`GOSUMDB=name+hash+key`, no `GONOSUMDB`). A transparency log
//! in the exact format of sum.golang.org (records, tiles of height 8, signed tree heads), kept
//! in agora's storage under `_agora/checksum-db/<name>/`.
//!
//! Durable and append-only on every backend: an append writes its tiles and lookup entries
//! first and publishes the new signed tree head last (one object). Until then nothing it wrote
//! is visible: readers only believe what lies inside the published tree (a lookup entry names a
//! record id below the published size, and the record at that id must be the version asked
//! for), so a crash leaves at most unpublished objects, which the next append rewrites. Appends
//! take the shared lock (Redis, when replicas share the store) and a lock in this process, so
//! the tree never forks. Once a version is in the log its hashes never change: the proxy refuses
//! different bytes for it (a tag moved in git) naming both hashes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agora_gomod::module::{escape_path, escape_version, ModulePath};
use agora_storage::{Storage, StorageKey};
use agora_sumdb::log::{self, LogKey};
use agora_sumdb::{Mismatch, SumdbError, Tree};
use bytes::Bytes;
use tlog_tiles::{Hash, HashReader, Tile};

use crate::error::CoreError;
use crate::lock::FetchLock;

/// How long an append waits for another writer.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// One version's go.sum hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub module: ModulePath,
    pub version: String,
    pub zip_h1: String,
    pub mod_h1: String,
}

/// A version found in the log.
#[derive(Clone, Debug)]
pub struct Found {
    pub id: u64,
    /// Its go.sum lines.
    pub text: Bytes,
}

/// The database (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct ChecksumDb {
    inner: Arc<Inner>,
}

struct Inner {
    key: LogKey,
    /// The database as clients see it (its verifier key), to open the stored tree head.
    db: agora_sumdb::Database,
    storage: Storage,
    lock: Option<Arc<dyn FetchLock>>,
    local: tokio::sync::Mutex<()>,
}

impl ChecksumDb {
    pub fn new(key: LogKey, storage: Storage, lock: Option<Arc<dyn FetchLock>>) -> Self {
        let db = agora_sumdb::Database::parse(key.verifier_key())
            .ok()
            .flatten()
            .expect("a verifier key made from a parsed signer key is a GOSUMDB key");
        ChecksumDb {
            inner: Arc::new(Inner {
                key,
                db,
                storage,
                lock,
                local: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn name(&self) -> &str {
        self.inner.key.name()
    }

    /// `name+hash+key`, for clients' `GOSUMDB`.
    pub fn verifier_key(&self) -> &str {
        self.inner.key.verifier_key()
    }

    fn key(&self, path: impl Into<String>) -> StorageKey {
        StorageKey::OwnSumdb {
            name: self.name().to_owned(),
            path: path.into(),
        }
    }

    async fn read(&self, path: impl Into<String>) -> Result<Option<Bytes>, CoreError> {
        let key = self.key(path);
        Ok(self.inner.storage.get_bytes(&key).await?.map(|(b, _)| b))
    }

    async fn write(&self, path: impl Into<String>, body: Vec<u8>) -> Result<(), CoreError> {
        let key = self.key(path);
        Ok(self
            .inner
            .storage
            .put_overwrite(&key, Bytes::from(body))
            .await?)
    }

    /// The published tree and its signed note (an empty tree when nothing was appended yet).
    pub async fn published(&self) -> Result<(Tree, Bytes), CoreError> {
        match self.read("latest").await? {
            Some(note) => {
                let tree = agora_sumdb::tree::open(&self.inner.db, &note).map_err(|e| {
                    CoreError::Internal(format!(
                        "the published tree head of {} does not verify with its key: {e}",
                        self.name()
                    ))
                })?;
                Ok((tree, note))
            }
            None => {
                let tree = Tree {
                    n: 0,
                    hash: Hash([0; 32]),
                };
                let note = self.sign(&tree)?;
                Ok((tree, Bytes::from(note)))
            }
        }
    }

    fn sign(&self, tree: &Tree) -> Result<Vec<u8>, CoreError> {
        self.inner
            .key
            .sign_tree(tree)
            .map_err(|e| CoreError::Internal(e.to_string()))
    }

    /// A tile of the published tree (`tile/8/L/NNN[.p/W]` or `tile/8/data/...`); `None` for
    /// one outside it.
    pub async fn tile(&self, path: &str) -> Result<Option<Bytes>, CoreError> {
        let Some(tile) = agora_sumdb::tile::parse(path) else {
            return Ok(None);
        };
        let (tree, _) = self.published().await?;
        let level = (!tile.is_data()).then(|| tile.level());
        let full_width = log::width_at(level, tile.level_index(), tree.n);
        if full_width == 0 || tile.width() > full_width {
            return Ok(None);
        }
        // A narrower tile than the tree's is the prefix of the wider one stored.
        let stored = log::tile_at(level, tile.level_index(), tree.n)
            .expect("width checked above")
            .path();
        let Some(body) = self.read(stored).await? else {
            return Err(CoreError::Internal(format!(
                "{}: tile {path} of the published tree is missing from storage",
                self.name()
            )));
        };
        if tile.width() == full_width {
            return Ok(Some(body));
        }
        if tile.is_data() {
            let records = agora_sumdb::record::data_tile_records(
                &body,
                tile.level_index() << 8,
                full_width as usize,
            )
            .ok_or_else(|| {
                CoreError::Internal(format!("{}: data tile {path} unreadable", self.name()))
            })?;
            return Ok(Some(Bytes::from(log::data_tile(
                &records[..tile.width() as usize],
            ))));
        }
        Ok(Some(body.slice(..tile.width() as usize * 32)))
    }

    /// `module@version` in the published log.
    pub async fn find(
        &self,
        module: &ModulePath,
        version: &str,
    ) -> Result<Option<Found>, CoreError> {
        let (tree, _) = self.published().await?;
        self.find_in(&tree, module, version).await
    }

    async fn find_in(
        &self,
        tree: &Tree,
        module: &ModulePath,
        version: &str,
    ) -> Result<Option<Found>, CoreError> {
        let Some(entry) = self.read(lookup_path(module, version)).await? else {
            return Ok(None);
        };
        let Some(id) = std::str::from_utf8(&entry)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|id| *id < tree.n)
        else {
            // Written by an append that never published.
            return Ok(None);
        };
        let text = self.record(tree, id).await?;
        let want = format!("{module} {version} ");
        if !text.starts_with(want.as_bytes()) {
            return Ok(None);
        }
        Ok(Some(Found { id, text }))
    }

    /// Record `id` of `tree`, from its data tile.
    async fn record(&self, tree: &Tree, id: u64) -> Result<Bytes, CoreError> {
        let n = id >> 8;
        let tile = log::tile_at(None, n, tree.n)
            .ok_or_else(|| CoreError::Internal(format!("record {id} is outside the tree")))?;
        let body = self.read(tile.path()).await?.ok_or_else(|| {
            CoreError::Internal(format!("{}: {} is missing", self.name(), tile.path()))
        })?;
        let records = agora_sumdb::record::data_tile_records(&body, n << 8, tile.width() as usize)
            .ok_or_else(|| {
                CoreError::Internal(format!("{}: {} unreadable", self.name(), tile.path()))
            })?;
        Ok(Bytes::copy_from_slice(records[(id - (n << 8)) as usize]))
    }

    /// The `lookup` answer for a version in the log.
    pub async fn lookup(
        &self,
        module: &ModulePath,
        version: &str,
    ) -> Result<Option<Bytes>, CoreError> {
        let (tree, note) = self.published().await?;
        Ok(self
            .find_in(&tree, module, version)
            .await?
            .map(|f| Bytes::from(log::lookup_answer(f.id, &f.text, &note))))
    }

    /// Refuses hashes that differ from the log's record of `module@version` (`file`: `""` for
    /// the zip, `"/go.mod"`); a version not in the log passes.
    pub async fn check(
        &self,
        module: &ModulePath,
        version: &str,
        file: &'static str,
        h1: &str,
    ) -> Result<(), CoreError> {
        let Some(found) = self.find(module, version).await? else {
            return Ok(());
        };
        let recorded = agora_sumdb::record::hash_for(&found.text, module.as_str(), version, file)
            .unwrap_or_default();
        if recorded == h1 {
            return Ok(());
        }
        Err(CoreError::Checksum(Arc::new(SumdbError::Mismatch(
            Box::new(Mismatch {
                db: self.name().to_owned(),
                module: module.to_string(),
                version: version.to_owned(),
                file,
                ours: h1.to_owned(),
                recorded: recorded.to_owned(),
            }),
        ))))
    }

    /// Appends the versions not in the log yet (a version already there with other hashes is
    /// refused, naming both). Publishes one new tree for all of them.
    pub async fn add(&self, entries: &[Entry]) -> Result<Tree, CoreError> {
        let _local = self.inner.local.lock().await;
        let _shared = match &self.inner.lock {
            Some(lock) => Some(self.take_shared(lock.as_ref()).await?),
            None => None,
        };
        let (tree, _) = self.published().await?;
        let mut texts: Vec<(Entry, String)> = Vec::new();
        for e in entries {
            if let Some(found) = self.find_in(&tree, &e.module, &e.version).await? {
                for (file, h1) in [("", &e.zip_h1), ("/go.mod", &e.mod_h1)] {
                    let recorded = agora_sumdb::record::hash_for(
                        &found.text,
                        e.module.as_str(),
                        &e.version,
                        file,
                    )
                    .unwrap_or_default();
                    if recorded != h1.as_str() {
                        return Err(CoreError::Checksum(Arc::new(SumdbError::Mismatch(
                            Box::new(Mismatch {
                                db: self.name().to_owned(),
                                module: e.module.to_string(),
                                version: e.version.clone(),
                                file,
                                ours: h1.clone(),
                                recorded: recorded.to_owned(),
                            }),
                        ))));
                    }
                }
                continue;
            }
            if texts
                .iter()
                .any(|(t, _)| t.module == e.module && t.version == e.version)
            {
                continue;
            }
            let text = log::record_text(e.module.as_str(), &e.version, &e.zip_h1, &e.mod_h1);
            texts.push((e.clone(), text));
        }
        if texts.is_empty() {
            return Ok(tree);
        }
        // Hashes of the published tree come from its stored tiles; the computation is
        // synchronous, so it reads them on a blocking thread.
        let this = self.clone();
        let old = tree;
        let bodies: Vec<Vec<u8>> = texts.iter().map(|(_, t)| t.clone().into_bytes()).collect();
        let handle = tokio::runtime::Handle::current();
        let appended = tokio::task::spawn_blocking(move || {
            let reader = StoredHashes {
                db: &this,
                tree: old,
                handle,
                tiles: std::sync::Mutex::new(HashMap::new()),
            };
            let records: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            log::append(old.n, &reader, &records)
        })
        .await
        .map_err(|e| CoreError::Internal(format!("append crashed: {e}")))?
        .map_err(|e| CoreError::Internal(e.to_string()))?;

        for (tile, data) in &appended.hash_tiles {
            self.write(tile.path(), data.clone()).await?;
        }
        for (tile, first) in &appended.data_tiles {
            let mut records: Vec<Bytes> = Vec::new();
            for id in *first..*first + u64::from(tile.width()) {
                if id < old.n {
                    records.push(self.record(&old, id).await?);
                } else {
                    records.push(Bytes::from(texts[(id - old.n) as usize].1.clone()));
                }
            }
            let refs: Vec<&[u8]> = records.iter().map(|b| b.as_ref()).collect();
            self.write(tile.path(), log::data_tile(&refs)).await?;
        }
        for (i, (e, _)) in texts.iter().enumerate() {
            let id = old.n + i as u64;
            self.write(
                lookup_path(&e.module, &e.version),
                id.to_string().into_bytes(),
            )
            .await?;
        }
        // Last: the tree that makes all of the above visible.
        let note = self.sign(&appended.tree)?;
        self.write("latest", note).await?;
        tracing::info!(
            db = self.name(),
            size = appended.tree.n,
            added = texts.len(),
            "checksum database appended"
        );
        Ok(appended.tree)
    }

    async fn take_shared(&self, lock: &dyn FetchLock) -> Result<crate::lock::LockGuard, CoreError> {
        let name = format!("checksum-db:{}", self.name());
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        loop {
            match lock.try_acquire(&name).await {
                Ok(Some(guard)) => return Ok(guard),
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(lock.poll_interval()).await;
                }
                Ok(None) => {
                    return Err(CoreError::Internal(format!(
                        "{}: another replica held the append lock for over {LOCK_WAIT:?}",
                        self.name()
                    )))
                }
                // Without the lock two replicas could fork the tree: refuse rather than risk it.
                Err(e) => {
                    return Err(CoreError::Internal(format!(
                        "{}: cannot take the append lock: {e}",
                        self.name()
                    )))
                }
            }
        }
    }

    /// Re-checks the whole log: every tile of the published tree against the tree hash, the
    /// signature, each record's lookup entry; returns the tree. Reports the first difference.
    pub async fn verify(&self) -> Result<(Tree, Vec<Entry>), String> {
        let (tree, _) = self.published().await.map_err(|e| e.to_string())?;
        let mut entries = Vec::new();
        let mut texts: Vec<Bytes> = Vec::new();
        for n in 0..tree.n.div_ceil(256) {
            let tile = log::tile_at(None, n, tree.n).expect("inside the tree");
            let body = self
                .read(tile.path())
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{} is missing", tile.path()))?;
            let records =
                agora_sumdb::record::data_tile_records(&body, n << 8, tile.width() as usize)
                    .ok_or_else(|| format!("{} is not {} records", tile.path(), tile.width()))?;
            texts.extend(records.into_iter().map(Bytes::copy_from_slice));
        }
        for (id, text) in texts.iter().enumerate() {
            let line = std::str::from_utf8(text).map_err(|_| format!("record {id}: not UTF-8"))?;
            let mut lines = line.lines();
            let parse = |l: Option<&str>| -> Option<(String, String, String)> {
                let mut f = l?.split(' ');
                Some((
                    f.next()?.to_owned(),
                    f.next()?.to_owned(),
                    f.next()?.to_owned(),
                ))
            };
            let (m, v, zip_h1) = parse(lines.next()).ok_or(format!("record {id}: malformed"))?;
            let (_, _, mod_h1) = parse(lines.next()).ok_or(format!("record {id}: malformed"))?;
            let module = ModulePath::new(&m).map_err(|e| format!("record {id}: {e}"))?;
            let entry = self
                .read(lookup_path(&module, &v))
                .await
                .map_err(|e| e.to_string())?;
            if entry.as_deref() != Some(id.to_string().as_bytes()) {
                return Err(format!(
                    "record {id} ({m}@{v}): its lookup entry does not name it"
                ));
            }
            entries.push(Entry {
                module,
                version: v,
                zip_h1,
                mod_h1,
            });
        }
        // Recompute the tree from the records alone and compare with every stored hash tile.
        let refs: Vec<&[u8]> = texts.iter().map(|b| b.as_ref()).collect();
        let rebuilt = log::append(0, &NoHashes, &refs).map_err(|e| e.to_string())?;
        if rebuilt.tree != tree {
            return Err(format!(
                "the records hash to {} but the published tree says {}",
                rebuilt.tree.hash, tree.hash
            ));
        }
        for (tile, data) in &rebuilt.hash_tiles {
            let Some(wide) = log::tile_at(Some(tile.level()), tile.level_index(), tree.n) else {
                continue;
            };
            if wide.width() != tile.width() {
                continue;
            }
            let stored = self
                .read(tile.path())
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{} is missing", tile.path()))?;
            if stored.as_ref() != data.as_slice() {
                return Err(format!("{} differs from the records", tile.path()));
            }
        }
        Ok((tree, entries))
    }
}

fn lookup_path(module: &ModulePath, version: &str) -> String {
    let m = escape_path(module.as_str()).unwrap_or_else(|_| module.to_string());
    let v = escape_version(version).unwrap_or_else(|_| version.to_owned());
    format!("lookup/{m}@{v}")
}

/// No stored hashes (a tree built from nothing).
struct NoHashes;

impl HashReader for NoHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        if indexes.is_empty() {
            Ok(Vec::new())
        } else {
            Err(tlog_tiles::Error::IndexesNotInTree)
        }
    }
}

/// Stored hashes of the published tree, read from its hash tiles (on a blocking thread).
struct StoredHashes<'a> {
    db: &'a ChecksumDb,
    tree: Tree,
    handle: tokio::runtime::Handle,
    tiles: std::sync::Mutex<HashMap<String, Bytes>>,
}

impl HashReader for StoredHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&index| {
                // The tile holding the hash, at the width it has in the published tree.
                let base = Tile::from_index(8, index);
                let tile = log::tile_at(Some(base.level()), base.level_index(), self.tree.n)
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
                let path = tile.path();
                let cached = self
                    .tiles
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&path)
                    .cloned();
                let data = match cached {
                    Some(d) => d,
                    None => {
                        let d = self
                            .handle
                            .block_on(self.db.read(path.clone()))
                            .ok()
                            .flatten()
                            .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
                        self.tiles
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(path, d.clone());
                        d
                    }
                };
                tile.hash_at_index(&data, index)
            })
            .collect()
    }
}
