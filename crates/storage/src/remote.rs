//! Remote backends (S3-compatible, Google Cloud Storage, Azure Blob): building them from
//! [`StorageConfig`], and how write-once publishing works on them. The functions here work on a
//! bare `object_store` client; [`Storage`](crate::Storage) calls them and owns the public API.
//!
//! # Write-once on an object store
//! Every write of an immutable key is a conditional create, so two replicas (or two tasks) that
//! fetched the same version concurrently store exactly one copy and the loser learns it lost:
//!
//! - **Small objects** (`.info`, `.mod`, tiles, and files up to [`PART_SIZE`]): one `PUT` with
//!   `PutMode::Create` (S3 and Azure: `If-None-Match: *`; GCS: `ifGenerationMatch=0`).
//! - **Large files** (zips, up to 500 MiB): a conditional `PUT` needs the whole body in memory, so
//!   the scratch file is streamed with a multipart upload (parts of [`PART_SIZE`], at most
//!   [`PARTS_IN_FLIGHT`] in flight: bounded memory whatever the zip size) to a unique staging key
//!   under `_agora/staging/`, then copied to its final key with `copy_if_not_exists`, then the
//!   staging object is deleted. The conditional copy is, per backend:
//!   - S3: `S3CopyIfNotExists::Multipart`: a one-part multipart upload to the final key whose part is
//!     an `UploadPartCopy` of the staging object, completed with `If-None-Match: *`. Atomic and
//!     conditional; verified against moto in `tests/contract.rs`.
//!   - GCS: a copy with `x-goog-if-generation-match: 0` (atomic and conditional on the service).
//!   - Azure: `Copy Blob` with `If-None-Match: *` (conditional on the service). Azure may run a copy
//!     asynchronously; within one storage account it normally completes before the call returns,
//!     and `object_store` does not expose the copy status to wait on. GCS and Azure are built and
//!     configured here but not exercised against a service (no emulator on the test machines).
//!
//!
//! With `[storage.s3] large_files = "single_put"`, large files are one conditional `PUT` too, its
//! body the scratch file mapped into memory (no heap copy): for stores whose conditional
//! `PutObject` is atomic but whose multipart completion ignores `If-None-Match` (Ceph RGW 16.2,
//! which also answers `object_store`'s `UploadPartCopy` with `411`).
//!
//! A multipart upload is invisible until completed, and the final key is only ever written by a
//! completed conditional request, so a crash never leaves a partial object under a served key.
//!
//! When a conditional write reports a conflict, the key is read back: S3 answers `409` to
//! concurrent conditional writes, and the other writer may still fail, so "someone else has it"
//! is only believed once the object is actually there (otherwise the write is retried).
//!
//! # Leftovers
//! A crash can leave an incomplete multipart upload (invisible but billed) or a completed staging
//! object that was not yet deleted. [`Storage::sweep_staging`](crate::Storage::sweep_staging) deletes staging objects older than an
//! hour (it lists only `_agora/staging/`); a bucket lifecycle rule "abort incomplete multipart
//! uploads after 1 day" (and optionally "expire `_agora/staging/` after 1 day") covers the rest.
//!
//! # Key encoding
//! Keys are the GOPROXY layout and are used verbatim: `object_store`'s `Path::from` would
//! percent-encode `~` (legal in module paths) as `%7E`, so the bucket would no longer be a
//! `GOPROXY` tree for such modules; [`Storage`](crate::Storage) parses keys with `Path::parse`, which keeps them as
//! they are (validated module paths contain no control characters, `.`/`..` elements or `%`).
//!
//! # Permissions (S3)
//! `s3:GetObject`, `s3:PutObject`, `s3:DeleteObject` (staging cleanup), `s3:AbortMultipartUpload`
//! and `s3:ListBucket` (without it S3 answers `403` instead of `404` for a missing key; readiness
//! and [`Storage::list`](crate::Storage::list) need it too).

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut, S3CopyIfNotExists};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    Certificate, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use crate::config::{
    check_bucket, check_endpoint, invalid, normalize_prefix, resolve_secret, BackendKind,
    LargeFiles, StorageConfig,
};
use crate::error::StorageError;
use crate::layout::{PROBE_PREFIX, READYZ_PROBE, STAGING_PREFIX};
use crate::object::PutOutcome;

