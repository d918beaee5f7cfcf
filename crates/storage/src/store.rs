//! [`Storage`]: write-once artifacts and streaming reads over `object_store`.
//!
//! Downloads never write into their final key directly. They land in a scratch file first, are
//! validated by the caller, and only then are published with [`Storage::put_file_once`], which is
//! atomic on every backend (a hard link on local disk; on object stores a conditional put, or a
//! multipart upload to a staging key and a conditional copy, see [`crate::remote`]). A crash
//! therefore leaves at most an orphan scratch file, never a partial artifact under a served key,
//! and the next start removes it (see [`crate::scratch`]).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

use crate::config::{BackendKind, LargeFiles, StorageConfig};
use crate::error::StorageError;
use crate::layout;
use crate::layout::StorageKey;
use crate::memo::{RecentMutable, SmallObjects};
use crate::object::{info_of, Object, ObjectInfo, PutOutcome};
use crate::remote::{self, WriteStats};

/// Which backend a [`Storage`] uses; reported by `config show` and `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Local(PathBuf),
    Memory,
    /// S3-compatible, GCS or Azure (see [`crate::remote`]).
    Remote(remote::RemoteLocation),
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Local(p) => write!(f, "local directory {}", p.display()),
            Backend::Memory => f.write_str("memory"),
            Backend::Remote(location) => location.fmt(f),
        }
    }
}

/// The artifact store. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    /// Local directory for in-progress downloads. For the local backend it lives inside the data
    /// directory (same file system), so publishing a file is a hard link, not a copy.
    scratch: PathBuf,
    /// Keeps a memory backend's scratch directory alive.
    _scratch_guard: Option<tempfile_guard::Guard>,
    counter: AtomicU64,
    /// How remote objects were written (see [`crate::remote::WriteStats`]).
    writes: remote::Counters,
    /// How an S3 store receives files larger than a part; `None` for other backends.
    large_files: Option<LargeFiles>,
    /// Copies of small write-once objects (see [`crate::memo`]).
    small: SmallObjects,
    /// Second-long copies of lists and `@latest` answers (see [`crate::memo`]).
    recent: RecentMutable,
}

impl Storage {
    /// Opens the configured backend. `data_dir` holds the local backend's tree; remote backends
    /// keep their scratch files (downloads in progress, staged on local disk before upload) under
    /// it too (see [`layout::scratch_dir`]). Nothing is sent over the network here: call
    /// [`Storage::check`] (and [`Storage::verify_write_once`]) to see whether the backend answers.
    pub fn open(config: &StorageConfig, data_dir: &Path) -> Result<Storage, StorageError> {
        let (store, location) = match config.backend {
            BackendKind::Local => return Storage::local(data_dir),
            BackendKind::Memory => return Storage::memory(),
            BackendKind::S3 => remote::build_s3(config)?,
            BackendKind::Gcs => remote::build_gcs(config)?,
            BackendKind::Azure => remote::build_azure(config)?,
        };
        let scratch = crate::scratch::claim(&layout::scratch_dir(data_dir), SCRATCH_MAX_AGE)
            .map_err(|source| StorageError::DataDir {
                path: data_dir.to_owned(),
                source,
            })?;
        tracing::info!(storage.backend = %location, "remote storage configured");
        let large_files = (config.backend == BackendKind::S3).then_some(config.s3.large_files);
        Ok(Storage::from_parts(
            store,
            Backend::Remote(location),
            scratch,
            None,
            large_files,
        ))
    }

    /// Opens (creating it and its parents if needed) a local data directory.
    pub fn local(dir: &Path) -> Result<Self, StorageError> {
        let data_dir_err = |source| StorageError::DataDir {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(data_dir_err)?;
        let root = dir.canonicalize().map_err(data_dir_err)?;
        let scratch = crate::scratch::claim(&layout::scratch_dir(&root), SCRATCH_MAX_AGE)
            .map_err(data_dir_err)?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| data_dir_err(std::io::Error::other(e.to_string())))?
            .with_fsync(true);
        Ok(Storage::from_parts(
            Arc::new(store),
            Backend::Local(root),
            scratch,
            None,
            None,
        ))
    }

