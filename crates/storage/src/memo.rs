//! [`SmallObjects`]: an in-memory copy of small write-once objects (a version's `.info` and
//! `.mod`, checksum-database tiles) in front of the backend.
//!
//! Serving such a file from local disk cost a hop to the blocking thread pool (open, stat, read)
//! per request, and the hand-over between threads, not the read, was most of a warm request's
//! time (`perf` under `scripts/bench`: futex waits and wake-ups). A write-once object never
//! changes once stored, so a copy can be served for as long as it is kept, on every backend and
//! whatever other replicas do. Mutable objects (`@v/list`, `@latest`) are never kept: another
//! process sharing the store may replace them at any time. Zips are too big to be worth it and
//! are streamed.
//!
//! The memo is bounded by bytes (bodies plus a fixed overhead per entry) and forgets the oldest
//! entry first. Eviction by age rather than by use keeps a hit to one short critical section
//! with no bookkeeping; losing an entry only costs one read from the backend.
//!
//! [`RecentMutable`] is the mutable objects' counterpart: a copy of a `@v/list` or `@latest`
//! answer is reused for at most [`MUTABLE_TTL`] (one second). Within this process a write
//! replaces the copy at once; a write by another replica sharing the store shows up at most one
//! second later, which is small next to the lists' own freshness window (`cache.list_fresh`,
//! default one minute) and removes the read from the hot path of a busy list.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::layout::{ArtifactKind, StorageKey};
use crate::object::ObjectInfo;

/// Largest object kept (a go.mod is usually well under this; tiles are 8 KiB).
pub(crate) const MAX_OBJECT: u64 = 64 << 10;

/// Bytes the memo holds at most by default.
pub(crate) const DEFAULT_BUDGET: usize = 16 << 20;

/// What an entry costs besides its body: the key, the metadata, the map and queue slots.
const ENTRY_OVERHEAD: usize = 256;

pub(crate) struct SmallObjects {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<StorageKey, (Bytes, ObjectInfo)>,
    /// Insertion order, oldest first.
    order: VecDeque<StorageKey>,
    bytes: usize,
}

