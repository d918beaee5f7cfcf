//! [`HttpsGitServer`]: git's smart HTTP protocol over HTTPS with a private CA and basic auth, and
//! `?go-get=1` answers, standing in for an internal GitLab.
//!
//! Git requests (`<repo>/info/refs`, `<repo>/git-upload-pack`, ...) are handed to
//! `git http-backend`, the CGI program shipped with git, with the standard CGI variables plus
//! `GIT_PROJECT_ROOT` (the repositories directory), `GIT_HTTP_EXPORT_ALL`, `REMOTE_USER` and
//! `GIT_PROTOCOL` (from the `Git-Protocol` header, so protocol v2 works). Like GitLab, a repository
//! is reachable with or without the `.git` suffix and in any case, and fixture work trees (`<repo>/.git`) are served
//! as they are.
//!
//! Every request is recorded ([`GitRequest`]: method, path, user, status, and for protocol v2 the
//! command, `ls-refs` or `fetch`), so tests can assert how often agora went to git: a fetch is a
//! `git-upload-pack` POST whose command is `fetch`, a `git ls-remote` is an `info/refs` GET plus an
//! `ls-refs` POST. Passwords are never recorded.
//!
//! Fault injection: [`HttpsGitServer::cut_fetches_after`] makes pack downloads stop after a given
//! number of bytes and drops their connection (a server dying mid-transfer), deterministically,
//! while ref advertisements and `ls-refs` keep working.
//!
//! The server runs on a current-thread tokio runtime on its own OS thread (TLS by tokio-rustls, HTTP/1.1
//! by hyper), so it works the same from sync and async tests; dropping it stops the runtime, which
//! drops every connection and kills running CGI processes.
//!
//! See the [module docs](super) for the host name, address and `/etc/hosts` handling.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, Response, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

use super::pki::{ServerCert, TestCa};
use super::{ensure_hosts_entry, lock, loopback_ip_for, HostLease};
use crate::go::GoClient;
use crate::server_thread::ServerThread;

/// The default host name: `gitlab.corp.example`.
pub const DEFAULT_HTTPS_HOST: &str = "gitlab.corp.example";
/// The default basic-auth user.
pub const DEFAULT_USER: &str = "agora-bot";
/// The default basic-auth password, shaped like a GitLab personal access token so tests can grep
/// agora's logs and error bodies for it.
pub const DEFAULT_TOKEN: &str = "glpat-AgoraTestkitSecret0001";

/// Largest request body accepted (git's POSTs are small: wants, haves and commands).
const MAX_BODY: usize = 64 << 20;

/// How the server answers `GET /<path>?go-get=1`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GoGetMode {
    /// The real repository: the longest prefix of the path that is a repository; 404 when none is.
    Correct,
    /// What GitLab does: authenticated callers get the correct answer; anonymous callers get the
    /// first two path elements, whatever exists — wrong for subgroups (`group/sub/project` is
    /// announced as `group/sub`).
    #[default]
    GitLab,
    /// The first two path elements for everyone, as GitLab does for anonymous callers.
    FirstTwoElements,
    /// 404 for every `?go-get=1` request.
    NotFound,
}

/// What kind of request the server saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `GET <path>?go-get=1`.
    GoGet,
    /// `GET <repo>/info/refs?service=...` (the ref advertisement, first step of every git operation).
    InfoRefs,
    /// `POST <repo>/git-upload-pack` (protocol v2: `ls-refs` or `fetch`; v0: a fetch).
    UploadPack,
    /// `POST <repo>/git-receive-pack` (a push; never done by agora).
    ReceivePack,
    /// Anything else.
    Other,
}

/// One request, as recorded by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRequest {
    pub method: String,
    /// The percent-decoded path, e.g. `/matrix/tags.git/info/refs`.
    pub path: String,
    /// The raw query string (may be empty).
    pub query: String,
    pub kind: RequestKind,
    /// The repository (relative to the repositories directory, without `.git`), for git requests
    /// that named an existing one.
    pub repo: Option<String>,
    /// The basic-auth user name sent, whether or not the password was right (never the password).
    pub user: Option<String>,
    /// Whether the credentials were accepted.
    pub authenticated: bool,
    /// The protocol v2 command of an upload-pack POST (`ls-refs`, `fetch`), when readable.
    pub command: Option<String>,
    /// The HTTP status returned.
    pub status: u16,
    /// Whether the body was cut short and the connection dropped
    /// ([`HttpsGitServer::cut_fetches_after`]): the client got a truncated pack.
    pub cut: bool,
}