    /// An in-memory store (tests, ephemeral deployments). Scratch files go to a temporary directory.
    pub fn memory() -> Result<Self, StorageError> {
        let guard = tempfile_guard::Guard::new().map_err(|source| StorageError::Scratch {
            path: std::env::temp_dir(),
            source,
        })?;
        let scratch = guard.path().to_owned();
        Ok(Storage::from_parts(
            Arc::new(InMemory::new()),
            Backend::Memory,
            scratch,
            Some(guard),
            None,
        ))
    }

    pub(crate) fn from_parts(
        store: Arc<dyn ObjectStore>,
        backend: Backend,
        scratch: PathBuf,
        guard: Option<tempfile_guard::Guard>,
        large_files: Option<LargeFiles>,
    ) -> Self {
        Storage {
            inner: Arc::new(Inner {
                store,
                backend,
                scratch,
                _scratch_guard: guard,
                counter: AtomicU64::new(0),
                writes: Default::default(),
                large_files,
                small: SmallObjects::new(crate::memo::DEFAULT_BUDGET),
                recent: RecentMutable::new(),
            }),
        }
    }

    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    pub(crate) fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// How objects were written since this store was opened.
    pub fn write_stats(&self) -> WriteStats {
        self.inner.writes.snapshot()
    }

    /// Deletes staging objects ([`layout::STAGING_PREFIX`]) older than `max_age`: leftovers of a
    /// process that crashed between a multipart upload and its copy (see [`crate::remote`]).
    /// Lists only the staging prefix; meant for start-up or a periodic task, never the request
    /// path. Returns how many were deleted.
    pub async fn sweep_staging(&self, max_age: Duration) -> Result<usize, StorageError> {
        remote::sweep_staging(&self.inner.store, max_age).await
    }

    /// Checks that the backend refuses to overwrite: a second conditional create of a probe key,
    /// by put and by copy, must find the first. An S3-compatible store that ignores
    /// `If-None-Match` fails this, and write-once would silently not hold on it. Writes and then
    /// deletes two objects under [`layout::PROBE_PREFIX`]; for `agora doctor` or start-up, not
    /// `/readyz`.
    pub async fn verify_write_once(&self) -> Result<(), StorageError> {
        remote::verify_write_once(
            &self.inner.store,
            &self.inner.backend,
            self.inner.large_files,
        )
        .await
    }

    fn object_path(key: &StorageKey) -> ObjectPath {
        // Keys are built from validated module paths and versions, whose elements never start with
        // a dot or contain separators, so this parse cannot produce a path outside the store.
        // `parse`, not `from`: `from` percent-encodes `~` (legal in module paths) as `%7E`, which
        // broke the GOPROXY layout and, on local disk, made such objects unreadable by the direct
        // read path (it opens `root/<key.path()>`).
        let path = key.path();
        ObjectPath::parse(&path).unwrap_or_else(|_| ObjectPath::from(path))
    }

