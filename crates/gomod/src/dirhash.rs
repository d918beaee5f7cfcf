//! The `h1:` hashes that go.sum and the checksum database record (x/mod `sumdb/dirhash`).
//!
//! ```text
//! summary = for name in sorted(names) (bytewise): hex(sha256(content)) + "  " + name + "\n"
//! h1      = "h1:" + base64std(sha256(summary))
//! ```
//!
//! A module zip is hashed over its entries with their full names (`mod@ver/path`); a go.mod over a
//! single file named `go.mod`. Agora's zips need not be byte-identical to Go's, but these hashes
//! must be, since the client checks them against the checksum database.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Seek};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// The SHA-256 of one file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileDigest(pub [u8; 32]);

impl FileDigest {
    /// Hashes `content`.
    pub fn of(content: &[u8]) -> FileDigest {
        FileDigest(Sha256::digest(content).into())
    }
}

impl From<[u8; 32]> for FileDigest {
    fn from(d: [u8; 32]) -> Self {
        FileDigest(d)
    }
}

/// The `h1:` hash of a set of named files, given each file's content digest.
///
/// Names are sorted bytewise, as Go sorts strings; duplicates are hashed as often as they occur.
/// A name containing a newline would make the summary ambiguous, so (like Go) it is an error.
pub fn hash1<N, D>(files: impl IntoIterator<Item = (N, D)>) -> Result<String, Error>
where
    N: AsRef<[u8]>,
    D: Into<FileDigest>,
{
    let mut files: Vec<(N, FileDigest)> = files.into_iter().map(|(n, d)| (n, d.into())).collect();
    files.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    let mut summary = Sha256::new();
    let mut line = String::with_capacity(128);
    for (name, FileDigest(digest)) in &files {
        let name = name.as_ref();
        if name.contains(&b'\n') {
            return Err(Error::Hash {
                reason: format!(
                    "file name {:?} contains a newline, which h1 cannot hash",
                    String::from_utf8_lossy(name)
                ),
            });
        }
        line.clear();
        for b in digest {
            let _ = write!(line, "{b:02x}");
        }
        line.push_str("  ");
        summary.update(line.as_bytes());
        summary.update(name);
        summary.update(b"\n");
    }
    Ok(format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(summary.finalize())
    ))
}

/// The `h1:` hash of a `.mod` file, as recorded in go.sum under `<mod> <ver>/go.mod`.
pub fn hash_go_mod(content: &[u8]) -> String {
    // One file, named "go.mod": no newline in the name, so this cannot fail.
    hash1([("go.mod", FileDigest::of(content))]).unwrap_or_default()
}

/// The `h1:` hash of a module zip, as Go's `dirhash.HashZip` computes it: every entry in the
/// central directory (directories and repeated names included) under its full name, each with the
/// decompressed content of the last entry of that name.
///
/// Each content is read at most to its declared size plus one byte; more than declared is an
/// error (a lying header). Run [`crate::zip::check_zip`] first on zips from elsewhere: it bounds
/// the declared sizes.
pub fn hash_zip<R: Read + Seek>(mut reader: R) -> Result<String, Error> {
    let directory =
        crate::zipdir::read_central_directory(&mut reader).map_err(|source| Error::Io {
            context: "reading the module zip's central directory".into(),
            source,
        })?;
    let mut archive = zip::ZipArchive::new(reader).map_err(|source| Error::ZipFormat {
        context: "reading module zip".into(),
        source,
    })?;
    // The zip crate keeps one entry per name, the last one: the content Go hashes for that name.
    let mut digests: HashMap<Vec<u8>, FileDigest> = HashMap::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|source| Error::ZipFormat {
            context: format!("reading module zip entry {i}"),
            source,
        })?;
        let name = entry.name_raw().to_vec();
        let declared = entry.size();
        let mut hasher = Sha256::new();
        let n = io::copy(
            &mut (&mut entry).take(declared.saturating_add(1)),
            &mut hasher,
        )
        .map_err(|source| Error::Io {
            context: format!("reading {}", String::from_utf8_lossy(&name)),
            source,
        })?;
        if n > declared {
            return Err(Error::Hash {
                reason: format!(
                    "zip entry {} is larger than its declared size ({declared} bytes)",
                    String::from_utf8_lossy(&name)
                ),
            });
        }
        digests.insert(name, FileDigest(hasher.finalize().into()));
    }
    let mut files = Vec::with_capacity(directory.len());
    for entry in directory {
        let Some(&digest) = digests.get(&entry.name) else {
            return Err(Error::Hash {
                reason: format!(
                    "zip entry {} cannot be read back by name",
                    String::from_utf8_lossy(&entry.name)
                ),
            });
        };
        files.push((entry.name, digest));
    }
    hash1(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_set() {
        let none: [(&str, FileDigest); 0] = [];
        assert_eq!(
            hash1(none).unwrap(),
            "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn go_mod_hash() {
        // printf 'module example.com/m\n' > go.mod
        // printf '%s  go.mod\n' "$(sha256sum go.mod | cut -d' ' -f1)" \
        //   | sha256sum | cut -d' ' -f1 | xxd -r -p | base64
        assert_eq!(
            hash_go_mod(b"module example.com/m\n"),
            "h1:flS2VctbRrTv+sBE+VKgxx6hlkMGPVz9MGOmzMYFg3k="
        );
    }

    #[test]
    fn order_is_bytewise() {
        let a = hash1([("b", FileDigest::of(b"1")), ("a", FileDigest::of(b"2"))]).unwrap();
        let b = hash1([("a", FileDigest::of(b"2")), ("b", FileDigest::of(b"1"))]).unwrap();
        assert_eq!(a, b);
        assert!(hash1([("a\nb", FileDigest::of(b""))]).is_err());
    }

    #[test]
    fn repeated_names_hash_like_go() {
        use crate::zipdir::tests::{rename, zip_with};
        let mut data = zip_with(&["m@v1/dup1", "m@v1/dup2"]);
        rename(&mut data, b"dup2", b"dup1");
        // Both names hashed, both with the (last) content.
        let x = FileDigest::of(b"x");
        assert_eq!(
            hash_zip(std::io::Cursor::new(&data)).unwrap(),
            hash1([("m@v1/dup1", x), ("m@v1/dup1", x)]).unwrap()
        );
    }
}
