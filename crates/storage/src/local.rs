//! Reads from the local backend: the serving hot path.
//!
//! `object_store`'s local backend reads in 8 KiB chunks with one thread-pool hop per chunk, which
//! made serving several times slower than a static file server (scripts/bench). Reading through
//! `tokio::fs` is better but still pays a hop to the blocking pool per chunk, plus a copy from
//! tokio's own buffer into the stream's. On a warm cache the hops, not the reads, were most of
//! the time: futex wake-ups and context switches between the runtime and the pool (`perf` under
//! `scripts/bench`).
//!
//! So a read first tries to finish without blocking, on the runtime thread:
//! - the file is opened with `openat2(RESOLVE_CACHED)`, which fails with `EAGAIN` instead of
//!   touching the disk when a path component is not in the kernel's lookup cache;
//! - each chunk is read with `preadv2(RWF_NOWAIT)`, which fails with `EAGAIN` instead of waiting
//!   for the disk when the bytes are not in the page cache (a partially cached chunk comes back
//!   short, and the rest is read on the next poll).
//!
//! Whatever would block goes to the blocking pool as before, so a cold file costs what it did and
//! a warm one costs no hop at all. Bytes are read straight into the buffer handed to the HTTP
//! layer (one copy, kernel to user). Kernels without these calls (before 5.12 for the open) make
//! every read take the blocking path.
//!
//! Metadata is the same as `object_store` reports (its ETag scheme included), so validators do not
//! depend on which path served a request.

use std::fs::{File, Metadata};
use std::future::Future;
use std::io;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::task::JoinHandle;

use crate::error::StorageError;
use crate::layout::StorageKey;
use crate::object::{Object, ObjectInfo};

/// Chunk size for large objects: with hundreds of concurrent downloads the chunk size is what
/// bounds memory. Larger chunks (up to 1 MiB within a global budget) were tried for zip bandwidth:
/// no clear gain on a loaded 2-core machine, and peak memory under 256 concurrent downloads went
/// past the 64 MiB target.
const CHUNK: usize = 64 * 1024;
/// Objects up to [`MID_OBJECT`] are read in quarters, at most this big: fewer reads and writes
/// for a 1 MiB zip.
const MID_CHUNK: usize = 256 * 1024;
const MID_OBJECT: u64 = 4 << 20;

/// Set once the kernel refused a non-blocking open or read as unsupported; every read then takes
/// the blocking path.
static NO_FAST_PATH: AtomicBool = AtomicBool::new(false);

fn path_of(root: &Path, key: &StorageKey) -> PathBuf {
    // Keys are validated module paths and versions (no `..`, no leading `/`).
    root.join(key.path())
}

fn info_of(meta: &Metadata) -> ObjectInfo {
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let micros = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    ObjectInfo {
        size: meta.len(),
        last_modified: modified,
        e_tag: Some(format!("\"{:x}-{micros:x}-{:x}\"", meta.ino(), meta.len())),
    }
}

fn err(key: &StorageKey, op: &'static str, e: io::Error) -> StorageError {
    StorageError::Local {
        op,
        key: key.path(),
        source: e,
    }
}

fn missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    ) || e.raw_os_error() == Some(21) // EISDIR: a directory is not an object
}

/// What a non-blocking attempt found.
enum Attempt<T> {
    Done(T),
    /// It would have waited for the disk (or the kernel cannot say): take the blocking path.
    WouldBlock,
}

/// Opens and stats `path`: `Ok(None)` if there is no object (absent, or a directory).
fn open_blocking(path: &Path) -> io::Result<Option<(File, Metadata)>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if missing(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    Ok((!meta.is_dir()).then_some((file, meta)))
}