    /// Metadata of `key`, or `None` if it is not stored.
    pub async fn head(&self, key: &StorageKey) -> Result<Option<ObjectInfo>, StorageError> {
        match self.inner.store.head(&Self::object_path(key)).await {
            Ok(meta) => Ok(Some(info_of(&meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(backend_err("head", key, source)),
        }
    }

    /// Deletes `key`; `false` when it was not stored. Only operators' removals and retention call
    /// this: write-once artifacts are otherwise never deleted. A reader that already opened the
    /// object keeps reading it (an open file on local disk; a GET in flight on object stores).
    pub async fn delete(&self, key: &StorageKey) -> Result<bool, StorageError> {
        self.inner.small.forget(key);
        self.inner.recent.forget(key);
        let path = Self::object_path(key);
        match self.inner.store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(source) => return Err(backend_err("delete", key, source)),
        }
        match self.inner.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(source) => Err(backend_err("delete", key, source)),
        }
    }

    /// Opens `key` for streaming, or `None` if it is not stored.
    pub async fn get(&self, key: &StorageKey) -> Result<Option<Object>, StorageError> {
        if let Backend::Local(root) = &self.inner.backend {
            return crate::local::open_object(root, key, None).await;
        }
        self.open_with(key, GetOptions::default()).await
    }

    /// Opens bytes `range` (end exclusive, non-empty, within the object) of `key` for streaming, or
    /// `None` if it is not stored. `info` describes the whole object. Serves HTTP `Range` requests
    /// without reading the bytes before the range.
    pub async fn get_range(
        &self,
        key: &StorageKey,
        range: Range<u64>,
    ) -> Result<Option<Object>, StorageError> {
        if let Backend::Local(root) = &self.inner.backend {
            return crate::local::open_object(root, key, Some(range)).await;
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..Default::default()
        };
        self.open_with(key, opts).await
    }

    async fn open_with(
        &self,
        key: &StorageKey,
        opts: GetOptions,
    ) -> Result<Option<Object>, StorageError> {
        match self
            .inner
            .store
            .get_opts(&Self::object_path(key), opts)
            .await
        {
            Ok(result) => {
                let info = info_of(&result.meta);
                let body = result
                    .into_stream()
                    .map(|r| r.map_err(std::io::Error::other))
                    .boxed();
                Ok(Some(Object { info, body }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(backend_err("get", key, source)),
        }
    }

    /// Reads a small object fully (info, mod, list, tiles). Small write-once objects are
    /// answered from memory once read (see [`crate::memo`]).
    pub async fn get_bytes(
        &self,
        key: &StorageKey,
    ) -> Result<Option<(Bytes, ObjectInfo)>, StorageError> {
        if RecentMutable::admits(key) {
            if let Some(hit) = self.inner.recent.get(key) {
                return Ok(Some(hit));
            }
            let found = self.read_bytes(key).await?;
            if let Some((body, info)) = &found {
                self.inner.recent.put(key, body, info);
            }
            return Ok(found);
        }
        if !SmallObjects::admits(key) {
            return self.read_bytes(key).await;
        }
        if let Some(hit) = self.inner.small.get(key) {
            return Ok(Some(hit));
        }
        let found = self.read_bytes(key).await?;
        if let Some((body, info)) = &found {
            self.inner.small.put(key, body, info);
        }
        Ok(found)
    }

    /// [`get_bytes`](Self::get_bytes) straight from the backend, for a list or `@latest` whose
    /// newest stored copy matters (has another replica just replaced it?): the second-long
    /// in-process copy is refreshed, not trusted.
    pub async fn get_bytes_fresh(
        &self,
        key: &StorageKey,
    ) -> Result<Option<(Bytes, ObjectInfo)>, StorageError> {
        if !RecentMutable::admits(key) {
            return self.get_bytes(key).await;
        }
        let found = self.read_bytes(key).await?;
        match &found {
            Some((body, info)) => self.inner.recent.put(key, body, info),
            None => self.inner.recent.forget(key),
        }
        Ok(found)
    }

    async fn read_bytes(
        &self,
        key: &StorageKey,
    ) -> Result<Option<(Bytes, ObjectInfo)>, StorageError> {
        if let Backend::Local(root) = &self.inner.backend {
            return crate::local::read(root, key).await;
        }
        match self.inner.store.get(&Self::object_path(key)).await {
            Ok(result) => {
                let info = info_of(&result.meta);
                let bytes = result
                    .bytes()
                    .await
                    .map_err(|source| backend_err("read", key, source))?;
                Ok(Some((bytes, info)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(backend_err("get", key, source)),
        }
    }

    /// Stores `bytes` under a write-once key unless something is already there.
    ///
    /// On local disk the bytes are staged in a scratch file under `_agora/tmp` and published by
    /// [`Storage::put_file_once`], so a crash mid-write leaves nothing in the GOPROXY tree
    /// (`object_store` would stage them as `<key>#N` next to the final file).
    #[tracing::instrument(level = "debug", name = "storage.write", skip_all,
        fields(storage.key = %key.path(), storage.bytes = bytes.len(), storage.write = "once"))]
    pub async fn put_once(
        &self,
        key: &StorageKey,
        bytes: Bytes,
    ) -> Result<PutOutcome, StorageError> {
        if let Backend::Local(_) = self.inner.backend {
            // `stage` synced the file already.
            let scratch = self.stage(key, &bytes).await?;
            return self.publish_synced(key, &scratch).await;
        }
        if let Backend::Remote(_) = self.inner.backend {
            let (store, counters) = (&self.inner.store, &self.inner.writes);
            return remote::put_bytes_once(store, counters, &Self::object_path(key), bytes).await;
        }
        self.put_create(key, bytes).await
    }

    /// A conditional put straight into the object store.
    async fn put_create(&self, key: &StorageKey, bytes: Bytes) -> Result<PutOutcome, StorageError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .inner
            .store
            .put_opts(&Self::object_path(key), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(PutOutcome::AlreadyExists),
            Err(source) => Err(backend_err("put", key, source)),
        }
    }

    /// Replaces a mutable object (list, latest) atomically.
    #[tracing::instrument(level = "debug", name = "storage.write", skip_all,
        fields(storage.key = %key.path(), storage.bytes = bytes.len(), storage.write = "overwrite"))]
    pub async fn put_overwrite(&self, key: &StorageKey, bytes: Bytes) -> Result<(), StorageError> {
        debug_assert!(!key.is_write_once(), "overwrite of write-once key {key:?}");
        let written = self.overwrite(key, bytes).await;
        // After the write: a reader between a forget and the write would keep the old copy.
        self.inner.recent.forget(key);
        written
    }

    async fn overwrite(&self, key: &StorageKey, bytes: Bytes) -> Result<(), StorageError> {
        if let Backend::Local(root) = &self.inner.backend {
            // Staged under `_agora/tmp` (see `put_once`), then renamed over the old copy.
            let scratch = self.stage(key, &bytes).await?;
            let rel = scratch
                .path
                .strip_prefix(root)
                .expect("scratch inside root");
            let from = ObjectPath::from(rel.to_string_lossy().as_ref());
            return self
                .inner
                .store
                .rename(&from, &Self::object_path(key))
                .await
                .map_err(|source| backend_err("put", key, source));
        }
        self.inner
            .store
            .put(&Self::object_path(key), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| backend_err("put", key, source))
    }

    /// Writes `bytes` to a fresh, synced scratch file.
    async fn stage(&self, key: &StorageKey, bytes: &Bytes) -> Result<ScratchFile, StorageError> {
        let scratch = self.scratch_file(&key.path());
        let (path, bytes) = (scratch.path.clone(), bytes.clone());
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&bytes)?;
            f.sync_all()
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|source| StorageError::Scratch {
            path: scratch.path.clone(),
            source,
        })?;
        Ok(scratch)
    }

