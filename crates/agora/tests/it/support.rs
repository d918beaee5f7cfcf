//! Shared world for the integration tests: fixture repositories, their "public proxy" tree and the
//! go command's own answers (the baseline), built once per test binary.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use agora_testkit::{
    public_modules, Agora, AgoraBuilder, GitHost, GoClient, HttpsGitServer, ModDownload,
    PublicFixtures, SumdbServer, UpstreamProxy,
};

pub struct World {
    pub host: GitHost,
    pub fixtures: PublicFixtures,
    /// The GOPROXY tree the go command produced with `GOPROXY=direct`.
    pub upstream_root: PathBuf,
    /// `module@version` → what `GOPROXY=direct go mod download` reported.
    pub baseline: BTreeMap<String, ModDownload>,
    _upstream: UpstreamProxy,
    /// The client that made the baseline; its module cache holds every fixture version.
    pub go: GoClient,
    /// The checksum database every agora of the tests verifies public modules against: it
    /// knows the go command's hashes of every fixture version.
    pub sumdb: SumdbServer,
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let host = GitHost::new();
        let fixtures = public_modules(&host);
        let go = GoClient::find().gitconfig(host.gitconfig_path());
        let queries = fixtures.queries();
        let upstream = UpstreamProxy::from_fixtures(&go, &host, &queries);
        let mut baseline = BTreeMap::new();
        for q in &queries {
            let d = go
                .mod_download("direct", q)
                .unwrap_or_else(|e| panic!("baseline download {q}: {e}"));
            baseline.insert(q.to_string(), d);
        }
        let sumdb = SumdbServer::start("sumdb.agora.test");
        for (q, d) in &baseline {
            sumdb.know_download(q, d);
        }
        World {
            sumdb,
            upstream_root: upstream.root().to_owned(),
            host,
            fixtures,
            baseline,
            _upstream: upstream,
            go,
        }
    })
}

/// A fresh upstream proxy (own counters and faults) over the shared fixture tree.
pub fn upstream() -> UpstreamProxy {
    UpstreamProxy::serve_dir(&world().upstream_root)
}

pub fn agora_bin() -> &'static str {
    env!("CARGO_BIN_EXE_agora")
}

/// An agora builder with a private data directory and a clean environment: no GO* variables from
/// the developer's machine leak in.
pub fn builder(data: &Path, upstream: &str) -> AgoraBuilder {
    bare_builder(data, upstream).env("GOSUMDB", world().sumdb.gosumdb())
}

/// [`builder`] without the shared world (whose fixtures take a while to build): for tests that
/// bring their own upstream and checksum database (`GOSUMDB` is unset).
pub fn bare_builder(data: &Path, upstream: &str) -> AgoraBuilder {
    bare_builder_on("127.0.0.1:0", data, upstream)
}

/// [`bare_builder`] listening on `listen` (`unix:/PATH`, say) instead of a loopback port.
pub fn bare_builder_on(listen: &str, data: &Path, upstream: &str) -> AgoraBuilder {
    let mut b = AgoraBuilder::new(agora_bin())
        .args(["serve", "--listen", listen, "--data"])
        .arg(data)
        .args(["--upstream", upstream]);
    for var in [
        "GOPROXY",
        "GOPRIVATE",
        "GONOPROXY",
        "GONOSUMDB",
        "GOSUMDB",
        "GOINSECURE",
        "RUST_LOG",
    ] {
        b = b.env_remove(var);
    }
    b.env("AGORA_LOG_LEVEL", "agora=debug,info")
}

/// Runs an agora subcommand (`import`, `token`, `config show`, ...) to completion, with no GO*
/// variables from the machine; returns whether it succeeded and its stdout followed by stderr.
pub fn agora_cmd<I, S>(args: I) -> (bool, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    agora_cmd_with(args, &[])
}

