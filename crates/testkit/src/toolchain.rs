//! [`ToolchainModule`]: the installed Go 1.27.3 distribution in the form the go command downloads
//! toolchains in (`GOTOOLCHAIN`): module `golang.org/toolchain`, version
//! `v0.0.1-go1.27.3.<goos>-<goarch>`, as a GOPROXY tree an [`UpstreamProxy`](crate::UpstreamProxy)
//! can serve.
//!
//! The layout is the one Go's release tooling writes (`src/cmd/distpack/pack.go` in the Go
//! sources): the binary distribution's files under `golang.org/toolchain@VERSION/`, without
//! `api/`, `doc/`, `misc/`, `test/` and build leftovers, `pkg/` reduced to `pkg/include` and the
//! build tools of `pkg/tool/<goos>_<goarch>`, `bin/` to `go` and `gofmt`, and every `go.mod`
//! renamed `_go.mod` (a module zip must not hold nested modules; the go command renames them
//! back after unpacking). The files of the PyPI packaging (`__init__.py`, `__pycache__`) are
//! not Go's and are left out. The result is a real, runnable toolchain, not a trimmed stand-in.
//!
//! Building it reads about 250 MiB and compresses it: done once per test process
//! ([`ToolchainModule::get`]), with fast deflate (the module hash covers file contents, not how
//! they were compressed).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tempfile::TempDir;

/// The toolchain module built from the installed Go 1.27.3 ([`crate::GoClient::find`]).
#[derive(Debug)]
pub struct ToolchainModule {
    /// `go1.27.3`.
    pub go_version: String,
    /// `v0.0.1-go1.27.3.linux-amd64`.
    pub version: String,
    /// The GOPROXY tree holding `golang.org/toolchain/@v/{list,VERSION.info,VERSION.mod,VERSION.zip}`.
    pub root: PathBuf,
    /// The zip inside `root`.
    pub zip: PathBuf,
    /// The go.mod served (`module golang.org/toolchain`).
    pub go_mod: String,
    _dir: TempDir,
}

/// The module path of Go toolchains.
pub const MODULE: &str = "golang.org/toolchain";

impl ToolchainModule {
    /// The toolchain module of the installed Go 1.27.3, built on first use.
    ///
    /// # Panics
    /// When the distribution cannot be read or the zip cannot be written.
    pub fn get() -> &'static ToolchainModule {
        static MODULE: OnceLock<ToolchainModule> = OnceLock::new();
        MODULE.get_or_init(|| {
            let go = crate::GoClient::find().binary().to_owned();
            let goroot = go
                .parent()
                .and_then(Path::parent)
                .expect("the go binary lives in <GOROOT>/bin")
                .to_owned();
            ToolchainModule::build(&goroot)
        })
    }

    /// Builds the module from the distribution at `goroot` (for this machine's GOOS/GOARCH).
    pub fn build(goroot: &Path) -> ToolchainModule {
        let version_file = std::fs::read_to_string(goroot.join("VERSION"))
            .unwrap_or_else(|e| panic!("read {}/VERSION: {e}", goroot.display()));
        let mut lines = version_file.lines();
        let go_version = lines.next().unwrap_or_default().trim().to_owned();
        assert!(
            go_version.starts_with("go1."),
            "unexpected VERSION: {version_file}"
        );
        let time = lines
            .find_map(|l| l.strip_prefix("time "))
            .unwrap_or("2026-01-01T00:00:00Z")
            .trim()
            .to_owned();
        let (goos, goarch) = (go_os(), go_arch());
        let version = format!("v0.0.1-{go_version}.{goos}-{goarch}");

        let dir = crate::scratch::tempdir("agora-toolchain-");
        let root = dir.path().join("proxy");
        let vdir = root.join(MODULE).join("@v");
        std::fs::create_dir_all(&vdir).unwrap();
        let go_mod = format!("module {MODULE}\n");
        std::fs::write(vdir.join(format!("{version}.mod")), &go_mod).unwrap();
        std::fs::write(
            vdir.join(format!("{version}.info")),
            format!("{{\"Version\":\"{version}\",\"Time\":\"{time}\"}}\n"),
        )
        .unwrap();
        std::fs::write(vdir.join("list"), format!("{version}\n")).unwrap();

        let mut files = Vec::new();
        collect(goroot, goroot, &mut files);
        files.retain(|rel| included(rel, &format!("{goos}_{goarch}")));
        files.sort();
        let zip = vdir.join(format!("{version}.zip"));
        let out = std::io::BufWriter::new(std::fs::File::create(&zip).unwrap());
        let mut writer = zip::ZipWriter::new(out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
            .large_file(false);
        let prefix = format!("{MODULE}@{version}/");
        for rel in &files {
            let name = match rel.strip_suffix("go.mod") {
                Some(dir) if dir.is_empty() || dir.ends_with('/') => format!("{dir}_go.mod"),
                _ => rel.clone(),
            };
            writer
                .start_file(format!("{prefix}{name}"), options)
                .unwrap_or_else(|e| panic!("zip entry {name}: {e}"));
            let mut f =
                std::fs::File::open(goroot.join(rel)).unwrap_or_else(|e| panic!("open {rel}: {e}"));
            std::io::copy(&mut f, &mut writer).unwrap_or_else(|e| panic!("zip {rel}: {e}"));
        }
        writer.finish().unwrap().flush().unwrap();
        ToolchainModule {
            go_version,
            version,
            root,
            zip,
            go_mod,
            _dir: dir,
        }
    }
}

