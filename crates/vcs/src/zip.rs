//! The module zip of a version, built from the commit's tree the way cmd/go builds it
//! (`modfetch/coderepo.go` `Zip` over `codehost/git.go` `ReadZip`; PROTOCOL §3), and `@latest`.
//!
//! # The file set
//!
//! cmd/go does not walk the tree itself: it runs
//! `git -c core.autocrlf=input -c core.eol=lf archive <commit> -- <subdir>` after writing
//! `* -export-subst -export-ignore` into the repository's `info/attributes`. The checksum
//! database holds hashes of exactly that output, so we run the same command:
//!
//! - `export-ignore` files are **kept** and `$Format:…$` placeholders are **not** expanded
//!   (`info/attributes` overrides the tree's `.gitattributes` for those two attributes);
//! - every other attribute still applies: `text eol=crlf` converts line endings, `ident`
//!   expands `$Id$`, filters run — re-implementing git's conversions would be the riskier path.
//!
//! We ask for `--format=tar` rather than zip: the content is then stored uncompressed, and the
//! archive is streamed into a temporary file next to the mirrors (memory stays bounded whatever
//! the module's size) and read back through positional reads. Regular files and symlinks are
//! handed to [`agora_gomod::zip::create_zip`], which applies Go's file rules (symlinks are
//! omitted there, but their names count for the collision checks); directory and submodule
//! entries are dropped, as in cmd/go.
//!
//! A module in a subdirectory (including the `vN/` layout) without a `LICENSE` of its own gets
//! the repository root's `LICENSE` blob appended, raw (`git cat-file`, no attribute conversion).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use agora_gomod::zip::{create_zip, FileKind, SourceFile, ZipOptions, MAX_LICENSE};
use agora_gomod::{is_pseudo_version, semver};

use crate::error::Error;
use crate::mirror::Mirror;
use crate::query::RevInfo;
use crate::repo::CodeRepo;

/// Largest `git archive` output we spool. It covers the whole subtree, including vendored
/// directories and nested modules that the zip then omits, so it is larger than the 500 MiB the
/// zip itself may hold (cmd/go's own limit is on git's *compressed* archive).
pub const MAX_ARCHIVE: u64 = 2 << 30;

/// The line cmd/go writes into `info/attributes` before archiving.
const ARCHIVE_ATTRIBUTES: &str = "* -export-subst -export-ignore\n";

/// A module zip written to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipInfo {
    /// Size of the zip file in bytes.
    pub size: u64,
    /// The `h1:` hash of its content, as in `go.sum`.
    pub h1: String,
}

impl CodeRepo {
    /// Writes the module zip of `version` (which must be canonical: a tag version or a
    /// pseudo-version) to `dest` and returns its size and `h1:` hash.
    ///
    /// Errors: a version that does not resolve to a commit holding this module is
    /// [`Error::InvalidVersion`]; files that break Go's zip rules are [`Error::Zip`] (both "not
    /// found" for the protocol, and the same for every caller). `dest` is removed on failure.
    pub async fn zip(&self, version: &str, dest: &Path) -> Result<ZipInfo, Error> {
        if semver::canonical(version).as_deref() != Some(version) {
            return Err(self.invalid(version, "not a canonical version"));
        }
        let info = self.stat(version).await?;
        if info.version != version {
            return Err(self.invalid(version, format!("resolves to version {}", info.version)));
        }
        let dir = match self.find_dir(&info.hash, version).await? {
            Ok((dir, _)) => dir,
            Err(reason) => return Err(self.invalid(version, reason)),
        };

        let spool_dir = self.mirror.dir().parent().unwrap_or(Path::new("."));
        let archive = self.archive(&info.hash, &dir, spool_dir, version).await?;
        let license = if dir.is_empty() {
            None
        } else {
            self.mirror
                .read_file(&info.hash, "LICENSE", MAX_LICENSE)
                .await?
        };

        let (module, version, out) = (self.module.clone(), version.to_owned(), dest.to_owned());
        let result = tokio::task::spawn_blocking(move || {
            write_zip(&archive, &dir, &module, &version, license.as_deref(), &out)
        })
        .await
        .unwrap_or_else(|e| {
            Err(Error::Io {
                path: PathBuf::new(),
                source: io::Error::other(format!("zip task failed: {e}")),
            })
        });
        if result.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        result
    }

    /// Spools `git archive --format=tar <commit> [-- <dir>]` into an anonymous temporary file.
    async fn archive(
        &self,
        commit: &str,
        dir: &str,
        spool_dir: &Path,
        version: &str,
    ) -> Result<File, Error> {
        ensure_archive_attributes(&self.mirror)?;
        self.mirror.ensure_commit(commit).await?;
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(spool_dir).map_err(io_err(spool_dir))?;
        let tmp = tempfile::tempfile_in(spool_dir).map_err(io_err(spool_dir))?;
        let mut args = vec![
            "-c",
            "core.autocrlf=input",
            "-c",
            "core.eol=lf",
            "archive",
            "--format=tar",
            commit,
        ];
        if !dir.is_empty() {
            args.extend(["--", dir]);
        }
        let git = self.mirror.git(&args);
        let mut spool = tokio::fs::File::from_std(tmp.try_clone().map_err(io_err(spool_dir))?);
        match git.run_to_file(&mut spool, spool_dir, MAX_ARCHIVE).await {
            Ok(_) => Ok(tmp),
            // The subdirectory holds nothing: cmd/go maps this to "not exist".
            Err(Error::Git { stderr, .. }) if stderr.contains("did not match any files") => {
                Err(self.invalid(version, format!("missing directory {dir}")))
            }
            Err(e) => Err(e),
        }
    }

