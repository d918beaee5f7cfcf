//! [`UpstreamProxy`]: a static GOPROXY over HTTP on `127.0.0.1`, standing in for the public proxy.
//!
//! It serves a directory laid out as a GOPROXY tree (`/<escaped module>/@v/list`, `.info`, `.mod`,
//! `.zip`, optionally `/<escaped module>/@latest`): usually a copy of a module cache's
//! `cache/download` filled by the real go command from fixture repositories
//! ([`UpstreamProxy::from_fixtures`]), or any tree ([`UpstreamProxy::serve_dir`]). Missing files are
//! 404 with a `text/plain` body, as a GOPROXY must answer (404/410 = "not here").
//!
//! It records every request path in order, serves extra in-memory files (e.g. a fake checksum
//! database under `/sumdb/...`), and injects faults that tests can change while it runs.
//!
//! The server is axum behind a hand-written hyper accept loop: hyper lets a request be answered by
//! dropping the connection ([`Fault::CloseConnection`]), which an axum handler cannot do. It runs on a
//! current-thread tokio runtime on its own OS thread, so it works the same from sync and async tests,
//! and stopping it (drop) cancels every connection, hung ones included.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tower::ServiceExt;

use crate::git::GitHost;
use crate::go::GoClient;
use crate::server_thread::ServerThread;

/// What the proxy does to a request before (or instead of) answering it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Answer with this status and a short `text/plain` body.
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Never answer (the connection stays open until the client gives up or the proxy stops).
    Hang,
    /// Close the connection without sending a response.
    CloseConnection,
    /// Send the normal status and headers (including the full `Content-Length`) but only the first
    /// N bytes of the body, then drop the connection.
    Truncate(usize),
    /// Send the normal status and headers and the first N bytes of the body, then nothing more
    /// while the connection stays open: a download that is in progress for as long as the test
    /// wants.
    Stall(usize),
    /// Answer `302 Found` with this `Location` (an upstream that sends agora elsewhere).
    Redirect(String),
}

#[derive(Debug, Default)]
struct Faults {
    global: Fault,
    /// (prefix, fault); the longest matching prefix wins over the global fault.
    paths: Vec<(String, Fault)>,
}

impl Faults {
    fn for_path(&self, path: &str) -> Fault {
        self.paths
            .iter()
            .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| self.global.clone())
    }
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    files: Mutex<HashMap<String, (Bytes, String)>>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<String>>,
    raw_log: Mutex<Vec<String>>,
}

/// Poisoning only means another test thread panicked while holding the lock; the data is still fine.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running static GOPROXY. Stops on [`stop`](Self::stop) or drop.
#[derive(Debug)]
pub struct UpstreamProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: ServerThread,
    _tmp: Option<TempDir>,
}

impl UpstreamProxy {
    /// Downloads each `"module@query"` with `GOPROXY=direct` from `host`'s repositories into `go`'s
    /// module cache, copies the resulting `cache/download` tree into a private directory (so later
    /// downloads by `go` do not change what is served) and serves it.
    ///
    /// # Panics
    /// When a download fails (with go's error).
    pub fn from_fixtures(go: &GoClient, host: &GitHost, queries: &[&str]) -> UpstreamProxy {
        let gitconfig = host.gitconfig_path();
        for q in queries {
            if let Err(e) =
                go.mod_download_with("direct", q, &[("GIT_CONFIG_GLOBAL", gitconfig.as_os_str())])
            {
                panic!(
                    "UpstreamProxy::from_fixtures: GOPROXY=direct go mod download {q} failed: {e}"
                );
            }
        }
        let tmp = crate::scratch::tempdir("agora-upstream-");
        let root = tmp.path().join("proxy");
        copy_goproxy_tree(&go.download_cache(), &root);
        let mut proxy = UpstreamProxy::serve_dir(&root);
        proxy._tmp = Some(tmp);
        proxy
    }