/// Every regular file under `dir`, relative to `root`, with `/` separators.
fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for e in entries {
        let e = e.expect("read dir entry");
        let ty = e.file_type().expect("file type");
        let path = e.path();
        if ty.is_dir() {
            collect(root, &path, out);
        } else if ty.is_file() {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy();
            out.push(rel.replace('\\', "/"));
        }
    }
}

/// Whether distpack puts `rel` (a path in GOROOT) into the toolchain module of `goos_goarch`.
fn included(rel: &str, goos_goarch: &str) -> bool {
    let top = rel.split('/').next().unwrap_or_default();
    let name = rel.rsplit('/').next().unwrap_or_default();
    // Not Go's: the PyPI wheel's Python packaging.
    if matches!(top, "__init__.py" | "__pycache__") {
        return false;
    }
    // Left out of every distribution, or of the module form (api, doc, misc, test).
    if matches!(
        top,
        ".git" | ".github" | ".gitattributes" | ".gitignore" | ".jj" | "VERSION.cache"
    ) || matches!(top, "api" | "doc" | "misc" | "test")
        || name == ".DS_Store"
        || name.ends_with(".exe~")
        || rel == "src/cmd/dist/dist"
    {
        return false;
    }
    if let Some(bin) = rel.strip_prefix("bin/") {
        return matches!(bin, "go" | "gofmt");
    }
    if let Some(pkg) = rel.strip_prefix("pkg/") {
        if pkg.starts_with("include/") {
            return true;
        }
        let Some(tool) = pkg
            .strip_prefix("tool/")
            .and_then(|t| t.strip_prefix(goos_goarch))
            .and_then(|t| t.strip_prefix('/'))
        else {
            return false;
        };
        return matches!(
            tool,
            "asm" | "cgo" | "compile" | "cover" | "fix" | "link" | "preprofile" | "vet"
        );
    }
    true
}

/// Go's name for this machine's OS.
fn go_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        os => os,
    }
}

/// Go's name for this machine's architecture.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        arch => arch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distpack_selection() {
        for (rel, want) in [
            ("VERSION", true),
            ("go.env", true),
            ("src/cmd/go/main.go", true),
            ("src/go.mod", true),
            ("lib/time/zoneinfo.zip", true),
            ("bin/go", true),
            ("bin/gofmt", true),
            ("bin/linux_arm64/go", false),
            ("pkg/include/textflag.h", true),
            ("pkg/tool/linux_amd64/compile", true),
            ("pkg/tool/linux_amd64/api", false),
            ("pkg/tool/linux_arm64/compile", false),
            ("pkg/linux_amd64/runtime.a", false),
            ("misc/wasm/wasm_exec.js", false),
            ("test/run.go", false),
            ("__init__.py", false),
            ("__pycache__/__init__.cpython-311.pyc", false),
            ("src/cmd/dist/dist", false),
        ] {
            assert_eq!(included(rel, "linux_amd64"), want, "{rel}");
        }
    }
}