/// [`open_blocking`] if it needs no disk access.
#[cfg(target_os = "linux")]
fn open_cached(path: &Path) -> io::Result<Attempt<Option<(File, Metadata)>>> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};
    use rustix::io::Errno;

    if NO_FAST_PATH.load(Ordering::Relaxed) {
        return Ok(Attempt::WouldBlock);
    }
    let fd = match openat2(
        CWD,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::CACHED,
    ) {
        Ok(fd) => fd,
        Err(Errno::AGAIN) => return Ok(Attempt::WouldBlock),
        // No openat2 (before 5.6) or no RESOLVE_CACHED (before 5.12).
        Err(Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) => {
            NO_FAST_PATH.store(true, Ordering::Relaxed);
            return Ok(Attempt::WouldBlock);
        }
        Err(e) => {
            let e = io::Error::from(e);
            return if missing(&e) {
                Ok(Attempt::Done(None))
            } else {
                Err(e)
            };
        }
    };
    let file = File::from(fd);
    // The inode is in memory once the file is open: fstat does not wait for the disk.
    let meta = file.metadata()?;
    Ok(Attempt::Done((!meta.is_dir()).then_some((file, meta))))
}

#[cfg(not(target_os = "linux"))]
fn open_cached(_: &Path) -> io::Result<Attempt<Option<(File, Metadata)>>> {
    Ok(Attempt::WouldBlock)
}

/// Opens `path` without blocking the runtime: on this thread when the kernel can do it from its
/// caches, on the blocking pool otherwise.
async fn open(path: PathBuf) -> io::Result<Option<(File, Metadata)>> {
    match open_cached(&path)? {
        Attempt::Done(found) => Ok(found),
        Attempt::WouldBlock => tokio::task::spawn_blocking(move || open_blocking(&path))
            .await
            .map_err(io::Error::other)?,
    }
}