/// Files up to this size are published with one conditional `PUT`; larger ones are uploaded in
/// parts of this size. S3 needs parts of at least 5 MiB (but the last).
pub const PART_SIZE: usize = 8 << 20;

/// Parts of one upload in flight at once: with the part being read, an upload holds at most
/// `(PARTS_IN_FLIGHT + 1) * PART_SIZE` bytes of memory.
pub const PARTS_IN_FLIGHT: usize = 2;

/// How often a conditional write that reported a conflict is retried when the winner's object is
/// not there (S3's `409` for concurrent conditional writes).
const CONFLICT_RETRIES: u32 = 4;

/// Where a remote backend keeps its objects, for `config show` and `/readyz`: no credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteLocation {
    /// `s3`, `gs` or `azure`.
    pub scheme: &'static str,
    /// The bucket (Azure: `<account>/<container>`).
    pub bucket: String,
    /// Key prefix inside the bucket, without slashes at either end; empty for the root.
    pub prefix: String,
    /// A non-default endpoint (validated to hold no credentials).
    pub endpoint: Option<String>,
}

impl fmt::Display for RemoteLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        if let Some(endpoint) = &self.endpoint {
            write!(f, " at {endpoint}")?;
        }
        Ok(())
    }
}

/// How a [`Storage`](crate::Storage) wrote its objects since it was opened: lets tests (and metrics) see which path
/// a publish took without timing it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Conditional single-request puts of remote objects.
    pub single_puts: u64,
    /// Multipart uploads started (one per large file published).
    pub multipart_uploads: u64,
    /// Parts handed to multipart uploads.
    pub parts: u64,
    /// The largest part, in bytes: the memory one read of a scratch file takes.
    pub largest_part: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    single_puts: AtomicU64,
    multipart_uploads: AtomicU64,
    parts: AtomicU64,
    largest_part: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> WriteStats {
        WriteStats {
            single_puts: self.single_puts.load(Ordering::Relaxed),
            multipart_uploads: self.multipart_uploads.load(Ordering::Relaxed),
            parts: self.parts.load(Ordering::Relaxed),
            largest_part: self.largest_part.load(Ordering::Relaxed),
        }
    }
}

/// See [`Storage::sweep_staging`](crate::Storage::sweep_staging).
pub(crate) async fn sweep_staging(
    store: &Arc<dyn ObjectStore>,
    max_age: Duration,
) -> Result<usize, StorageError> {
    let prefix = ObjectPath::from(STAGING_PREFIX);
    let now = SystemTime::now();
    let stale: Vec<ObjectPath> = store
        .list(Some(&prefix))
        .try_filter_map(|meta| {
            let age = now
                .duration_since(SystemTime::from(meta.last_modified))
                .unwrap_or_default();
            futures::future::ok((age > max_age).then_some(meta.location))
        })
        .try_collect()
        .await
        .map_err(|source| StorageError::Backend {
            op: "list",
            key: STAGING_PREFIX.to_owned(),
            source,
        })?;
    let mut deleted = 0;
    for path in stale {
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
            Err(source) => {
                return Err(StorageError::Backend {
                    op: "delete",
                    key: path.to_string(),
                    source,
                })
            }
        }
    }
    if deleted > 0 {
        tracing::info!(count = deleted, "removed stale staging objects");
    }
    Ok(deleted)
}

