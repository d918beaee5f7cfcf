//! Signed tree heads: a note whose text is `go.sum database tree\n<size>\n<base64 hash>\n`
//! (go: `tlog.ParseTree`, `note.Open`), signed by the database's key.

use base64::prelude::{Engine, BASE64_STANDARD};
use signed_note::{Note, Verifier, VerifierList};
use tlog_tiles::Hash;

use crate::error::SumdbError;
use crate::gosumdb::Database;

/// Largest tree note read (the go command's note limit is 1 MB; a tree head is ~200 bytes).
const MAX_NOTE: usize = 64 << 10;

/// A tree of the log: its size and the hash of its records.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tree {
    pub n: u64,
    pub hash: Hash,
}

impl Tree {
    /// Parses a tree note's text. Lines after the hash are ignored, as the go command does, for
    /// forward compatibility.
    pub fn parse(text: &[u8]) -> Option<Tree> {
        let text = std::str::from_utf8(text).ok()?;
        let mut lines = text.splitn(4, '\n');
        if lines.next()? != "go.sum database tree" {
            return None;
        }
        let n = lines.next()?;
        if n.is_empty()
            || !n.bytes().all(|b| b.is_ascii_digit())
            || (n.len() > 1 && n.starts_with('0'))
        {
            return None;
        }
        let n: u64 = n.parse().ok().filter(|n| *n < 1 << 63)?;
        let hash = BASE64_STANDARD.decode(lines.next()?).ok()?;
        lines.next()?;
        Some(Tree {
            n,
            hash: Hash(hash.try_into().ok()?),
        })
    }

    /// The text a database signs for this tree.
    pub fn text(&self) -> String {
        format!("go.sum database tree\n{}\n{}\n", self.n, self.hash)
    }
}

/// Opens a signed tree note: the signature by `db`'s key must verify, and the text must be a
/// tree. Returns the tree.
pub fn open(db: &Database, msg: &[u8]) -> Result<Tree, SumdbError> {
    let bad = |detail: String| SumdbError::Security {
        db: db.name.clone(),
        detail,
    };
    if msg.len() > MAX_NOTE {
        return Err(bad(format!("tree note of {} bytes", msg.len())));
    }
    let verifier = db.verifier()?;
    let name = verifier.name().to_owned();
    let note = Note::from_bytes(msg).map_err(|e| bad(format!("malformed tree note: {e}")))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| bad(format!("tree note not signed by {name}'s key: {e}")))?;
    Tree::parse(note.text()).ok_or_else(|| {
        bad(format!(
            "malformed tree in note: {:?}",
            String::from_utf8_lossy(note.text())
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_text_round_trips_and_rejects_garbage() {
        let t =
            Tree::parse(b"go.sum database tree\n2\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\n")
                .unwrap();
        assert_eq!(t.n, 2);
        assert_eq!(Tree::parse(t.text().as_bytes()), Some(t));
        let extra = format!("{}extension line\n", t.text());
        assert_eq!(Tree::parse(extra.as_bytes()), Some(t));
        for bad in [
            "go.sum database tree\n2\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=",
            "go.sum database tree\n02\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\n",
            "go.sum database tree\n-1\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\n",
            "go.sum database tree\n2\nnND/nri\n",
            "other tree\n2\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\n",
        ] {
            assert_eq!(Tree::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
