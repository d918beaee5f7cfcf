//! [`S3Server`]: a private S3-compatible server (moto) on `127.0.0.1`, for the storage contract tests
//! and the scale-out tests.
//!
//! Each server is its own `moto_server` process on a free port, with one bucket created at start
//! ([`S3Server::bucket`]) and more on demand ([`S3Server::new_bucket`]), so tests never share state
//! and can run in parallel. moto keeps everything in memory and accepts any credentials (it does not
//! check signatures), so the dummy ones of [`S3Server::access_key_id`] work; buckets are created
//! with a plain unsigned `PUT /<bucket>` over a blocking socket, which needs no async runtime and no
//! S3 client.
//!
//! moto 5.2 honours `If-None-Match: *` on `PutObject` and `CompleteMultipartUpload`, which is what
//! agora's write-once puts rely on, but it checks and then writes without a lock on its threaded
//! server: two concurrent conditional writes of one key can both succeed (seen with three
//! concurrent 9 MiB publishes: two "created"). S3 makes each conditional request atomic. So the
//! server here is moto's own WSGI app behind one global lock, run by the interpreter of the
//! `moto_server` script: every request is atomic, as on S3, while writers still interleave at
//! request granularity.
//!
//! The script is `$AGORA_TEST_MOTO`, else `/opt/agora-test/moto/bin/moto_server` (a virtualenv
//! made by `scripts/setup`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;

/// Where `scripts/setup` installs moto.
pub const DEFAULT_MOTO: &str = "/opt/agora-test/moto/bin/moto_server";

/// How long a starting server may take to answer (moto imports a lot of Python at start).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `moto_server`'s `main`, with the app serialized (see the module docs). Arguments: host, port.
const SERVE: &str = r#"
import os, sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)

host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()

def serialized(environ, start_response):
    with lock:
        return list(app(environ, start_response))

run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)
"#;

/// What the tests need of an S3-compatible server, so that one test can run against moto
/// ([`S3Server`]) and Ceph RGW ([`crate::RgwServer`]) alike.
pub trait S3Service: Send + Sync {
    fn addr(&self) -> SocketAddr;
    /// `http://127.0.0.1:PORT` (path-style requests; `allow_http` needed).
    fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }
    /// The region requests are signed for.
    fn region(&self) -> &str {
        "us-east-1"
    }
    fn access_key_id(&self) -> &str;
    fn secret_access_key(&self) -> &str;
    /// A bucket created at start.
    fn bucket(&self) -> &str;
    /// Creates bucket `name`.
    ///
    /// # Panics
    /// When the server refuses.
    fn create_bucket(&self, name: &str);
    /// Creates a fresh bucket with a unique name and returns the name.
    fn new_bucket(&self) -> String {
        let name = unique_bucket_name();
        self.create_bucket(&name);
        name
    }
    /// The server's log so far.
    fn log(&self) -> String;
}

/// A running `moto_server`. Killed on drop.
#[derive(Debug)]
pub struct S3Server {
    port: u16,
    bucket: String,
    child: Child,
    dir: TempDir,
}

impl S3Server {
    /// Starts moto on a free loopback port, waits until it answers and creates a bucket.
    ///
    /// # Panics
    /// When moto is missing (pointing to `scripts/setup`) or does not come up (with its log).
    pub fn start() -> S3Server {
        let python = python_of(&find_moto());
        let mut last_log = String::new();
        // The port is free when checked; another process may take it before moto binds it.
        for _ in 0..5 {
            let dir = crate::scratch::tempdir("agora-moto-");
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("moto.log")).expect("create moto log");
            let child = Command::new(&python)
                .args(["-c", SERVE, "127.0.0.1", &port.to_string()])
                .current_dir(dir.path())
                // Nothing from the developer's AWS setup may leak in.
                .env_remove("AWS_PROFILE")
                .env_remove("AWS_CONFIG_FILE")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
            let mut server = S3Server {
                port,
                bucket: String::new(),
                child,
                dir,
            };
            match server.wait_ready() {
                Ok(()) => {
                    server.bucket = server.new_bucket();
                    return server;
                }
                Err(log) => last_log = log,
            }
        }
        panic!("moto_server did not start on a free port; last log:\n{last_log}");
    }

    /// Waits until moto answers an HTTP request; `Err` carries the log.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // The root lists buckets; any HTTP status means the server is up.
            if request(self.addr(), "GET", "/").is_ok() {
                return Ok(());
            }
            let exited = self.child.try_wait().ok().flatten().is_some();
            if exited || Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Service for S3Server {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Dummy credentials (moto accepts any).
    fn access_key_id(&self) -> &str {
        "agora-test"
    }

    fn secret_access_key(&self) -> &str {
        "agora-test-secret"
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }

    fn create_bucket(&self, name: &str) {
        match request(self.addr(), "PUT", &format!("/{name}")) {
            Ok(200) => {}
            other => panic!(
                "moto on {}: creating bucket {name} answered {other:?}; log:\n{}",
                self.addr(),
                self.log()
            ),
        }
    }

    /// One line per request.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }
}

/// A bucket name no other test uses: the process id and a counter of this process.
fn unique_bucket_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "agora-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One HTTP/1.1 request without a body; returns the status code.
fn request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:.200}")))
}

/// The Python interpreter of the `moto_server` script: its `#!` line, else `python3` beside it.
fn python_of(moto: &Path) -> PathBuf {
    let shebang = std::fs::read(moto)
        .ok()
        .and_then(|bytes| {
            let line = bytes.split(|b| *b == b'\n').next()?.to_vec();
            let line = String::from_utf8(line).ok()?;
            let interpreter = line
                .strip_prefix("#!")?
                .split_whitespace()
                .next()?
                .to_owned();
            Some(PathBuf::from(interpreter))
        })
        .filter(|p| p.is_file());
    let python = shebang.unwrap_or_else(|| moto.with_file_name("python3"));
    assert!(
        python.is_file(),
        "no Python interpreter for {} (neither its #! line nor python3 beside it): run scripts/setup",
        moto.display()
    );
    python
}

/// `$AGORA_TEST_MOTO`, else [`DEFAULT_MOTO`].
fn find_moto() -> PathBuf {
    let (path, from) = match std::env::var_os("AGORA_TEST_MOTO").filter(|p| !p.is_empty()) {
        Some(p) => (PathBuf::from(p), "$AGORA_TEST_MOTO"),
        None => (PathBuf::from(DEFAULT_MOTO), "the default path"),
    };
    assert!(
        Path::new(&path).is_file(),
        "moto_server not found at {} ({from}): run scripts/setup, which installs moto[server] in a \
         virtualenv under /opt/agora-test/moto, or point AGORA_TEST_MOTO at a moto_server binary",
        path.display()
    );
    path
}