    /// Serves `dir` as it is (changes to it show immediately).
    pub fn serve_dir(dir: impl Into<PathBuf>) -> UpstreamProxy {
        let shared = Arc::new(Shared {
            root: dir.into(),
            files: Mutex::default(),
            faults: Mutex::default(),
            log: Mutex::default(),
            raw_log: Mutex::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("set listener non-blocking");
        let addr = listener.local_addr().expect("listener address");
        let server_shared = shared.clone();
        let server = ServerThread::spawn(format!("upstream-proxy-{}", addr.port()), move |stop| {
            accept_loop(listener, server_shared, stop)
        });
        UpstreamProxy {
            shared,
            addr,
            server,
            _tmp: None,
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash), to use as a GOPROXY entry.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory being served (tests may add or delete files in it).
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// Request paths received so far, in arrival order (recorded before any fault applies),
    /// percent-decoded: the go command sends `!` as `%21`, this returns `!`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared.log).clone()
    }

    /// Request paths exactly as they arrived on the wire (not decoded).
    pub fn raw_requests(&self) -> Vec<String> {
        lock(&self.shared.raw_log).clone()
    }

    /// How many requests had exactly this (decoded) path.
    pub fn count(&self, path: &str) -> usize {
        lock(&self.shared.log).iter().filter(|p| *p == path).count()
    }

    /// Forgets the recorded requests.
    pub fn reset_counts(&self) {
        lock(&self.shared.log).clear();
        lock(&self.shared.raw_log).clear();
    }

    /// Sets the fault for every path without a more specific [`set_path_fault`](Self::set_path_fault).
    pub fn set_fault(&self, fault: Fault) {
        lock(&self.shared.faults).global = fault;
    }

    /// Sets the fault for (decoded) paths starting with `prefix` (longest prefix wins; `Fault::None` exempts a
    /// prefix from the global fault).
    pub fn set_path_fault(&self, prefix: &str, fault: Fault) {
        let mut faults = lock(&self.shared.faults);
        faults.paths.retain(|(p, _)| p != prefix);
        faults.paths.push((prefix.to_string(), fault));
    }

    /// Removes the global fault and all path faults.
    pub fn clear_faults(&self) {
        *lock(&self.shared.faults) = Faults::default();
    }

    /// Serves `bytes` at exactly `path` (leading `/` optional), ahead of the directory.
    pub fn add_file(&self, path: &str, bytes: impl Into<Bytes>, content_type: &str) {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        lock(&self.shared.files).insert(path, (bytes.into(), content_type.to_string()));
    }

    /// Stops serving a file added with [`add_file`](Self::add_file).
    pub fn remove_file(&self, path: &str) {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        lock(&self.shared.files).remove(&path);
    }

    /// Stops the server: the port is closed and open connections are dropped. Idempotent.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

impl Drop for UpstreamProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies a module cache's `cache/download` into a GOPROXY tree, leaving out go's lock and
/// temporary files and the checksum-database cache (`sumdb/`), which are not part of the protocol.
fn copy_goproxy_tree(from: &Path, to: &Path) {
    fn walk(from: &Path, to: &Path, top: bool) {
        std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
        let entries =
            std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
        for entry in entries {
            let entry = entry.expect("read dir entry");
            let name = entry.file_name();
            let name_s = name.to_string_lossy();
            let ty = entry.file_type().expect("file type");
            if ty.is_dir() {
                if !(top && name_s == "sumdb") {
                    walk(&entry.path(), &to.join(&name), false);
                }
            } else if ty.is_file()
                && !name_s.ends_with(".lock")
                && !name_s.ends_with(".partial")
                && !name_s.contains(".tmp")
            {
                std::fs::copy(entry.path(), to.join(&name))
                    .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
            }
        }
    }
    assert!(
        from.is_dir(),
        "{} does not exist: nothing was downloaded",
        from.display()
    );
    walk(from, to, true);
}

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("register listener");
    let router = Router::new()
        .fallback(serve_file)
        .with_state(shared.clone());
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                let router = router.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(shared.clone(), router.clone(), req)
                    });
                    // Errors here are client disconnects and injected faults: nothing to report.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

/// Returned by the service to make hyper drop the connection without a response.
#[derive(Debug)]
struct InjectedClose;

impl std::fmt::Display for InjectedClose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected fault: connection closed")
    }
}

impl std::error::Error for InjectedClose {}

async fn handle(
    shared: Arc<Shared>,
    router: Router,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, InjectedClose> {
    // The go command percent-encodes `!` (`%21mixed%21case`): record and match decoded paths so
    // tests can write them the way the protocol spells them.
    let raw = req.uri().path().to_string();
    let path = crate::http::percent_decode(&raw).unwrap_or_else(|| raw.clone());
    lock(&shared.log).push(path.clone());
    lock(&shared.raw_log).push(raw);
    let fault = lock(&shared.faults).for_path(&path);
    let mut truncate = None;
    let mut stall = false;
    match fault {
        Fault::None => {}
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(text(
                status,
                format!("injected fault: status {code} for {path}\n"),
            ));
        }
        Fault::Redirect(location) => {
            let mut resp = text(StatusCode::FOUND, String::new());
            resp.headers_mut().insert(
                http::header::LOCATION,
                http::HeaderValue::from_str(&location).expect("a valid Location"),
            );
            return Ok(resp);
        }
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Hang => std::future::pending::<()>().await,
        Fault::CloseConnection => return Err(InjectedClose),
        Fault::Truncate(n) => truncate = Some(n),
        Fault::Stall(n) => {
            truncate = Some(n);
            stall = true;
        }
    }
    let resp = match router.oneshot(req.map(Body::new)).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    Ok(match truncate {
        None => resp,
        Some(n) => truncated(resp, n, stall),
    })
}