/// Configures an [`HttpsGitServer`]; see [`HttpsGitServer::builder`].
#[derive(Debug, Clone)]
pub struct HttpsGitServerBuilder {
    repos: PathBuf,
    host: String,
    credentials: Vec<(String, String)>,
    go_get: GoGetMode,
    go_get_requires_auth: bool,
    overrides: Vec<(String, String)>,
    go_get_redirect: Option<String>,
}

impl HttpsGitServerBuilder {
    /// The host name (default [`DEFAULT_HTTPS_HOST`]). It decides the loopback address.
    pub fn host(mut self, name: &str) -> Self {
        self.host = name.to_ascii_lowercase();
        self
    }

    /// Replaces the accepted credentials with this one pair.
    pub fn credentials(mut self, user: &str, token: &str) -> Self {
        self.credentials = vec![(user.to_string(), token.to_string())];
        self
    }

    /// Accepts another user/token pair too.
    pub fn add_credentials(mut self, user: &str, token: &str) -> Self {
        self.credentials.push((user.to_string(), token.to_string()));
        self
    }

    /// Serves git to anyone (no basic auth at all).
    pub fn no_auth(mut self) -> Self {
        self.credentials.clear();
        self
    }

    /// How `?go-get=1` is answered (default [`GoGetMode::GitLab`]); can be changed while running
    /// with [`HttpsGitServer::set_go_get`].
    pub fn go_get(mut self, mode: GoGetMode) -> Self {
        self.go_get = mode;
        self
    }

    /// Answers `?go-get=1` with 401 to callers without valid credentials (default: anyone gets an
    /// answer, as with GitLab).
    pub fn go_get_requires_auth(mut self, yes: bool) -> Self {
        self.go_get_requires_auth = yes;
        self
    }

    /// For import paths equal to or under `path_prefix` (a full path, `host/...`), answers
    /// `?go-get=1` with `<meta name="go-import" content="CONTENT">` whatever the mode, e.g.
    /// `"gitlab.corp.example/team/tool git ssh://gitlab-ssh.corp.example/team/tool.git"`, or with
    /// Go 1.25's fourth field, the module's subdirectory of the repository:
    /// `"gitlab.corp.example/team/lib git https://gitlab.corp.example/team/mono.git go"`.
    /// The longest matching prefix wins.
    pub fn go_import(mut self, path_prefix: &str, content: &str) -> Self {
        self.overrides
            .push((path_prefix.to_string(), content.to_string()));
        self
    }

    /// Answers every `?go-get=1` request with `302 Found` to `<base><path>?go-get=1`, e.g. with
    /// `http://<host>` a redirect from https to plain http, as a misconfigured front proxy does.
    pub fn go_get_redirect(mut self, base: &str) -> Self {
        self.go_get_redirect = Some(base.trim_end_matches('/').to_string());
        self
    }

    /// Generates a CA and certificate, maps the host name in `/etc/hosts`, binds `<ip>:443`
    /// and starts serving.
    ///
    /// # Panics
    /// When git or openssl is missing, `/etc/hosts` cannot be edited or port 443 cannot be bound
    /// (not root), or the address stays busy for a minute (another process serves this name).
    pub fn start(self) -> HttpsGitServer {
        HttpsGitServer::start_with(self)
    }
}

#[derive(Debug)]
struct Shared {
    host: String,
    repos: PathBuf,
    credentials: Vec<(String, String)>,
    go_get: Mutex<GoGetMode>,
    go_get_requires_auth: bool,
    overrides: Vec<(String, String)>,
    go_get_redirect: Option<String>,
    git: PathBuf,
    cgi_home: PathBuf,
    log: Mutex<Vec<GitRequest>>,
    cgi_stderr: Mutex<String>,
    tls_failures: AtomicUsize,
    /// See [`HttpsGitServer::cut_fetches_after`].
    cut_fetches: Mutex<Option<u64>>,
}

/// A running HTTPS git server; see the module docs. Stops on [`stop`](Self::stop) or drop.
#[derive(Debug)]
pub struct HttpsGitServer {
    shared: Arc<Shared>,
    ip: Ipv4Addr,
    ca: TestCa,
    _cert: ServerCert,
    _tmp: TempDir,
    server: ServerThread,
    _lease: HostLease,
}

