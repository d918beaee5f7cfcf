//! [`PostgresServer`]: a throwaway PostgreSQL cluster on `127.0.0.1`, for the index tests
//! (shared metadata of several replicas).
//!
//! Each server is its own cluster: `initdb` into a temporary directory, then `postgres` on a free
//! port, listening on loopback TCP and on a socket in that directory, with trust authentication
//! for one superuser, and durability off (`fsync`, `synchronous_commit`, `full_page_writes`): a
//! test's data does not need to survive a crash, and this makes it several times faster. Never
//! the system's service. Tests get a fresh database each from [`PostgresServer::create_database`],
//! so one server can be shared by a whole test binary ([`PostgresServer::shared`]).
//!
//! PostgreSQL refuses to run as root, and tests run as root on CI: then the cluster belongs to,
//! and the server runs as, the `postgres` user the Debian package creates, or `nobody` without
//! it (`std`'s `CommandExt::uid`/`gid`, no `su` needed). A shared server lives in a static,
//! which is never dropped, so a watchdog (`tail --pid`) stops the server when the test process
//! is gone, however it ended.
//!
//! The binaries are in `$AGORA_TEST_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`
//! (Debian's `postgresql` package, installed by `scripts/setup`).

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;

/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The superuser of test clusters.
pub const USER: &str = "agora";

/// A running PostgreSQL server. Stopped (immediate shutdown) on drop.
#[derive(Debug)]
pub struct PostgresServer {
    bin: PathBuf,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl PostgresServer {
    /// Starts a new cluster on a free loopback port and waits until it accepts connections.
    ///
    /// # Panics
    /// When PostgreSQL is missing (pointing to `scripts/setup`) or does not come up (with its log).
    pub fn start() -> PostgresServer {
        let bin = find_bin_dir();
        let owner = run_as();
        let dir = crate::scratch::tempdir("agora-pg-");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("create the cluster directory");
        if let Some((uid, gid)) = owner {
            for p in [dir.path(), data.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {} to {uid}:{gid}: {e}", p.display()));
            }
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null());
        as_owner(&mut initdb, owner);
        let out = initdb
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}/initdb: {e}", bin.display()));
        assert!(
            out.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = PostgresServer {
            bin,
            port: 0,
            dir,
            child: None,
            watchdog: None,
        };
        // The port is free when checked; another process may take it before postgres binds it.
        let mut last_log = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn(owner) {
                Ok(()) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("postgres did not start on a free port; last log:\n{last_log}");
    }

    /// One server for the whole test process, started on first use.
    pub fn shared() -> &'static PostgresServer {
        static SHARED: OnceLock<PostgresServer> = OnceLock::new();
        SHARED.get_or_init(PostgresServer::start)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://agora@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@{}/{database}", self.addr())
    }

    /// Creates a new, empty database with a unique name and returns its URL.
    ///
    /// # Panics
    /// When `createdb` fails.
    pub fn create_database(&self) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let out = self
            .client("createdb")
            .arg(&name)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run createdb: {e}"));
        assert!(
            out.status.success(),
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// Runs SQL with `psql` in `database` and returns its unaligned, tuples-only output.
    ///
    /// # Panics
    /// When psql fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = self
            .client("psql")
            .args([
                "-d",
                database,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Starts the server and waits until it accepts connections; `Err` carries its log.
    fn spawn(&mut self, owner: Option<(u32, u32)>) -> Result<(), String> {
        let log = std::fs::File::create(self.log_path()).expect("create postgres log");
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        as_owner(&mut cmd, owner);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}/postgres: {e}", self.bin.display()));
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.ready() {
                break;
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
            std::thread::sleep(Duration::from_millis(50));
        }
        // Stops the server (SIGQUIT: immediate shutdown) once this process is gone, for servers
        // kept in statics.
        self.watchdog = Command::new("sh")
            .args([
                "-c",
                "tail --pid=\"$1\" -f /dev/null 2>/dev/null; kill -QUIT \"$2\" 2>/dev/null",
                "watchdog",
                &std::process::id().to_string(),
                &pid.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Ok(())
    }

    /// A PostgreSQL client program (`psql`, `createdb`, ...) pointed at this server as [`USER`].
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER]);
        cmd
    }

    /// Whether the server accepts connections (`pg_isready`, which also waits out recovery).
    fn ready(&self) -> bool {
        if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_err() {
            return false;
        }
        self.client("pg_isready")
            .arg("-q")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops the server at once (immediate shutdown) and waits for it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The user to run PostgreSQL as when this process is root: `postgres`, else `nobody`.
fn run_as() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    // std has no getuid: a process owns its /proc entry.
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok()?;
    if me != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let user = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() > 3 && f[0] == name {
                Some((f[2].parse().ok()?, f[3].parse().ok()?))
            } else {
                None
            }
        })
    };
    Some(
        user("postgres")
            .or_else(|| user("nobody"))
            .unwrap_or((65534, 65534)),
    )
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
}

/// `$AGORA_TEST_PG_BIN`, else the newest `/usr/lib/postgresql/<major>/bin`.
fn find_bin_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("AGORA_TEST_PG_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.join("initdb").is_file() && p.join("postgres").is_file(),
            "PostgreSQL not found: AGORA_TEST_PG_BIN={} has no initdb/postgres (run scripts/setup or fix AGORA_TEST_PG_BIN)",
            p.display()
        );
        return p;
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL not found: run scripts/setup (looked at $AGORA_TEST_PG_BIN and /usr/lib/postgresql/*/bin)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_starts_serves_databases_and_stops() {
        let mut pg = PostgresServer::start();
        let url = pg.create_database();
        let db = url.rsplit('/').next().unwrap().to_owned();
        assert_eq!(pg.psql(&db, "SELECT 1 + 1"), "2");
        assert_eq!(pg.psql(&db, "SHOW fsync"), "off");
        pg.stop();
        assert!(TcpStream::connect_timeout(&pg.addr(), Duration::from_millis(200)).is_err());
    }
}
