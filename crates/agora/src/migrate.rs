//! `agora import` and `agora export`: moving a cache in and out of agora's storage.
//!
//! Import reads, and recognises by its shape:
//! - a Go module cache's `cache/download` tree, or any GOPROXY tree (`<escaped module>/@v/
//!   <escaped version>.{info,mod,zip}`; agora's own exports and data directories included);
//! - an Athens disk storage (`<module>/<version>/{go.mod, source.zip, <version>.info}`).
//!
//! Every artifact is checked as if an upstream had sent it (info JSON and its version, the go.mod
//! module line, the zip's structure and content, the `.ziphash` when the module cache has one,
//! and, for public modules, the go.mod's and zip's hashes against the checksum database) and
//! stored write-once: artifacts already in storage are left alone. Anything that fails a
//! check is reported and skipped; the command then exits non-zero.
//!
//! Both report their progress on stderr ([`Progress`]: a bar on a terminal, a line per tenth
//! otherwise); the report itself goes to `out`.
//!
//! Export writes the GOPROXY tree of every stored version (`.info`, `.mod`, `.zip`) plus an
//! `@v/list` per module naming the versions present, so the directory works as
//! `GOPROXY=file:///DIR` or behind any static web server.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use agora_core::sumdb::verify_public;
use agora_core::{validate, Checksums, Policy};
use agora_gomod::module::{unescape_path, ModulePath};
use agora_storage::layout::{self, VersionFile};
use agora_storage::{ArtifactKind, PutOutcome, Storage, StorageKey};

use crate::progress::Progress;

/// One version found in the source tree, with the files that hold its artifacts.
#[derive(Debug, Default)]
struct Found {
    info: Option<PathBuf>,
    go_mod: Option<PathBuf>,
    zip: Option<PathBuf>,
    /// The module cache's record of the zip's `h1:` hash.
    ziphash: Option<PathBuf>,
}

/// Versions found in a tree, by `(module, version)`.
type Versions = BTreeMap<(ModulePath, String), Found>;

/// What an import did, for the summary line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub versions: usize,
    pub stored: usize,
    pub already_present: usize,
    pub rejected: Vec<String>,
}

/// The layouts import understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    GoProxy,
    Athens,
}

/// What decides which imported versions are checked against the checksum database.
pub struct Verify<'a> {
    pub policy: &'a Policy,
    pub checksums: Option<&'a Checksums>,
}

/// Imports every module version under `dir` into `storage`.
pub async fn import(
    storage: &Storage,
    dir: &Path,
    verify: &Verify<'_>,
    out: &mut impl Write,
) -> Result<ImportReport> {
    let root = if dir.join("cache/download").is_dir() {
        dir.join("cache/download")
    } else {
        dir.to_owned()
    };
    if !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let (layout, found) = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || scan(&root)).await??
    };
    writeln!(
        out,
        "importing {} module versions from {} ({})",
        found.len(),
        root.display(),
        match layout {
            Layout::GoProxy => "GOPROXY / module cache layout",
            Layout::Athens => "Athens disk layout",
        }
    )?;
    let mut report = ImportReport {
        versions: found.len(),
        ..ImportReport::default()
    };
    let mut progress = Progress::stderr("import", "module versions", found.len() as u64);
    for ((module, version), files) in found {
        let what = format!("{module}@{version}");
        let result = import_one(storage, verify, &module, &version, &files).await;
        progress.inc(&what);
        match result {
            Ok((stored, present)) => {
                report.stored += stored;
                report.already_present += present;
            }
            Err(err) => {
                writeln!(out, "rejected {what}: {err:#}")?;
                report.rejected.push(what);
            }
        }
    }
    progress.finish();
    writeln!(
        out,
        "{} versions: {} artifacts stored, {} already present, {} versions rejected",
        report.versions,
        report.stored,
        report.already_present,
        report.rejected.len()
    )?;
    Ok(report)
}