/// See [`Storage::verify_write_once`](crate::Storage::verify_write_once); `backend` names the
/// store in the error.
///
/// A failing first put is a store that does not answer (yet): a backend error, which start-up only
/// logs. Once it succeeded, the store answers, so a later conditional put or copy that fails
/// (after `object_store`'s retries of transient errors) is a store that cannot do what
/// write-once publishing needs, like one that overwrites: a configuration error, and agora does
/// not start. (Ceph RGW 16.2 is one: it answers the `UploadPartCopy` of the conditional copy
/// with `411 Length Required`, as `object_store` sends it without a `Content-Length`; and it
/// ignores `If-None-Match` on `CompleteMultipartUpload` anyway.)
///
/// `large_files` is the S3 setting (`None` on other backends): with `single_put` large files are
/// conditional puts too, so the conditional copy is not asked for.
pub(crate) async fn verify_write_once(
    store: &Arc<dyn ObjectStore>,
    backend: &dyn fmt::Display,
    large_files: Option<LargeFiles>,
) -> Result<(), StorageError> {
    let id = unique_name("probe");
    let target = ObjectPath::from(format!("{PROBE_PREFIX}/{id}"));
    let source = ObjectPath::from(format!("{PROBE_PREFIX}/{id}.src"));
    let err = |op, path: &ObjectPath, source| StorageError::Backend {
        op,
        key: path.to_string(),
        source,
    };
    let broken = |what: &str| {
        invalid(
            "storage.backend",
            format!("{backend} does not honour conditional writes ({what}); write-once artifacts would not be safe on it"),
        )
    };
    let failed = |what: &str, e: object_store::Error| {
        invalid(
            "storage.backend",
            format!("{backend} cannot do the conditional writes write-once artifacts need ({what} failed: {e})"),
        )
    };
    let result = async {
        create(store, &target, Bytes::from_static(b"first"))
            .await
            .map_err(|e| err("put", &target, e))?;
        match create(store, &target, Bytes::from_static(b"second")).await {
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Ok(_) => return Err(broken("a conditional put overwrote an object")),
            Err(e) => return Err(failed("a conditional put", e)),
        }
        if large_files != Some(LargeFiles::SinglePut) {
            store
                .put(&source, PutPayload::from_static(b"third"))
                .await
                .map_err(|e| err("put", &source, e))?;
            // The conditional put holds: a store that only fails this can take large files as
            // single puts.
            let instead = if large_files.is_some() {
                "; its conditional put works, so storage.s3.large_files = \"single_put\" would do"
            } else {
                ""
            };
            match store.copy_if_not_exists(&source, &target).await {
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Ok(()) => {
                    return Err(broken(&format!(
                        "a conditional copy overwrote an object{instead}"
                    )))
                }
                Err(e) => return Err(failed(&format!("a conditional copy{instead}"), e)),
            }
        }
        let kept = store
            .get(&target)
            .await
            .map_err(|e| err("get", &target, e))?
            .bytes()
            .await
            .map_err(|e| err("get", &target, e))?;
        if &kept[..] != b"first" {
            return Err(broken("the first value was replaced"));
        }
        Ok(())
    }
    .await;
    for path in [&target, &source] {
        let _ = store.delete(path).await;
    }
    result
}

/// A conditional put.
async fn create(
    store: &Arc<dyn ObjectStore>,
    path: &ObjectPath,
    bytes: Bytes,
) -> object_store::Result<()> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(path, PutPayload::from(bytes), opts)
        .await
        .map(drop)
}

/// Runs a conditional write and interprets a conflict: believed once the object is there, retried
/// (with a short backoff) when it is not.
async fn create_checked<F, Fut>(
    store: &Arc<dyn ObjectStore>,
    path: &ObjectPath,
    op: &'static str,
    mut write: F,
) -> Result<PutOutcome, StorageError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<()>>,
{
    let fail = |source| StorageError::Backend {
        op,
        key: path.to_string(),
        source,
    };
    let mut attempt = 0;
    loop {
        match write().await {
            Ok(()) => return Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { source, path: p }) => {
                match store.head(path).await {
                    Ok(_) => return Ok(PutOutcome::AlreadyExists),
                    Err(object_store::Error::NotFound { .. }) if attempt < CONFLICT_RETRIES => {
                        attempt += 1;
                        tracing::debug!(key = %path, attempt, "conditional write conflicted with one that has not landed; retrying");
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    }
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(fail(object_store::Error::AlreadyExists { source, path: p }))
                    }
                    Err(e) => return Err(fail(e)),
                }
            }
            Err(e) => return Err(fail(e)),
        }
    }
}

/// Stores `bytes` under `path` unless something is there (a remote backend's `put_once`).
pub(crate) async fn put_bytes_once(
    store: &Arc<dyn ObjectStore>,
    counters: &Counters,
    path: &ObjectPath,
    bytes: Bytes,
) -> Result<PutOutcome, StorageError> {
    counters.single_puts.fetch_add(1, Ordering::Relaxed);
    create_checked(store, path, "put", || create(store, path, bytes.clone())).await
}

