//! Module zips: building them from a file list, and checking ones fetched from elsewhere
//! (x/mod `zip`, as cmd/go's `modfetch/coderepo.go` drives it).
//!
//! The zip bytes need not match what the `go` command would build, but the set of files, their
//! names and their contents must, because the client checks the `h1:` hash of the zip against the
//! checksum database. So the file classification below reproduces Go's rules in Go's order; the
//! first rule that applies decides:
//!
//! 0. (pre-pass) A regular file named `go.mod` in any letter case makes its directory a module
//!    root. The root `go.mod`'s `go` directive decides the vendor rule below.
//! 1. An unclean (`a//b`, `./a`, `a/`) or absolute path is **invalid**.
//! 2. A file in a vendored package is **omitted**; see [`is_vendored`] for the exact rule, which
//!    depends on the `go` directive (a historic bug is kept for older modules).
//! 3. A file inside a nested module (an ancestor directory other than the root has a go.mod) is
//!    **omitted**.
//! 4. `.hg_archival.txt` at the root is **omitted**.
//! 5. A path that fails [`check_file_path`](crate::check_file_path) is **invalid**.
//! 6. A path that lowercases to `go.mod` but is not `go.mod` is **invalid**.
//! 7. Two paths equal under Unicode simple case folding (directories included), or a path that is
//!    both a file and a directory, or a repeated path, is **invalid**.
//! 8. A symbolic link or other non-regular file is **omitted**.
//! 9. More than 500 MiB in total is a **size error**; a root `go.mod` or `LICENSE` over 16 MiB is
//!    **invalid**.
//!
//! Any invalid file or size error makes the whole version unservable; nothing is dropped quietly.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

use sha2::{Digest as _, Sha256};
use zip::write::SimpleFileOptions;

use crate::dirhash::{self, FileDigest};
use crate::error::{Error, PathKind};
use crate::gomodfile::GoMod;
use crate::{module, semver, unicode, zipdir};

/// Largest module zip, and largest total uncompressed content, the `go` command accepts.
pub const MAX_ZIP_FILE: u64 = 500 << 20;
/// Largest root `go.mod` in a module zip.
pub const MAX_GO_MOD: u64 = 16 << 20;
/// Largest root `LICENSE` in a module zip.
pub const MAX_LICENSE: u64 = 16 << 20;

/// What a file in the source tree is, as git records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file (git modes 100644 and 100755).
    Regular,
    /// A symbolic link (git mode 120000). Never included, but its name still counts for the
    /// validity and collision rules, so pass symlinks in rather than dropping them.
    Symlink,
    /// Anything else that has a name in the listing. Omitted.
    Other,
}

/// One file of a module's source tree, as the caller (typically a git reader) supplies it.
///
/// Supply the files in git tree order (the order `git archive` writes them), with paths relative
/// to the module root and content after `.gitattributes` conversions, exactly as `git archive`
/// would produce it. Directories and submodule entries are not files: leave them out.
pub trait SourceFile {
    /// Slash-separated path relative to the module root. Bytes, because git paths need not be
    /// UTF-8 (such a path makes the version invalid, but it must be reported, not dropped).
    fn path(&self) -> &[u8];

    /// What kind of file this is.
    fn kind(&self) -> FileKind;

    /// The content's size in bytes. Only regular files are ever opened.
    fn size(&self) -> u64;

    /// Opens the content for reading; called only for regular files that will be written.
    fn open(&self) -> io::Result<Box<dyn Read + '_>>;
}

/// A [`SourceFile`] held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemFile {
    pub path: Vec<u8>,
    pub kind: FileKind,
    pub content: Vec<u8>,
}

impl MemFile {
    /// A regular file.
    pub fn regular(path: impl Into<Vec<u8>>, content: impl Into<Vec<u8>>) -> Self {
        MemFile {
            path: path.into(),
            kind: FileKind::Regular,
            content: content.into(),
        }
    }

    /// A symbolic link; the content is its target.
    pub fn symlink(path: impl Into<Vec<u8>>, target: impl Into<Vec<u8>>) -> Self {
        MemFile {
            path: path.into(),
            kind: FileKind::Symlink,
            content: target.into(),
        }
    }
}

impl SourceFile for MemFile {
    fn path(&self) -> &[u8] {
        &self.path
    }
    fn kind(&self) -> FileKind {
        self.kind
    }
    fn size(&self) -> u64 {
        self.content.len() as u64
    }
    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.content.as_slice()))
    }
}

/// A file that was left out of a zip or that makes it invalid, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIssue {
    /// The path as given (lossily decoded if it was not UTF-8).
    pub path: String,
    pub reason: String,
}

impl fmt::Display for FileIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// The verdict on every file of a module (x/mod `zip.CheckedFiles`): each input file is in
/// exactly one of `valid`, `omitted` and `invalid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedFiles {
    /// Files that belong in the zip, in input order.
    pub valid: Vec<String>,
    /// Files left out by rule (vendored, nested module, symlink, ...).
    pub omitted: Vec<FileIssue>,
    /// Files that make the module version unservable.
    pub invalid: Vec<FileIssue>,
    /// Set when the total size is over the limit.
    pub size_error: Option<String>,
}

impl CheckedFiles {
    /// Reports whether these files make a valid module zip.
    pub fn is_valid(&self) -> bool {
        self.size_error.is_none() && self.invalid.is_empty()
    }

    /// Go's `CheckedFiles.Err` text: the size error, else one `path: reason` line per invalid
    /// file. `None` when valid.
    pub fn error_message(&self) -> Option<String> {
        if let Some(e) = &self.size_error {
            return Some(e.clone());
        }
        if self.invalid.is_empty() {
            return None;
        }
        let lines: Vec<String> = self.invalid.iter().map(ToString::to_string).collect();
        Some(lines.join("\n"))
    }

