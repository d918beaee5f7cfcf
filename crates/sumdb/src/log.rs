//! The server side of a checksum database: what agora needs to run one of its own for the
//! modules it serves (go: `golang.org/x/mod/sumdb` server, `tlog`, `note`). Pure: keys, records,
//! tree heads and the tiles an append writes, given a [`HashReader`] over the hashes already
//! stored. Storage, locking and serving are the caller's.
//!
//! - Keys in the go command's note format: a signer key `PRIVATE+KEY+name+hash+key` (kept
//!   secret) and the verifier key `name+hash+key` clients put in `GOSUMDB`.
//! - A record is a version's two go.sum lines; the log is a Merkle tree of records (RFC 6962
//!   hashing), stored as tiles of height 8.
//! - [`Append`] computes, for records appended to a tree of size `n`, the new stored hashes,
//!   the new tree and every tile path that changes, with its bytes.

use std::collections::HashMap;

use base64::prelude::{Engine, BASE64_STANDARD};
use signed_note::{Note, Signer, StandardSigner};
use tlog_tiles::{stored_hash_count, stored_hashes, tree_hash, Hash, HashReader, Tile};

use crate::tree::Tree;
use crate::TILE_HEIGHT;

/// Why a key or an append is refused.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("not a checksum database signer key (PRIVATE+KEY+name+hash+key)")]
    Key,
    #[error("database name {0:?} is not valid (letters, digits, . - _ / and no spaces)")]
    Name(String),
    #[error("tree computation failed: {0}")]
    Tlog(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A database's signing key, with the verifier key clients use.
#[derive(Clone)]
pub struct LogKey {
    name: String,
    signer: StandardSigner,
    verifier: String,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey")
            .field("name", &self.name)
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

/// A new key pair for database `name`: (signer key, verifier key).
pub fn generate_key(name: &str) -> Result<(String, String), LogError> {
    if !signed_note::is_key_name_valid(name) {
        return Err(LogError::Name(name.to_owned()));
    }
    Ok(signed_note::generate_key(&mut rand_core::OsRng, name))
}

impl LogKey {
    /// Reads a signer key (surrounding whitespace ignored).
    pub fn parse(skey: &str) -> Result<LogKey, LogError> {
        let skey = skey.trim();
        let signer = StandardSigner::new(skey).map_err(|_| LogError::Key)?;
        // PRIVATE+KEY+name+hash+base64(alg || seed): the verifier key is derived from the seed.
        // The base64 key may itself contain `+`: it is everything after the fourth one.
        let key64 = skey.splitn(5, '+').nth(4).ok_or(LogError::Key)?;
        let key = BASE64_STANDARD.decode(key64).map_err(|_| LogError::Key)?;
        let seed: [u8; 32] = key
            .get(1..)
            .and_then(|s| s.try_into().ok())
            .ok_or(LogError::Key)?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let name = signer.name().to_owned();
        let verifier = signed_note::new_ed25519_verifier_key(&name, &signing.verifying_key());
        Ok(LogKey {
            name,
            signer,
            verifier,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `name+hash+key`, for `GOSUMDB`.
    pub fn verifier_key(&self) -> &str {
        &self.verifier
    }

    /// The signed note of `tree` (what `/latest` serves and lookups end with).
    pub fn sign_tree(&self, tree: &Tree) -> Result<Vec<u8>, LogError> {
        let mut note =
            Note::new(tree.text().as_bytes(), &[]).map_err(|e| LogError::Sign(e.to_string()))?;
        note.add_sigs(&[&self.signer as &dyn Signer])
            .map_err(|e| LogError::Sign(e.to_string()))?;
        Ok(note.to_bytes())
    }
}

/// The record of `module@version`: its go.sum lines.
pub fn record_text(module: &str, version: &str, zip_h1: &str, mod_h1: &str) -> String {
    format!("{module} {version} {zip_h1}\n{module} {version}/go.mod {mod_h1}\n")
}

/// A `lookup` answer: the record id, its text, a blank line, the signed tree.
pub fn lookup_answer(id: u64, text: &[u8], signed_tree: &[u8]) -> Vec<u8> {
    let mut out = format!("{id}\n").into_bytes();
    out.extend_from_slice(text);
    out.push(b'\n');
    out.extend_from_slice(signed_tree);
    out
}

/// The bytes of a data tile: each record's text followed by a blank line (as the Go 1.27
/// server writes them).
pub fn data_tile(records: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(r);
        out.push(b'\n');
    }
    out
}

/// The width a tile at tile level `level` (`None`: data tile), index `n`, has in a tree of
/// `size` records; 0 when the tree does not reach it.
pub fn width_at(level: Option<u8>, n: u64, size: u64) -> u32 {
    let full = 1u64 << TILE_HEIGHT;
    let shift = u32::from(level.unwrap_or(0)) * u32::from(TILE_HEIGHT);
    let count = size >> shift;
    let first = n * full;
    if count <= first {
        0
    } else {
        (count - first).min(full) as u32
    }
}

/// The tile at tile level `level` (`None`: data), index `n`, as it is in a tree of `size`.
pub fn tile_at(level: Option<u8>, n: u64, size: u64) -> Option<Tile> {
    let w = width_at(level, n, size);
    (w > 0).then(|| Tile::new(TILE_HEIGHT, level.unwrap_or(0), n, w, level.is_none()))
}

/// What appending records to a tree of size `old` writes.
pub struct Append {
    pub tree: Tree,
    /// Hash tiles and their bytes (paths `tile/8/L/...`), new or wider.
    pub hash_tiles: Vec<(Tile, Vec<u8>)>,
    /// Data tiles that change: (tile, index of its first record).
    pub data_tiles: Vec<(Tile, u64)>,
    /// The stored hashes the append added, by stored-hash index.
    pub new_hashes: HashMap<u64, Hash>,
}

/// Hashes already stored (`old`), plus those an append computes.
struct Combined<'a, R: HashReader> {
    old: &'a R,
    old_count: u64,
    new: HashMap<u64, Hash>,
}

impl<R: HashReader> HashReader for Combined<'_, R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let old: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|i| *i < self.old_count)
            .collect();
        let mut from_old = if old.is_empty() {
            Vec::new()
        } else {
            self.old.read_hashes(&old)?
        }
        .into_iter();
        indexes
            .iter()
            .map(|i| {
                if *i < self.old_count {
                    from_old.next().ok_or(tlog_tiles::Error::IndexesNotInTree)
                } else {
                    self.new
                        .get(i)
                        .copied()
                        .ok_or(tlog_tiles::Error::IndexesNotInTree)
                }
            })
            .collect()
    }
}

/// Computes what appending `records` (their texts, in order) to a tree of size `old` writes;
/// `old_hashes` reads the hashes the tree already stores.
pub fn append<R: HashReader>(
    old: u64,
    old_hashes: &R,
    records: &[&[u8]],
) -> Result<Append, LogError> {
    let tl = |e: tlog_tiles::Error| LogError::Tlog(format!("{e:?}"));
    let mut combined = Combined {
        old: old_hashes,
        old_count: stored_hash_count(old),
        new: HashMap::new(),
    };
    for (i, text) in records.iter().enumerate() {
        let n = old + i as u64;
        let hashes = stored_hashes(n, text, &combined).map_err(tl)?;
        let base = stored_hash_count(n);
        for (k, h) in hashes.into_iter().enumerate() {
            combined.new.insert(base + k as u64, h);
        }
    }
    let size = old + records.len() as u64;
    let hash = tree_hash(size, &combined).map_err(tl)?;
    let mut hash_tiles = Vec::new();
    let mut data_tiles = Vec::new();
    for tile in Tile::new_tiles(TILE_HEIGHT, old, size) {
        let data = tile.read_data(&combined).map_err(tl)?;
        let first = tile.level_index() << TILE_HEIGHT;
        if tile.level() == 0 {
            let mut data_tile = tile;
            data_tile.set_is_data();
            data_tiles.push((data_tile, first));
        }
        hash_tiles.push((tile, data));
    }
    Ok(Append {
        tree: Tree { n: size, hash },
        hash_tiles,
        data_tiles,
        new_hashes: combined.new,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes in memory, for tests: a tree built by appending in one go.
    struct Mem(HashMap<u64, Hash>);

    impl HashReader for Mem {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
            indexes
                .iter()
                .map(|i| {
                    self.0
                        .get(i)
                        .copied()
                        .ok_or(tlog_tiles::Error::IndexesNotInTree)
                })
                .collect()
        }
    }

    #[test]
    fn keys_with_plus_signs_in_their_base64_parse() {
        // Many generated keys have a `+` in their base64: all of them must round-trip.
        for _ in 0..64 {
            let (skey, vkey) = generate_key("sum.corp.example").unwrap();
            assert_eq!(LogKey::parse(&skey).unwrap().verifier_key(), vkey, "{vkey}");
        }
    }

    #[test]
    fn keys_round_trip_and_sign_trees_the_client_side_verifies() {
        let (skey, vkey) = generate_key("sum.corp.example").unwrap();
        let key = LogKey::parse(&format!("  {skey}\n")).unwrap();
        assert_eq!(key.verifier_key(), vkey);
        assert_eq!(key.name(), "sum.corp.example");
        assert!(!format!("{key:?}").contains(&skey));
        let db = crate::Database::parse(&vkey).unwrap().unwrap();
        let tree = Tree {
            n: 3,
            hash: Hash([7; 32]),
        };
        let signed = key.sign_tree(&tree).unwrap();
        assert_eq!(crate::tree::open(&db, &signed).unwrap(), tree);
        assert!(LogKey::parse(&vkey).is_err());
        assert!(generate_key("bad name").is_err());
    }

    #[test]
    fn appending_in_batches_gives_the_tree_of_appending_at_once() {
        let texts: Vec<String> = (0..600)
            .map(|i| record_text(&format!("example.com/m{i}"), "v1.0.0", "h1:a=", "h1:b="))
            .collect();
        let all: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
        let once = append(0, &Mem(HashMap::new()), &all).unwrap();
        // In three batches, each reading only what the previous ones stored.
        let mut stored: HashMap<u64, Hash> = HashMap::new();
        let mut size = 0;
        for batch in [&all[..1], &all[1..300], &all[300..]] {
            let a = append(size, &Mem(stored.clone()), batch).unwrap();
            stored.extend(a.new_hashes);
            size += batch.len() as u64;
            assert_eq!(a.tree.n, size);
        }
        assert_eq!(tree_hash(600, &Mem(stored)).unwrap(), once.tree.hash);
        // 600 records: full tiles 0 and 1 at level 0, a partial of 88, and level 1's partial.
        let paths: Vec<String> = once.hash_tiles.iter().map(|(t, _)| t.path()).collect();
        assert!(paths.contains(&"tile/8/0/000".to_owned()), "{paths:?}");
        assert!(paths.contains(&"tile/8/0/002.p/88".to_owned()), "{paths:?}");
        assert!(paths.contains(&"tile/8/1/000.p/2".to_owned()), "{paths:?}");
        let data: Vec<String> = once.data_tiles.iter().map(|(t, _)| t.path()).collect();
        assert!(
            data.contains(&"tile/8/data/002.p/88".to_owned()),
            "{data:?}"
        );
        assert_eq!(width_at(None, 2, 600), 88);
        assert_eq!(width_at(Some(1), 0, 600), 2);
        assert_eq!(width_at(Some(0), 3, 600), 0);
    }

    #[test]
    fn lookup_answers_parse_back() {
        let text = record_text("example.com/m", "v1.0.0", "h1:a=", "h1:b=");
        let msg = lookup_answer(41, text.as_bytes(), b"go.sum database tree\n...");
        let l = crate::record::parse(&msg).unwrap();
        assert_eq!((l.id, l.text), (41, text.as_bytes()));
        let tile = data_tile(&[text.as_bytes(), text.as_bytes()]);
        assert_eq!(
            crate::record::data_tile_records(&tile, 0, 2).unwrap().len(),
            2
        );
    }
}
