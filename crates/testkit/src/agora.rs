//! [`Agora`]: a running agora process for integration tests.
//!
//! agora prints `agora: listening on http://ADDR` (or `unix:/PATH` for a Unix socket) on stdout
//! when it is ready to serve. [`AgoraBuilder::start`] waits for that line (30 s by default, then panics with agora's
//! stderr), so tests never race the listener. stderr goes to a file, readable at any time with
//! [`Agora::stderr_log`] (e.g. to assert that no credential was logged); the rest of stdout is drained
//! on a thread (so agora never blocks on a full pipe) and kept for [`Agora::stdout_log`].
//!
//! Tests pass the binary with `env!("CARGO_BIN_EXE_agora")` and add `--listen 127.0.0.1:0`
//! themselves.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// What agora prints on stdout once it listens.
pub const READY_PREFIX: &str = "agora: listening on ";

/// Configures and starts an agora process.
#[derive(Debug)]
pub struct AgoraBuilder {
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    current_dir: Option<PathBuf>,
    ready_timeout: Duration,
}

impl AgoraBuilder {
    /// agora at `bin` (usually `env!("CARGO_BIN_EXE_agora")`).
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        AgoraBuilder {
            bin: bin.into(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            ready_timeout: Duration::from_secs(30),
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (the rest of the environment is inherited).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an inherited environment variable.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Working directory (default: a fresh temp dir owned by the handle, see [`Agora::work_dir`]).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// How long to wait for the ready line (default 30 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Spawns agora and waits until it prints its ready line.
    ///
    /// # Panics
    /// If it cannot start, exits early, or is not ready in time; the message includes its stderr.
    pub fn start(self) -> Agora {
        let tmp = crate::scratch::tempdir("agora-proc-");
        let work_dir = match &self.current_dir {
            Some(d) => d.clone(),
            None => {
                let d = tmp.path().join("work");
                std::fs::create_dir_all(&d).expect("create agora work dir");
                d
            }
        };
        let stderr_path = tmp.path().join("stderr.log");
        let stderr_file = std::fs::File::create(&stderr_path).expect("create agora stderr log");

        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .current_dir(&work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_file));
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start agora at {} (build it first; tests use env!(\"CARGO_BIN_EXE_agora\")): {e}",
                self.bin.display()
            )
        });

        let stdout = child.stdout.take().expect("piped stdout");
        let stdout_log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        let log = stdout_log.clone();
        std::thread::Builder::new()
            .name("agora-stdout".into())
            .spawn(move || {
                let mut ready_tx = Some(ready_tx);
                let mut reader = BufReader::new(stdout);
                let mut buf = Vec::new();
                // Bytes, not `lines()`: a non-UTF-8 line must not stop the draining.
                while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    buf.clear();
                    if let Some(url) = line.strip_prefix(READY_PREFIX) {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(url.trim().to_string());
                        }
                    }
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
                // Dropping the sender tells the waiter that stdout closed without the ready line.
            })
            .expect("spawn agora stdout thread");

        let mut agora = Agora {
            child,
            url: String::new(),
            stderr_path,
            stdout_log,
            work_dir,
            _tmp: tmp,
        };
        match ready_rx.recv_timeout(self.ready_timeout) {
            Ok(url) => {
                assert!(
                    ["http://", "https://", "unix:/"]
                        .iter()
                        .any(|scheme| url.starts_with(scheme)),
                    "agora's ready line has no URL: {READY_PREFIX}{url}"
                );
                agora.url = url.trim_end_matches('/').to_string();
                agora
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                agora.kill();
                panic!(
                    "agora did not print \"{READY_PREFIX}http://ADDR\" within {:?}\nargs: {:?}\nstdout:\n{}\nstderr:\n{}",
                    self.ready_timeout,
                    self.args,
                    agora.stdout_log(),
                    agora.stderr_log()
                );
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = agora.wait_timeout(Duration::from_secs(5));
                agora.kill();
                panic!(
                    "agora closed stdout without becoming ready (exit: {status:?})\nargs: {:?}\nstdout:\n{}\nstderr:\n{}",
                    self.args,
                    agora.stdout_log(),
                    agora.stderr_log()
                );
            }
        }
    }
}

/// A running agora process; killed on drop.
#[derive(Debug)]
pub struct Agora {
    child: Child,
    url: String,
    stderr_path: PathBuf,
    stdout_log: Arc<Mutex<String>>,
    work_dir: PathBuf,
    _tmp: TempDir,
}

impl Agora {
    /// Starts agora with `args` and extra environment; see [`AgoraBuilder`] for more control.
    pub fn start(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> Agora {
        let mut b = AgoraBuilder::new(bin).args(args);
        for (k, v) in envs {
            b = b.env(k, v);
        }
        b.start()
    }

    /// The base URL from agora's ready line, e.g. `http://127.0.0.1:41234` (no trailing slash), or
    /// `unix:/PATH` when it listens on a Unix socket.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `https://` URL from agora's second ready line, when it serves HTTPS next to HTTP
    /// (`tls.listen`). Waits up to 10 s for the line.
    ///
    /// # Panics
    /// When no such line appears.
    pub fn https_url(&self) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.stdout_log();
            let found = log.lines().find_map(|l| {
                l.strip_prefix(READY_PREFIX)
                    .filter(|u| u.starts_with("https://"))
                    .map(|u| u.trim().trim_end_matches('/').to_string())
            });
            if let Some(url) = found {
                return url;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "agora printed no https ready line\nstdout:\n{log}\nstderr:\n{}",
                self.stderr_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGHUP (reload certificate and tokens, reopen the audit log).
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill -HUP");
        assert!(status.success(), "kill -HUP {} failed", self.child.id());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// agora's working directory.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// Everything agora wrote to stderr so far.
    pub fn stderr_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    /// Everything agora wrote to stdout so far (including the ready line).
    pub fn stdout_log(&self) -> String {
        self.stdout_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// SIGKILL, and reap. Idempotent.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (graceful shutdown); use [`wait_timeout`](Self::wait_timeout) to see it exit.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// Waits up to `timeout` for agora to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait().expect("wait for agora") {
                Some(status) => return Some(status),
                None if Instant::now() >= deadline => return None,
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Agora {
    fn drop(&mut self) {
        self.kill();
    }
}