    /// The version `@latest` resolves to, as `go list -m M@latest` computes it with
    /// `GOPROXY=direct` (go: `modload.queryProxy` over `codeRepo.Versions`): retracted versions
    /// are dropped; `+incompatible` ones too once the highest remaining compatible version has a
    /// go.mod; then the highest release wins, else the highest pre-release, else the default
    /// branch's tip ([`CodeRepo::latest_head`]). The origin is the chosen version's merged with
    /// the version list's (go: `modload.queryProxy`).
    pub async fn latest(&self) -> Result<RevInfo, Error> {
        let refs = self.mirror.refs().await?;
        let versions = self.versions_from(&refs).await?;
        let retractions = self.retractions().await.unwrap_or_default();
        let mut allowed: Vec<&String> = versions
            .iter()
            .filter(|v| !retractions.iter().any(|r| r.contains(v)))
            .collect();
        if allowed.iter().any(|v| v.ends_with("+incompatible")) {
            let last_compatible = allowed.iter().rev().find(|v| !v.ends_with("+incompatible"));
            if let Some(v) = last_compatible {
                let tag = format!("{}{v}", self.tag_prefix());
                let has_go_mod = match refs.tags.get(&tag) {
                    Some(commit) => matches!(self.find_dir(commit, v).await?, Ok((_, Some(_)))),
                    None => false,
                };
                if has_go_mod {
                    allowed.retain(|v| !v.ends_with("+incompatible"));
                }
            }
        }
        let best = allowed
            .iter()
            .rev()
            .find(|v| semver::prerelease(v).is_none() && !is_pseudo_version(v))
            .or_else(|| allowed.last());
        // The answer depends on the tag list too: the go command merges its origin in (and gives
        // none at all when the two disagree, as for a `/vN` module answered by a pseudo-version:
        // its tags are `vN.`-prefixed there).
        let mut rev = match best {
            Some(v) => self.stat(v).await?,
            None => self.latest_head().await?,
        };
        CodeRepo::merge_origin(&self.list_origin(&refs), &mut rev);
        Ok(rev)
    }
}

/// Writes `info/attributes` as cmd/go does, so that `git archive` keeps `export-ignore` files
/// and leaves `$Format$` alone. Written through a rename, so a concurrent archive never reads a
/// half-written file.
fn ensure_archive_attributes(mirror: &Mirror) -> Result<(), Error> {
    let info = mirror.dir().join("info");
    let path = info.join("attributes");
    if std::fs::read_to_string(&path)
        .is_ok_and(|s| s.lines().any(|l| l == ARCHIVE_ATTRIBUTES.trim_end()))
    {
        return Ok(());
    }
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(&info).map_err(io_err(&info))?;
    // A unique temporary name: concurrent zips of one mirror may both get here.
    let mut tmp = tempfile::NamedTempFile::new_in(&info).map_err(io_err(&info))?;
    tmp.write_all(ARCHIVE_ATTRIBUTES.as_bytes())
        .map_err(io_err(tmp.path()))?;
    tmp.persist(&path).map(drop).map_err(|e| Error::Io {
        path: path.clone(),
        source: e.error,
    })
}

/// Reads the spooled archive, keeps the entries under `dir` and writes the zip to `dest`.
fn write_zip(
    archive: &File,
    dir: &str,
    module: &str,
    version: &str,
    license: Option<&[u8]>,
    dest: &Path,
) -> Result<ZipInfo, Error> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let entries = read_tar(archive).map_err(io_err(Path::new("(git archive spool)")))?;
    let prefix = if dir.is_empty() {
        Vec::new()
    } else {
        format!("{dir}/").into_bytes()
    };
    let files: Vec<TarFile<'_>> = entries
        .into_iter()
        .filter_map(|e| {
            let kind = match e.kind {
                TarKind::Regular => FileKind::Regular,
                TarKind::Symlink => FileKind::Symlink,
                TarKind::Other => return None,
            };
            let path = e.path.strip_prefix(prefix.as_slice())?.to_vec();
            Some(TarFile {
                path,
                kind,
                offset: e.offset,
                size: e.size,
                archive,
            })
        })
        .collect();
    let mut out = File::create(dest).map_err(io_err(dest))?;
    let options = ZipOptions {
        root_license: license,
    };
    let created = create_zip(&mut out, module, version, &files, &options).map_err(|e| match e {
        agora_gomod::Error::Zip { reason, .. } => Error::Zip {
            module: module.to_owned(),
            version: version.to_owned(),
            reason,
        },
        agora_gomod::Error::Io { source, .. } => Error::Io {
            path: dest.to_owned(),
            source,
        },
        agora_gomod::Error::ZipFormat { source, .. } => Error::Io {
            path: dest.to_owned(),
            source: io::Error::other(source),
        },
        other => Error::Zip {
            module: module.to_owned(),
            version: version.to_owned(),
            reason: other.to_string(),
        },
    })?;
    out.sync_all().map_err(io_err(dest))?;
    let size = out.metadata().map_err(io_err(dest))?.len();
    Ok(ZipInfo {
        size,
        h1: created.h1,
    })
}

