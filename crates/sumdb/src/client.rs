//! [`Client`]: what the go command's `sumdb.Client` does before it trusts a download, for a
//! proxy that must not cache what clients would refuse.
//!
//! A lookup is trusted only when
//! 1. its tree note is signed by the database's key,
//! 2. that tree is consistent with the newest tree verified before (one is a prefix of the other,
//!    proven with tiles); a tree head that is not is a fork of the log, refused and reported as a
//!    [`SumdbError::Security`] naming both heads,
//! 3. the record is in the newest tree (its hash is read from tiles authenticated against that
//!    tree's hash), and
//! 4. the record's go.sum lines name the hash being checked.
//!
//! The newest verified tree head is kept through [`Ops`] (agora keeps it in storage, so it
//! survives restarts and is shared by replicas). Tiles are fetched as needed, authenticated, and
//! only then handed to [`Ops::save_tile`]; a tile that was kept but fails authentication is
//! ignored and fetched again.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use agora_gomod::module::{escape_path, escape_version};
use async_trait::async_trait;
use bytes::Bytes;
use tlog_tiles::{
    record_hash, stored_hash_index, tree_hash, Hash, HashReader, Tile, TileHashReader, TileReader,
};

use crate::error::{Mismatch, SumdbError};
use crate::gosumdb::Database;
use crate::tree::{self, Tree};
use crate::{record, tile, TILE_HEIGHT};

/// How a remote request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// The database answered 404 or 410.
    NotFound(String),
    /// Anything else: unreachable, 5xx, too large, time-out.
    Failed(String),
}

/// The outside world of a [`Client`].
#[async_trait]
pub trait Ops: Send + Sync {
    /// GETs `<database URL>/<path>` (`lookup/...`, `latest`, `tile/...`).
    async fn fetch(&self, path: &str) -> Result<Bytes, Remote>;
    /// A tile kept earlier by [`Ops::save_tile`], if any.
    async fn cached_tile(&self, path: &str) -> Option<Bytes>;
    /// Keeps an authenticated tile.
    async fn save_tile(&self, path: &str, data: Bytes);
    /// The newest verified signed tree head kept by [`Ops::save_latest`], if any.
    async fn load_latest(&self) -> Option<Bytes>;
    /// Keeps a newer verified signed tree head.
    async fn save_latest(&self, note: Bytes);
}

#[async_trait]
impl<T: Ops + ?Sized> Ops for std::sync::Arc<T> {
    async fn fetch(&self, path: &str) -> Result<Bytes, Remote> {
        (**self).fetch(path).await
    }
    async fn cached_tile(&self, path: &str) -> Option<Bytes> {
        (**self).cached_tile(path).await
    }
    async fn save_tile(&self, path: &str, data: Bytes) {
        (**self).save_tile(path, data).await
    }
    async fn load_latest(&self) -> Option<Bytes> {
        (**self).load_latest().await
    }
    async fn save_latest(&self, note: Bytes) {
        (**self).save_latest(note).await
    }
}

/// The hashes a database recorded for a module version, as go.sum writes them (`h1:...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sums {
    pub zip: Option<String>,
    pub go_mod: Option<String>,
}

/// Most recent lookups remembered: a `.mod` and its `.zip` are usually verified together.
const RECENT_LOOKUPS: usize = 1024;
/// Rounds of "find the tiles a proof needs, fetch them": one suffices for every proof the
/// `tlog` code makes today; the rest is headroom.
const TILE_ROUNDS: usize = 4;

/// A verifying client of one checksum database.
pub struct Client<O> {
    db: Database,
    ops: O,
    /// The newest verified tree and its note; loaded from [`Ops::load_latest`] on first use.
    /// Held across a merge so that two merges never race each other's proofs.
    latest: tokio::sync::Mutex<Option<Option<(Tree, Bytes)>>>,
    recent: Mutex<HashMap<String, Sums>>,
}

