//! [`RgwServer`]: a private single-node Ceph cluster with its RADOS Gateway (radosgw, Ceph's S3
//! server) on `127.0.0.1`, for the storage contract tests.
//!
//! Why RGW: moto ([`crate::s3`]) is a mock, and its conditional writes were not even atomic until
//! the testkit serialized it. RGW is a real S3 server in production use, and its `PutObject` with
//! `If-None-Match: *` is atomic (the object's head is created exclusively in RADOS): of many
//! concurrent writers of one key exactly one wins and the others get `412` (seen with 32 writers,
//! and in the contract tests). Ceph 16.2, Debian bookworm's, ignores `If-None-Match` on
//! `CompleteMultipartUpload` and `CopyObject`, though, and wants a `Content-Length` on
//! `UploadPartCopy`: see the storage contract tests for what that means for agora. The other
//! candidates from the registries reachable here were worse: Garage 2.5's `PutObject` has no
//! precondition check at all, and s3s-fs checks and then writes, with a race in between.
//!
//! The cluster: one `ceph-mon` (msgr2 on a free loopback port, `auth ... = none`), one `ceph-osd`
//! with the in-memory `memstore` object store (pools of size 1), and `radosgw` with the beast
//! frontend on another free loopback port. Everything of it, configuration, data, logs, run
//! directory, admin sockets and pid files, lives in one temporary directory; nothing is read from
//! or written to `/etc/ceph` or `/var/lib/ceph`, and no systemd is involved. An S3 user with fixed
//! keys ([`RgwServer::access_key_id`]) is made with `radosgw-admin`; buckets are made through
//! RGW's Swift API with that user's Swift key (a plain token, so no S3 request signing is needed
//! here), and S3 sees them as the user's buckets.
//!
//! Ceph takes a while to start (about fifteen seconds, mostly RGW creating its pools), so there is one
//! cluster per test process ([`RgwServer::shared`]), and tests share it through buckets of their
//! own ([`RgwServer::new_bucket`]), which keeps them parallel.
//!
//! The daemons never outlive the test process: they run in the foreground (`-f`, so the child is
//! the daemon), in process groups of their own, with `PR_SET_PDEATHSIG` set to `SIGKILL`; they are
//! spawned by a thread that never ends, because the death signal follows the spawning *thread*,
//! and libtest ends a test's thread with the test. An `atexit` handler also kills and reaps them
//! before the process exits, so they are gone when `cargo test` returns.
//!
//! The binaries come from Debian's `ceph-mon`, `ceph-osd` and `radosgw` packages, installed by
//! `scripts/setup`, and are looked for in `/usr/bin`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;

/// Where the Debian packages put the binaries.
const BIN_DIR: &str = "/usr/bin";

/// How long the whole cluster may take to come up (typically about ten seconds).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// How long one of the set-up commands (`ceph osd new`, `radosgw-admin ...`) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The S3 user's keys (the cluster is private and lives as long as the test process).
const ACCESS_KEY: &str = "agora-test";
const SECRET_KEY: &str = "agora-test-secret";
const USER: &str = "agora-test";
/// The same user's Swift credentials, used to create buckets without signing S3 requests.
const SWIFT_USER: &str = "agora-test:swift";
const SWIFT_KEY: &str = "agora-test-swift-secret";

/// The daemons of the cluster (killed by the `atexit` handler).
static DAEMONS: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// A running single-node Ceph cluster with RGW; see the module docs. Never dropped: it lives in
/// a static for the whole test process, and its daemons die with it.
#[derive(Debug)]
pub struct RgwServer {
    port: u16,
    bucket: String,
    dir: TempDir,
}

impl RgwServer {
    /// The cluster of this test process, started by the first call (or by
    /// [`RgwServer::start_in_background`]); blocks until RGW answers and a first bucket exists.
    /// Later calls return at once.
    ///
    /// # Panics
    /// When a binary is missing (pointing to `scripts/setup`) or the cluster does not come up
    /// within a few minutes (with the tail of the daemons' logs); every later call panics with the
    /// same message.
    pub fn shared() -> &'static RgwServer {
        static SHARED: OnceLock<Result<RgwServer, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            starting()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .recv()
                .unwrap_or_else(|_| Err("the thread starting Ceph panicked".to_owned()))
        });
        match started {
            Ok(server) => server,
            Err(message) => panic!("{message}"),
        }
    }

    /// Starts the cluster of [`RgwServer::shared`] unless that is under way, without waiting for
    /// it: tests that call this early (from every backend's set-up, say) find the cluster ready
    /// instead of blocking test threads for its start-up. A failure shows in `shared`.
    pub fn start_in_background() {
        starting();
    }

    /// The directory that holds the cluster (its `ceph.conf`, data and `log/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn rgw_log_path(&self) -> PathBuf {
        self.dir.path().join("log/client.rgw.log")
    }
}