/// Publishes a complete scratch file under `path` (a remote backend's `put_file_once`).
pub(crate) async fn publish_file(
    store: &Arc<dyn ObjectStore>,
    counters: &Counters,
    path: &ObjectPath,
    file: &Path,
    large_files: LargeFiles,
) -> Result<PutOutcome, StorageError> {
    let scratch_err = |source| StorageError::Scratch {
        path: file.to_owned(),
        source,
    };
    let len = tokio::fs::metadata(file).await.map_err(scratch_err)?.len();
    if len <= PART_SIZE as u64 {
        let bytes = tokio::fs::read(file).await.map_err(scratch_err)?;
        return put_bytes_once(store, counters, path, Bytes::from(bytes)).await;
    }
    if large_files == LargeFiles::SinglePut {
        let mapped = map_file(file).map_err(scratch_err)?;
        return put_bytes_once(store, counters, path, mapped).await;
    }
    let staging = ObjectPath::from(format!("{STAGING_PREFIX}/{}", unique_name(path.as_ref())));
    upload(store, counters, &staging, file).await?;
    let outcome = create_checked(store, path, "publish", || {
        store.copy_if_not_exists(&staging, path)
    })
    .await;
    // The staging copy is garbage either way; a failure here only leaves work for the sweep.
    if let Err(e) = store.delete(&staging).await {
        tracing::warn!(key = %staging, error = %e, "could not delete a staging object");
    }
    outcome
}

/// A complete scratch file as [`Bytes`] without reading it onto the heap: a read-only memory
/// map, unmapped when the last clone of the bytes is dropped.
#[allow(unsafe_code)] // the workspace denies it; see SAFETY below
fn map_file(file: &Path) -> std::io::Result<Bytes> {
    let f = std::fs::File::open(file)?;
    // SAFETY: a scratch file is this process's own (a unique name in agora's scratch directory)
    // and complete before it is published; nothing writes or truncates it while it is mapped, so
    // the mapped bytes stay what they were (the UB a map risks is a file changed under it).
    let map = unsafe { memmap2::Mmap::map(&f)? };
    Ok(Bytes::from_owner(map))
}

/// Streams `file` to `staging` with a multipart upload, reading one part at a time.
async fn upload(
    store: &Arc<dyn ObjectStore>,
    counters: &Counters,
    staging: &ObjectPath,
    file: &Path,
) -> Result<(), StorageError> {
    let backend_err = |source| StorageError::Backend {
        op: "upload",
        key: staging.to_string(),
        source,
    };
    let scratch_err = |source| StorageError::Scratch {
        path: file.to_owned(),
        source,
    };
    let mut f = tokio::fs::File::open(file).await.map_err(scratch_err)?;
    let upload = store.put_multipart(staging).await.map_err(backend_err)?;
    counters.multipart_uploads.fetch_add(1, Ordering::Relaxed);
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let sent: Result<(), StorageError> = async {
        loop {
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(backend_err)?;
            let mut part = BytesMut::with_capacity(PART_SIZE);
            while part.len() < PART_SIZE {
                if f.read_buf(&mut part).await.map_err(scratch_err)? == 0 {
                    break;
                }
            }
            if part.is_empty() {
                return Ok(());
            }
            let full = part.len() == PART_SIZE;
            counters.parts.fetch_add(1, Ordering::Relaxed);
            counters
                .largest_part
                .fetch_max(part.len() as u64, Ordering::Relaxed);
            // A part of exactly the chunk size is sent at once; a short last one at `finish`.
            writer.put(part.freeze());
            if !full {
                return Ok(());
            }
        }
    }
    .await;
    match sent {
        Ok(()) => writer.finish().await.map(drop).map_err(backend_err),
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(key = %staging, error = %abort, "could not abort a multipart upload");
            }
            Err(e)
        }
    }
}

/// Readiness of a remote backend: one `LIST` of the probe prefix. (A `HEAD` of a probe key cannot
/// tell a missing bucket from a missing key: S3 answers `404` to both.)
pub(crate) async fn check(store: &Arc<dyn ObjectStore>) -> Result<(), StorageError> {
    let probe = ObjectPath::from(READYZ_PROBE);
    store
        .list_with_delimiter(Some(&probe))
        .await
        .map_err(|source| StorageError::Backend {
            op: "list",
            key: probe.to_string(),
            source,
        })?;
    Ok(())
}

/// A name no other process or task picks: pid, time, a per-process random value and a counter
/// (replicas on different hosts may share a pid), plus a readable hint.
fn unique_name(hint: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(n);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let safe: String = hint
        .chars()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{}-{nanos}-{:016x}-{n}-{safe}",
        std::process::id(),
        h.finish()
    )
}