impl HttpsGitServer {
    /// A builder serving the repositories under `repos` (`<repos>/<path>` is the repository
    /// `https://<host>/<path>[.git]`), e.g. `git_host.repo_dir("gitlab.corp.example")`.
    pub fn builder(repos: impl Into<PathBuf>) -> HttpsGitServerBuilder {
        HttpsGitServerBuilder {
            repos: repos.into(),
            host: DEFAULT_HTTPS_HOST.to_string(),
            credentials: vec![(DEFAULT_USER.to_string(), DEFAULT_TOKEN.to_string())],
            go_get: GoGetMode::default(),
            go_get_requires_auth: false,
            overrides: Vec::new(),
            go_get_redirect: None,
        }
    }

    /// Serves host `name` of `git_host` (its directory `<root>/<name>`, created if missing) with the
    /// default settings: basic auth [`DEFAULT_USER`]/[`DEFAULT_TOKEN`], GitLab-style go-get answers.
    pub fn serve(git_host: &crate::GitHost, name: &str) -> HttpsGitServer {
        HttpsGitServer::builder(git_host.repo_dir(name))
            .host(name)
            .start()
    }

    fn start_with(b: HttpsGitServerBuilder) -> HttpsGitServer {
        let lease = HostLease::acquire(&b.host);
        let ip = loopback_ip_for(&b.host);
        std::fs::create_dir_all(&b.repos)
            .unwrap_or_else(|e| panic!("create {}: {e}", b.repos.display()));
        let git = find_git();
        let tmp = crate::scratch::tempdir("agora-https-git-");
        let cgi_home = tmp.path().join("home");
        std::fs::create_dir_all(&cgi_home).expect("create CGI home");

        let ca = TestCa::new(&format!("agora-testkit CA for {}", b.host));
        let cert = ca.issue(&[&b.host], &[IpAddr::V4(ip)]);
        let tls = tls_config(&cert);

        ensure_hosts_entry(&b.host, ip);
        let listener = bind_443(ip, &b.host);
        listener
            .set_nonblocking(true)
            .expect("set listener non-blocking");

        let shared = Arc::new(Shared {
            host: b.host,
            repos: b.repos,
            credentials: b.credentials,
            go_get: Mutex::new(b.go_get),
            go_get_requires_auth: b.go_get_requires_auth,
            overrides: b.overrides,
            go_get_redirect: b.go_get_redirect,
            git,
            cgi_home,
            log: Mutex::default(),
            cgi_stderr: Mutex::default(),
            tls_failures: AtomicUsize::new(0),
            cut_fetches: Mutex::new(None),
        });
        let server_shared = shared.clone();
        // Stopping also kills CGI children (kill_on_drop) with the connection tasks.
        let server = ServerThread::spawn(format!("https-git-{}", shared.host), move |stop| {
            accept_loop(listener, tls, server_shared, stop)
        });
        HttpsGitServer {
            shared,
            ip,
            ca,
            _cert: cert,
            _tmp: tmp,
            server,
            _lease: lease,
        }
    }

    /// The host name, e.g. `gitlab.corp.example`.
    pub fn host(&self) -> &str {
        &self.shared.host
    }

    /// The loopback address it listens on (port 443).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `https://<host>` (no trailing slash).
    pub fn url(&self) -> String {
        format!("https://{}", self.shared.host)
    }

    /// `https://<host>/<repo>.git`, the clone URL of repository `repo` (e.g. `matrix/tags`).
    pub fn repo_url(&self, repo: &str) -> String {
        format!(
            "https://{}/{}.git",
            self.shared.host,
            repo.trim_matches('/')
        )
    }

    /// The directory served.
    pub fn repos(&self) -> &Path {
        &self.shared.repos
    }