impl crate::s3::S3Service for RgwServer {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn access_key_id(&self) -> &str {
        ACCESS_KEY
    }

    fn secret_access_key(&self) -> &str {
        SECRET_KEY
    }

    /// The bucket created at start (shared by everyone who asks; tests want
    /// [`S3Service::new_bucket`](crate::S3Service::new_bucket)).
    fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Owned by the S3 user, made through the Swift API (a plain token: no S3 signing here).
    fn create_bucket(&self, name: &str) {
        let result = swift_token(self.addr()).and_then(|token| {
            request(
                self.addr(),
                "PUT",
                &format!("/swift/v1/{name}"),
                &[("X-Auth-Token", &token)],
            )
        });
        match result {
            Ok(r) if r.status == 201 => {}
            other => panic!(
                "RGW on {}: creating bucket {name} answered {other:?}; log:\n{}",
                self.addr(),
                tail(&self.rgw_log_path(), 40)
            ),
        }
    }

    /// A few lines per request.
    fn log(&self) -> String {
        std::fs::read_to_string(self.rgw_log_path()).unwrap_or_default()
    }
}

/// The start of the cluster, begun by the first call: the result arrives on the channel. The
/// daemons are spawned by the thread started here, which never ends (see the module docs).
fn starting() -> &'static Mutex<std::sync::mpsc::Receiver<Result<RgwServer, String>>> {
    static STARTING: OnceLock<Mutex<std::sync::mpsc::Receiver<Result<RgwServer, String>>>> =
        OnceLock::new();
    STARTING.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("agora-testkit-rgw".into())
            .spawn(move || {
                let _ = tx.send(start());
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the thread that runs the Ceph daemons");
        Mutex::new(rx)
    })
}

/// Starts the cluster, retrying with other ports when one was taken in between.
fn start() -> Result<RgwServer, String> {
    let bin = |name: &str| Path::new(BIN_DIR).join(name);
    for name in [
        "ceph-mon",
        "ceph-osd",
        "radosgw",
        "radosgw-admin",
        "monmaptool",
        "ceph",
    ] {
        if !bin(name).is_file() {
            return Err(format!(
                "{} not found: run scripts/setup, which installs Debian's ceph-mon, ceph-osd and \
                 radosgw packages",
                bin(name).display()
            ));
        }
    }
    register_atexit();
    let started = Instant::now();
    let mut last = String::new();
    for _ in 0..3 {
        let cluster = Cluster::new(crate::scratch::tempdir("agora-rgw-"));
        match cluster.start() {
            Ok(bucket) => {
                // Straight to stderr: `eprintln!` would be captured as a test's output (this
                // thread inherits the capture of the test that started the cluster).
                let _ = writeln!(
                    std::io::stderr(),
                    "agora-testkit: Ceph RGW ready on {} in {:.1?} (in {})",
                    cluster.rgw_addr(),
                    started.elapsed(),
                    cluster.dir.path().display()
                );
                return Ok(RgwServer {
                    port: cluster.rgw_port,
                    bucket,
                    dir: cluster.dir,
                });
            }
            Err(e) => {
                last = format!("{e}\n{}", cluster.logs());
                kill_daemons();
                // Only a port taken by someone else is worth another try.
                if !cluster.port_taken() {
                    break;
                }
            }
        }
    }
    Err(format!("Ceph RGW did not start: {last}"))
}

/// One attempt at a cluster: its directory and ports.
struct Cluster {
    dir: TempDir,
    mon_port: u16,
    rgw_port: u16,
}

impl Cluster {
    fn new(dir: TempDir) -> Cluster {
        Cluster {
            dir,
            mon_port: free_port(),
            rgw_port: free_port(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn rgw_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.rgw_port))
    }