/// Keeps the headers but cuts the body after `limit` bytes with an error, which makes hyper abort
/// the connection: the client sees a short body against its `Content-Length`. With `stall`, the
/// body never ends instead.
fn truncated(resp: Response<Body>, limit: usize, stall: bool) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let stream = futures::stream::unfold(
        (body.into_data_stream(), limit, false),
        move |(mut data, left, done)| async move {
            if done {
                return None;
            }
            if left == 0 {
                // Pause first: hyper flushes what it has buffered while the body is pending, so
                // the client really receives the first bytes before the connection dies.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if stall {
                    std::future::pending::<()>().await;
                }
                let err = std::io::Error::other("injected fault: truncated body");
                return Some((Err(err), (data, 0, true)));
            }
            match data.next().await {
                Some(Ok(chunk)) => {
                    let take = chunk.len().min(left);
                    Some((Ok(chunk.slice(..take)), (data, left - take, false)))
                }
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), (data, 0, true))),
                None => None,
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(stream))
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The axum fallback: in-memory files first, then the directory.
async fn serve_file(State(shared): State<Arc<Shared>>, uri: Uri) -> Response<Body> {
    let path = uri.path();
    let added = lock(&shared.files).get(path).cloned();
    if let Some((bytes, content_type)) = added {
        let ct = HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        return ([(header::CONTENT_TYPE, ct)], bytes).into_response();
    }
    let Some(rel) = relative_path(path) else {
        return text(StatusCode::NOT_FOUND, format!("not found: {path}\n"));
    };
    let full = shared.root.join(&rel);
    let file = match tokio::fs::File::open(&full).await {
        Ok(f) => f,
        Err(_) => return text(StatusCode::NOT_FOUND, format!("not found: {path}\n")),
    };
    let len = match file.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        _ => return text(StatusCode::NOT_FOUND, format!("not found: {path}\n")),
    };
    let content_type = match rel.extension().and_then(|e| e.to_str()) {
        Some("info") => "application/json",
        Some("zip") => "application/zip",
        Some("mod") => "text/plain; charset=utf-8",
        _ if rel.ends_with("@v/list") => "text/plain; charset=utf-8",
        _ if rel.ends_with("@latest") => "application/json",
        _ => "application/octet-stream",
    };
    // Streamed, not read whole: the big fixture exercises agora's streaming from upstream.
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from_stream(tokio_util::io::ReaderStream::new(file)))
        .expect("valid response")
}

/// Maps a URL path to a relative file path: percent-decoded, and only plain segments (no `.`, `..`,
/// empty or NUL-containing segment), so nothing outside the root can be reached.
fn relative_path(url_path: &str) -> Option<PathBuf> {
    let decoded = crate::http::percent_decode(url_path.strip_prefix('/')?)?;
    let mut rel = PathBuf::new();
    for seg in decoded.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || seg.contains('\0') {
            return None;
        }
        rel.push(seg);
    }
    Some(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let f = Faults {
            global: Fault::Status(500),
            paths: vec![("/a/".into(), Fault::Hang), ("/a/b/".into(), Fault::None)],
        };
        assert_eq!(f.for_path("/a/b/c"), Fault::None);
        assert_eq!(f.for_path("/a/x"), Fault::Hang);
        assert_eq!(f.for_path("/z"), Fault::Status(500));
    }

    #[test]
    fn relative_paths_stay_inside() {
        assert_eq!(
            relative_path("/github.com/!mixed!case/@v/v1.0.0.zip"),
            Some(PathBuf::from("github.com/!mixed!case/@v/v1.0.0.zip"))
        );
        assert_eq!(
            relative_path("/m/@v/v1.0.0%2Bincompatible.info"),
            Some(PathBuf::from("m/@v/v1.0.0+incompatible.info"))
        );
        assert_eq!(relative_path("/a/../b"), None);
        assert_eq!(relative_path("/a/%2e%2e/b"), None);
        assert_eq!(relative_path("/a//b"), None);
        assert_eq!(relative_path("/"), None);
    }
}