fn client_options(config: &StorageConfig, allow_http: bool) -> Result<ClientOptions, StorageError> {
    let mut options = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(config.connect_timeout)
        .with_read_timeout(config.read_timeout)
        // No total limit: uploads and downloads of large zips take as long as they take; a stalled
        // connection is caught by the read timeout.
        .with_timeout_disabled();
    if !config.ca_file.is_empty() {
        let pem = std::fs::read(&config.ca_file).map_err(|e| {
            invalid(
                "storage.ca_file",
                format!("cannot read {}: {e}", config.ca_file),
            )
        })?;
        let certs = Certificate::from_pem_bundle(&pem)
            .map_err(|e| invalid("storage.ca_file", format!("{}: {e}", config.ca_file)))?;
        if certs.is_empty() {
            return Err(invalid(
                "storage.ca_file",
                format!("{} holds no PEM certificate", config.ca_file),
            ));
        }
        for cert in certs {
            options = options.with_root_certificate(cert);
        }
    }
    Ok(options)
}

fn retry(config: &StorageConfig) -> RetryConfig {
    RetryConfig {
        max_retries: config.max_retries,
        retry_timeout: config.retry_timeout,
        ..Default::default()
    }
}

fn with_prefix<T: ObjectStore>(store: T, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        Arc::new(store)
    } else {
        // Validated by `normalize_prefix`: no empty, `.` or `..` elements.
        let prefix = ObjectPath::parse(prefix).unwrap_or_else(|_| ObjectPath::from(prefix));
        Arc::new(PrefixStore::new(store, prefix))
    }
}

/// A remote backend and where it keeps its objects.
pub(crate) type Built = (Arc<dyn ObjectStore>, RemoteLocation);

pub(crate) fn build_s3(config: &StorageConfig) -> Result<Built, StorageError> {
    let c = &config.s3;
    check_bucket("storage.s3.bucket", &c.bucket, BackendKind::S3)?;
    let prefix = normalize_prefix("storage.s3.prefix", &c.prefix)?;
    let endpoint = match c.endpoint.as_str() {
        "" => None,
        e => Some(check_endpoint(
            "storage.s3.endpoint",
            e,
            c.allow_http,
            "storage.s3.allow_http",
        )?),
    };
    let secret = resolve_secret(
        "storage.s3.secret_access_key",
        &c.secret_access_key,
        &c.secret_access_key_file,
        &c.secret_access_key_env,
    )?;
    let mut builder = match (c.access_key_id.is_empty(), secret) {
        // Static credentials: nothing comes from the environment, so a stray AWS_SESSION_TOKEN or
        // AWS_ENDPOINT_URL_S3 cannot mix into an explicit configuration.
        (false, Some(secret)) => AmazonS3Builder::new()
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(secret),
        (true, None) => AmazonS3Builder::from_env(),
        (false, None) => {
            return Err(invalid(
                "storage.s3.secret_access_key",
                "storage.s3.access_key_id is set: set the secret too (inline, _file or _env)",
            ))
        }
        (true, Some(_)) => {
            return Err(invalid(
                "storage.s3.access_key_id",
                "required when a secret access key is configured",
            ))
        }
    };
    builder = builder
        .with_bucket_name(&c.bucket)
        .with_client_options(client_options(config, c.allow_http)?)
        .with_retry(retry(config))
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
        .with_virtual_hosted_style_request(c.virtual_hosted_style);
    if !c.region.is_empty() {
        builder = builder.with_region(&c.region);
    }
    if let Some(endpoint) = &endpoint {
        let url = if c.virtual_hosted_style {
            bucket_host(endpoint, &c.bucket)
        } else {
            endpoint.clone()
        };
        // Both keys: `AWS_ENDPOINT_URL_S3` (s3_endpoint) would otherwise win over `endpoint`.
        builder = builder
            .with_endpoint(&url)
            .with_config(AmazonS3ConfigKey::S3Endpoint, &url);
    }
    let store = builder
        .build()
        .map_err(|e| invalid("storage.s3", e.to_string()))?;
    let location = RemoteLocation {
        scheme: "s3",
        bucket: c.bucket.clone(),
        prefix: prefix.clone(),
        endpoint,
    };
    Ok((with_prefix(store, &prefix), location))
}

