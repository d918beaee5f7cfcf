//! [`RedisServer`]: a private `redis-server` on `127.0.0.1`, for the shared single-flight tests.
//!
//! Each server gets a free port, a temporary working directory and no persistence (`--save ''`,
//! `--appendonly no`), so tests never share state or leave files behind. It can be stopped and
//! restarted on the same port to play an outage. [`RedisServer::cmd`] speaks just enough of the
//! Redis protocol (RESP) over a blocking socket for tests to look at or plant keys (a lock left by
//! a "dead" replica) without a client library.
//!
//! The binary is `$AGORA_TEST_REDIS`, else `redis-server` on `PATH` (installed by `scripts/setup`).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;

/// How long a starting server may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running (or stopped) `redis-server`. Killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    bin: PathBuf,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

/// One Redis reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Nil,
    Str(String),
    Int(i64),
    Array(Vec<Reply>),
    Error(String),
}

impl Reply {
    /// The text of a simple or bulk string reply.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Reply::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers PING.
    ///
    /// # Panics
    /// When `redis-server` is missing or does not come up (with its log).
    pub fn start() -> RedisServer {
        let bin = find_redis_binary();
        // The port is free when checked; another process may take it before redis binds it, so
        // try a few.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                bin: bin.clone(),
                port,
                dir: crate::scratch::tempdir("agora-redis-"),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start on a free port; last log:\n{last_log}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL, like a crash); the port closes. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (with an empty data set) after [`stop`](Self::stop).
    ///
    /// # Panics
    /// When it does not come up.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn() {
            panic!(
                "redis-server did not restart on port {}; log:\n{log}",
                self.port
            );
        }
    }

    /// Sends one command and reads its reply.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub fn cmd(&self, args: &[&str]) -> Reply {
        command(self.addr(), args)
            .unwrap_or_else(|e| panic!("redis {:?} on {}: {e}", args.first(), self.addr()))
    }

    /// Keys matching `pattern` (`KEYS`; fine for a test's handful of keys), sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = match self.cmd(&["KEYS", pattern]) {
            Reply::Array(items) => items
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect(),
            other => panic!("KEYS answered {other:?}"),
        };
        keys.sort();
        keys
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Starts the process and waits for PING; `Err` carries the log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.log_path()).expect("create redis log");
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if matches!(command(self.addr(), &["PING"]), Ok(Reply::Str(s)) if s == "PONG") {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || Instant::now() > deadline {
                self.stop();
                return Err(std::fs::read_to_string(self.log_path()).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `$AGORA_TEST_REDIS`, else `redis-server` on `PATH`.
fn find_redis_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("AGORA_TEST_REDIS").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "redis-server not found: AGORA_TEST_REDIS={} does not exist (run scripts/setup or fix AGORA_TEST_REDIS)",
            p.display()
        );
        return p;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("redis-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let debian = Path::new("/usr/bin/redis-server");
    if debian.is_file() {
        return debian.to_owned();
    }
    panic!("redis-server not found: run scripts/setup (looked at $AGORA_TEST_REDIS and PATH)");
}

/// One RESP request/reply on a fresh connection.
fn command(addr: SocketAddr, args: &[&str]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    stream.write_all(&req)?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(bad("connection closed before a reply"));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(1.min(line.len()));
    let num = || rest.parse::<i64>().map_err(|_| bad("malformed length"));
    match kind {
        "+" => Ok(Reply::Str(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => Ok(Reply::Int(num()?)),
        "$" => {
            let n = num()?;
            if n < 0 {
                return Ok(Reply::Nil);
            }
            let mut buf = vec![0; n as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n as usize);
            Ok(Reply::Str(String::from_utf8_lossy(&buf).into_owned()))
        }
        "*" => {
            let n = num()?;
            if n < 0 {
                return Ok(Reply::Nil);
            }
            (0..n)
                .map(|_| read_reply(r))
                .collect::<Result<_, _>>()
                .map(Reply::Array)
        }
        _ => Err(bad("unknown reply type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies() {
        let mut input: &[u8] = b"*3\r\n$3\r\nabc\r\n:7\r\n$-1\r\n";
        assert_eq!(
            read_reply(&mut input).unwrap(),
            Reply::Array(vec![Reply::Str("abc".into()), Reply::Int(7), Reply::Nil])
        );
        let mut err: &[u8] = b"-ERR nope\r\n";
        assert_eq!(
            read_reply(&mut err).unwrap(),
            Reply::Error("ERR nope".into())
        );
    }
}
