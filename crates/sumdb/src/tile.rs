//! Tile paths (`tile/8/0/x001/234.p/5`, `tile/8/data/000`) and what a well-formed tile is
//! (go: `tlog.ParseTilePath`, `tlog.Tile`). A hash tile holds `W` 32-byte hashes of tree level
//! `L×H`, starting at index `N×2^H`; a data tile holds the `W` records at the leaves it covers.

pub use tlog_tiles::Tile;
use tlog_tiles::{stored_hash_index, HASH_SIZE};

use crate::TILE_HEIGHT;

/// Parses a tile path of the height every Go checksum database uses. `None` for anything else
/// (other heights are not used by the go command and are never verified or kept).
pub fn parse(path: &str) -> Option<Tile> {
    // tlog_tiles 0.2 panics (where Go returns an error) on a width of 0 and on levels of 64
    // and more: those are refused here first.
    let mut parts = path.split('/');
    let level = parts.nth(2)?;
    if path.ends_with(".p/0") || (level != "data" && level.parse::<u8>().map_or(true, |l| l >= 64))
    {
        return None;
    }
    let tile = Tile::from_path(path).ok()?;
    (tile.height() == TILE_HEIGHT && tile.path() == path).then_some(tile)
}

/// The size a hash tile at `path` (`tile/H/L/NNN[.p/W]`, any height) must have: `W` hashes, or
/// `2^H` for a full tile. `None` for data tiles (no fixed size) and paths that are not tiles.
pub fn expected_len(path: &str) -> Option<usize> {
    let mut parts = path.strip_prefix("tile/")?.split('/');
    let height: u32 = parts
        .next()?
        .parse()
        .ok()
        .filter(|h| (1..=30).contains(h))?;
    if parts.next()? == "data" {
        return None;
    }
    let width = match path.rsplit_once(".p/") {
        Some((_, w)) => w
            .parse::<usize>()
            .ok()
            .filter(|w| *w >= 1 && *w < 1 << height)?,
        None => 1 << height,
    };
    Some(width * HASH_SIZE)
}

/// The size in bytes of a hash tile (data tiles have no fixed size).
pub fn hash_tile_len(tile: &Tile) -> usize {
    tile.width() as usize * HASH_SIZE
}

/// The first leaf index a tile covers at its own level.
pub fn first(tile: &Tile) -> u64 {
    tile.level_index() << tile.height()
}

/// Whether every hash of `tile` belongs to a tree of `n` records.
pub fn within(tile: &Tile, n: u64) -> bool {
    let level = u32::from(tile.level()) * u32::from(tile.height());
    let end = first(tile) + u64::from(tile.width());
    level < 64
        && end
            .checked_shl(level)
            .is_some_and(|covered| covered >> level == end && covered <= n)
}

/// The stored-hash indexes of the hashes a hash tile lists (for a data tile: of the record
/// hashes its records must have).
pub fn hash_indexes(tile: &Tile) -> Vec<u64> {
    let level = if tile.is_data() {
        0
    } else {
        tile.level() * tile.height()
    };
    (0..u64::from(tile.width()))
        .map(|i| stored_hash_index(level, first(tile) + i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_sizes() {
        let t = parse("tile/8/0/x001/234.p/5").unwrap();
        assert_eq!((t.level(), t.level_index(), t.width()), (0, 1234, 5));
        assert_eq!(hash_tile_len(&t), 160);
        assert_eq!(first(&t), 1234 * 256);
        let full = parse("tile/8/1/000").unwrap();
        assert_eq!(hash_tile_len(&full), 8192);
        assert!(parse("tile/8/data/000").unwrap().is_data());
        assert_eq!(expected_len("tile/8/0/x001/234.p/5"), Some(160));
        assert_eq!(expected_len("tile/8/2/000"), Some(8192));
        assert_eq!(expected_len("tile/4/0/000"), Some(512));
        assert_eq!(expected_len("tile/8/data/000"), None);
        assert_eq!(expected_len("tile/8/0/000.p/0"), None);
        assert!(parse("tile/8/64/000").is_none());
        for bad in [
            "tile/4/0/000",
            "tile/8/0/0000",
            "tile/8/0/000.p/256",
            "tile/8/0/000.p/0",
            "tile/8/0/001/000",
            "tile/8/0/x000/001",
            "tile/8/-1/000",
            "lookup/x@v1.0.0",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tiles_within_a_tree() {
        let level0 = parse("tile/8/0/000").unwrap();
        assert!(within(&level0, 256));
        assert!(!within(&level0, 255));
        let partial = parse("tile/8/0/001.p/3").unwrap();
        assert!(within(&partial, 259));
        assert!(!within(&partial, 258));
        let level1 = parse("tile/8/1/000.p/2").unwrap();
        assert!(within(&level1, 512));
        assert!(!within(&level1, 511));
        assert_eq!(hash_indexes(&partial).len(), 3);
        assert_eq!(hash_indexes(&partial)[0], stored_hash_index(0, 256));
    }
}