/// Reads up to `buf`'s spare capacity at `pos` into it; returns the count (0 at end of file).
/// With `nowait`, fails with `WouldBlock` rather than wait for the disk.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // the workspace denies it; this is its one use (see SAFETY below)
fn pread_into(file: &File, buf: &mut BytesMut, pos: u64, nowait: bool) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    let spare = buf.spare_capacity_mut();
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    let offset = libc::off_t::try_from(pos).map_err(io::Error::other)?;
    let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
    loop {
        // SAFETY: `iov` describes `spare`, memory owned by `buf` and writable for `iov_len`
        // bytes; the kernel writes at most that much and reports how much it wrote, which is
        // all `set_len` below exposes. Reading into uninitialised memory is what saves the
        // zeroing (or second copy) a safe read would cost on every chunk.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, flags) };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: the kernel initialised the first `n` spare bytes (n <= iov_len).
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn pread_into(file: &File, buf: &mut BytesMut, pos: u64, nowait: bool) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;

    if nowait {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let start = buf.len();
    buf.resize(buf.capacity(), 0);
    let n = file.read_at(&mut buf[start..], pos);
    buf.truncate(start + *n.as_ref().unwrap_or(&0));
    n
}

/// One non-blocking read into `buf`, if the kernel can do it from the page cache.
fn read_cached(file: &File, buf: &mut BytesMut, pos: u64) -> io::Result<Attempt<usize>> {
    if NO_FAST_PATH.load(Ordering::Relaxed) {
        return Ok(Attempt::WouldBlock);
    }
    match pread_into(file, buf, pos, true) {
        Ok(n) => Ok(Attempt::Done(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Attempt::WouldBlock),
        // A file system or kernel without RWF_NOWAIT.
        Err(e) if e.raw_os_error() == Some(libc_codes::EOPNOTSUPP) => {
            NO_FAST_PATH.store(true, Ordering::Relaxed);
            Ok(Attempt::WouldBlock)
        }
        Err(e) => Err(e),
    }
}

mod libc_codes {
    #[cfg(target_os = "linux")]
    pub const EOPNOTSUPP: i32 = libc::EOPNOTSUPP;
    #[cfg(not(target_os = "linux"))]
    pub const EOPNOTSUPP: i32 = -1;
}

/// Reads all of `file` (`len` bytes by its metadata) on the blocking pool.
fn read_all_blocking(file: &File, len: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(len.max(1));
    while buf.len() < len {
        let pos = buf.len() as u64;
        if pread_into(file, &mut buf, pos, false)? == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

/// A small object read whole (info, mod, list, latest, tiles): `None` if it is not stored.
pub(crate) async fn read(
    root: &Path,
    key: &StorageKey,
) -> Result<Option<(Bytes, ObjectInfo)>, StorageError> {
    let Some((file, meta)) = open(path_of(root, key))
        .await
        .map_err(|e| err(key, "open", e))?
    else {
        return Ok(None);
    };
    let len = meta.len() as usize;
    let mut buf = BytesMut::with_capacity(len.max(1));
    if let Attempt::Done(n) = read_cached(&file, &mut buf, 0).map_err(|e| err(key, "read", e))? {
        if n == len {
            return Ok(Some((buf.freeze(), info_of(&meta))));
        }
    }
    let body = tokio::task::spawn_blocking(move || read_all_blocking(&file, len))
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(|e| err(key, "read", e))?;
    Ok(Some((body, info_of(&meta))))
}

/// Opens `key` for streaming, whole or bytes `range` of it (end exclusive, within the object).
/// The returned [`ObjectInfo`] describes the whole object.
pub(crate) async fn open_object(
    root: &Path,
    key: &StorageKey,
    range: Option<Range<u64>>,
) -> Result<Option<Object>, StorageError> {
    let Some((file, meta)) = open(path_of(root, key))
        .await
        .map_err(|e| err(key, "open", e))?
    else {
        return Ok(None);
    };
    let len = meta.len();
    let range = range.unwrap_or(0..len);
    let range = range.start.min(len)..range.end.min(len);
    let body = FileBody {
        file: Arc::new(file),
        pos: range.start,
        end: range.end,
        chunk: chunk_for(len),
        pending: None,
    };
    Ok(Some(Object {
        info: info_of(&meta),
        body: body.boxed(),
    }))
}

/// Read size for streaming an object of `len` bytes.
fn chunk_for(len: u64) -> usize {
    if len <= MID_OBJECT {
        ((len / 4) as usize).clamp(CHUNK, MID_CHUNK)
    } else {
        CHUNK
    }
}

/// A byte range of an open file as a stream of chunks; see the module docs for how a chunk is
/// read. The range comes from the file's size when opened: a write-once object never changes,
/// so a file that ends early is an error (the response would otherwise be cut short silently).
struct FileBody {
    file: Arc<File>,
    pos: u64,
    end: u64,
    chunk: usize,
    /// A read on the blocking pool.
    pending: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileBody {
    /// Accounts for a chunk just read.
    fn advance(&mut self, chunk: Bytes) -> io::Result<Bytes> {
        if chunk.is_empty() {
            self.pos = self.end;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stored object is shorter than its recorded size",
            ));
        }
        self.pos += chunk.len() as u64;
        Ok(chunk)
    }
}

impl Stream for FileBody {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(task) = &mut this.pending {
            let read = ready!(Pin::new(task).poll(cx));
            this.pending = None;
            let chunk = read.map_err(io::Error::other).and_then(|r| r);
            return Poll::Ready(Some(chunk.and_then(|c| this.advance(c))));
        }
        if this.pos >= this.end {
            return Poll::Ready(None);
        }
        let want = (this.end - this.pos).min(this.chunk as u64) as usize;
        let mut buf = BytesMut::with_capacity(want);
        match read_cached(&this.file, &mut buf, this.pos) {
            Ok(Attempt::Done(_)) => return Poll::Ready(Some(this.advance(buf.freeze()))),
            Ok(Attempt::WouldBlock) => {}
            Err(e) => {
                this.pos = this.end;
                return Poll::Ready(Some(Err(e)));
            }
        }
        let (file, pos) = (this.file.clone(), this.pos);
        this.pending = Some(tokio::task::spawn_blocking(move || {
            pread_into(&file, &mut buf, pos, false).map(|_| buf.freeze())
        }));
        // Registers the waker with the task just started.
        Pin::new(this).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_quarters_of_mid_sized_objects() {
        assert_eq!(chunk_for(10), CHUNK);
        assert_eq!(chunk_for(1 << 20), MID_CHUNK);
        assert_eq!(chunk_for(600 << 10), 150 << 10);
        assert_eq!(chunk_for(50 << 20), CHUNK);
    }

    fn zip_key(module: &str) -> StorageKey {
        StorageKey::artifact(
            &agora_gomod::module::ModulePath::new(module).unwrap(),
            "v1.0.0",
            crate::layout::ArtifactKind::Zip,
        )
    }

    /// Stores `data` as `example.com/m@v1.0.0`'s zip under `root`; returns the key and the file.
    fn store(root: &Path, data: &[u8]) -> (StorageKey, PathBuf) {
        let key = zip_key("example.com/m");
        let path = path_of(root, &key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        (key, path)
    }

    async fn body(obj: Object) -> Vec<u8> {
        obj.body
            .map(|c| c.unwrap())
            .collect::<Vec<_>>()
            .await
            .concat()
    }

    fn test_data() -> Vec<u8> {
        (0..1_300_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn streams_whole_files_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let data = test_data();
        let (key, _) = store(dir.path(), &data);
        let obj = open_object(dir.path(), &key, None).await.unwrap().unwrap();
        assert_eq!(obj.info.size, data.len() as u64);
        assert_eq!(body(obj).await, data);
        let obj = open_object(dir.path(), &key, Some(1000..700_000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(obj.info.size, data.len() as u64);
        assert_eq!(body(obj).await, &data[1000..700_000]);
        let (whole, info) = read(dir.path(), &key).await.unwrap().unwrap();
        assert_eq!(&whole[..], &data[..]);
        assert_eq!(info.size, data.len() as u64);

        let absent = zip_key("example.com/absent");
        assert!(open_object(dir.path(), &absent, None)
            .await
            .unwrap()
            .is_none());
        assert!(read(dir.path(), &absent).await.unwrap().is_none());
    }

    /// The point of this module: a file the kernel has cached is opened and read on the calling
    /// thread.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_cached_file_is_opened_and_read_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let data = test_data();
        let (_, path) = store(dir.path(), &data);
        let Attempt::Done(Some((file, meta))) = open_cached(&path).unwrap() else {
            panic!("openat2(RESOLVE_CACHED) refused a file just written (kernel before 5.12?)");
        };
        assert_eq!(meta.len(), data.len() as u64);
        let mut buf = BytesMut::with_capacity(data.len());
        match read_cached(&file, &mut buf, 0).unwrap() {
            Attempt::Done(n) => assert_eq!(n, data.len()),
            Attempt::WouldBlock => panic!("preadv2(RWF_NOWAIT) refused a file just written"),
        }
        assert_eq!(&buf[..], &data[..]);
    }

    /// A file out of the page cache is read on the blocking pool: the first poll starts a read
    /// there and is pending, and the stream still delivers every byte.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn an_uncached_file_is_streamed_from_the_blocking_pool() {
        use rustix::fs::{fadvise, fstatfs, Advice};

        let dir = tempfile::tempdir().unwrap();
        let data = test_data();
        let (key, path) = store(dir.path(), &data);
        let file = File::open(&path).unwrap();
        file.sync_all().unwrap();
        // tmpfs has no disk to evict to: its pages stay, and every read is served from memory.
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        let on_tmpfs = fstatfs(&file).unwrap().f_type as i64 == TMPFS_MAGIC;
        fadvise(&file, 0, None, Advice::DontNeed).unwrap();
        let mut obj = open_object(dir.path(), &key, None).await.unwrap().unwrap();
        let waker = futures::task::noop_waker();
        let first = obj.body.poll_next_unpin(&mut Context::from_waker(&waker));
        if !on_tmpfs {
            assert!(
                first.is_pending(),
                "a chunk evicted from the page cache was read without the blocking pool"
            );
        }
        let mut got = match first {
            Poll::Ready(Some(chunk)) => chunk.unwrap().to_vec(),
            Poll::Ready(None) => Vec::new(),
            Poll::Pending => Vec::new(),
        };
        got.extend(body(obj).await);
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_size_is_an_error_not_a_short_body() {
        let dir = tempfile::tempdir().unwrap();
        let (key, path) = store(dir.path(), &[7u8; 300_000]);
        let obj = open_object(dir.path(), &key, None).await.unwrap().unwrap();
        // Cut behind the reader's back (never done to a stored object; a broken disk might).
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100_000)
            .unwrap();
        let chunks: Vec<io::Result<Bytes>> = obj.body.collect().await;
        let read: usize = chunks.iter().flatten().map(Bytes::len).sum();
        assert_eq!(read, 100_000);
        let last = chunks.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.kind(), io::ErrorKind::UnexpectedEof);
    }
}