/// Checks and stores one version's artifacts; returns (stored, already present). Nothing of the
/// version is stored unless every artifact present in the source passes its check.
async fn import_one(
    storage: &Storage,
    verify: &Verify<'_>,
    module: &ModulePath,
    version: &str,
    files: &Found,
) -> Result<(usize, usize)> {
    if !validate::is_canonical(version) {
        bail!("not a canonical version");
    }
    let mut staged: Vec<(ArtifactKind, Bytes)> = Vec::new();
    if let Some(p) = &files.info {
        let body = read(p).await?;
        let v = validate::info(module, Some(version), &body)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        if v != version {
            bail!("{}: names version {v}", p.display());
        }
        staged.push((ArtifactKind::Info, body));
    }
    if let Some(p) = &files.go_mod {
        let body = read(p).await?;
        validate::go_mod(module, &body).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        let hash = agora_gomod::dirhash::hash_go_mod(&body);
        check_sum(verify, module, version, "/go.mod", &hash).await?;
        staged.push((ArtifactKind::Mod, body));
    }
    if let Some(p) = &files.zip {
        let (m, v, zp) = (module.clone(), version.to_owned(), p.clone());
        let hash = tokio::task::spawn_blocking(move || validate::zip(&m, &v, &zp))
            .await?
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        if let Some(hp) = &files.ziphash {
            let recorded = String::from_utf8_lossy(&read(hp).await?).trim().to_owned();
            if recorded != hash {
                bail!(
                    "{}: zip hash {hash} differs from the recorded {recorded}",
                    p.display()
                );
            }
        }
        check_sum(verify, module, version, "", &hash).await?;
    }
    let (mut stored, mut present) = (0, 0);
    let mut count = |o: PutOutcome| match o {
        PutOutcome::Created => stored += 1,
        PutOutcome::AlreadyExists => present += 1,
    };
    for (kind, body) in staged {
        let key = StorageKey::artifact(module, version, kind);
        count(storage.put_once(&key, body).await?);
    }
    if let Some(p) = &files.zip {
        let key = StorageKey::artifact(module, version, ArtifactKind::Zip);
        if storage.head(&key).await?.is_some() {
            present += 1;
        } else {
            let scratch = storage.scratch_file(&key.path());
            tokio::fs::copy(p, scratch.path())
                .await
                .with_context(|| format!("copying {}", p.display()))?;
            count(storage.put_file_once(&key, &scratch).await?);
        }
    }
    Ok((stored, present))
}

async fn check_sum(
    verify: &Verify<'_>,
    module: &ModulePath,
    version: &str,
    file: &'static str,
    hash: &str,
) -> Result<()> {
    verify_public(verify.policy, verify.checksums, module, version, file, hash).await?;
    Ok(())
}

async fn read(p: &Path) -> Result<Bytes> {
    Ok(Bytes::from(
        tokio::fs::read(p)
            .await
            .with_context(|| format!("reading {}", p.display()))?,
    ))
}

/// Walks `root` and collects versions by `(module, version)`.
fn scan(root: &Path) -> Result<(Layout, Versions)> {
    let mut goproxy = BTreeMap::new();
    let mut athens = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                stack.push(path);
                continue;
            }
            if !file_type.is_file() {
                continue;
            }
            let rel = path.strip_prefix(root).expect("under root");
            let rel = rel.to_string_lossy();
            if layout::in_version_dir(&rel) {
                if let Some(file) = VersionFile::parse(&rel) {
                    goproxy_entry(&mut goproxy, file, &path);
                }
            } else {
                athens_entry(&mut athens, &rel, &path);
            }
        }
    }
    // A tree is one or the other; the GOPROXY layout wins when both seem present (an Athens
    // tree has no `@v` directories).
    if !goproxy.is_empty() || athens.is_empty() {
        Ok((Layout::GoProxy, goproxy))
    } else {
        Ok((Layout::Athens, athens))
    }
}

fn goproxy_entry(found: &mut Versions, file: VersionFile<'_>, path: &Path) {
    let slot = found.entry((file.module, file.version)).or_default();
    match file.ext {
        "info" => slot.info = Some(path.to_owned()),
        "mod" => slot.go_mod = Some(path.to_owned()),
        "zip" => slot.zip = Some(path.to_owned()),
        "ziphash" => slot.ziphash = Some(path.to_owned()),
        _ => {}
    }
}