    /// The private CA that signed the server certificate (PEM): what clients must trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.ca.cert_path()
    }

    /// The CA itself (e.g. to issue more certificates).
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The first accepted user name.
    ///
    /// # Panics
    /// When the server has no credentials ([`HttpsGitServerBuilder::no_auth`]).
    pub fn user(&self) -> &str {
        &self.first_credentials().0
    }

    /// The first accepted token (the basic-auth password).
    pub fn token(&self) -> &str {
        &self.first_credentials().1
    }

    fn first_credentials(&self) -> &(String, String) {
        self.shared
            .credentials
            .first()
            .expect("this HTTPS git server accepts anyone: it has no credentials")
    }

    /// A `.netrc` line for this host and the first credentials.
    pub fn netrc(&self) -> String {
        self.netrc_for(self.user(), self.token())
    }

    /// A `.netrc` line for this host and any credentials (e.g. wrong ones).
    pub fn netrc_for(&self, user: &str, token: &str) -> String {
        format!(
            "machine {} login {user} password {token}\n",
            self.shared.host
        )
    }

    /// Sets up a go client for `GOPROXY=direct` against this server: trusts the CA
    /// ([`GoClient::trust_ca`]), writes the `.netrc` (if the server has credentials) and sets
    /// `GONOSUMDB=<host>`. Not `GOPRIVATE`: that would also set `GONOPROXY` and make the client
    /// bypass agora in proxy tests.
    pub fn configure_go(&self, go: GoClient) -> GoClient {
        let go = go.trust_ca(self.ca_cert()).env("GONOSUMDB", self.host());
        if self.shared.credentials.is_empty() {
            go
        } else {
            go.netrc(&self.netrc())
        }
    }

    /// Environment that makes a process (agora, git, curl, go) trust exactly this server's CA:
    /// every CA bundle variable the machine sets points to the CA file and `SSL_CERT_DIR` to an
    /// empty directory. See [`GoClient::trust_ca`] for why all of them.
    pub fn tls_env(&self) -> Vec<(&'static str, OsString)> {
        let empty = self._tmp.path().join("empty-certs");
        std::fs::create_dir_all(&empty).expect("create empty cert dir");
        let mut env: Vec<(&'static str, OsString)> = crate::go::CA_FILE_VARS
            .iter()
            .map(|v| (*v, self.ca_cert().into_os_string()))
            .collect();
        env.push(("SSL_CERT_DIR", empty.into_os_string()));
        env
    }

    /// Changes how `?go-get=1` is answered from now on.
    pub fn set_go_get(&self, mode: GoGetMode) {
        *lock(&self.shared.go_get) = mode;
    }

    /// Makes every pack download from now on die mid-transfer, like a git server that crashes or
    /// loses its network while sending a pack: the answer to an upload-pack POST that fetches
    /// (protocol v2 `command=fetch`, or any protocol v0 upload-pack POST) starts normally (200,
    /// chunked) and carries the first `bytes` bytes of the body, then the connection is dropped
    /// without the final chunk or a TLS close_notify: the client sees a truncated transfer.
    /// Ref advertisements (`info/refs`), `ls-refs` and `?go-get=1` are still answered in full.
    /// `None` serves packs in full again. Such requests are recorded with
    /// [`GitRequest::cut`] and are not counted by [`fetches`](Self::fetches).
    ///
    /// The bytes are written before the connection is dropped, with a short grace period for them
    /// to reach the socket; a client that does not read them within it may see fewer.
    pub fn cut_fetches_after(&self, bytes: Option<u64>) {
        *lock(&self.shared.cut_fetches) = bytes;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<GitRequest> {
        lock(&self.shared.log).clone()
    }

    /// Forgets the recorded requests.
    pub fn reset_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// How many recorded requests were of `kind` for repository `repo` (without `.git`).
    pub fn count(&self, kind: RequestKind, repo: &str) -> usize {
        let repo = repo.trim_matches('/').trim_end_matches(".git");
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.kind == kind && r.repo.as_deref() == Some(repo))
            .count()
    }

    /// How many successful protocol v2 `fetch` commands (pack downloads) repository `repo` served
    /// in full (not [cut](Self::cut_fetches_after)). `git ls-remote` makes none; a clone or fetch
    /// makes one or more.
    pub fn fetches(&self, repo: &str) -> usize {
        let repo = repo.trim_matches('/').trim_end_matches(".git");
        lock(&self.shared.log)
            .iter()
            .filter(|r| {
                r.kind == RequestKind::UploadPack
                    && r.repo.as_deref() == Some(repo)
                    && r.status == 200
                    && !r.cut
                    && r.command.as_deref() != Some("ls-refs")
            })
            .count()
    }

    /// Everything `git http-backend` wrote to stderr so far (for failure messages).
    pub fn cgi_stderr(&self) -> String {
        lock(&self.shared.cgi_stderr).clone()
    }

    /// TLS handshakes that failed (e.g. a client that does not trust the CA).
    pub fn tls_handshake_failures(&self) -> usize {
        self.shared.tls_failures.load(Ordering::SeqCst)
    }

    /// Stops the server: the port is closed, connections dropped, CGI processes killed. Idempotent.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

impl Drop for HttpsGitServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The git binary on PATH (the CGI is `git http-backend`).
fn find_git() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("git");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "git not found on PATH: run scripts/setup (the HTTPS git server runs `git http-backend`)"
    );
}