    fn into_result(self, module: &str, version: &str) -> Result<CheckedFiles, Error> {
        match self.error_message() {
            None => Ok(self),
            Some(reason) => Err(Error::Zip {
                module: module.to_owned(),
                version: version.to_owned(),
                reason,
            }),
        }
    }
}

/// Settings for [`create_zip`] and [`check_files`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ZipOptions<'a> {
    /// The repository root's `LICENSE` blob (raw, no attribute conversion). Set it when the module
    /// lives in a subdirectory of its repository (including the `vN/` layout): the `go` command
    /// then appends it as the module's `LICENSE` if the module has no file of that exact name
    /// (of any kind). Leave it `None` for a module at the repository root, or when the repository
    /// has no root `LICENSE`.
    pub root_license: Option<&'a [u8]>,
}

/// The result of [`create_zip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedZip {
    /// What was included and left out.
    pub files: CheckedFiles,
    /// The `h1:` hash of the zip written, computed while writing it.
    pub h1: String,
}

/// A file to classify: the caller's, or the appended root LICENSE.
enum Entry<'a, F> {
    Source(&'a F),
    License(&'a [u8]),
}

impl<F: SourceFile> Entry<'_, F> {
    fn path(&self) -> &[u8] {
        match self {
            Entry::Source(f) => f.path(),
            Entry::License(_) => b"LICENSE",
        }
    }
    fn kind(&self) -> FileKind {
        match self {
            Entry::Source(f) => f.kind(),
            Entry::License(_) => FileKind::Regular,
        }
    }
    fn size(&self) -> u64 {
        match self {
            Entry::Source(f) => f.size(),
            Entry::License(data) => data.len() as u64,
        }
    }
    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        match self {
            Entry::Source(f) => f.open(),
            Entry::License(data) => Ok(Box::new(*data)),
        }
    }
}

/// The files as Go would see them: the caller's, plus the root LICENSE when the rule applies.
fn entries<'a, F: SourceFile>(files: &'a [F], options: &ZipOptions<'a>) -> Vec<Entry<'a, F>> {
    let mut entries: Vec<Entry<'a, F>> = files.iter().map(Entry::Source).collect();
    if let Some(license) = options.root_license {
        if !files.iter().any(|f| f.path() == b"LICENSE") {
            entries.push(Entry::License(license));
        }
    }
    entries
}

/// Classifies a module's files without writing anything (x/mod `zip.CheckFiles`), applying the
/// rules in the module documentation. Reads the root `go.mod` (for its `go` directive) and
/// nothing else.
pub fn check_files<F: SourceFile>(files: &[F], options: &ZipOptions<'_>) -> CheckedFiles {
    let entries = entries(files, options);
    classify(&entries).0
}

/// Writes the module zip for `module@version` (x/mod `zip.Create`): entries named
/// `<module>@<version>/<path>`, deflated, in input order, without directory entries.
///
/// `version` must be canonical and allowed for the module path's major version. Fails, writing
/// nothing useful, if any file is invalid or the module is too large; the error lists every
/// offending file. Also fails if a file yields more bytes than its declared size.
pub fn create_zip<W, F>(
    writer: W,
    module: &str,
    version: &str,
    files: &[F],
    options: &ZipOptions<'_>,
) -> Result<CreatedZip, Error>
where
    W: Write + Seek,
    F: SourceFile,
{
    check_module_version(module, version)?;
    let entries = entries(files, options);
    let (checked, valid) = classify(&entries);
    let checked = checked.into_result(module, version)?;

    let prefix = format!("{module}@{version}/");
    let zip_err =
        |context: String| move |source: zip::result::ZipError| Error::ZipFormat { context, source };
    let file_options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let mut zw = zip::ZipWriter::new(writer);
    let mut digests = Vec::with_capacity(valid.len());
    for (&index, path) in valid.iter().zip(&checked.valid) {
        let entry = &entries[index];
        let name = format!("{prefix}{path}");
        zw.start_file(name.as_str(), file_options)
            .map_err(zip_err(format!("writing {name}")))?;
        let declared = entry.size();
        let io_err = |source| Error::Io {
            context: format!("copying {path} into the module zip"),
            source,
        };
        let reader = entry.open().map_err(io_err)?;
        let mut hashing = HashingWriter {
            inner: &mut zw,
            hasher: Sha256::new(),
        };
        let copied =
            io::copy(&mut reader.take(declared.saturating_add(1)), &mut hashing).map_err(io_err)?;
        if copied > declared {
            return Err(Error::Zip {
                module: module.to_owned(),
                version: version.to_owned(),
                reason: format!("file {path:?} is larger than declared size"),
            });
        }
        digests.push((name, FileDigest(hashing.hasher.finalize().into())));
    }
    zw.finish()
        .map_err(zip_err(format!("finishing the zip for {module}@{version}")))?;
    let h1 = dirhash::hash1(digests)?;
    Ok(CreatedZip { files: checked, h1 })
}

/// Passes writes through while hashing them.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Go's `module.CanonicalVersion(v) == v` and `module.Check(path, v)`, as zip creation and
/// checking require.
fn check_module_version(module: &str, version: &str) -> Result<(), Error> {
    let canonical = semver::canonical(version).unwrap_or_default();
    if canonical != version {
        return Err(Error::InvalidVersion {
            version: version.to_owned(),
            reason: format!("not canonical (should be {canonical:?})"),
        });
    }
    module::check(module, version)
}