impl SmallObjects {
    pub(crate) fn new(budget: usize) -> Self {
        SmallObjects {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Whether objects under `key` may be kept: small, write-once, not a zip.
    pub(crate) fn admits(key: &StorageKey) -> bool {
        match key {
            StorageKey::Artifact { kind, .. } => *kind != ArtifactKind::Zip,
            StorageKey::SumdbTile { .. } => true,
            StorageKey::List(_)
            | StorageKey::Latest(_)
            | StorageKey::SumdbLatest { .. }
            | StorageKey::OwnSumdb { .. } => false,
        }
    }

    pub(crate) fn get(&self, key: &StorageKey) -> Option<(Bytes, ObjectInfo)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.get(key).cloned()
    }

    /// Keeps a copy of `key`'s object (callers pass only what [`SmallObjects::admits`]).
    pub(crate) fn put(&self, key: &StorageKey, body: &Bytes, info: &ObjectInfo) {
        debug_assert!(Self::admits(key) && key.is_write_once());
        if body.len() as u64 > MAX_OBJECT {
            return;
        }
        let cost = body.len() + ENTRY_OVERHEAD;
        if cost > self.budget {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.map.contains_key(key) {
            return;
        }
        while inner.bytes + cost > self.budget {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some((b, _)) = inner.map.remove(&old) {
                inner.bytes -= b.len() + ENTRY_OVERHEAD;
            }
        }
        inner.bytes += cost;
        // A copy that owns exactly the body: `body` may be a slice of a larger buffer.
        inner
            .map
            .insert(key.clone(), (Bytes::copy_from_slice(body), info.clone()));
        inner.order.push_back(key.clone());
    }

    /// Drops the copy of `key` (after the object was deleted: write-once objects leave storage
    /// only by an operator's removal or retention).
    pub(crate) fn forget(&self, key: &StorageKey) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((b, _)) = inner.map.remove(key) {
            inner.bytes -= b.len() + ENTRY_OVERHEAD;
            inner.order.retain(|k| k != key);
        }
    }

    #[cfg(test)]
    fn len_and_bytes(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap();
        (inner.map.len(), inner.bytes)
    }
}

/// How long a copy of a mutable object is reused.
pub(crate) const MUTABLE_TTL: Duration = Duration::from_secs(1);

/// Most mutable objects kept; past it the map is emptied (entries live a second anyway).
const MUTABLE_MAX: usize = 4096;

/// Short-lived copies of `@v/list` and `@latest` answers (see the module docs).
pub(crate) struct RecentMutable {
    inner: Mutex<HashMap<StorageKey, (Bytes, ObjectInfo, Instant)>>,
}

impl RecentMutable {
    pub(crate) fn new() -> Self {
        RecentMutable {
            inner: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` is a mutable object this cache keeps.
    pub(crate) fn admits(key: &StorageKey) -> bool {
        matches!(key, StorageKey::List(_) | StorageKey::Latest(_))
    }

    pub(crate) fn get(&self, key: &StorageKey) -> Option<(Bytes, ObjectInfo)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (body, info, at) = inner.get(key)?;
        (at.elapsed() < MUTABLE_TTL).then(|| (body.clone(), info.clone()))
    }

    pub(crate) fn put(&self, key: &StorageKey, body: &Bytes, info: &ObjectInfo) {
        if body.len() as u64 > MAX_OBJECT {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.len() >= MUTABLE_MAX {
            inner.clear();
        }
        inner.insert(
            key.clone(),
            (Bytes::copy_from_slice(body), info.clone(), Instant::now()),
        );
    }

    /// Forgets `key` (it was just replaced in storage).
    pub(crate) fn forget(&self, key: &StorageKey) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_gomod::module::ModulePath;
    use std::time::SystemTime;

    fn key(v: u32, kind: ArtifactKind) -> StorageKey {
        StorageKey::artifact(
            &ModulePath::new("example.com/m").unwrap(),
            &format!("v1.0.{v}"),
            kind,
        )
    }

    fn info(size: usize) -> ObjectInfo {
        ObjectInfo {
            size: size as u64,
            last_modified: SystemTime::UNIX_EPOCH,
            e_tag: None,
        }
    }

    #[test]
    fn mutable_copies_expire_and_are_forgotten_on_write() {
        let m = ModulePath::new("example.com/m").unwrap();
        let list = StorageKey::List(m.clone());
        assert!(RecentMutable::admits(&list));
        assert!(RecentMutable::admits(&StorageKey::Latest(m)));
        assert!(!RecentMutable::admits(&key(0, ArtifactKind::Info)));
        let recent = RecentMutable::new();
        recent.put(&list, &Bytes::from_static(b"v1.0.0\n"), &info(7));
        assert_eq!(&recent.get(&list).unwrap().0[..], b"v1.0.0\n");
        recent.forget(&list);
        assert!(recent.get(&list).is_none());
        recent.put(&list, &Bytes::from_static(b"v1.0.0\n"), &info(7));
        std::thread::sleep(MUTABLE_TTL + Duration::from_millis(50));
        assert!(recent.get(&list).is_none(), "expired");
    }

    #[test]
    fn keeps_only_small_write_once_objects() {
        let m = ModulePath::new("example.com/m").unwrap();
        assert!(SmallObjects::admits(&key(0, ArtifactKind::Info)));
        assert!(SmallObjects::admits(&key(0, ArtifactKind::Mod)));
        assert!(!SmallObjects::admits(&key(0, ArtifactKind::Zip)));
        assert!(!SmallObjects::admits(&StorageKey::List(m.clone())));
        assert!(!SmallObjects::admits(&StorageKey::Latest(m)));

        let memo = SmallObjects::new(DEFAULT_BUDGET);
        let big = Bytes::from(vec![0u8; MAX_OBJECT as usize + 1]);
        memo.put(&key(0, ArtifactKind::Mod), &big, &info(big.len()));
        assert!(memo.get(&key(0, ArtifactKind::Mod)).is_none());
    }

    #[test]
    fn stays_within_its_budget_dropping_the_oldest_first() {
        let body = Bytes::from(vec![1u8; 1000]);
        let per_entry = body.len() + ENTRY_OVERHEAD;
        let memo = SmallObjects::new(3 * per_entry);
        for v in 0..5 {
            memo.put(&key(v, ArtifactKind::Info), &body, &info(body.len()));
        }
        assert_eq!(memo.len_and_bytes(), (3, 3 * per_entry));
        assert!(memo.get(&key(0, ArtifactKind::Info)).is_none());
        assert!(memo.get(&key(1, ArtifactKind::Info)).is_none());
        let (b, i) = memo.get(&key(4, ArtifactKind::Info)).unwrap();
        assert_eq!((b.len(), i.size), (1000, 1000));
    }
}