fn tls_config(cert: &ServerCert) -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert.cert_path())
        .and_then(|it| it.collect())
        .expect("read server certificate");
    let key = PrivateKeyDer::from_pem_file(cert.key_path()).expect("read server key");
    // An explicit provider: the dependency tree may enable more than one rustls crypto backend,
    // and then rustls cannot pick a process default by itself.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate and key");
    // HTTP/1.1 only: git's smart HTTP and `?go-get=1` need nothing more, and hyper here speaks http1.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Binds `ip:443`, waiting up to a minute while another process holds it.
fn bind_443(ip: Ipv4Addr, host: &str) -> std::net::TcpListener {
    let addr = SocketAddr::from((ip, 443));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => panic!(
                "cannot bind {addr} for {host}: {e} (port 443 needs root; the go command only \
                 looks up ?go-get=1 on port 443)"
            ),
            Err(e) => panic!("cannot bind {addr} for {host}: {e}"),
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("register listener");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let stream = match acceptor.accept(stream).await {
                        Ok(s) => s,
                        Err(_) => {
                            shared.tls_failures.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(shared, req).await) }
                    });
                    // Errors here are client disconnects: nothing to report.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

/// The git smart-HTTP endpoints, as path suffixes after the repository.
const GIT_SUFFIXES: &[(&str, RequestKind)] = &[
    ("/info/refs", RequestKind::InfoRefs),
    ("/git-upload-pack", RequestKind::UploadPack),
    ("/git-receive-pack", RequestKind::ReceivePack),
];

async fn handle(shared: Arc<Shared>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let method = req.method().as_str().to_string();
    let raw_path = req.uri().path().to_string();
    let path = crate::http::percent_decode(&raw_path).unwrap_or(raw_path);
    let query = req.uri().query().unwrap_or_default().to_string();
    let (user, authenticated) = check_auth(&shared, req.headers());
    let auth_ok = authenticated || shared.credentials.is_empty();
    let mut rec = GitRequest {
        method,
        path: path.clone(),
        query: query.clone(),
        kind: RequestKind::Other,
        repo: None,
        user,
        authenticated,
        command: None,
        status: 0,
        cut: false,
    };

    let go_get = query.split('&').any(|kv| kv == "go-get=1");
    let git = GIT_SUFFIXES
        .iter()
        .find(|(suffix, _)| path.ends_with(suffix) && path.len() > suffix.len() + 1);
    let resp = if go_get {
        rec.kind = RequestKind::GoGet;
        if shared.go_get_requires_auth && !auth_ok {
            unauthorized()
        } else if let Some(base) = &shared.go_get_redirect {
            Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, format!("{base}{path}?{query}"))
                .body(Body::empty())
                .expect("valid response")
        } else {
            go_get_answer(&shared, &path, authenticated)
        }
    } else if let Some((suffix, kind)) = git {
        rec.kind = *kind;
        let repo_part = &path[1..path.len() - suffix.len()];
        match resolve_repo(&shared.repos, repo_part) {
            None if !auth_ok => unauthorized(),
            None => text(StatusCode::NOT_FOUND, "The project could not be found.\n"),
            Some(repo) => {
                rec.repo = Some(repo.clone());
                if !auth_ok {
                    unauthorized()
                } else {
                    let (resp, command, cut) =
                        run_cgi(&shared, req, &repo, suffix, rec.user.clone()).await;
                    rec.command = command;
                    rec.cut = cut;
                    resp
                }
            }
        }
    } else {
        text(StatusCode::NOT_FOUND, "404 Not Found\n")
    };
    rec.status = resp.status().as_u16();
    lock(&shared.log).push(rec);
    resp
}

/// `(user name sent, whether the pair is accepted)`.
fn check_auth(shared: &Shared, headers: &HeaderMap) -> (Option<String>, bool) {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return (None, false);
    };
    let Some(b64) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return (None, false);
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return (None, false);
    };
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    let (user, pass) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    let ok = shared
        .credentials
        .iter()
        .any(|(u, p)| u == user && p == pass);
    (Some(user.to_string()), ok)
}

fn unauthorized() -> Response<Body> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(header::WWW_AUTHENTICATE, "Basic realm=\"GitLab\"")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from("HTTP Basic: Access denied\n"))
        .expect("valid response")
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body))
        .expect("valid response")
}

/// Whether `dir` is a git repository: a work tree with `.git`, or a bare repository.
fn is_repo(dir: &Path) -> bool {
    dir.join(".git").exists() || (dir.join("HEAD").is_file() && dir.join("objects").is_dir())
}