/// The classification pass: the verdicts, and the indices of valid entries (in order).
fn classify<F: SourceFile>(entries: &[Entry<'_, F>]) -> (CheckedFiles, Vec<usize>) {
    let mut cf = CheckedFiles::default();
    let mut valid = Vec::new();

    // Directories (with trailing slash; "" for the root) that hold a go.mod, and the root go.mod.
    let mut module_roots: HashSet<&[u8]> = HashSet::new();
    let mut root_go_mod = None;
    for e in entries {
        let p = e.path();
        let (dir, base) = split_dir(p);
        if base.eq_ignore_ascii_case(b"go.mod") && e.kind() == FileKind::Regular {
            module_roots.insert(dir);
            if p == b"go.mod" {
                root_go_mod = Some(e);
            }
        }
    }
    let go_1_24 = root_go_mod.is_some_and(|e| {
        // A root go.mod over the size limit makes the version invalid anyway; don't read it all.
        let mut data = Vec::new();
        e.open()
            .and_then(|r| r.take(MAX_GO_MOD + 1).read_to_end(&mut data))
            .is_ok()
            && data.len() as u64 <= MAX_GO_MOD
            && GoMod::parse(&data).is_ok_and(|g| g.go_at_least_1_24())
    });
    let in_submodule = |mut p: &[u8]| loop {
        let (dir, _) = split_dir(p);
        if dir.is_empty() {
            return false;
        }
        if module_roots.contains(dir) {
            return true;
        }
        p = &dir[..dir.len() - 1];
    };

    // A path's first problem wins; later ones for the same path are not reported again.
    let mut reported: HashSet<Vec<u8>> = HashSet::new();
    let mut add = |cf: &mut CheckedFiles, raw: &[u8], omitted: bool, reason: String| {
        if !reported.insert(raw.to_vec()) {
            return;
        }
        let issue = FileIssue {
            path: String::from_utf8_lossy(raw).into_owned(),
            reason,
        };
        if omitted {
            cf.omitted.push(issue);
        } else {
            cf.invalid.push(issue);
        }
    };

    let mut collisions = CollisionChecker::default();
    let mut budget = MAX_ZIP_FILE;
    for (index, e) in entries.iter().enumerate() {
        let raw = e.path();
        let lossy = String::from_utf8_lossy(raw);
        let p: &str = &lossy;
        if clean(raw) != raw {
            add(&mut cf, raw, false, "file path is not clean".into());
            continue;
        }
        if raw.starts_with(b"/") {
            add(&mut cf, raw, false, "file path is not relative".into());
            continue;
        }
        if is_vendored(raw, go_1_24) {
            add(&mut cf, raw, true, "file is in vendor directory".into());
            continue;
        }
        if in_submodule(raw) {
            add(&mut cf, raw, true, "file is in another module".into());
            continue;
        }
        if raw == b".hg_archival.txt" {
            let reason = "file is inserted by 'hg archive' and is always omitted";
            add(&mut cf, raw, true, reason.into());
            continue;
        }
        let path_check = match std::str::from_utf8(raw) {
            Ok(s) => module::check_file_path(s),
            Err(_) => Err(Error::InvalidPath {
                kind: PathKind::File,
                path: p.to_owned(),
                reason: "invalid UTF-8".into(),
            }),
        };
        if let Err(err) = path_check {
            add(&mut cf, raw, false, err.to_string());
            continue;
        }
        // From here on the path is valid UTF-8.
        if p.len() == 6 && p.eq_ignore_ascii_case("go.mod") && p != "go.mod" {
            let reason = "go.mod files must have lowercase names";
            add(&mut cf, raw, false, reason.into());
            continue;
        }
        if let Err(reason) = collisions.check(p, false) {
            add(&mut cf, raw, false, reason);
            continue;
        }
        match e.kind() {
            FileKind::Regular => {}
            FileKind::Symlink => {
                add(&mut cf, raw, true, "file is a symbolic link".into());
                continue;
            }
            FileKind::Other => {
                add(&mut cf, raw, true, "not a regular file".into());
                continue;
            }
        }
        let size = e.size();
        if size <= budget {
            budget -= size;
        } else if cf.size_error.is_none() {
            cf.size_error = Some(format!(
                "module source tree too large (max size is {MAX_ZIP_FILE} bytes)"
            ));
        }
        if p == "go.mod" && size > MAX_GO_MOD {
            let reason = format!("go.mod file too large (max size is {MAX_GO_MOD} bytes)");
            add(&mut cf, raw, false, reason);
            continue;
        }
        if p == "LICENSE" && size > MAX_LICENSE {
            let reason = format!("LICENSE file too large (max size is {MAX_LICENSE} bytes)");
            add(&mut cf, raw, false, reason);
            continue;
        }
        cf.valid.push(p.to_owned());
        valid.push(index);
    }
    (cf, valid)
}

/// Splits after the last `/`: (`"a/b/"`, `"c"`) for `a/b/c`, (`""`, `"c"`) for `c`.
fn split_dir(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => p.split_at(i + 1),
        None => (&p[..0], p),
    }
}