    /// A fresh scratch file path for a download. The caller creates, fills and (on success) hands it
    /// to [`Storage::put_file_once`]; [`ScratchFile`] removes it on drop in every case.
    pub fn scratch_file(&self, hint: &str) -> ScratchFile {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let safe: String = hint
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        let name = format!("{}-{}-{n}-{safe}", std::process::id(), nanos());
        ScratchFile {
            path: self.inner.scratch.join(name),
        }
    }

    /// Publishes a complete scratch file under a write-once key, atomically.
    #[tracing::instrument(level = "debug", name = "storage.write", skip_all,
        fields(storage.key = %key.path(), storage.write = "once"))]
    pub async fn put_file_once(
        &self,
        key: &StorageKey,
        file: &ScratchFile,
    ) -> Result<PutOutcome, StorageError> {
        if let Backend::Remote(_) = self.inner.backend {
            // Conditional put, or multipart upload + conditional copy (see `crate::remote`).
            let (store, counters) = (&self.inner.store, &self.inner.writes);
            let path = Self::object_path(key);
            let mode = self.inner.large_files.unwrap_or_default();
            return remote::publish_file(store, counters, &path, &file.path, mode).await;
        }
        // Make the content durable before it becomes visible under its final name.
        let path = file.path.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.sync_all())
            .await
            .map_err(|e| StorageError::Scratch {
                path: file.path.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| StorageError::Scratch {
                path: file.path.clone(),
                source,
            })?;
        self.publish_synced(key, file).await
    }

    /// [`put_file_once`](Self::put_file_once) on the local and memory backends, for a scratch
    /// file whose content is already durable.
    async fn publish_synced(
        &self,
        key: &StorageKey,
        file: &ScratchFile,
    ) -> Result<PutOutcome, StorageError> {
        match &self.inner.backend {
            Backend::Local(root) => {
                let rel = file.path.strip_prefix(root).expect("scratch inside root");
                let from = ObjectPath::from(rel.to_string_lossy().as_ref());
                match self
                    .inner
                    .store
                    .copy_if_not_exists(&from, &Self::object_path(key))
                    .await
                {
                    Ok(()) => Ok(PutOutcome::Created),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(PutOutcome::AlreadyExists),
                    Err(source) => Err(backend_err("publish", key, source)),
                }
            }
            // Remote backends returned above; memory reads the (test-sized) file whole.
            Backend::Memory | Backend::Remote(_) => {
                let bytes =
                    tokio::fs::read(&file.path)
                        .await
                        .map_err(|source| StorageError::Scratch {
                            path: file.path.clone(),
                            source,
                        })?;
                self.put_create(key, Bytes::from(bytes)).await
            }
        }
    }

    /// Readiness probe: the backend answers a metadata request, and the local scratch directory,
    /// where misses are staged, takes a new file.
    pub async fn check(&self) -> Result<(), StorageError> {
        match self.inner.backend {
            Backend::Remote(_) => remote::check(&self.inner.store).await?,
            Backend::Local(_) | Backend::Memory => {
                let probe = ObjectPath::from(layout::READYZ_PROBE);
                match self.inner.store.head(&probe).await {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(source) => {
                        return Err(StorageError::Backend {
                            op: "head",
                            key: probe.to_string(),
                            source,
                        })
                    }
                }
            }
        }
        if !matches!(self.inner.backend, Backend::Memory) {
            crate::scratch::probe_writable(&self.inner.scratch).await?;
        }
        Ok(())
    }
}