/// Maps the repository part of a URL (`group/project` or `group/project.git`) to an existing
/// repository under `root`, returned as stored (without `.git`). Only plain path segments are
/// accepted. Like GitLab and GitHub, paths match whatever their case (`Group/Project`).
fn resolve_repo(root: &Path, part: &str) -> Option<String> {
    if part
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.contains('\0'))
    {
        return None;
    }
    let plain = part.strip_suffix(".git").unwrap_or(part);
    [plain, part]
        .into_iter()
        .filter(|p| !p.is_empty())
        .find_map(|p| stored_path(root, p).filter(|found| is_repo(&root.join(found))))
}

/// `rel` as it is stored under `root`, each segment matched exactly or else ignoring case.
fn stored_path(root: &Path, rel: &str) -> Option<String> {
    let mut dir = root.to_path_buf();
    let mut found = Vec::new();
    for seg in rel.split('/') {
        let name = if dir.join(seg).exists() {
            seg.to_owned()
        } else {
            std::fs::read_dir(&dir)
                .ok()?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .find(|n| n.eq_ignore_ascii_case(seg))?
        };
        dir.push(&name);
        found.push(name);
    }
    Some(found.join("/"))
}

fn go_get_answer(shared: &Shared, path: &str, authenticated: bool) -> Response<Body> {
    let rel = path.trim_matches('/');
    let import_path = format!("{}/{rel}", shared.host);
    let overridden = shared
        .overrides
        .iter()
        .filter(|(prefix, _)| {
            import_path == *prefix || import_path.starts_with(&format!("{prefix}/"))
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, content)| content.clone());
    let segments: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    let first_two = || (segments.len() >= 2).then(|| segments[..2].join("/"));
    let correct = || {
        (1..=segments.len())
            .rev()
            .map(|n| segments[..n].join("/"))
            .find(|p| is_repo(&shared.repos.join(p)))
    };
    let mode = lock(&shared.go_get).clone();
    let content = overridden.or_else(|| {
        let root = match mode {
            GoGetMode::Correct => correct(),
            GoGetMode::GitLab if authenticated => correct(),
            GoGetMode::GitLab | GoGetMode::FirstTwoElements => first_two(),
            GoGetMode::NotFound => None,
        }?;
        Some(format!(
            "{host}/{root} git https://{host}/{root}.git",
            host = shared.host
        ))
    });
    let Some(content) = content else {
        return text(StatusCode::NOT_FOUND, "404 Not Found\n");
    };
    let prefix = content.split_whitespace().next().unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta name=\"go-import\" content=\"{content}\"></head>\
         <body>go get {prefix}</body></html>\n"
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Body::from(html))
        .expect("valid response")
}

/// Runs `git http-backend` for one request. Returns the response, for a protocol v2 upload-pack
/// POST the command it carried, and whether the response is cut
/// ([`HttpsGitServer::cut_fetches_after`]).
async fn run_cgi(
    shared: &Shared,
    req: Request<hyper::body::Incoming>,
    repo: &str,
    suffix: &str,
    user: Option<String>,
) -> (Response<Body>, Option<String>, bool) {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return (
                text(StatusCode::BAD_REQUEST, "cannot read request body\n"),
                None,
                false,
            )
        }
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let encoding = header("content-encoding");
    let command = if encoding.is_none() {
        v2_command(&body)
    } else {
        None
    };
    // A pack download: a v2 `fetch`, or a v0 POST (no command; also a gzipped body, which git only
    // sends for large fetch negotiations).
    let fetches =
        suffix == "/git-upload-pack" && matches!(command.as_deref(), None | Some("fetch"));
    let cut = if fetches {
        *lock(&shared.cut_fetches)
    } else {
        None
    };

    let mut cmd = tokio::process::Command::new(&shared.git);
    cmd.arg("http-backend")
        // Nothing of the test process's environment (GIT_DIR, GIT_CONFIG_*, ...) reaches the CGI.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &shared.cgi_home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        // Fixture repositories may belong to another user than the server.
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .env("GIT_PROJECT_ROOT", &shared.repos)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{repo}{suffix}"))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(user) = &user {
        cmd.env("REMOTE_USER", user);
    }
    if let Some(v) = header("git-protocol") {
        cmd.env("GIT_PROTOCOL", v);
    }
    if let Some(v) = &encoding {
        cmd.env("HTTP_CONTENT_ENCODING", v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            lock(&shared.cgi_stderr).push_str(&format!("cannot start git http-backend: {e}\n"));
            return (
                text(StatusCode::INTERNAL_SERVER_ERROR, "cannot run git\n"),
                command,
                false,
            );
        }
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Written concurrently with reading the output, so neither side can block the other.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
        // Dropping stdin closes it: the CGI sees the end of the request.
    });
    let out = child.wait_with_output().await;
    let _ = writer.await;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            lock(&shared.cgi_stderr).push_str(&format!("git http-backend: {e}\n"));
            return (
                text(StatusCode::INTERNAL_SERVER_ERROR, "git failed\n"),
                command,
                false,
            );
        }
    };
    if !out.stderr.is_empty() {
        lock(&shared.cgi_stderr).push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let resp = cgi_response(&out.stdout, cut);
    let cut = cut.is_some() && resp.status() == StatusCode::OK;
    (resp, command, cut)
}