/// A file of the spooled archive, read in place.
struct TarFile<'a> {
    path: Vec<u8>,
    kind: FileKind,
    offset: u64,
    size: u64,
    archive: &'a File,
}

impl SourceFile for TarFile<'_> {
    fn path(&self) -> &[u8] {
        &self.path
    }
    fn kind(&self) -> FileKind {
        self.kind
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(PosReader {
            file: self.archive,
            pos: self.offset,
            end: self.offset + self.size,
        }))
    }
}

/// Reads `[pos, end)` of a file with positional reads, so readers never share a cursor.
struct PosReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for PosReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive spool truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TarKind {
    Regular,
    Symlink,
    /// Directories (and submodules, which git archives as directories), links, devices.
    Other,
}

/// One member of a tar archive: full path, kind, and where its data lies in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TarEntry {
    path: Vec<u8>,
    kind: TarKind,
    offset: u64,
    size: u64,
}

/// Lists the members of a tar archive as `git archive` writes it: ustar headers (name split
/// into prefix and name), pax extended headers (`x`) for long paths, one pax global header
/// (`g`, the commit id) first. GNU long names (`L`) are understood too.
fn read_tar(file: &File) -> io::Result<Vec<TarEntry>> {
    let bad = |msg: &str| io::Error::new(io::ErrorKind::InvalidData, format!("tar: {msg}"));
    let len = file.metadata()?.len();
    let mut entries = Vec::new();
    let mut pos = 0u64;
    let mut long_path: Option<Vec<u8>> = None;
    let mut header = [0u8; 512];
    while pos + 512 <= len {
        file.read_exact_at(&mut header, pos)?;
        pos += 512;
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size = parse_octal(&header[124..136]).ok_or_else(|| bad("bad size field"))?;
        let data = pos;
        let padded = size.div_ceil(512) * 512;
        pos = pos
            .checked_add(padded)
            .filter(|&p| p <= len)
            .ok_or_else(|| bad("member runs past the end"))?;
        let typeflag = header[156];
        let read_data = || -> io::Result<Vec<u8>> {
            if size > 1 << 20 {
                return Err(bad("extended header too large"));
            }
            let mut buf = vec![0u8; size as usize];
            file.read_exact_at(&mut buf, data)?;
            Ok(buf)
        };
        match typeflag {
            b'x' => {
                if let Some(p) = pax_path(&read_data()?) {
                    long_path = Some(p);
                }
                continue;
            }
            b'L' => {
                let mut p = read_data()?;
                if let Some(nul) = p.iter().position(|&b| b == 0) {
                    p.truncate(nul);
                }
                long_path = Some(p);
                continue;
            }
            b'g' | b'K' => continue,
            _ => {}
        }
        let path = match long_path.take() {
            Some(p) => p,
            None => {
                let name = cstr(&header[0..100]);
                let prefix = if &header[257..262] == b"ustar" {
                    cstr(&header[345..500])
                } else {
                    &[]
                };
                if prefix.is_empty() {
                    name.to_vec()
                } else {
                    [prefix, b"/", name].concat()
                }
            }
        };
        let kind = match typeflag {
            b'0' | 0 | b'7' => TarKind::Regular,
            b'2' => TarKind::Symlink,
            _ => TarKind::Other,
        };
        entries.push(TarEntry {
            path,
            kind,
            offset: data,
            size,
        });
    }
    Ok(entries)
}

/// The bytes of a NUL-terminated (or full-width) header field.
fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// A numeric header field: octal digits padded with spaces or NULs, or base-256 (high bit set).
fn parse_octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(n);
    }
    let digits = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| (b'0'..=b'7').contains(&b));
    let mut n: u64 = 0;
    for &b in digits {
        n = n.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// The `path` record of a pax extended header (`"<len> path=<value>\n"` records).
fn pax_path(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut path = None;
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..space]).ok()?.parse().ok()?;
        if len <= space || len > data.len() {
            return None;
        }
        let record = &data[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"path=") {
            path = Some(value.to_vec());
        }
        data = &data[len..];
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_octal(b"00000000017\0"), Some(15));
        assert_eq!(parse_octal(b"     17 \0\0\0\0"), Some(15));
        assert_eq!(
            parse_octal(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(parse_octal(b"\0\0\0"), Some(0));
    }

    #[test]
    fn pax_records() {
        let data = b"30 mtime=1600000000.123456789\n20 path=a/long/name\n";
        assert_eq!(pax_path(data), Some(b"a/long/name".to_vec()));
        assert_eq!(pax_path(b"99 path=x\n"), None);
    }
}