/// [`agora_cmd`] with extra environment variables.
pub fn agora_cmd_with<I, S>(args: I, env: &[(&str, &str)]) -> (bool, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = std::process::Command::new(agora_bin())
        .args(args)
        .env_remove("GOPROXY")
        .envs(env.iter().copied())
        .output()
        .expect("run agora");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub fn start(data: &Path, upstream: &str) -> Agora {
    builder(data, upstream).start()
}

/// A fresh go client (empty module cache) that can also reach the fixture repositories.
pub fn go_client() -> GoClient {
    GoClient::find().gitconfig(world().host.gitconfig_path())
}

/// Sends a request byte-for-byte (no client-side path normalization, unlike an HTTP library), and
/// returns the status code and body.
pub fn raw_request(base_url: &str, method: &str, path: &str) -> (u16, String) {
    let addr = base_url.trim_start_matches("http://");
    let s = TcpStream::connect(addr).expect("connect to agora");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    raw_exchange(s, addr, method, path)
}

/// One HTTP/1.1 request written as is on `conn`, and the answer's status and body.
pub fn raw_exchange<C: Read + Write>(
    mut conn: C,
    host: &str,
    method: &str,
    path: &str,
) -> (u16, String) {
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    conn.read_to_end(&mut resp).expect("read response");
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `GET <agora><path>`: the status and the body as text.
pub fn get_text(agora: &Agora, path: &str) -> (u16, String) {
    let (status, _, body) = agora_testkit::http::get(&format!("{}{path}", agora.url()));
    (status, agora_testkit::http::text(&body))
}

/// Escaped request path of a module artifact.
pub fn artifact_path(module: &str, version: &str, ext: &str) -> String {
    format!(
        "/{}/@v/{}.{ext}",
        agora_gomod::module::escape_path(module).unwrap(),
        agora_gomod::module::escape_version(version).unwrap()
    )
}

/// Writes an agora config for a private GitLab host and returns its path.
pub fn gitlab_config(
    dir: &Path,
    srv: &HttpsGitServer,
    private: &[&str],
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("agora.toml");
    let private: Vec<String> = private.iter().map(|p| format!("{p:?}")).collect();
    std::fs::write(
        &path,
        format!(
            "ca_file = {ca:?}\n[routing]\nprivate = [{private}]\n\n[[git.credentials]]\nhost = {host:?}\nusername = {user:?}\npassword = {token:?}\n{extra}",
            ca = srv.ca_cert().display().to_string(),
            private = private.join(", "),
            host = srv.host(),
            user = srv.user(),
            token = srv.token(),
        ),
    )
    .unwrap();
    path
}

/// agora with a config file, no upstream unless given, and git isolated from the machine's
/// global configuration.
pub fn private_agora(
    data: &Path,
    config: &Path,
    upstream: &str,
    env: &[(&str, std::ffi::OsString)],
) -> Agora {
    let empty_gitconfig = data.join("empty.gitconfig");
    std::fs::write(&empty_gitconfig, "").unwrap();
    let mut b = builder(&data.join("data"), upstream)
        .arg("--config")
        .arg(config)
        .env("GIT_CONFIG_GLOBAL", &empty_gitconfig);
    for (k, v) in env {
        b = b.env(k, v);
    }
    b.start()
}

/// `agora token add NAME [--group GROUP]... --file FILE`: the secret it printed once.
pub fn token_add(file: &Path, name: &str, groups: &[&str]) -> String {
    let mut cmd = std::process::Command::new(agora_bin());
    cmd.args(["token", "add", name, "--file"]).arg(file);
    for g in groups {
        cmd.args(["--group", g]);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("agora_"))
        .unwrap_or_else(|| panic!("no token in {stdout}"))
        .to_owned()
}

/// `agora ARGS --config DIR/agora.toml --data DIR/data`: a command on the same configuration
/// and data as a server started from `DIR`.
pub fn agora_in(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    all.extend([
        "--config".into(),
        dir.join("agora.toml").into_os_string(),
        "--data".into(),
        dir.join("data").into_os_string(),
    ]);
    agora_cmd(all)
}

/// A git host `h` with one repository, `h/team/lib`, a module of that path tagged `v1.0.0`
/// (one commit): the host, the module path and the repository, for tests to add to.
pub fn team_lib(h: &str) -> (GitHost, String, agora_testkit::Repo) {
    let host = GitHost::new().host(h);
    let module = format!("{h}/team/lib");
    let mut repo = host.repo(&module);
    repo.write("go.mod", format!("module {module}\n\ngo 1.21\n"))
        .write("lib.go", "package lib\n");
    repo.commit("one");
    repo.tag("v1.0.0");
    (host, module, repo)
}

/// `[storage]` for `bucket` of an S3 server of the test kit (moto or Ceph RGW).
pub fn s3_storage_toml(server: &dyn agora_testkit::S3Service, bucket: &str) -> String {
    format!(
        "[storage]\nbackend = \"s3\"\n\n[storage.s3]\nbucket = {bucket:?}\nendpoint = {endpoint:?}\nregion = {region:?}\nallow_http = true\naccess_key_id = {key:?}\nsecret_access_key = {secret:?}\n",
        endpoint = server.endpoint(),
        region = server.region(),
        key = server.access_key_id(),
        secret = server.secret_access_key(),
    )
}