/// Athens: `<module>/<version>/{go.mod, source.zip, <version>.info}`, the module path as
/// directories (escaped or not).
fn athens_entry(found: &mut Versions, rel: &str, path: &Path) {
    let mut parts = rel.rsplitn(3, '/');
    let (Some(file), Some(version), Some(module_dir)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let module = if module_dir.contains('!') {
        unescape_path(module_dir).ok()
    } else {
        Some(module_dir.to_owned())
    };
    let Some(Ok(module)) = module.map(|m| ModulePath::new(&m)) else {
        return;
    };
    let slot = found.entry((module, version.to_owned())).or_default();
    match file {
        "go.mod" => slot.go_mod = Some(path.to_owned()),
        "source.zip" => slot.zip = Some(path.to_owned()),
        f if f == format!("{version}.info") => slot.info = Some(path.to_owned()),
        _ => {}
    }
}

/// Writes every stored version under `dir` as a GOPROXY tree, with an `@v/list` per module naming
/// the versions that have a `.mod` (the protocol's list leaves out pseudo-versions). Files are
/// written to a temporary name and renamed, so an interrupted export leaves no partial artifact.
pub async fn export(storage: &Storage, dir: &Path, out: &mut impl Write) -> Result<()> {
    use futures::TryStreamExt;

    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut listed: Vec<String> = storage
        .list("")
        .map_ok(|l| l.path)
        .try_collect()
        .await
        .context("listing storage")?;
    listed.sort();
    let mut versions: BTreeMap<ModulePath, Vec<String>> = BTreeMap::new();
    let mut files = 0usize;
    let mut progress = Progress::stderr("export", "stored objects", listed.len() as u64);
    for path in listed {
        progress.inc(&path);
        // `@latest` answers and checksum-database tiles are caches, not versions.
        let Some(file) = VersionFile::parse(&path) else {
            continue;
        };
        let Some(kind) = ArtifactKind::from_extension(file.ext) else {
            continue;
        };
        let (module, version) = (file.module, file.version);
        let key = StorageKey::artifact(&module, &version, kind);
        let target = dir.join(&path);
        copy_out(storage, &key, &target).await?;
        files += 1;
        if kind == ArtifactKind::Mod && !agora_gomod::pseudo::is_pseudo_version(&version) {
            versions.entry(module).or_default().push(version);
        }
    }
    progress.finish();
    for (module, mut list) in versions {
        agora_gomod::semver::sort(&mut list);
        let mut text = list.join("\n");
        text.push('\n');
        write_atomic(&dir.join(layout::list_path(&module)), text.as_bytes()).await?;
    }
    writeln!(out, "exported {files} files to {}", dir.display())?;
    Ok(())
}

/// Streams one stored object to `target` (temporary name, then rename).
async fn copy_out(storage: &Storage, key: &StorageKey, target: &Path) -> Result<()> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;

    let Some(mut obj) = storage.get(key).await? else {
        // Listed a moment ago, gone now: nothing to export.
        return Ok(());
    };
    let parent = target.parent().expect("under the export dir");
    tokio::fs::create_dir_all(parent)
        .await
        .with_context(|| format!("creating {}", parent.display()))?;
    let tmp = target.with_extension("agora-tmp");
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    while let Some(chunk) = obj.body.next().await {
        file.write_all(&chunk?).await?;
    }
    file.sync_all().await?;
    tokio::fs::rename(&tmp, target)
        .await
        .with_context(|| format!("writing {}", target.display()))?;
    Ok(())
}

async fn write_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    let parent = target.parent().expect("under the export dir");
    tokio::fs::create_dir_all(parent).await?;
    let tmp = target.with_extension("agora-tmp");
    tokio::fs::write(&tmp, bytes)
        .await
        .with_context(|| format!("writing {}", tmp.display()))?;
    tokio::fs::rename(&tmp, target)
        .await
        .with_context(|| format!("writing {}", target.display()))?;
    Ok(())
}