impl<O: Ops> Client<O> {
    pub fn new(db: Database, ops: O) -> Self {
        Client {
            db,
            ops,
            latest: tokio::sync::Mutex::new(None),
            recent: Mutex::new(HashMap::new()),
        }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Checks `hash` (`h1:...`) of `module@version`'s zip (`file` `""`) or go.mod (`"/go.mod"`)
    /// against the database.
    pub async fn verify(
        &self,
        module: &str,
        version: &str,
        file: &'static str,
        hash: &str,
    ) -> Result<(), SumdbError> {
        let sums = self.lookup(module, version).await?;
        let recorded = match file {
            "" => sums.zip,
            _ => sums.go_mod,
        };
        match recorded {
            Some(r) if r == hash => Ok(()),
            Some(r) => Err(SumdbError::Mismatch(Box::new(Mismatch {
                db: self.db.name.clone(),
                module: module.to_owned(),
                version: version.to_owned(),
                file,
                ours: hash.to_owned(),
                recorded: r,
            }))),
            None => Err(self.security(format!(
                "the record for {module}@{version} has no line for {module} {version}{file}"
            ))),
        }
    }

    /// The go.sum hashes the database recorded for `module@version`, proven to be in its log.
    pub async fn lookup(&self, module: &str, version: &str) -> Result<Sums, SumdbError> {
        let key = format!("{module}@{version}");
        if let Some(found) = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(found.clone());
        }
        let path = format!(
            "lookup/{}@{}",
            escape_path(module).map_err(|e| self.not_found(module, version, e.to_string()))?,
            escape_version(version).map_err(|e| self.not_found(module, version, e.to_string()))?
        );
        let msg = self.ops.fetch(&path).await.map_err(|e| match e {
            Remote::NotFound(detail) => self.not_found(module, version, detail),
            Remote::Failed(detail) => self.unavailable(detail),
        })?;
        let rec = record::parse(&msg)
            .ok_or_else(|| self.security(format!("malformed lookup answer for {key}")))?;
        let tree = tree::open(&self.db, rec.note)?;
        let latest = self.merge(tree, Bytes::copy_from_slice(rec.note)).await?;
        if rec.id >= latest.n {
            return Err(self.security(format!(
                "record {} of {key} is outside the tree of size {}",
                rec.id, latest.n
            )));
        }
        let hashes = self
            .read_hashes(&latest, &[stored_hash_index(0, rec.id)], &[])
            .await?;
        if hashes[0] != record_hash(rec.text) {
            return Err(self.security(format!(
                "cannot authenticate the record of {key} in the tree of size {}",
                latest.n
            )));
        }
        let sums = Sums {
            zip: record::hash_for(rec.text, module, version, "").map(str::to_owned),
            go_mod: record::hash_for(rec.text, module, version, "/go.mod").map(str::to_owned),
        };
        if sums.zip.is_none() && sums.go_mod.is_none() {
            return Err(self.security(format!("the record for {key} names another module")));
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_LOOKUPS {
            recent.clear();
        }
        recent.insert(key, sums.clone());
        Ok(sums)
    }

    /// The newest verified tree, if one was ever verified.
    pub async fn latest(&self) -> Result<Option<Tree>, SumdbError> {
        let mut latest = self.latest.lock().await;
        self.load(&mut latest).await;
        Ok(latest.as_ref().and_then(|l| l.as_ref()).map(|(t, _)| *t))
    }

    /// Fetches the database's current signed tree head and merges it (see [`Client::merge`]).
    pub async fn refresh(&self) -> Result<Tree, SumdbError> {
        let note = self.ops.fetch("latest").await.map_err(|e| match e {
            Remote::NotFound(d) | Remote::Failed(d) => self.unavailable(d),
        })?;
        let tree = tree::open(&self.db, &note)?;
        self.merge(tree, note).await
    }

    /// Checks that a tile served by the database (`tile/8/...`) is part of the log, and keeps it
    /// when it is. `Ok(false)`: it lies beyond the newest tree the database signs, or its height
    /// is not the one clients use, so it can be neither verified nor kept. A malformed tile or
    /// one whose hashes are not the log's is an error.
    pub async fn authenticate_tile(&self, path: &str, data: &Bytes) -> Result<bool, SumdbError> {
        let Some(t) = tile::parse(path) else {
            return Ok(false);
        };
        if !t.is_data() && data.len() != tile::hash_tile_len(&t) {
            return Err(self.security(format!(
                "malformed tile {path}: {} bytes, want {}",
                data.len(),
                tile::hash_tile_len(&t)
            )));
        }
        let mut tree = self.latest().await?;
        if !tree.is_some_and(|tr| tile::within(&t, tr.n)) {
            tree = Some(self.refresh().await?);
        }
        let tree = match tree {
            Some(tr) if tile::within(&t, tr.n) => tr,
            _ => return Ok(false),
        };
        let indexes = tile::hash_indexes(&t);
        if t.is_data() {
            let records = record::data_tile_records(data, tile::first(&t), t.width() as usize)
                .ok_or_else(|| self.security(format!("malformed data tile {path}")))?;
            let hashes = self.read_hashes(&tree, &indexes, &[]).await?;
            if records
                .iter()
                .zip(&hashes)
                .any(|(r, h)| record_hash(r) != *h)
            {
                return Err(self.security(format!("data tile {path} does not match the log")));
            }
        } else {
            let hashes = self
                .read_hashes(&tree, &indexes, &[(t, data.clone())])
                .await?;
            if hashes.iter().flat_map(|h| h.0).ne(data.iter().copied()) {
                return Err(self.security(format!("tile {path} does not match the log")));
            }
        }
        self.ops.save_tile(path, data.clone()).await;
        Ok(true)
    }

    async fn load(&self, latest: &mut Option<Option<(Tree, Bytes)>>) {
        if latest.is_some() {
            return;
        }
        let stored = match self.ops.load_latest().await {
            Some(note) => match tree::open(&self.db, &note) {
                Ok(tree) => Some((tree, note)),
                Err(e) => {
                    // Verified before it was kept, so only a changed key gets here.
                    tracing::warn!(sumdb = %self.db.name, error = %e, "ignoring the kept tree head");
                    None
                }
            },
            None => None,
        };
        *latest = Some(stored);
    }

    /// Makes `tree` (from `note`) known: it must be consistent with the newest verified tree.
    /// Returns the newest tree after the merge.
    async fn merge(&self, tree: Tree, note: Bytes) -> Result<Tree, SumdbError> {
        let mut guard = self.latest.lock().await;
        self.load(&mut guard).await;
        let current = guard.as_ref().and_then(|l| l.clone());
        let Some((known, known_note)) = current else {
            // Nothing verified yet: trust on first use, as the go command with an empty cache.
            self.ops.save_latest(note.clone()).await;
            *guard = Some(Some((tree, note)));
            return Ok(tree);
        };
        if tree.n <= known.n {
            self.check_trees(&tree, &note, &known, &known_note).await?;
            return Ok(known);
        }
        self.check_trees(&known, &known_note, &tree, &note).await?;
        self.ops.save_latest(note.clone()).await;
        *guard = Some(Some((tree, note)));
        Ok(tree)
    }

    /// Proves that `older` is a prefix of `newer` (or the same tree).
    async fn check_trees(
        &self,
        older: &Tree,
        older_note: &[u8],
        newer: &Tree,
        newer_note: &[u8],
    ) -> Result<(), SumdbError> {
        let h = if older.n == newer.n {
            newer.hash
        } else {
            self.with_tiles(newer, &[], |r| tree_hash(older.n, r))
                .await?
        };
        if h == older.hash {
            return Ok(());
        }
        let indent = |b: &[u8]| String::from_utf8_lossy(b).replace('\n', "\n\t");
        let msg = format!(
            "go.sum database server misbehavior detected!\n\nold database:\n\t{}\nnew database:\n\t{}\n\
             proof of misbehavior: the tree of size {} in the newer head hashes to {h}",
            indent(older_note),
            indent(newer_note),
            older.n
        );
        tracing::error!(sumdb = %self.db.name, "{msg}");
        Err(self.security(msg))
    }

    async fn read_hashes(
        &self,
        tree: &Tree,
        indexes: &[u64],
        candidates: &[(Tile, Bytes)],
    ) -> Result<Vec<Hash>, SumdbError> {
        self.with_tiles(tree, candidates, |r| r.read_hashes(indexes))
            .await
    }

    /// Runs a `tlog` computation over the tiles of `tree`, fetching the tiles it asks for until
    /// it has them all. Tiles it authenticated are kept. `candidates` are tiles to try first
    /// (a tile a client asked for, being authenticated).
    async fn with_tiles<T>(
        &self,
        tree: &Tree,
        candidates: &[(Tile, Bytes)],
        f: impl Fn(&TileHashReader<'_>) -> Result<T, tlog_tiles::Error>,
    ) -> Result<T, SumdbError> {
        // A kept tile that fails authentication was kept before tiles were checked (or the store
        // was altered): the proof is tried once more with every tile fresh from the database.
        for use_cache in [true, false] {
            let tiles = Tiles::default();
            for (t, data) in candidates {
                tiles.insert(*t, data.clone(), Origin::Remote);
            }
            let mut outcome = None;
            for _ in 0..TILE_ROUNDS {
                let run = catch_unwind(AssertUnwindSafe(|| {
                    f(&TileHashReader::new(tree.n, tree.hash, &tiles))
                }));
                let missing =
                    std::mem::take(&mut *tiles.missing.lock().unwrap_or_else(|p| p.into_inner()));
                match run {
                    Ok(Ok(v)) => {
                        outcome = Some(Ok(v));
                        break;
                    }
                    Ok(Err(e)) if missing.is_empty() => {
                        outcome = Some(Err(format!("{e}")));
                        break;
                    }
                    Ok(Err(_)) => self.load_tiles(&tiles, missing, use_cache).await?,
                    Err(_) => {
                        outcome = Some(Err("tile arithmetic failed".to_owned()));
                        break;
                    }
                }
            }
            match outcome {
                Some(Ok(v)) => {
                    let verified = std::mem::take(
                        &mut *tiles.verified.lock().unwrap_or_else(|p| p.into_inner()),
                    );
                    for (t, data) in verified {
                        self.ops.save_tile(&t.path(), data).await;
                    }
                    return Ok(v);
                }
                Some(Err(e)) if use_cache && tiles.any_cached() => {
                    tracing::warn!(sumdb = %self.db.name, error = %e, "a kept tile failed authentication; fetching every tile again");
                }
                Some(Err(e)) => {
                    return Err(self.security(format!(
                        "tiles of the tree of size {} do not prove it: {e}",
                        tree.n
                    )))
                }
                None => return Err(self.security("tiles never sufficed for a proof".into())),
            }
        }
        Err(self.security("tiles never sufficed for a proof".into()))
    }

    /// Fetches `wanted` tiles (kept copies first when `use_cache`), checking each one's size.
    async fn load_tiles(
        &self,
        tiles: &Tiles,
        wanted: Vec<Tile>,
        use_cache: bool,
    ) -> Result<(), SumdbError> {
        let fetched = futures::future::join_all(wanted.into_iter().map(|t| async move {
            let path = t.path();
            let want = tile::hash_tile_len(&t);
            if use_cache {
                if let Some(data) = self.ops.cached_tile(&path).await {
                    if data.len() == want {
                        return Ok((t, data, Origin::Cache));
                    }
                    tracing::warn!(sumdb = %self.db.name, tile = %path, len = data.len(), "ignoring a kept tile of the wrong size");
                }
            }
            let data = match self.ops.fetch(&path).await {
                Ok(d) => d,
                // A partial tile the database no longer serves: the full one starts with it.
                Err(Remote::NotFound(_)) if t.width() < 1 << TILE_HEIGHT => {
                    let full = Tile::new(t.height(), t.level(), t.level_index(), 1 << TILE_HEIGHT, false);
                    let data = self.ops.fetch(&full.path()).await.map_err(|e| self.remote(e))?;
                    if data.len() != tile::hash_tile_len(&full) {
                        return Err(self.security(format!("malformed tile {}: {} bytes", full.path(), data.len())));
                    }
                    data.slice(..want)
                }
                Err(e) => return Err(self.remote(e)),
            };
            if data.len() != want {
                return Err(self.security(format!("malformed tile {path}: {} bytes, want {want}", data.len())));
            }
            Ok((t, data, Origin::Remote))
        }))
        .await;
        for f in fetched {
            let (t, data, origin) = f?;
            tiles.insert(t, data, origin);
        }
        Ok(())
    }

    fn remote(&self, e: Remote) -> SumdbError {
        match e {
            Remote::NotFound(d) => self.security(format!("a tile the tree needs is missing: {d}")),
            Remote::Failed(d) => self.unavailable(d),
        }
    }

    fn security(&self, detail: String) -> SumdbError {
        SumdbError::Security {
            db: self.db.name.clone(),
            detail,
        }
    }

    fn unavailable(&self, detail: String) -> SumdbError {
        SumdbError::Unavailable {
            db: self.db.name.clone(),
            detail,
        }
    }

    fn not_found(&self, module: &str, version: &str, detail: String) -> SumdbError {
        SumdbError::NotFound {
            db: self.db.name.clone(),
            module: module.to_owned(),
            version: version.to_owned(),
            detail,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Cache,
    Remote,
}

/// The tiles one proof has loaded so far, as `tlog`'s synchronous [`TileReader`]: asked for a
/// tile it does not have, it notes it and fails, and the caller fetches and runs again.
#[derive(Default)]
struct Tiles {
    have: Mutex<HashMap<Tile, (Bytes, Origin)>>,
    missing: Mutex<Vec<Tile>>,
    /// Fetched tiles that `tlog` authenticated, to keep.
    verified: Mutex<Vec<(Tile, Bytes)>>,
}

impl Tiles {
    fn insert(&self, t: Tile, data: Bytes, origin: Origin) {
        self.have
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(t, (data, origin));
    }

    fn any_cached(&self) -> bool {
        self.have
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|(_, o)| *o == Origin::Cache)
    }
}

impl TileReader for Tiles {
    fn height(&self) -> u8 {
        TILE_HEIGHT
    }

    fn read_tiles(&self, wanted: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        let have = self.have.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for t in wanted {
            match have.get(t) {
                Some((data, _)) => out.push(data.to_vec()),
                None => missing.push(*t),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        self.missing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(missing);
        Err(tlog_tiles::Error::InvalidInput(
            "tiles not loaded yet".into(),
        ))
    }

    fn save_tiles(&self, tiles: &[Tile], _data: &[Vec<u8>]) {
        let have = self.have.lock().unwrap_or_else(|p| p.into_inner());
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        for t in tiles {
            if let Some((data, Origin::Remote)) = have.get(t) {
                verified.push((*t, data.clone()));
            }
        }
    }
}