/// A download in progress. Removed from disk when dropped (published files are hard links or
/// copies, so removing the scratch name is always right).
pub struct ScratchFile {
    path: PathBuf,
}

impl ScratchFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Scratch files older than this are leftovers of a crashed process (a download in progress is
/// bounded by the upstream's zip timeout, 10 minutes by default), where [`crate::scratch`]
/// cannot tell whether their owner is alive.
pub(crate) const SCRATCH_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

fn backend_err(op: &'static str, key: &StorageKey, source: object_store::Error) -> StorageError {
    StorageError::Backend {
        op,
        key: key.path(),
        source,
    }
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A tiny owned temporary directory, so the storage crate needs no `tempfile` at run time.
mod tempfile_guard {
    use std::path::{Path, PathBuf};

    pub struct Guard(PathBuf);

    impl Guard {
        pub fn new() -> std::io::Result<Self> {
            let dir = crate::layout::memory_scratch_dir(&format!(
                "{}-{}",
                std::process::id(),
                super::nanos()
            ));
            std::fs::create_dir_all(&dir)?;
            Ok(Guard(dir))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ArtifactKind;
    use agora_gomod::module::ModulePath;
    use tokio::io::AsyncWriteExt;

    fn key(kind: ArtifactKind) -> StorageKey {
        StorageKey::artifact(
            &ModulePath::new("github.com/Example/mod").unwrap(),
            "v1.0.0",
            kind,
        )
    }

    fn list_key() -> StorageKey {
        StorageKey::List(ModulePath::new("github.com/Example/absent").unwrap())
    }

    async fn roundtrip(storage: Storage) {
        let k = key(ArtifactKind::Info);
        assert!(storage.get_bytes(&k).await.unwrap().is_none());
        assert_eq!(
            storage
                .put_once(&k, Bytes::from_static(b"one"))
                .await
                .unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            storage
                .put_once(&k, Bytes::from_static(b"two"))
                .await
                .unwrap(),
            PutOutcome::AlreadyExists
        );
        let (bytes, info) = storage.get_bytes(&k).await.unwrap().unwrap();
        assert_eq!(&bytes[..], b"one", "write-once keeps the first value");
        assert_eq!(info.size, 3);

        let zip = key(ArtifactKind::Zip);
        let scratch = storage.scratch_file("zip");
        let mut f = tokio::fs::File::create(scratch.path()).await.unwrap();
        f.write_all(&vec![7u8; 100_000]).await.unwrap();
        f.flush().await.unwrap();
        drop(f);
        assert_eq!(
            storage.put_file_once(&zip, &scratch).await.unwrap(),
            PutOutcome::Created
        );
        let scratch_path = scratch.path().to_owned();
        drop(scratch);
        assert!(!scratch_path.exists(), "scratch removed on drop");
        let obj = storage.get(&zip).await.unwrap().unwrap();
        assert_eq!(obj.info.size, 100_000);
        let body: Vec<Bytes> = obj.body.map(|b| b.unwrap()).collect().await;
        assert_eq!(body.iter().map(|b| b.len()).sum::<usize>(), 100_000);
        let part = storage
            .get_range(&zip, 99_990..100_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(part.info.size, 100_000, "info describes the whole object");
        let body: Vec<Bytes> = part.body.map(|b| b.unwrap()).collect().await;
        assert_eq!(body.concat(), vec![7u8; 10]);
        assert!(storage
            .get_range(&list_key(), 0..1)
            .await
            .unwrap()
            .is_none());

        let list = StorageKey::List(ModulePath::new("github.com/Example/mod").unwrap());
        storage
            .put_overwrite(&list, Bytes::from_static(b"v1.0.0\n"))
            .await
            .unwrap();
        storage
            .put_overwrite(&list, Bytes::from_static(b"v1.0.0\nv1.1.0\n"))
            .await
            .unwrap();
        assert_eq!(
            &storage.get_bytes(&list).await.unwrap().unwrap().0[..],
            b"v1.0.0\nv1.1.0\n"
        );
        storage.check().await.unwrap();
    }

    #[tokio::test]
    async fn memory_backend() {
        roundtrip(Storage::memory().unwrap()).await;
    }

    #[tokio::test]
    async fn local_backend_uses_goproxy_layout() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        roundtrip(Storage::local(&data).unwrap()).await;
        assert!(data
            .join("github.com/!example/mod/@v/v1.0.0.info")
            .is_file());
        assert!(data.join("github.com/!example/mod/@v/v1.0.0.zip").is_file());
        assert!(data.join("github.com/!example/mod/@v/list").is_file());
    }

    #[tokio::test]
    async fn local_writes_stage_under_the_private_prefix_and_old_scratch_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("_agora/tmp");
        std::fs::create_dir_all(&scratch).unwrap();
        let old = scratch.join("1-2-3-crashed");
        let young = scratch.join("1-2-4-in-progress");
        for f in [&old, &young] {
            std::fs::write(f, b"partial").unwrap();
        }
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - 2 * SCRATCH_MAX_AGE)
            .unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        assert!(!old.exists(), "a stale scratch file is swept at open");
        assert!(young.exists(), "a young one may belong to a live process");

        let info = key(ArtifactKind::Info);
        let list = StorageKey::List(ModulePath::new("github.com/Example/mod").unwrap());
        storage
            .put_once(&info, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        for body in [&b"v1.0.0\n"[..], b"v1.0.0\nv1.1.0\n"] {
            storage
                .put_overwrite(&list, Bytes::copy_from_slice(body))
                .await
                .unwrap();
        }
        let mut tree = Vec::new();
        let mut dirs = vec![dir.path().to_owned()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    dirs.push(e.path());
                } else {
                    tree.push(e.path().strip_prefix(dir.path()).unwrap().to_owned());
                }
            }
        }
        tree.sort();
        let expected: Vec<PathBuf> = [
            "_agora/tmp/1-2-4-in-progress",
            "github.com/!example/mod/@v/list",
            "github.com/!example/mod/@v/v1.0.0.info",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(tree, expected, "no staging file is left anywhere");
        assert_eq!(
            &storage.get_bytes(&list).await.unwrap().unwrap().0[..],
            b"v1.0.0\nv1.1.0\n"
        );
    }

    #[test]
    fn local_backend_reports_unusable_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = Storage::local(&file.join("data")).err().unwrap();
        assert!(
            err.to_string().contains("cannot use data directory"),
            "{err}"
        );
    }
}
