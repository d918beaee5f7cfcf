//! [`SumdbServer`]: a checksum database on loopback, built from the Go reference implementation
//! (`golang.org/x/mod/sumdb`, vendored in the Go toolchain the tests install) by the program in
//! `go/sumdb/main.go`. It signs with a key of its own, knows the go.sum lines a test gives it, and
//! can switch to a forked log with the same key.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use tempfile::TempDir;

/// The database program, built once per test process.
fn binary() -> &'static Path {
    static BIN: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    &BIN.get_or_init(|| {
        let go = crate::GoClient::find().binary().to_owned();
        let goroot = go
            .parent()
            .and_then(Path::parent)
            .expect("the go binary lives in <GOROOT>/bin");
        let xmod = goroot.join("src/cmd/vendor/golang.org/x/mod");
        assert!(
            xmod.join("sumdb/server.go").is_file(),
            "{} has no golang.org/x/mod/sumdb (the Go toolchain ships it vendored)",
            xmod.display()
        );
        let dir = crate::scratch::tempdir("agora-sumdb-build-");
        let gopath = dir.path().join("gopath");
        let src = gopath.join("src");
        std::fs::create_dir_all(src.join("golang.org/x")).unwrap();
        std::fs::create_dir_all(src.join("sumdbtest")).unwrap();
        let status = Command::new("cp")
            .arg("-r")
            .arg(&xmod)
            .arg(src.join("golang.org/x/mod"))
            .status()
            .expect("run cp");
        assert!(status.success(), "copy golang.org/x/mod");
        std::fs::write(
            src.join("sumdbtest/main.go"),
            include_str!("../go/sumdb/main.go"),
        )
        .unwrap();
        let bin = dir.path().join("sumdbtest");
        let out = Command::new(&go)
            .args(["build", "-o"])
            .arg(&bin)
            .arg("sumdbtest")
            .current_dir(src.join("sumdbtest"))
            .env("GO111MODULE", "off")
            .env("GOPATH", &gopath)
            .env("GOCACHE", dir.path().join("cache"))
            .env("HOME", dir.path())
            .env("GOFLAGS", "")
            .env("GOTOOLCHAIN", "local")
            .output()
            .expect("run go build");
        assert!(
            out.status.success(),
            "building the test checksum database failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, bin)
    })
    .1
}

/// A running checksum database.
pub struct SumdbServer {
    child: Child,
    name: String,
    key: String,
    url: String,
    hashes: PathBuf,
    fork_hashes: PathBuf,
    _dir: TempDir,
}

impl SumdbServer {
    /// Starts a database named `name` that knows nothing yet.
    pub fn start(name: &str) -> SumdbServer {
        let dir = crate::scratch::tempdir("agora-sumdb-");
        let hashes = dir.path().join("hashes");
        let fork_hashes = dir.path().join("fork-hashes");
        std::fs::write(&hashes, "").unwrap();
        std::fs::write(&fork_hashes, "").unwrap();
        let mut child = Command::new(binary())
            .arg("-name")
            .arg(name)
            .arg("-hashes")
            .arg(&hashes)
            .arg("-fork-hashes")
            .arg(&fork_hashes)
            // The database exits when this pipe closes, so one kept in a static (never dropped)
            // does not outlive the test process.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the test checksum database");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut field = |prefix: &str| {
            let line = lines
                .next()
                .and_then(Result::ok)
                .unwrap_or_else(|| panic!("the test checksum database printed no {prefix} line"));
            line.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected {prefix}..., got {line:?}"))
                .to_owned()
        };
        let key = field("VKEY ");
        let url = field("URL ");
        SumdbServer {
            child,
            name: name.to_owned(),
            key,
            url,
            hashes,
            fork_hashes,
            _dir: dir,
        }
    }

    /// The database name (first field of the key).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key, `name+hash+keydata`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GOSUMDB` for a client that reaches the database directly: `<key> <url>`.
    pub fn gosumdb(&self) -> String {
        format!("{} {}", self.key, self.url)
    }

    /// Teaches the database the go.sum lines of `module@version`: the zip's hash and the go.mod's.
    pub fn know(&self, module: &str, version: &str, zip: &str, go_mod: &str) {
        append(&self.hashes, module, version, zip, go_mod);
    }

    /// Teaches the database what the go command reported for `module@version` (`query`).
    ///
    /// # Panics
    /// When the download has no `Sum` or `GoModSum`.
    pub fn know_download(&self, query: &str, download: &crate::ModDownload) {
        let (module, version) = query.split_once('@').expect("module@version");
        let (zip, go_mod) = (download.sum.as_deref(), download.go_mod_sum.as_deref());
        self.know(
            module,
            version,
            zip.expect("a download with Sum"),
            go_mod.expect("a download with GoModSum"),
        );
    }

    /// The same for the forked log (see [`SumdbServer::fork`]).
    pub fn know_in_fork(&self, module: &str, version: &str, zip: &str, go_mod: &str) {
        append(&self.fork_hashes, module, version, zip, go_mod);
    }

    /// From now on, serves the forked log: same key, different history.
    pub fn fork(&self) {
        let (status, _, _) =
            crate::http::request("POST", &format!("{}/_fork", self.url), &[], None);
        assert_eq!(status, 200, "fork the test checksum database");
    }

    /// The paths asked so far (`/lookup/...`, `/tile/...`, `/latest`).
    pub fn requests(&self) -> Vec<String> {
        let (_, _, body) = crate::http::get(&format!("{}/_requests", self.url));
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

fn append(file: &Path, module: &str, version: &str, zip: &str, go_mod: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    writeln!(
        f,
        "{module} {version} {zip}\n{module} {version}/go.mod {go_mod}"
    )
    .unwrap();
}

impl Drop for SumdbServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