/// `https://host:port/path` → `https://<bucket>.host:port/path`: `object_store` expects a
/// virtual-hosted endpoint to name the bucket already, while the setting names the service.
fn bucket_host(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) if !rest.starts_with(&format!("{bucket}.")) => {
            format!("{scheme}://{bucket}.{rest}")
        }
        _ => endpoint.to_owned(),
    }
}

pub(crate) fn build_gcs(config: &StorageConfig) -> Result<Built, StorageError> {
    let c = &config.gcs;
    check_bucket("storage.gcs.bucket", &c.bucket, BackendKind::Gcs)?;
    let prefix = normalize_prefix("storage.gcs.prefix", &c.prefix)?;
    let mut builder = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(&c.bucket)
        .with_client_options(client_options(config, false)?)
        .with_retry(retry(config));
    let mut setting = "storage.gcs";
    if !c.service_account_file.is_empty() {
        if !Path::new(&c.service_account_file).is_file() {
            return Err(invalid(
                "storage.gcs.service_account_file",
                format!("{} is not a readable file", c.service_account_file),
            ));
        }
        setting = "storage.gcs.service_account_file";
        builder = builder.with_service_account_path(&c.service_account_file);
    }
    let store = builder
        .build()
        .map_err(|e| invalid(setting, e.to_string()))?;
    let location = RemoteLocation {
        scheme: "gs",
        bucket: c.bucket.clone(),
        prefix: prefix.clone(),
        endpoint: None,
    };
    Ok((with_prefix(store, &prefix), location))
}