/// How long a cut response waits, after its last bytes, before dropping the connection: time for
/// hyper to flush them to the socket (an error from the body drops the connection at once,
/// without flushing).
const CUT_GRACE: Duration = Duration::from_millis(250);

/// A response body of `head` that then fails, so hyper drops the connection without the final
/// chunk: a transfer cut short.
fn cut_body(head: Bytes) -> Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..head.len())
        .step_by(16 << 10)
        .map(|i| Ok(head.slice(i..head.len().min(i + (16 << 10)))))
        .collect();
    let death = futures::stream::once(async {
        tokio::time::sleep(CUT_GRACE).await;
        Err(std::io::Error::other(
            "agora-testkit: transfer cut (cut_fetches_after)",
        ))
    });
    Body::from_stream(futures::StreamExt::chain(
        futures::stream::iter(chunks),
        death,
    ))
}

/// Turns CGI output (headers, blank line, body) into a response; a successful one is cut after
/// `cut` body bytes ([`cut_body`]) when set.
fn cgi_response(out: &[u8], cut: Option<u64>) -> Response<Body> {
    let (head, body) = match find(out, b"\r\n\r\n") {
        Some(i) => (&out[..i], &out[i + 4..]),
        None => match find(out, b"\n\n") {
            Some(i) => (&out[..i], &out[i + 2..]),
            None => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    "git http-backend printed no headers\n",
                )
            }
        },
    };
    let mut resp = Response::builder();
    let mut status = StatusCode::OK;
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            status = code
                .parse()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else {
            resp = resp.header(name.trim(), value);
        }
    }
    let body = Bytes::copy_from_slice(body);
    let body = match cut {
        Some(n) if status == StatusCode::OK => {
            let n = usize::try_from(n).unwrap_or(usize::MAX).min(body.len());
            cut_body(body.slice(..n))
        }
        _ => Body::from(body),
    };
    resp.status(status)
        .body(body)
        .unwrap_or_else(|_| text(StatusCode::BAD_GATEWAY, "bad CGI headers\n"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `command=...` of a protocol v2 request body (pkt-lines), if there is one.
fn v2_command(body: &[u8]) -> Option<String> {
    let mut rest = body;
    while rest.len() >= 4 {
        let len = usize::from_str_radix(std::str::from_utf8(&rest[..4]).ok()?, 16).ok()?;
        if len < 4 {
            // flush (0000), delim (0001) or response-end (0002): no command before them means none.
            return None;
        }
        let line = rest.get(4..len)?;
        if let Some(cmd) = line.strip_prefix(b"command=") {
            let cmd = String::from_utf8_lossy(cmd);
            return Some(cmd.trim_end_matches('\n').to_string());
        }
        rest = &rest[len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_commands_are_read_from_pkt_lines() {
        assert_eq!(
            v2_command(b"0014command=ls-refs\n0014agent=git/2.47.30001000dpeel\n0000"),
            Some("ls-refs".to_string())
        );
        assert_eq!(
            v2_command(b"0011command=fetch0000"),
            Some("fetch".to_string())
        );
        assert_eq!(v2_command(b"0000"), None);
        assert_eq!(v2_command(b"zzzz"), None);
    }

    #[test]
    fn cgi_output_becomes_a_response() {
        let r = cgi_response(
            b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope",
            None,
        );
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "text/plain");
        let r = cgi_response(
            b"Content-Type: application/x-git-upload-pack-advertisement\n\nX",
            None,
        );
        assert_eq!(r.status(), 200);
    }

    #[test]
    fn a_cut_body_carries_its_bytes_then_fails() {
        let head = Bytes::from(vec![7u8; 40 << 10]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (got, err) = rt.block_on(async {
            use futures::StreamExt as _;
            let mut stream = cut_body(head.clone()).into_data_stream();
            let mut got = Vec::new();
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(b) => got.extend_from_slice(&b),
                    Err(e) => return (got, Some(e.to_string())),
                }
            }
            (got, None)
        });
        assert_eq!(got, head);
        assert!(err.unwrap().contains("transfer cut"));

        let out = b"Content-Type: application/x-git-upload-pack-result\r\n\r\n0123456789";
        let r = cgi_response(out, Some(4));
        assert_eq!(r.status(), 200);
        let r = rt.block_on(axum::body::to_bytes(r.into_body(), 1 << 20));
        assert!(r.is_err(), "a cut body ends in an error, not a clean end");
        let r = cgi_response(b"Status: 404 Not Found\r\n\r\nnope", Some(1));
        let body = rt.block_on(axum::body::to_bytes(r.into_body(), 1 << 20));
        assert_eq!(body.unwrap(), "nope", "only successful answers are cut");
    }

    /// With real git: while cut, `ls-remote` works and a clone dies mid-pack; once cleared, the
    /// clone works.
    #[test]
    fn cut_fetches_die_mid_pack_while_refs_still_work() {
        const H: &str = "gitlab-cut.corp.example";
        let host = crate::GitHost::new().host(H);
        let mut repo = host.repo(&format!("{H}/team/big"));
        repo.write("blob.bin", crate::fixtures::deterministic_bytes(3, 2 << 20));
        let commit = repo.commit("big");
        let srv = HttpsGitServer::builder(host.repo_dir(H))
            .host(H)
            .no_auth()
            .start();
        let work = crate::scratch::tempdir("agora-cut-test-");
        let git = |args: &[&str]| {
            let mut cmd = crate::git::git_command(work.path());
            cmd.args(args).envs(srv.tls_env());
            cmd.output().expect("run git")
        };
        let url = srv.repo_url("team/big");

        srv.cut_fetches_after(Some(100 << 10));
        let out = git(&["ls-remote", &url]);
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(&commit));
        let out = git(&["clone", "--bare", "-q", &url, "cut.git"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a cut clone succeeded: {stderr}");
        let reqs = srv.requests();
        let cut: Vec<_> = reqs.iter().filter(|r| r.cut).collect();
        assert_eq!(cut.len(), 1, "{reqs:#?}\ngit: {stderr}");
        assert_eq!(
            (cut[0].kind, cut[0].command.as_deref(), cut[0].status),
            (RequestKind::UploadPack, Some("fetch"), 200)
        );
        assert!(
            reqs.iter().filter(|r| !r.cut).all(|r| r.status == 200),
            "{reqs:#?}"
        );
        assert_eq!(srv.fetches("team/big"), 0);

        // On the wire: a 200, exactly the first bytes of the answer, then an error (no clean end).
        let pem = std::fs::read(srv.ca_cert()).unwrap();
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let want = format!("want {commit}\n");
        let request = format!(
            "0011command=fetch0001{:04x}{want}0009done\n0000",
            want.len() + 4
        );
        let mut resp = client
            .post(format!("{url}/git-upload-pack"))
            .header("Git-Protocol", "version=2")
            .header("Content-Type", "application/x-git-upload-pack-request")
            .body(request)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let (mut got, mut buf) = (0, vec![0u8; 8192]);
        let end = loop {
            match std::io::Read::read(&mut resp, &mut buf) {
                Ok(0) => break None,
                Ok(n) => got += n,
                Err(e) => break Some(e),
            }
        };
        assert_eq!(got, 100 << 10, "bytes received before the cut");
        assert!(end.is_some(), "a cut answer ended cleanly");

        srv.cut_fetches_after(None);
        let out = git(&["clone", "--bare", "-q", &url, "whole.git"]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(srv.fetches("team/big"), 1);
    }

    #[test]
    fn repositories_resolve_with_or_without_dot_git() {
        let tmp = crate::scratch::tempdir("agora-https-test-");
        std::fs::create_dir_all(tmp.path().join("g/p/.git")).unwrap();
        assert_eq!(resolve_repo(tmp.path(), "g/p"), Some("g/p".into()));
        assert_eq!(resolve_repo(tmp.path(), "g/p.git"), Some("g/p".into()));
        assert_eq!(resolve_repo(tmp.path(), "G/P.git"), Some("g/p".into()));
        assert_eq!(resolve_repo(tmp.path(), "g/q"), None);
        assert_eq!(resolve_repo(tmp.path(), "g/../g/p"), None);
    }
}