/// Reports whether a file belongs to a vendored package and is left out of module zips.
///
/// A file is vendored when it lies in a package directory *below* a `vendor` directory:
/// `vendor/x/y.go` is, `vendor/y.go` is not. For a nested `a/vendor/...`, modules whose go.mod
/// says `go 1.23` or older keep a historic bug (golang.org/issue/37397): the check starts at byte
/// 8 of the path rather than after `/vendor/`, which makes `a/vendor/y.go` (and other short
/// prefixes) count as vendored; changing that would change existing checksums. With `go 1.24` or
/// later the check is correct, and `vendor/modules.txt` is vendored too
/// (golang.org/issue/63395).
pub fn is_vendored(path: &[u8], go_1_24: bool) -> bool {
    if go_1_24 && path == b"vendor/modules.txt" {
        return true;
    }
    let start = if path.starts_with(b"vendor/") {
        "vendor/".len()
    } else if let Some(j) = find(path, b"/vendor/") {
        if go_1_24 {
            j + "/vendor/".len()
        } else {
            "/vendor/".len()
        }
    } else {
        return false;
    };
    path.get(start..).is_some_and(|rest| rest.contains(&b'/'))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Go's `path.Clean`, over bytes.
fn clean(p: &[u8]) -> Vec<u8> {
    if p.is_empty() {
        return b".".to_vec();
    }
    let rooted = p[0] == b'/';
    let mut out: Vec<u8> = Vec::with_capacity(p.len());
    // `dotdot` is where `..` can no longer back up.
    let mut dotdot = 0;
    if rooted {
        out.push(b'/');
        dotdot = 1;
    }
    for elem in p.split(|&b| b == b'/') {
        match elem {
            b"" | b"." => {}
            b".." => {
                if out.len() > dotdot {
                    // Back up to the previous slash.
                    let cut = out[dotdot..]
                        .iter()
                        .rposition(|&b| b == b'/')
                        .map_or(dotdot, |i| dotdot + i);
                    out.truncate(cut);
                } else if !rooted {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(b"..");
                    dotdot = out.len();
                }
            }
            _ => {
                if out.len() > usize::from(rooted) {
                    out.push(b'/');
                }
                out.extend_from_slice(elem);
            }
        }
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Finds paths that collide on a case-insensitive file system (x/mod zip `collisionChecker`).
#[derive(Default)]
struct CollisionChecker {
    /// Folded path → (original path, is a directory).
    seen: HashMap<String, (String, bool)>,
}

impl CollisionChecker {
    /// Registers `p` and its parent directories; the error names the conflict.
    fn check(&mut self, p: &str, is_dir: bool) -> Result<(), String> {
        let mut p = p;
        let mut is_dir = is_dir;
        loop {
            let fold = unicode::fold_str(p);
            match self.seen.get(&fold) {
                Some((other, other_is_dir)) => {
                    if p != other {
                        return Err(format!(
                            "case-insensitive file name collision: {other:?} and {p:?}"
                        ));
                    }
                    if is_dir != *other_is_dir {
                        return Err(format!("entry {p:?} is both a file and a directory"));
                    }
                    if !is_dir {
                        return Err(format!("multiple entries for file {p:?}"));
                    }
                }
                None => {
                    self.seen.insert(fold, (p.to_owned(), is_dir));
                }
            }
            match p.rfind('/') {
                Some(i) => {
                    p = &p[..i];
                    is_dir = true;
                }
                None => return Ok(()),
            }
        }
    }
}

/// Checks a module zip obtained elsewhere (x/mod `zip.CheckZip`), so that a proxy never serves a
/// zip the `go` command would reject: `version` canonical and allowed for `module`; the zip at
/// most 500 MiB; every entry named `<module>@<version>/...` with a clean, valid file path; no
/// case-fold collisions or duplicates; `go.mod` only at the root and lower-case; declared sizes
/// within the limits. Directory entries are allowed. Entry contents are not read (see
/// [`crate::dirhash::hash_zip`], which checks actual sizes while hashing).
///
/// On success the returned `valid` list holds the full entry names of the files.
pub fn check_zip<R: Read + Seek>(
    mut reader: R,
    module: &str,
    version: &str,
) -> Result<CheckedFiles, Error> {
    check_module_version(module, version)?;
    let io_err = |source| Error::Io {
        context: format!("reading the zip for {module}@{version}"),
        source,
    };
    let zip_size = reader.seek(SeekFrom::End(0)).map_err(io_err)?;
    reader.seek(SeekFrom::Start(0)).map_err(io_err)?;
    if zip_size > MAX_ZIP_FILE {
        return Err(Error::Zip {
            module: module.to_owned(),
            version: version.to_owned(),
            reason: format!(
                "module zip file is too large ({zip_size} bytes; limit is {MAX_ZIP_FILE} bytes)"
            ),
        });
    }
    // Names and sizes come from the central directory as written (the zip crate would hide
    // repeated names); the zip crate must still be able to read the archive, or we could not
    // hash or serve it.
    let directory = zipdir::read_central_directory(&mut reader).map_err(io_err)?;
    zip::ZipArchive::new(reader).map_err(|source| Error::ZipFormat {
        context: format!("reading the zip for {module}@{version}"),
        source,
    })?;

    let prefix = format!("{module}@{version}/");
    let mut cf = CheckedFiles::default();
    let mut collisions = CollisionChecker::default();
    let mut total: u64 = 0;
    for entry in &directory {
        let full = entry.name.as_slice();
        let full_lossy = String::from_utf8_lossy(full).into_owned();
        let mut invalid = |reason: String| {
            cf.invalid.push(FileIssue {
                path: full_lossy.clone(),
                reason,
            })
        };
        let Some(name) = full.strip_prefix(prefix.as_bytes()) else {
            invalid(format!("path does not have prefix {prefix:?}"));
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let (name, is_dir) = match name.strip_suffix(b"/") {
            Some(dir) => (dir, true),
            None => (name, false),
        };
        if clean(name) != name {
            invalid("file path is not clean".into());
            continue;
        }
        let name = match std::str::from_utf8(name) {
            Ok(name) => name,
            Err(_) => {
                let lossy = String::from_utf8_lossy(name);
                invalid(format!("malformed file path {lossy:?}: invalid UTF-8"));
                continue;
            }
        };
        if let Err(err) = module::check_file_path(name) {
            invalid(err.to_string());
            continue;
        }
        if let Err(reason) = collisions.check(name, is_dir) {
            invalid(reason);
            continue;
        }
        if is_dir {
            continue;
        }
        let base = name.rsplit('/').next().unwrap_or(name);
        if base.eq_ignore_ascii_case("go.mod") {
            if base != name {
                invalid("go.mod file not in module root directory".into());
                continue;
            }
            if name != "go.mod" {
                invalid("go.mod files must have lowercase names".into());
                continue;
            }
        }
        let size = entry.size;
        if size <= MAX_ZIP_FILE - total {
            total += size;
        } else if cf.size_error.is_none() {
            cf.size_error = Some(format!(
                "total uncompressed size of module contents too large (max size is {MAX_ZIP_FILE} bytes)"
            ));
        }
        if name == "go.mod" && size > MAX_GO_MOD {
            invalid(format!(
                "go.mod file too large (max size is {MAX_GO_MOD} bytes)"
            ));
            continue;
        }
        if name == "LICENSE" && size > MAX_LICENSE {
            invalid(format!(
                "LICENSE file too large (max size is {MAX_LICENSE} bytes)"
            ));
            continue;
        }
        cf.valid.push(full_lossy);
    }
    cf.into_result(module, version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// The tree of a small repository, in `git ls-tree -r` order. Built with:
    ///
    /// ```sh
    /// git init repo && cd repo
    /// printf 'module example.com/m.git\n\ngo 1.21\n' > go.mod
    /// printf 'package m\n' > a.go
    /// mkdir -p vendor/x sub/vendor nested
    /// printf 'package x\n' > vendor/x/y.go; printf '# vendored\n' > vendor/modules.txt
    /// printf 'package z\n' > sub/vendor/z.go
    /// printf 'module example.com/m.git/nested\n' > nested/go.mod; printf 'package n\n' > nested/n.go
    /// printf 'repo: x\n' > .hg_archival.txt; ln -s a.go link.go
    /// printf 'hello\n' > README; printf 'Copyright\n' > LICENSE
    /// git add -A && git commit -m one && git tag v1.0.0 && git tag nested/v1.0.0
    /// ```
    fn repo(go_directive: &str) -> Vec<MemFile> {
        vec![
            MemFile::regular(".hg_archival.txt", "repo: x\n"),
            MemFile::regular("LICENSE", "Copyright\n"),
            MemFile::regular("README", "hello\n"),
            MemFile::regular("a.go", "package m\n"),
            MemFile::regular(
                "go.mod",
                format!("module example.com/m.git\n\ngo {go_directive}\n"),
            ),
            MemFile::symlink("link.go", "a.go"),
            MemFile::regular("nested/go.mod", "module example.com/m.git/nested\n"),
            MemFile::regular("nested/n.go", "package n\n"),
            MemFile::regular("sub/vendor/z.go", "package z\n"),
            MemFile::regular("vendor/modules.txt", "# vendored\n"),
            MemFile::regular("vendor/x/y.go", "package x\n"),
        ]
    }

    fn create(module: &str, files: &[MemFile], options: &ZipOptions<'_>) -> (Vec<u8>, CreatedZip) {
        let mut out = Cursor::new(Vec::new());
        let created = create_zip(&mut out, module, "v1.0.0", files, options).unwrap();
        (out.into_inner(), created)
    }

    fn paths(issues: &[FileIssue]) -> Vec<&str> {
        issues.iter().map(|i| i.path.as_str()).collect()
    }

    /// The expected hashes come from the real `go` command (go1.23): the repository above served
    /// to `GOPROXY=direct go mod download -json example.com/m.git@v1.0.0` through a git
    /// `url.<file:///repo>.insteadOf https://example.com/m` rewrite. They were re-derived
    /// independently from the unpacked zip with:
    ///
    /// ```sh
    /// find . -type f | sed 's|^\./||' | LC_ALL=C sort | while read f; do
    ///   printf '%s  %s\n' "$(sha256sum "$f" | cut -d' ' -f1)" "$f"; done \
    ///   | sha256sum | cut -d' ' -f1 | xxd -r -p | base64
    /// ```
    #[test]
    fn matches_go_for_a_root_module() {
        let files = repo("1.21");
        let (bytes, created) = create("example.com/m.git", &files, &ZipOptions::default());
        assert_eq!(
            created.files.valid,
            ["LICENSE", "README", "a.go", "go.mod", "vendor/modules.txt"]
        );
        assert_eq!(
            paths(&created.files.omitted),
            [
                ".hg_archival.txt",
                "link.go",
                "nested/go.mod",
                "nested/n.go",
                "sub/vendor/z.go",
                "vendor/x/y.go"
            ]
        );
        assert!(created.files.invalid.is_empty());
        assert_eq!(
            created.h1,
            "h1:AC9dtL+r9FmGDBpW2KWBNcYU8OUxxOPURqhJBQpcwD4="
        );
        assert_eq!(dirhash::hash_zip(Cursor::new(&bytes)).unwrap(), created.h1);
        assert_eq!(
            dirhash::hash_go_mod(&files[4].content),
            "h1:wq6VcG6krxfTr9La7y7ar+7lY0yLnjrsM2Cac1Or7y4="
        );
        // What we write passes our own check, with full names.
        let checked = check_zip(Cursor::new(&bytes), "example.com/m.git", "v1.0.0").unwrap();
        assert_eq!(checked.valid.len(), 5);
        assert_eq!(checked.valid[0], "example.com/m.git@v1.0.0/LICENSE");
    }

    /// `go mod download -json example.com/m.git/nested@v1.0.0` on the same repository: the
    /// module in `nested/` gets the root LICENSE appended last.
    #[test]
    fn matches_go_for_a_nested_module_with_root_license() {
        let files = vec![
            MemFile::regular("go.mod", "module example.com/m.git/nested\n"),
            MemFile::regular("n.go", "package n\n"),
        ];
        let options = ZipOptions {
            root_license: Some(b"Copyright\n"),
        };
        let (bytes, created) = create("example.com/m.git/nested", &files, &options);
        assert_eq!(created.files.valid, ["go.mod", "n.go", "LICENSE"]);
        assert_eq!(
            created.h1,
            "h1:DIS9o1Kp1+8KxyqwDROJBNleaf9fkIKHyJvcKeyd6Ss="
        );
        assert_eq!(dirhash::hash_zip(Cursor::new(&bytes)).unwrap(), created.h1);
        assert_eq!(
            dirhash::hash_go_mod(&files[0].content),
            "h1:gnXHRlt1CXudH7/q/Gmqpp/2S73D6DSXDPYq3BCvJXU="
        );
    }

    #[test]
    fn own_license_of_any_kind_wins() {
        let options = ZipOptions {
            root_license: Some(b"root\n"),
        };
        let own = vec![MemFile::regular("LICENSE", "own\n")];
        let checked = check_files(&own, &options);
        assert_eq!(checked.valid, ["LICENSE"]);
        // A symlink named LICENSE counts as having one: it is omitted, and nothing is appended.
        let link = vec![MemFile::symlink("LICENSE", "../LICENSE")];
        let checked = check_files(&link, &options);
        assert!(checked.valid.is_empty());
        assert_eq!(paths(&checked.omitted), ["LICENSE"]);
        // The appended LICENSE takes part in the collision check like any file.
        let lower = vec![MemFile::regular("license", "x")];
        let checked = check_files(&lower, &options);
        assert_eq!(paths(&checked.invalid), ["LICENSE"]);
    }

    /// With `go 1.24`, `vendor/modules.txt` is vendored and `sub/vendor/z.go` is not. Expected
    /// hash computed with the shell recipe above over LICENSE, README, a.go, go.mod (saying
    /// `go 1.24`) and sub/vendor/z.go.
    #[test]
    fn go_1_24_vendor_rule() {
        let files = repo("1.24");
        let (_, created) = create("example.com/m.git", &files, &ZipOptions::default());
        assert_eq!(
            created.files.valid,
            ["LICENSE", "README", "a.go", "go.mod", "sub/vendor/z.go"]
        );
        assert!(paths(&created.files.omitted).contains(&"vendor/modules.txt"));
        assert_eq!(
            created.h1,
            "h1:foyoKv50qvCC0HwtE0HU4ZFAFswCvmmkaAIrFaSKcGk="
        );
    }

    #[test]
    fn vendored_paths() {
        // (path, vendored before go 1.24, vendored with go 1.24+)
        let cases = [
            ("vendor/foo/foo.go", true, true),
            ("pkg/vendor/foo/foo.go", true, true),
            ("longpackagename/vendor/foo/foo.go", true, true),
            ("vendor/vendor.go", false, false),
            ("vendor/foo/modules.txt", true, true),
            ("modules.txt", false, false),
            ("vendor/amodules.txt", false, false),
            ("vendor/modules.txt", false, true),
            // golang.org/issue/37397: the old rule looks from byte 8, not after "/vendor/".
            ("pkg/vendor/vendor.go", true, false),
            ("longpackagename/vendor/vendor.go", true, false),
            ("a/vendor/b", true, false),
            ("abcdefgh/vendor/x", true, false),
            ("x/vendors/y/z.go", false, false),
            ("vendor", false, false),
            ("aaaaaaaé/vendor/x", true, false), // byte 8 is inside 'é': no panic
        ];
        for (p, old, new) in cases {
            assert_eq!(is_vendored(p.as_bytes(), false), old, "{p} before 1.24");
            assert_eq!(is_vendored(p.as_bytes(), true), new, "{p} with 1.24");
        }
    }

    #[test]
    fn clean_paths() {
        let cases = [
            ("", "."),
            (".", "."),
            ("a", "a"),
            ("a/b", "a/b"),
            ("a/", "a"),
            ("a//b", "a/b"),
            ("./a", "a"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("../../a/..", "../.."),
            ("/", "/"),
            ("/..", "/"),
            ("/a/../..", "/"),
            ("a/b/../../..", ".."),
            ("abc/def/../ghi", "abc/ghi"),
        ];
        for (p, want) in cases {
            assert_eq!(
                String::from_utf8(clean(p.as_bytes())).unwrap(),
                want,
                "clean({p:?})"
            );
        }
    }

    /// One file set per rule; (path, verdict) where the verdict is "valid", "omitted" or
    /// "invalid".
    #[test]
    fn classification_rules() {
        type Case = (
            &'static str,
            Vec<MemFile>,
            Vec<(&'static str, &'static str)>,
        );
        let r = MemFile::regular;
        let cases: Vec<Case> = vec![
            (
                "1: unclean and absolute paths",
                vec![
                    r("a//b", ""),
                    r("./a", ""),
                    r("a/", ""),
                    r("/abs", ""),
                    r("", ""),
                    r("ok", ""),
                ],
                vec![
                    ("a//b", "invalid"),
                    ("./a", "invalid"),
                    ("a/", "invalid"),
                    ("/abs", "invalid"),
                    ("", "invalid"),
                    ("ok", "valid"),
                ],
            ),
            (
                "2 before 5: a vendored file with a bad name is only omitted",
                vec![r("vendor/x/bad\"name.go", ""), r("ok.go", "")],
                vec![("vendor/x/bad\"name.go", "omitted"), ("ok.go", "valid")],
            ),
            (
                "3: nested modules, found by a go.mod in any case, regular files only",
                vec![
                    r("a/GO.MOD", ""),
                    r("a/x.go", ""),
                    r("a/b/c/x.go", ""),
                    MemFile::symlink("b/go.mod", "x"),
                    r("b/x.go", ""),
                ],
                vec![
                    ("a/GO.MOD", "omitted"),
                    ("a/x.go", "omitted"),
                    ("a/b/c/x.go", "omitted"),
                    ("b/go.mod", "omitted"),
                    ("b/x.go", "valid"),
                ],
            ),
            (
                "4: .hg_archival.txt only at the root",
                vec![r(".hg_archival.txt", ""), r("x/.hg_archival.txt", "")],
                vec![
                    (".hg_archival.txt", "omitted"),
                    ("x/.hg_archival.txt", "valid"),
                ],
            ),
            (
                "5: CheckFilePath",
                vec![
                    r("a:b", ""),
                    r("con.txt", ""),
                    r("a/.", ""),
                    r("trailing.", ""),
                    r("日本語.go", ""),
                    r("-dash", ""),
                    r("a\u{301}", ""),
                ],
                vec![
                    ("a:b", "invalid"),
                    ("con.txt", "invalid"),
                    ("a/.", "invalid"),
                    ("trailing.", "invalid"),
                    ("日本語.go", "valid"),
                    ("-dash", "valid"),
                    ("a\u{301}", "invalid"),
                ],
            ),
            (
                "6: go.mod case at the root",
                vec![r("GO.mod", "")],
                vec![("GO.mod", "invalid")],
            ),
            (
                "7: collisions, parents included, file vs directory, duplicates",
                vec![
                    r("a.go", "1"),
                    r("A.go", "2"),
                    r("dir/x", ""),
                    r("DIR/y", ""),
                    r("f", ""),
                    r("f/g", ""),
                    r("dup", ""),
                    r("dup", ""),
                    r("\u{212A}", ""),
                    r("k", ""),
                    MemFile::symlink("L.go", ""),
                    r("l.go", ""),
                ],
                vec![
                    ("a.go", "valid"),
                    ("A.go", "invalid"),
                    ("dir/x", "valid"),
                    ("DIR/y", "invalid"),
                    ("f", "valid"),
                    ("f/g", "invalid"),
                    // Go reports the second copy; the first stays valid.
                    ("dup", "valid"),
                    ("dup", "invalid"),
                    ("\u{212A}", "valid"),
                    ("k", "invalid"),
                    ("L.go", "omitted"),
                    ("l.go", "invalid"),
                ],
            ),
            (
                "8: symlinks and other files",
                vec![
                    MemFile::symlink("s", "t"),
                    MemFile {
                        path: b"o".to_vec(),
                        kind: FileKind::Other,
                        content: Vec::new(),
                    },
                ],
                vec![("s", "omitted"), ("o", "omitted")],
            ),
            (
                "non-UTF-8 names are invalid, not dropped",
                vec![
                    MemFile::regular(b"bad\xff.go".to_vec(), ""),
                    MemFile::regular(b"vendor/x/\xff".to_vec(), ""),
                ],
                vec![
                    ("bad\u{FFFD}.go", "invalid"),
                    ("vendor/x/\u{FFFD}", "omitted"),
                ],
            ),
        ];
        for (name, files, want) in cases {
            let checked = check_files(&files, &ZipOptions::default());
            let mut got: Vec<(&str, &str)> = Vec::new();
            got.extend(checked.valid.iter().map(|p| (p.as_str(), "valid")));
            got.extend(checked.omitted.iter().map(|i| (i.path.as_str(), "omitted")));
            got.extend(checked.invalid.iter().map(|i| (i.path.as_str(), "invalid")));
            let mut want = want;
            got.sort();
            want.sort();
            assert_eq!(got, want, "{name}: {checked:#?}");
        }
    }

    #[test]
    fn invalid_files_fail_creation_with_every_reason() {
        let files = vec![
            MemFile::regular("a.go", ""),
            MemFile::regular("A.go", ""),
            MemFile::regular("b:c", ""),
        ];
        let err = create_zip(
            Cursor::new(Vec::new()),
            "example.com/m",
            "v1.0.0",
            &files,
            &ZipOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "example.com/m@v1.0.0: A.go: case-insensitive file name collision: \"a.go\" and \"A.go\"\n\
             b:c: malformed file path \"b:c\": invalid char ':'"
        );
    }

    #[test]
    fn module_and_version_are_checked() {
        let files: Vec<MemFile> = Vec::new();
        let opts = ZipOptions::default();
        let mut out = Cursor::new(Vec::new());
        for (m, v) in [
            ("example.com/m", "v1.0"),
            ("example.com/m", "v2.0.0"),
            ("example.com/m/v2", "v1.0.0"),
            ("example.com/m", "master"),
            ("nodot/m", "v1.0.0"),
        ] {
            assert!(
                create_zip(&mut out, m, v, &files, &opts).is_err(),
                "{m}@{v}"
            );
            assert!(check_zip(Cursor::new(Vec::new()), m, v).is_err(), "{m}@{v}");
        }
        assert!(create_zip(
            &mut out,
            "example.com/m",
            "v2.0.0+incompatible",
            &files,
            &opts
        )
        .is_ok());
    }

    /// A file that claims a size without holding the bytes, to test limits cheaply.
    struct Sized {
        path: &'static str,
        size: u64,
    }

    impl SourceFile for Sized {
        fn path(&self) -> &[u8] {
            self.path.as_bytes()
        }
        fn kind(&self) -> FileKind {
            FileKind::Regular
        }
        fn size(&self) -> u64 {
            self.size
        }
        fn open(&self) -> io::Result<Box<dyn Read + '_>> {
            Ok(Box::new(io::repeat(b'x').take(self.size)))
        }
    }

    #[test]
    fn size_limits() {
        let opts = ZipOptions::default();
        let at_limit = [
            Sized {
                path: "a",
                size: MAX_ZIP_FILE - 1,
            },
            Sized { path: "b", size: 1 },
        ];
        assert!(check_files(&at_limit, &opts).is_valid());
        let over = [
            Sized {
                path: "a",
                size: MAX_ZIP_FILE,
            },
            Sized { path: "b", size: 1 },
        ];
        let checked = check_files(&over, &opts);
        assert!(!checked.is_valid());
        assert_eq!(
            checked.error_message().unwrap(),
            "module source tree too large (max size is 524288000 bytes)"
        );
        let big = [
            Sized {
                path: "go.mod",
                size: MAX_GO_MOD + 1,
            },
            Sized {
                path: "LICENSE",
                size: MAX_LICENSE + 1,
            },
            Sized {
                path: "sub/LICENSE",
                size: MAX_LICENSE + 1,
            },
        ];
        let checked = check_files(&big, &opts);
        assert_eq!(paths(&checked.invalid), ["go.mod", "LICENSE"]);
        assert_eq!(checked.valid, ["sub/LICENSE"]);
    }

    #[test]
    fn content_longer_than_declared_is_refused() {
        struct Liar;
        impl SourceFile for Liar {
            fn path(&self) -> &[u8] {
                b"a.go"
            }
            fn kind(&self) -> FileKind {
                FileKind::Regular
            }
            fn size(&self) -> u64 {
                3
            }
            fn open(&self) -> io::Result<Box<dyn Read + '_>> {
                Ok(Box::new(&b"four"[..]))
            }
        }
        let err = create_zip(
            Cursor::new(Vec::new()),
            "example.com/m",
            "v1.0.0",
            &[Liar],
            &ZipOptions::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("larger than declared size"),
            "{err}"
        );
    }

    /// Writes a zip with the given raw entries (name, content); names ending in `/` are
    /// directories.
    fn raw_zip(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default();
        for (name, content) in entries {
            if let Some(dir) = name.strip_suffix('/') {
                zw.add_directory(dir, opts).unwrap();
            } else {
                zw.start_file(*name, opts).unwrap();
                zw.write_all(content.as_bytes()).unwrap();
            }
        }
        zw.finish().unwrap().into_inner()
    }

    #[test]
    fn checking_foreign_zips() {
        let m = "example.com/m";
        let v = "v1.0.0";
        let ok = raw_zip(&[
            ("example.com/m@v1.0.0/", ""),
            ("example.com/m@v1.0.0/go.mod", "module example.com/m\n"),
            ("example.com/m@v1.0.0/dir/", ""),
            ("example.com/m@v1.0.0/dir/a.go", "package a\n"),
        ]);
        let checked = check_zip(Cursor::new(&ok), m, v).unwrap();
        assert_eq!(
            checked.valid,
            [
                "example.com/m@v1.0.0/go.mod",
                "example.com/m@v1.0.0/dir/a.go"
            ]
        );
        // Go hashes directory entries too.
        assert_eq!(
            dirhash::hash_zip(Cursor::new(&ok)).unwrap(),
            dirhash::hash1([
                ("example.com/m@v1.0.0/", FileDigest::of(b"")),
                (
                    "example.com/m@v1.0.0/go.mod",
                    FileDigest::of(b"module example.com/m\n")
                ),
                ("example.com/m@v1.0.0/dir/", FileDigest::of(b"")),
                (
                    "example.com/m@v1.0.0/dir/a.go",
                    FileDigest::of(b"package a\n")
                ),
            ])
            .unwrap()
        );

        let bad: &[(&[(&str, &str)], &str)] = &[
            (
                &[("example.com/m@v1.0.1/a.go", "")],
                "path does not have prefix \"example.com/m@v1.0.0/\"",
            ),
            (&[("a.go", "")], "path does not have prefix"),
            (
                &[("example.com/m@v1.0.0/a//b.go", "")],
                "file path is not clean",
            ),
            // `../x` is clean; it fails the file path check instead.
            (
                &[("example.com/m@v1.0.0/../x", "")],
                "invalid path element \"..\"",
            ),
            (&[("example.com/m@v1.0.0/a:b", "")], "invalid char ':'"),
            (
                &[
                    ("example.com/m@v1.0.0/a.go", ""),
                    ("example.com/m@v1.0.0/A.go", ""),
                ],
                "case-insensitive file name collision",
            ),
            (
                &[
                    ("example.com/m@v1.0.0/a", ""),
                    ("example.com/m@v1.0.0/a/b", ""),
                ],
                "is both a file and a directory",
            ),
            (
                &[("example.com/m@v1.0.0/sub/go.mod", "")],
                "go.mod file not in module root",
            ),
            (
                &[("example.com/m@v1.0.0/GO.MOD", "")],
                "go.mod files must have lowercase",
            ),
        ];
        for (entries, want) in bad {
            let data = raw_zip(entries);
            let err = check_zip(Cursor::new(&data), m, v).unwrap_err().to_string();
            assert!(err.contains(want), "{entries:?}: {err}");
        }
        assert!(check_zip(Cursor::new(b"not a zip".to_vec()), m, v).is_err());
    }

    #[test]
    fn repeated_entries() {
        use crate::zipdir::tests::{rename, zip_with};
        let (m, v) = ("example.com/m", "v1.0.0");
        let mut data = zip_with(&["example.com/m@v1.0.0/a.go", "example.com/m@v1.0.0/b.go"]);
        rename(&mut data, b"/b.go", b"/a.go");
        let err = check_zip(Cursor::new(&data), m, v).unwrap_err().to_string();
        assert!(err.contains("multiple entries for file \"a.go\""), "{err}");
        // Repeated directory entries are harmless, as in Go.
        let mut data = zip_with(&[
            "example.com/m@v1.0.0/d1/",
            "example.com/m@v1.0.0/d2/",
            "example.com/m@v1.0.0/d1/x",
        ]);
        rename(&mut data, b"/d2/", b"/d1/");
        let checked = check_zip(Cursor::new(&data), m, v).unwrap();
        assert_eq!(checked.valid, ["example.com/m@v1.0.0/d1/x"]);
    }

    #[test]
    fn hash_zip_refuses_lying_sizes() {
        // A stored entry whose header claims fewer bytes than it holds cannot be built with the
        // zip crate's writer, so corrupt the declared size of a real one: "hello" claims 2 bytes.
        let mut data = raw_zip(&[("example.com/m@v1.0.0/a", "hello")]);
        let central = data
            .windows(4)
            .rposition(|w| w == [0x50, 0x4b, 0x01, 0x02])
            .unwrap();
        // Central directory header: uncompressed size at offset 24.
        data[central + 24..central + 28].copy_from_slice(&2u32.to_le_bytes());
        assert!(dirhash::hash_zip(Cursor::new(&data)).is_err());
    }
}