    /// Brings the cluster up and returns the first bucket's name.
    fn start(&self) -> Result<String, String> {
        let deadline = Instant::now() + START_TIMEOUT;
        for sub in [
            "run",
            "log",
            "crash",
            "mon/mon.a",
            "osd/osd.0",
            "rgw/client.rgw",
        ] {
            std::fs::create_dir_all(self.path(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
        }
        let fsid = uuid()?;
        std::fs::write(self.path("ceph.conf"), self.config(&fsid))
            .map_err(|e| format!("write ceph.conf: {e}"))?;

        // The monitor: a monmap with itself alone, its store, then the daemon.
        let mon_addr = format!("[v2:127.0.0.1:{}]", self.mon_port);
        let monmap = self.path("monmap");
        self.run(
            "monmaptool",
            &[
                "--create",
                "--addv",
                "a",
                &mon_addr,
                "--fsid",
                &fsid,
                path_str(&monmap),
            ],
        )?;
        self.run(
            "ceph-mon",
            &["--mkfs", "-i", "a", "--monmap", path_str(&monmap)],
        )?;
        self.spawn("mon.a", "ceph-mon", &["-f", "-i", "a"])?;
        self.wait_until(deadline, "ceph-mon to listen", || {
            TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], self.mon_port)),
                Duration::from_secs(1),
            )
            .is_ok()
        })?;

        // The OSD: registered with the monitor, its (in-memory) store made, then the daemon; it
        // adds itself to the CRUSH map when it starts.
        let osd_uuid = uuid()?;
        let id = self.run("ceph", &["osd", "new", &osd_uuid])?;
        if id.trim() != "0" {
            return Err(format!("`ceph osd new` answered {id:?}, expected osd id 0"));
        }
        self.run("ceph-osd", &["-i", "0", "--mkfs", "--osd-uuid", &osd_uuid])?;
        self.spawn("osd.0", "ceph-osd", &["-f", "-i", "0"])?;

        // RGW creates its pools (which waits for the OSD), then listens.
        self.spawn("client.rgw", "radosgw", &["-f", "-n", "client.rgw"])?;
        self.wait_until(deadline, "radosgw to answer HTTP", || {
            request(self.rgw_addr(), "GET", "/", &[]).is_ok()
        })?;

        self.run(
            "radosgw-admin",
            &[
                "user",
                "create",
                "--uid",
                USER,
                "--display-name",
                "agora tests",
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
                "--max-buckets",
                "100000",
            ],
        )?;
        self.run(
            "radosgw-admin",
            &[
                "subuser",
                "create",
                "--uid",
                USER,
                "--subuser",
                SWIFT_USER,
                "--access",
                "full",
                "--key-type",
                "swift",
                "--secret-key",
                SWIFT_KEY,
            ],
        )?;
        let bucket = format!("agora-test-{}-first", std::process::id());
        let token = swift_token(self.rgw_addr()).map_err(|e| format!("Swift auth: {e}"))?;
        match request(
            self.rgw_addr(),
            "PUT",
            &format!("/swift/v1/{bucket}"),
            &[("X-Auth-Token", &token)],
        ) {
            Ok(r) if r.status == 201 => Ok(bucket),
            other => Err(format!("creating bucket {bucket} answered {other:?}")),
        }
    }

    /// `ceph.conf`: everything under the cluster's directory, no authentication, one replica.
    fn config(&self, fsid: &str) -> String {
        let d = self.dir.path().display();
        format!(
            "[global]
fsid = {fsid}
mon_host = [v2:127.0.0.1:{mon_port}]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
# A private cluster on loopback: no cephx, and plain (crc) msgr2 sessions, which radosgw otherwise
# refuses to open without authentication.
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_client_mode = crc
ms_mon_client_mode = crc
# One OSD: pools of one replica, few placement groups (RGW makes seven pools).
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_crush_chooseleaf_type = 0
# The monitor would stop when the disk holding its (small) store is nearly full.
mon_data_avail_warn = 0
mon_data_avail_crit = 0
# The OSD keeps objects in memory; tests write tens of MiB.
osd_objectstore = memstore
memstore_device_bytes = 4294967296
run_dir = {d}/run
admin_socket = {d}/run/$name.asok
pid_file = {d}/run/$name.pid
log_file = {d}/log/$name.log
mon_cluster_log_file = {d}/log/cluster.log
crash_dir = {d}/crash
keyring = {d}/keyring
mon_data = {d}/mon/$name
osd_data = {d}/osd/$name
rgw_data = {d}/rgw/$name
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port}
",
            mon_port = self.mon_port,
            rgw_port = self.rgw_port,
        )
    }

    /// Runs a set-up command to completion (bounded by [`COMMAND_TIMEOUT`]); returns its stdout.
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let out = self.path(&format!("log/{program}.out"));
        let err = self.path(&format!("log/{program}.err"));
        let mut command = self.command(program);
        command
            .args(args)
            .stdout(std::fs::File::create(&out).map_err(|e| e.to_string())?)
            .stderr(std::fs::File::create(&err).map_err(|e| e.to_string())?);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "`{program} {}` did not finish within {COMMAND_TIMEOUT:?}; stderr:\n{}",
                        args.join(" "),
                        tail(&err, 20)
                    ));
                }
            }
        };
        if !status.success() {
            return Err(format!(
                "`{program} {}` failed ({status}); stderr:\n{}",
                args.join(" "),
                tail(&err, 20)
            ));
        }
        Ok(std::fs::read_to_string(&out).unwrap_or_default())
    }

    /// Starts a daemon in the foreground; its stdout and stderr go to `log/<name>.out` (its own
    /// log is `log/<name>.log`).
    fn spawn(&self, name: &str, program: &str, args: &[&str]) -> Result<(), String> {
        let out = std::fs::File::create(self.path(&format!("log/{name}.out")))
            .map_err(|e| e.to_string())?;
        let mut command = self.command(program);
        command
            .args(args)
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        DAEMONS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child);
        Ok(())
    }

    /// A Ceph command on this cluster's configuration, dying with this process.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(Path::new(BIN_DIR).join(program));
        command
            .arg("-c")
            .arg(self.path("ceph.conf"))
            .current_dir(self.dir.path())
            // Nothing from the developer's Ceph setup may leak in.
            .env_remove("CEPH_CONF")
            .env_remove("CEPH_ARGS")
            .env_remove("CEPH_KEYRING")
            .stdin(Stdio::null())
            .process_group(0);
        die_with_parent(&mut command);
        command
    }

    /// Polls `ready` until it holds; fails when a daemon exited or the deadline passed.
    fn wait_until(
        &self,
        deadline: Instant,
        what: &str,
        ready: impl Fn() -> bool,
    ) -> Result<(), String> {
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(exited) = exited_daemon() {
                return Err(format!("waiting for {what}: {exited}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "waiting for {what}: not ready within {START_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether a failure looks like a port someone else took (worth another try).
    fn port_taken(&self) -> bool {
        let logs = self.logs();
        logs.contains("Address already in use") || logs.contains("(98)")
    }

    /// The tail of every log of the cluster.
    fn logs(&self) -> String {
        let mut all = String::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.path("log"))
            .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        for file in files {
            let text = tail(&file, 25);
            if !text.trim().is_empty() {
                let _ = write!(all, "==> {} <==\n{text}\n", file.display());
            }
        }
        all
    }
}

/// `PR_SET_PDEATHSIG` = `SIGKILL` in the child: it dies when the thread that spawned it ends.
/// Between `fork` and `exec` only async-signal-safe calls are allowed: `prctl` and `getppid`,
/// and errors that do not allocate.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure only makes async-signal-safe system calls and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the signal was armed: then none would come.
            if std::os::unix::process::parent_id() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Kills and reaps the daemons when the process exits normally (the death signal covers the
/// rest, but asynchronously: this makes them gone by the time `cargo test` returns).
#[allow(unsafe_code)]
fn register_atexit() {
    extern "C" fn at_exit() {
        kill_daemons();
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: `at_exit` is a plain function that lives as long as the program.
    ONCE.call_once(|| unsafe {
        libc::atexit(at_exit);
    });
}

/// Kills and reaps every daemon started so far.
fn kill_daemons() {
    // `try_lock`: at exit, never wait for a thread that will not run again.
    let Ok(mut daemons) = DAEMONS.try_lock() else {
        return;
    };
    for mut child in daemons.drain(..) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A daemon that has exited, described; `None` while all run.
fn exited_daemon() -> Option<String> {
    let mut daemons = DAEMONS.lock().unwrap_or_else(|e| e.into_inner());
    daemons.iter_mut().find_map(|child| match child.try_wait() {
        Ok(Some(status)) => Some(format!("daemon pid {} exited ({status})", child.id())),
        _ => None,
    })
}

/// A random UUID from the kernel.
fn uuid() -> Result<String, String> {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("read /proc/sys/kernel/random/uuid: {e}"))
}

/// A Swift token for the test user (`GET /auth/1.0`).
fn swift_token(addr: SocketAddr) -> std::io::Result<String> {
    let response = request(
        addr,
        "GET",
        "/auth/1.0",
        &[("X-Auth-User", SWIFT_USER), ("X-Auth-Key", SWIFT_KEY)],
    )?;
    response
        .header("x-auth-token")
        .filter(|_| response.status / 100 == 2)
        .map(str::to_owned)
        .ok_or_else(|| std::io::Error::other(format!("Swift auth answered {response:?}")))
}

/// The status line and headers of an HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// One HTTP/1.1 request without a body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:.200}")))?;
    Ok(Response { status, head })
}

/// The last `lines` lines of a file (empty when unreadable).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