pub(crate) fn build_azure(config: &StorageConfig) -> Result<Built, StorageError> {
    let c = &config.azure;
    if c.account.is_empty() {
        return Err(invalid(
            "storage.azure.account",
            "required when storage.backend = \"azure\"",
        ));
    }
    check_bucket("storage.azure.account", &c.account, BackendKind::Azure)?;
    check_bucket("storage.azure.container", &c.container, BackendKind::Azure)?;
    let prefix = normalize_prefix("storage.azure.prefix", &c.prefix)?;
    let endpoint = match c.endpoint.as_str() {
        "" => None,
        e => Some(check_endpoint(
            "storage.azure.endpoint",
            e,
            c.allow_http,
            "storage.azure.allow_http",
        )?),
    };
    let key = resolve_secret(
        "storage.azure.access_key",
        &c.access_key,
        &c.access_key_file,
        &c.access_key_env,
    )?;
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_account(&c.account)
        .with_container_name(&c.container)
        .with_client_options(client_options(config, c.allow_http)?)
        .with_retry(retry(config));
    let mut setting = "storage.azure";
    if let Some(key) = key {
        setting = "storage.azure.access_key";
        builder = builder.with_access_key(key);
    }
    if let Some(endpoint) = &endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    // The key is checked (base64) here; the error names the setting, never the value.
    let store = builder
        .build()
        .map_err(|e| invalid(setting, e.to_string()))?;
    let location = RemoteLocation {
        scheme: "azure",
        bucket: format!("{}/{}", c.account, c.container),
        prefix: prefix.clone(),
        endpoint,
    };
    Ok((with_prefix(store, &prefix), location))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::Storage;

    fn s3(f: impl FnOnce(&mut StorageConfig)) -> StorageConfig {
        let mut c = StorageConfig {
            backend: BackendKind::S3,
            ..Default::default()
        };
        c.s3.bucket = "goproxy".into();
        c.s3.access_key_id = "id".into();
        c.s3.secret_access_key = Secret::new("s3cr3t-value");
        f(&mut c);
        c
    }

    fn open_err(c: &StorageConfig) -> String {
        let dir = tempfile::tempdir().unwrap();
        let e = Storage::open(c, dir.path()).err().expect("an error");
        let shown = format!("{e} / {e:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        shown
    }

    #[test]
    fn s3_location_display_and_scratch_dir() {
        let dir = tempfile::tempdir().unwrap();
        let c = s3(|c| {
            c.s3.prefix = "/agora/".into();
            c.s3.endpoint = "http://127.0.0.1:9000/".into();
            c.s3.allow_http = true;
        });
        let storage = Storage::open(&c, dir.path()).unwrap();
        assert_eq!(
            storage.backend().to_string(),
            "s3://goproxy/agora at http://127.0.0.1:9000"
        );
        assert!(dir.path().join("_agora/tmp").is_dir());
        assert!(storage.scratch_file("x").path().starts_with(dir.path()));
        let plain = Storage::open(&s3(|_| {}), dir.path()).unwrap();
        assert_eq!(plain.backend().to_string(), "s3://goproxy");
    }

    #[test]
    fn s3_errors_name_the_setting() {
        let e = open_err(&s3(|c| c.s3.bucket.clear()));
        assert!(e.contains("storage.s3.bucket"), "{e}");
        let e = open_err(&s3(|c| c.s3.endpoint = "http://minio:9000".into()));
        assert!(e.contains("storage.s3.allow_http"), "{e}");
        let e = open_err(&s3(|c| c.s3.secret_access_key = Secret::default()));
        assert!(e.contains("storage.s3.secret_access_key"), "{e}");
        let e = open_err(&s3(|c| c.s3.secret_access_key_env = "X".into()));
        assert!(e.contains("set only one of"), "{e}");
        let e = open_err(&s3(|c| c.s3.prefix = "a/../b".into()));
        assert!(e.contains("storage.s3.prefix"), "{e}");
        let e = open_err(&s3(|c| c.ca_file = "/nonexistent/ca.pem".into()));
        assert!(e.contains("storage.ca_file"), "{e}");
    }

    #[test]
    fn virtual_hosted_endpoints_name_the_bucket() {
        assert_eq!(
            bucket_host("https://s3.corp.example:9000", "b"),
            "https://b.s3.corp.example:9000"
        );
        assert_eq!(
            bucket_host("https://b.s3.corp.example", "b"),
            "https://b.s3.corp.example"
        );
        let dir = tempfile::tempdir().unwrap();
        let c = s3(|c| {
            c.s3.endpoint = "https://s3.corp.example".into();
            c.s3.virtual_hosted_style = true;
        });
        Storage::open(&c, dir.path()).unwrap();
    }

    /// GCS and Azure cannot be reached from the test machines; this checks that valid settings
    /// build a client (no request is sent) and invalid ones name the setting.
    #[test]
    fn gcs_and_azure_build_from_settings() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = StorageConfig {
            backend: BackendKind::Gcs,
            ..Default::default()
        };
        let e = Storage::open(&c, dir.path()).err().unwrap().to_string();
        assert!(e.contains("storage.gcs.bucket"), "{e}");
        c.gcs.bucket = "goproxy".into();
        c.gcs.prefix = "agora".into();
        c.gcs.service_account_file = "/nonexistent/sa.json".into();
        let e = Storage::open(&c, dir.path()).err().unwrap().to_string();
        assert!(e.contains("storage.gcs.service_account_file"), "{e}");
        let sa = dir.path().join("sa.json");
        std::fs::write(&sa, r#"{"gcs_base_url":"http://127.0.0.1:1","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}"#).unwrap();
        c.gcs.service_account_file = sa.display().to_string();
        let storage = Storage::open(&c, dir.path()).unwrap();
        assert_eq!(storage.backend().to_string(), "gs://goproxy/agora");

        let mut c = StorageConfig {
            backend: BackendKind::Azure,
            ..Default::default()
        };
        c.azure.account = "corp".into();
        let e = Storage::open(&c, dir.path()).err().unwrap().to_string();
        assert!(e.contains("storage.azure.container"), "{e}");
        c.azure.container = "goproxy".into();
        c.azure.access_key = Secret::new("not base64 !!! hunter2");
        let e = Storage::open(&c, dir.path()).err().unwrap();
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("storage.azure.access_key"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        c.azure.access_key = Secret::new("c2VjcmV0LWtleQ==");
        c.azure.endpoint = "http://127.0.0.1:10000/corp".into();
        let e = Storage::open(&c, dir.path()).err().unwrap().to_string();
        assert!(e.contains("storage.azure.allow_http"), "{e}");
        c.azure.allow_http = true;
        let storage = Storage::open(&c, dir.path()).unwrap();
        assert_eq!(
            storage.backend().to_string(),
            "azure://corp/goproxy at http://127.0.0.1:10000/corp"
        );
    }

    #[test]
    fn unique_names_differ() {
        let a = unique_name("github.com/x/y/@v/v1.0.0.zip");
        let b = unique_name("github.com/x/y/@v/v1.0.0.zip");
        assert_ne!(a, b);
        assert!(!a.contains('/'), "{a}");
        assert!(a.ends_with("v1.0.0.zip"), "{a}");
    }
}
